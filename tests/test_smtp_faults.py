"""The scripted faults of the test SMTP server (tests/smtp_servers.py), with plain smtplib.

Delivery tests trust these faults to mean what they say (a greylisted address is accepted
only after its delay, a shutting-down server refuses and hangs up, a hanging server never
answers, a server that went down comes back on its port with its mail), so each is checked
here against the real server over a real socket, with nothing of bcartnb's in between.
"""

from __future__ import annotations

import smtplib
import socket
import threading
from collections import Counter
from collections.abc import Callable

import pytest
from smtp_servers import Faults, ManualClock, TestServer

Server = Callable[..., TestServer]

SHOP = "shop@example.co.jp"
A = "a@example.co.jp"
B = "b@example.co.jp"
MESSAGE = b"From: shop@example.co.jp\r\nSubject: test\r\n\r\nbody\r\n"


def connect(server: TestServer, timeout: float = 5.0) -> smtplib.SMTP:
    return smtplib.SMTP(server.host, server.port, timeout=timeout)


def send(server: TestServer, *recipients: str) -> None:
    with connect(server) as client:
        assert client.sendmail(SHOP, list(recipients), MESSAGE) == {}


# --- greylist ----------------------------------------------------------------------------
def test_greylist_refuses_until_the_delay_has_passed_per_address(smtp_server: Server) -> None:
    clock = ManualClock()  # the delay ends when the test says, not when the machine is slow
    server = smtp_server(faults=Faults(greylist=300), clock=clock)
    greylisted = (451, b"4.7.1 Greylisted, please try again later")
    with connect(server) as client:
        for _ in range(2):  # the first RCPT, then a retry 299 s later: both too early
            with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
                client.sendmail(SHOP, [A], MESSAGE)
            assert refused.value.recipients[A] == greylisted
            clock.advance(299)
        # A has waited long enough (598 s); B is new, so it starts its own wait.
        assert client.sendmail(SHOP, [A, B], MESSAGE) == {B: greylisted}
        clock.advance(299.5)  # B's own clock: still half a second early
        with pytest.raises(smtplib.SMTPRecipientsRefused):
            client.sendmail(SHOP, [B], MESSAGE)
        clock.advance(0.5)  # exactly the delay: accepted
        assert client.sendmail(SHOP, [B], MESSAGE) == {}
    assert [mail.recipients for mail in server.received] == [(A,), (B,)]
    assert server.count_by_recipient() == Counter({A: 1, B: 1})
    assert server.rcpt_attempts == Counter({A: 3, B: 3})


# --- shutdown ----------------------------------------------------------------------------
def test_shutdown_after_n_mails_refuses_with_421_then_recovers(smtp_server: Server) -> None:
    clock = ManualClock()  # the window ends when the test says, never while it looks
    server = smtp_server(faults=Faults(shutdown_after=2, shutdown_for=30), clock=clock)
    with connect(server) as client:
        assert client.sendmail(SHOP, [A], MESSAGE) == {}
        assert client.sendmail(SHOP, [B], MESSAGE) == {}  # the 2nd 250 opens the window
        # docmd rather than sendmail: smtplib hangs up by itself on a 421 at MAIL, and we
        # want to see that the server closes the connection.
        assert client.docmd(f"MAIL FROM:<{SHOP}>") == (421, b"4.3.2 Service shutting down")
        with pytest.raises(smtplib.SMTPServerDisconnected):
            client.noop()
    clock.advance(29.9)  # still inside the window
    with pytest.raises(smtplib.SMTPConnectError) as refused:  # 421 instead of 220
        connect(server)
    assert (refused.value.smtp_code, refused.value.smtp_error) == (
        421,
        b"4.3.2 Service shutting down",
    )
    clock.advance(0.1)  # the window has ended
    send(server, A)  # a new connection after the window: accepted again
    assert server.count_by_recipient() == Counter({A: 2, B: 1})
    assert server.transactions == 4  # the refused MAIL FROM counts as a transaction


def test_shutdown_for_good_by_default(smtp_server: Server) -> None:
    server = smtp_server(faults=Faults(shutdown_after=1))
    send(server, A)
    for _ in range(2):
        with pytest.raises(smtplib.SMTPConnectError):
            connect(server)
    assert len(server.received) == 1


# --- reject_all --------------------------------------------------------------------------
def test_reject_all_refuses_every_recipient_with_550(smtp_server: Server) -> None:
    server = smtp_server(faults=Faults(reject_all=True))
    with connect(server) as client, pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
        client.sendmail(SHOP, [A, B], MESSAGE)
    assert refused.value.recipients == {
        A: (550, b"5.1.1 User unknown"),
        B: (550, b"5.1.1 User unknown"),
    }
    assert server.received == []
    assert server.count_by_recipient() == Counter()
    assert server.rcpt_attempts == Counter({A: 1, B: 1})


# --- hang_after_data ---------------------------------------------------------------------
def test_hang_after_data_records_the_mail_and_the_client_times_out(smtp_server: Server) -> None:
    server = smtp_server(faults=Faults(hang_after_data=True))
    with (
        connect(server, timeout=3) as client,
        pytest.raises(smtplib.SMTPServerDisconnected) as lost,
    ):
        client.sendmail(SHOP, [A], MESSAGE)
    assert "timed out" in str(lost.value)  # smtplib turns the socket timeout into this
    assert server.wait_held(1, timeout=30)
    assert [mail.raw for mail in server.received] == [MESSAGE]
    assert server.count_by_recipient() == Counter({A: 1})  # it did arrive


def returns_before_the_client_gives_up(action: Callable[[], None]) -> bool:
    """Run ``action`` (stop or down) beside a client that would wait a minute for a reply.

    Whether it returned while that client still waited: a stop that waited for the held
    mail's reply would only return once the client hung up.
    """
    done = threading.Thread(target=action)
    done.start()
    done.join(30)
    return not done.is_alive()


def test_stop_ends_a_hanging_mail_without_release(smtp_server: Server) -> None:
    server = smtp_server(faults=Faults(hang_after_data=True))
    client = connect(server, timeout=60)
    try:
        client.ehlo()
        client.mail(SHOP)
        client.rcpt(A)
        client.send(b"DATA\r\n")
        assert client.getreply()[0] == 354
        client.send(MESSAGE + b".\r\n")
        assert server.wait_held(1, timeout=30)
        # the fixture's teardown stops it too: it must not wait for a reply
        assert returns_before_the_client_gives_up(server.stop)
        with pytest.raises(smtplib.SMTPServerDisconnected) as lost:
            client.getreply()
        assert "timed out" not in str(lost.value)  # the server hung up: EOF, no waiting
    finally:
        client.close()
    assert len(server.received) == 1


# --- set_faults --------------------------------------------------------------------------
def test_set_faults_mid_run_fails_then_recovers_keeping_counters(smtp_server: Server) -> None:
    server = smtp_server()
    with connect(server) as client:
        assert client.sendmail(SHOP, [A], MESSAGE) == {}
        server.set_faults(Faults(reject_all=True))  # same connection, next transaction
        with pytest.raises(smtplib.SMTPRecipientsRefused):
            client.sendmail(SHOP, [B], MESSAGE)
        server.set_faults(Faults())
        assert server.faults == Faults()
        assert client.sendmail(SHOP, [B], MESSAGE) == {}
    # 2 mails were accepted already: shutdown_after counts server-wide, so 0 or 2 means now.
    server.set_faults(Faults(shutdown_after=2, shutdown_for=30))
    with pytest.raises(smtplib.SMTPConnectError):
        connect(server)
    server.set_faults(Faults())  # recovers at once: no need to wait 30 s
    send(server, A)
    assert server.count_by_recipient() == Counter({A: 2, B: 1})
    assert server.rcpt_attempts == Counter({A: 2, B: 2})
    assert server.transactions == 4


def test_set_faults_can_start_greylisting_mid_run(smtp_server: Server) -> None:
    server = smtp_server()
    send(server, A)
    server.set_faults(Faults(greylist=60))  # A was seen before, but not while greylisting
    with connect(server) as client, pytest.raises(smtplib.SMTPRecipientsRefused):
        client.sendmail(SHOP, [A], MESSAGE)
    assert server.count_by_recipient() == Counter({A: 1})


# --- down / up ---------------------------------------------------------------------------
def test_down_refuses_connections_and_up_serves_the_same_port(smtp_server: Server) -> None:
    server = smtp_server()
    port = server.port
    send(server, A)
    idle = connect(server)
    try:
        idle.ehlo()
        server.down()
        assert not server.is_up
        with pytest.raises(smtplib.SMTPServerDisconnected):  # open connections are closed
            idle.noop()
    finally:
        idle.close()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((server.host, port), timeout=1).close()
    with pytest.raises(ConnectionRefusedError):
        connect(server)
    server.down()  # already down: nothing to do

    assert server.up() is server
    assert server.is_up and server.port == port
    send(server, B)
    assert [mail.recipients for mail in server.received] == [(A,), (B,)]
    # The restarted server still plays the faults, the greeting-time 421 included.
    server.set_faults(Faults(shutdown_after=0))
    with pytest.raises(smtplib.SMTPConnectError):
        connect(server)


def test_down_with_a_held_mail_then_stop_while_down(smtp_server: Server) -> None:
    server = smtp_server(faults=Faults(hold_after=0))
    client = connect(server, timeout=60)
    try:
        client.ehlo()
        client.mail(SHOP)
        client.rcpt(A)
        client.send(b"DATA\r\n")
        assert client.getreply()[0] == 354
        client.send(MESSAGE + b".\r\n")
        assert server.wait_held(1, timeout=30)
        assert returns_before_the_client_gives_up(server.down)
        with pytest.raises(smtplib.SMTPServerDisconnected) as lost:
            client.getreply()
        assert "timed out" not in str(lost.value)
    finally:
        client.close()
    server.stop()  # while down; the fixture stops it once more
    assert len(server.received) == 1


def test_faults_are_validated() -> None:
    with pytest.raises(ValueError, match="greylist"):
        Faults(greylist=-1)
    with pytest.raises(ValueError, match="shutdown_after"):
        Faults(shutdown_after=-1)
    with pytest.raises(ValueError, match="shutdown_for"):
        Faults(shutdown_for=-0.5)
