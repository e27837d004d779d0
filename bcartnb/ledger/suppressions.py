"""The suppression list: addresses that must not be mailed again, and why.

B-Cart caps each month's mail because bulk mail to dead addresses hurts every shop's
deliverability, and a refused mail still counts; 特定電子メール法 requires honouring every
opt-out, and Gmail and Yahoo want a one-click unsubscribe honoured within two days. So an
address lands here from a bounce, a complaint, an unsubscribe or the shop's own hand, and
from then on the audience holds it back (reason ``suppressed``, 配信停止・不達) and a
campaign already under way withholds it (journal state ``withheld``).

How an address gets here::

    hygiene event (bounce / unsubscribe / complaint, keyed by the mail it is about)
        │ seen before (same key)? ──► nothing changes: a second scan is a no-op
        │ unverified (tied to no mail of ours)? ──► kept, lists nobody until confirmed
        ▼
    hard_bounce, unsubscribed, complaint, manual ──► suppressed at once
    soft_bounce ──► counted; suppressed once ``threshold`` of them fall within ``window``

Addresses compare ignoring case (stored lower-cased, trimmed like the member file's). An
address already on the list keeps its first reason unless a stronger one arrives
(:data:`REASON_RANK`: the member's own word outranks a bounce, a bounce outranks the shop's
manual entry). ``unsuppress`` takes an address off and clears the soft bounces counted so
far, so it starts afresh.

The list and its rules live here; recording the events behind it (and the soft-bounce window,
the unverified notices, the unsubscribe requests) in :mod:`~bcartnb.ledger.events`; what was
written back to B-Cart in :mod:`~bcartnb.ledger.pushes`.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Literal

from bcartnb.address_key import normalize_address
from bcartnb.exceptions import HygieneError
from bcartnb.ledger.database import Database, dt, ts
from bcartnb.ledger.lifecycle import HANDED_OVER, DeliveryResult, transition
from bcartnb.ledger.schema import SUPPRESSION_REASONS

# HANDED_OVER is lifecycle's, named here too for the hygiene scan that imports it from here.
__all__ = [
    "HANDED_OVER",
    "REASON_LABELS",
    "REASON_RANK",
    "HygieneEvent",
    "Listings",
    "Suppression",
    "Suppressions",
    "UnsubscribeState",
    "event_id",
    "normalize_address",
]

#: 配信停止の理由, as the screens and the report say it.
REASON_LABELS: Final[Mapping[str, str]] = {
    "hard_bounce": "不達（恒久的なエラー）",
    "soft_bounce": "不達（一時的なエラーの繰り返し）",
    "unsubscribed": "配信停止の申し出",
    "complaint": "迷惑メールの報告",
    "manual": "手動で停止",
}
#: A stronger reason replaces a weaker one on an address already listed.
REASON_RANK: Final[Mapping[str, int]] = {
    "manual": 0,
    "soft_bounce": 1,
    "hard_bounce": 2,
    "unsubscribed": 3,
    "complaint": 4,
}


@dataclass(frozen=True)
class Suppression:
    """One address on the list: why, from where, since when, how often, and whose it was."""

    address: str
    reason: str
    source: str
    since: datetime
    last_seen: datetime
    count: int
    campaign_id: str | None
    member_id: int | None
    detail: str | None

    @property
    def label(self) -> str:
        """The reason in Japanese."""
        return REASON_LABELS[self.reason]

    def to_dict(self) -> dict[str, Any]:
        """The contract's JSON keys (``address``, ``reason``, ``since``, ``count``,
        ``campaign_id``, ``member_id``), then ``source`` and ``last_seen``."""
        return {
            "address": self.address,
            "reason": self.reason,
            "since": self.since.isoformat(),
            "count": self.count,
            "campaign_id": self.campaign_id,
            "member_id": self.member_id,
            "source": self.source,
            "last_seen": self.last_seen.isoformat(),
        }


@dataclass(frozen=True)
class HygieneEvent:
    """A bounce, unsubscribe or complaint, as a scan or the unsubscribe server saw it.

    ``key`` names the event where it came from (the report's Message-ID and the recipient, a
    token and its campaign), so recording it twice is recognised and changes nothing.
    ``status`` is the DSN status code (``5.1.1``), when there is one. An event that is not
    ``verified`` (tied to no mail of ours) is kept but lists nobody until confirmed.
    """

    key: str
    kind: str
    address: str
    at: datetime
    source: str
    campaign_id: str | None = None
    member_id: int | None = None
    status: str | None = None
    detail: str | None = None
    verified: bool = True


#: Where an address stands for an unsubscribe (:meth:`~bcartnb.ledger.Ledger.unsubscribe_state`).
UnsubscribeState = Literal["not_listed", "listed", "unsuppressed"]


def event_id(key: str) -> str:
    """The short id the screens show for an event: the first hex characters of its key."""
    return key.rpartition(":")[2][:12]


_COLUMNS = "address, reason, source, first_seen, last_seen, count, campaign_id, member_id, detail"


def _row(row: Iterable[Any]) -> Suppression:
    a, r, s, f, last, n, cid, mid, d = row
    first, seen = dt(f), dt(last)
    assert first is not None and seen is not None
    return Suppression(
        str(a),
        str(r),
        str(s),
        first,
        seen,
        int(n),
        None if cid is None else str(cid),
        None if mid is None else int(mid),
        None if d is None else str(d),
    )


def check_reason(reason: str) -> None:
    if reason not in SUPPRESSION_REASONS:
        raise HygieneError(
            f"unknown suppression reason {reason!r}; one of {', '.join(SUPPRESSION_REASONS)}",
            ja=f"配信停止の理由 {reason!r} は使えません（{', '.join(SUPPRESSION_REASONS)}"
            " のどれか）",
        )


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
    listings = Listings(c, [address])
    new = listings.add(
        address,
        reason,
        source,
        at,
        campaign_id=campaign_id,
        member_id=member_id,
        detail=detail,
        count=count,
    )
    listings.write()
    return new


_LIST = f"INSERT INTO suppressions ({_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?)"
_BUMP = (
    "UPDATE suppressions SET count = count + 1, last_seen = max(last_seen, ?), "
    "first_seen = min(first_seen, ?), "
    "reason = CASE WHEN ? THEN ? ELSE reason END, "
    "source = CASE WHEN ? THEN ? ELSE source END, "
    "detail = CASE WHEN ? THEN ? ELSE detail END, "
    "campaign_id = coalesce(campaign_id, ?), member_id = coalesce(member_id, ?) "
    "WHERE address = ?"
)
_CHUNK = 500  # SQL variables a statement, far below any SQLite's limit


class Listings:
    """Many :func:`list_address` calls in one transaction, each deciding as it would have,
    with the list's rows read in one query and written with two ``executemany``.

    Each address's reason is followed here as the calls go, so a later call sees what an
    earlier one listed; the new rows are written before the bumps, which keeps each
    address's own order (its one insert comes first) and rows of different addresses never
    meet. Nothing is written until :meth:`write`, inside the caller's transaction.
    """

    def __init__(self, c: sqlite3.Connection, addresses: Iterable[str]) -> None:
        self._c = c
        self._reasons: dict[str, str] = {}
        wanted = sorted(set(addresses))
        for at in range(0, len(wanted), _CHUNK):
            chunk = wanted[at : at + _CHUNK]
            marks = ",".join("?" * len(chunk))
            rows = c.execute(
                f"SELECT address, reason FROM suppressions WHERE address IN ({marks})", chunk
            )
            self._reasons.update((str(a), str(r)) for a, r in rows)
        self._new: list[tuple[Any, ...]] = []
        self._bumps: list[tuple[Any, ...]] = []

    def __contains__(self, address: object) -> bool:
        """Whether ``address`` is listed, counting the calls so far (it must have been
        among the addresses given)."""
        return address in self._reasons

    def add(
        self,
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
        """List ``address`` or bump its row (see :func:`list_address`); True when new."""
        stamp = ts(at)
        before = self._reasons.get(address)
        if before is None:
            self._new.append(
                (address, reason, source, stamp, stamp, count, campaign_id, member_id, detail)
            )
            self._reasons[address] = reason
            return True
        stronger = REASON_RANK[reason] > REASON_RANK[before]
        self._bumps.append(
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
            )
        )
        if stronger:
            self._reasons[address] = reason
        return False

    def write(self) -> None:
        """Write what :meth:`add` decided, the new rows first."""
        self._c.executemany(_LIST, self._new)
        self._c.executemany(_BUMP, self._bumps)
        self._new, self._bumps = [], []


def withhold_listed(
    c: sqlite3.Connection,
    campaign_id: str,
    now: datetime,
    member_ids: Sequence[int] | None = None,
) -> tuple[int, ...]:
    """Withhold the campaign's mails whose address is listed; their member ids.

    ``member_ids``: only these rows (the ones about to be handed over, whatever state their
    caller saw them in); else every row not yet sent. For a hand-over this is a primary-key
    probe per row in each table, inside its write transaction: cheaper than asking whether
    the list changed (``PRAGMA data_version`` costs as much and would still need this probe
    when it moved), and no commit can fall between the check and the hand-over.
    """
    args: tuple[int, ...] = () if member_ids is None else tuple(member_ids)
    which = (
        "AND d.state IN ('pending', 'deferred', 'uncertain')"
        if member_ids is None
        else f"AND d.member_id IN ({', '.join('?' * len(args))})"
    )
    rows = [
        DeliveryResult(int(m), "withheld", None, f"suppressed: {r}")
        for m, r in c.execute(
            "SELECT d.member_id, s.reason FROM deliveries d JOIN suppressions s "
            f"ON s.address = lower(d.address) WHERE d.campaign_id = ? {which}",
            (campaign_id, *args),
        )
    ]
    transition(c, campaign_id, "withheld", rows, now=now)
    return tuple(r.member_id for r in rows)


class Suppressions(Database):
    """The ledger's suppression list: list an address, take it off, read it, honour it."""

    def suppress(
        self,
        address: str,
        reason: str = "manual",
        *,
        source: str = "manual",
        campaign_id: str | None = None,
        member_id: int | None = None,
        detail: str | None = None,
        now: datetime | None = None,
    ) -> bool:
        """List ``address`` at once; True when it was not listed before.

        For the shop's own hand (``bcartnb suppress``) and callers that decide on their own;
        a bounce or an unsubscribe goes through :meth:`~bcartnb.ledger.Ledger.record_events`,
        which remembers the event so it is never counted twice.
        """
        key = normalize_address(address)
        check_reason(reason)
        now = self._now(now)
        with self._write() as c:
            return list_address(
                c,
                key,
                reason,
                source,
                now,
                campaign_id=campaign_id,
                member_id=member_id,
                detail=detail,
            )

    def unsuppress(self, address: str, *, now: datetime | None = None) -> bool:
        """Take ``address`` off the list; True when it was listed.

        Its soft bounces so far are cleared too, so a single new one does not list it again,
        and so are the B-Cart pushes its listing made: listed again, it is pushed again.
        """
        key = normalize_address(address)
        with self._write() as c:
            gone = c.execute("DELETE FROM suppressions WHERE address = ?", (key,)).rowcount
            c.execute("UPDATE hygiene_events SET cleared = 1 WHERE address = ?", (key,))
            c.execute("DELETE FROM bcart_pushes WHERE address = ?", (key,))
        return bool(gone)

    def suppressions(self) -> list[Suppression]:
        """The whole list, newest first."""
        with self._read() as c:
            rows = c.execute(
                f"SELECT {_COLUMNS} FROM suppressions ORDER BY last_seen DESC, address"
            ).fetchall()
        return [_row(r) for r in rows]

    def suppression(self, address: str) -> Suppression | None:
        """The list's row for ``address`` (compared ignoring case), or None."""
        key = normalize_address(address)
        with self._read() as c:
            row = c.execute(
                f"SELECT {_COLUMNS} FROM suppressions WHERE address = ?", (key,)
            ).fetchone()
        return None if row is None else _row(row)

    def suppressed_addresses(self) -> frozenset[str]:
        """Every listed address, lower-cased: what the audience holds back."""
        with self._read() as c:
            return frozenset(str(a) for (a,) in c.execute("SELECT address FROM suppressions"))

    def withhold_suppressed(self, campaign_id: str, *, now: datetime | None = None) -> int:
        """Withhold the campaign's mails not yet sent whose address was listed since it began.

        Called before each round of a send, so an unsubscribe that arrives while a campaign
        is unfinished (or retrying a greylisted address) is honoured by its resume.
        """
        now = self._now(now)
        with self._write() as c:
            self._status(c, campaign_id)
            return len(withhold_listed(c, campaign_id, now))
