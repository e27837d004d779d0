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
  each mail then records whether the client wrote its RCPT without waiting for the reply
  to MAIL FROM (``Received.pipelined``): that reply is held until the RCPT is in (at most
  :data:`PIPELINE_WAIT` seconds, which only a client that does not pipeline waits out).
* ``greylist=s``: greylisting per recipient address, by the clock (``time.monotonic``, or the
  test's :class:`ManualClock` given as ``clock=``, which only moves when told), not by
  count: the first RCPT of an address gets ``451 4.7.1 Greylisted, please try again later``,
  and so does every later one until ``s`` seconds have passed since that first RCPT; after
  that the address is accepted. Only RCPTs seen while greylisting is on start a clock.
* ``shutdown_after=n``, ``shutdown_for=s``: once n mails were accepted (2xx after DATA), the
  server is shutting down for ``s`` seconds (default: for good), from the moment the n-th
  was accepted: the next ``MAIL FROM`` on any connection gets ``421 4.3.2 Service shutting
  down`` and that connection is closed (after the reply is out), and a new connection gets
  the same 421 as its greeting and is closed. Then it accepts again (once per ``Faults``;
  ``n=0`` shuts down at once, e.g. through :meth:`TestServer.set_faults`).
* ``reject_all=True``: every RCPT gets ``reject_reply`` (``550 5.1.1 User unknown``).
* ``hang_after_data=True``: each mail is recorded (it did arrive: in ``received``, counted by
  :meth:`TestServer.wait_held`), then never answered: the client must time out. Unlike
  ``hold_after``, :meth:`TestServer.release` does not answer it; the connection ends when
  the client gives up or the server stops (which needs no release).

Faults can change while the server runs: :meth:`TestServer.set_faults` swaps them at once
(each command sees either the old or the new ones), keeping every counter. And the server
itself can go away: :meth:`TestServer.down` stops listening and closes the open connections
(connecting is then refused), :meth:`TestServer.up` listens again on the same port, with
the same handler, faults and recorded mail.

Besides ``received``: :meth:`TestServer.count_by_recipient` counts the recorded mails per
recipient address (the exactly-once check), ``TestServer.rcpt_attempts`` counts every
RCPT per address, refused ones included.

:class:`RawRecorder` is the other kind: a few lines of SMTP on a socket that keep the
message data exactly as it crossed the wire, dot-stuffing and every CR and LF included.
"""

from __future__ import annotations

import asyncio
import math
import socket
import socketserver
import ssl
import threading
import time
from collections import Counter
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trustme
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from bcartnb.settings import SmtpSettings
from bcartnb.sink import SmtpServerThread
from bcartnb.transports import SmtpTransport

__all__ = [
    "Faults",
    "ManualClock",
    "RawRecorder",
    "Received",
    "TestServer",
    "TlsFiles",
    "make_tls_files",
]

GREYLIST_REPLY = "451 4.7.1 Greylisted, please try again later"
SHUTDOWN_REPLY = "421 4.3.2 Service shutting down"
PIPELINE_WAIT = 5.0  # seconds the reply to MAIL FROM waits for a pipelined RCPT


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
    pipelined: bool = False  # the RCPT came before the reply to MAIL FROM went out


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
    greylist: float | None = None
    shutdown_after: int | None = None
    shutdown_for: float = math.inf
    reject_all: bool = False
    hang_after_data: bool = False

    def __post_init__(self) -> None:
        if self.temp_stage not in ("MAIL", "RCPT", "DATA"):
            raise ValueError(f"temp_stage must be MAIL, RCPT or DATA, not {self.temp_stage!r}")
        if self.drop_stage not in ("MAIL", "DATA"):
            raise ValueError(f"drop_stage must be MAIL or DATA, not {self.drop_stage!r}")
        if self.greylist is not None and not self.greylist >= 0:
            raise ValueError(f"greylist must be a delay >= 0 seconds, not {self.greylist!r}")
        if self.shutdown_after is not None and self.shutdown_after < 0:
            raise ValueError(f"shutdown_after must be >= 0, not {self.shutdown_after!r}")
        if not self.shutdown_for >= 0:
            raise ValueError(f"shutdown_for must be >= 0 seconds, not {self.shutdown_for!r}")


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


class _FaultySMTP(SMTP):
    """aiosmtpd's SMTP session, except that a server shutting down refuses at the greeting.

    aiosmtpd has no handler hook before its ``220`` greeting, so this overrides the
    (private) coroutine that sends it and then reads commands.
    """

    async def _handle_client(self) -> None:
        handler = self.event_handler
        if isinstance(handler, _ScriptedHandler) and handler.shutting_down():
            await self.push(SHUTDOWN_REPLY)
            assert self.transport is not None
            self.transport.close()  # after the reply, as a 421 at MAIL does
            return
        await super()._handle_client()


class ManualClock:
    """A clock that moves only when the test says so, for the timed faults.

    With it a test sees a greylist delay or a shutdown window end exactly when it advances
    the clock, never because a loaded machine was slow between two commands.
    """

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class _ScriptedHandler:
    """Records every mail and plays the faults. Runs in the server's event-loop thread.

    Each hook reads ``self.faults`` once, so :meth:`set_faults` from the test's thread takes
    effect between commands, never halfway through one.
    """

    def __init__(
        self,
        faults: Faults,
        users: Mapping[str, str] | None,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.faults = faults
        self.clock = clock
        self.users = dict(users or {})
        self.lock = threading.Condition()
        self.received: list[Received] = []
        self.transactions = 0
        self.accepted = 0
        self.ok_replies = 0  # 2xx replies to message data: what shutdown_after counts
        self.deferred: dict[str, int] = {}
        self.rcpt_attempts: Counter[str] = Counter()  # every RCPT, refused ones included
        self.greylisted: dict[str, float] = {}  # address -> monotonic time of its first RCPT
        self.shutdown_started: float | None = None  # monotonic time the window opened
        self.connections: dict[int, int] = {}
        self._keep: list[SMTP] = []  # keeps id()s unique while the server runs
        self.released = threading.Event()
        self.held = 0
        self.auth_required = False

    def set_faults(self, faults: Faults) -> None:
        """Play ``faults`` from the next command on; counters and recorded mail are kept.

        A changed shutdown (``shutdown_after``/``shutdown_for``) gets a new window; a new
        ``hold_after`` holds again even after :meth:`TestServer.release`, and faults without
        ``hold_after`` answer the mails being held. Hanging mails stay unanswered.
        """
        with self.lock:
            old, self.faults = self.faults, faults
            if (old.shutdown_after, old.shutdown_for) != (
                faults.shutdown_after,
                faults.shutdown_for,
            ):
                self.shutdown_started = None
            if faults.hold_after is not None and faults.hold_after != old.hold_after:
                self.released.clear()
            self.lock.notify_all()

    def shutting_down(self) -> bool:
        """Whether the server is in its shutdown window; opens the window when it is due."""
        with self.lock:
            faults = self.faults
            if faults.shutdown_after is None or self.ok_replies < faults.shutdown_after:
                return False
            now = self.clock()
            if self.shutdown_started is None:
                self.shutdown_started = now
            return now - self.shutdown_started < faults.shutdown_for

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

    async def _temp(
        self, server: SMTP, faults: Faults, stage: str, envelope: Envelope
    ) -> str | None:
        txn = envelope.bcartnb_txn  # type: ignore[attr-defined]
        if faults.temp_stage != stage or txn > faults.temp_fail:
            return None
        reply = faults.temp_reply
        if reply.startswith("421"):
            await server.push(reply)
            return await self._drop(server, flush=True)
        return reply

    def _greylisted(self, address: str, delay: float) -> bool:
        now = self.clock()
        with self.lock:
            first = self.greylisted.get(address)
            if first is None:  # the first RCPT always waits, whatever the delay
                self.greylisted[address] = now
                return True
        return now - first < delay

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

    async def _rcpt_came(self, server: SMTP) -> bool:
        """With ``pipelining``: whether the client wrote RCPT TO without this reply (which
        waits for it, up to :data:`PIPELINE_WAIT`); False without."""
        if not self.faults.pipelining:
            return False
        deadline = time.monotonic() + PIPELINE_WAIT
        while b"RCPT TO" not in bytes(getattr(server._reader, "_buffer", b"")).upper():
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.001)
        return True

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        faults = self.faults
        if self.auth_required and not session.authenticated:
            return "530 5.7.0 Authentication required"
        conn = self._connection(server)
        with self.lock:
            self.transactions += 1
            txn = self.transactions
            self.lock.notify_all()  # wait_transactions
        envelope.bcartnb_txn = txn  # type: ignore[attr-defined]
        envelope.bcartnb_conn = conn  # type: ignore[attr-defined]
        envelope.bcartnb_pipelined = await self._rcpt_came(server)  # type: ignore[attr-defined]
        if self.shutting_down():
            await server.push(SHUTDOWN_REPLY)
            return await self._drop(server, flush=True)
        if txn in faults.drop_at and faults.drop_stage == "MAIL":
            return await self._drop(server)
        reply = await self._temp(server, faults, "MAIL", envelope)
        if reply:
            return reply
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 2.1.0 OK"

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        faults = self.faults
        with self.lock:
            self.rcpt_attempts[address] += 1
        if faults.reject_all or address in faults.reject:
            return faults.reject_reply
        with self.lock:
            seen = self.deferred.get(address, 0)
            self.deferred[address] = seen + 1
        if faults.greylist is not None and self._greylisted(address, faults.greylist):
            return GREYLIST_REPLY
        if seen < faults.defer.get(address, 0):
            return "451 4.2.0 Deferred, try again"
        reply = await self._temp(server, faults, "RCPT", envelope)
        if reply:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        faults = self.faults
        reply = await self._temp(server, faults, "DATA", envelope)
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
        hang = faults.hang_after_data
        with self.lock:
            self.received.append(mail)
            self.lock.notify_all()
            hold = faults.hold_after is not None and self.accepted >= faults.hold_after
            if not hold and not hang:
                self.accepted += 1
        if txn in faults.drop_at and faults.drop_stage == "DATA":
            return await self._drop(server)
        if hang or hold:
            with self.lock:
                self.held += 1
                self.lock.notify_all()
        if hang:
            # No reply, ever: cancelled when the client hangs up or the server stops.
            await asyncio.Event().wait()
            raise AssertionError("unreachable")
        if hold:
            while not self.released.is_set() and self.faults.hold_after is not None:
                await asyncio.sleep(0.01)
            with self.lock:
                self.accepted += 1
        reply = faults.data_reply
        if reply.startswith("2"):
            with self.lock:
                self.ok_replies += 1
            self.shutting_down()  # the n-th accepted mail opens the shutdown window
        return reply

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
        clock: Callable[[], float] = time.monotonic,
    ):
        if security != "none" and tls is None:
            raise ValueError(f"security {security!r} needs tls files")
        self.security = security
        self.tls = tls
        self.handler = _ScriptedHandler(faults or Faults(), users, clock)
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
        self._reserved: socket.socket | None = None  # the port, held while down

    def start(self) -> TestServer:
        self._listen()
        return self

    def stop(self) -> None:
        """Stop for good (up or down); held and hanging mails need no release first."""
        self.release()
        self._server.stop()
        self._unreserve()

    def down(self) -> None:
        """Stop listening and close every open connection: connecting is then refused.

        Held mails are not answered: their connections end. :meth:`up` brings it back.
        The port stays bound meanwhile, never listening (so still refused): another
        process binding it while the server is down would make :meth:`up` fail.
        """
        self._server.stop()
        if self._reserved is not None:  # already down
            return
        reserved = socket.socket()
        reserved.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # past TIME_WAIT
        try:
            reserved.bind((self.host, self.port))
        except OSError:  # not ours to hold after all: down as before, unreserved
            reserved.close()
            return
        self._reserved = reserved

    def up(self) -> TestServer:
        """Listen again on the same port, with the same handler, faults and recorded mail."""
        self._unreserve()
        self._listen()
        return self

    def _unreserve(self) -> None:
        if self._reserved is not None:
            self._reserved.close()
            self._reserved = None

    @property
    def is_up(self) -> bool:
        return self._server.running

    def _listen(self) -> None:
        # SmtpServerThread keeps the port it got, so a restart binds the same one again
        # (with SO_REUSEADDR: the old connections in TIME_WAIT do not block it).
        self._server.start()
        controller = getattr(self._server, "_controller", None)
        if controller is not None:  # each start has a new controller: teach it _FaultySMTP

            def factory() -> SMTP:
                return _FaultySMTP(
                    controller.handler, loop=controller.loop, **controller.SMTP_kwargs
                )

            controller.factory = factory

    # --- faults --------------------------------------------------------------------------
    @property
    def faults(self) -> Faults:
        with self.handler.lock:
            return self.handler.faults

    def set_faults(self, faults: Faults) -> None:
        """Play ``faults`` from the next command on (see :meth:`_ScriptedHandler.set_faults`).

        Counters (transactions, accepted mails, deferrals, greylist clocks, RCPT attempts)
        and ``received`` are kept, so a test can make a running server start failing or
        recover mid-run.
        """
        self.handler.set_faults(faults)

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

    def count_by_recipient(self) -> Counter[str]:
        """Recorded mails (``received``) per recipient address: exactly once is all 1s."""
        with self.handler.lock:
            return Counter(addr for mail in self.handler.received for addr in mail.recipients)

    @property
    def rcpt_attempts(self) -> Counter[str]:
        """RCPT commands seen per address, refused (greylisted, rejected, ...) included."""
        with self.handler.lock:
            return Counter(self.handler.rcpt_attempts)

    @property
    def sessions(self) -> int:
        """Distinct connections that started at least one transaction."""
        with self.handler.lock:
            return len(self.handler.connections)

    def wait_for(self, count: int, timeout: float = 30.0) -> bool:
        """Block until ``count`` mails were received (a condition, not a sleep)."""
        with self.handler.lock:
            return self.handler.lock.wait_for(lambda: len(self.handler.received) >= count, timeout)

    def wait_transactions(self, count: int, timeout: float = 30.0) -> bool:
        """Block until ``count`` MAIL FROM commands were received (answered or not)."""
        with self.handler.lock:
            return self.handler.lock.wait_for(lambda: self.handler.transactions >= count, timeout)

    def wait_held(self, count: int = 1, timeout: float = 30.0) -> bool:
        with self.handler.lock:
            return self.handler.lock.wait_for(lambda: self.handler.held >= count, timeout)

    def wait_shutdown_over(self, timeout: float = 30.0) -> bool:
        """Block until a shutdown window that has opened has closed again (True), or time out.

        The window is measured by the handler's clock, so this polls that clock: a client
        that tries again the moment it was refused may come back while the server is still
        shutting down, and a test that means "after the server came back" waits here.
        """
        deadline = time.monotonic() + timeout
        while self.handler.shutting_down():
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.02)
        return True

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
