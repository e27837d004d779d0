"""SMTP: sessions opened by smtplib, each mail's transaction driven straight on the socket.

:class:`SmtpTransport` holds the settings and counts sessions; each :class:`SmtpConnection`
is one session reused mail after mail, its transaction a small state machine that one
thread can poll on many connections at once (the send loop does). Only failures of the
connection itself (unreachable server, TLS, login) raise
:class:`~bcartnb.exceptions.TransportError`, naming host:port and never the password.
"""

from __future__ import annotations

import math
import select
import smtplib
import socket
import ssl
import time
from collections.abc import Sequence

from bcartnb.exceptions import SettingsError, TransportError
from bcartnb.settings import SmtpSettings
from bcartnb.transports.base import BaseConnection, BaseTransport, Outcome, SendResult
from bcartnb.transports.session import open_session
from bcartnb.transports.wire import (
    LEADING_DOT,
    check_envelope,
    close_quietly,
    needs_dots,
    outcome_for,
    reply_or_str,
    reply_text,
    wire_data,
)

__all__ = ["SmtpConnection", "SmtpTransport"]

_MAX_REPLY = 64 * 1024  # no SMTP reply is this long: a confused or hostile peer
_IDLE, _MAIL, _RCPT, _DATA, _BODY, _RSET, _PIPE = range(7)  # where a transaction stands
#: a write the socket cannot take now: wait until it can (or, TLS, until a record comes in)
_NOT_NOW = (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError)


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
                ja=f"SMTP のユーザー（{settings.user!r}）が設定されていますが"
                "、パスワードがありません。"
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

    def open_session(self) -> smtplib.SMTP:
        """A connected, secured and logged-in smtplib session, or TransportError."""
        smtp = open_session(self.settings, self.ssl_context)
        with self._lock:
            self.sessions_opened += 1
        return smtp


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

    Once the session is open its socket is non-blocking: the caller has polled it already,
    and a socket with a timeout would poll again before every read and write (two system
    calls a command, ~77,000 in a 10,000-mail run). A command the socket cannot take whole
    waits in :attr:`events` (``POLLOUT``) for the rest; every wait is bounded by
    :attr:`deadline`, which the poller enforces (:meth:`send`'s own poll included).
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
        #: begun with hold=True, not let go yet: what go() writes (a pipelined envelope's
        #: RCPTs and DATA; nothing without PIPELINING, where MAIL's reply leads on)
        self._held: bytes | None = None
        self._out: bytes | memoryview = b""  # what the socket has not taken yet
        self.deadline = 0.0
        """When the reply awaited now is overdue (``time.monotonic()``)."""
        self.events = select.POLLIN
        """What to poll :meth:`fileno` for: ``POLLOUT`` while a command is only partly written."""
        self._open()

    def _open(self) -> None:
        smtp = self.transport.open_session()
        sock = smtp.sock
        assert sock is not None  # open_session returns a connected session
        sock.setblocking(False)  # polled by the caller: no second poll per call
        self._smtp, self._sock, self._buf, self._out = smtp, sock, b"", b""
        self.events = select.POLLIN
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
        smtp, sock, self._smtp, self._sock = self._smtp, self._sock, None, None
        if smtp is None:
            return
        try:
            if self._step == _IDLE and not self._buf and sock is not None:
                sock.settimeout(self._timeout)  # smtplib's QUIT blocks, bounded
                smtp.quit()
        except (smtplib.SMTPException, OSError):
            pass
        finally:
            self._step, self._held = _IDLE, None
            smtp.close()

    def _drop(self) -> None:
        smtp, self._smtp, self._sock = self._smtp, None, None
        self._step, self._buf, self._out, self._held = _IDLE, b"", b"", None
        close_quietly(smtp)

    def send(self, envelope_from: str, recipients: Sequence[str], raw: bytes) -> SendResult:
        """One transaction. Raises TransportError only if a needed reconnect fails."""
        result = self.begin(envelope_from, recipients, raw)
        poller: select.poll | None = None
        while result is None:
            left = self.deadline - time.monotonic()
            if left <= 0:
                return self.expire()
            if poller is None:
                poller = select.poll()
            poller.register(self.fileno(), self.events)  # re-registering updates the events
            poller.poll(math.ceil(left * 1000))
            result = self.advance()  # None again when it woke for nothing
        return result

    def begin(
        self,
        envelope_from: str,
        recipients: Sequence[str],
        raw: bytes,
        *,
        hold: bool = False,
    ) -> SendResult | None:
        """Start one transaction; the result now if it ended at once, else None (poll, advance).

        ``hold``: write ``MAIL FROM`` alone, nothing more until :meth:`go` (the send loop
        writes it while it commits the mail's hand-over). Raises TransportError only if a
        needed reconnect fails.
        """
        if self._step != _IDLE:
            raise RuntimeError("a transaction is already running on this connection")
        check_envelope(envelope_from, recipients)
        if self._smtp is None:
            self._open()
        data = wire_data(raw)
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
        self._data = LEADING_DOT.sub(b"..", data) if needs_dots(data) else data
        mail_from = f"MAIL FROM:<{envelope_from}>{options}"
        if hold:
            self._held = b""
        if "pipelining" in self._features:
            # RFC 2920: the envelope in one write, the replies read in order; saves two
            # round trips a mail, which over the internet is most of the time a mail takes.
            lines = [mail_from, *(f"RCPT TO:<{r}>" for r in self._rcpts), "DATA"]
            if hold:
                self._held = "".join(f"{line}\r\n" for line in lines[1:]).encode(self._encoding)
                return self._command(mail_from, _PIPE)
            return self._command("\r\n".join(lines), _PIPE)
        return self._command(mail_from, _MAIL)

    def go(self) -> SendResult | None:
        """Let a transaction begun with ``hold=True`` go on; its result if that ends it.

        With PIPELINING the recipients and ``DATA`` are written now, still ahead of every
        reply (the replies come in order whatever the writes were); without it the reply
        to ``MAIL FROM``, read after this, leads on as always.
        """
        held, self._held = self._held, None
        if held is None or self._step == _IDLE:  # not held, or the write already failed
            return None
        self.deadline = time.monotonic() + self._timeout  # not the time our commit took
        if not held:
            return None
        self._out = bytes(self._out) + held if self._out else held
        return self._flush()

    def advance(self) -> SendResult | None:
        """Write what is pending, read what the server sent and step on: the result when the
        transaction ends, else None.

        Call it when the socket is ready for :attr:`events`; called early, it returns None.
        """
        sock = self._sock
        if sock is None or self._step == _IDLE:
            raise RuntimeError("no transaction is running on this connection")
        if self._held is not None:  # no reply is read before the rest is let go
            raise RuntimeError("a transaction begun with hold=True was not let go")
        if self._out:
            result = self._flush()
            if result is not None or self._out:
                return result
        try:
            chunk = sock.recv(65536)
            if isinstance(sock, ssl.SSLSocket):
                while sock.pending():  # decrypted bytes already here: no wait
                    chunk += sock.recv(65536)
        except _NOT_NOW:  # nothing yet (woken to write, or half a TLS record)
            chunk = None
        except OSError as err:  # TLS errors too
            return self._lost(reply_or_str(err))
        if chunk is not None:
            if not chunk:
                return self._lost("the server closed the connection")
            self._buf += chunk
        # one reply at a time; never past a command still being written
        while self._buf and not self._out:
            reply = self._reply()
            if reply is None:
                if len(self._buf) > _MAX_REPLY:
                    return self._lost("the server's reply is too long")
                return None
            result = self._on_reply(*reply)
            if result is not None or self._step == _IDLE:
                return result
        return None

    def expire(self) -> SendResult:
        """The awaited reply is overdue (:attr:`deadline`): give the transaction up."""
        what = "the server did not take the data" if self._out else "no reply"
        return self._lost(f"timed out: {what} within {self._timeout:g} s")

    def _command(self, line: str, step: int) -> SendResult | None:
        self._step = step
        self.deadline = time.monotonic() + self._timeout
        self._out = line.encode(self._encoding) + b"\r\n"
        return self._flush()

    def _flush(self) -> SendResult | None:
        """Write as much of the pending command as the socket takes now; the rest waits for
        :attr:`events` (a TLS write is retried with the same bytes, as OpenSSL requires)."""
        out, sock = self._out, self._sock
        assert sock is not None
        try:
            while out:
                n = sock.send(out)
                out = out[n:] if n < len(out) else b""
                if out and not isinstance(out, memoryview):
                    out = memoryview(out)  # a large body: no copy per partial write
        except (BlockingIOError, ssl.SSLWantWriteError):
            self._out, self.events = out, select.POLLOUT
            return None
        except ssl.SSLWantReadError:  # TLS needs a record from the server first
            self._out, self.events = out, select.POLLIN
            return None
        except OSError as err:
            return self._lost(reply_or_str(err))
        self._out, self.events = b"", select.POLLIN
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
            return -1, reply_text(lines)
        if not start:  # one line, as nearly every reply: its text is what follows the code
            return int(code), reply_text(lines[4:])
        return int(code), reply_text(b" ".join(line[4:] for line in lines.split(b"\n")))

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
        return SendResult(outcome_for(code), code, text, self._refused)

    def _send_body(self) -> SendResult | None:
        self._step = _BODY  # from here on a drop leaves the outcome uncertain
        self.deadline = time.monotonic() + self._timeout
        self._out = self._data + b".\r\n"
        return self._flush()

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
            result = SendResult(outcome_for(mail_code), mail_code, mail_text, {})
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
        result = SendResult(outcome_for(code), code, text, self._refused)
        if code == 421:
            self._drop()
            return result
        return self._reset(result)

    def _reset(self, result: SendResult) -> SendResult | None:
        """RSET before the next transaction; ``result`` is returned once the server agreed."""
        self._after_rset = result
        return self._command("RSET", _RSET)
