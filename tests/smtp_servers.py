"""Real SMTP servers for the tests: aiosmtpd on 127.0.0.1, with scripted faults.

Used through the fixtures in ``conftest.py`` (``smtp_server``, ``tls_ca``); delivery tests
reuse them for retries, drops mid-campaign and resume after SIGKILL. Nothing here mocks
smtplib: the transport under test talks to a real server over a real socket.

Counting is server-wide and 1-based: the n-th ``MAIL FROM`` the server sees is
"transaction n", whichever connection it came on. Faults are decided by those numbers, so
a test states exactly which attempt fails:

* ``temp_fail=N``: transactions 1..N get ``temp_reply`` (451, or 421 which also closes the
  connection, as real servers do) at ``temp_stage`` (MAIL, RCPT or DATA);
* ``reject={addr}``: those recipients get ``reject_reply`` (550) at RCPT, every time;
  ``defer={addr: n}``: the first n RCPTs of that address get 451;
* ``drop_at={n}``: transaction n loses its connection; at ``drop_stage="MAIL"`` before
  anything is sent (the client's outcome is TEMPORARY), at ``"DATA"`` after the server has
  received and recorded the mail, without replying (UNCERTAIN: it did arrive);
* ``hold_after=n``: the mails after the n-th accepted one are recorded, then held without
  a reply until :meth:`TestServer.release` (or the server stops): a test can SIGKILL a
  sending subprocess at a known point, or see a client time out.
* ``data_reply``: the reply to the message data (lines joined by CRLF make a multi-line one).
* ``pipelining=True``: EHLO offers PIPELINING (RFC 2920), as Postfix and most providers do;
  each mail then records whether its envelope came in one write (``Received.pipelined``).

:class:`RawRecorder` is the other kind: a few lines of SMTP on a socket that keep the
message data exactly as it crossed the wire, dot-stuffing and every CR and LF included.
"""

from __future__ import annotations

import asyncio
import socketserver
import ssl
import threading
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trustme
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from bcartnb.settings import SmtpSettings
from bcartnb.sink import SmtpServerThread
from bcartnb.transports import SmtpTransport

__all__ = ["Faults", "RawRecorder", "Received", "TestServer", "TlsFiles", "make_tls_files"]


@dataclass(frozen=True)
class Received:
    """One mail as the server got it."""

    transaction: int
    connection: int
    envelope_from: str
    recipients: tuple[str, ...]
    raw: bytes
    auth_user: str | None
    tls: bool
    pipelined: bool = False  # the RCPT command had already arrived when MAIL was handled


@dataclass(frozen=True)
class Faults:
    temp_fail: int = 0
    temp_reply: str = "451 4.3.0 Try again later"
    temp_stage: str = "MAIL"
    reject: Collection[str] = ()
    reject_reply: str = "550 5.1.1 User unknown"
    defer: Mapping[str, int] = field(default_factory=dict)
    drop_at: Collection[int] = ()
    drop_stage: str = "MAIL"
    hold_after: int | None = None
    data_reply: str = "250 2.0.0 OK queued"
    pipelining: bool = False

    def __post_init__(self) -> None:
        if self.temp_stage not in ("MAIL", "RCPT", "DATA"):
            raise ValueError(f"temp_stage must be MAIL, RCPT or DATA, not {self.temp_stage!r}")
        if self.drop_stage not in ("MAIL", "DATA"):
            raise ValueError(f"drop_stage must be MAIL or DATA, not {self.drop_stage!r}")


@dataclass(frozen=True)
class TlsFiles:
    """A throw-away CA and a server certificate for 127.0.0.1 / localhost."""

    server_context: ssl.SSLContext
    client_context: ssl.SSLContext
    ca_file: Path


def make_tls_files(directory: Path) -> TlsFiles:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(server)
    client = ssl.create_default_context()
    ca.configure_trust(client)
    ca_file = directory / "test-ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    return TlsFiles(server, client, ca_file)


class _ScriptedHandler:
    """Records every mail and plays the faults. Runs in the server's event-loop thread."""

    def __init__(self, faults: Faults, users: Mapping[str, str] | None):
        self.faults = faults
        self.users = dict(users or {})
        self.lock = threading.Condition()
        self.received: list[Received] = []
        self.transactions = 0
        self.accepted = 0
        self.deferred: dict[str, int] = {}
        self.connections: dict[int, int] = {}
        self._keep: list[SMTP] = []  # keeps id()s unique while the server runs
        self.released = threading.Event()
        self.held = 0
        self.auth_required = False

    # --- helpers -------------------------------------------------------------------------
    def _connection(self, server: SMTP) -> int:
        with self.lock:
            if id(server) not in self.connections:
                self._keep.append(server)
                self.connections[id(server)] = len(self.connections) + 1
            return self.connections[id(server)]

    async def _drop(self, server: SMTP, *, flush: bool = False) -> str:
        """Lose the connection without (another) reply; the client sees EOF."""
        assert server.transport is not None
        if flush:
            server.transport.close()  # after a 421: let the reply out first
        else:
            server.transport.abort()
        await asyncio.Event().wait()  # cancelled by connection_lost
        raise AssertionError("unreachable")

    async def _temp(self, server: SMTP, stage: str, envelope: Envelope) -> str | None:
        txn = envelope.bcartnb_txn  # type: ignore[attr-defined]
        if self.faults.temp_stage != stage or txn > self.faults.temp_fail:
            return None
        reply = self.faults.temp_reply
        if reply.startswith("421"):
            await server.push(reply)
            return await self._drop(server, flush=True)
        return reply

    # --- aiosmtpd hooks ------------------------------------------------------------------
    async def handle_EHLO(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        hostname: str,
        responses: list[str],
    ) -> list[str]:
        session.host_name = hostname
        if self.faults.pipelining:
            responses.insert(len(responses) - 1, "250-PIPELINING")
        return responses

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if self.auth_required and not session.authenticated:
            return "530 5.7.0 Authentication required"
        conn = self._connection(server)
        with self.lock:
            self.transactions += 1
            txn = self.transactions
        envelope.bcartnb_txn = txn  # type: ignore[attr-defined]
        envelope.bcartnb_conn = conn  # type: ignore[attr-defined]
        waiting = bytes(getattr(server._reader, "_buffer", b""))
        envelope.bcartnb_pipelined = b"RCPT TO" in waiting.upper()  # type: ignore[attr-defined]
        if txn in self.faults.drop_at and self.faults.drop_stage == "MAIL":
            return await self._drop(server)
        reply = await self._temp(server, "MAIL", envelope)
        if reply:
            return reply
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 2.1.0 OK"

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if address in self.faults.reject:
            return self.faults.reject_reply
        with self.lock:
            seen = self.deferred.get(address, 0)
            self.deferred[address] = seen + 1
        if seen < self.faults.defer.get(address, 0):
            return "451 4.2.0 Deferred, try again"
        reply = await self._temp(server, "RCPT", envelope)
        if reply:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        reply = await self._temp(server, "DATA", envelope)
        if reply:
            return reply
        txn = envelope.bcartnb_txn  # type: ignore[attr-defined]
        login = session.auth_data.login.decode() if session.auth_data is not None else None
        mail = Received(
            transaction=txn,
            connection=envelope.bcartnb_conn,  # type: ignore[attr-defined]
            envelope_from=envelope.mail_from or "",
            recipients=tuple(envelope.rcpt_tos),
            raw=envelope.original_content or b"",
            auth_user=login,
            tls=session.ssl is not None,
            pipelined=envelope.bcartnb_pipelined,  # type: ignore[attr-defined]
        )
        with self.lock:
            self.received.append(mail)
            self.lock.notify_all()
            hold = self.faults.hold_after is not None and self.accepted >= self.faults.hold_after
            if not hold:
                self.accepted += 1
        if txn in self.faults.drop_at and self.faults.drop_stage == "DATA":
            return await self._drop(server)
        if hold:
            with self.lock:
                self.held += 1
                self.lock.notify_all()
            while not self.released.is_set():
                await asyncio.sleep(0.01)
            with self.lock:
                self.accepted += 1
        return self.faults.data_reply

    def authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        if isinstance(data, LoginPassword):
            user, password = data.login.decode(), data.password.decode()
            if user in self.users and self.users[user] == password:
                return AuthResult(success=True, auth_data=data)
        return AuthResult(success=False, handled=False)


class TestServer:
    """A running aiosmtpd server with a recording, fault-playing handler."""

    __test__ = False  # not a test class, despite the name

    def __init__(
        self,
        *,
        faults: Faults | None = None,
        security: str = "none",
        tls: TlsFiles | None = None,
        users: Mapping[str, str] | None = None,
        auth_required: bool = False,
        require_starttls: bool = False,
    ):
        if security != "none" and tls is None:
            raise ValueError(f"security {security!r} needs tls files")
        self.security = security
        self.tls = tls
        self.handler = _ScriptedHandler(faults or Faults(), users)
        kwargs: dict[str, Any] = {}
        if users is not None:
            kwargs["authenticator"] = self.handler.authenticate
            # aiosmtpd offers AUTH after STARTTLS only; over implicit TLS it never sees its
            # own TLS layer (aio-libs/aiosmtpd#281), so there, and on plain test servers,
            # AUTH is allowed without it. Requiring AUTH is the handler's job: aiosmtpd's
            # auth_required without auth_require_tls warns, and warnings are errors here.
            kwargs["auth_require_tls"] = security == "starttls"
        self.handler.auth_required = auth_required
        if security == "starttls":
            assert tls is not None
            kwargs["tls_context"] = tls.server_context
            kwargs["require_starttls"] = require_starttls
        if security == "ssl":
            assert tls is not None
            kwargs["ssl_context"] = tls.server_context
        self._server = SmtpServerThread(self.handler, "127.0.0.1", 0, **kwargs)

    def start(self) -> TestServer:
        self._server.start()
        return self

    def stop(self) -> None:
        self.release()
        self._server.stop()

    # --- what the server saw -------------------------------------------------------------
    @property
    def host(self) -> str:
        return self._server.host

    @property
    def port(self) -> int:
        return self._server.port

    @property
    def received(self) -> list[Received]:
        with self.handler.lock:
            return list(self.handler.received)

    @property
    def transactions(self) -> int:
        """MAIL FROM commands seen, including refused and dropped ones."""
        with self.handler.lock:
            return self.handler.transactions

    @property
    def sessions(self) -> int:
        """Distinct connections that started at least one transaction."""
        with self.handler.lock:
            return len(self.handler.connections)

    def wait_for(self, count: int, timeout: float = 30.0) -> bool:
        """Block until ``count`` mails were received (a condition, not a sleep)."""
        with self.handler.lock:
            return self.handler.lock.wait_for(lambda: len(self.handler.received) >= count, timeout)

    def wait_held(self, count: int = 1, timeout: float = 30.0) -> bool:
        with self.handler.lock:
            return self.handler.lock.wait_for(lambda: self.handler.held >= count, timeout)

    def release(self) -> None:
        """Answer the held mails (and stop holding)."""
        self.handler.released.set()

    # --- how a client reaches it ---------------------------------------------------------
    @property
    def client_context(self) -> ssl.SSLContext | None:
        return self.tls.client_context if self.tls else None

    def settings(self, **changes: Any) -> SmtpSettings:
        """SmtpSettings for this server; pass user=/password=/timeout= as needed."""
        base: dict[str, Any] = {
            "host": self.host,
            "port": self.port,
            "security": self.security,
            "timeout": 10.0,
        }
        base.update(changes)
        return SmtpSettings(**base)

    def transport(self, **changes: Any) -> SmtpTransport:
        return SmtpTransport(self.settings(**changes), ssl_context=self.client_context)

    def env(self, user: str | None = None, password: str | None = None) -> dict[str, str]:
        """Environment for a subprocess (``bcartnb run``) to send here.

        With TLS, SSL_CERT_FILE makes the subprocess's default context trust the test CA.
        """
        env = {
            "BCARTNB_SMTP_HOST": self.host,
            "BCARTNB_SMTP_PORT": str(self.port),
            "BCARTNB_SMTP_SECURITY": self.security,
        }
        if user is not None:
            env["BCARTNB_SMTP_USER"] = user
        if password is not None:
            env["BCARTNB_SMTP_PASSWORD"] = password
        if self.tls is not None:
            env["SSL_CERT_FILE"] = str(self.tls.ca_file)
        return env


class _RawSmtpHandler(socketserver.StreamRequestHandler):
    """One SMTP session, strict about the end of the data: only CRLF "." CRLF ends it."""

    server: _RawSmtpServer

    def handle(self) -> None:
        write = self.wfile.write
        write(b"220 raw.test ESMTP\r\n")
        while line := self.rfile.readline(65536):
            verb = line[:4].upper()
            if verb == b"EHLO":
                write(b"250-raw.test\r\n250 8BITMIME\r\n")
            elif verb == b"DATA":
                write(b"354 End data with <CR><LF>.<CR><LF>\r\n")
                data = self._data()
                if data is None:
                    return
                with self.server.lock:
                    self.server.data.append(data)
                    self.server.lock.notify_all()
                write(b"250 2.0.0 OK\r\n")
            elif verb == b"QUIT":
                write(b"221 2.0.0 Bye\r\n")
                return
            else:  # HELO, MAIL, RCPT, RSET, NOOP
                write(b"250 2.0.0 OK\r\n")

    def _data(self) -> bytes | None:
        """The bytes after the 354 up to the terminating line, untouched (None: EOF)."""
        buf = bytearray()
        while chunk := self.rfile.readline(1 << 20):  # up to a LF: a lone CR stays inside
            buf += chunk
            if buf == b".\r\n":
                return b""
            if buf.endswith(b"\r\n.\r\n"):
                return bytes(buf[:-3])
        return None


class _RawSmtpServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _RawSmtpHandler)
        self.lock = threading.Condition()
        self.data: list[bytes] = []


class RawRecorder:
    """An SMTP server that records each message's DATA bytes before any un-dot-stuffing.

    aiosmtpd un-dot-stuffs and splits lines before a hook sees the message, which is exactly
    the step a smuggling test must see; this one keeps the raw bytes between the 354 reply
    and the terminating CRLF "." CRLF (the CRLF before the dot is the last line's end).
    """

    def __init__(self) -> None:
        self._server = _RawSmtpServer()
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def start(self) -> RawRecorder:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def data(self) -> list[bytes]:
        with self._server.lock:
            return list(self._server.data)

    def settings(self) -> SmtpSettings:
        return SmtpSettings(host="127.0.0.1", port=self.port, security="none", timeout=10.0)

    def transport(self) -> SmtpTransport:
        return SmtpTransport(self.settings())
