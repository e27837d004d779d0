"""The dry run: a transport that sends nothing, counts, and keeps the last mails to preview."""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence

from bcartnb.transports.base import BaseConnection, BaseTransport, Outcome, SendResult
from bcartnb.transports.maildir import StoredMail

__all__ = ["DryRunTransport"]


class DryRunTransport(BaseTransport):
    """Sends nothing; counts, and keeps the last ``keep`` mails for a preview."""

    def __init__(self, *, keep: int = 10):
        super().__init__()
        self.count = 0
        self.kept: deque[StoredMail] = deque(maxlen=keep)

    @property
    def description(self) -> str:
        return "dry run (nothing is sent)"

    def _open(self) -> BaseConnection:
        return _DryRunConnection(self)

    def _record(self, mail: StoredMail) -> None:
        with self._lock:
            self.count += 1
            self.kept.append(mail)


class _DryRunConnection(BaseConnection):
    def __init__(self, transport: DryRunTransport):
        self.transport = transport

    def send(self, envelope_from: str, recipients: Sequence[str], raw: bytes) -> SendResult:
        self.transport._record(StoredMail(envelope_from, tuple(recipients), raw))
        return SendResult(Outcome.SENT, None, "dry run: not sent")
