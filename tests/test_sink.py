"""The embedded sink: a real aiosmtpd server in-process, and ``bcartnb sink`` as a process."""

from __future__ import annotations

import os
import signal
import smtplib
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bcartnb.exceptions import TransportError
from bcartnb.settings import SmtpSettings
from bcartnb.sink import Sink, SmtpServerThread
from bcartnb.transports import SmtpTransport, StoredMail, read_maildir

RAW = (
    "From: shop@example.com\r\nTo: member@example.jp\r\nSubject: =?utf-8?b?5qGI5YaF?=\r\n"
    "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
    "Content-Transfer-Encoding: 8bit\r\n\r\n株式会社テスト 様\r\n.dot line\r\n\r\n"
).encode()


@pytest.fixture
def listening_socket() -> Iterator[socket.socket]:
    """A port held by someone else."""
    with socket.create_server(("127.0.0.1", 0)) as sock:
        yield sock


def test_sink_stores_exactly_the_bytes_sent(tmp_path: Path) -> None:
    with Sink(tmp_path / "mail", port=0) as sink:
        assert sink.port != 0
        with smtplib.SMTP(sink.host, sink.port, timeout=10) as client:
            refused = client.sendmail("shop@example.com", ["member@example.jp"], RAW)
        assert refused == {}
        assert sink.received == 1
    [stored] = read_maildir(tmp_path / "mail")
    assert stored.raw == RAW
    assert stored.envelope_from == "shop@example.com"
    assert stored.recipients == ("member@example.jp",)
    assert stored.path is not None and stored.path.read_bytes() == (
        b"Return-Path: <shop@example.com>\r\nX-Envelope-To: member@example.jp\r\n" + RAW
    )
    assert stored.message["Subject"] == "案内"


def test_envelope_recipients_are_recorded_apart_from_headers(tmp_path: Path) -> None:
    """Bcc-like envelope recipients show only in X-Envelope-To, never in the mail itself."""
    seen: list[StoredMail] = []
    with Sink(tmp_path / "mail", port=0, on_message=seen.append) as sink:
        settings = SmtpSettings(host=sink.host, port=sink.port)
        with SmtpTransport(settings) as transport:
            for i in range(3):
                result = transport.send(
                    "shop@example.com", [f"m{i}@example.jp", "admin@example.com"], RAW
                )
                assert result.sent and "stored as" in result.message
    stored = read_maildir(tmp_path / "mail")
    assert [m.recipients for m in stored] == [
        (f"m{i}@example.jp", "admin@example.com") for i in range(3)
    ]
    assert all(m.raw == RAW for m in stored)
    assert [m.path for m in seen] == [m.path for m in stored]


def test_busy_port_is_one_line_naming_host_and_port(
    tmp_path: Path, listening_socket: socket.socket
) -> None:
    port = listening_socket.getsockname()[1]
    sink = Sink(tmp_path / "mail", port=port)
    with pytest.raises(TransportError) as info:
        sink.start()
    assert str(info.value).startswith(f"SMTP server 127.0.0.1:{port}: cannot listen: ")
    assert "\n" not in str(info.value)
    sink.stop()  # harmless after a failed start


def test_stop_frees_the_port_for_the_next_sink(tmp_path: Path) -> None:
    with Sink(tmp_path / "a", port=0) as first:
        port = first.port
    with Sink(tmp_path / "b", port=port) as second:
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
            client.sendmail("s@example.com", ["r@example.jp"], RAW)
        assert second.received == 1
    assert read_maildir(tmp_path / "a") == []


class _Accept:
    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        return "250 2.0.0 OK"


def test_close_and_an_error_in_the_with_block_stop_the_server(tmp_path: Path) -> None:
    server = SmtpServerThread(_Accept()).start()
    assert server.running
    server.close()
    server.close()  # twice is harmless
    assert not server.running
    with pytest.raises(RuntimeError, match="boom"), Sink(tmp_path / "a", port=0) as sink:
        port = sink.port
        raise RuntimeError("boom")
    with Sink(tmp_path / "b", port=port) as again:  # the port was let go of
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
            client.sendmail("s@example.com", ["r@example.jp"], RAW)
        assert again.received == 1


def test_serve_forever_in_a_thread_ends_on_shutdown(tmp_path: Path) -> None:
    sink = Sink(tmp_path / "mail", port=0)
    ready = threading.Event()
    runner = threading.Thread(target=sink.serve_forever, kwargs={"ready": lambda s: ready.set()})
    runner.start()
    try:
        assert ready.wait(10)
        with smtplib.SMTP(sink.host, sink.port, timeout=10) as client:
            client.sendmail("s@example.com", ["r@example.jp"], RAW)
    finally:
        sink.shutdown()
        runner.join(10)
    assert not runner.is_alive()
    assert sink.received == 1
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((sink.host, sink.port), timeout=5).close()


# --- bcartnb sink as a real process ------------------------------------------------------


def _start_cli(args: list[str], cwd: Path) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BCARTNB_")}
    return subprocess.Popen(
        [sys.executable, "-m", "bcartnb", "sink", *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        encoding="utf-8",
    )


def test_cli_sink_receives_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    proc = _start_cli(["--port", "0", "--maildir", "inbox"], tmp_path)
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert first.startswith("試験用SMTPサーバーを起動しました: 127.0.0.1:"), first
        port = int(first.rsplit(":", 1)[1])
        where = proc.stdout.readline()
        assert where.strip() == f"メールの保存先（Maildir）: {(tmp_path / 'inbox').resolve()}"
        assert "Ctrl-C" in proc.stdout.readline()
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
            client.sendmail("shop@example.com", ["member@example.jp"], RAW)
        line = proc.stdout.readline()
        assert line.startswith("受信しました: shop@example.com → member@example.jp（"), line
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert err == ""
    assert "試験用SMTPサーバーを停止しました（受信 1 通）" in out
    # Japanese only: no English doubling of the banner (issue 23, 11)
    for word in ("listening", "received", "stopped", "press"):
        assert word not in first + where + line + out
    [stored] = read_maildir(tmp_path / "inbox")
    assert stored.raw == RAW and stored.recipients == ("member@example.jp",)


def test_cli_sink_stops_on_sigterm_too(tmp_path: Path) -> None:
    proc = _start_cli(["--port", "0", "--maildir", "inbox"], tmp_path)
    try:
        assert proc.stdout is not None
        assert "起動しました" in proc.stdout.readline()
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert "停止しました" in out


def test_cli_sink_on_a_busy_port_exits_2_with_one_line(
    tmp_path: Path, listening_socket: socket.socket
) -> None:
    port = listening_socket.getsockname()[1]
    proc = _start_cli(["--port", str(port), "--maildir", "inbox"], tmp_path)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 2
    assert out == ""
    assert err.count("\n") == 1
    assert err.startswith(  # the kind and the explanation, in Japanese, first
        f"bcartnb: error: 送信エラー: 試験用 SMTP サーバーを 127.0.0.1:{port} で起動できません"
    )
    assert f"SMTP server 127.0.0.1:{port}: cannot listen: " in err


def test_server_connections_have_nagle_off(tmp_path: Path) -> None:
    """Else aiosmtpd's line-by-line EHLO reply waits on the client's delayed ACK (40 ms)."""
    seen: list[int] = []

    class Handler:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            sock = server.transport.get_extra_info("socket")
            seen.append(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            return "250 OK"

    with SmtpServerThread(Handler(), port=0) as server:
        client = smtplib.SMTP(server.host, server.port, timeout=10)
        with client:
            client.sendmail("s@example.com", ["r@example.jp"], RAW)
    assert seen == [1]
