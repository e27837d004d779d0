"""The Maildir outbox: every mail one file, kept exactly as it would have been sent.

Nothing leaves the machine; a reviewer opens the folder in a mail client. The sink
(:mod:`bcartnb.sink`) stores through the same transport, so the outbox's files and the
sink's have one format, and :func:`read_maildir` reads both back as :class:`StoredMail`.
"""

from __future__ import annotations

import itertools
import os
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path

from bcartnb.exceptions import TransportError
from bcartnb.transports.base import BaseConnection, BaseTransport, Outcome, SendResult
from bcartnb.transports.wire import check_envelope

__all__ = ["MaildirTransport", "StoredMail", "read_maildir"]


@dataclass(frozen=True)
class StoredMail:
    """A mail kept by the Maildir outbox, the sink or a dry run: envelope plus exact bytes."""

    envelope_from: str
    recipients: tuple[str, ...]
    raw: bytes
    path: Path | None = None

    @property
    def message(self) -> EmailMessage:
        return BytesParser(policy=policy.default).parsebytes(self.raw)


_counter = itertools.count()
_HOST = socket.gethostname().replace("/", r"\057").replace(":", r"\072") or "localhost"


def _envelope_header(envelope_from: str, recipients: Sequence[str], eol: bytes) -> bytes:
    """Exactly two lines, so a reader can strip them and get the received bytes back."""
    check_envelope(envelope_from, recipients)
    return (
        f"Return-Path: <{envelope_from}>".encode() + eol
        + f"X-Envelope-To: {', '.join(recipients)}".encode() + eol
    )  # fmt: skip


class MaildirTransport(BaseTransport):
    """An outbox: every mail becomes one file in a Maildir, nothing leaves the machine.

    The stored file is the mail's bytes exactly as given, preceded by two lines,
    ``Return-Path: <from>`` and ``X-Envelope-To: a, b``, so a reviewer's mail client shows
    who would have received it (a campaign's To: header may differ from the envelope).
    mailbox.Maildir would rewrite CRLF to LF, so files are written here (tmp/, fsync,
    rename into new/, as the Maildir rules ask).
    """

    def __init__(self, path: str | os.PathLike[str], *, fsync: bool = True):
        super().__init__()
        self.path = Path(path)
        self.fsync = fsync
        try:
            # an existing empty folder is fine too (mailbox.Maildir would leave it bare)
            for sub in ("tmp", "new", "cur"):
                (self.path / sub).mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise TransportError(
                f"Maildir {self.path}: cannot create: {err.strerror}",
                ja=f"Maildir {self.path} を作れません。書き込めるか確かめてください。",
            ) from err

    @property
    def description(self) -> str:
        return f"maildir {self.path}"

    def _open(self) -> BaseConnection:
        return _MaildirConnection(self)

    def deliver(self, envelope_from: str, recipients: Sequence[str], raw: bytes) -> Path:
        """Store one mail; returns its file under ``new/``."""
        eol = b"\r\n" if b"\r\n" in raw else b"\n"
        content = _envelope_header(envelope_from, recipients, eol) + raw
        name = f"{time.time_ns()}.P{os.getpid()}Q{next(_counter)}.{_HOST}"
        tmp = self.path / "tmp" / name
        final = self.path / "new" / name
        try:
            with open(tmp, "xb") as fh:
                fh.write(content)
                if self.fsync:
                    fh.flush()
                    os.fsync(fh.fileno())
            os.rename(tmp, final)
        except OSError as err:
            tmp.unlink(missing_ok=True)
            raise TransportError(
                f"Maildir {self.path}: cannot store a mail: {err}",
                ja=f"Maildir {self.path} にメールを保存できません。",
            ) from err
        return final


class _MaildirConnection(BaseConnection):
    def __init__(self, transport: MaildirTransport):
        self.transport = transport

    def send(self, envelope_from: str, recipients: Sequence[str], raw: bytes) -> SendResult:
        path = self.transport.deliver(envelope_from, recipients, raw)
        return SendResult(Outcome.SENT, 250, f"stored {path.name}")


def read_maildir(path: str | os.PathLike[str]) -> list[StoredMail]:
    """Every mail in a Maildir written by the outbox or the sink, oldest first.

    The two envelope lines are split off again, so ``raw`` is exactly what was sent.
    """
    root = Path(path)
    if not (root / "new").is_dir() or not (root / "cur").is_dir():
        raise TransportError(
            f"Maildir {root}: not a Maildir (no new/ and cur/)",
            ja=f"{root} は Maildir ではありません（new/ と cur/ がありません）。",
        )
    files = [f for sub in ("new", "cur") for f in (root / sub).iterdir() if f.name[0] != "."]
    mails = []
    for file in sorted(files, key=lambda f: f.name):
        content = file.read_bytes()
        envelope_from, raw = "", content
        recipients: tuple[str, ...] = ()
        first, _, rest = content.partition(b"\n")
        second, _, body = rest.partition(b"\n")
        if first.startswith(b"Return-Path: <") and second.startswith(b"X-Envelope-To: "):
            envelope_from = first.rstrip(b"\r")[len(b"Return-Path: <") : -1].decode()
            to = second.rstrip(b"\r")[len(b"X-Envelope-To: ") :].decode()
            recipients = tuple(to.split(", ")) if to else ()
            raw = body
        mails.append(StoredMail(envelope_from, recipients, raw, file))
    return mails
