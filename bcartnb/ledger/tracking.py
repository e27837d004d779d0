"""Clicks and opens: each campaign's link table, the events the public server saw, the results.

Recorded idempotently: one row per campaign, member, link (0: the open image), kind and
person-or-machine, with the first and last time and a count, so a member clicking a link
ten times is one person who clicked it (count 10), and a repeated request changes a count,
never who is counted. Nothing of the requester is kept (no IP address, no User-Agent), and
rows older than ``[tracking] retention_days`` are deleted (:meth:`Tracking.purge_tracking`).

Machines are counted apart (``machine = 1``), never as people. The server says which
requests are a machine's by the request alone (a HEAD, a known scanner's User-Agent:
:mod:`bcartnb.hygiene.tracking_server`); three rules need what the ledger knows, and each
moves a person's event to the machines, never the other way:

* **every link at once**: a click within :data:`BURST_SECONDS` of a person's click on
  *another* link of the same mail is a gateway fetching every link (Safe Links, Proofpoint,
  ...); both are moved to the machines;
* **at delivery**: a click within :data:`DELIVERY_SECONDS` after the mail was handed to the
  mail server (the delivery's ``result_at``) is a gateway scanning it on arrival: nobody
  reads a mail and clicks in that time;
* **the hidden link** (:data:`~bcartnb.mailtokens.TRAP_LINK`, an invisible link in each HTML
  mail that no person sees or can reach): its fetch is a machine's, and so is every event of
  that mail within :data:`TRAP_SECONDS` before or after it.

Events come in batches (:meth:`Tracking.record_tracks`, one transaction each: the public
server's writer), applied in order, so a batch counts exactly as the same requests one by one.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

from bcartnb.ledger.database import Database, dt, ts
from bcartnb.mailtokens import TRAP_LINK

__all__ = [
    "BURST_SECONDS",
    "DELIVERY_SECONDS",
    "TRAP_SECONDS",
    "LinkResult",
    "TrackEvent",
    "TrackResults",
    "Tracking",
]

#: Two links of one mail clicked within this many seconds: a machine, not a person.
BURST_SECONDS: Final = 2.0
#: A click this soon after the mail was handed over: a gateway scanning it on arrival.
DELIVERY_SECONDS: Final = 10.0
#: The hidden link's fetch makes a machine of every event of the mail this close to it.
TRAP_SECONDS: Final = 60.0


@dataclass(frozen=True)
class TrackEvent:
    """One request the public server answered: what it named, when, and whether the request
    alone showed a machine (the ledger's rules may still find one)."""

    campaign_id: str
    member_id: int
    link: int
    kind: str
    machine: bool
    at: datetime


@dataclass(frozen=True)
class LinkResult:
    """One tracked link: who clicked it (people), how often, and the machines' requests."""

    number: int
    url: str
    people: int
    clicks: int
    machine: int


@dataclass(frozen=True)
class TrackResults:
    """A campaign's measured outcome; rates are over the mails delivered (sent)."""

    campaign_id: str
    delivered: int
    opened: int
    clicked: int
    clicks: int
    machine_opens: int
    machine_clicks: int
    links: tuple[LinkResult, ...]
    first_at: datetime | None
    last_at: datetime | None

    @property
    def open_rate(self) -> float:
        return self.opened / self.delivered if self.delivered else 0.0

    @property
    def click_rate(self) -> float:
        return self.clicked / self.delivered if self.delivered else 0.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, rates rounded to 4 places."""
        return {
            "campaign_id": self.campaign_id,
            "delivered": self.delivered,
            "opened": self.opened,
            "open_rate": round(self.open_rate, 4),
            "clicked": self.clicked,
            "click_rate": round(self.click_rate, 4),
            "clicks": self.clicks,
            "machine": {"opens": self.machine_opens, "clicks": self.machine_clicks},
            "links": [
                {
                    "number": x.number,
                    "url": x.url,
                    "people": x.people,
                    "clicks": x.clicks,
                    "machine": x.machine,
                }
                for x in self.links
            ],
            "first_at": self.first_at.isoformat() if self.first_at else None,
            "last_at": self.last_at.isoformat() if self.last_at else None,
        }


class Tracking(Database):
    """The ledger's half of click and open measurement."""

    def record_links(self, campaign_id: str, links: Sequence[str]) -> None:
        """Freeze the campaign's link table (number ``i + 1`` → ``links[i]``); a table already
        recorded for it stays as it is (a resume sends the mail it started with)."""
        if not links:
            return
        with self._write() as c:
            c.executemany(
                "INSERT OR IGNORE INTO tracked_links (campaign_id, number, url) VALUES (?, ?, ?)",
                [(campaign_id, i + 1, url) for i, url in enumerate(links)],
            )

    def tracked_links(self, campaign_id: str) -> dict[int, str]:
        """The campaign's link table (empty when it measured nothing)."""
        with self._read() as c:
            rows = c.execute(
                "SELECT number, url FROM tracked_links WHERE campaign_id = ? ORDER BY number",
                (campaign_id,),
            ).fetchall()
        return {int(n): str(u) for n, u in rows}

    def link_target(self, campaign_id: str, number: int) -> str | None:
        """Where link ``number`` of the campaign goes, or None: the only redirect target."""
        with self._read() as c:
            row = c.execute(
                "SELECT url FROM tracked_links WHERE campaign_id = ? AND number = ?",
                (campaign_id, number),
            ).fetchone()
        return None if row is None else str(row[0])

    def campaign_known(self, campaign_id: str) -> bool:
        with self._read() as c:
            row = c.execute(
                "SELECT 1 FROM campaigns WHERE campaign_id = ?", (campaign_id,)
            ).fetchone()
        return row is not None

    def record_track(
        self,
        campaign_id: str,
        member_id: int,
        link: int,
        kind: str,
        *,
        machine: bool,
        now: datetime | None = None,
    ) -> bool:
        """Count one request; True when it was counted as a machine's (see the module)."""
        event = TrackEvent(campaign_id, member_id, link, kind, machine, self._now(now))
        return self.record_tracks([event])[0]

    def record_tracks(self, events: Sequence[TrackEvent]) -> list[bool]:
        """Count requests in order, in one transaction; for each, whether it was a machine's."""
        if not events:
            return []
        sent: dict[tuple[str, int], datetime | None] = {}
        with self._write() as c:
            return [_record(c, e, sent) for e in events]

    def purge_tracking(self, before: datetime) -> int:
        """Delete the events last seen before ``before`` (the retention); how many rows went."""
        with self._write() as c:
            return c.execute(
                "DELETE FROM tracking_events WHERE last_at < ?", (ts(before),)
            ).rowcount

    def track_results(self, campaign_id: str) -> TrackResults:
        """The campaign's 配信数, 開封数, クリック数 and clicks by link (people; machines apart;
        the hidden link is never a link row, its fetches count as machine clicks).

        A member who clicked opened the mail, whether or not the image was shown: 開封 counts
        members with an open or a click.
        """
        with self._read() as c:
            self._status(c, campaign_id)
            delivered = _one(
                c,
                "SELECT count(*) FROM deliveries WHERE campaign_id = ? AND state = 'sent'",
                cid=campaign_id,
            )
            opened = _one(
                c,
                "SELECT count(DISTINCT member_id) FROM tracking_events "
                "WHERE campaign_id = ? AND machine = 0",
                cid=campaign_id,
            )
            clicked, clicks = c.execute(
                "SELECT count(DISTINCT member_id), coalesce(sum(count), 0) FROM tracking_events "
                "WHERE campaign_id = ? AND machine = 0 AND kind = 'click'",
                (campaign_id,),
            ).fetchone()
            m_opens, m_clicks = c.execute(
                "SELECT coalesce(sum(CASE WHEN kind = 'open' THEN count END), 0), "
                "coalesce(sum(CASE WHEN kind = 'click' THEN count END), 0) "
                "FROM tracking_events WHERE campaign_id = ? AND machine = 1",
                (campaign_id,),
            ).fetchone()
            first, last = c.execute(
                "SELECT min(first_at), max(last_at) FROM tracking_events WHERE campaign_id = ?",
                (campaign_id,),
            ).fetchone()
            rows = c.execute(
                "SELECT l.number, l.url, "
                "count(DISTINCT CASE WHEN e.machine = 0 THEN e.member_id END), "
                "coalesce(sum(CASE WHEN e.machine = 0 THEN e.count END), 0), "
                "coalesce(sum(CASE WHEN e.machine = 1 THEN e.count END), 0) "
                "FROM tracked_links l LEFT JOIN tracking_events e ON e.campaign_id = l.campaign_id "
                "AND e.link = l.number AND e.kind = 'click' "
                "WHERE l.campaign_id = ? AND l.number <> ? "  # the hidden link: no row
                "GROUP BY l.number, l.url ORDER BY l.number",
                (campaign_id, TRAP_LINK),
            ).fetchall()
        return TrackResults(
            campaign_id=campaign_id,
            delivered=delivered,
            opened=opened,
            clicked=int(clicked),
            clicks=int(clicks),
            machine_opens=int(m_opens),
            machine_clicks=int(m_clicks),
            links=tuple(
                LinkResult(int(n), str(u), int(p), int(k), int(m)) for n, u, p, k, m in rows
            ),
            first_at=dt(first),
            last_at=dt(last),
        )


def _one(c: sqlite3.Connection, sql: str, *, cid: str) -> int:
    return int(c.execute(sql, (cid,)).fetchone()[0])


#: A row of the member's recent events: link, kind, machine, first_at, last_at, count.
_Row = tuple[int, str, int, str, str, int]


def _record(
    c: sqlite3.Connection, e: TrackEvent, sent: dict[tuple[str, int], datetime | None]
) -> bool:
    """Count one event by the module's rules: one read of the mail's recent events (the
    widest window, the hidden link's) serves all three; ``sent`` caches delivery times."""
    at = ts(e.at)
    if e.machine and e.link != TRAP_LINK:
        _count(c, e, e.link, e.kind, True, at, at, 1)
        return True
    rows: list[_Row] = c.execute(
        "SELECT link, kind, machine, first_at, last_at, count FROM tracking_events "
        "WHERE campaign_id = ? AND member_id = ? AND last_at >= ?",
        (e.campaign_id, e.member_id, ts(e.at - timedelta(seconds=TRAP_SECONDS))),
    ).fetchall()
    if e.link == TRAP_LINK:  # every person event of the mail near it was a machine's
        for link, kind, machine, first, last, count in rows:
            if not machine:
                _move(c, e, link, kind, count, first, last)
        machine = True
    else:
        machine = any(r[0] == TRAP_LINK for r in rows) or (
            e.kind == "click" and (_at_delivery(c, e, sent) or _burst(c, e, rows))
        )
    _count(c, e, e.link, e.kind, machine, at, at, 1)
    return machine


def _at_delivery(
    c: sqlite3.Connection, e: TrackEvent, sent: dict[tuple[str, int], datetime | None]
) -> bool:
    key = (e.campaign_id, e.member_id)
    if key not in sent:
        row = c.execute(
            "SELECT result_at FROM deliveries WHERE campaign_id = ? AND member_id = ? "
            "AND state = 'sent'",
            key,
        ).fetchone()
        sent[key] = dt(row[0]) if row else None
    at = sent[key]
    return at is not None and timedelta(0) <= e.at - at <= timedelta(seconds=DELIVERY_SECONDS)


def _burst(c: sqlite3.Connection, e: TrackEvent, rows: list[_Row]) -> bool:
    """Whether a person's click on another link of this mail came within BURST_SECONDS; if
    so, that click is moved to the machines too (this one is counted there by the caller)."""
    others = [r for r in rows if r[1] == "click" and not r[2] and r[0] not in (e.link, TRAP_LINK)]
    if not others:
        return False
    since = ts(e.at - timedelta(seconds=BURST_SECONDS))
    near = [r for r in others if r[4] >= since]
    for r in near:
        _move(c, e, r[0], "click", 1, r[4], r[4])
    return bool(near)


def _move(
    c: sqlite3.Connection, e: TrackEvent, link: int, kind: str, n: int, first: str, last: str
) -> None:
    """Move ``n`` of a person row's count (its last ones) to the machines' row."""
    key = (e.campaign_id, e.member_id, link, kind)
    where = "campaign_id = ? AND member_id = ? AND link = ? AND kind = ? AND machine = 0"
    c.execute(f"DELETE FROM tracking_events WHERE {where} AND count <= ?", (*key, n))
    c.execute(f"UPDATE tracking_events SET count = count - ? WHERE {where}", (n, *key))
    _count(c, e, link, kind, True, first, last, n)


def _count(
    c: sqlite3.Connection,
    e: TrackEvent,
    link: int,
    kind: str,
    machine: bool,
    first: str,
    last: str,
    n: int,
) -> None:
    c.execute(
        "INSERT INTO tracking_events (campaign_id, member_id, link, kind, machine, first_at, "
        "last_at, count) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
        "ON CONFLICT (campaign_id, member_id, link, kind, machine) DO UPDATE SET "
        "first_at = min(first_at, excluded.first_at), "
        "last_at = max(last_at, excluded.last_at), count = count + excluded.count",
        (e.campaign_id, e.member_id, link, kind, int(machine), first, last, n),
    )
