"""The embedded SMTP server that keeps every mail in a Maildir: the demo's default target.

A marketer can run a whole campaign against it (``bcartnb sink``) and open the Maildir
in a mail client, with nothing leaving the machine. It is aiosmtpd in a thread, storing
through :class:`~bcartnb.transports.MaildirTransport`, so the sink's files and the outbox's
files have one format: the received bytes exactly, after ``Return-Path`` and
``X-Envelope-To`` lines (read them back with :func:`~bcartnb.transports.read_maildir`).

:class:`SmtpServerThread` is the reusable part: aiosmtpd's threaded ``Controller`` on a
socket we bind ourselves. Binding first means a busy port is a clean error in the caller's
thread, and port 0 works (aiosmtpd's own start-up probe would connect to port 0).
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import ssl
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import FrameType
from typing import Any, Self

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from bcartnb.closing import Serving
from bcartnb.exceptions import TransportError
from bcartnb.transports import MaildirTransport, StoredMail, read_maildir

__all__ = ["Sink", "SmtpServerThread", "StoredMail"]  # StoredMail: what on_message is given


class _BoundController(Controller):
    """aiosmtpd's Controller serving on a socket that is already bound and listening."""

    def __init__(self, handler: Any, sock: socket.socket, **kwargs: Any):
        host, port = sock.getsockname()[:2]
        super().__init__(handler, hostname=host, port=port, **kwargs)
        self._sock = sock

    def _create_server(self) -> Awaitable[asyncio.AbstractServer]:
        return self.loop.create_server(self._factory_invoker, sock=self._sock, ssl=self.ssl_context)

    def factory(self) -> SMTP:
        # Passing our loop spares aiosmtpd a get_event_loop() under catch_warnings(),
        # which is not thread-safe.
        return SMTP(self.handler, loop=self.loop, **self.SMTP_kwargs)


def _listen(host: str, port: int) -> socket.socket:
    """A listening TCP socket whose ``proto`` is IPPROTO_TCP.

    asyncio turns Nagle off (TCP_NODELAY) only on sockets that say IPPROTO_TCP; one from
    ``socket.create_server`` says 0, and aiosmtpd's line-by-line EHLO reply then waits for
    the client's delayed ACK: 40 ms per session.
    """
    family, kind, proto, _, addr = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(addr)
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    return sock


class SmtpServerThread(Serving):
    """An aiosmtpd server on ``host:port`` in a background thread; ``port=0`` picks a free one.

    ``handler`` is an aiosmtpd handler (``handle_DATA`` etc.); ``ssl_context`` makes it an
    implicit-TLS server; other keywords go to :class:`aiosmtpd.smtp.SMTP` (``tls_context``,
    ``require_starttls``, ``authenticator``, ``auth_require_tls``, ...).
    """

    def __init__(
        self,
        handler: Any,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        ssl_context: ssl.SSLContext | None = None,
        ready_timeout: float = 10.0,
        server_hostname: str = "bcartnb.localhost",
        **smtp_kwargs: Any,
    ):
        self.handler = handler
        self.host = host
        self.port = port
        self._kwargs: dict[str, Any] = dict(
            ssl_context=ssl_context,
            ready_timeout=ready_timeout,
            server_hostname=server_hostname,
            **smtp_kwargs,
        )
        self._controller: _BoundController | None = None
        self._sock: socket.socket | None = None

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._controller is not None

    def start(self) -> Self:
        if self._controller is not None:
            return self
        try:
            sock = _listen(self.host, self.port)
        except OSError as err:
            reason = err.strerror or str(err)
            raise TransportError(
                f"SMTP server {self.address}: cannot listen: {reason}",
                ja=f"試験用 SMTP サーバーを {self.address} で起動できません（ポートが使用中か、"
                "使えないアドレスです）。",
            ) from err
        self._sock = sock
        self.port = sock.getsockname()[1]
        controller = _BoundController(self.handler, sock, **self._kwargs)
        try:
            controller.start()
        except BaseException:
            self._controller = controller
            self.stop()
            raise
        self._controller = controller
        return self

    def stop(self) -> None:
        controller, self._controller = self._controller, None
        sock, self._sock = self._sock, None
        if controller is not None:
            controller.stop(no_assert=True)
            if not controller.loop.is_closed():  # start() failed before the loop ran
                controller.loop.close()
        if sock is not None:
            sock.close()


class _MaildirHandler:
    def __init__(self, outbox: MaildirTransport, on_message: Callable[[StoredMail], Any] | None):
        self.outbox = outbox
        self.on_message = on_message
        self.received = 0
        self._lock = threading.Lock()

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or b""
        recipients = list(envelope.rcpt_tos)
        try:
            path = self.outbox.deliver(envelope.mail_from or "", recipients, raw)
        except TransportError as err:
            return f"451 4.3.0 {err}"  # the client keeps the mail and retries
        with self._lock:
            self.received += 1
        if self.on_message is not None:
            self.on_message(StoredMail(envelope.mail_from or "", tuple(recipients), raw, path))
        return f"250 2.0.0 Ok: stored as {path.name}"


class Sink(Serving):
    """An SMTP server on ``host:port`` that stores every mail it receives in ``maildir``.

    ``with Sink(tmp_path / "mail", port=0) as sink:`` runs it in a thread for the length of
    the block (``sink.port`` is the real port); :meth:`serve_forever` runs it until Ctrl-C.
    ``on_message`` is called (in the server thread) with each stored mail.
    """

    def __init__(
        self,
        maildir: str | os.PathLike[str] = "maildir",
        *,
        host: str = "127.0.0.1",
        port: int = 8025,
        on_message: Callable[[StoredMail], Any] | None = None,
        fsync: bool = True,
    ):
        self.maildir = Path(maildir)
        self._handler = _MaildirHandler(MaildirTransport(self.maildir, fsync=fsync), on_message)
        self._server = SmtpServerThread(self._handler, host, port)
        self._shutdown = threading.Event()

    @property
    def host(self) -> str:
        return self._server.host

    @property
    def port(self) -> int:
        return self._server.port

    @property
    def address(self) -> str:
        return self._server.address

    @property
    def received(self) -> int:
        """Mails stored since this sink started (the Maildir may hold older ones)."""
        return self._handler.received

    def messages(self) -> list[StoredMail]:
        """Everything in the Maildir, oldest first."""
        return read_maildir(self.maildir)

    def start(self) -> Self:
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop()

    def shutdown(self) -> None:
        """Make :meth:`serve_forever` return (from another thread or a signal handler)."""
        self._shutdown.set()

    def serve_forever(self, ready: Callable[[Sink], Any] | None = None) -> None:
        """Run until Ctrl-C, SIGTERM or :meth:`shutdown`; ``ready`` is called once listening."""
        stop = self._shutdown
        previous: Any = None
        in_main = threading.current_thread() is threading.main_thread()
        termed = False

        def on_term(signum: int, frame: FrameType | None) -> None:
            # no lock in a signal handler: Event.set() waits for the lock that this same
            # thread holds while it is inside Event.wait(), and the sink never stopped
            nonlocal termed
            termed = True

        self.start()
        try:
            if in_main:
                previous = signal.signal(signal.SIGTERM, on_term)
            if ready is not None:
                ready(self)
            while not (termed or stop.is_set()):  # is_set takes no lock
                time.sleep(0.1)
        except KeyboardInterrupt:
            pass
        finally:
            if in_main and previous is not None:
                signal.signal(signal.SIGTERM, previous)
            self.stop()

    def __repr__(self) -> str:
        return f"<Sink {self.address} → {self.maildir}>"
