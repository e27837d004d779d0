"""A scan records its events as one batch (the keys looked up at once, the events and the
list written with executemany), and a batch decides exactly what the recording before it
decided with one statement an event (tests/record_before.py): the same events kept, the same
addresses listed with the same reason, count, first and last seen, and the same counts
reported; so do confirmations. Over hypothesis's batches: repeated keys, every kind, soft
bounces across the window, unverified notices, addresses already listed, case changes."""

from __future__ import annotations

import functools
import sqlite3
import tempfile
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import record_before
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bcartnb.ledger import HygieneEvent, Ledger
from bcartnb.ledger.schema import SUPPRESSION_REASONS
from bcartnb.ledger.suppressions import event_id
from bcartnb.quota import TOKYO

T0 = datetime(2026, 11, 1, 9, 0, tzinfo=TOKYO)
ADDRESSES = ["a@x.jp", "B@x.jp", "b@x.jp", "c@y.jp"]
WINDOW = timedelta(days=10)
_T = TypeVar("_T")

events = st.builds(
    HygieneEvent,
    key=st.sampled_from([f"sent:{i}{i:011x}" for i in range(1, 9)]),
    kind=st.sampled_from(SUPPRESSION_REASONS),
    address=st.sampled_from(ADDRESSES),
    at=st.integers(0, 40).map(lambda d: T0 + timedelta(days=d)),
    source=st.sampled_from(["scan a", "scan b"]),
    campaign_id=st.sampled_from([None, "c1"]),
    member_id=st.sampled_from([None, 7]),
    status=st.sampled_from([None, "4.2.2", "5.1.1"]),
    detail=st.sampled_from([None, "why"]),
    verified=st.booleans(),
)
listed_before = st.lists(
    st.tuples(st.sampled_from(ADDRESSES), st.sampled_from(SUPPRESSION_REASONS)), max_size=3
)


def state(path: str) -> tuple[list[tuple[object, ...]], ...]:
    conn = sqlite3.connect(path)
    try:
        return tuple(
            sorted(conn.execute(f"SELECT * FROM {name}").fetchall(), key=repr)
            for name in ("suppressions", "hygiene_events")
        )
    finally:
        conn.close()


@functools.cache
def empty_ledger() -> bytes:
    """A new ledger file's bytes, made once: each example starts from a copy."""
    with tempfile.TemporaryDirectory() as tmp:
        Ledger.open(f"{tmp}/empty.sqlite3").close()
        with sqlite3.connect(f"{tmp}/empty.sqlite3") as db:
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return Path(f"{tmp}/empty.sqlite3").read_bytes()


def prepared(path: str, before: list[tuple[str, str]], earlier: list[HygieneEvent]) -> None:
    Path(path).write_bytes(empty_ledger())
    with Ledger.open(path, clock=lambda: T0) as led:
        for address, reason in before:
            led.suppress(address, reason, source="hand", now=T0)
        led.record_events(earlier, soft_threshold=2, soft_window=WINDOW, now=T0)


def as_before(path: str, run: Callable[[sqlite3.Connection], _T]) -> _T:
    """``run`` on the ledger file in one transaction, as the recording before did."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        out = run(conn)
        conn.execute("COMMIT")
        return out
    finally:
        conn.close()


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    before=listed_before,
    earlier=st.lists(events, max_size=4),
    batch=st.lists(events, max_size=12),
    threshold=st.integers(1, 3),
)
def test_a_batch_records_what_the_recording_before_recorded(
    before: list[tuple[str, str]],
    earlier: list[HygieneEvent],
    batch: list[HygieneEvent],
    threshold: int,
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        now, old = f"{tmp}/now.sqlite3", f"{tmp}/before.sqlite3"
        prepared(now, before, earlier)
        prepared(old, before, earlier)
        kw: dict[str, Any] = {"soft_threshold": threshold, "soft_window": WINDOW}
        with Ledger.open(now, clock=lambda: T0) as led:
            got = led.record_events(batch, now=T0, **kw)
            pending = sorted(
                (event_id(str(r["event_key"])), str(r["event_key"]))
                for r in led.unverified_events()
            )
        want = as_before(old, lambda c: record_before.record_events(c, batch, now=T0, **kw))
        assert state(now) == state(old)
        assert (got.recorded, got.repeated, got.suppressed_new, dict(got.by_kind)) == want[:4]
        assert got.unverified == want[4]

        # the unverified notices confirmed at once, as the loop before confirmed them
        if pending:
            with Ledger.open(now, clock=lambda: T0) as led:
                done = led.confirm_events([i for i, _ in pending], **kw)
            keys = [k for _, k in pending]
            new = as_before(old, lambda c: record_before.confirm_events(c, keys, **kw))
            assert state(now) == state(old)
            assert done.suppressed_new == new


def test_a_batch_larger_than_one_query_s_keys_is_looked_up_whole() -> None:
    """Past the few hundred keys a query holds, every key is still found taken on a rescan."""

    batch = [HygieneEvent(f"k{i}", "hard_bounce", f"m{i}@x.jp", T0, "scan") for i in range(1234)]
    with tempfile.TemporaryDirectory() as tmp, Ledger.open(f"{tmp}/l.sqlite3") as led:
        first = led.record_events(batch, now=T0)
        again = led.record_events(batch, now=T0)
    assert (first.recorded, len(first.suppressed_new)) == (1234, 1234)
    assert (again.recorded, again.repeated, again.suppressed_new) == (0, 1234, ())
