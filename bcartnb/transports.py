"""Where a composed mail goes: an SMTP server, a Maildir outbox, or nowhere (a dry run).

The send loop never builds a transport itself; it is handed one (httpx's
``Client(transport=...)``), so the same loop sends for real, fills an outbox to review, or
only counts. Every transport has the same two levels:

* ``transport.send(...)`` for the simple case: one connection, opened on first use and
  reused for every later mail (one SMTP session for a whole campaign);
* ``transport.connect()`` for parallel sending: each call opens an independent
  :class:`Connection` that one thread owns.

A send never raises for what happens to one mail: it returns a :class:`SendResult` whose
:class:`Outcome` tells the journal what to do. ``UNCERTAIN`` exists because a connection
that drops after the message body went out may have delivered it; resending by default
would mail the member twice. Only failures of the connection itself (unreachable server,
TLS, login) raise :class:`~bcartnb.exceptions.TransportError`, naming host:port and never
the password.
"""

from __future__ import annotations

import itertools
import os
import re
import smtplib
import socket
import ssl
import threading
import time
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from enum import StrEnum
from pathlib import Path
from types import TracebackType
from typing import Protocol, Self, runtime_checkable

from bcartnb.exceptions import SettingsError, TransportError
from bcartnb.privacy import scrub
from bcartnb.settings import Settings, SmtpSettings

__all__ = [
    "BaseConnection",
    "BaseTransport",
    "Connection",
    "DryRunTransport",
    "MaildirTransport",
    "Outcome",
    "PollableConnection",
    "SendResult",
    "SmtpConnection",
    "SmtpTransport",
    "StoredMail",
    "Transport",
    "read_maildir",
    "transport_from_settings",
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


@runtime_checkable
class Connection(Protocol):
    """One channel to the destination, owned by one thread at a time."""

    @property
    def alive(self) -> bool:
        """False after the server dropped us; the next ``send`` reconnects."""
        ...

    def send(self, envelope_from: str, recipients: Sequence[str], raw: bytes) -> SendResult: ...

    def close(self) -> None: ...

    def __enter__(self) -> Self: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


@runtime_checkable
class PollableConnection(Connection, Protocol):
    """A connection one thread can drive alongside others: start a mail, poll, step on.

    :meth:`begin` starts a transaction and returns its result at once if it ended there
    (else None); when :meth:`fileno` is readable, :meth:`advance` reads and steps on, and
    returns the result when the transaction ends; past :attr:`deadline` (``time.monotonic``)
    :meth:`expire` gives the transaction up.
    """

    deadline: float

    def fileno(self) -> int: ...

    def begin(
        self, envelope_from: str, recipients: Sequence[str], raw: bytes
    ) -> SendResult | None: ...

    def advance(self) -> SendResult | None: ...

    def expire(self) -> SendResult: ...


@runtime_checkable
class Transport(Protocol):
    """What the send loop is given: a way to open connections, and a shared one."""

    @property
    def description(self) -> str:
        """Where mail goes, for logs and the report (``smtp 127.0.0.1:25 (starttls)``)."""
        ...

    def connect(self) -> Connection: ...

    def send(self, envelope_from: str, recipients: Sequence[str], raw: bytes) -> SendResult: ...

    def close(self) -> None: ...

    def __enter__(self) -> Self: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


class BaseConnection(ABC):
    """Context-manager plumbing shared by every connection."""

    @property
    def alive(self) -> bool:
        return True

    @abstractmethod
    def send(self, envelope_from: str, recipients: Sequence[str], raw: bytes) -> SendResult: ...

    def close(self) -> None:  # noqa: B027 - most connections hold nothing to release
        """Release the connection; safe to call twice."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class BaseTransport(ABC):
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

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.description}>"


# --- SMTP --------------------------------------------------------------------------------

_LINE_END = re.compile(rb"\r\n|\r|\n")
_LEADING_DOT = re.compile(rb"(?m)^\.")
_MAX_REPLY = 64 * 1024  # no SMTP reply is this long: a confused or hostile peer
_IDLE, _MAIL, _RCPT, _DATA, _BODY, _RSET, _PIPE = range(7)  # where a transaction stands


def _wire_data(raw: bytes) -> bytes:
    """The message as SMTP needs it: every line ends in CRLF, a lone CR or LF included.

    A lone CR before a dot (``\\r.\\r\\n``) is the SMTP smuggling sequence: a server that
    takes it for the end of DATA reads what follows as commands, and no dot-stuffing sees a
    line start there. Counting first spares the substitution for the composer's bytes, which
    already end every line in CRLF.
    """
    crlf = raw.count(b"\r\n")
    if raw.count(b"\r") != crlf or raw.count(b"\n") != crlf:
        raw = _LINE_END.sub(b"\r\n", raw)
    return raw if raw.endswith(b"\r\n") else raw + b"\r\n"


def _needs_dots(data: bytes) -> bool:
    """A line starting with a dot must be doubled (RFC 5321 4.5.2); most mails have none.

    Only for :func:`_wire_data`'s output, where every line starts after a CRLF.
    """
    return data.startswith(b".") or b"\n." in data


#: A server's reply text past this is cut: it ends up in the journal, summaries and mail.
_REPLY_TEXT_MAX = 500


def _reply_text(reply: bytes | str) -> str:
    """A server's reply as one printable line: a hostile or broken server's ESC sequences,
    NULs and bidi controls never reach a terminal, the report or the admin copy."""
    text = reply.decode("utf-8", "replace") if isinstance(reply, bytes) else reply
    clean = " ".join("".join(c if c.isprintable() else " " for c in text).split())
    return clean if len(clean) <= _REPLY_TEXT_MAX else clean[: _REPLY_TEXT_MAX - 1] + "…"


def _check_envelope(envelope_from: str, recipients: Sequence[str]) -> None:
    """A bug upstream, not a member's problem: addresses were validated long before here.

    A line break would let an address smuggle extra SMTP commands (or stored headers).
    """
    if not recipients:
        raise ValueError("send() needs at least one recipient")
    for value in (envelope_from, *recipients):
        if "\r" in value or "\n" in value:
            raise ValueError(f"line break in an envelope address: {value!r}")


def _outcome_for(code: int) -> Outcome:
    return Outcome.PERMANENT if 500 <= code < 600 else Outcome.TEMPORARY


class SmtpTransport(BaseTransport):
    """SMTP with ``none`` / ``starttls`` / ``ssl`` security and optional AUTH, via smtplib.

    ``ssl_context`` defaults to the system's verifying context; tests pass one that trusts
    a throw-away CA. AUTH happens only when ``settings.user`` is set; a user without a
    password is refused here, before any connection, because the server's reply to an
    empty password would be far less clear.
    """

    def __init__(self, settings: SmtpSettings, *, ssl_context: ssl.SSLContext | None = None):
        super().__init__()
        if settings.user and not settings.password:
            raise SettingsError(
                f"smtp user {settings.user!r} is set but no password: "
                "set BCARTNB_SMTP_PASSWORD (or unset the user to send without AUTH)",
                ja="SMTP のユーザーが設定されていますが、パスワードがありません。"
                "環境変数 BCARTNB_SMTP_PASSWORD を設定してください。",
            )
        self.settings = settings
        self.ssl_context = ssl_context
        self.sessions_opened = 0

    @property
    def description(self) -> str:
        auth = f", user {self.settings.user}" if self.settings.user else ""
        return f"smtp {self.settings.address} ({self.settings.security}{auth})"

    def _open(self) -> SmtpConnection:
        return SmtpConnection(self)

    def _context(self) -> ssl.SSLContext:
        return self.ssl_context or ssl.create_default_context()

    def open_session(self) -> smtplib.SMTP:
        """A connected, secured and logged-in smtplib session, or TransportError."""
        s = self.settings
        smtp: smtplib.SMTP | None = None
        stage = "cannot connect"
        stage_ja = (
            f"SMTPサーバー {s.address} に接続できません。"
            "ホスト名とポート番号、サーバーが動いているかを確認してください。"
        )
        try:
            if s.security == "ssl":
                smtp = smtplib.SMTP_SSL(s.host, s.port, timeout=s.timeout, context=self._context())
            else:
                smtp = smtplib.SMTP(s.host, s.port, timeout=s.timeout)
            smtp.ehlo_or_helo_if_needed()
            if s.security == "starttls":
                if not smtp.has_extn("starttls"):
                    raise TransportError(
                        f"SMTP {s.address}: the server does not offer STARTTLS "
                        "(try security 'ssl' on port 465, or 'none' for a local relay)",
                        ja=f"SMTPサーバー {s.address} は STARTTLS に対応していません。"
                        "security を ssl（ポート465）に、社内の中継サーバーなら none に"
                        "してください。",
                    )
                stage = "STARTTLS failed"
                stage_ja = (
                    f"SMTPサーバー {s.address} で暗号化（STARTTLS）を始められません。"
                    "security とポート番号を確認してください。"
                )
                smtp.starttls(context=self._context())
                smtp.ehlo()
            if s.user:
                if not smtp.has_extn("auth"):
                    hint = " before TLS (use starttls or ssl)" if s.security == "none" else ""
                    raise TransportError(
                        f"SMTP {s.address}: the server does not offer AUTH{hint}",
                        ja=f"SMTPサーバー {s.address} はログイン（AUTH）を受け付けていません。"
                        + (
                            "暗号化の後で受け付けるサーバーなら security を starttls か ssl に"
                            "してください。"
                            if hint
                            else "user の設定を確認してください。"
                        ),
                    )
                stage = f"login as {s.user!r} failed"
                stage_ja = (
                    f"SMTPサーバー {s.address} に {s.user} でログインできません。"
                    "ユーザー名とパスワード（BCARTNB_SMTP_PASSWORD）を確認してください。"
                )
                smtp.login(s.user, s.password or "")
        except TransportError:
            _close_quietly(smtp)
            raise
        except ssl.SSLError as err:  # before OSError: SSLError is one
            _close_quietly(smtp)
            raise TransportError(
                f"SMTP {s.address}: TLS failed: {_reply_or_str(err)}",
                ja=f"SMTPサーバー {s.address} との暗号化（TLS）に失敗しました。"
                "security（starttls / ssl）とポート番号、サーバー証明書を確認してください。",
            ) from err
        except OSError as err:  # smtplib.SMTPException is an OSError too
            _close_quietly(smtp)
            reply = scrub(_reply_or_str(err), [s.password])  # a server may quote the AUTH
            raise TransportError(f"SMTP {s.address}: {stage}: {reply}", ja=stage_ja) from err
        with self._lock:
            self.sessions_opened += 1
        return smtp


def _reply_or_str(err: BaseException) -> str:
    if isinstance(err, smtplib.SMTPResponseException):
        return f"{err.smtp_code} {_reply_text(err.smtp_error)}"
    if isinstance(err, ssl.SSLCertVerificationError):
        return f"certificate not trusted ({err.verify_message})"
    if isinstance(err, ssl.SSLError) and err.reason:
        return err.reason
    return " ".join(str(err).split()) or type(err).__name__


def _close_quietly(smtp: smtplib.SMTP | None) -> None:
    if smtp is not None:
        smtp.close()


class SmtpConnection(BaseConnection):
    """One SMTP session, reused mail after mail; reopened on the next send after a drop.

    smtplib opens the session (TLS, EHLO, AUTH: rare and delicate, well served by the
    standard library). Each mail's transaction is then driven here, straight on the socket,
    as a small state machine: :meth:`begin` writes ``MAIL FROM`` and returns, :meth:`advance`
    reads a reply and writes the next command (when the server offers PIPELINING, the whole
    envelope goes in one write: two round trips fewer a mail). So ONE thread can keep K
    connections busy by polling their sockets (the send loop does), with no thread
    hand-overs and none of smtplib's per-mail address parsing and whole-body regular
    expressions. :meth:`send` is the same machine run to the end on one connection.
    """

    def __init__(self, transport: SmtpTransport):
        self.transport = transport
        self._timeout = transport.settings.timeout
        self._smtp: smtplib.SMTP | None = None
        self._sock: socket.socket | None = None
        self._features: dict[str, str] = {}
        self._buf = b""
        self._step = _IDLE
        self._encoding = "ascii"
        self._rcpts: list[str] = []
        self._next_rcpt = 0
        self._refused: dict[str, tuple[int, str]] = {}
        self._data = b""
        self._after_rset: SendResult | None = None
        self._mail_reply: tuple[int, str] = (0, "")  # pipelined: MAIL's, awaited until DATA's
        self.deadline = 0.0
        """When the reply awaited now is overdue (``time.monotonic()``)."""
        self._open()

    def _open(self) -> None:
        smtp = self.transport.open_session()
        self._smtp, self._sock, self._buf = smtp, smtp.sock, b""
        self._features = dict(smtp.esmtp_features)

    @property
    def alive(self) -> bool:
        return self._smtp is not None

    @property
    def busy(self) -> bool:
        """A transaction is running: its reply is awaited."""
        return self._step != _IDLE

    def fileno(self) -> int:
        """The socket to poll for the awaited reply (it changes when the session is reopened)."""
        if self._sock is None:
            raise ValueError("the connection is closed")
        return self._sock.fileno()

    def close(self) -> None:
        smtp, self._smtp, self._sock = self._smtp, None, None
        if smtp is None:
            return
        try:
            if self._step == _IDLE and not self._buf:
                smtp.quit()
        except (smtplib.SMTPException, OSError):
            pass
        finally:
            self._step = _IDLE
            smtp.close()

    def _drop(self) -> None:
        smtp, self._smtp, self._sock = self._smtp, None, None
        self._step, self._buf = _IDLE, b""
        _close_quietly(smtp)

    def send(self, envelope_from: str, recipients: Sequence[str], raw: bytes) -> SendResult:
        """One transaction. Raises TransportError only if a needed reconnect fails."""
        result = self.begin(envelope_from, recipients, raw)
        while result is None:
            result = self.advance()  # the socket's timeout bounds each wait
        return result

    def begin(self, envelope_from: str, recipients: Sequence[str], raw: bytes) -> SendResult | None:
        """Start one transaction; the result now if it ended at once, else None (poll, advance).

        Raises TransportError only if a needed reconnect fails.
        """
        if self._step != _IDLE:
            raise RuntimeError("a transaction is already running on this connection")
        _check_envelope(envelope_from, recipients)
        if self._smtp is None:
            self._open()
        data = _wire_data(raw)
        options = f" SIZE={len(data)}" if "size" in self._features else ""
        self._encoding = "ascii"
        if not all(a.isascii() for a in (envelope_from, *recipients)):
            if "smtputf8" not in self._features:
                return SendResult(
                    Outcome.PERMANENT,
                    None,
                    "non-ASCII address but the server does not offer SMTPUTF8",
                )
            options += " SMTPUTF8"
            self._encoding = "utf-8"
        self._rcpts, self._next_rcpt, self._refused = list(recipients), 0, {}
        self._data = _LEADING_DOT.sub(b"..", data) if _needs_dots(data) else data
        mail_from = f"MAIL FROM:<{envelope_from}>{options}"
        if "pipelining" in self._features:
            # RFC 2920: the envelope in one write, the replies read in order; saves two
            # round trips a mail, which over the internet is most of the time a mail takes.
            lines = [mail_from, *(f"RCPT TO:<{r}>" for r in self._rcpts), "DATA"]
            return self._command("\r\n".join(lines), _PIPE)
        return self._command(mail_from, _MAIL)

    def advance(self) -> SendResult | None:
        """Read what the server sent and step on: the result when the transaction ends, else None.

        Call it when the socket is readable (or to block until it is: the socket has the
        settings' timeout).
        """
        sock = self._sock
        if sock is None or self._step == _IDLE:
            raise RuntimeError("no transaction is running on this connection")
        try:
            chunk = sock.recv(65536)
            if isinstance(sock, ssl.SSLSocket):
                while sock.pending():
                    chunk += sock.recv(65536)
        except OSError as err:  # timeouts and TLS errors too
            return self._lost(_reply_or_str(err))
        if not chunk:
            return self._lost("the server closed the connection")
        self._buf += chunk
        while True:
            reply = self._reply()
            if reply is None:
                if len(self._buf) > _MAX_REPLY:
                    return self._lost("the server's reply is too long")
                return None
            result = self._on_reply(*reply)
            if result is not None or self._step == _IDLE or not self._buf:
                return result

    def expire(self) -> SendResult:
        """The awaited reply is overdue (:attr:`deadline`): give the transaction up."""
        return self._lost(f"no reply within {self._timeout:g} s")

    def _command(self, line: str, step: int) -> SendResult | None:
        self._step = step
        self.deadline = time.monotonic() + self._timeout
        try:
            assert self._sock is not None
            self._sock.sendall(line.encode(self._encoding) + b"\r\n")
        except OSError as err:
            return self._lost(_reply_or_str(err))
        return None

    def _reply(self) -> tuple[int, str] | None:
        """The next complete reply in the buffer (code, text), or None until it has arrived."""
        buf, start = self._buf, 0
        while True:
            end = buf.find(b"\n", start)
            if end < 0:
                return None
            if buf[start + 3 : start + 4] != b"-":
                break
            start = end + 1
        lines, self._buf = buf[: end + 1], buf[end + 1 :]
        code = lines[:3]
        if not code.isdigit():
            return -1, _reply_text(lines)
        return int(code), _reply_text(b" ".join(line[4:] for line in lines.split(b"\n")))

    def _on_reply(self, code: int, text: str) -> SendResult | None:
        step = self._step
        if code < 0:
            return self._lost(f"unreadable reply {text[:80]!r}")
        if step == _MAIL:
            if code != 250:
                return self._refused_sender(code, text)
            return self._command(f"RCPT TO:<{self._rcpts[0]}>", _RCPT)
        if step == _RCPT:
            rcpt = self._rcpts[self._next_rcpt]
            if code not in (250, 251):
                self._refused[rcpt] = (code, text)
            if code == 421:
                self._drop()
                return SendResult(Outcome.TEMPORARY, code, text, self._refused)
            self._next_rcpt += 1
            if self._next_rcpt < len(self._rcpts):
                return self._command(f"RCPT TO:<{self._rcpts[self._next_rcpt]}>", _RCPT)
            if len(self._refused) == len(self._rcpts):
                return self._reset(self._all_refused())
            return self._command("DATA", _DATA)
        if step == _PIPE:
            return self._on_pipelined_reply(code, text)
        if step == _DATA:
            if code != 354:
                return self._refused_after(code, text)
            return self._send_body()
        if step == _BODY:
            self._step = _IDLE
            if code != 250:
                return self._refused_after(code, text)
            return SendResult(Outcome.SENT, code, text, self._refused)
        # _RSET: the transaction's result was decided before the reset
        result, self._after_rset = self._after_rset, None
        self._step = _IDLE
        if code != 250:
            self._drop()
        assert result is not None
        return result

    def _all_refused(self) -> SendResult:
        """Every recipient refused: retry only if some refusal was temporary."""
        replies = list(self._refused.values())
        code, text = next((r for r in replies if r[0] < 500), replies[0])
        return SendResult(_outcome_for(code), code, text, self._refused)

    def _send_body(self) -> SendResult | None:
        self._step = _BODY  # from here on a drop leaves the outcome uncertain
        self.deadline = time.monotonic() + self._timeout
        try:
            assert self._sock is not None
            self._sock.sendall(self._data + b".\r\n")
        except OSError as err:
            return self._lost(_reply_or_str(err))
        return None

    def _on_pipelined_reply(self, code: int, text: str) -> SendResult | None:
        """Replies to MAIL, each RCPT and DATA, in that order; decided at DATA's."""
        n = len(self._rcpts)
        i, self._next_rcpt = self._next_rcpt, self._next_rcpt + 1
        if code == 421:  # the server is closing: nothing more will come
            self._drop()
            return SendResult(Outcome.TEMPORARY, code, text, self._refused)
        if i == 0:
            self._mail_reply = (code, text)
            if code == 530:
                return self._refused_sender(code, text)
            return None
        mail_code, mail_text = self._mail_reply
        if i <= n:
            if mail_code == 250 and code not in (250, 251):
                self._refused[self._rcpts[i - 1]] = (code, text)
            return None
        if mail_code != 250:
            result = SendResult(_outcome_for(mail_code), mail_code, mail_text, {})
        elif len(self._refused) == n:
            result = self._all_refused()
        elif code == 354:
            return self._send_body()
        else:
            return self._refused_after(code, text)
        if code == 354:
            # A server that says "go ahead" with no transaction to go ahead with: leave
            # rather than send anything it might deliver.
            self._drop()
            return result
        return self._reset(result)

    def _lost(self, why: str) -> SendResult:
        step = self._step
        self._drop()
        if step == _RSET and self._after_rset is not None:
            result, self._after_rset = self._after_rset, None
            return result
        return SendResult(
            Outcome.UNCERTAIN if step == _BODY else Outcome.TEMPORARY,
            None,
            f"connection lost: {why}",
        )

    def _refused_sender(self, code: int, text: str) -> SendResult | None:
        if code == 530 and "starttls" in text.lower():
            # "Must issue a STARTTLS command first": the cure is TLS, not a password
            self._drop()
            s = self.transport.settings
            raise TransportError(
                f"SMTP {s.address}: the server requires STARTTLS first ({code} {text}): "
                'set security = "starttls"',
                ja=f"SMTPサーバー {s.address} は暗号化（STARTTLS）が必要です。"
                'security を "starttls" にしてください。',
            )
        if code == 530:
            # "Authentication required" is not about this mail: every mail would fail alike.
            self._drop()
            s = self.transport.settings
            raise TransportError(
                f"SMTP {s.address}: the server requires AUTH ({code} {text}): "
                "set the smtp user and BCARTNB_SMTP_PASSWORD",
                ja=f"SMTPサーバー {s.address} はログインが必要です。"
                "smtp の user と BCARTNB_SMTP_PASSWORD を設定してください。",
            )
        return self._refused_after(code, text)

    def _refused_after(self, code: int, text: str) -> SendResult | None:
        result = SendResult(_outcome_for(code), code, text, self._refused)
        if code == 421:
            self._drop()
            return result
        return self._reset(result)

    def _reset(self, result: SendResult) -> SendResult | None:
        """RSET before the next transaction; ``result`` is returned once the server agreed."""
        self._after_rset = result
        return self._command("RSET", _RSET)


# --- Maildir outbox ----------------------------------------------------------------------

_counter = itertools.count()
_HOST = socket.gethostname().replace("/", r"\057").replace(":", r"\072") or "localhost"


def _envelope_header(envelope_from: str, recipients: Sequence[str], eol: bytes) -> bytes:
    """Exactly two lines, so a reader can strip them and get the received bytes back."""
    _check_envelope(envelope_from, recipients)
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


# --- dry run -----------------------------------------------------------------------------


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


def transport_from_settings(
    settings: Settings | SmtpSettings, *, ssl_context: ssl.SSLContext | None = None
) -> SmtpTransport:
    """The shop's SMTP server as configured (file + environment); nothing connects yet."""
    smtp = settings.smtp if isinstance(settings, Settings) else settings
    return SmtpTransport(smtp, ssl_context=ssl_context)
