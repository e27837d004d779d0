"""The ledger on real SQLite files: claims, counting, reservations, the journal, races, crashes.

Time is injected (``now=`` and ``clock=``); other processes are real subprocesses, killed for
real where a crash is the point.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from bcartnb.exceptions import CampaignStateError, LedgerError, QuotaExceededError
from bcartnb.ledger import (
    APPLICATION_ID,
    CAMPAIGN_TRANSITIONS,
    MIGRATIONS,
    SCHEMA_VERSION,
    TRANSITIONS,
    Claim,
    DeliveryResult,
    Ledger,
    Recipient,
    fingerprint,
)
from bcartnb.quota import TOKYO

NOW = datetime(2026, 11, 27, 14, 30, tzinfo=TOKYO)
LEFT = ("pending", "sending", "deferred", "uncertain")


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "ledger.sqlite3"


@pytest.fixture
def ledger(db: Path) -> Iterator[Ledger]:
    with Ledger.open(db, clock=lambda: NOW) as led:
        yield led


def members(n: int, start: int = 1) -> list[tuple[int, str]]:
    return [(i, f"member{i}@example.co.jp") for i in range(start, start + n)]


def fp_of(n: int, tag: str | None = None, start: int = 1) -> str:
    return fingerprint({"n": n, "tag": tag}, members(n, start))


def new_campaign(
    led: Ledger,
    n: int = 10,
    plan: str = "light",
    cid: str | None = None,
    *,
    start: int = 1,
    now: datetime | None = None,
) -> str:
    """Claim a new campaign of ``n`` members: this process holds it, nothing reserved yet."""
    claim = led.claim(
        fingerprint=fp_of(n, cid, start),
        plan=plan,
        params={"filter": {"pref": "東京都"}, "subject": "新商品のご案内"},
        recipients=members(n, start),
        selected=n + 2,
        sendable=n,
        unsendable=2,
        reasons={"invalid_address": 2},
        campaign_id=cid,
        now=now,
    )
    assert claim.continued is False
    return claim.campaign_id


def pend(*ids: int) -> list[tuple[int, str]]:
    return [(m, "pending") for m in ids]


def send_all(led: Ledger, cid: str, state: str = "sent", now: datetime | None = None) -> int:
    rows = led.to_send(cid)
    led.mark_sending(cid, [(r.member_id, r.state) for r in rows], now=now)
    code = 250 if state == "sent" else 550
    led.mark_results(cid, [DeliveryResult(r.member_id, state, code, "x") for r in rows], now=now)
    return len(rows)


def states(led: Ledger, cid: str) -> dict[int, str]:
    frame = led.deliveries(cid)
    return dict(zip(frame["member_id"].astype(int), frame["state"], strict=True))


def python(code: str, *args: str) -> subprocess.Popen[str]:
    """A real second process running ``code`` (dedented), talking over stdin/stdout."""
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def ready(proc: subprocess.Popen[str]) -> None:
    assert proc.stdout is not None and proc.stderr is not None
    line = proc.stdout.readline().strip()
    if line != "ready":
        proc.kill()
        _, err = proc.communicate()
        pytest.fail(f"helper process did not start: {line!r} {err}")


def kill(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL


def file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_the_state_machines_have_no_way_out_of_a_final_state() -> None:
    for to, sources in TRANSITIONS.items():
        assert "sent" not in sources and "failed" not in sources, to
    assert TRANSITIONS["sending"] == ("pending", "deferred", "uncertain")
    for to, sources in CAMPAIGN_TRANSITIONS.items():
        assert "done" not in sources and "cancelled" not in sources, to


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
        assert led.release(cid) == "done"
    with Ledger.open(db, clock=lambda: NOW) as led:
        assert led.usage("light").used == 10
        record = led.campaign(cid)
        assert (record.sent, record.status, record.finished_at) == (10, "done", NOW)


# --- the file under an open ledger -----------------------------------------------------------


def test_a_ledger_file_deleted_under_an_open_ledger_refuses_every_write(db: Path) -> None:
    with Ledger.open(db, clock=lambda: NOW) as led:
        cid = new_campaign(led, 3)
        led.reserve(cid, 3, "light")
        os.remove(db)
        with pytest.raises(LedgerError, match="deleted or replaced") as exc:
            led.mark_sending(cid, pend(1))
        assert str(db) in str(exc.value) and exc.value.ja
        with pytest.raises(LedgerError, match="deleted or replaced"):
            led.release(cid)
        with pytest.raises(LedgerError, match="deleted or replaced"):
            new_campaign(led, 2, cid="other")
    assert not db.exists()


def test_a_ledger_file_replaced_under_an_open_ledger_refuses_every_write(tmp_path: Path) -> None:
    db = tmp_path / "ledger.sqlite3"
    other = tmp_path / "other.sqlite3"
    Ledger.open(other).close()
    with Ledger.open(db, clock=lambda: NOW) as led:
        cid = new_campaign(led, 3)
        led.reserve(cid, 3, "light")
        assert led.mark_sending(cid, pend(1)) == 1  # the file is fine: writes go through
        os.replace(other, db)
        with pytest.raises(LedgerError, match="deleted or replaced") as exc:
            led.mark_sending(cid, pend(2))
        assert str(db) in str(exc.value)
        with pytest.raises(LedgerError, match="deleted or replaced"):
            led.mark_results(cid, [DeliveryResult(1, "sent", 250, "ok")])
        assert led.campaign(cid).journal == {"sending": 1, "pending": 2}  # reads still work


def _fingerprint_a_line_at_a_time(params: dict[str, Any], recipients: list[tuple[Any, str]]) -> str:
    """The fingerprint as ledgers recorded it before it hashed every line in one update."""
    h = hashlib.sha256()
    h.update(json.dumps(params, sort_keys=True, ensure_ascii=False).encode())
    for member_id, address in sorted((int(m), a.strip().lower()) for m, a in recipients):
        h.update(f"\n{member_id}\t{address}".encode())
    return h.hexdigest()


@settings(deadline=None, max_examples=200)
@given(
    rows=st.lists(
        st.tuples(
            st.one_of(st.integers(0, 10**12), st.integers(0, 10**6).map(str)),
            st.text(alphabet=st.characters(blacklist_categories=["Cs"]), max_size=40),
        ),
        max_size=60,
    ),
    mail=st.text(max_size=20),
)
@example(rows=[(1, " A@Example.JP\u3000"), (1, "a@example.jp"), ("2", "b@x\n")], mail="鍵")
def test_fingerprint_is_the_digest_of_a_line_at_a_time(
    rows: list[tuple[Any, str]], mail: str
) -> None:
    """Unfinished campaigns recorded by an older bcartnb must still be found by their print."""
    assert fingerprint({"mail": mail}, rows) == _fingerprint_a_line_at_a_time({"mail": mail}, rows)


# --- claims: one unfinished campaign per fingerprint ------------------------------------------


def test_a_claim_records_the_campaign_as_sending_held_by_this_process(ledger: Ledger) -> None:
    cid = new_campaign(ledger, 3)
    record = ledger.campaign(cid)
    assert record.status == "sending" and record.journal == {"pending": 3}
    assert (record.selected, record.sendable, record.unsendable) == (5, 3, 2)
    assert record.reasons == {"invalid_address": 2} and record.plan == "ライトプラン"
    assert [r.member_id for r in ledger.pending(cid)] == [1, 2, 3]
    assert ledger.usage("light").reserved == 0  # held, nothing reserved yet
    row = ledger._conn.execute("SELECT pid, held FROM reservations").fetchone()
    assert row == (os.getpid(), 0)
    # While this process holds it, the same campaign cannot be claimed or taken over again.
    with pytest.raises(CampaignStateError, match=f"{cid} is being sent right now"):
        ledger.claim(fingerprint=fp_of(3), plan="light", params={}, recipients=members(3), now=NOW)
    with pytest.raises(CampaignStateError, match="being sent"):
        ledger.take_over(cid)


def test_campaign_ids_read_as_tokyo_time(ledger: Ledger) -> None:
    cid = ledger.claim(fingerprint="f", plan="light", params={}, recipients=[]).campaign_id
    assert cid.startswith("20261127-143000-") and len(cid) == len("20261127-143000-1a2b3c")
    with pytest.raises(CampaignStateError, match="already exists"):
        ledger.claim(fingerprint="g", plan="light", params={}, recipients=[], campaign_id=cid)
    assert len(ledger.campaigns()) == 1


def test_a_claim_of_a_done_campaign_holds_nobody_again_unless_repeat(ledger: Ledger) -> None:
    first = new_campaign(ledger, 2)
    ledger.reserve(first, 2, "light")
    send_all(ledger, first)
    assert ledger.release(first) == "done"
    again: dict[str, Any] = {
        "fingerprint": fp_of(2),
        "plan": "light",
        "params": {},
        "recipients": members(2),
    }
    # the same mail to the same members: a new campaign, but every address is the first's
    later = NOW + timedelta(hours=1)
    none = ledger.claim(**again, campaign_id="empty", now=later)
    assert (none.campaign_id, none.continued, none.created) == (first, False, False)
    assert [(m, c) for m, _, c in none.skipped] == [(m, first) for m, _ in members(2)]
    assert len(ledger.campaigns()) == 1  # nothing recorded: an empty campaign says nothing
    second = ledger.claim(**again, repeat=True, campaign_id="second", now=later)
    assert second == Claim("second", False)
    assert ledger.campaign("second").journal == {"pending": 2}
    # repeat while the repeated one is unfinished: refused, finish it first
    ledger.release("second", now=later)
    with pytest.raises(CampaignStateError, match=r"second .*unfinished"):
        ledger.claim(**again, repeat=True, now=later)
    # without repeat, the unfinished one is continued, never a third
    assert ledger.claim(**again, campaign_id="third", now=later) == Claim("second", True)
    assert ledger.campaign("second").status == "sending"
    assert {r.campaign_id for r in ledger.find_by_fingerprint(fp_of(2))} == {"second", first}


def test_a_cancelled_campaign_does_not_block_a_new_claim(ledger: Ledger) -> None:
    cid = new_campaign(ledger, 3, cid="refused")
    assert ledger.release(cid, cancel=True) == "cancelled"
    assert ledger.campaign(cid).finished_at == NOW
    with pytest.raises(CampaignStateError, match="cancelled"):
        ledger.take_over(cid)
    again = ledger.claim(
        fingerprint=fp_of(3, "refused"), plan="light", params={}, recipients=members(3)
    )
    assert again.continued is False and again.campaign_id != cid
    assert ledger.campaign(again.campaign_id).status == "sending"
    assert ledger.campaign(cid).status == "cancelled"


def test_a_duplicate_recipient_refuses_the_whole_claim(ledger: Ledger) -> None:
    rows = [(5, "a@x.jp"), (7, "b@x.jp"), (7, "c@x.jp")]
    with pytest.raises(CampaignStateError, match="member 7 is a recipient twice"):
        ledger.claim(fingerprint="dup", plan="light", params={}, recipients=rows)
    assert ledger.find_by_fingerprint("dup") == []  # all or nothing
    assert ledger.campaigns().empty
    assert ledger._conn.execute("SELECT count(*) FROM reservations").fetchone()[0] == 0


def test_unserialisable_params_are_refused(ledger: Ledger) -> None:
    with pytest.raises(CampaignStateError, match="JSON"):
        ledger.claim(fingerprint="f", plan="light", params={"x": {1, 2}}, recipients=[])
    assert ledger.campaigns().empty


def test_a_claim_with_sixty_thousand_recipients(ledger: Ledger) -> None:
    rows = ((i, f"m{i}@example.jp") for i in range(60_000))
    cid = ledger.claim(fingerprint="big", plan="plan300", params={}, recipients=rows).campaign_id
    todo = ledger.to_send(cid)
    assert len(todo) == 60_000 and [r.member_id for r in todo[:3]] == [0, 1, 2]
    assert todo[0] == Recipient(0, "m0@example.jp", 0, "pending")
    assert ledger.campaign(cid).journal == {"pending": 60_000}


def test_fingerprint_identifies_the_same_campaign() -> None:
    rows = [(1, "a@x.jp"), (2, "B@x.jp")]
    fp = fingerprint({"subject": "s", "filter": {"pref": "東京都"}}, rows)
    assert fp == fingerprint({"filter": {"pref": "東京都"}, "subject": "s"}, rows[::-1])
    assert fp == fingerprint(
        {"subject": "s", "filter": {"pref": "東京都"}}, [(1, "A@x.jp "), rows[1]]
    )
    assert fp != fingerprint({"subject": "t", "filter": {"pref": "東京都"}}, rows)
    assert fp != fingerprint({"subject": "s", "filter": {"pref": "東京都"}}, rows[:1])


# --- the lifecycle: release, take over --------------------------------------------------------


def test_release_is_done_only_when_nothing_is_left(ledger: Ledger) -> None:
    cid = new_campaign(ledger, 4)
    ledger.reserve(cid, 4, "light")
    ledger.mark_sending(cid, pend(1, 2, 3, 4))
    ledger.mark_results(
        cid,
        [
            DeliveryResult(1, "sent", 250, "ok"),
            DeliveryResult(2, "failed", 550, "5.1.1 user unknown"),
            DeliveryResult(3, "deferred", 451, "try again later"),
        ],
    )
    # 4 is still sending when the run ends: it may have gone out
    assert ledger.release(cid) == "unfinished"
    assert states(ledger, cid) == {1: "sent", 2: "failed", 3: "deferred", 4: "uncertain"}
    assert ledger.campaign(cid).finished_at is None
    assert ledger.usage("light").reserved == 0
    with pytest.raises(CampaignStateError, match="not held by this process"):
        ledger.mark_sending(cid, [(3, "deferred")])
    assert ledger.take_over(cid) is True
    ledger.mark_sending(cid, [(3, "deferred")])  # a retry: no reservation needed
    ledger.mark_results(cid, [DeliveryResult(3, "sent", 250, "ok")])
    assert ledger.release(cid) == "unfinished"  # 4 is uncertain: not finished
    assert ledger.take_over(cid) is True
    ledger.reserve(cid, 1, "light")
    ledger.mark_sending(cid, [(4, "uncertain")], resend=True)
    ledger.mark_results(cid, [DeliveryResult(4, "sent", 250, "ok")])
    assert ledger.release(cid, admin_owed=True) == "unfinished"  # the admin copy is owed
    assert ledger.take_over(cid) is True
    assert ledger.release(cid) == "done"
    assert ledger.campaign(cid).finished_at == NOW
    assert ledger.take_over(cid) is False
    assert ledger.usage("light").used == 5  # 4 first hand-overs + 1 deliberate resend


def test_cancel_applies_only_when_nothing_was_handed_over(ledger: Ledger) -> None:
    untouched = new_campaign(ledger, 2, cid="untouched")
    assert ledger.release(untouched, cancel=True) == "cancelled"
    touched = new_campaign(ledger, 2, cid="touched")
    ledger.reserve(touched, 2, "light")
    ledger.mark_sending(touched, pend(1))
    assert ledger.release(touched, cancel=True) == "unfinished"
    assert states(ledger, touched) == {1: "uncertain", 2: "pending"}
    # a hand-over that never started is undone, attempts included: still cancellable
    never = new_campaign(ledger, 2, cid="never")
    ledger.reserve(never, 2, "light")
    ledger.mark_sending(never, pend(1))
    ledger.mark_results(never, [DeliveryResult(1, "unsent", None, "connection refused")])
    assert ledger.release(never, cancel=True) == "cancelled"
    assert ledger.usage_by_campaign("2026-11") == {"touched": 1}


def test_release_twice_and_release_of_an_unknown_campaign(ledger: Ledger) -> None:
    cid = new_campaign(ledger, 1)
    assert ledger.release(cid) == "unfinished"
    assert ledger.release(cid) == "unfinished"  # nothing held: the status stays
    with pytest.raises(CampaignStateError, match="unknown campaign id 'nope'"):
        ledger.release("nope")


def test_unknown_campaign_is_a_clear_error(ledger: Ledger) -> None:
    for call in (
        lambda: ledger.campaign("nope"),
        lambda: ledger.reserve("nope", 1, "light"),
        lambda: ledger.pending("nope"),
        lambda: ledger.to_send("nope"),
        lambda: ledger.take_over("nope"),
        lambda: ledger.mark_sending("nope", pend(1)),
        lambda: ledger.mark_results("nope", [DeliveryResult(1, "sent")]),
        lambda: ledger.failures("nope"),
        lambda: ledger.claim_admin_copy("nope"),
    ):
        with pytest.raises(CampaignStateError, match="unknown campaign id 'nope'"):
            call()


# --- counting rules --------------------------------------------------------------------------


def test_sent_and_refused_mail_each_count_once(ledger: Ledger) -> None:
    cid = new_campaign(ledger, 4)
    ledger.reserve(cid, 4, "light")
    assert ledger.mark_sending(cid, pend(1, 2, 3, 4)) == 4
    ledger.mark_results(
        cid,
        [
            DeliveryResult(1, "sent", 250, "ok"),
            DeliveryResult(2, "failed", 550, "5.1.1 user unknown"),  # refused: still one
            DeliveryResult(3, "sent", 250, "ok"),  # may bounce later: still one
            DeliveryResult(4, "failed", 552, "mailbox full"),
        ],
    )
    assert ledger.release(cid) == "done"
    assert ledger.usage("light").used == 4
    assert ledger.campaign(cid).journal == {"sent": 2, "failed": 2}


def test_a_deferred_mail_counts_once_however_often_it_is_retried(ledger: Ledger) -> None:
    cid = new_campaign(ledger, 1)
    ledger.reserve(cid, 1, "light")
    assert ledger.mark_sending(cid, pend(1)) == 1
    for _ in range(2):  # two temporary failures, then success
        ledger.mark_results(cid, [DeliveryResult(1, "deferred", 451, "try again later")])
        assert [r.attempts for r in ledger.deferred(cid)] in ([1], [2])
        assert ledger.mark_sending(cid, [(1, "deferred")]) == 0
    ledger.mark_results(cid, [DeliveryResult(1, "sent", 250, "ok")])
    assert ledger.usage("light").used == 1
    (row,) = ledger.deliveries(cid).itertuples()
    assert (row.state, row.attempts, row.code) == ("sent", 3, 250)


def test_only_a_deliberate_resend_of_an_uncertain_mail_counts_again(ledger: Ledger) -> None:
    cid = new_campaign(ledger, 2)
    ledger.reserve(cid, 4, "light")
    ledger.mark_sending(cid, pend(1, 2))
    ledger.mark_results(cid, [DeliveryResult(1, "uncertain", None, "lost after DATA")])
    assert ledger.to_send(cid) == []
    assert ledger.to_send(cid, resend_uncertain=True) == [
        Recipient(1, "member1@example.co.jp", 1, "uncertain")
    ]
    with pytest.raises(CampaignStateError, match=r"member 1 \(uncertain\)"):
        ledger.mark_sending(cid, [(1, "uncertain")])
    assert ledger.usage("light").used == 2
    assert ledger.mark_sending(cid, [(1, "uncertain")], resend=True) == 1
    assert ledger.usage("light").used == 3
    ledger.mark_results(cid, [DeliveryResult(1, "sent", 250, "ok")])
    with pytest.raises(CampaignStateError, match=r"member 1 \(sent\)"):
        ledger.mark_sending(cid, [(1, "uncertain")], resend=True)


def test_a_transaction_that_never_started_goes_back_and_is_refunded(ledger: Ledger) -> None:
    cid = new_campaign(ledger, 3)
    ledger.reserve(cid, 3, "light")
    ledger.mark_sending(cid, pend(1, 2, 3))
    ledger.mark_results(cid, [DeliveryResult(3, "deferred", 421, "busy")])
    ledger.mark_sending(cid, [(3, "deferred")])
    assert ledger.usage("light").used == 3
    ledger.mark_results(
        cid,
        [
            DeliveryResult(1, "unsent", None, "connection refused"),
            DeliveryResult(3, "unsent", None, "connection refused"),
        ],
    )
    status = ledger.usage("light")
    assert (status.used, status.reserved) == (2, 1)  # 1's unit is back in the reservation
    assert states(ledger, cid) == {1: "pending", 2: "sending", 3: "deferred"}
    journal = ledger.deliveries(cid).set_index("member_id")
    assert (journal["attempts"][1], journal["attempts"][3]) == (0, 1)
    assert pd.isna(journal["counted_month"][1]) and journal["counted_month"][3] == "2026-11"
    # a row that is not in flight any more cannot be "unsent" (or refunded) again
    with pytest.raises(CampaignStateError, match=r"member 1 \(pending\)"):
        ledger.mark_results(cid, [DeliveryResult(1, "unsent")])
    assert ledger.mark_sending(cid, pend(1)) == 1
    ledger.mark_results(cid, [(1, "sent", 250, "ok"), (2, "sent", 250, "ok")])
    assert ledger.usage("light").used == 3


def test_an_unsent_resend_is_refunded_exactly_once(ledger: Ledger) -> None:
    cid = new_campaign(ledger, 1)
    ledger.reserve(cid, 2, "light")
    ledger.mark_sending(cid, pend(1))
    ledger.mark_results(cid, [DeliveryResult(1, "uncertain")])
    ledger.mark_sending(cid, [(1, "uncertain")], resend=True)
    assert ledger.usage("light").used == 2
    ledger.mark_results(cid, [DeliveryResult(1, "unsent", None, "no connection")])
    assert ledger.uncertain(cid) == [Recipient(1, "member1@example.co.jp", 1, "uncertain")]
    assert ledger.usage("light").used == 1
    # the row is uncertain again but not in flight: a second "unsent" must not refund again
    with pytest.raises(CampaignStateError, match="unsent"):
        ledger.mark_results(cid, [DeliveryResult(1, "unsent")])
    with pytest.raises(CampaignStateError, match="unsent"):
        ledger.mark_results(cid, [DeliveryResult(1, "unsent"), DeliveryResult(1, "unsent")])
    assert ledger.usage("light").used == 1
    assert ledger.uncertain(cid)[0].attempts == 1


def test_test_sends_and_admin_copies_are_recorded_not_counted(ledger: Ledger) -> None:
    cid = new_campaign(ledger, 3)
    ledger.record_send("test", "me@shop.example", code=250, message="ok")
    ledger.reserve(cid, 3, "light")
    send_all(ledger, cid)
    assert ledger.claim_admin_copy(cid)
    ledger.mark_admin_copy(cid, "admin@shop.example", code=250, message="ok")
    assert ledger.release(cid) == "done"
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
    ledger.release(cid)
    status = ledger.usage("自社SMTP")
    assert (status.used, status.cap, status.as_dict()["remaining"]) == (5, None, None)
    assert status.as_dict()["plan"] == "自社SMTP"


def test_usage_is_per_month_and_per_campaign(ledger: Ledger) -> None:
    oct_now = datetime(2026, 10, 15, tzinfo=TOKYO)
    a = new_campaign(ledger, 3, cid="a", now=oct_now)
    ledger.reserve(a, 3, "light", now=oct_now)
    send_all(ledger, a, now=oct_now)
    assert ledger.release(a, now=oct_now) == "done"
    b = new_campaign(ledger, 2, cid="b")
    ledger.reserve(b, 2, "light")
    send_all(ledger, b)
    ledger.release(b)
    assert ledger.usage("light", "2026-10").used == 3
    assert ledger.usage("light").used == 2  # NOW is November
    assert ledger.usage_by_campaign("2026-10") == {"a": 3}
    assert ledger.usage_by_campaign("2026-11") == {"b": 2}
    assert ledger.usage("light", "2026-09").used == 0


# --- month boundaries ------------------------------------------------------------------------

LAST_SECOND_NOV = datetime(2026, 11, 30, 23, 59, 59, tzinfo=TOKYO)
FIRST_SECOND_DEC = datetime(2026, 12, 1, 0, 0, 0, tzinfo=TOKYO)


def test_a_send_at_the_last_second_counts_for_november(ledger: Ledger) -> None:
    cid = new_campaign(ledger, 2, now=LAST_SECOND_NOV)
    ledger.reserve(cid, 2, "light", now=LAST_SECOND_NOV)
    ledger.mark_sending(cid, pend(1), now=LAST_SECOND_NOV)
    ledger.mark_sending(cid, pend(2), now=FIRST_SECOND_DEC)
    assert ledger.usage("light", "2026-11").used == 1
    assert ledger.usage("light", "2026-12").used == 1
    # The reservation followed the campaign into December.
    assert ledger.usage("light", "2026-11", now=FIRST_SECOND_DEC).reserved == 0
    counted = ledger.deliveries(cid).set_index("member_id")["counted_month"]
    assert (counted[1], counted[2]) == ("2026-11", "2026-12")


def test_a_campaign_crossing_midnight_cannot_overrun_the_new_month(ledger: Ledger) -> None:
    late = new_campaign(ledger, 50, cid="late", now=LAST_SECOND_NOV)
    ledger.reserve(late, 50, "light", now=LAST_SECOND_NOV)
    ledger.mark_sending(late, pend(1), now=LAST_SECOND_NOV)
    # December starts and another campaign takes 60 of December's 100.
    early = new_campaign(ledger, 60, cid="early", now=FIRST_SECOND_DEC)
    ledger.reserve(early, 60, "light", now=FIRST_SECOND_DEC)
    # The late campaign still holds 49 units for November; December has only 40 left.
    with pytest.raises(QuotaExceededError, match=r"2026-12.* 49 mails.*reserved 60"):
        ledger.mark_sending(late, pend(2), now=FIRST_SECOND_DEC)
    assert ledger.usage("light", "2026-12", now=FIRST_SECOND_DEC).used == 0
    assert [r.member_id for r in ledger.pending(late)][:1] == [2]
    assert ledger.usage("light", "2026-11", now=FIRST_SECOND_DEC).used == 1


# --- reservations ----------------------------------------------------------------------------


def test_a_campaign_larger_than_what_is_left_is_refused_before_anything(ledger: Ledger) -> None:
    first = new_campaign(ledger, 70, cid="first")
    ledger.reserve(first, 70, "light")
    send_all(ledger, first)
    ledger.release(first)
    running = new_campaign(ledger, 20, cid="running")
    ledger.reserve(running, 20, "light")
    big = new_campaign(ledger, 11, cid="big")
    with pytest.raises(QuotaExceededError) as exc:
        ledger.reserve(big, 11, "light")
    msg = str(exc.value)
    for part in ("cap 100", "used 70", "reserved 20", "needed 11"):
        assert part in msg
    assert ledger.pending(big) and ledger.usage_by_campaign("2026-11") == {"first": 70}
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
    # The refused run ends: nothing of it was handed over, so it is cancelled.
    assert ledger.release(big, cancel=True) == "cancelled"
    assert ledger.usage("light").reserved == 20


def test_release_frees_the_unused_reservation(ledger: Ledger) -> None:
    cid = new_campaign(ledger, 10)
    ledger.reserve(cid, 10, "light")
    ledger.mark_sending(cid, pend(1, 2, 3))
    ledger.mark_results(cid, [(m, "sent", 250, "ok") for m in (1, 2, 3)])
    assert ledger.release(cid) == "unfinished"
    status = ledger.usage("light")
    assert (status.used, status.reserved, status.remaining) == (3, 0, 97)
    assert ledger.campaign(cid).status == "unfinished"


def test_sending_needs_a_reservation_and_cannot_exceed_it(ledger: Ledger) -> None:
    cid = new_campaign(ledger, 10)
    with pytest.raises(QuotaExceededError, match="0 reserved mails left, 1 needed"):
        ledger.mark_sending(cid, pend(1))  # claimed, nothing reserved
    ledger.reserve(cid, 3, "light")
    with pytest.raises(QuotaExceededError, match="3 reserved mails left, 4 needed"):
        ledger.mark_sending(cid, pend(1, 2, 3, 4))
    assert ledger.usage("light").used == 0
    assert len(ledger.pending(cid)) == 10
    ledger.release(cid)
    for call in (
        lambda: ledger.mark_sending(cid, pend(1)),
        lambda: ledger.reserve(cid, 1, "light"),
        lambda: ledger.heartbeat(cid),
    ):
        with pytest.raises(CampaignStateError, match="not held by this process"):
            call()
    with pytest.raises(ValueError, match="cannot reserve -1"):
        ledger.reserve(cid, -1, "light")


def test_a_done_campaign_cannot_be_reserved_or_held_again(ledger: Ledger) -> None:
    cid = new_campaign(ledger, 1)
    ledger.reserve(cid, 1, "light")
    send_all(ledger, cid)
    assert ledger.release(cid) == "done"
    with pytest.raises(CampaignStateError, match="not held by this process"):
        ledger.reserve(cid, 1, "light")
    assert ledger.take_over(cid) is False
    assert ledger.campaign(cid).status == "done"


def test_expired_lease_is_reclaimed_and_the_old_owner_is_stopped(db: Path) -> None:
    with Ledger.open(db, lease=timedelta(minutes=10), clock=lambda: NOW) as led:
        a = new_campaign(led, 60, cid="a")
        led.reserve(a, 60, "light")
        led.mark_sending(a, pend(1, 2))
        b = new_campaign(led, 60, cid="b", now=NOW + timedelta(minutes=9))
        # Same live process, lease still valid: a's 58 units are held.
        with pytest.raises(QuotaExceededError, match="reserved 58"):
            led.reserve(b, 60, "light", now=NOW + timedelta(minutes=9))
        # Lease expired (an abandoned notebook kernel, say): reclaimed by the next reserve.
        led.reserve(b, 60, "light", now=NOW + timedelta(minutes=11))
        assert led.campaign(a).status == "unfinished"
        assert [r.member_id for r in led.uncertain(a)] == [1, 2]
        with pytest.raises(CampaignStateError, match="reclaimed"):
            led.mark_sending(a, pend(3), now=NOW + timedelta(minutes=12))
        # Late results for the in-flight rows are still recorded: they are the truth.
        led.mark_results(a, [(1, "sent", 250, "ok")], now=NOW + timedelta(minutes=12))
        assert led.campaign(a).journal == {"sent": 1, "uncertain": 1, "pending": 58}
        assert led.usage("light", now=NOW + timedelta(minutes=12)).used == 2
        # The old owner's release keeps what the reclaim decided.
        assert led.release(a, now=NOW + timedelta(minutes=12)) == "unfinished"


def test_heartbeat_and_sending_renew_the_lease(db: Path) -> None:
    with Ledger.open(db, lease=timedelta(minutes=10), clock=lambda: NOW) as led:
        a = new_campaign(led, 60, cid="a")
        led.reserve(a, 60, "light")
        led.heartbeat(a, now=NOW + timedelta(minutes=8))
        led.mark_sending(a, pend(1), now=NOW + timedelta(minutes=16))
        b = new_campaign(led, 60, cid="b", now=NOW + timedelta(minutes=25))
        with pytest.raises(QuotaExceededError):
            led.reserve(b, 60, "light", now=NOW + timedelta(minutes=25))
        assert led.reclaim(now=NOW + timedelta(minutes=27)) == ["a"]
        with pytest.raises(CampaignStateError):
            led.heartbeat(a, now=NOW + timedelta(minutes=28))
        led.reserve(b, 60, "light", now=NOW + timedelta(minutes=28))


def test_reservation_from_another_host_waits_for_its_lease(db: Path) -> None:
    with Ledger.open(db, clock=lambda: NOW) as led:
        a = new_campaign(led, 60, cid="a")
        led.reserve(a, 60, "light")
        led.mark_sending(a, pend(1))
    # Pretend the reservation belongs to a machine sharing the file: its pid means nothing here.
    conn = sqlite3.connect(db)
    conn.execute("UPDATE reservations SET host = 'other-host', pid = 999999999")
    conn.commit()
    conn.close()
    soon, later = NOW + timedelta(minutes=9), NOW + timedelta(minutes=11)
    with Ledger.open(db, clock=lambda: NOW) as led:
        b = new_campaign(led, 60, cid="b", now=soon)
        with pytest.raises(QuotaExceededError):
            led.reserve(b, 60, "light", now=soon)
        with pytest.raises(CampaignStateError, match="pid 999999999 on other-host"):
            led.take_over(a, now=soon)
        again: dict[str, Any] = {"fingerprint": fp_of(60, "a"), "plan": "light", "params": {}}
        with pytest.raises(CampaignStateError, match="campaign a is being sent"):
            led.claim(**again, recipients=members(60), now=soon)
        # The lease ran out: the other host's run is presumed gone.
        assert led.claim(**again, recipients=members(60), now=later) == Claim("a", True)
        assert led.uncertain(a)[0].member_id == 1
        led.reserve(b, 60, "light", now=later)


CRASHER = """
    import sys
    from datetime import datetime
    from bcartnb.ledger import Ledger
    now = datetime.fromisoformat(sys.argv[2])
    led = Ledger.open(sys.argv[1], clock=lambda: now)
    rows = [(i, f"member{i}@example.co.jp") for i in range(1, 61)]
    claim = led.claim(fingerprint=sys.argv[3], plan="light", params={}, recipients=rows,
                      campaign_id="crash")
    assert claim.continued is False, claim
    led.reserve("crash", 50, "light")
    led.mark_sending("crash", [(m, "pending") for m in (1, 2, 3, 4, 5)])
    led.mark_results("crash", [(1, "sent", 250, "ok"), (2, "sent", 250, "ok")])
    print("ready", flush=True)
    sys.stdin.read()  # wait here until killed
"""


def crasher(db: Path) -> subprocess.Popen[str]:
    proc = python(CRASHER, str(db), NOW.isoformat(), fp_of(60, "crash"))
    ready(proc)
    return proc


def claim_crash(led: Ledger) -> Claim:
    return led.claim(
        fingerprint=fp_of(60, "crash"), plan="light", params={}, recipients=members(60)
    )


def test_a_live_holder_in_another_process_keeps_its_campaign(db: Path) -> None:
    with Ledger.open(db, clock=lambda: NOW) as led:
        other = new_campaign(led, 95, cid="other")
    proc = crasher(db)
    try:
        with Ledger.open(db, clock=lambda: NOW) as led:
            status = led.usage("light")
            assert (status.used, status.reserved) == (5, 45)
            with pytest.raises(QuotaExceededError, match="used 5, reserved 45"):
                led.reserve(other, 95, "light")  # the owner is alive: its units are held
            # a second run of the same campaign is refused at once, naming it
            with pytest.raises(CampaignStateError, match=r"crash is being sent .*pid \d+"):
                claim_crash(led)
            with pytest.raises(CampaignStateError, match="crash is being sent"):
                led.take_over("crash")
            with pytest.raises(CampaignStateError, match="crash is being sent"):
                led.release("crash")
            with pytest.raises(CampaignStateError, match="not held by this process"):
                led.reserve("crash", 10, "light")
            with pytest.raises(CampaignStateError, match="not held by this process"):
                led.mark_sending("crash", pend(6))
            assert led.reclaim() == []
            record = led.campaign("crash")
            assert record.status == "sending"
            assert record.journal == {"sent": 2, "sending": 3, "pending": 55}
            assert len(led.campaigns()) == 2
    finally:
        kill(proc)


def test_a_killed_holder_is_reclaimed_and_its_claim_continues(db: Path) -> None:
    with Ledger.open(db, clock=lambda: NOW) as led:
        other = new_campaign(led, 95, cid="other")
    kill(crasher(db))
    # Same instant, lease still valid: the dead pid alone frees the reservation.
    with Ledger.open(db, clock=lambda: NOW) as led:
        status = led.usage("light")  # a dead owner's units are not shown as held
        assert (status.used, status.reserved, status.remaining) == (5, 0, 95)
        after = led.reserve(other, 95, "light")
        assert (after.used, after.reserved, after.remaining) == (5, 95, 0)
        crashed = led.campaign("crash")
        assert crashed.status == "unfinished"
        assert crashed.journal == {"sent": 2, "uncertain": 3, "pending": 55}
        assert [r.member_id for r in led.uncertain("crash")] == [3, 4, 5]
        # The in-flight mails were counted when handed over; nothing was lost or double counted.
        assert led.usage_by_campaign("2026-11") == {"crash": 5}
        # Running the same campaign again continues it: same id, never a second campaign.
        assert claim_crash(led) == Claim("crash", True)
        assert led.campaign("crash").status == "sending"
        assert len(led.find_by_fingerprint(fp_of(60, "crash"))) == 1


def test_resume_after_a_crash_sends_nobody_twice(db: Path) -> None:
    kill(crasher(db))
    with Ledger.open(db, clock=lambda: NOW) as led:
        assert led.uncertain("crash") == []  # still "sending" until somebody reclaims
        assert led.campaign("crash").status == "sending"
        assert led.reclaim() == ["crash"]
        assert led.campaign("crash").status == "unfinished"
        assert led.take_over("crash") is True
        todo = led.to_send("crash")
        resend = led.uncertain("crash")
        assert [r.member_id for r in todo] == list(range(6, 61))
        led.reserve("crash", len(todo) + len(resend), "light")
        with pytest.raises(CampaignStateError, match="uncertain"):
            led.mark_sending("crash", [(3, "uncertain")])  # a resend must be deliberate
        assert led.mark_sending("crash", [(r.member_id, r.state) for r in resend], resend=True) == 3
        assert led.mark_sending("crash", [(r.member_id, r.state) for r in todo]) == 55
        led.mark_results("crash", [(m, "sent", 250, "ok") for m in range(3, 61)])
        assert led.release("crash") == "done"
        record = led.campaign("crash")
        assert record.journal == {"sent": 60}
        # 60 mails, 5 in flight at the crash, of which 3 resent and counted again.
        assert led.usage("light").used == 63
        attempts = led.deliveries("crash").set_index("member_id")["attempts"]
        assert attempts[1] == attempts[2] == 1 and attempts[3] == 2 and attempts[60] == 1


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
        cid = led.claim(fingerprint=f"{tag}-{r}", plan="light", params={}, recipients=rows,
                        campaign_id=f"{tag}-{r}").campaign_id
        try:
            led.reserve(cid, size, "light")
        except QuotaExceededError:
            refused += 1
            assert led.release(cid, cancel=True) == "cancelled"
            continue
        led.mark_sending(cid, [(m, "pending") for m, _ in rows])
        led.mark_results(cid, [(m, "sent", 250, "ok") for m, _ in rows])
        assert led.release(cid) == "done"
        ok += 1
    print(ok, refused)
"""


def start_together(procs: list[subprocess.Popen[str]]) -> None:
    for p in procs:
        assert p.stdin is not None
        p.stdin.write("go\n")
        p.stdin.flush()


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
    start_together(procs)
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
        expected = ["cancelled", "done"] if refused else ["done"]
        assert sorted(history["status"].unique()) == expected


CLAIMER = """
    import sys
    from datetime import datetime
    from bcartnb.exceptions import CampaignStateError
    from bcartnb.ledger import Ledger
    now = datetime.fromisoformat(sys.argv[2])
    sys.stdin.readline()  # everybody starts together
    led = Ledger.open(sys.argv[1], clock=lambda: now, timeout=60)
    rows = [(i, f"m{i}@example.jp") for i in range(5)]
    try:
        claim = led.claim(fingerprint="same", plan="light", params={}, recipients=rows)
    except CampaignStateError as err:
        print("refused", err, flush=True)
    else:
        print("claimed", claim.campaign_id, claim.continued, flush=True)
    sys.stdin.readline()  # hold the claim until told
"""


@pytest.mark.slow
def test_racing_claims_of_one_campaign_make_exactly_one(db: Path) -> None:
    procs = [python(CLAIMER, str(db), NOW.isoformat()) for _ in range(6)]
    try:
        start_together(procs)
        lines = [p.stdout.readline().split() for p in procs]  # type: ignore[union-attr]
        claimed = [w for w in lines if w[:1] == ["claimed"]]
        refused = [w for w in lines if w[:1] == ["refused"]]
        assert len(claimed) == 1 and len(refused) == 5, lines
        cid = claimed[0][1]
        assert claimed[0][2] == "False"
        assert all(cid in " ".join(w) for w in refused)  # each refusal names the campaign
        with Ledger.open(db, clock=lambda: NOW) as led:
            (record,) = led.find_by_fingerprint("same")
            assert (record.campaign_id, record.status) == (cid, "sending")
    finally:
        for p in procs:
            kill(p)


# --- the journal -----------------------------------------------------------------------------


def test_a_bad_row_in_a_batch_changes_nothing(ledger: Ledger) -> None:
    cid = new_campaign(ledger, 5)
    ledger.reserve(cid, 5, "light")
    ledger.mark_sending(cid, pend(1))
    ledger.mark_results(cid, [DeliveryResult(1, "sent", 250, "ok")])
    with pytest.raises(CampaignStateError, match=r"member 1 \(sent\)"):
        ledger.mark_sending(cid, pend(2, 3, 1))
    with pytest.raises(CampaignStateError, match=r"member 1 \(sent\)"):
        ledger.mark_sending(cid, [(1, "sent")])
    with pytest.raises(CampaignStateError, match=r"member 42 \(not a recipient\)"):
        ledger.mark_sending(cid, pend(2, 42))
    with pytest.raises(CampaignStateError, match=r"member 2 \(twice in the batch\)"):
        ledger.mark_sending(cid, pend(2, 2))
    with pytest.raises(CampaignStateError, match="nothing was changed"):
        ledger.mark_sending(cid, [(2, "deferred")])  # the caller is wrong about its state
    assert ledger.campaign(cid).journal == {"sent": 1, "pending": 4}
    assert ledger.usage("light").used == 1
    ledger.mark_sending(cid, pend(2, 3))
    with pytest.raises(CampaignStateError, match=r"member 4 \(pending\)"):
        ledger.mark_results(cid, [(2, "sent", 250, "ok"), (4, "sent", 250, "ok")])
    with pytest.raises(CampaignStateError, match=r"member 1 \(sent\)"):
        ledger.mark_results(cid, [DeliveryResult(1, "failed", 550, "late")])
    assert ledger.campaign(cid).journal == {"sent": 1, "sending": 2, "pending": 2}
    for bad in ("delivered", "pending", "sending"):
        with pytest.raises(ValueError, match="result state"):
            ledger.mark_results(cid, [DeliveryResult(2, bad)])
    assert ledger.campaign(cid).journal == {"sent": 1, "sending": 2, "pending": 2}
    assert ledger.usage("light").used == 3


def test_an_uncertain_result_cannot_come_from_a_row_that_is_not_in_flight(ledger: Ledger) -> None:
    cid = new_campaign(ledger, 2)
    ledger.reserve(cid, 2, "light")
    ledger.mark_sending(cid, pend(1))
    ledger.mark_results(cid, [DeliveryResult(1, "deferred", 451, "later")])
    with pytest.raises(CampaignStateError, match=r"member 1 \(deferred\)"):
        ledger.mark_results(cid, [DeliveryResult(1, "uncertain")])
    assert ledger.deferred(cid) == [Recipient(1, "member1@example.co.jp", 1, "deferred")]


def test_release_turns_mail_in_flight_into_uncertain(ledger: Ledger) -> None:
    cid = new_campaign(ledger, 3)
    ledger.reserve(cid, 3, "light")
    ledger.mark_sending(cid, pend(1, 2))
    ledger.mark_results(cid, [DeliveryResult(1, "sent", 250, "ok")])
    assert ledger.release(cid) == "unfinished"
    assert ledger.campaign(cid).journal == {"sent": 1, "uncertain": 1, "pending": 1}
    assert ledger.to_send(cid) == [Recipient(3, "member3@example.co.jp", 0, "pending")]


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
        assert list(led.sends()["kind"]) == ["admin"]


def test_campaigns_is_the_send_history_as_a_dataframe(ledger: Ledger) -> None:
    cid = new_campaign(ledger, 5)
    ledger.reserve(cid, 5, "light")
    ledger.mark_sending(cid, pend(1, 2, 3, 4))
    ledger.mark_results(
        cid,
        [
            (1, "sent", 250, "ok"),
            (2, "failed", 550, "unknown user"),
            (4, "deferred", 451, "greylisted"),
        ],
    )
    assert ledger.release(cid) == "unfinished"
    empty = ledger.claim(
        fingerprint="nobody", plan="light", params={}, recipients=[], campaign_id="zzz-empty"
    ).campaign_id
    assert ledger.release(empty) == "done"
    frame = ledger.campaigns()
    assert list(frame["campaign_id"]) == [cid, empty]
    assert list(frame["status"]) == ["unfinished", "done"]
    row = frame.iloc[0]
    assert row["plan"] == "ライトプラン"
    assert (row["selected"], row["sendable"], row["unsendable"]) == (7, 5, 2)
    counts = [row[s] for s in ("sent", "failed", "uncertain", "deferred", "pending", "sending")]
    assert counts == [1, 1, 1, 1, 1, 0]
    assert row["filter"] == {"pref": "東京都"} and row["params"]["subject"] == "新商品のご案内"
    assert row["reasons"] == {"invalid_address": 2}
    assert row["user"] and row["created_at"] == NOW
    assert str(frame["created_at"].dt.tz) == "Asia/Tokyo"
    assert frame.iloc[1]["sent"] == 0 and frame.iloc[1]["finished_at"] == NOW
    journal = ledger.deliveries(cid)
    assert list(journal["state"]) == ["sent", "failed", "uncertain", "deferred", "pending"]
    assert list(journal["code"].fillna(0).astype(int)) == [250, 550, 0, 451, 0]


def test_failures_lists_the_failed_mails_with_their_replies(ledger: Ledger) -> None:
    cid = new_campaign(ledger, 4)
    ledger.reserve(cid, 4, "light")
    ledger.exchange(cid, [], pend(1, 2, 3, 4))
    ledger.mark_results(
        cid,
        [
            DeliveryResult(1, "sent", 250, "ok"),
            DeliveryResult(2, "failed", 550, "5.1.1 User unknown"),
            DeliveryResult(3, "failed", None, None),
            DeliveryResult(4, "deferred", 451, "later"),
        ],
    )
    assert ledger.failures(cid) == [
        (2, "member2@example.co.jp", 550, "5.1.1 User unknown"),
        (3, "member3@example.co.jp", None, ""),
    ]
    assert [r.member_id for r in ledger.deferred(cid)] == [4]
    assert ledger.pending(cid) == []


def test_naive_now_is_refused(db: Path) -> None:
    naive = datetime(2026, 11, 27, 12, 0)
    with Ledger.open(db, clock=lambda: NOW) as led:
        with pytest.raises(ValueError, match="naive"):
            led.claim(fingerprint="f", plan="light", params={}, recipients=[], now=naive)
        assert led.campaigns().empty
        cid = new_campaign(led, 1)
        with pytest.raises(ValueError, match="naive"):
            led.reserve(cid, 1, "light", now=naive)
        with pytest.raises(ValueError, match="naive"):
            led.mark_sending(cid, pend(1), now=naive)
    with Ledger.open(db, clock=lambda: naive) as led, pytest.raises(ValueError, match="naive"):
        led.usage("light")


# --- exchange: results and the next hand-over in one commit -------------------------------


def test_exchange_records_and_hands_over_in_one_commit(ledger: Ledger) -> None:
    cid = new_campaign(ledger, n=4)
    ledger.reserve(cid, 4, "light")
    assert ledger.exchange(cid, [], pend(1, 2)) == 2
    assert ledger.exchange(cid, [DeliveryResult(1, "sent", 250, "ok")], pend(3)) == 1
    assert states(ledger, cid) == {1: "sent", 2: "sending", 3: "sending", 4: "pending"}
    assert ledger.usage("light").used == 3 and ledger.usage("light").reserved == 1
    # a refund (never started) goes back to the reservation before the hand-over needs it
    assert ledger.exchange(cid, [DeliveryResult(2, "unsent", None, "x")], pend(4, 2)) == 2
    assert ledger.usage("light").used == 4 and ledger.usage("light").reserved == 0


def test_exchange_keeps_the_results_when_the_hand_over_is_refused(ledger: Ledger) -> None:
    cid = new_campaign(ledger, n=3)
    ledger.reserve(cid, 2, "light")
    ledger.exchange(cid, [], pend(1, 2))
    with pytest.raises(QuotaExceededError, match="0 reserved mails left"):
        ledger.exchange(cid, [DeliveryResult(1, "sent", 250, "ok")], pend(3))
    assert states(ledger, cid) == {1: "sent", 2: "sending", 3: "pending"}
    assert ledger.usage("light").used == 2


def test_exchange_refusing_a_row_still_records_the_results(ledger: Ledger) -> None:
    cid = new_campaign(ledger, n=3)
    ledger.reserve(cid, 3, "light")
    ledger.exchange(cid, [], pend(1, 2))
    with pytest.raises(CampaignStateError, match="cannot hand over for member 1 "):
        ledger.exchange(cid, [DeliveryResult(1, "sent", 250, "ok")], pend(1))
    assert states(ledger, cid) == {1: "sent", 2: "sending", 3: "pending"}
    assert ledger.usage("light").used == 2 and ledger.usage("light").reserved == 1


def test_exchange_with_a_bad_result_changes_nothing(ledger: Ledger) -> None:
    cid = new_campaign(ledger, n=3)
    ledger.reserve(cid, 3, "light")
    ledger.exchange(cid, [], pend(1))
    with pytest.raises(CampaignStateError, match=r"member 3 \(pending\)"):
        ledger.exchange(cid, [DeliveryResult(1, "sent"), DeliveryResult(3, "sent")], pend(2))
    assert states(ledger, cid) == {1: "sending", 2: "pending", 3: "pending"}
    assert ledger.usage("light").used == 1


def test_an_exchange_across_midnight_of_the_month_counts_in_the_new_month(ledger: Ledger) -> None:
    cid = new_campaign(ledger, 3, now=LAST_SECOND_NOV)
    ledger.reserve(cid, 3, "light", now=LAST_SECOND_NOV)
    ledger.exchange(cid, [], pend(1), now=LAST_SECOND_NOV)
    # the reservation moves to December before the hand-over counts
    done = DeliveryResult(1, "sent", 250, "ok")
    assert ledger.exchange(cid, [done], pend(2), now=FIRST_SECOND_DEC) == 1
    assert ledger.usage("light", "2026-11", now=FIRST_SECOND_DEC).used == 1
    dec = ledger.usage("light", "2026-12", now=FIRST_SECOND_DEC)
    assert (dec.used, dec.reserved) == (1, 1)
    assert states(ledger, cid) == {1: "sent", 2: "sending", 3: "pending"}


def test_an_exchange_under_another_process_reservation_keeps_only_the_results(db: Path) -> None:
    with Ledger.open(db, clock=lambda: NOW) as led:
        cid = new_campaign(led, 3)
        led.reserve(cid, 3, "light")
        led.exchange(cid, [], pend(1))
        led._conn.execute("UPDATE reservations SET pid = pid + 1")  # as if another owned it
        with pytest.raises(CampaignStateError, match="not held by this process"):
            led.exchange(cid, [DeliveryResult(1, "sent", 250, "ok")], pend(2))
        # the result still counts as news (the mail is out); the hand-over was refused
        assert states(led, cid) == {1: "sent", 2: "pending", 3: "pending"}
        assert led.usage_by_campaign("2026-11") == {cid: 1}


# --- properties ------------------------------------------------------------------------------


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    ops=st.lists(
        st.tuples(
            st.integers(0, 3),  # campaign
            st.sampled_from(["take", "reserve", "send", "sent", "defer", "refund", "release"]),
            st.integers(0, 40),
        ),
        max_size=40,
    )
)
def test_used_plus_reserved_never_passes_the_cap(tmp_path: Path, ops: list[Any]) -> None:
    db = tmp_path / f"prop-{os.urandom(4).hex()}.sqlite3"
    with Ledger.open(db, clock=lambda: NOW) as led:
        cids = [new_campaign(led, 40, cid=f"c{i}") for i in range(4)]
        for cid in cids:
            assert led.release(cid) == "unfinished"
        # every example exercises the ledger: this prologue must succeed, refusing nothing
        assert led.take_over(cids[0]) is True
        led.reserve(cids[0], 10, "light")
        rows = led.to_send(cids[0])[:5]
        counted = led.mark_sending(cids[0], [(r.member_id, r.state) for r in rows])
        assert counted == 5
        handed_from = {(cids[0], r.member_id): r.state for r in rows}
        held = {cids[0]}  # what this process holds, by the test's own book-keeping
        refused: list[str] = []
        for i, op, k in ops:
            cid = cids[i]
            try:
                if op == "take":
                    if led.take_over(cid):
                        held.add(cid)
                elif op == "reserve":
                    led.reserve(cid, k, "light")
                elif op == "send":
                    rows = led.to_send(cid)[:k]
                    counted += led.mark_sending(cid, [(r.member_id, r.state) for r in rows])
                    handed_from.update({(cid, r.member_id): r.state for r in rows})
                elif op in ("sent", "defer", "refund"):
                    flying = [
                        int(m)
                        for m, s in states(led, cid).items()
                        if s == "sending" or (op == "refund" and s == "uncertain")
                    ][:k]
                    state = {"sent": "sent", "defer": "deferred", "refund": "unsent"}[op]
                    led.mark_results(cid, [DeliveryResult(m, state) for m in flying])
                    if op == "refund":
                        counted -= sum(handed_from[cid, m] == "pending" for m in flying)
                else:
                    led.release(cid)
                    held.discard(cid)
            except QuotaExceededError:
                # only a held campaign gets as far as the quota, and only by asking for more
                assert cid in held and op in ("reserve", "send")
                refused.append(op)
            except CampaignStateError:
                # a campaign this process holds is refused only when it asks to take it again
                assert cid not in held or op == "take"
                refused.append(op)
            status = led.usage("light")
            assert status.used + status.reserved <= 100
            assert status.used == counted
        event(f"refused {len(refused)} of {len(ops)}")


@st.composite
def lifecycle_ops(draw: st.DrawFn) -> list[tuple[Any, ...]]:
    op = st.one_of(
        st.tuples(st.just("hand"), st.integers(1, 4)),
        st.tuples(st.just("resend"), st.integers(1, 3)),
        st.tuples(
            st.just("result"),
            st.integers(1, 4),
            st.sampled_from(["sent", "failed", "deferred", "uncertain", "unsent"]),
        ),
        st.tuples(
            st.just("late"), st.integers(1, 2), st.sampled_from(["sent", "deferred", "unsent"])
        ),
        st.tuples(st.just("reserve"), st.integers(0, 8)),
        st.tuples(st.just("release"), st.booleans(), st.booleans()),
        st.tuples(st.just("take_over")),
        st.tuples(st.just("wrong")),
    )
    return draw(st.lists(op, max_size=30))


@settings(
    max_examples=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(size=st.integers(1, 6), ops=lifecycle_ops())
@example(  # a resend that never started, then the same news again: refunded once only
    size=1,
    ops=[
        ("hand", 1),
        ("result", 1, "uncertain"),
        ("resend", 1),
        ("result", 1, "unsent"),
        ("late", 1, "unsent"),
    ],
)
def test_one_campaign_counts_each_mail_once_and_is_done_only_when_nothing_is_left(
    tmp_path: Path, size: int, ops: list[tuple[Any, ...]]
) -> None:
    """A model of the journal and the lifecycle, checked against the ledger after every step."""
    db = tmp_path / f"life-{os.urandom(4).hex()}.sqlite3"
    with Ledger.open(db, clock=lambda: NOW) as led:
        cid = new_campaign(led, size, cid="c")
        led.reserve(cid, size + 1, "light")
        state = dict.fromkeys(range(1, size + 1), "pending")
        came_from: dict[int, str | None] = dict.fromkeys(state)
        attempts = dict.fromkeys(state, 0)
        holding, held, counted, status = True, size + 1, 0, "sending"
        sent_ok: set[int] = set()  # rows the server accepted: none may be handed over again

        def rows_in(*wanted: str) -> list[int]:
            return [m for m in sorted(state) if state[m] in wanted]

        def hand(ids: list[int], resend: bool) -> None:
            nonlocal held, counted
            need = sum(state[m] in ("pending", "uncertain") for m in ids)
            claimed = [(m, state[m]) for m in ids]
            if not holding:
                with pytest.raises(CampaignStateError, match="not held by this process"):
                    led.mark_sending(cid, claimed, resend=resend)
            elif need > held:
                with pytest.raises(QuotaExceededError, match="reserved mails left"):
                    led.mark_sending(cid, claimed, resend=resend)
            else:
                assert led.mark_sending(cid, claimed, resend=resend) == need
                assert not sent_ok & set(ids), "a mail already accepted was handed over again"
                for m in ids:
                    came_from[m], state[m] = state[m], "sending"
                    attempts[m] += 1
                held -= need
                counted += need

        def results(ids: list[int], outcome: str) -> None:
            nonlocal held, counted
            if outcome == "unsent" and any(came_from[m] is None for m in ids):
                with pytest.raises(CampaignStateError):
                    led.mark_results(cid, [DeliveryResult(m, outcome) for m in ids])
                return
            assert led.mark_results(cid, [DeliveryResult(m, outcome) for m in ids]) == len(ids)
            for m in ids:
                if outcome == "unsent":
                    origin = came_from[m]
                    assert origin is not None
                    if origin in ("pending", "uncertain"):
                        counted -= 1
                        held += 1 if holding else 0
                    state[m], came_from[m] = origin, None
                    attempts[m] -= 1
                else:
                    if outcome == "sent":
                        assert m not in sent_ok, "a mail was accepted twice"
                        sent_ok.add(m)
                    state[m] = outcome

        for step in ops:
            kind = step[0]
            if kind == "hand":
                ids = rows_in("pending", "deferred")[: step[1]]
                if ids:
                    hand(ids, resend=False)
            elif kind == "resend":
                ids = rows_in("uncertain")[: step[1]]
                if ids:
                    hand(ids, resend=True)
            elif kind == "result":
                ids = rows_in("sending")[: step[1]]
                if ids:
                    results(ids, step[2])
            elif kind == "late":  # news about a row its run lost track of
                ids = rows_in("uncertain")[: step[1]]
                if ids:
                    results(ids, step[2])
            elif kind == "wrong":  # a caller wrong about a row's state changes nothing
                done = rows_in("sent", "failed", "sending")
                if done and holding and held:
                    with pytest.raises(CampaignStateError, match="nothing was changed"):
                        led.mark_sending(cid, [(done[0], "pending")], resend=True)
            elif kind == "reserve":
                k = step[1]
                if not holding:
                    with pytest.raises(CampaignStateError):
                        led.reserve(cid, k, "light")
                elif counted + k > 100:
                    with pytest.raises(QuotaExceededError):
                        led.reserve(cid, k, "light")
                else:
                    assert led.reserve(cid, k, "light").reserved == k
                    held = k
            elif kind == "release":
                cancel, owed_now = step[1], step[2]
                was_holding = holding
                got = led.release(cid, cancel=cancel, admin_owed=owed_now)
                if holding:
                    for m in rows_in("sending"):
                        state[m] = "uncertain"
                    left = bool(rows_in(*LEFT))
                    if cancel and not any(attempts.values()):
                        status = "cancelled"
                    elif left or owed_now:
                        status = "unfinished"
                    else:
                        status = "done"
                    holding, held = False, 0
                assert got == status
                if was_holding and got != "cancelled":  # the ledger's own view of what is left
                    nothing_left = led.campaign(cid).left == 0
                    assert (got == "done") == (nothing_left and not owed_now)
            else:
                if status == "done":
                    assert led.take_over(cid) is False
                elif status in ("cancelled", "sending"):
                    with pytest.raises(CampaignStateError):
                        led.take_over(cid)
                else:
                    assert led.take_over(cid) is True
                    holding, held, status = True, 0, "sending"

            record = led.campaign(cid)
            assert record.status == status
            journal = led.deliveries(cid).set_index("member_id")
            assert journal["state"].to_dict() == state
            assert journal["attempts"].to_dict() == attempts
            usage = led.usage("light")
            assert usage.used == counted == led.usage_by_campaign("2026-11").get(cid, 0)
            assert usage.reserved == (held if holding else 0)
            if status == "done":
                assert record.left == 0 and not rows_in(*LEFT)


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
    print("ready", flush=True)
    sys.stdin.read()
"""


def test_a_ledger_locked_by_another_process_is_a_clear_error(db: Path) -> None:
    with Ledger.open(db, clock=lambda: NOW) as led:
        cid = new_campaign(led, 3)
    proc = python(LOCKER, str(db))
    try:
        ready(proc)
        with Ledger.open(db, clock=lambda: NOW, timeout=0.2) as led:
            assert led.usage("light").used == 0  # WAL: readers are not blocked
            with pytest.raises(LedgerError, match="locked by another process") as exc:
                led.reserve(cid, 3, "light")
            assert str(db) in str(exc.value)
            with pytest.raises(LedgerError, match="locked by another process"):
                led.claim(fingerprint="x", plan="light", params={}, recipients=[(1, "a@x.jp")])
    finally:
        kill(proc)
    with Ledger.open(db, clock=lambda: NOW) as led:  # nothing half-done, usable again
        assert led.find_by_fingerprint("x") == []
        assert led.campaign(cid).status == "sending"
        assert led.reserve(cid, 3, "light").reserved == 3


# --- migrations ------------------------------------------------------------------------------


def _add_note_column(conn: sqlite3.Connection) -> None:
    conn.execute("ALTER TABLE campaigns ADD COLUMN note TEXT NOT NULL DEFAULT ''")


def _broken_step(conn: sqlite3.Connection) -> None:
    conn.execute("ALTER TABLE campaigns ADD COLUMN note TEXT")
    conn.execute("ALTER TABLE no_such_table ADD COLUMN x TEXT")


def test_a_future_migration_keeps_the_data(db: Path) -> None:
    with Ledger.open(db, clock=lambda: NOW) as led:
        cid = new_campaign(led, 3)
        led.reserve(cid, 3, "light")
        send_all(led, cid)
        led.release(cid)
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


T0 = "2026-11-01T10:00:00.000+09:00"


def old_campaign(
    conn: sqlite3.Connection, cid: str, fp: str, status: str, created: str = T0
) -> None:
    """A campaign row as versions 1 and 2 wrote it."""
    conn.execute(
        "INSERT INTO campaigns (campaign_id, created_at, user, host, plan, fingerprint, params, "
        "selected, sendable, unsendable, status, updated_at) "
        "VALUES (?, ?, 'u', 'h', 'ライトプラン', ?, '{}', 3, 3, 0, ?, ?)",
        (cid, created, fp, status, created),
    )


def old_rows(conn: sqlite3.Connection, cid: str, *rows: tuple[int, str, int]) -> None:
    conn.executemany(
        "INSERT INTO deliveries (campaign_id, member_id, address, state, attempts, counted_month) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        [
            (cid, m, f"m{m}@x.jp", s, n, "2026-11" if n else None)
            for m, s, n in rows  # (member, state, attempts)
        ],
    )


def old_ledger(db: Path, version: int) -> sqlite3.Connection:
    """A real ledger file of an older schema version, opened raw for old-style inserts."""
    with Ledger.open(db, clock=lambda: NOW, migrations=MIGRATIONS[:version]):
        pass
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == version
    return conn


def test_migrating_from_version_1_keeps_the_data(db: Path) -> None:
    conn = old_ledger(db, 1)
    indexes = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='index'")}
    assert "deliveries_state" in indexes
    old_campaign(conn, "v1-cut", "fp1", "interrupted")
    old_rows(conn, "v1-cut", (1, "sent", 1), (2, "sending", 1), (3, "pending", 0))
    old_campaign(conn, "v1-done", "fp2", "done")
    old_rows(conn, "v1-done", (1, "sent", 2), (2, "failed", 1))
    conn.execute("INSERT INTO usage VALUES ('2026-11', 'v1-cut', 2), ('2026-11', 'v1-done', 3)")
    conn.commit()
    conn.close()
    with Ledger.open(db, clock=lambda: NOW) as led:
        assert led.campaign("v1-cut").status == "unfinished"
        assert states(led, "v1-cut") == {1: "sent", 2: "uncertain", 3: "pending"}
        assert led.campaign("v1-done").status == "done"
        assert led.campaign("v1-done").journal == {"sent": 1, "failed": 1}
        assert led.usage("light").used == 5
        assert led.take_over("v1-cut") is True
        led.reserve("v1-cut", 1, "light")
        assert led.mark_sending("v1-cut", pend(3)) == 1
    conn = sqlite3.connect(db)
    indexes = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='index'")}
    assert "deliveries_state" not in indexes
    assert "campaigns_one_open_per_fingerprint" in indexes
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    conn.close()


def test_migrating_from_version_2_maps_every_old_status(db: Path) -> None:
    conn = old_ledger(db, 2)
    # an outage, then two runs, then two resumes: version 2 let both stay unfinished
    old_campaign(conn, "old", "same", "interrupted", "2026-11-01T10:00:00.000+09:00")
    old_rows(conn, "old", (1, "sent", 1), (2, "sending", 1), (3, "pending", 0))
    old_campaign(conn, "new", "same", "sending", "2026-11-02T10:00:00.000+09:00")
    old_rows(conn, "new", (1, "sent", 1), (2, "sending", 1), (3, "uncertain", 1))
    old_campaign(conn, "quota", "q", "failed")  # refused by the quota: nothing went out
    old_rows(conn, "quota", (1, "pending", 0), (2, "pending", 0))
    old_campaign(conn, "planned", "p", "planned")
    old_rows(conn, "planned", (1, "pending", 0))
    old_campaign(conn, "finished", "f", "interrupted")  # interrupted, but nothing left
    old_rows(conn, "finished", (1, "sent", 1), (2, "failed", 3))
    conn.execute(
        "INSERT INTO reservations VALUES ('new', '2026-11', 'light', 5, 1, 'h', 's', 0, ?)", (T0,)
    )
    conn.execute("INSERT INTO usage VALUES ('2026-11', 'old', 2), ('2026-11', 'new', 3)")
    conn.commit()
    conn.close()
    with Ledger.open(db, clock=lambda: NOW) as led:
        status = {cid: led.campaign(cid).status for cid in led.campaigns()["campaign_id"]}
        assert status == {
            "old": "cancelled",
            "new": "unfinished",
            "quota": "cancelled",
            "planned": "cancelled",
            "finished": "done",
        }
        assert states(led, "new") == {1: "sent", 2: "uncertain", 3: "uncertain"}
        assert states(led, "old") == {1: "sent", 2: "uncertain", 3: "pending"}
        assert led.usage("light").as_dict()["used"] == 5 and led.usage("light").reserved == 0
        # the newest one is the campaign a run of that fingerprint continues
        claim = led.claim(fingerprint="same", plan="light", params={}, recipients=[])
        assert claim == Claim("new", True)
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert conn.execute("SELECT count(*) FROM reservations").fetchone()[0] == 1  # ours, just now
    # the partial unique index: no second unfinished campaign with the same fingerprint …
    with pytest.raises(sqlite3.IntegrityError, match="UNIQUE"):
        conn.execute(
            "INSERT INTO campaigns (campaign_id, created_at, user, host, plan, fingerprint, "
            "params, status, updated_at) VALUES ('third', ?, 'u', 'h', 'light', 'same', '{}', "
            "'unfinished', ?)",
            (T0, T0),
        )
    with pytest.raises(sqlite3.IntegrityError, match="CHECK"):
        old_campaign(conn, "fourth", "z", "interrupted")  # old statuses are gone
    # … while finished ones may share it
    old_campaign(conn, "again", "same", "done")
    old_campaign(conn, "again2", "same", "cancelled")
    conn.commit()
    conn.close()
