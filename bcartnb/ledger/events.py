"""Hygiene events: every bounce, complaint and unsubscribe seen, once, and what it lists.

An event is keyed by the mail it is about (:class:`~bcartnb.ledger.suppressions.HygieneEvent`),
so a second scan records nothing new. A hard bounce, a complaint or an unsubscribe lists its
address at once; soft bounces list it once enough of them fall within one window, whatever
order they arrive in. A notice tied to no mail of ours is kept unverified until the marketer
confirms it. The unsubscribe server's requests are recorded here too, and so is what a scan
needs to match a notice to the mail it is about (the journal's address for a mail).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

from bcartnb.exceptions import HygieneError
from bcartnb.ledger.database import Database, dt, ts
from bcartnb.ledger.lifecycle import HANDED_OVER
from bcartnb.ledger.suppressions import (
    REASON_RANK,
    HygieneEvent,
    Listings,
    UnsubscribeState,
    check_reason,
    event_id,
    list_address,
    normalize_address,
)

__all__ = ["UNVERIFIED", "ConfirmOutcome", "HygieneEvents", "RecordOutcome"]

#: ``hygiene_events.cleared`` of a notice tied to no mail of ours (no Message-ID, no VERP):
#: kept, counted nowhere, until the marketer confirms it (0 = counts, 1 = cleared by
#: ``unsuppress``). A value of an existing column, so no schema change is needed.
UNVERIFIED: Final = 2


@dataclass(frozen=True)
class RecordOutcome:
    """What recording a batch of events did: new ones, repeats, and addresses newly listed."""

    recorded: int
    repeated: int
    suppressed_new: tuple[str, ...]
    by_kind: Mapping[str, int]
    unverified: int = 0


@dataclass(frozen=True)
class ConfirmOutcome:
    """What confirming unverified notices did: the events now counted, the addresses listed."""

    confirmed: tuple[dict[str, Any], ...]
    suppressed_new: tuple[str, ...]


_EVENT_KEYS = (
    "event_key",
    "kind",
    "address",
    "at",
    "recorded_at",
    "source",
    "campaign_id",
    "member_id",
    "status",
    "detail",
)
_EVENT_COLUMNS = ", ".join(_EVENT_KEYS)
_MIN_ID_CHARS = 8


def _event_dict(row: Iterable[Any]) -> dict[str, Any]:
    out = dict(zip(_EVENT_KEYS, row, strict=True))
    out["at"], out["recorded_at"] = dt(out["at"]), dt(out["recorded_at"])
    return out


def _event_row(c: sqlite3.Connection, key: str) -> dict[str, Any]:
    row = c.execute(
        f"SELECT {_EVENT_COLUMNS} FROM hygiene_events WHERE event_key = ?", (key,)
    ).fetchone()
    return _event_dict(row)


_INSERT_EVENT = (
    "INSERT OR IGNORE INTO hygiene_events (event_key, kind, address, at, recorded_at, "
    "source, campaign_id, member_id, status, detail, cleared) VALUES (?,?,?,?,?,?,?,?,?,?,?)"
)
_CHUNK = 500  # SQL variables a statement, far below any SQLite's limit


def _event_values(
    ev: HygieneEvent, address: str, recorded_at: str, cleared: int, key: str | None = None
) -> tuple[Any, ...]:
    return (
        ev.key if key is None else key,
        ev.kind,
        address,
        ts(ev.at),
        recorded_at,
        ev.source,
        ev.campaign_id,
        ev.member_id,
        ev.status,
        ev.detail,
        cleared,
    )


def _insert_event(
    c: sqlite3.Connection,
    ev: HygieneEvent,
    key: str,
    address: str,
    now: datetime,
    cleared: int = 0,
) -> bool:
    """Record ``ev`` under ``key`` unless that key is taken; True when it was recorded."""
    values = _event_values(ev, address, ts(now), cleared, key)
    return bool(c.execute(_INSERT_EVENT, values).rowcount)


def _in_chunks(c: sqlite3.Connection, sql: str, values: list[str]) -> Iterable[tuple[Any, ...]]:
    """``sql``'s rows for every chunk of ``values`` (its ``IN ({})`` filled for each)."""
    for at in range(0, len(values), _CHUNK):
        chunk = values[at : at + _CHUNK]
        yield from c.execute(sql.format(",".join("?" * len(chunk))), chunk)


def _taken_keys(c: sqlite3.Connection, keys: list[str]) -> set[str]:
    """Which of ``keys`` were recorded before: one query a few hundred keys."""
    sql = "SELECT event_key FROM hygiene_events WHERE event_key IN ({})"
    return {str(k) for (k,) in _in_chunks(c, sql, sorted(set(keys)))}


def _soft_stamps(c: sqlite3.Connection, addresses: set[str]) -> dict[str, list[str]]:
    """Each address's counted soft bounces so far, as :func:`_most_within` reads them."""
    out: dict[str, list[str]] = {a: [] for a in addresses}
    sql = (
        "SELECT address, at FROM hygiene_events WHERE kind = 'soft_bounce' AND cleared = 0 "
        "AND address IN ({})"
    )
    for address, at in _in_chunks(c, sql, sorted(addresses)):
        out[str(address)].append(str(at))
    return out


def _pending_keys(c: sqlite3.Connection, wanted: list[str]) -> list[str]:
    """The unverified events each of ``wanted`` names (an id prefix or an address)."""
    pending = [
        (str(k), str(a))
        for k, a in c.execute(
            "SELECT event_key, address FROM hygiene_events WHERE cleared = ? ORDER BY at",
            (UNVERIFIED,),
        )
    ]
    keys: list[str] = []
    for item in wanted:
        if "@" in item:
            address = normalize_address(item)
            hits = [k for k, a in pending if a == address]
        else:
            needle = item.lower()
            hits = (
                [k for k, _ in pending if event_id(k).startswith(needle)]
                if len(needle) >= _MIN_ID_CHARS
                else []
            )
            if len(hits) > 1:
                raise HygieneError(
                    f"id {item!r} names {len(hits)} notices: give more of it",
                    ja=f"ID {item[:20]} に当てはまる通知が {len(hits)} 件あります。"
                    "もっと長く指定してください",
                )
        if not hits:
            raise HygieneError(
                f"no unverified notice for {item[:80]!r} (ids have at least "
                f"{_MIN_ID_CHARS} characters; see bcartnb bounces unverified)",
                ja=f"確認待ちの通知 {item[:80]!r} が見つかりません（IDは {_MIN_ID_CHARS} 文字以上。"
                "bcartnb bounces unverified で一覧できます）",
            )
        keys += [k for k in hits if k not in keys]
    return keys


def _most_within(stamps: Iterable[str], window: timedelta) -> int:
    """The most of ``stamps`` that fall in one ``window`` (``(t - window, t]``)."""
    times = sorted(datetime.fromisoformat(s) for s in stamps)
    best = start = 0
    for end, t in enumerate(times):
        while times[start] <= t - window:
            start += 1
        best = max(best, end - start + 1)
    return best


def _condemn(
    listings: Listings,
    soft: dict[str, list[str]],
    ev: HygieneEvent,
    address: str,
    soft_threshold: int,
    soft_window: timedelta,
) -> bool:
    """List ``address`` for a counted event if its kind condemns it; True when newly listed.

    A soft bounce condemns only at ``soft_threshold`` within some ``soft_window`` (or an
    address already listed, whose row it bumps), whatever order the notices arrive or are
    confirmed in: a late scan decides as a timely one would have. ``soft`` holds each soft
    address's counted bounces; this one is added to it, as recording it would have.
    """
    count = 1
    if ev.kind == "soft_bounce":
        stamps = soft.setdefault(address, [])
        stamps.append(ts(ev.at))
        count = _most_within(stamps, soft_window)
        if count < soft_threshold and address not in listings:
            return False
    return listings.add(
        address,
        ev.kind,
        ev.source,
        ev.at,
        campaign_id=ev.campaign_id,
        member_id=ev.member_id,
        detail=ev.detail or ev.status,
        count=count,
    )


class HygieneEvents(Database):
    """The hygiene events behind the list, the unsubscribe requests and a notice's match."""

    def record_events(
        self,
        events: Iterable[HygieneEvent],
        *,
        soft_threshold: int = 3,
        soft_window: timedelta = timedelta(days=30),
        now: datetime | None = None,
    ) -> RecordOutcome:
        """Record hygiene events in one transaction and list the addresses they condemn.

        An event whose key was recorded before changes nothing. ``soft_threshold`` soft
        bounces for one address whose times fall within ``soft_window`` of the newest list it
        (listmonk's defaults: 3 within 30 days).
        """
        if soft_threshold < 1:
            raise HygieneError(
                f"soft bounce threshold must be at least 1, not {soft_threshold}",
                ja="一時的な不達の回数のしきい値は 1 以上にしてください",
            )
        batch = list(events)
        for ev in batch:
            check_reason(ev.kind)
        keyed = [(ev, normalize_address(ev.address)) for ev in batch]
        now = self._now(now)
        with self._write() as c:
            taken = _taken_keys(c, [ev.key for ev, _ in keyed])
            fresh: list[tuple[HygieneEvent, str]] = []
            for ev, address in keyed:
                if ev.key not in taken:
                    taken.add(ev.key)  # a key twice in the batch counts once, as before
                    fresh.append((ev, address))
            counted = [(ev, address) for ev, address in fresh if ev.verified]
            soft = _soft_stamps(c, {a for ev, a in counted if ev.kind == "soft_bounce"})
            stamp = ts(now)
            c.executemany(
                _INSERT_EVENT,
                [_event_values(ev, a, stamp, 0 if ev.verified else UNVERIFIED) for ev, a in fresh],
            )
            listings = Listings(c, (a for _, a in counted))
            new = [
                address
                for ev, address in counted
                if _condemn(listings, soft, ev, address, soft_threshold, soft_window)
            ]
            listings.write()
        by_kind: dict[str, int] = {}
        for ev, _ in counted:
            by_kind[ev.kind] = by_kind.get(ev.kind, 0) + 1
        unverified = len(fresh) - len(counted)
        return RecordOutcome(len(fresh), len(keyed) - len(fresh), tuple(new), by_kind, unverified)

    def unverified_events(self) -> list[dict[str, Any]]:
        """The notices waiting for the marketer's word (:meth:`confirm_events`), oldest first."""
        return self._events("WHERE cleared = ?", (UNVERIFIED,))

    def confirm_events(
        self,
        which: Iterable[str],
        *,
        soft_threshold: int = 3,
        soft_window: timedelta = timedelta(days=30),
        now: datetime | None = None,
    ) -> ConfirmOutcome:
        """Count unverified notices as the marketer confirms them, and list what they condemn.

        ``which`` holds event ids (the key's hex, or its first 8 or more characters) or
        addresses (every unverified notice for it). Something that names no unverified notice,
        or an id that names two, is refused before anything changes.
        """
        wanted = [w.strip() for w in which if w.strip()]
        if not wanted:
            raise HygieneError(
                "name the notices to confirm: an id from the scan or an address",
                ja="確認する通知の ID かメールアドレスを指定してください",
            )
        new: list[str] = []
        done: list[dict[str, Any]] = []
        with self._write() as c:
            keys = _pending_keys(c, wanted)
            addresses = {str(_event_row(c, key)["address"]) for key in keys}
            soft = _soft_stamps(c, addresses)  # before any is confirmed: each adds its own
            listings = Listings(c, addresses)
            for key in keys:
                c.execute(
                    "UPDATE hygiene_events SET cleared = 0, detail = "
                    "trim(coalesce(detail, '') || ' (確認済み)') WHERE event_key = ?",
                    (key,),
                )
                row = _event_row(c, key)
                done.append(row)
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
                if _condemn(listings, soft, ev, row["address"], soft_threshold, soft_window):
                    new.append(row["address"])
            listings.write()
        return ConfirmOutcome(tuple(done), tuple(new))

    def hygiene_events(self, since: datetime | None = None) -> list[dict[str, Any]]:
        """The events that count (bounces, complaints, unsubscribes), oldest first: the
        report's. Unverified notices are left out (:meth:`unverified_events`).

        ``since`` keeps those that happened (``at``) at or after it.
        """
        if since is None:
            return self._events("WHERE cleared != ?", (UNVERIFIED,))
        return self._events("WHERE cleared != ? AND at >= ?", (UNVERIFIED, ts(since)))

    def _events(self, where: str, args: tuple[Any, ...]) -> list[dict[str, Any]]:
        with self._read() as c:
            rows = c.execute(
                f"SELECT {_EVENT_COLUMNS} FROM hygiene_events {where} ORDER BY at, event_key",
                args,
            ).fetchall()
        return [_event_dict(row) for row in rows]

    def unsubscribe_state(self, address: str) -> UnsubscribeState:
        """Where ``address`` stands for a member asking to stop: what the page says.

        ``listed``: on the list for the member's own wish or a stronger one (unsubscribed, a
        complaint); ``unsuppressed``: it was, and the shop took it off since (``bcartnb
        unsuppress``); ``not_listed``: neither (an address listed only for a bounce or by
        hand counts here: the member's own request is not recorded yet).
        """
        key = normalize_address(address)
        with self._read() as c:
            return self._unsubscribe_state(c, key)

    def record_unsubscribe(
        self, event: HygieneEvent, *, now: datetime | None = None
    ) -> UnsubscribeState:
        """Honour a member's unsubscribe request; the state the address was in before it.

        ``listed``: nothing changes (a repeat, or a second request at the same moment).
        Otherwise the event is recorded and the address listed (reason ``unsubscribed``),
        in one transaction. A request after ``unsuppress`` is the member asking again: its
        token's event key was recorded (and cleared) before, so it is recorded under the
        next free ``<key>#<n>``, never dropped as a repeat.
        """
        check_reason(event.kind)
        address = normalize_address(event.address)
        now = self._now(now)
        with self._write() as c:
            state = self._unsubscribe_state(c, address)
            if state == "listed":
                return state
            taken = c.execute(
                "SELECT count(*) FROM hygiene_events WHERE event_key = ? "
                "OR (event_key > ? AND event_key < ?)",
                (event.key, event.key + "#", event.key + "$"),  # "$" sorts right after "#"
            ).fetchone()[0]
            n = int(taken)
            while True:  # the next free key: ends, as the keys taken are finite
                n += 1
                key = event.key if n == 1 else f"{event.key}#{n}"
                if _insert_event(c, event, key, address, now):
                    break
            list_address(
                c,
                address,
                event.kind,
                event.source,
                event.at,
                campaign_id=event.campaign_id,
                member_id=event.member_id,
                detail=event.detail,
            )
        return state

    def _unsubscribe_state(self, c: sqlite3.Connection, address: str) -> UnsubscribeState:
        row = c.execute("SELECT reason FROM suppressions WHERE address = ?", (address,)).fetchone()
        if row is not None and REASON_RANK[str(row[0])] >= REASON_RANK["unsubscribed"]:
            return "listed"
        again = c.execute(
            "SELECT 1 FROM hygiene_events WHERE address = ? AND kind = 'unsubscribed' "
            "AND cleared = 1 LIMIT 1",
            (address,),
        ).fetchone()
        return "not_listed" if again is None else "unsuppressed"

    def delivery(self, campaign_id: str, member_id: int) -> tuple[str, str] | None:
        """(address, journal state) of a campaign's mail to ``member_id``: a notice's match."""
        with self._read() as c:
            row = c.execute(
                "SELECT address, state FROM deliveries WHERE campaign_id = ? AND member_id = ?",
                (campaign_id, int(member_id)),
            ).fetchone()
        return None if row is None else (str(row[0]), str(row[1]))

    def deliveries_of(
        self, mails: Iterable[tuple[str, int]]
    ) -> dict[tuple[str, int], tuple[str, str]]:
        """:meth:`delivery` of many mails at once: (campaign id, member id) → (address,
        journal state), for those the journal holds. A few hundred mails a query."""
        by_campaign: dict[str, set[int]] = {}
        for campaign_id, member_id in mails:
            by_campaign.setdefault(campaign_id, set()).add(int(member_id))
        out: dict[tuple[str, int], tuple[str, str]] = {}
        sql = (
            "SELECT member_id, address, state FROM deliveries WHERE campaign_id = ? "
            "AND member_id IN ({})"
        )
        with self._read() as c:
            for campaign_id, members in by_campaign.items():
                wanted = sorted(members)
                for at in range(0, len(wanted), _CHUNK):
                    chunk = wanted[at : at + _CHUNK]
                    rows = c.execute(sql.format(",".join("?" * len(chunk))), (campaign_id, *chunk))
                    for member_id, address, state in rows:
                        out[(campaign_id, int(member_id))] = (str(address), str(state))
        return out

    def delivery_address(self, campaign_id: str, member_id: int) -> str | None:
        """The address a campaign's mail to ``member_id`` went to: a bounce's match."""
        with self._read() as c:
            row = c.execute(
                "SELECT address FROM deliveries WHERE campaign_id = ? AND member_id = ?",
                (campaign_id, int(member_id)),
            ).fetchone()
        return None if row is None else str(row[0])

    def campaign_ids(self) -> list[str]:
        """Every campaign's id, oldest first as :meth:`campaigns` lists them: what a notice's
        Message-ID is matched against, without building the send history's DataFrame."""
        with self._read() as c:
            rows = c.execute("SELECT campaign_id FROM campaigns ORDER BY created_at, campaign_id")
            return [str(r[0]) for r in rows]

    def member_ids(self, campaign_id: str) -> list[int]:
        """The members of a campaign's journal in member id order (:meth:`deliveries`'s rows)."""
        with self._read() as c:
            rows = c.execute(
                "SELECT member_id FROM deliveries WHERE campaign_id = ? ORDER BY member_id",
                (campaign_id,),
            )
            return [int(r[0]) for r in rows]

    def last_deliveries(self, addresses: Iterable[str]) -> dict[str, tuple[str, int]]:
        """Address (lower-cased) → (campaign id, member id) of the latest mail sent to it.

        A bounce or an unsubscribe that quotes no mail of ours is still some member's: this
        names the member, so the B-Cart export finds the 会員ID. One pass over the journal
        for the whole batch (it has no index by address, and needs none elsewhere).
        """
        wanted = sorted({a.strip().lower() for a in addresses})
        out: dict[str, tuple[str, int]] = {}
        if not wanted:
            return out
        with self._read() as c:
            c.execute("CREATE TEMP TABLE IF NOT EXISTS wanted_addresses (address TEXT PRIMARY KEY)")
            c.execute("DELETE FROM wanted_addresses")
            c.executemany(
                "INSERT OR IGNORE INTO wanted_addresses VALUES (?)", [(a,) for a in wanted]
            )
            rows = c.execute(
                "SELECT lower(d.address), d.campaign_id, d.member_id FROM deliveries d "
                "JOIN wanted_addresses w ON w.address = lower(d.address) "
                f"WHERE d.state IN {HANDED_OVER!r} "
                "ORDER BY coalesce(d.sending_at, ''), d.campaign_id"
            ).fetchall()
            c.execute("DELETE FROM wanted_addresses")
        for address, cid, mid in rows:
            out[str(address)] = (str(cid), int(mid))  # the latest wins
        return out
