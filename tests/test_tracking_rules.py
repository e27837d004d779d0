"""Machine clicks are not people, rule by rule; the writer's promises; the retention.

Each rule of :mod:`bcartnb.hygiene.tracking_server` and :mod:`bcartnb.ledger.tracking` is
shown alone against a real uvicorn server of the public app, on mails sent with the command
line: the server's clock is set by the test (never "it will surely have happened by now"),
and the ledger is read once the writer says it has written everything it was given.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from test_tracking import (  # noqa: F401 - fixtures
    BROWSER,
    SALE,
    Shop,
    _Serving,
    events,
    get,
    hidden,
    listening,
    mail_to,
    parts,
    send,
    shop,
    tracked,
    tracker_of,
)

from bcartnb.hygiene.track_writer import TrackWriter
from bcartnb.hygiene.tracking_server import SCANNER_AGENTS, Tracker, is_machine
from bcartnb.ledger import Ledger
from bcartnb.ledger.tracking import BURST_SECONDS, DELIVERY_SECONDS, TRAP_SECONDS, TrackEvent
from bcartnb.quota import NOW_ENV, now_tokyo
from bcartnb.settings import load_settings


class Clock:
    """The server's "now", moved by the test."""

    def __init__(self, at: datetime) -> None:
        self.at = at

    def __call__(self) -> datetime:
        return self.at


@pytest.fixture
def clocked(shop: Shop, listening: socket.socket) -> Iterator[tuple[Tracker, Clock]]:  # noqa: F811
    clock = Clock(now_tokyo() + timedelta(hours=1))
    settings = load_settings(env=shop.env)
    with Ledger.open(settings.db) as led:
        running = _Serving(settings, led, listening, clock).start()
        try:
            yield tracker_of(running), clock
        finally:
            running.server.should_exit = True
            running.thread.join(timeout=20)


def sent_at(shop: Shop, cid: str, member_id: int) -> datetime:  # noqa: F811
    with sqlite3.connect(shop.tmp / "ledger.sqlite3") as conn:
        (value,) = conn.execute(
            "SELECT result_at FROM deliveries WHERE campaign_id = ? AND member_id = ?",
            (cid, member_id),
        ).fetchone()
    return datetime.fromisoformat(value)


# --- by the request alone ----------------------------------------------------------------------

#: User-Agents as the gateways and tools send them (from their documentation and logs).
MACHINE_AGENTS = (
    "",
    "Mozilla/5.0 (compatible; MSIE 9.0; Windows NT 6.1; Trident/5.0) "
    "Microsoft Office Existence Discovery",
    "Microsoft Office/16.0 (Windows NT 10.0; Microsoft Outlook 16.0.4266; Pro)",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) SafeLinks/1.0",
    "Mozilla/5.0 (compatible; Proofpoint URL Defense)",
    "Mozilla/5.0 urldefense.proofpoint.com",
    "Mimecast-URL-Protect/1.0",
    "Mozilla/5.0 (compatible; Barracuda Sentinel)",
    "TrendMicro-InterScan/7.0",
    "Google-Safety; +https://www.google.com/bot.html",
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    "curl/8.5.0",
    "Wget/1.21.4",
    "python-requests/2.32.3",
    "Python-urllib/3.11",
    "Go-http-client/1.1",
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 HeadlessChrome/120.0 Safari/537.36",
)
PEOPLE_AGENTS = (
    BROWSER,
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_2 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_2) AppleWebKit/605.1.15 "
    "Version/17.2 Safari/605.1.15",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:121.0) Gecko/20100101 Firefox/121.0",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 Chrome/120.0 Mobile Safari/537.36",
)


@pytest.mark.parametrize("agent", MACHINE_AGENTS)
def test_a_scanners_user_agent_is_a_machine(agent: str) -> None:
    assert is_machine("GET", agent)


@pytest.mark.parametrize("agent", PEOPLE_AGENTS)
def test_a_browsers_get_is_a_person_and_its_head_a_machine(agent: str) -> None:
    assert not is_machine("GET", agent)
    assert is_machine("HEAD", agent)


def test_scanner_agents_are_lower_case_and_distinct() -> None:
    assert all(s == s.lower() and s.strip() for s in SCANNER_AGENTS)
    assert len(set(SCANNER_AGENTS)) == len(SCANNER_AGENTS)


def test_a_head_and_a_scanner_are_redirected_and_counted_apart(
    shop: Shop,  # noqa: F811
    clocked: tuple[Tracker, Clock],
) -> None:
    server, _ = clocked
    send(shop)
    sale0, _ = tracked(shop, parts(mail_to(shop, "user0@example.co.jp"))[1])
    sale1, _ = tracked(shop, parts(mail_to(shop, "user1@example.co.jp"))[1])
    assert get(sale0, method="HEAD").headers["location"] == SALE
    assert get(sale1, agent="Mimecast-URL-Protect/1.0").headers["location"] == SALE
    assert events(shop, server) == [(1000, 1, "click", 1, 1), (1001, 1, "click", 1, 1)]


# --- by what the ledger knows ----------------------------------------------------------------


def test_every_link_of_a_mail_at_once_is_a_machine_a_pause_is_a_person(
    shop: Shop,  # noqa: F811
    clocked: tuple[Tracker, Clock],
) -> None:
    server, clock = clocked
    send(shop)
    sale0, new0 = tracked(shop, parts(mail_to(shop, "user0@example.co.jp"))[1])
    sale1, new1 = tracked(shop, parts(mail_to(shop, "user1@example.co.jp"))[1])
    get(sale0)
    clock.at += timedelta(seconds=BURST_SECONDS / 2)
    get(new0)  # member 1000: both links within the burst: a gateway
    get(sale1)
    clock.at += timedelta(seconds=BURST_SECONDS + 1)
    get(new1)  # member 1001: the second link after a pause: a person reading on
    assert events(shop, server) == [
        (1000, 1, "click", 1, 1),
        (1000, 2, "click", 1, 1),
        (1001, 1, "click", 0, 1),
        (1001, 2, "click", 0, 1),
    ]


def test_a_click_right_after_delivery_is_a_gateway_scanning_it(
    shop: Shop,  # noqa: F811
    clocked: tuple[Tracker, Clock],
) -> None:
    server, clock = clocked
    cid = send(shop)
    sale0, _ = tracked(shop, parts(mail_to(shop, "user0@example.co.jp"))[1])
    sale1, _ = tracked(shop, parts(mail_to(shop, "user1@example.co.jp"))[1])
    clock.at = sent_at(shop, cid, 1000) + timedelta(seconds=DELIVERY_SECONDS / 2)
    assert get(sale0).headers["location"] == SALE  # redirected all the same
    clock.at = sent_at(shop, cid, 1001) + timedelta(seconds=DELIVERY_SECONDS + 1)
    get(sale1)
    assert events(shop, server) == [(1000, 1, "click", 1, 1), (1001, 1, "click", 0, 1)]


def test_the_hidden_link_is_invisible_and_not_in_the_text(shop: Shop) -> None:  # noqa: F811
    send(shop)
    text, html = parts(mail_to(shop, "user0@example.co.jp"))
    trap = hidden(shop, html)
    (anchor,) = re.findall(r"<a\b[^>]*" + re.escape(trap) + r"[^>]*>(.*?)</a>", html, re.S)
    assert anchor == ""  # nothing to see or read
    tag = re.search(r"<a\b[^>]*" + re.escape(trap) + r"[^>]*>", html)
    assert tag is not None
    for attribute in ('aria-hidden="true"', 'tabindex="-1"', "display:none", "width:0"):
        assert attribute in tag.group()
    assert trap not in text and "/c/" in text


def test_the_hidden_link_makes_a_machine_of_the_mails_events_near_it(
    shop: Shop,  # noqa: F811
    clocked: tuple[Tracker, Clock],
) -> None:
    server, clock = clocked
    send(shop)
    html0 = parts(mail_to(shop, "user0@example.co.jp"))[1]
    html1 = parts(mail_to(shop, "user1@example.co.jp"))[1]
    sale0, new0 = tracked(shop, html0)
    image0 = re.findall(re.escape(shop.base) + r"/o/[A-Za-z0-9_-]+", html0)[0]
    get(image0)
    get(sale0)  # looks like a person ...
    clock.at += timedelta(seconds=TRAP_SECONDS / 2)
    reply = get(hidden(shop, html0))  # ... until the hidden link is fetched
    assert reply.status_code == 204 and "location" not in reply.headers
    clock.at += timedelta(seconds=TRAP_SECONDS / 2)
    get(new0)  # and after it, within the window
    sale1, _ = tracked(shop, html1)
    get(sale1)  # another member's mail: a person
    clock.at += timedelta(seconds=TRAP_SECONDS * 3)
    get(sale0)  # member 1000 much later: a person again
    assert events(shop, server) == [
        (1000, 0, "open", 1, 1),
        (1000, 1, "click", 0, 1),
        (1000, 1, "click", 1, 1),
        (1000, 2, "click", 1, 1),
        (1000, 9999, "click", 1, 1),
        (1001, 1, "click", 0, 1),
    ]


def test_a_batch_counts_as_the_same_requests_one_by_one(tmp_path: Path) -> None:
    """The writer's batches and single requests reach the same rows (the rules are applied
    in order inside one transaction)."""
    t0 = now_tokyo()
    plan = [
        ("c", 1, 1, "click", False, 0.0),
        ("c", 1, 2, "click", False, 0.5),  # burst with link 1
        ("c", 2, 1, "click", False, 0.0),
        ("c", 2, 1, "click", False, 10.0),
        ("c", 2, 0, "open", True, 11.0),
        ("c", 3, 1, "click", False, 0.0),
        ("c", 3, 9999, "click", False, 5.0),  # the hidden link
        ("c", 3, 2, "click", False, 500.0),
    ]
    evs = [
        TrackEvent(c, m, li, k, mach, t0 + timedelta(seconds=s)) for c, m, li, k, mach, s in plan
    ]

    def rows(path: Path, batched: bool) -> list[tuple[Any, ...]]:
        with Ledger.open(path) as led:
            with sqlite3.connect(path) as conn:
                conn.execute(
                    "INSERT INTO campaigns (campaign_id, created_at, user, host, plan, "
                    "fingerprint, params, status, updated_at) "
                    "VALUES ('c', 'x', 'u', 'h', 'p', 'f', '{}', 'done', 'x')"
                )
            if batched:
                flags = led.record_tracks(evs)
            else:
                flags = [
                    led.record_track(
                        e.campaign_id, e.member_id, e.link, e.kind, machine=e.machine, now=e.at
                    )
                    for e in evs
                ]
            assert flags == [False, True, False, False, True, False, True, False]
        with sqlite3.connect(path) as conn:
            return conn.execute("SELECT * FROM tracking_events ORDER BY 1, 2, 3, 4, 5").fetchall()

    assert rows(tmp_path / "a.sqlite3", True) == rows(tmp_path / "b.sqlite3", False)


# --- the process: a clean stop, a SIGKILL, the retention ----------------------------------------


def _start(shop: Shop, port: int, now: datetime) -> subprocess.Popen[str]:  # noqa: F811
    proc = subprocess.Popen(
        [sys.executable, "-m", "bcartnb", "unsubscribe-server", "--port", str(port)],
        env=shop.env | {NOW_ENV: now.isoformat()},
        cwd=shop.tmp,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own group: a signal to the group reaches only it
    )
    assert proc.stdout is not None
    lines = [proc.stdout.readline() for _ in range(3)]
    assert "開封・クリックの計測" in lines[2], lines
    return proc


def _counted(shop: Shop) -> int:  # noqa: F811
    with sqlite3.connect(shop.tmp / "ledger.sqlite3") as conn:
        return int(
            conn.execute("SELECT coalesce(sum(count), 0) FROM tracking_events").fetchone()[0]
        )


@pytest.mark.parametrize(
    "stop", ["SIGTERM", "SIGINT to the group", "SIGTERM to the group", "SIGKILL"]
)
def test_clicks_then_a_stop_every_redirect_worked_and_never_more_counted(
    shop: Shop,  # noqa: F811
    listening: socket.socket,  # noqa: F811
    stop: str,
) -> None:
    """A clean stop writes every click, also when the signal reaches the writer process too
    (Ctrl-C in a terminal, ``systemctl stop``); a SIGKILL may lose the queued ones, never adds."""
    send(shop)
    links = [
        u
        for n in range(3)
        for u in tracked(shop, parts(mail_to(shop, f"user{n}@example.co.jp"))[1])
    ]
    port = listening.getsockname()[1]
    listening.close()
    proc = _start(shop, port, now_tokyo() + timedelta(hours=1))
    clicks = 60
    try:
        for i in range(clicks):
            reply = get(links[i % len(links)])
            assert reply.status_code == 302, reply.status_code
    finally:
        sig = (
            signal.SIGKILL
            if stop == "SIGKILL"
            else signal.SIGINT
            if "INT" in stop
            else signal.SIGTERM
        )
        if "group" in stop:
            os.killpg(proc.pid, sig)
        else:
            proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
    if stop != "SIGKILL":
        assert proc.returncode == 0, err
        assert _counted(shop) == clicks
        assert "Traceback" not in err
    else:
        assert proc.returncode == -signal.SIGKILL and 0 <= _counted(shop) <= clicks
        with Ledger.open(shop.tmp / "ledger.sqlite3") as led:  # the ledger is whole
            assert led.tracked_links(_first_campaign(shop))


def _first_campaign(shop: Shop) -> str:  # noqa: F811
    with sqlite3.connect(shop.tmp / "ledger.sqlite3") as conn:
        return str(conn.execute("SELECT campaign_id FROM campaigns").fetchone()[0])


def test_events_past_the_retention_are_deleted_when_the_server_starts(
    shop: Shop,  # noqa: F811
    listening: socket.socket,  # noqa: F811
) -> None:
    config = shop.tmp / "bcartnb.toml"
    config.write_text(config.read_text("utf-8") + "retention_days = 30\n", "utf-8")
    cid = send(shop)
    start = now_tokyo() + timedelta(days=100)
    with Ledger.open(shop.tmp / "ledger.sqlite3") as led:
        led.record_track(cid, 1000, 1, "click", machine=False, now=start - timedelta(days=31))
        led.record_track(cid, 1001, 1, "click", machine=False, now=start - timedelta(days=29))
    port = listening.getsockname()[1]
    listening.close()
    proc = _start(shop, port, start)
    try:
        deadline = time.monotonic() + 60
        while _members(shop) != [1001]:
            assert time.monotonic() < deadline, _members(shop)
            assert proc.poll() is None
            time.sleep(0.05)
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0 and _members(shop) == [1001]
    assert "保存期間（30日）を過ぎた開封・クリックの記録 1 件を削除しました" in err


def _members(shop: Shop) -> list[int]:  # noqa: F811
    with sqlite3.connect(shop.tmp / "ledger.sqlite3") as conn:
        return [r[0] for r in conn.execute("SELECT member_id FROM tracking_events ORDER BY 1")]


def test_the_running_server_purges_again_as_days_pass(tmp_path: Path) -> None:
    """The writer's daily purge, with the day made short and the clock moved by the test."""
    path = tmp_path / "ledger.sqlite3"
    clock = Clock(now_tokyo())
    with Ledger.open(path) as led:
        with sqlite3.connect(path) as conn:
            conn.execute(
                "INSERT INTO campaigns (campaign_id, created_at, user, host, plan, "
                "fingerprint, params, status, updated_at) "
                "VALUES ('c', 'x', 'u', 'h', 'p', 'f', '{}', 'done', 'x')"
            )
        led.record_track("c", 1, 1, "click", machine=False, now=clock.at - timedelta(days=10))
        writer = TrackWriter(led, retention_days=30, clock=clock, purge_every=0.05)
        writer.start()
        try:
            assert writer.put(TrackEvent("c", 2, 1, "click", False, clock.at))
            assert writer.flush()
            assert _rows(path) == [1, 2]  # 10 days old: kept at start
            clock.at += timedelta(days=25)  # now 35 days old, and the other 25
            deadline = time.monotonic() + 60
            while _rows(path) != [2]:
                assert time.monotonic() < deadline, _rows(path)
                time.sleep(0.05)
        finally:
            writer.close()
    assert _rows(path) == [2]


def _rows(path: Path) -> list[int]:
    with sqlite3.connect(path) as conn:
        return [r[0] for r in conn.execute("SELECT member_id FROM tracking_events ORDER BY 1")]


def test_a_locked_ledger_keeps_the_clicks_queued_refuses_past_the_backlog_and_loses_none(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Another process holds the ledger's write lock past the writer's timeout.

    The writer logs why in Japanese, keeps its batch and tries again; new clicks queue until
    the backlog is full, then are refused (the server's 503); once the lock goes, every
    accepted click is recorded exactly once and no refused one is.
    """
    path = tmp_path / "ledger.sqlite3"
    with Ledger.open(path) as led:
        with sqlite3.connect(path) as conn:
            conn.execute(
                "INSERT INTO campaigns (campaign_id, created_at, user, host, plan, "
                "fingerprint, params, status, updated_at) "
                "VALUES ('c', 'x', 'u', 'h', 'p', 'f', '{}', 'done', 'x')"
            )
        at = now_tokyo()
        writer = TrackWriter(led, max_pending=5)
        writer.start()
        try:
            assert writer.put(TrackEvent("c", 1, 1, "click", False, at))
            assert writer.flush()  # the writer process is up and has written once
            holder = sqlite3.connect(path, isolation_level=None)
            holder.execute("BEGIN EXCLUSIVE")
            try:
                accepted, refused = [1], []
                for member in range(2, 200):
                    ok = writer.put(TrackEvent("c", member, 1, "click", False, at))
                    (accepted if ok else refused).append(member)
                    if refused:
                        break
                assert refused, "the backlog never filled while the ledger was locked"
                deadline = time.monotonic() + 120
                while "開封・クリックを記録できません" not in caplog.text:
                    assert time.monotonic() < deadline, "the locked write never failed"
                    time.sleep(0.05)
                assert _rows(path) == [1]  # nothing written while the lock is held
            finally:
                holder.rollback()
                holder.close()
            assert writer.flush(timeout=120)
        finally:
            writer.close()
    assert _rows(path) == accepted
    assert refused[0] not in _rows(path)
