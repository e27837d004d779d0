"""Transports against real aiosmtpd servers on 127.0.0.1 (tests/smtp_servers.py)."""

from __future__ import annotations

import mailbox
import os
import select
import smtplib
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from pathlib import Path
from typing import cast

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from smtp_servers import Faults, TestServer

from bcartnb.exceptions import SettingsError, TransportError
from bcartnb.settings import SmtpSettings, load_settings
from bcartnb.transports import (
    Connection,
    DryRunTransport,
    MaildirTransport,
    Outcome,
    PollableConnection,
    SendResult,
    SmtpConnection,
    SmtpTransport,
    Transport,
    read_maildir,
    transport_from_settings,
)

Factory = Callable[..., TestServer]
SHOP = "shop@example.com"


def mail(to: str = "member@example.jp", subject: str = "新商品のご案内", body: str = "") -> bytes:
    msg = EmailMessage(policy=SMTP_POLICY)
    msg["From"] = SHOP
    msg["To"] = to
    msg["Subject"] = subject
    msg.set_content(body or f"{to} 様\nいつもありがとうございます。\n.先頭がドットの行\n")
    return msg.as_bytes()


# --- plain sending and reuse -------------------------------------------------------------


def test_plain_send_delivers_the_exact_bytes(smtp_server: Factory) -> None:
    server = smtp_server()
    raw = mail()
    with server.transport() as transport:
        result = transport.send(SHOP, ["member@example.jp"], raw)
    assert result.outcome is Outcome.SENT and result.sent and result.code == 250
    assert result.refused == {}
    [got] = server.received
    assert got.raw == raw
    assert got.envelope_from == SHOP and got.recipients == ("member@example.jp",)
    assert got.auth_user is None and not got.tls


def test_one_session_carries_many_mails(smtp_server: Factory) -> None:
    server = smtp_server()
    with server.transport() as transport:
        results = [
            transport.send(SHOP, [f"m{i}@example.jp"], mail(f"m{i}@example.jp")) for i in range(5)
        ]
        assert transport.sessions_opened == 1
    assert [r.outcome for r in results] == [Outcome.SENT] * 5
    assert server.sessions == 1
    assert {m.connection for m in server.received} == {1}
    assert [m.recipients[0] for m in server.received] == [f"m{i}@example.jp" for i in range(5)]


def test_connect_gives_independent_connections_for_threads(smtp_server: Factory) -> None:
    server = smtp_server()
    transport = server.transport()
    outcomes: list[Outcome] = []
    lock = threading.Lock()

    def worker(conn: Connection, k: int) -> None:
        with conn:
            for i in range(4):
                to = f"t{k}-{i}@example.jp"
                result = conn.send(SHOP, [to], mail(to))
                with lock:
                    outcomes.append(result.outcome)

    with transport:
        conns = [transport.connect() for _ in range(3)]
        threads = [threading.Thread(target=worker, args=(c, k)) for k, c in enumerate(conns)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert outcomes == [Outcome.SENT] * 12
    assert server.sessions == 3
    assert len({m.recipients[0] for m in server.received}) == 12
    # Each connection kept its own session: 4 mails on each.
    per_conn = [sum(1 for m in server.received if m.connection == c) for c in (1, 2, 3)]
    assert per_conn == [4, 4, 4]


def test_bare_newlines_go_out_as_crlf_and_dots_survive(smtp_server: Factory) -> None:
    server = smtp_server()
    raw = b"Subject: x\n\nline one\n.dot line\n..two dots\nlast"
    with server.transport() as transport:
        assert transport.send(SHOP, ["a@example.jp"], raw).sent
    assert server.received[0].raw == raw.replace(b"\n", b"\r\n") + b"\r\n"


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    lines=st.lists(
        st.text(st.characters(codec="utf-8", exclude_characters="\r\n"), max_size=60).map(
            lambda s: s.encode()
        ),
        min_size=1,
        max_size=8,
    )
)
def test_any_crlf_body_arrives_byte_for_byte(smtp_server: Factory, lines: list[bytes]) -> None:
    server = smtp_server()
    raw = b"Subject: p\r\n\r\n" + b"\r\n".join(lines) + b"\r\n"
    with server.transport() as transport:
        assert transport.send(SHOP, ["p@example.jp"], raw).sent
    assert server.received[-1].raw == raw


# --- TLS and AUTH ------------------------------------------------------------------------


def test_starttls_with_the_test_ca(smtp_server: Factory) -> None:
    server = smtp_server(security="starttls", require_starttls=True)
    with server.transport() as transport:
        assert transport.send(SHOP, ["a@example.jp"], mail()).sent
    assert server.received[0].tls


def test_implicit_tls_with_the_test_ca(smtp_server: Factory) -> None:
    server = smtp_server(security="ssl")
    with server.transport() as transport:
        assert transport.send(SHOP, ["a@example.jp"], mail()).sent
    assert server.received[0].raw == mail()


def test_auth_over_starttls(smtp_server: Factory) -> None:
    server = smtp_server(
        security="starttls", users={"shop": "s3cret"}, auth_required=True, require_starttls=True
    )
    with server.transport(user="shop", password="s3cret") as transport:
        assert transport.send(SHOP, ["a@example.jp"], mail()).sent
    assert server.received[0].auth_user == "shop" and server.received[0].tls


def test_auth_over_ssl(smtp_server: Factory) -> None:
    server = smtp_server(security="ssl", users={"shop": "s3cret"}, auth_required=True)
    with server.transport(user="shop", password="s3cret") as transport:
        assert transport.send(SHOP, ["a@example.jp"], mail()).sent
    assert server.received[0].auth_user == "shop"


def test_auth_on_a_plain_local_server(smtp_server: Factory) -> None:
    server = smtp_server(users={"shop": "s3cret"})
    with server.transport(user="shop", password="s3cret") as transport:
        assert transport.send(SHOP, ["a@example.jp"], mail()).sent
    assert server.received[0].auth_user == "shop"


def test_wrong_password_names_host_port_and_never_the_password(smtp_server: Factory) -> None:
    server = smtp_server(security="starttls", users={"shop": "s3cret"}, auth_required=True)
    transport = server.transport(user="shop", password="wr0ng-pw")
    with pytest.raises(TransportError) as info:
        transport.connect()
    message = str(info.value)
    assert f"127.0.0.1:{server.port}" in message and "'shop'" in message and "535" in message
    assert "\n" not in message
    assert isinstance(info.value.__cause__, smtplib.SMTPAuthenticationError)
    for text in (message, repr(info.value.__cause__), repr(transport), transport.description):
        assert "wr0ng-pw" not in text
    assert info.value.ja == (
        f"SMTPサーバー 127.0.0.1:{server.port} に shop でログインできません。"
        "ユーザー名とパスワード（BCARTNB_SMTP_PASSWORD）を確認してください。"
    )
    assert "wr0ng-pw" not in info.value.ja
    assert server.received == []


def test_user_without_password_is_a_settings_error() -> None:
    with pytest.raises(SettingsError, match=r"'shop'.*BCARTNB_SMTP_PASSWORD"):
        SmtpTransport(SmtpSettings(user="shop"))


def test_a_password_alone_logs_in_nobody(smtp_server: Factory) -> None:
    server = smtp_server(security="starttls", users={"shop": "s3cret"})
    with server.transport(password="s3cret") as transport:
        assert transport.send(SHOP, ["a@example.jp"], mail()).sent
    assert server.received[0].auth_user is None


def test_server_requiring_auth_without_a_user_stops_the_campaign(smtp_server: Factory) -> None:
    server = smtp_server(security="starttls", users={"shop": "s3cret"}, auth_required=True)
    with server.transport() as transport, pytest.raises(TransportError) as info:
        transport.send(SHOP, ["a@example.jp"], mail())
    assert f"127.0.0.1:{server.port}" in str(info.value) and "requires AUTH" in str(info.value)
    assert "ログインが必要です" in info.value.ja


def test_auth_not_offered_on_plain_connection_is_explained(smtp_server: Factory) -> None:
    server = smtp_server(security="starttls", users={"shop": "s3cret"})
    # Ask for AUTH without TLS: aiosmtpd offers AUTH only after STARTTLS.
    transport = SmtpTransport(server.settings(security="none", user="shop", password="s3cret"))
    with pytest.raises(TransportError, match=r"does not offer AUTH before TLS"):
        transport.connect()


# --- per-mail outcomes -------------------------------------------------------------------


def test_451_is_temporary_and_the_session_goes_on(smtp_server: Factory) -> None:
    server = smtp_server(faults=Faults(temp_fail=2))
    with server.transport() as transport:
        conn = transport.connect()
        first, second, third = (conn.send(SHOP, ["a@example.jp"], mail()) for _ in range(3))
        assert conn.alive
    assert (first.outcome, first.code, first.retryable) == (Outcome.TEMPORARY, 451, True)
    assert "Try again later" in first.message
    assert second.outcome is Outcome.TEMPORARY
    assert third.sent
    assert server.sessions == 1 and len(server.received) == 1


def test_451_after_data_is_temporary_and_nothing_arrived(smtp_server: Factory) -> None:
    server = smtp_server(faults=Faults(temp_fail=1, temp_stage="DATA"))
    with server.transport() as transport:
        result = transport.send(SHOP, ["a@example.jp"], mail())
        assert (result.outcome, result.code) == (Outcome.TEMPORARY, 451)
        assert transport.send(SHOP, ["a@example.jp"], mail()).sent
    assert len(server.received) == 1


@pytest.mark.parametrize("stage", ["MAIL", "RCPT", "DATA"])
def test_421_is_temporary_and_the_next_send_reconnects(smtp_server: Factory, stage: str) -> None:
    server = smtp_server(
        faults=Faults(temp_fail=1, temp_reply="421 4.7.0 Too busy", temp_stage=stage)
    )
    with server.transport() as transport:
        conn = transport.connect()
        result = conn.send(SHOP, ["a@example.jp"], mail())
        assert (result.outcome, result.code) == (Outcome.TEMPORARY, 421)
        assert "Too busy" in result.message
        assert not conn.alive
        assert conn.send(SHOP, ["a@example.jp"], mail()).sent
        assert conn.alive and transport.sessions_opened == 2
    assert len(server.received) == 1


def test_550_is_permanent_per_recipient(smtp_server: Factory) -> None:
    server = smtp_server(faults=Faults(reject={"gone@example.jp"}))
    with server.transport() as transport:
        both = transport.send(SHOP, ["ok@example.jp", "gone@example.jp"], mail())
        alone = transport.send(SHOP, ["gone@example.jp"], mail())
        after = transport.send(SHOP, ["ok@example.jp"], mail())
    assert both.sent and both.refused == {"gone@example.jp": (550, "5.1.1 User unknown")}
    assert (alone.outcome, alone.code, alone.retryable) == (Outcome.PERMANENT, 550, False)
    assert alone.refused == {"gone@example.jp": (550, "5.1.1 User unknown")}
    assert after.sent
    assert [m.recipients for m in server.received] == [("ok@example.jp",), ("ok@example.jp",)]
    assert server.sessions == 1


def test_a_deferred_recipient_is_temporary_then_sent(smtp_server: Factory) -> None:
    server = smtp_server(faults=Faults(defer={"grey@example.jp": 1}))
    with server.transport() as transport:
        first = transport.send(SHOP, ["grey@example.jp"], mail())
        second = transport.send(SHOP, ["grey@example.jp"], mail())
    assert (first.outcome, first.code) == (Outcome.TEMPORARY, 451)
    assert second.sent


def test_mixed_refusals_are_retryable_when_one_was_temporary(smtp_server: Factory) -> None:
    server = smtp_server(faults=Faults(reject={"gone@example.jp"}, defer={"grey@example.jp": 1}))
    with server.transport() as transport:
        result = transport.send(SHOP, ["gone@example.jp", "grey@example.jp"], mail())
    assert (result.outcome, result.code) == (Outcome.TEMPORARY, 451)
    assert set(result.refused) == {"gone@example.jp", "grey@example.jp"}


# --- dropped connections -----------------------------------------------------------------


def test_drop_before_data_is_temporary_and_reconnect_works(smtp_server: Factory) -> None:
    server = smtp_server(faults=Faults(drop_at={3}))
    with server.transport() as transport:
        conn = transport.connect()
        results = [conn.send(SHOP, [f"m{i}@example.jp"], mail()) for i in range(5)]
    assert [r.outcome for r in results] == [
        Outcome.SENT,
        Outcome.SENT,
        Outcome.TEMPORARY,
        Outcome.SENT,
        Outcome.SENT,
    ]
    assert results[2].code is None and results[2].message.startswith("connection lost")
    assert [m.recipients[0] for m in server.received] == [
        "m0@example.jp",
        "m1@example.jp",
        "m3@example.jp",
        "m4@example.jp",
    ]
    assert server.sessions == 2


def test_drop_after_data_is_uncertain_because_the_mail_arrived(smtp_server: Factory) -> None:
    server = smtp_server(faults=Faults(drop_at={2}, drop_stage="DATA"))
    with server.transport() as transport:
        conn = transport.connect()
        first = conn.send(SHOP, ["a@example.jp"], mail())
        second = conn.send(SHOP, ["b@example.jp"], mail())
        assert not conn.alive
        third = conn.send(SHOP, ["c@example.jp"], mail())
    assert first.sent and third.sent
    assert second.outcome is Outcome.UNCERTAIN and not second.retryable
    assert [m.recipients[0] for m in server.received] == [
        "a@example.jp",
        "b@example.jp",
        "c@example.jp",
    ]


def test_a_silent_server_times_out_as_uncertain(smtp_server: Factory) -> None:
    server = smtp_server(faults=Faults(hold_after=0))
    # long enough for a loaded machine's greeting and envelope replies: only the data waits
    with server.transport(timeout=3) as transport:
        result = transport.send(SHOP, ["a@example.jp"], mail())
    assert result.outcome is Outcome.UNCERTAIN and "timed out" in result.message
    assert len(server.received) == 1  # it did arrive: resending would mail twice


def test_closing_the_transport_closes_its_connections(smtp_server: Factory) -> None:
    server = smtp_server()
    transport = server.transport()
    conns = [transport.connect(), transport.connect()]
    transport.send(SHOP, ["a@example.jp"], mail())
    transport.close()
    assert not any(c.alive for c in conns)


# --- connection-level failures -----------------------------------------------------------


def test_unreachable_server_names_host_and_port(closed_port: int) -> None:
    port = closed_port
    transport = SmtpTransport(SmtpSettings(host="127.0.0.1", port=port, timeout=5))
    with pytest.raises(TransportError) as info:
        transport.send(SHOP, ["a@example.jp"], mail())
    assert str(info.value).startswith(f"SMTP 127.0.0.1:{port}: cannot connect: ")
    assert "refused" in str(info.value).lower()
    assert isinstance(info.value.__cause__, ConnectionRefusedError)
    assert info.value.ja.startswith(f"SMTPサーバー 127.0.0.1:{port} に接続できません。")


@pytest.mark.parametrize("security", ["ssl", "starttls"])
def test_untrusted_certificate_is_a_tls_failure(smtp_server: Factory, security: str) -> None:
    server = smtp_server(security=security)
    transport = SmtpTransport(server.settings())  # the system CAs do not know the test CA
    with pytest.raises(TransportError) as info:
        transport.connect()
    assert f"127.0.0.1:{server.port}: TLS failed: certificate not trusted" in str(info.value)
    assert "暗号化（TLS）に失敗しました" in info.value.ja
    assert server.received == []


def test_starttls_not_offered(smtp_server: Factory) -> None:
    server = smtp_server()
    with pytest.raises(
        TransportError, match=r"127\.0\.0\.1:\d+: the server does not offer STARTTLS"
    ):
        SmtpTransport(server.settings(security="starttls")).connect()


def test_unknown_security_is_refused() -> None:
    with pytest.raises(SettingsError, match="'tls'"):
        SmtpTransport(SmtpSettings(security="tls"))


# --- Maildir outbox and dry run ----------------------------------------------------------


def test_maildir_outbox_keeps_exact_bytes_and_the_envelope(tmp_path: Path) -> None:
    box = tmp_path / "outbox"
    raws = [mail(f"m{i}@example.jp", subject=f"件名{i}") for i in range(3)]
    with MaildirTransport(box) as transport:
        results = [
            transport.send(SHOP, [f"m{i}@example.jp", "admin@example.com"], r)
            for i, r in enumerate(raws)
        ]
    assert all(r.sent for r in results)
    stored = read_maildir(box)
    assert [m.raw for m in stored] == raws
    assert [m.recipients for m in stored] == [
        (f"m{i}@example.jp", "admin@example.com") for i in range(3)
    ]
    assert {m.envelope_from for m in stored} == {SHOP}
    assert [m.message["Subject"] for m in stored] == ["件名0", "件名1", "件名2"]
    assert all(m.path is not None and m.path.parent == box / "new" for m in stored)
    # Any mail client (here: the stdlib's) reads it, envelope lines included.
    msgs = list(mailbox.Maildir(box, create=False))
    assert sorted(str(m["X-Envelope-To"]) for m in msgs) == sorted(
        f"m{i}@example.jp, admin@example.com" for i in range(3)
    )
    assert {m["Return-Path"] for m in msgs} == {f"<{SHOP}>"}
    assert list((box / "tmp").iterdir()) == []


def test_maildir_outbox_in_an_existing_empty_folder(tmp_path: Path) -> None:
    box = tmp_path / "made-by-hand"
    box.mkdir()
    with MaildirTransport(box) as transport:
        assert transport.send(SHOP, ["m@example.jp"], mail("m@example.jp")).sent
    assert [m.recipients for m in read_maildir(box)] == [("m@example.jp",)]


def test_maildir_outbox_on_a_file_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(TransportError, match="cannot create"):
        MaildirTransport(tmp_path / "file")


def test_read_maildir_refuses_a_non_maildir(tmp_path: Path) -> None:
    with pytest.raises(TransportError, match="not a Maildir"):
        read_maildir(tmp_path)


def test_dry_run_sends_nothing_and_keeps_the_last_few(smtp_server: Factory) -> None:
    server = smtp_server()
    with DryRunTransport(keep=2) as transport:
        conn = transport.connect()
        for i in range(4):
            result = conn.send(SHOP, [f"m{i}@example.jp"], mail(f"m{i}@example.jp"))
            assert result.outcome is Outcome.SENT
        transport.send(SHOP, ["x@example.jp"], mail("x@example.jp"))
    assert transport.count == 5
    assert [m.recipients for m in transport.kept] == [("m3@example.jp",), ("x@example.jp",)]
    assert server.transactions == 0


# --- construction ------------------------------------------------------------------------


def test_transport_from_settings_uses_file_and_environment(smtp_server: Factory) -> None:
    server = smtp_server(security="starttls", users={"shop": "s3cret"}, auth_required=True)
    env = server.env(user="shop", password="s3cret")
    transport = transport_from_settings(load_settings(env=env), ssl_context=server.client_context)
    assert transport.description == f"smtp 127.0.0.1:{server.port} (starttls, user shop)"
    with transport:
        assert transport.send(SHOP, ["a@example.jp"], mail()).sent
    assert server.received[0].auth_user == "shop"


def test_every_transport_fits_the_protocols(tmp_path: Path, smtp_server: Factory) -> None:
    server = smtp_server()
    for transport in (server.transport(), MaildirTransport(tmp_path / "o"), DryRunTransport()):
        with transport:
            assert isinstance(transport, Transport)
            assert isinstance(transport.connect(), Connection)


def test_a_subprocess_sends_through_the_environment(smtp_server: Factory) -> None:
    """How `bcartnb run` tests reach a server: BCARTNB_SMTP_* (and SSL_CERT_FILE for TLS)."""
    server = smtp_server(security="starttls", users={"shop": "s3cret"}, auth_required=True)
    script = (
        "import sys\n"
        "from bcartnb.settings import load_settings\n"
        "from bcartnb.transports import transport_from_settings\n"
        "with transport_from_settings(load_settings()) as t:\n"
        "    raw = b'Subject: sub\\r\\n\\r\\nhi\\r\\n'\n"
        "    r = t.send('shop@example.com', ['a@example.jp'], raw)\n"
        "print(r.outcome)\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("BCARTNB_")}
    env.update(server.env(user="shop", password="s3cret"))
    out = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "sent"
    [got] = server.received
    assert got.auth_user == "shop" and got.tls
    assert got.raw == b"Subject: sub\r\n\r\nhi\r\n"


@pytest.mark.parametrize("rcpt", ["a@example.jp\r\nRCPT TO:<x@evil.example>", "b@example.jp\n"])
def test_line_breaks_in_envelope_addresses_never_reach_the_wire(
    smtp_server: Factory, tmp_path: Path, rcpt: str
) -> None:
    server = smtp_server()
    for transport in (server.transport(), MaildirTransport(tmp_path / "o")):
        with transport, pytest.raises(ValueError, match="line break"):
            transport.send(SHOP, [rcpt], mail())
    assert server.transactions == 0
    assert read_maildir(tmp_path / "o") == []


def test_held_mails_wait_for_release(smtp_server: Factory) -> None:
    """The fixture's hold: how a delivery test SIGKILLs a sender at a known point."""
    server = smtp_server(faults=Faults(hold_after=1))
    results = []
    with server.transport() as transport:
        assert transport.send(SHOP, ["a@example.jp"], mail()).sent
        sender = threading.Thread(
            target=lambda: results.append(transport.send(SHOP, ["b@example.jp"], mail()))
        )
        sender.start()
        assert server.wait_held(1, timeout=10)
        assert server.wait_for(2, timeout=10)
        assert results == []  # still waiting for the reply
        server.release()
        sender.join(10)
    assert [r.outcome for r in results] == [Outcome.SENT]


# --- one thread, several connections: begin / poll / advance --------------------------------


def _drive(conns: list[SmtpConnection], results: dict[int, SendResult]) -> None:
    """What the send loop does: poll the busy sockets, advance the ready ones, expire the late."""
    while len(results) < len(conns):
        busy = {c.fileno(): (i, c) for i, c in enumerate(conns) if i not in results}
        poller = select.poll()
        for fd, (_, c) in busy.items():
            poller.register(fd, c.events)
        wait = min(c.deadline for _, c in busy.values()) - time.monotonic()
        ready = poller.poll(max(0, int(wait * 1000) + 1))
        if not ready:
            for i, c in busy.values():
                if c.deadline <= time.monotonic():
                    results[i] = c.expire()
        for fd, _ in ready:
            i, c = busy[fd]
            got = c.advance()
            if got is not None:
                results[i] = got


def test_one_thread_drives_several_connections_by_polling(smtp_server: Factory) -> None:
    server = smtp_server(faults=Faults(reject={"b@example.jp"}))
    with server.transport() as transport:
        conns = [transport.connect() for _ in range(3)]
        assert all(isinstance(c, PollableConnection) for c in conns)
        raws = {f"{n}@example.jp": mail(to=f"{n}@example.jp", body=f".{n}\n") for n in "abc"}
        results: dict[int, SendResult] = {}
        for i, (to, raw) in enumerate(raws.items()):
            assert conns[i].begin(SHOP, [to], raw) is None  # under way, not finished
            assert cast(SmtpConnection, conns[i]).busy
        _drive(cast(list[SmtpConnection], conns), results)
        outcomes = [results[i].outcome for i in range(3)]
        assert outcomes == [Outcome.SENT, Outcome.PERMANENT, Outcome.SENT]
        assert results[1].code == 550 and not cast(SmtpConnection, conns[1]).busy
        # the refused one reset its session, which carries the next mail
        assert conns[1].send(SHOP, ["d@example.jp"], mail(to="d@example.jp")).sent
    got = {r.recipients[0]: r.raw for r in server.received}
    assert set(got) == {"a@example.jp", "c@example.jp", "d@example.jp"}
    assert got["a@example.jp"] == raws["a@example.jp"]  # dot-stuffed on the wire, intact here
    assert server.sessions == 3


def test_a_multiline_reply_is_read_whole(smtp_server: Factory) -> None:
    reply = "250-2.0.0 queued\r\n250-as ABC123\r\n250 2.0.0 OK"
    server = smtp_server(faults=Faults(data_reply=reply))
    with server.transport() as transport:
        first = transport.send(SHOP, ["a@example.jp"], mail())
        second = transport.send(SHOP, ["b@example.jp"], mail())  # in step with the server
    assert first.sent and first.code == 250
    assert first.message == "2.0.0 queued as ABC123 2.0.0 OK"
    assert second.sent and len(server.received) == 2


def test_a_polled_transaction_past_its_deadline_expires_as_uncertain(smtp_server: Factory) -> None:
    server = smtp_server(faults=Faults(hold_after=0))
    with server.transport(timeout=3) as transport:
        conn = cast(SmtpConnection, transport.connect())
        assert conn.begin(SHOP, ["a@example.jp"], mail()) is None
        results: dict[int, SendResult] = {}
        _drive([conn], results)
        assert results[0].outcome is Outcome.UNCERTAIN
        assert "no reply within 3 s" in results[0].message
        assert not conn.alive and not conn.busy  # dropped: the next send reconnects
    assert len(server.received) == 1


def test_an_unreadable_reply_drops_the_connection(smtp_server: Factory) -> None:
    server = smtp_server(faults=Faults(data_reply="OK, whatever"))
    with server.transport() as transport:
        result = transport.send(SHOP, ["a@example.jp"], mail())
    assert result.outcome is Outcome.UNCERTAIN  # after the data: it may have arrived
    assert "unreadable reply" in result.message


def test_begin_twice_on_one_connection_is_a_bug(smtp_server: Factory) -> None:
    server = smtp_server(faults=Faults(hold_after=0))
    with server.transport(timeout=10) as transport:
        conn = cast(SmtpConnection, transport.connect())
        assert conn.begin(SHOP, ["a@example.jp"], mail()) is None
        with pytest.raises(RuntimeError, match="already running"):
            conn.begin(SHOP, ["b@example.jp"], mail())
        server.release()
        results: dict[int, SendResult] = {}
        _drive([conn], results)
        assert results[0].sent


# --- PIPELINING (RFC 2920) ---------------------------------------------------------------------


def _run_to_the_end(conn: PollableConnection) -> SendResult:
    """Poll one connection's transaction to its result, as the send loop does."""
    res = None
    while res is None:
        poller = select.poll()
        poller.register(conn.fileno(), conn.events)
        poller.poll(max(1, int((conn.deadline - time.monotonic()) * 1000)))
        res = conn.advance() if time.monotonic() < conn.deadline else conn.expire()
    return res


@pytest.mark.parametrize("pipelining", [False, True], ids=["plain", "pipelining"])
def test_a_held_transaction_names_no_recipient_until_it_is_let_go(
    smtp_server: Factory, pipelining: bool
) -> None:
    """begin(hold=True) writes MAIL FROM alone (the send loop commits the hand-over meanwhile);
    go() writes the rest, still pipelined where the server offers it, and the mail arrives
    whole and once."""
    server = smtp_server(faults=Faults(pipelining=pipelining))
    with server.transport() as transport:
        conn = cast(PollableConnection, transport.connect())
        assert conn.begin(SHOP, ["a@example.jp"], mail(to="a@example.jp"), hold=True) is None
        assert server.wait_transactions(1, timeout=30)
        with pytest.raises(RuntimeError, match="hold"):
            conn.advance()  # its replies are not read before the rest is written
        assert server.rcpt_attempts["a@example.jp"] == 0 and server.received == []
        assert conn.go() is None
        assert _run_to_the_end(conn).sent
        assert conn.go() is None  # nothing held any more: a no-op
        assert transport.send(SHOP, ["b@example.jp"], mail(to="b@example.jp")).sent
    assert [r.recipients for r in server.received] == [("a@example.jp",), ("b@example.jp",)]
    assert [r.pipelined for r in server.received] == [pipelining, pipelining]


def test_the_envelope_goes_in_one_write_when_the_server_offers_pipelining(
    smtp_server: Factory,
) -> None:
    plain = smtp_server()
    piped = smtp_server(faults=Faults(pipelining=True))
    for server in (plain, piped):
        with server.transport() as transport:
            for to in ("a@example.jp", "b@example.jp"):
                assert transport.send(SHOP, [to], mail(to=to)).sent
    assert [r.pipelined for r in plain.received] == [False, False]
    assert [r.pipelined for r in piped.received] == [True, True]
    assert [r.raw for r in piped.received] == [r.raw for r in plain.received]


def test_pipelined_refusals_are_read_in_order(smtp_server: Factory) -> None:
    server = smtp_server(
        faults=Faults(pipelining=True, reject={"b@example.jp"}, defer={"c@example.jp": 1})
    )
    with server.transport() as transport:
        partly = transport.send(SHOP, ["a@example.jp", "b@example.jp"], mail())
        refused = transport.send(SHOP, ["b@example.jp"], mail())  # DATA then gets 503
        deferred = transport.send(SHOP, ["b@example.jp", "c@example.jp"], mail())
        after = transport.send(SHOP, ["c@example.jp"], mail())  # the session is still in step
    assert partly.sent and partly.refused == {"b@example.jp": (550, "5.1.1 User unknown")}
    assert refused.outcome is Outcome.PERMANENT and refused.code == 550
    assert deferred.outcome is Outcome.TEMPORARY and deferred.code == 451  # one was temporary
    assert after.sent
    assert [r.recipients for r in server.received] == [("a@example.jp",), ("c@example.jp",)]
    assert server.sessions == 1


def test_a_pipelined_mail_from_refusal_and_a_421(smtp_server: Factory) -> None:
    server = smtp_server(faults=Faults(pipelining=True, temp_fail=1))
    with server.transport() as transport:
        first = transport.send(SHOP, ["a@example.jp"], mail())
        second = transport.send(SHOP, ["a@example.jp"], mail())
    assert first.outcome is Outcome.TEMPORARY and first.code == 451
    assert second.sent and len(server.received) == 1
    busy = smtp_server(faults=Faults(pipelining=True, temp_fail=1, temp_reply="421 4.7.0 Busy"))
    with busy.transport() as transport:
        dropped = transport.send(SHOP, ["a@example.jp"], mail())
        again = transport.send(SHOP, ["a@example.jp"], mail())  # reconnects
    assert dropped.outcome is Outcome.TEMPORARY and dropped.code == 421
    assert again.sent and busy.sessions == 2


def test_pipelining_server_requiring_auth_stops_the_campaign(smtp_server: Factory) -> None:
    server = smtp_server(faults=Faults(pipelining=True), auth_required=True, users={"u": "p"})
    with server.transport() as transport, pytest.raises(TransportError, match="requires AUTH"):
        transport.send(SHOP, ["a@example.jp"], mail())
    assert server.received == []
