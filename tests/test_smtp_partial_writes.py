"""A server that reads the message data slowly, or stops reading it: the non-blocking writes.

Once a session is open its socket is non-blocking (the send loop has polled it already), so
a command the socket cannot take whole is kept and finished when the socket has room again
(``events`` turns to ``POLLOUT``). These tests use a real server whose reading of the data
is in the test's hands (:class:`GatedReader`) and a mail larger than every socket buffer
between them, so the partial write is certain, not likely: the mail must still arrive once,
byte for byte; and when the server never reads, the deadline still ends the transaction
(it was not sent whole: never counted as sent, never written twice).
"""

from __future__ import annotations

import select
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from smtp_servers import TlsFiles

from bcartnb.settings import SmtpSettings
from bcartnb.transports import Outcome, SendResult, SmtpTransport
from bcartnb.transports.smtp import SmtpConnection

SHOP = "shop@example.co.jp"


def _socket_buffers() -> int:
    """The most both ends' socket buffers can hold on this machine (Linux's limits)."""
    try:
        wmem = int(Path("/proc/sys/net/ipv4/tcp_wmem").read_text().split()[2])
    except (OSError, ValueError, IndexError):
        wmem = 8 << 20
    return wmem + (1 << 20)  # the server's receive buffer is made tiny below


class GatedReader:
    """SMTP on a raw socket (or implicit TLS with ``tls``); the message data is read only
    once :attr:`gate` is set, then a few KiB at a time. :attr:`messages` holds each message
    whose terminating line came."""

    def __init__(self, tls: TlsFiles | None = None) -> None:
        self.tls = tls
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # inherited
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen()
        self.port = self.listener.getsockname()[1]
        self.gate = threading.Event()
        self.lock = threading.Condition()
        self.messages: list[bytes] = []
        self.data_started = 0  # 354 replies sent
        self.sessions = 0
        self._conns: list[socket.socket] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self._conns.append(conn)
            with self.lock:
                self.sessions += 1
            threading.Thread(target=self._session, args=(conn,), daemon=True).start()

    def _session(self, conn: socket.socket) -> None:
        buf = bytearray()
        if self.tls is not None:
            try:
                conn = self.tls.server_context.wrap_socket(conn, server_side=True)
            except OSError:
                conn.close()
                return

        def line() -> bytes | None:
            while b"\n" not in buf:
                chunk = conn.recv(4096)
                if not chunk:
                    return None
                buf.extend(chunk)
            end = buf.index(b"\n") + 1
            got = bytes(buf[:end])
            del buf[:end]
            return got

        try:
            conn.sendall(b"220 gated.test ESMTP\r\n")
            while (cmd := line()) is not None:
                verb = cmd[:4].upper()
                if verb == b"EHLO":
                    conn.sendall(b"250-gated.test\r\n250 8BITMIME\r\n")
                elif verb == b"DATA":
                    with self.lock:
                        self.data_started += 1
                        self.lock.notify_all()
                    conn.sendall(b"354 go ahead\r\n")
                    self.gate.wait()
                    if not self._data(conn, buf):
                        return
                    conn.sendall(b"250 2.0.0 OK\r\n")
                elif verb == b"QUIT":
                    conn.sendall(b"221 2.0.0 Bye\r\n")
                    return
                else:
                    conn.sendall(b"250 2.0.0 OK\r\n")
        except OSError:
            return
        finally:
            conn.close()

    def _data(self, conn: socket.socket, buf: bytearray) -> bool:
        """Read slowly up to CRLF "." CRLF; record the message (False: the client left)."""
        seen = 0  # no terminator before this: each chunk is searched once
        while True:
            end = buf.find(b"\r\n.\r\n", seen)
            seen = max(0, len(buf) - 4)
            if end >= 0:
                with self.lock:
                    self.messages.append(bytes(buf[: end + 2]))
                    self.lock.notify_all()
                del buf[: end + 5]
                return True
            chunk = conn.recv(8192)
            if not chunk:
                return False
            buf.extend(chunk)

    def transport(self, timeout: float) -> SmtpTransport:
        security = "none" if self.tls is None else "ssl"
        settings = SmtpSettings(
            host="127.0.0.1", port=self.port, security=security, timeout=timeout
        )
        context = None if self.tls is None else self.tls.client_context
        return SmtpTransport(settings, ssl_context=context)

    def close(self) -> None:
        self.gate.set()
        self.listener.close()
        for conn in self._conns:
            conn.close()


@pytest.fixture(params=["none", "ssl"])
def gated(request: pytest.FixtureRequest, tls_ca: TlsFiles) -> Iterator[GatedReader]:
    """The server, plain and over TLS (a TLS write the socket cannot take is retried with
    the same bytes, as OpenSSL requires)."""
    server = GatedReader(tls_ca if request.param == "ssl" else None)
    yield server
    server.close()


def big_mail(to: str) -> tuple[bytes, bytes]:
    """(raw mail, the data the server must read): larger than every socket buffer, with
    lines that start with a dot (doubled on the wire)."""
    head = f"From: {SHOP}\r\nTo: {to}\r\nSubject: big\r\n\r\n".encode()
    line = b".a line that starts with a dot, then text to fill the buffers with\r\n"
    body = line * (_socket_buffers() // len(line) + 1)
    raw = head + body
    return raw, raw.replace(b"\r\n.", b"\r\n..")


def small_mail(to: str) -> bytes:
    return f"From: {SHOP}\r\nTo: {to}\r\nSubject: small\r\n\r\nhello\r\n".encode()


def step(conn: SmtpConnection) -> SendResult | None:
    """What the send loop does once: poll for the connection's events until its deadline,
    advance it, or expire it when the deadline has passed."""
    left = conn.deadline - time.monotonic()
    if left <= 0:
        return conn.expire()
    poller = select.poll()
    poller.register(conn.fileno(), conn.events)
    if poller.poll(int(left * 1000) + 1):
        return conn.advance()
    return None


def test_a_mail_larger_than_the_socket_buffers_is_written_in_parts_and_arrives_once(
    gated: GatedReader,
) -> None:
    raw, wire = big_mail("a@example.jp")
    with gated.transport(timeout=60) as transport:
        conn = transport.connect()
        assert isinstance(conn, SmtpConnection)
        assert conn.begin(SHOP, ["a@example.jp"], raw) is None
        result: SendResult | None = None
        while conn.events != select.POLLOUT:  # the server is not reading the data yet
            result = step(conn)
            assert result is None and conn.busy
        gated.gate.set()  # now it reads, 8 KiB at a time
        while result is None:
            result = step(conn)
        assert result.outcome is Outcome.SENT and conn.events == select.POLLIN
        # the same session carries the next mail, in step with the server
        assert conn.send(SHOP, ["b@example.jp"], small_mail("b@example.jp")).sent
    assert gated.messages == [wire, small_mail("b@example.jp")]
    assert gated.sessions == 1


def test_the_blocking_send_writes_a_large_mail_whole_to_a_slow_reader(gated: GatedReader) -> None:
    raw, wire = big_mail("a@example.jp")
    with gated.transport(timeout=60) as transport:
        opener = threading.Thread(target=_open_gate_after_data, args=(gated,))
        opener.start()
        result = transport.send(SHOP, ["a@example.jp"], raw)
        opener.join(30)
    assert result.outcome is Outcome.SENT
    assert gated.messages == [wire]


def _open_gate_after_data(server: GatedReader) -> None:
    with server.lock:
        server.lock.wait_for(lambda: server.data_started >= 1, timeout=30)
    server.gate.set()


@pytest.mark.parametrize("driven", ["polled", "send"])
def test_a_server_that_stops_reading_the_data_times_out_and_nothing_is_sent_twice(
    gated: GatedReader, driven: str
) -> None:
    raw, _ = big_mail("a@example.jp")
    # 2 s: long enough for a loaded machine's envelope replies; only the data waits
    with gated.transport(timeout=2) as transport:
        conn = transport.connect()
        assert isinstance(conn, SmtpConnection)
        if driven == "polled":
            result = conn.begin(SHOP, ["a@example.jp"], raw)
            while result is None:
                result = step(conn)
        else:
            result = conn.send(SHOP, ["a@example.jp"], raw)
        # the data never went out whole, but it had started: it may not be resent blindly
        assert result.outcome is Outcome.UNCERTAIN and result.code is None
        assert "timed out: the server did not take the data within 2 s" in result.message
        assert not conn.alive and not conn.busy  # dropped: the next send reconnects
        gated.gate.set()  # the next session's data is read at once
        assert conn.send(SHOP, ["b@example.jp"], small_mail("b@example.jp")).sent
    assert gated.messages == [small_mail("b@example.jp")]  # the first never completed
    assert gated.sessions == 2 and gated.data_started == 2
