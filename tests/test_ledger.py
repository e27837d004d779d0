"""The ledger on real SQLite files: counting, reservations, the journal, races, crashes, bad files.

Time is injected (``now=`` and ``clock=``); other processes are real subprocesses, killed for
real where a crash is the point.
"""

from __future__ import annotations

import hashlib
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bcartnb import ledger as ledger_module
from bcartnb.exceptions import CampaignStateError, LedgerError, QuotaExceededError
from bcartnb.ledger import (
    APPLICATION_ID,
    MIGRATIONS,
    SCHEMA_VERSION,
    DeliveryResult,
    Ledger,
    fingerprint,
)
from bcartnb.quota import TOKYO

NOW = datetime(2026, 11, 27, 14, 30, tzinfo=TOKYO)


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "ledger.sqlite3"


@pytest.fixture
def ledger(db: Path) -> Iterator[Ledger]:
    with Ledger.open(db, clock=lambda: NOW) as led:
        yield led


def new_campaign(
    led: Ledger, n: int = 10, plan: str = "light", cid: str | None = None, start: int = 1
) -> str:
    rows = [(i, f"member{i}@example.co.jp") for i in range(start, start + n)]
    campaign_id = led.create_campaign(
        plan=plan,
        params={"filter": {"pref": "東京都"}, "subject": "新商品のご案内"},
        fingerprint=fingerprint({"n": n}, rows),
        selected=n + 2,
        sendable=n,
        unsendable=2,
        reasons={"invalid_address": 2},
        campaign_id=cid,
    )
    led.add_recipients(campaign_id, rows)
    return campaign_id


def send_all(led: Ledger, cid: str, state: str = "sent", now: datetime | None = None) -> int:
    ids = [r.member_id for r in led.pending(cid)]
    led.mark_sending(cid, ids, now=now)
    led.mark_results(cid, [(m, state, 250 if state == "sent" else 550, "x") for m in ids], now=now)
    return len(ids)


def python(code: str, *args: str) -> subprocess.Popen[str]:
    """A real second process running ``code`` (dedented), talking over stdin/stdout."""
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_all_is_sorted_and_exported() -> None:
    names = ledger_module.__all__
    key = lambda n: (0 if n.isupper() else 1 if n[0].isupper() else 2, n)  # noqa: E731
    assert names == sorted(names, key=key)
    for name in names:
        assert hasattr(ledger_module, name)


# --- opening ---------------------------------------------------------------------------------


def test_new_ledger_is_wal_versioned_and_marked_ours(db: Path) -> None:
    Ledger.open(db).close()
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert conn.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
    conn.close()


def test_durable_mode_syncs_every_commit(db: Path) -> None:
    with Ledger.open(db, durable=True) as led:
        assert led._conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    with Ledger.open(db) as led:
        assert led._conn.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL


def test_path_comes_from_bcartnb_db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "from-env" / "l.sqlite3"
    monkeypatch.setenv("BCARTNB_DB", str(target))
    with Ledger.open() as led:
        assert led.path == target
    assert target.is_file()


def test_path_comes_from_the_settings_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "shop" / "bcartnb.toml"
    cfg.parent.mkdir()
    cfg.write_text('plan = "plan10"\ndb = "data/ledger.sqlite3"\n', encoding="utf-8")
    monkeypatch.setenv("BCARTNB_CONFIG", str(cfg))
    with Ledger.open() as led:
        assert led.path == cfg.parent / "data" / "ledger.sqlite3"


def test_reopening_keeps_everything(db: Path) -> None:
    with Ledger.open(db, clock=lambda: NOW) as led:
        cid = new_campaign(led)
        led.reserve(cid, 10, "light")
        send_all(led, cid)
        led.finish(cid)
    with Ledger.open(db, clock=lambda: NOW) as led:
        assert led.usage("light").used == 10
        assert led.campaign(cid).sent == 10


# --- counting rules --------------------------------------------------------------------------


def test_sent_and_refused_mail_each_count_once(ledger: Ledger) -> None:
    cid = new_campaign(ledger, 4)
    ledger.reserve(cid, 4, "light")
    ledger.mark_sending(cid, [1, 2, 3, 4])
    ledger.mark_results(
        cid,
        [
            DeliveryResult(1, "sent", 250, "ok"),
            DeliveryResult(2, "failed", 550, "5.1.1 user unknown"),  # refused: still one
            DeliveryResult(3, "sent", 250, "ok"),  # may bounce later: still one
            DeliveryResult(4, "failed", 552, "mailbox full"),
        ],
    )
    ledger.finish(cid)
    assert ledger.usage("light").used == 4
    assert ledger.campaign(cid).journal == {"sent": 2, "failed": 2}


def test_every_smtp_transaction_counts_so_a_retry_counts_again(ledger: Ledger) -> None:
    cid = new_campaign(ledger, 1)
    ledger.reserve(cid, 3, "light")
    for _ in range(2):  # two temporary failures, then success
        ledger.mark_sending(cid, [1])
        ledger.mark_result(cid, 1, "pending", 451, "try again later")
    ledger.mark_sending(cid, [1])
    ledger.mark_result(cid, 1, "sent", 250, "ok")
    assert ledger.usage("light").used == 3
    (row,) = ledger.deliveries(cid).itertuples()
    assert (row.state, row.attempts, row.code) == ("sent", 3, 250)


def test_a_transaction_that_never_started_is_refunded(ledger: Ledger) -> None:
    cid = new_campaign(ledger, 2)
    ledger.reserve(cid, 2, "light")
    ledger.mark_sending(cid, [1, 2])
    assert ledger.usage("light").used == 2
    ledger.mark_results(
        cid,
        [DeliveryResult(1, "pending", None, "connection refused", counted=False)],
    )
    status = ledger.usage("light")
    assert (status.used, status.reserved) == (1, 1)  # the unit is back in the reservation
    ledger.mark_sending(cid, [1])
    ledger.mark_results(cid, [(1, "sent", 250, "ok"), (2, "sent", 250, "ok")])
    assert ledger.usage("light").used == 2


def test_test_sends_and_admin_copies_are_recorded_not_counted(ledger: Ledger) -> None:
    cid = new_campaign(ledger, 3)
    ledger.record_send("test", "me@shop.example", code=250, message="ok")
    ledger.reserve(cid, 3, "light")
    send_all(ledger, cid)
    assert ledger.claim_admin_copy(cid)
    ledger.mark_admin_copy(cid, "admin@shop.example", code=250, message="ok")
    ledger.finish(cid)
    assert ledger.usage("light").used == 3
    sends = ledger.sends()
    assert list(sends["kind"]) == ["test", "admin"]
    assert list(sends["campaign_id"].fillna("")) == ["", cid]
    with pytest.raises(ValueError, match="kind"):
        ledger.record_send("campaign", "x@example.com")


def test_own_smtp_has_no_cap_but_usage_is_counted(ledger: Ledger) -> None:
    cid = new_campaign(ledger, 5, plan="own-smtp")
    status = ledger.reserve(cid, 1_000_000, "own-smtp")
    assert status.cap is None and status.remaining is None
    send_all(ledger, cid)
    ledger.finish(cid)
    status = ledger.usage("自社SMTP")
    assert (status.used, status.cap, status.as_dict()["remaining"]) == (5, None, None)
    assert status.as_dict()["plan"] == "自社SMTP"


def test_usage_is_per_month_and_per_campaign(ledger: Ledger) -> None:
    a = new_campaign(ledger, 3, cid="a")
    b = new_campaign(ledger, 2, cid="b")
    oct_now = datetime(2026, 10, 15, tzinfo=TOKYO)
    ledger.reserve(a, 3, "light", now=oct_now)
    send_all(ledger, a, now=oct_now)
    ledger.finish(a, now=oct_now)
    ledger.reserve(b, 2, "light")
    send_all(ledger, b)
    ledger.finish(b)
    assert ledger.usage("light", "2026-10").used == 3
    assert ledger.usage("light").used == 2  # NOW is November
    assert ledger.usage_by_campaign("2026-10") == {"a": 3}
    assert ledger.usage_by_campaign("2026-11") == {"b": 2}
    assert ledger.usage("light", "2026-09").used == 0


# --- month boundaries ------------------------------------------------------------------------

LAST_SECOND_NOV = datetime(2026, 11, 30, 23, 59, 59, tzinfo=TOKYO)
FIRST_SECOND_DEC = datetime(2026, 12, 1, 0, 0, 0, tzinfo=TOKYO)


def test_a_send_at_the_last_second_counts_for_november(ledger: Ledger) -> None:
    cid = new_campaign(ledger, 2)
    ledger.reserve(cid, 2, "light", now=LAST_SECOND_NOV)
    ledger.mark_sending(cid, [1], now=LAST_SECOND_NOV)
    ledger.mark_sending(cid, [2], now=FIRST_SECOND_DEC)
    assert ledger.usage("light", "2026-11").used == 1
    assert ledger.usage("light", "2026-12").used == 1
    # The reservation followed the campaign into December.
    assert ledger.usage("light", "2026-11", now=FIRST_SECOND_DEC).reserved == 0


def test_a_campaign_crossing_midnight_cannot_overrun_the_new_month(ledger: Ledger) -> None:
    late = new_campaign(ledger, 50, cid="late")
    ledger.reserve(late, 50, "light", now=LAST_SECOND_NOV)
    ledger.mark_sending(late, [1], now=LAST_SECOND_NOV)
    # December starts and another campaign takes 60 of December's 100.
    early = new_campaign(ledger, 60, cid="early")
    ledger.reserve(early, 60, "light", now=FIRST_SECOND_DEC)
    # The late campaign still holds 49 units for November; December has only 40 left.
    with pytest.raises(QuotaExceededError, match=r"2026-12.*reserved 60, needed 49"):
        ledger.mark_sending(late, [2], now=FIRST_SECOND_DEC)
    assert ledger.usage("light", "2026-12", now=FIRST_SECOND_DEC).used == 0
    assert [r.member_id for r in ledger.pending(late)][:1] == [2]


# --- reservations ----------------------------------------------------------------------------


def test_a_campaign_larger_than_what_is_left_is_refused_before_anything(ledger: Ledger) -> None:
    first = new_campaign(ledger, 70, cid="first")
    ledger.reserve(first, 70, "light")
    send_all(ledger, first)
    ledger.finish(first)
    running = new_campaign(ledger, 20, cid="running")
    ledger.reserve(running, 20, "light")
    big = new_campaign(ledger, 11, cid="big")
    with pytest.raises(QuotaExceededError) as exc:
        ledger.reserve(big, 11, "light")
    msg = str(exc.value)
    for part in ("cap 100", "used 70", "reserved 20", "needed 11"):
        assert part in msg
    assert ledger.campaign(big).status == "planned"
    assert ledger.usage("light").as_dict() | {"reserved": ledger.usage("light").reserved} == {
        "plan": "ライトプラン",
        "month": "2026-11",
        "cap": 100,
        "used": 70,
        "remaining": 10,
        "reserved": 20,
    }
    # Exactly what is left still fits.
    assert ledger.reserve(big, 10, "light").remaining == 0


def test_finish_releases_the_unused_reservation(ledger: Ledger) -> None:
    cid = new_campaign(ledger, 10)
    ledger.reserve(cid, 10, "light")
    ledger.mark_sending(cid, [1, 2, 3])
    ledger.mark_results(cid, [(m, "sent", 250, "ok") for m in (1, 2, 3)])
    assert ledger.finish(cid, "interrupted") == 7
    status = ledger.usage("light")
    assert (status.used, status.reserved, status.remaining) == (3, 0, 97)
    assert ledger.campaign(cid).status == "interrupted"


def test_sending_needs_a_reservation_and_cannot_exceed_it(ledger: Ledger) -> None:
    cid = new_campaign(ledger, 10)
    with pytest.raises(CampaignStateError, match="reserve"):
        ledger.mark_sending(cid, [1])
    ledger.reserve(cid, 3, "light")
    with pytest.raises(QuotaExceededError, match="3 reserved mails left, 4 needed"):
        ledger.mark_sending(cid, [1, 2, 3, 4])
    assert ledger.usage("light").used == 0
    assert len(ledger.pending(cid)) == 10
    ledger.finish(cid)
    with pytest.raises(CampaignStateError, match="reserve"):
        ledger.mark_sending(cid, [1])


def test_a_done_campaign_cannot_be_reserved_again(ledger: Ledger) -> None:
    cid = new_campaign(ledger, 1)
    ledger.reserve(cid, 1, "light")
    send_all(ledger, cid)
    ledger.finish(cid, "done")
    with pytest.raises(CampaignStateError, match="done"):
        ledger.reserve(cid, 1, "light")


def test_expired_lease_is_reclaimed_and_the_old_owner_is_stopped(db: Path) -> None:
    with Ledger.open(db, lease=timedelta(minutes=10)) as led:
        a = new_campaign(led, 60, cid="a")
        led.reserve(a, 60, "light", now=NOW)
        led.mark_sending(a, [1, 2], now=NOW)
        b = new_campaign(led, 60, cid="b")
        # Same live process, lease still valid: a's 58 units are held.
        with pytest.raises(QuotaExceededError, match="reserved 58"):
            led.reserve(b, 60, "light", now=NOW + timedelta(minutes=9))
        # Lease expired (an abandoned notebook kernel, say): reclaimed by the next reserve.
        led.reserve(b, 60, "light", now=NOW + timedelta(minutes=11))
        assert led.campaign(a).status == "interrupted"
        assert [r.member_id for r in led.uncertain(a)] == [1, 2]
        with pytest.raises(CampaignStateError, match="reclaimed"):
            led.mark_sending(a, [3], now=NOW + timedelta(minutes=12))
        # Late results for the in-flight rows are still recorded: they are the truth.
        led.mark_results(a, [(1, "sent", 250, "ok")], now=NOW + timedelta(minutes=12))
        assert led.campaign(a).journal == {"sent": 1, "uncertain": 1, "pending": 58}
        assert led.usage("light", now=NOW + timedelta(minutes=12)).used == 2


def test_heartbeat_and_sending_renew_the_lease(db: Path) -> None:
    with Ledger.open(db, lease=timedelta(minutes=10)) as led:
        a = new_campaign(led, 60, cid="a")
        led.reserve(a, 60, "light", now=NOW)
        led.heartbeat(a, now=NOW + timedelta(minutes=8))
        led.mark_sending(a, [1], now=NOW + timedelta(minutes=16))
        b = new_campaign(led, 60, cid="b")
        with pytest.raises(QuotaExceededError):
            led.reserve(b, 60, "light", now=NOW + timedelta(minutes=25))
        assert led.reclaim(now=NOW + timedelta(minutes=27)) == ["a"]
        with pytest.raises(CampaignStateError):
            led.heartbeat(a, now=NOW + timedelta(minutes=28))


def test_reservation_from_another_host_waits_for_its_lease(db: Path) -> None:
    with Ledger.open(db) as led:
        a = new_campaign(led, 60, cid="a")
        led.reserve(a, 60, "light", now=NOW)
    # Pretend the reservation belongs to a machine sharing the file: its pid means nothing here.
    conn = sqlite3.connect(db)
    conn.execute("UPDATE reservations SET host = 'other-host', pid = 999999999")
    conn.commit()
    conn.close()
    with Ledger.open(db) as led:
        b = new_campaign(led, 60, cid="b")
        with pytest.raises(QuotaExceededError):
            led.reserve(b, 60, "light", now=NOW + timedelta(minutes=9))
        with pytest.raises(CampaignStateError, match="other-host"):
            led.reserve(a, 60, "light", now=NOW + timedelta(minutes=9))
        led.reserve(b, 60, "light", now=NOW + timedelta(minutes=11))


CRASHER = """
    import sys
    from datetime import datetime
    from bcartnb.ledger import Ledger
    now = datetime.fromisoformat(sys.argv[2])
    led = Ledger.open(sys.argv[1], clock=lambda: now)
    led.reserve("crash", 50, "light")
    led.mark_sending("crash", [1, 2, 3, 4, 5])
    led.mark_results("crash", [(1, "sent", 250, "ok"), (2, "sent", 250, "ok")])
    print("ready", flush=True)
    sys.stdin.read()  # wait here until killed
"""


def test_a_killed_process_does_not_lock_the_quota(db: Path) -> None:
    with Ledger.open(db, clock=lambda: NOW) as led:
        new_campaign(led, 60, cid="crash")
        other = new_campaign(led, 95, cid="other")
    proc = python(CRASHER, str(db), NOW.isoformat())
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready", proc.stderr.read()  # type: ignore[union-attr]
        with Ledger.open(db, clock=lambda: NOW) as led:
            status = led.usage("light")
            assert (status.used, status.reserved) == (5, 45)
            with pytest.raises(QuotaExceededError, match="used 5, reserved 45"):
                led.reserve(other, 95, "light")  # the owner is alive: its units are held
            with pytest.raises(CampaignStateError, match="being sent by pid"):
                led.reserve("crash", 10, "light")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stdout.close()  # type: ignore[union-attr]
        proc.stderr.close()  # type: ignore[union-attr]
        proc.stdin.close()  # type: ignore[union-attr]
    assert proc.returncode == -signal.SIGKILL
    # Same instant, lease still valid: the dead pid alone frees the reservation.
    with Ledger.open(db, clock=lambda: NOW) as led:
        status = led.usage("light")  # a dead owner's units are not shown as held
        assert (status.used, status.reserved, status.remaining) == (5, 0, 95)
        after = led.reserve(other, 95, "light")
        assert (after.used, after.reserved, after.remaining) == (5, 95, 0)
        crashed = led.campaign("crash")
        assert crashed.status == "interrupted"
        assert crashed.journal == {"sent": 2, "uncertain": 3, "pending": 55}
        assert [r.member_id for r in led.uncertain("crash")] == [3, 4, 5]
        # The in-flight mails were counted when handed over; nothing was lost or double counted.
        assert led.usage_by_campaign("2026-11") == {"crash": 5}


def test_resume_after_a_crash_sends_nobody_twice(db: Path) -> None:
    with Ledger.open(db, clock=lambda: NOW) as led:
        new_campaign(led, 60, cid="crash")
    proc = python(CRASHER, str(db), NOW.isoformat())
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    proc.kill()
    proc.communicate()
    with Ledger.open(db, clock=lambda: NOW) as led:
        assert led.uncertain("crash") == []  # still "sending" until somebody reclaims
        assert led.reclaim() == ["crash"]
        todo = led.pending("crash")
        resend = led.uncertain("crash")
        led.reserve("crash", len(todo) + len(resend), "light")
        assert led.campaign("crash").status == "sending"
        with pytest.raises(CampaignStateError, match="uncertain"):
            led.mark_sending("crash", [3])  # a resend must be deliberate
        led.mark_sending("crash", [r.member_id for r in resend], resend=True)
        led.mark_sending("crash", [r.member_id for r in todo])
        led.mark_results("crash", [(m, "sent", 250, "ok") for m in range(3, 61)])
        assert led.finish("crash") == 0
        record = led.campaign("crash")
        assert record.journal == {"sent": 60}
        # 60 mails, 5 in flight at the crash, of which 3 resent and counted again.
        assert led.usage("light").used == 63
        attempts = led.deliveries("crash").set_index("member_id")["attempts"]
        assert attempts[1] == attempts[2] == 1 and attempts[3] == 2 and attempts[60] == 1


def test_another_live_process_cannot_finish_or_take_over_a_campaign(db: Path) -> None:
    with Ledger.open(db, clock=lambda: NOW) as led:
        new_campaign(led, 60, cid="crash")
    proc = python(CRASHER, str(db), NOW.isoformat())
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        with Ledger.open(db, clock=lambda: NOW) as led:
            with pytest.raises(CampaignStateError, match="being sent"):
                led.finish("crash")
            assert led.campaign("crash").status == "sending"
    finally:
        proc.kill()
        proc.communicate()


# --- the race --------------------------------------------------------------------------------

RACER = """
    import sys
    from datetime import datetime
    from bcartnb.exceptions import QuotaExceededError
    from bcartnb.ledger import Ledger
    path, size, rounds, tag = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    now = datetime.fromisoformat(sys.argv[5])
    sys.stdin.readline()  # everybody starts together
    led = Ledger.open(path, clock=lambda: now, timeout=60)
    ok = refused = 0
    for r in range(rounds):
        rows = [(i, f"m{i}@example.jp") for i in range(size)]
        cid = led.create_campaign(
            plan="light", params={}, fingerprint="x", campaign_id=f"{tag}-{r}"
        )
        led.add_recipients(cid, rows)
        try:
            led.reserve(cid, size, "light")
        except QuotaExceededError:
            refused += 1
            led.finish(cid, "failed")
            continue
        led.mark_sending(cid, [m for m, _ in rows])
        led.mark_results(cid, [(m, "sent", 250, "ok") for m, _ in rows])
        led.finish(cid)
        ok += 1
    print(ok, refused)
"""


@pytest.mark.slow
@pytest.mark.parametrize(("size", "rounds"), [(1, 15), (3, 5), (7, 2)])
def test_racing_processes_never_exceed_the_cap_together(
    tmp_path: Path, size: int, rounds: int
) -> None:
    db = tmp_path / "fresh.sqlite3"  # not created yet: the processes race to create it too
    workers = 8
    procs = [
        python(RACER, str(db), str(size), str(rounds), f"w{i}", NOW.isoformat())
        for i in range(workers)
    ]
    for p in procs:
        assert p.stdin is not None
        p.stdin.write("go\n")
        p.stdin.flush()
    outs = [p.communicate(timeout=120) for p in procs]
    for p, (_, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err
    ok = sum(int(out.split()[0]) for out, _ in outs)
    refused = sum(int(out.split()[1]) for out, _ in outs)
    cap = 100
    # Whatever the interleaving, exactly cap // size campaigns fit.
    assert ok == cap // size
    assert ok + refused == workers * rounds
    with Ledger.open(db, clock=lambda: NOW) as led:
        status = led.usage("light")
        assert status.used == ok * size <= cap
        assert status.reserved == 0
        history = led.campaigns()
        assert int(history["sent"].sum()) == ok * size
        assert sorted(history["status"].unique()) == (["done", "failed"] if refused else ["done"])


# --- the journal -----------------------------------------------------------------------------


def test_add_recipients_bulk_and_pending_in_batches(ledger: Ledger) -> None:
    cid = ledger.create_campaign(plan="plan300", params={}, fingerprint="f")
    n = ledger.add_recipients(cid, ((i, f"m{i}@example.jp") for i in range(60_000)))
    assert n == 60_000
    batch = ledger.pending(cid, limit=1000)
    assert [r.member_id for r in batch] == list(range(1000))
    assert batch[0].address == "m0@example.jp" and batch[0].attempts == 0
    assert ledger.campaign(cid).journal == {"pending": 60_000}


def test_duplicate_recipient_is_refused_naming_it(ledger: Ledger) -> None:
    cid = ledger.create_campaign(plan="light", params={}, fingerprint="f")
    with pytest.raises(CampaignStateError, match="member 7 is a recipient twice"):
        ledger.add_recipients(cid, [(5, "a@x.jp"), (7, "b@x.jp"), (7, "c@x.jp")])
    assert ledger.pending(cid) == []  # all or nothing
    ledger.add_recipients(cid, [(7, "b@x.jp")])
    with pytest.raises(CampaignStateError, match="member 7 is a recipient twice"):
        ledger.add_recipients(cid, [(8, "d@x.jp"), (7, "b@x.jp")])


def test_recipients_cannot_change_once_sending(ledger: Ledger) -> None:
    cid = new_campaign(ledger, 2)
    ledger.reserve(cid, 2, "light")
    with pytest.raises(CampaignStateError, match="before it starts sending"):
        ledger.add_recipients(cid, [(99, "late@x.jp")])


def test_unknown_campaign_is_a_clear_error(ledger: Ledger) -> None:
    for call in (
        lambda: ledger.campaign("nope"),
        lambda: ledger.reserve("nope", 1, "light"),
        lambda: ledger.pending("nope"),
        lambda: ledger.add_recipients("nope", [(1, "a@x.jp")]),
        lambda: ledger.finish("nope"),
    ):
        with pytest.raises(CampaignStateError, match="unknown campaign id 'nope'"):
            call()


def test_a_bad_row_in_a_batch_changes_nothing(ledger: Ledger) -> None:
    cid = new_campaign(ledger, 5)
    ledger.reserve(cid, 5, "light")
    ledger.mark_sending(cid, [1])
    ledger.mark_result(cid, 1, "sent", 250, "ok")
    with pytest.raises(CampaignStateError, match=r"member 1 \(sent\)"):
        ledger.mark_sending(cid, [2, 3, 1])
    with pytest.raises(CampaignStateError, match=r"member 42 \(not a recipient\)"):
        ledger.mark_sending(cid, [2, 42])
    with pytest.raises(CampaignStateError, match=r"member 2 \(twice in the batch\)"):
        ledger.mark_sending(cid, [2, 2])
    assert ledger.campaign(cid).journal == {"sent": 1, "pending": 4}
    assert ledger.usage("light").used == 1
    ledger.mark_sending(cid, [2, 3])
    with pytest.raises(CampaignStateError, match=r"member 4 \(pending\)"):
        ledger.mark_results(cid, [(2, "sent", 250, "ok"), (4, "sent", 250, "ok")])
    assert ledger.campaign(cid).journal == {"sent": 1, "sending": 2, "pending": 2}
    with pytest.raises(ValueError, match="result state"):
        ledger.mark_result(cid, 2, "delivered")


def test_finish_turns_mail_in_flight_into_uncertain(ledger: Ledger) -> None:
    cid = new_campaign(ledger, 3)
    ledger.reserve(cid, 3, "light")
    ledger.mark_sending(cid, [1, 2])
    ledger.mark_result(cid, 1, "sent", 250, "ok")
    ledger.finish(cid, "failed")
    assert ledger.campaign(cid).journal == {"sent": 1, "uncertain": 1, "pending": 1}
    assert ledger.campaign(cid).status == "failed"


def test_reserving_again_in_the_same_process_makes_in_flight_uncertain(ledger: Ledger) -> None:
    # A notebook cell interrupted mid-send, then run again: the old run's rows are unknown.
    cid = new_campaign(ledger, 3)
    ledger.reserve(cid, 3, "light")
    ledger.mark_sending(cid, [1])
    ledger.reserve(cid, 2, "light")
    assert [r.member_id for r in ledger.uncertain(cid)] == [1]
    assert ledger.usage("light").reserved == 2


def test_admin_copy_goes_out_exactly_once_resumes_included(db: Path) -> None:
    with Ledger.open(db, clock=lambda: NOW) as led:
        cid = new_campaign(led, 1)
        assert led.claim_admin_copy(cid) is True
        led.release_admin_copy(cid)  # the SMTP server refused it: a resume may try again
        assert led.claim_admin_copy(cid) is True
    with Ledger.open(db, clock=lambda: NOW) as led:  # a resume in another process
        assert led.claim_admin_copy(cid) is False
        led.mark_admin_copy(cid, "admin@shop.example", code=250, message="ok")
        led.release_admin_copy(cid)  # too late: sent is sent
        assert led.claim_admin_copy(cid) is False
        record = led.campaign(cid)
        assert record.admin_copy == "sent" and record.admin_copy_at == NOW


def test_fingerprint_finds_the_same_campaign(ledger: Ledger) -> None:
    rows = [(1, "a@x.jp"), (2, "B@x.jp")]
    fp = fingerprint({"subject": "s", "filter": {"pref": "東京都"}}, rows)
    assert fp == fingerprint({"filter": {"pref": "東京都"}, "subject": "s"}, rows[::-1])
    assert fp == fingerprint(
        {"subject": "s", "filter": {"pref": "東京都"}}, [(1, "A@x.jp "), rows[1]]
    )
    assert fp != fingerprint({"subject": "t", "filter": {"pref": "東京都"}}, rows)
    assert fp != fingerprint({"subject": "s", "filter": {"pref": "東京都"}}, rows[:1])
    assert ledger.find_by_fingerprint(fp) == []
    first = ledger.create_campaign(plan="light", params={}, fingerprint=fp, now=NOW)
    second = ledger.create_campaign(
        plan="light", params={}, fingerprint=fp, now=NOW + timedelta(hours=1)
    )
    assert [r.campaign_id for r in ledger.find_by_fingerprint(fp)] == [second, first]


def test_campaign_ids_read_as_tokyo_time(ledger: Ledger) -> None:
    cid = ledger.create_campaign(plan="light", params={}, fingerprint="f")
    assert cid.startswith("20261127-143000-") and len(cid) == len("20261127-143000-1a2b3c")
    with pytest.raises(CampaignStateError, match="already exists"):
        ledger.create_campaign(plan="light", params={}, fingerprint="f", campaign_id=cid)


def test_campaigns_is_the_send_history_as_a_dataframe(ledger: Ledger) -> None:
    cid = new_campaign(ledger, 4)
    ledger.reserve(cid, 4, "light")
    ledger.mark_sending(cid, [1, 2, 3])
    ledger.mark_results(cid, [(1, "sent", 250, "ok"), (2, "failed", 550, "unknown user")])
    ledger.finish(cid, "interrupted")
    empty = new_campaign(ledger, 0, cid="zzz-empty")
    frame = ledger.campaigns()
    assert list(frame["campaign_id"]) == [cid, empty]
    row = frame.iloc[0]
    assert row["status"] == "interrupted" and row["plan"] == "ライトプラン"
    assert (row["selected"], row["sendable"], row["unsendable"]) == (6, 4, 2)
    assert (row["sent"], row["failed"], row["uncertain"], row["pending"]) == (1, 1, 1, 1)
    assert row["filter"] == {"pref": "東京都"} and row["params"]["subject"] == "新商品のご案内"
    assert row["reasons"] == {"invalid_address": 2}
    assert row["user"] and row["created_at"] == NOW
    assert str(frame["created_at"].dt.tz) == "Asia/Tokyo"
    assert frame.iloc[1]["sent"] == 0
    journal = ledger.deliveries(cid)
    assert list(journal["state"]) == ["sent", "failed", "uncertain", "pending"]
    assert list(journal["code"].fillna(0).astype(int)) == [250, 550, 0, 0]


def test_naive_now_is_refused(ledger: Ledger) -> None:
    cid = new_campaign(ledger, 1)
    with pytest.raises(ValueError, match="naive"):
        ledger.reserve(cid, 1, "light", now=datetime(2026, 11, 27, 12, 0))


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    ops=st.lists(
        st.tuples(
            st.integers(0, 3),  # campaign
            st.sampled_from(["reserve", "send", "result", "retry", "refund", "finish"]),
            st.integers(0, 40),
        ),
        max_size=40,
    )
)
def test_used_plus_reserved_never_passes_the_cap(tmp_path: Path, ops: list) -> None:  # type: ignore[type-arg]
    db = tmp_path / f"prop-{os.urandom(4).hex()}.sqlite3"
    with Ledger.open(db, clock=lambda: NOW) as led:
        cids = [new_campaign(led, 40, cid=f"c{i}") for i in range(4)]
        handed = 0
        refunded = 0
        for i, op, k in ops:
            cid = cids[i]
            try:
                if op == "reserve":
                    led.reserve(cid, k, "light")
                elif op == "send":
                    ids = [r.member_id for r in led.pending(cid, limit=k)]
                    handed += led.mark_sending(cid, ids)
                elif op in ("result", "retry", "refund"):
                    flying = led.deliveries(cid).query("state == 'sending'")["member_id"]
                    results = [
                        DeliveryResult(
                            int(m),
                            "sent" if op == "result" else "pending",
                            counted=op != "refund",
                        )
                        for m in list(flying)[:k]
                    ]
                    led.mark_results(cid, results)
                    refunded += len(results) if op == "refund" else 0
                else:
                    led.finish(cid, "interrupted")
            except (QuotaExceededError, CampaignStateError):
                pass
            status = led.usage("light")
            assert status.used + status.reserved <= 100
            assert status.used == handed - refunded


# --- bad files -------------------------------------------------------------------------------


def test_random_bytes_are_refused_and_left_untouched(tmp_path: Path) -> None:
    db = tmp_path / "ledger.sqlite3"
    db.write_bytes(os.urandom(8192))
    before = file_digest(db)
    with pytest.raises(LedgerError) as exc:
        Ledger.open(db)
    assert str(db) in str(exc.value) and "\n" not in str(exc.value)
    assert "not a bcartnb ledger" in str(exc.value)
    assert file_digest(db) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ledger.sqlite3"]


def test_another_programs_database_is_refused_and_left_untouched(tmp_path: Path) -> None:
    db = tmp_path / "shop.sqlite3"
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, total INTEGER)")
    conn.execute("INSERT INTO orders (total) VALUES (1200)")
    conn.commit()
    conn.close()
    before = file_digest(db)
    with pytest.raises(LedgerError, match="not a bcartnb ledger") as exc:
        Ledger.open(db)
    assert str(db) in str(exc.value)
    assert file_digest(db) == before
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"  # not switched to WAL
    conn.close()


def test_a_corrupted_ledger_is_refused_naming_the_file(db: Path) -> None:
    with Ledger.open(db, clock=lambda: NOW) as led:
        cid = new_campaign(led, 2000, plan="plan10")
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    data = bytearray(db.read_bytes())
    page = 4096
    data[page * 2 : page * 6] = os.urandom(page * 4)  # trash some b-tree pages
    db.write_bytes(bytes(data))
    before = file_digest(db)
    with pytest.raises(LedgerError) as exc, Ledger.open(db) as led:
        led.campaigns()
        led.pending(cid)
    assert str(db) in str(exc.value)
    assert file_digest(db) == before


def test_a_newer_schema_is_refused_and_left_untouched(db: Path) -> None:
    Ledger.open(db).close()
    conn = sqlite3.connect(db)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.commit()
    conn.close()
    before = file_digest(db)
    with pytest.raises(LedgerError, match="newer bcartnb") as exc:
        Ledger.open(db)
    assert str(db) in str(exc.value)
    assert file_digest(db) == before


def test_a_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(LedgerError, match="directory"):
        Ledger.open(tmp_path)


LOCKER = """
    import sqlite3, sys
    conn = sqlite3.connect(sys.argv[1], isolation_level=None)
    conn.execute("BEGIN IMMEDIATE")
    print("locked", flush=True)
    sys.stdin.read()
"""


def test_a_ledger_locked_by_another_process_is_a_clear_error(db: Path) -> None:
    with Ledger.open(db, clock=lambda: NOW) as led:
        cid = new_campaign(led, 3)
    proc = python(LOCKER, str(db))
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
        with Ledger.open(db, clock=lambda: NOW, timeout=0.2) as led:
            assert led.usage("light").used == 0  # WAL: readers are not blocked
            with pytest.raises(LedgerError, match="locked by another process") as exc:
                led.reserve(cid, 3, "light")
            assert str(db) in str(exc.value)
    finally:
        proc.kill()
        proc.communicate()
    with Ledger.open(db, clock=lambda: NOW) as led:  # nothing half-done, usable again
        assert led.campaign(cid).status == "planned"
        assert led.reserve(cid, 3, "light").reserved == 3


# --- migrations ------------------------------------------------------------------------------


def _add_note_column(conn: sqlite3.Connection) -> None:
    conn.execute("ALTER TABLE campaigns ADD COLUMN note TEXT NOT NULL DEFAULT ''")


def _broken_step(conn: sqlite3.Connection) -> None:
    conn.execute("ALTER TABLE campaigns ADD COLUMN note TEXT")
    conn.execute("ALTER TABLE no_such_table ADD COLUMN x TEXT")


def test_migrating_from_version_1_keeps_the_data(db: Path) -> None:
    with Ledger.open(db, clock=lambda: NOW) as led:
        cid = new_campaign(led, 3)
        led.reserve(cid, 3, "light")
        send_all(led, cid)
        led.finish(cid)
    with Ledger.open(db, clock=lambda: NOW, migrations=[*MIGRATIONS, _add_note_column]) as led:
        assert led.usage("light").used == 3
        assert led.campaign(cid).sent == 3
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION + 1
    assert conn.execute("SELECT note FROM campaigns").fetchall() == [("",)]
    conn.close()
    # And this bcartnb now refuses the upgraded file instead of misreading it.
    with pytest.raises(LedgerError, match="newer bcartnb"):
        Ledger.open(db)


def test_a_failing_migration_changes_nothing(db: Path) -> None:
    with Ledger.open(db, clock=lambda: NOW) as led:
        cid = new_campaign(led, 3)
    with pytest.raises(LedgerError, match=r"cannot migrate.*nothing was changed") as exc:
        Ledger.open(db, migrations=[*MIGRATIONS, _broken_step])
    assert str(db) in str(exc.value)
    with Ledger.open(db, clock=lambda: NOW) as led:
        assert led.campaign(cid).sendable == 3
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    columns = [r[1] for r in conn.execute("PRAGMA table_info(campaigns)")]
    assert "note" not in columns
    conn.close()


def test_an_empty_file_is_initialised(tmp_path: Path) -> None:
    db = tmp_path / "empty.sqlite3"
    db.touch()
    with Ledger.open(db) as led:
        assert led.usage("plan10", "2026-11").used == 0


# --- exchange: results and the next hand-over in one commit -------------------------------


def states(led: Ledger, cid: str) -> dict[int, str]:
    frame = led.deliveries(cid)
    return dict(zip(frame["member_id"].astype(int), frame["state"], strict=True))


def test_exchange_records_and_hands_over_in_one_commit(ledger: Ledger) -> None:
    cid = new_campaign(ledger, n=4)
    ledger.reserve(cid, 4, "light")
    assert ledger.exchange(cid, [], [1, 2]) == 2
    assert ledger.exchange(cid, [DeliveryResult(1, "sent", 250, "ok")], [3]) == 1
    assert states(ledger, cid) == {1: "sent", 2: "sending", 3: "sending", 4: "pending"}
    assert ledger.usage("light").used == 3 and ledger.usage("light").reserved == 1
    # a refund (never started) goes back to the reservation before the hand-over needs it
    assert ledger.exchange(cid, [DeliveryResult(2, "pending", None, "x", False)], [4, 2]) == 2
    assert ledger.usage("light").used == 4 and ledger.usage("light").reserved == 0


def test_exchange_keeps_the_results_when_the_hand_over_is_refused(ledger: Ledger) -> None:
    cid = new_campaign(ledger, n=3)
    ledger.reserve(cid, 2, "light")
    ledger.exchange(cid, [], [1, 2])
    with pytest.raises(QuotaExceededError, match="0 reserved mails left"):
        ledger.exchange(cid, [DeliveryResult(1, "sent", 250, "ok")], [3])
    assert states(ledger, cid) == {1: "sent", 2: "sending", 3: "pending"}
    assert ledger.usage("light").used == 2


def test_exchange_refusing_a_row_still_records_the_results(ledger: Ledger) -> None:
    cid = new_campaign(ledger, n=3)
    ledger.reserve(cid, 3, "light")
    ledger.exchange(cid, [], [1, 2])
    with pytest.raises(CampaignStateError, match="1 \\(sent\\)"):
        ledger.exchange(cid, [DeliveryResult(1, "sent", 250, "ok")], [1])
    assert states(ledger, cid) == {1: "sent", 2: "sending", 3: "pending"}
    assert ledger.usage("light").used == 2 and ledger.usage("light").reserved == 1


def test_an_exchange_across_midnight_of_the_month_counts_in_the_new_month(ledger: Ledger) -> None:
    cid = new_campaign(ledger, 3)
    ledger.reserve(cid, 3, "light", now=LAST_SECOND_NOV)
    ledger.exchange(cid, [], [1], now=LAST_SECOND_NOV)
    # the usual one-commit step does not apply: the reservation moves to December first
    done = DeliveryResult(1, "sent", 250, "ok")
    assert ledger.exchange(cid, [done], [2], now=FIRST_SECOND_DEC) == 1
    assert ledger.usage("light", "2026-11", now=FIRST_SECOND_DEC).used == 1
    dec = ledger.usage("light", "2026-12", now=FIRST_SECOND_DEC)
    assert (dec.used, dec.reserved) == (1, 1)
    assert states(ledger, cid) == {1: "sent", 2: "sending", 3: "pending"}


def test_an_exchange_under_another_process_reservation_keeps_only_the_results(db: Path) -> None:
    with Ledger.open(db, clock=lambda: NOW) as led:
        cid = new_campaign(led, 3)
        led.reserve(cid, 3, "light")
        led.exchange(cid, [], [1])
        led._conn.execute("UPDATE reservations SET pid = pid + 1")  # as if another owned it
        with pytest.raises(CampaignStateError, match="holds no reservation in this process"):
            led.exchange(cid, [DeliveryResult(1, "sent", 250, "ok")], [2])
        # the result still counts as news (the mail is out); the hand-over was refused
        assert states(led, cid) == {1: "sent", 2: "pending", 3: "pending"}
        assert led.usage("light").used == 1


def test_version_2_drops_the_state_index_and_keeps_every_row(db: Path) -> None:
    with Ledger.open(db, clock=lambda: NOW, migrations=MIGRATIONS[:1]) as led:
        cid = new_campaign(led, 3)
        led.reserve(cid, 3, "light")
        led.exchange(cid, [], [1, 2])
    conn = sqlite3.connect(db)
    indexes = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='index'")}
    assert "deliveries_state" in indexes and SCHEMA_VERSION == 2
    conn.close()
    with Ledger.open(db, clock=lambda: NOW) as led:
        assert states(led, cid) == {1: "sending", 2: "sending", 3: "pending"}
        assert [r.member_id for r in led.pending(cid)] == [3]
    conn = sqlite3.connect(db)
    indexes = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='index'")}
    assert "deliveries_state" not in indexes
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 2
    conn.close()


def test_failures_lists_the_failed_mails_with_their_replies(ledger: Ledger) -> None:
    cid = new_campaign(ledger, 4)
    ledger.reserve(cid, 4, "light")
    ledger.exchange(cid, [], [1, 2, 3, 4])
    ledger.mark_results(
        cid,
        [
            DeliveryResult(1, "sent", 250, "ok"),
            DeliveryResult(2, "failed", 550, "5.1.1 User unknown"),
            DeliveryResult(3, "failed", None, None),
            DeliveryResult(4, "pending", 451, "later"),
        ],
    )
    address = {r.member_id: r.address for r in ledger.pending(cid)}
    assert ledger.failures(cid) == [
        (2, ledger.deliveries(cid)["address"][1], 550, "5.1.1 User unknown"),
        (3, ledger.deliveries(cid)["address"][2], None, ""),
    ]
    assert list(address) == [4]
