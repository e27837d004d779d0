"""The ledger's lifecycle: the campaign and mail state tables and the one way each changes.

Every other ledger module changes a campaign's status through :func:`set_status` and a
journal row's state through :func:`transition`; each refuses (changing nothing) a move its
table does not allow. This module imports nothing of the ledger but the file's helpers, so
every other module may import it.

A campaign (:data:`CAMPAIGN_TRANSITIONS`)::

    (claim) ──► sending ──run ends, mails left (pending, deferred, uncertain)──► unfinished
                 │  │ ▲                         or its owner died (reclaim)        │  │
                 │  │ └───────────── claim: a run --send or resume takes it over ─┘  │
                 │  └──run ends, nothing left──► done                                │
                 └──run refused (quota, compose) before any mail was handed over──► cancelled
                                                    bcartnb cancel (nothing more) ◄──┘

A mail, one journal row per (campaign, member) (:data:`TRANSITIONS`)::

                  hand-over (counts 1)             2xx after the data
    pending ────────────────────────► sending ─────────────────────► sent
       ▲                              │ │ │ │      5xx
       │ never started (refund)       │ │ │ └──────────────────────► failed
       └──────────────────────────────┘ │ │        4xx, or a drop before the data
                                        │ └────────────────────────► deferred ──┐
      retry (counts nothing) ┌──────────┼──────────────────────────────────────┘
                             ▼          │ lost after the data, or its run died
                          sending       └──────────────────────────► uncertain
    uncertain ──deliberate resend (counts 1 again)──► sending

    pending | deferred | uncertain ──address suppressed since (counts nothing)──► withheld
    pending | deferred | uncertain ──the marketer ends it (bcartnb.ledger.finish)──► cancelled
    deferred ──the marketer gives up──► failed;   uncertain ──checked: it arrived──► sent

The marketer's word on a campaign that will not finish by itself
(:mod:`~bcartnb.ledger.finish`)::

    bcartnb cancel ID                 pending | deferred ──► cancelled   campaign ──► cancelled
    resume --give-up-deferred         deferred ──────────► failed      (listed with the reply)
    resume --mark-uncertain-sent      uncertain ─────────► sent        (checked: it arrived)
    resume --drop-uncertain           uncertain ─────────► cancelled   (checked: not resent)
    resume --skip-missing             pending | deferred ──► cancelled  (gone from the file)

A mail counts in the quota once, when it is first handed to the server (``pending`` →
``sending``), whatever happens after (accepted, refused, retried after a 4xx); only a
deliberate resend of an ``uncertain`` mail counts again. The unit goes to ``usage`` in the
Asia/Tokyo month of that hand-over (:func:`count`). A transaction that provably never started
(no connection, a Ctrl-C before its first byte) goes back to the state it was handed over
from (``unsent``), and its unit, if it took one, is refunded.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Final, NamedTuple

from bcartnb.ledger.database import ts
from bcartnb.ledger.schema import CAMPAIGN_STATUSES, DELIVERY_STATES
from bcartnb.quota import month_of

__all__ = [
    "CAMPAIGN_TRANSITIONS",
    "COUNTED_FROM",
    "HANDED_OVER",
    "LEFT_STATES",
    "RESULT_STATES",
    "TRANSITIONS",
    "DeliveryResult",
    "RowsRefused",
    "count",
    "set_status",
    "transition",
]

#: target status → the statuses a campaign may move there from (a new campaign starts sending).
CAMPAIGN_TRANSITIONS: Mapping[str, tuple[str, ...]] = {
    "sending": ("unfinished",),
    "unfinished": ("sending",),
    "done": ("sending",),
    "cancelled": ("sending", "unfinished"),
}
#: Mails still to do: a campaign with any of these is not finished.
LEFT_STATES = ("pending", "sending", "deferred", "uncertain")

#: target state → the states a row may move there from. ``unsent`` is not a state: it sends
#: a row back to the state it was handed over from.
TRANSITIONS: Mapping[str, tuple[str, ...]] = {
    "sending": ("pending", "deferred", "uncertain"),
    "sent": ("sending", "uncertain"),
    "failed": ("sending", "uncertain", "deferred"),
    "deferred": ("sending", "uncertain"),
    "uncertain": ("sending",),
    "unsent": ("sending", "uncertain"),
    "withheld": ("pending", "deferred", "uncertain"),
    "cancelled": ("pending", "deferred", "uncertain"),
}
#: A hand-over from these states counts one unit (a retry of a deferred mail counts nothing).
COUNTED_FROM = ("pending", "uncertain")
#: What a send loop may report for a row it handed over.
RESULT_STATES = ("sent", "failed", "deferred", "uncertain", "unsent")
#: Journal states of a mail that may have reached the server: the only mails a bounce or a
#: complaint can be about. ``failed`` and ``deferred`` were refused by the shop's own server
#: (the journal has why), ``pending`` and ``withheld`` never left.
HANDED_OVER: Final = ("sent", "uncertain", "sending")


class DeliveryResult(NamedTuple):
    """What became of one handed-over mail.

    ``state``: ``sent`` (accepted), ``failed`` (5xx), ``deferred`` (4xx, or dropped before the
    data: retry later), ``uncertain`` (lost after the data), or ``unsent`` (the transaction
    provably never started: back to where it was, the unit refunded).
    """

    member_id: int
    state: str
    code: int | None = None
    message: str | None = None


class RowsRefused(Exception):
    """Raised inside a write transaction so it rolls back before the rows are inspected."""

    def __init__(self, ids: list[int], allowed: tuple[str, ...], action: str) -> None:
        super().__init__(action)
        self.ids = ids
        self.allowed = allowed
        self.action = action


def count(c: sqlite3.Connection, month: str, campaign_id: str, k: int) -> None:
    """Add ``k`` units (negative: a refund) to the campaign's usage in ``month``."""
    c.execute(
        "INSERT INTO usage (month, campaign_id, sends) VALUES (?, ?, ?) "
        "ON CONFLICT (month, campaign_id) DO UPDATE SET sends = sends + excluded.sends",
        (month, campaign_id, k),
    )


def set_status(
    c: sqlite3.Connection,
    campaign_id: str,
    to: str,
    now: datetime,
    *,
    only_from: Sequence[str] | None = None,
) -> bool:
    """Move a campaign to ``to``: THE way its status changes. False if it was elsewhere.

    ``only_from`` narrows the allowed sources further (a reclaim moves only ``sending``).
    """
    allowed = tuple(s for s in CAMPAIGN_TRANSITIONS[to] if only_from is None or s in only_from)
    finished = ts(now) if to in ("done", "cancelled") else None
    cur = c.execute(
        "UPDATE campaigns SET status = ?, finished_at = ?, updated_at = ? "
        f"WHERE campaign_id = ? AND status IN ({', '.join('?' * len(allowed))})",
        (to, finished, ts(now), campaign_id, *allowed),
    )
    return cur.rowcount == 1


def transition(
    c: sqlite3.Connection,
    campaign_id: str,
    to: str,
    rows: Sequence[Any] | None = None,
    *,
    now: datetime | None = None,
    frm: str | None = None,
    resend: bool = False,
) -> int:
    """Move journal rows to ``to``: THE way a row changes state; returns the units counted.

    A negative result is a refund (``unsent``).

    ``rows`` by target: ``sending``: (member id, the state the caller saw it in);
    ``sent`` / ``failed`` / ``deferred`` / ``uncertain``: :class:`DeliveryResult`;
    ``unsent``: member ids. ``rows=None`` moves every row of the campaign that is in ``frm``
    (a run ended or died: ``sending`` → ``uncertain``). Raises :class:`RowsRefused` when a
    row is not where the caller said (the transaction must then roll back).
    """
    allowed = TRANSITIONS[to]
    if rows is None:
        if frm not in allowed:
            raise ValueError(f"no transition from {frm!r} to {to!r}")
        c.execute(
            "UPDATE deliveries SET state = ? WHERE campaign_id = ? AND state = ?",
            (to, campaign_id, frm),
        )
        return 0
    if not rows:
        return 0
    assert now is not None
    stamp = ts(now)
    before = c.total_changes
    units = 0
    if to == "sending":
        month = month_of(now)
        handed = []
        for m, s in rows:
            if s not in allowed or (s == "uncertain" and not resend):
                raise RowsRefused([int(m)], ("pending", "deferred"), "hand over")
            counts = s in COUNTED_FROM
            units += counts
            handed.append((s, counts, month, stamp, campaign_id, int(m), s))
        c.executemany(
            "UPDATE deliveries SET state = 'sending', handed_from = ?, attempts = attempts + 1, "
            "counted_month = CASE WHEN ? THEN ? ELSE counted_month END, sending_at = ?, "
            "result_at = NULL WHERE campaign_id = ? AND member_id = ? AND state = ?",
            handed,
        )
        if c.total_changes - before != len(handed):
            raise RowsRefused([h[5] for h in handed], allowed, "hand over")
        if units:
            count(c, month, campaign_id, units)
        return units
    if to == "unsent":
        ids = [int(m) for m in rows]
        marks = "?" * len(ids)
        refunds: dict[str, int] = {}
        for month, n in c.execute(
            "SELECT counted_month, count(*) FROM deliveries WHERE campaign_id = ? "
            f"AND member_id IN ({', '.join(marks)}) AND state IN ('sending', 'uncertain') "
            f"AND handed_from IN {COUNTED_FROM!r} GROUP BY counted_month",
            (campaign_id, *ids),
        ):
            if month is not None:
                refunds[month] = int(n)
        c.executemany(
            "UPDATE deliveries SET state = handed_from, handed_from = NULL, "
            "attempts = attempts - 1, "
            "counted_month = CASE WHEN handed_from = 'pending' THEN NULL ELSE counted_month END, "
            "result_at = ?, message = 'not started' WHERE campaign_id = ? AND member_id = ? "
            "AND state IN ('sending', 'uncertain') AND handed_from IS NOT NULL",
            ((stamp, campaign_id, m) for m in ids),
        )
        if c.total_changes - before != len(ids):
            raise RowsRefused(ids, allowed, "return unsent mails")
        for month, n in refunds.items():
            count(c, month, campaign_id, -n)
        return -sum(refunds.values())
    results = [r if isinstance(r, DeliveryResult) else DeliveryResult(*r) for r in rows]
    if any(r.state != to for r in results):
        raise ValueError(f"every result must be {to!r}")
    c.executemany(
        _MARK[to], [(to, r.code, r.message, stamp, campaign_id, int(r.member_id)) for r in results]
    )
    if c.total_changes - before != len(results):
        raise RowsRefused([int(r.member_id) for r in results], allowed, f"mark {to}")
    return 0


#: target state → the statement that records a result there (the same text every time: the
#: connection's statement cache keeps it prepared).
_MARK: Final[Mapping[str, str]] = {
    to: "UPDATE deliveries SET state = ?, code = ?, message = ?, result_at = ? "
    "WHERE campaign_id = ? AND member_id = ? AND "
    + (f"state IN {allowed!r}" if len(allowed) > 1 else f"state = '{allowed[0]}'")
    for to, allowed in TRANSITIONS.items()
}


assert set(CAMPAIGN_TRANSITIONS) <= set(CAMPAIGN_STATUSES)
assert {s for froms in TRANSITIONS.values() for s in froms} <= set(DELIVERY_STATES)
