"""What every transport is: the protocols the send loop is handed, and what one mail's send says.

A send never raises for what happens to one mail: it returns a :class:`SendResult` whose
:class:`Outcome` tells the journal what to do. ``UNCERTAIN`` exists because a connection
that drops after the message body went out may have delivered it; resending by default
would mail the member twice. :class:`BaseTransport` holds what every transport shares: the
one lazily opened connection behind ``send``, and the bookkeeping that closes every
connection it handed out.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol, runtime_checkable

from bcartnb.closing import Closing

__all__ = [
    "BaseConnection",
    "BaseTransport",
    "Connection",
    "Outcome",
    "PollableConnection",
    "SendResult",
    "Transport",
]


class Outcome(StrEnum):
    """What happened to one mail; the values are stable strings for the journal."""

    SENT = "sent"
    """The server took responsibility for the mail (2xx after the message data)."""
    TEMPORARY = "temporary"
    """Not delivered, safe to try again later: a 4xx reply, or a drop before the data."""
    PERMANENT = "permanent"
    """Refused for good (5xx); trying again would be refused again."""
    UNCERTAIN = "uncertain"
    """The connection dropped after the message data went out: it may have been delivered."""


@dataclass(frozen=True)
class SendResult:
    """The outcome of one SMTP transaction (one mail, possibly several recipients).

    ``code``/``message`` are the server's reply that decided the outcome (``None`` when the
    connection dropped). ``refused`` holds each recipient the server refused, with its own
    code and reply, also when the mail went to the others (``SENT`` with a partial refusal).
    """

    outcome: Outcome
    code: int | None = None
    message: str = ""
    refused: Mapping[str, tuple[int, str]] = field(default_factory=dict)

    @property
    def sent(self) -> bool:
        return self.outcome is Outcome.SENT

    @property
    def retryable(self) -> bool:
        """Only TEMPORARY is safe to resend blindly; UNCERTAIN needs the user's say."""
        return self.outcome is Outcome.TEMPORARY


@runtime_checkable
class Connection(Closing, Protocol):
    """One channel to the destination, owned by one thread at a time; ``with`` closes it."""

    @property
    def alive(self) -> bool:
        """False after the server dropped us; the next ``send`` reconnects."""
        ...

    def send(self, envelope_from: str, recipients: Sequence[str], raw: bytes) -> SendResult: ...


@runtime_checkable
class PollableConnection(Connection, Protocol):
    """A connection one thread can drive alongside others: start a mail, poll, step on.

    :meth:`begin` starts a transaction and returns its result at once if it ended there
    (else None); when :meth:`fileno` is ready for :attr:`events` (``select.POLLIN``, or
    ``POLLOUT`` while a command waits for room), :meth:`advance` writes or reads and steps
    on, and returns the result when the transaction ends; past :attr:`deadline`
    (``time.monotonic``) :meth:`expire` gives the transaction up. No call blocks.
    ``begin(..., hold=True)`` writes no more than the envelope's sender until :meth:`go`:
    nothing that names the recipient, and never the data.
    """

    deadline: float
    events: int

    def fileno(self) -> int: ...

    def begin(
        self, envelope_from: str, recipients: Sequence[str], raw: bytes, *, hold: bool = False
    ) -> SendResult | None: ...

    def go(self) -> SendResult | None: ...

    def advance(self) -> SendResult | None: ...

    def expire(self) -> SendResult: ...


@runtime_checkable
class Transport(Closing, Protocol):
    """What the send loop is given: a way to open connections, and a shared one.

    ``with`` (or :meth:`close`) closes every connection it opened.
    """

    @property
    def description(self) -> str:
        """Where mail goes, for logs and the report (``smtp 127.0.0.1:25 (starttls)``)."""
        ...

    def connect(self) -> Connection: ...

    def send(self, envelope_from: str, recipients: Sequence[str], raw: bytes) -> SendResult: ...


class BaseConnection(Closing, ABC):
    """What most connections share: alive until closed, nothing to release by default."""

    @property
    def alive(self) -> bool:
        return True

    @abstractmethod
    def send(self, envelope_from: str, recipients: Sequence[str], raw: bytes) -> SendResult: ...

    def close(self) -> None:  # most connections hold nothing to release
        """Release the connection; safe to call twice."""


class BaseTransport(Closing, ABC):
    """``send`` on one shared, lazily opened connection; ``close`` closes every connection.

    Connections handed out by :meth:`connect` are tracked, so closing the transport (or
    leaving its ``with`` block) never leaves an SMTP session open behind a crashed loop.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()  # bookkeeping only, never held during I/O
        self._shared_lock = threading.Lock()  # one mail at a time on the shared connection
        self._shared: BaseConnection | None = None
        self._opened: list[BaseConnection] = []

    @property
    @abstractmethod
    def description(self) -> str: ...

    @abstractmethod
    def _open(self) -> BaseConnection: ...

    def connect(self) -> BaseConnection:
        """A new independent connection (thread-safe); the caller owns and closes it."""
        conn = self._open()
        with self._lock:
            self._opened.append(conn)
        return conn

    def send(self, envelope_from: str, recipients: Sequence[str], raw: bytes) -> SendResult:
        """Send on the shared connection, opening it on first use (serialised by a lock)."""
        with self._shared_lock:
            if self._shared is None:
                self._shared = self.connect()
            return self._shared.send(envelope_from, recipients, raw)

    def close(self) -> None:
        with self._lock:
            opened, self._opened, self._shared = self._opened, [], None
        for conn in opened:
            conn.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.description}>"
