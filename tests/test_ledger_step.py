"""The send loop's step, ``Ledger.hand_over``, held equal to the statements it was made of.

The step was made cheaper (bench/bench_step.py): fewer statements and less Python around them.
:func:`reference_hand_over` below is the step as it was before (session 10's start, 66da5c4):
its statements, in its order, on a plain sqlite3 connection. A hypothesis property runs both on
two copies of one real ledger file, over generated journals (every state, counted or not,
wrong states claimed, duplicates), suppressed addresses (any case), reservations (ours,
another process's, none; 0 to 6 units held), a step across the end of the month into a month
whose cap is nearly used, and results of every kind: the files must end equal, table by table,
and the step must answer the same (what it counted and withheld, or the same refusal).
"""

from __future__ import annotations

import shutil
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from bcartnb.exceptions import CampaignStateError, LedgerError, QuotaExceededError
from bcartnb.ledger import DeliveryResult, Ledger
from bcartnb.ledger.reservations import Owner
from bcartnb.plans import resolve_plan
from bcartnb.quota import TOKYO, QuotaStatus

NOV = datetime(2026, 11, 27, 14, 30, 15, 123456, tzinfo=TOKYO)
DEC = datetime(2026, 12, 1, 0, 0, 0, 250000, tzinfo=TOKYO)  # the reservation is November's
LEASE = timedelta(minutes=10)
N = 6
ALLOWED = {
    "sending": ("pending", "deferred", "uncertain"),
    "sent": ("sending", "uncertain"),
    "failed": ("sending", "uncertain", "deferred"),
    "deferred": ("sending", "uncertain"),
    "uncertain": ("sending",),
    "unsent": ("sending", "uncertain"),
    "withheld": ("pending", "deferred", "uncertain"),
}
COUNTED_FROM = ("pending", "uncertain")
RESULTS = ("sent", "failed", "deferred", "uncertain", "unsent")
TABLES = {
    "deliveries": "campaign_id, member_id",
    "usage": "month, campaign_id",
    "reservations": "campaign_id",
    "campaigns": "campaign_id",
    "suppressions": "address",
}


class Refused(Exception):
    """The reference's refusals, by the product's exception type."""

    def __init__(self, kind: type[Exception]) -> None:
        super().__init__(kind.__name__)
        self.kind = kind


# --- the reference: the step's statements as they were ------------------------------------


def _ts(now: datetime) -> str:
    return now.astimezone(TOKYO).isoformat(timespec="milliseconds")


def _mark(c: sqlite3.Connection, cid: str, to: str, rows: Sequence[Any], now: datetime) -> int:
    """The old ``transition`` for results, ``unsent`` and ``withheld``; the units refunded."""
    allowed = ALLOWED[to]
    before = c.total_changes
    if to == "unsent":
        ids = [int(m) for m in rows]
        refunds: dict[str, int] = {}
        for month, n in c.execute(
            "SELECT counted_month, count(*) FROM deliveries WHERE campaign_id = ? "
            f"AND member_id IN ({', '.join('?' * len(ids))}) AND state IN ('sending', 'uncertain') "
            f"AND handed_from IN {COUNTED_FROM!r} GROUP BY counted_month",
            (cid, *ids),
        ):
            if month is not None:
                refunds[month] = int(n)
        c.executemany(
            "UPDATE deliveries SET state = handed_from, handed_from = NULL, "
            "attempts = attempts - 1, "
            "counted_month = CASE WHEN handed_from = 'pending' THEN NULL ELSE counted_month END, "
            "result_at = ?, message = 'not started' WHERE campaign_id = ? AND member_id = ? "
            "AND state IN ('sending', 'uncertain') AND handed_from IS NOT NULL",
            [(_ts(now), cid, m) for m in ids],
        )
        if c.total_changes - before != len(ids):
            raise Refused(CampaignStateError)
        for month, n in refunds.items():
            _count(c, month, cid, -n)
        return -sum(refunds.values())
    c.executemany(
        "UPDATE deliveries SET state = ?, code = ?, message = ?, result_at = ? "
        f"WHERE campaign_id = ? AND member_id = ? AND state IN ({', '.join('?' * len(allowed))})",
        [(to, r.code, r.message, _ts(now), cid, int(r.member_id), *allowed) for r in rows],
    )
    if c.total_changes - before != len(rows):
        raise Refused(CampaignStateError)
    return 0


def _count(c: sqlite3.Connection, month: str, cid: str, k: int) -> None:
    c.execute(
        "INSERT INTO usage (month, campaign_id, sends) VALUES (?, ?, ?) "
        "ON CONFLICT (month, campaign_id) DO UPDATE SET sends = sends + excluded.sends",
        (month, cid, k),
    )


def reference_step(
    c: sqlite3.Connection,
    cid: str,
    items: list[DeliveryResult],
    hand: list[tuple[int, str]],
    resend: bool,
    now: datetime,
) -> tuple[int, tuple[int, ...]]:
    row = c.execute(
        "SELECT month, plan, held, pid, host, proc_start FROM reservations WHERE campaign_id = ?",
        (cid,),
    ).fetchone()
    me = Owner.current()
    ours = row is not None and tuple(row[3:]) == (me.pid, me.host, me.start)
    if hand and not ours:
        raise Refused(CampaignStateError)
    units = 0
    by_state: dict[str, list[DeliveryResult]] = {}
    for r in items:
        by_state.setdefault(r.state, []).append(r)
    for state, group in by_state.items():
        rows = [r.member_id for r in group] if state == "unsent" else group
        units += _mark(c, cid, state, rows, now)
    withheld: tuple[int, ...] = ()
    if hand:
        found = c.execute(
            "SELECT d.member_id, s.reason FROM deliveries d JOIN suppressions s "
            "ON s.address = lower(d.address) WHERE d.campaign_id = ? "
            f"AND d.member_id IN ({', '.join('?' * len(hand))})",
            (cid, *(m for m, _ in hand)),
        ).fetchall()
        listed = [DeliveryResult(int(m), "withheld", None, f"suppressed: {r}") for m, r in found]
        if listed:
            _mark(c, cid, "withheld", listed, now)
        withheld = tuple(r.member_id for r in listed)
        hand = [(m, s) for m, s in hand if m not in withheld]
    counted = 0
    if hand:
        month = now.astimezone(TOKYO).strftime("%Y-%m")
        held = int(row[2]) - units
        if row[0] != month:
            used = c.execute(
                "SELECT COALESCE(SUM(sends), 0) FROM usage WHERE month = ?", (month,)
            ).fetchone()[0]
            reserved = c.execute(
                "SELECT COALESCE(SUM(held), 0) FROM reservations "
                "WHERE month = ? AND campaign_id != ?",
                (month, cid),
            ).fetchone()[0]
            if not QuotaStatus(resolve_plan(row[1]), month, used, reserved).fits(held):
                raise Refused(QuotaExceededError)
            c.execute("UPDATE reservations SET month = ? WHERE campaign_id = ?", (month, cid))
        if sum(1 for _, s in hand if s in COUNTED_FROM) > held:
            raise Refused(QuotaExceededError)
        for _, s in hand:
            if s not in ALLOWED["sending"] or (s == "uncertain" and not resend):
                raise Refused(CampaignStateError)
        before = c.total_changes
        c.executemany(
            "UPDATE deliveries SET state = 'sending', handed_from = ?, attempts = attempts + 1, "
            "counted_month = CASE WHEN ? THEN ? ELSE counted_month END, sending_at = ?, "
            "result_at = NULL WHERE campaign_id = ? AND member_id = ? AND state = ?",
            [(s, s in COUNTED_FROM, month, _ts(now), cid, m, s) for m, s in hand],
        )
        if c.total_changes - before != len(hand):
            raise Refused(CampaignStateError)
        counted = sum(1 for _, s in hand if s in COUNTED_FROM)
        if counted:
            _count(c, month, cid, counted)
    if ours:
        c.execute(
            "UPDATE reservations SET held = held - ?, lease_until = ?, heartbeat_at = ? "
            "WHERE campaign_id = ?",
            (units + counted, (now + LEASE).timestamp(), _ts(now), cid),
        )
    return counted, withheld


def reference_hand_over(
    c: sqlite3.Connection,
    cid: str,
    items: list[DeliveryResult],
    hand: list[tuple[int, str]],
    resend: bool,
    now: datetime,
) -> tuple[int, tuple[int, ...]] | type[Exception]:
    """The old ``hand_over``: the step in one transaction; refused, the results alone."""

    def once(h: list[tuple[int, str]]) -> tuple[int, tuple[int, ...]]:
        c.execute("BEGIN IMMEDIATE")
        try:
            out = reference_step(c, cid, items, h, resend, now)
        except BaseException:
            c.execute("ROLLBACK")
            raise
        c.execute("COMMIT")
        return out

    try:
        return once(hand)
    except Refused as refused:
        if not (items and hand):
            return refused.kind
        try:
            once([])
        except Refused as again:
            return again.kind
        return refused.kind


# --- the property --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A ledger with our campaign of N members (some addresses in capitals) and another's."""
    path = tmp_path_factory.mktemp("step") / "template.sqlite3"
    with Ledger.open(path, clock=lambda: NOV) as led:
        for cid, start in (("c-other", 100), ("c-ours", 1)):
            led.claim(
                fingerprint=cid,
                plan="light",
                params={},
                recipients=[
                    (i, f"Member{i}@Example.co.jp" if i % 2 else f"member{i}@example.co.jp")
                    for i in range(start, start + N)
                ],
                sendable=N,
                campaign_id=cid,
            )
        led._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    yield path


# weighted: a step needs rows to hand over and rows in flight to record
STATES = (
    ("pending",) * 3 + ("sending",) * 3 + ("deferred", "uncertain", "sent", "failed", "withheld")
)
journal_rows = st.tuples(
    st.sampled_from(STATES),
    st.sampled_from(("pending", "deferred", "uncertain")),  # handed over from
    st.integers(0, 2),  # attempts
)


@st.composite
def steps(
    draw: st.DrawFn, journal: list[tuple[str, str, int]], resend: bool
) -> tuple[list[DeliveryResult], list[tuple[int, str]]]:
    """Results and hand-overs, mostly true to the journal (else nearly every step is refused),
    sometimes not: a wrong state, a stranger (member N + 1), a member twice."""
    truthful = draw(st.integers(0, 9)) > 0
    handable = ALLOWED["sending"] if resend else ("pending", "deferred")

    def state(m: int) -> str:
        return journal[m - 1][0] if m <= N else "not a recipient"

    members = list(range(1, N + 2))
    items = []
    for _ in range(draw(st.integers(0, 3))):
        known = [m for m in members if any(state(m) in ALLOWED[to] for to in RESULTS)]
        if truthful and not known:
            break
        m = draw(st.sampled_from(known if truthful else members))
        fits = [to for to in RESULTS if state(m) in ALLOWED[to]]
        to = draw(st.sampled_from(fits if truthful else RESULTS))
        code = draw(st.sampled_from((250, 550, 451, None)))
        text = draw(st.sampled_from(("2.0.0 Ok", "5.1.1 unknown", None, "改行\r\n<script>")))
        items.append(DeliveryResult(m, to, code, text))
        if truthful:
            members.remove(m)
    hand = []
    for _ in range(draw(st.sampled_from((0, 1, 1, 2, 2, 3)))):
        free = [m for m in members if state(m) in handable] if truthful else members
        if not free:
            break
        m = draw(st.sampled_from(free))
        said = state(m) if truthful else draw(st.sampled_from(ALLOWED["sending"]))
        hand.append((m, said))
        if truthful:
            members.remove(m)
    return items, hand


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    journal=st.lists(journal_rows, min_size=N, max_size=N),
    listed=st.sets(st.integers(1, N)),
    owner=st.sampled_from(("ours", "ours", "ours", "ours", "other", "none")),
    held=st.sampled_from((0, 1, 2, 3, 6, 6, 6)),
    month_change=st.booleans(),
    december_used=st.integers(40, 50),  # the light plan's cap is 50
    data=st.data(),
    resend=st.booleans(),
)
def test_the_step_changes_the_ledger_as_the_old_statements_did(
    template: Path,
    tmp_path: Path,
    journal: list[tuple[str, str, int]],
    listed: set[int],
    owner: str,
    held: int,
    month_change: bool,
    december_used: int,
    data: st.DataObject,
    resend: bool,
) -> None:
    now = DEC if month_change else NOV
    paths = []
    for name in ("product", "reference"):
        path = tmp_path / f"{name}.sqlite3"
        shutil.copyfile(template, path)
        with sqlite3.connect(path, isolation_level=None) as c:
            arrange(c, journal, listed, owner, held, december_used)
        c.close()
        paths.append(path)
    items, hand = data.draw(steps(journal, resend))

    with Ledger.open(paths[0], clock=lambda: now, lease=LEASE) as led:
        try:
            step = led.hand_over("c-ours", items, hand, resend=resend)
            got: object = (step.counted, step.withheld)
        except (CampaignStateError, QuotaExceededError) as err:
            got = type(err)

    c = sqlite3.connect(paths[1], isolation_level=None)
    try:
        want = reference_hand_over(c, "c-ours", items, list(hand), resend, now)
    finally:
        c.close()
    if isinstance(want, tuple):
        event(f"counted {min(want[0], 1)}, withheld {min(len(want[1]), 1)}, month {month_change}")
    else:
        event(want.__name__)
    assert got == want
    assert dump(paths[0]) == dump(paths[1])


def arrange(
    c: sqlite3.Connection,
    journal: list[tuple[str, str, int]],
    listed: set[int],
    owner: str,
    held: int,
    december_used: int,
) -> None:
    """Put both copies in the generated state: the journal, the list, the reservation, usage."""
    counted: dict[str, int] = {}
    for m, (state, origin, attempts) in enumerate(journal, start=1):
        handed = state in ("sending", "uncertain") or (state != "pending" and attempts > 0)
        month = "2026-11" if handed and origin in COUNTED_FROM else None
        if month:
            counted[month] = counted.get(month, 0) + 1
        c.execute(
            "UPDATE deliveries SET state = ?, handed_from = ?, attempts = ?, counted_month = ? "
            "WHERE campaign_id = 'c-ours' AND member_id = ?",
            (state, origin if handed else None, attempts, month, m),
        )
    for month, n in counted.items():
        c.execute("INSERT INTO usage VALUES (?, 'c-ours', ?)", (month, n))
    c.execute("INSERT INTO usage VALUES ('2026-12', 'c-other', ?)", (december_used,))
    for m in listed:
        c.execute(
            "INSERT INTO suppressions (address, reason, source, first_seen, last_seen) "
            "VALUES (?, 'unsubscribed', 'test', 'x', 'x')",
            (f"member{m}@example.co.jp",),
        )
    me = Owner.current()
    c.execute("DELETE FROM reservations")
    if owner != "none":
        c.execute(
            "INSERT INTO reservations VALUES ('c-ours', '2026-11', 'light', ?, ?, ?, ?, 0, 'x')",
            (held, me.pid + (owner == "other"), me.host, me.start),
        )


def dump(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    c = sqlite3.connect(path)
    try:
        return {
            t: c.execute(f"SELECT * FROM {t} ORDER BY {key}").fetchall()
            for t, key in TABLES.items()
        }
    finally:
        c.close()


# --- the write transaction (a class since the step was made cheaper) -------------------------


def other_thread_writes(led: Ledger) -> str:
    """A write from another thread: it needs the ledger's lock, so it shows the lock was freed."""
    out: list[str] = []
    worker = threading.Thread(
        target=lambda: out.append(str(led.suppress("late@example.jp", "manual"))), daemon=True
    )
    worker.start()
    worker.join(timeout=30)
    assert not worker.is_alive(), "the ledger's lock was never released"
    return out[0]


def test_a_write_that_raises_rolls_back_releases_the_lock_and_raises_what_it_raised(
    tmp_path: Path,
) -> None:
    with Ledger.open(tmp_path / "l.sqlite3", clock=lambda: NOV) as led:
        with pytest.raises(KeyError, match="mine"), led._write() as c:
            c.execute("INSERT INTO usage VALUES ('2026-11', 'x', 1)")
            raise KeyError("mine")
        assert not led._conn.in_transaction
        with pytest.raises(LedgerError, match=r"ledger error: .*no such table"), led._write() as c:
            c.execute("INSERT INTO usage VALUES ('2026-11', 'y', 1)")
            c.execute("SELECT * FROM no_such_table")
        assert not led._conn.in_transaction
        assert other_thread_writes(led) == "True"
        assert led._conn.execute("SELECT count(*) FROM usage").fetchone()[0] == 0


def test_a_commit_that_fails_is_a_ledger_error_and_the_lock_is_released(tmp_path: Path) -> None:
    with Ledger.open(tmp_path / "l.sqlite3", clock=lambda: NOV) as led:
        led._conn.execute("PRAGMA foreign_keys = ON")
        led._conn.execute("PRAGMA defer_foreign_keys = ON")  # checked at COMMIT, which fails
        with pytest.raises(LedgerError, match="FOREIGN KEY"), led._write() as c:
            c.execute(
                "INSERT INTO reservations VALUES ('no-such', 'm', 'light', 0, 1, 'h', 's', 0, 'x')"
            )
        assert not led._conn.in_transaction
        assert led._conn.execute("SELECT count(*) FROM reservations").fetchone()[0] == 0
        assert other_thread_writes(led) == "True"


def test_a_write_inside_a_snapshot_is_refused_and_the_snapshot_stands(tmp_path: Path) -> None:
    path = tmp_path / "l.sqlite3"
    with Ledger.open(path, clock=lambda: NOV) as led, Ledger.open(path, clock=lambda: NOV) as other:
        led.suppress("first@example.jp", "manual")
        with led.snapshot():
            assert len(led.suppressions()) == 1  # the first read: the snapshot is taken
            other.suppress("second@example.jp", "manual")
            assert len(led.suppressions()) == 1
            with pytest.raises(LedgerError, match="a write inside a snapshot"):
                led.suppress("third@example.jp", "manual")
            assert len(led.suppressions()) == 1  # still the snapshot: nothing rolled it back
        assert len(led.suppressions()) == 2
        assert other_thread_writes(led) == "True"
