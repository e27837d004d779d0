"""Recording a batch of hygiene events exactly as it was before the batch was written with
executemany (kept verbatim from bcartnb/ledger/events.py and suppressions.py at 1467e3d, one
statement and one lookup an event; only its imports changed, and it runs on a connection
inside a transaction the caller opens): the reference tests/test_hygiene_record_batch.py holds
the batched recording to, row for row. Not a second truth: nothing in the package imports it,
and it is never to be edited except to follow a name that moved.
"""

# ruff: noqa
# mypy: ignore-errors

from __future__ import annotations

import sqlite3
from datetime import datetime, timedelta

from bcartnb.ledger.database import ts
from bcartnb.ledger.events import UNVERIFIED, _event_row, _most_within
from bcartnb.ledger.suppressions import REASON_RANK, _COLUMNS, HygieneEvent, normalize_address


def list_address(
    c: sqlite3.Connection,
    address: str,
    reason: str,
    source: str,
    at: datetime,
    *,
    campaign_id: str | None,
    member_id: int | None,
    detail: str | None,
    count: int = 1,
) -> bool:
    """Put ``address`` on the list, or bump its row; True when it was not listed before."""
    row = c.execute(
        "SELECT reason, first_seen, last_seen FROM suppressions WHERE address = ?", (address,)
    ).fetchone()
    stamp = ts(at)
    if row is None:
        c.execute(
            f"INSERT INTO suppressions ({_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?)",
            (address, reason, source, stamp, stamp, count, campaign_id, member_id, detail),
        )
        return True
    stronger = REASON_RANK[reason] > REASON_RANK[str(row[0])]
    c.execute(
        "UPDATE suppressions SET count = count + 1, last_seen = max(last_seen, ?), "
        "first_seen = min(first_seen, ?), "
        "reason = CASE WHEN ? THEN ? ELSE reason END, "
        "source = CASE WHEN ? THEN ? ELSE source END, "
        "detail = CASE WHEN ? THEN ? ELSE detail END, "
        "campaign_id = coalesce(campaign_id, ?), member_id = coalesce(member_id, ?) "
        "WHERE address = ?",
        (
            stamp,
            stamp,
            stronger,
            reason,
            stronger,
            source,
            stronger,
            detail,
            campaign_id,
            member_id,
            address,
        ),
    )
    return False


def _insert_event(
    c: sqlite3.Connection,
    ev: HygieneEvent,
    key: str,
    address: str,
    now: datetime,
    cleared: int = 0,
) -> bool:
    """Record ``ev`` under ``key`` unless that key is taken; True when it was recorded."""
    return bool(
        c.execute(
            "INSERT OR IGNORE INTO hygiene_events (event_key, kind, address, at, recorded_at, "
            "source, campaign_id, member_id, status, detail, cleared) "
            "VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            (
                key,
                ev.kind,
                address,
                ts(ev.at),
                ts(now),
                ev.source,
                ev.campaign_id,
                ev.member_id,
                ev.status,
                ev.detail,
                cleared,
            ),
        ).rowcount
    )


def _condemn(
    c: sqlite3.Connection,
    ev: HygieneEvent,
    address: str,
    soft_threshold: int,
    soft_window: timedelta,
) -> bool:
    count = 1
    if ev.kind == "soft_bounce":
        rows = c.execute(
            "SELECT at FROM hygiene_events WHERE address = ? AND kind = 'soft_bounce' "
            "AND cleared = 0",
            (address,),
        ).fetchall()
        count = _most_within((str(at) for (at,) in rows), soft_window)
        listed = c.execute("SELECT 1 FROM suppressions WHERE address = ?", (address,)).fetchone()
        if count < soft_threshold and listed is None:
            return False
    return list_address(
        c,
        address,
        ev.kind,
        ev.source,
        ev.at,
        campaign_id=ev.campaign_id,
        member_id=ev.member_id,
        detail=ev.detail or ev.status,
        count=count,
    )


def record_events(c, events, *, soft_threshold, soft_window, now):
    """``Ledger.record_events``'s body as it was: (recorded, repeated, new, by_kind, unverified)."""
    keyed = [(ev, normalize_address(ev.address)) for ev in events]
    recorded = repeated = unverified = 0
    new: list[str] = []
    by_kind: dict[str, int] = {}
    for ev, address in keyed:
        if not _insert_event(c, ev, ev.key, address, now, 0 if ev.verified else UNVERIFIED):
            repeated += 1
            continue
        recorded += 1
        if not ev.verified:
            unverified += 1
            continue
        by_kind[ev.kind] = by_kind.get(ev.kind, 0) + 1
        if _condemn(c, ev, address, soft_threshold, soft_window):
            new.append(address)
    return recorded, repeated, tuple(new), by_kind, unverified


def confirm_events(c, keys, *, soft_threshold, soft_window):
    """``Ledger.confirm_events``'s loop as it was, over keys already found: the new listings."""
    new: list[str] = []
    for key in keys:
        c.execute(
            "UPDATE hygiene_events SET cleared = 0, detail = "
            "trim(coalesce(detail, '') || ' (確認済み)') WHERE event_key = ?",
            (key,),
        )
        row = _event_row(c, key)
        ev = HygieneEvent(
            key,
            row["kind"],
            row["address"],
            row["at"],
            row["source"],
            row["campaign_id"],
            row["member_id"],
            row["status"],
            row["detail"],
        )
        if _condemn(c, ev, row["address"], soft_threshold, soft_window):
            new.append(row["address"])
    return tuple(new)
