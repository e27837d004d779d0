"""Who responded to a campaign, member by member: the read side of click and open measurement.

:mod:`bcartnb.ledger.tracking` records the events (and owns the rule that moves a burst of
clicks to the machines); this module only reads them back, one row per member the campaign
mailed, for the breakdowns (都道府県, 価格グループ, time since sending), the per-member CSV
and the segments made from results (開封しなかった会員, リンクをクリックした会員). Reading
here keeps every question about one member's response in one query, so the totals of
:meth:`~bcartnb.ledger.tracking.Tracking.track_results` and these rows cannot disagree: both
count people by ``machine = 0`` and take a click as an open.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from bcartnb.ledger.database import Database, dt, ts

__all__ = ["MemberResponse", "Responses"]


@dataclass(frozen=True)
class MemberResponse:
    """One member of a campaign: whether the mail was delivered, and what people and
    machines did with it (``opened``: a person's open or click; counts are requests)."""

    member_id: int
    address: str
    delivered: bool
    opened: bool
    clicked: bool
    opens: int
    clicks: int
    machine_opens: int
    machine_clicks: int
    #: when a person first opened (or clicked), and first clicked; None when never
    first_open: datetime | None
    first_click: datetime | None


_MEMBER_ROWS = """
SELECT d.member_id, d.address, d.state = 'sent',
  coalesce(sum(CASE WHEN e.machine = 0 AND e.kind = 'open' THEN e.count END), 0),
  coalesce(sum(CASE WHEN e.machine = 0 AND e.kind = 'click' THEN e.count END), 0),
  coalesce(sum(CASE WHEN e.machine = 1 AND e.kind = 'open' THEN e.count END), 0),
  coalesce(sum(CASE WHEN e.machine = 1 AND e.kind = 'click' THEN e.count END), 0),
  min(CASE WHEN e.machine = 0 THEN e.first_at END),
  min(CASE WHEN e.machine = 0 AND e.kind = 'click' THEN e.first_at END)
FROM deliveries d
LEFT JOIN tracking_events e ON e.campaign_id = d.campaign_id AND e.member_id = d.member_id
  AND (? IS NULL OR e.first_at <= ?)
WHERE d.campaign_id = ?
GROUP BY d.member_id, d.address, d.state
ORDER BY d.member_id
"""


class Responses(Database):
    """The ledger's answers to "who opened, who clicked" (reads only)."""

    def member_responses(
        self, campaign_id: str, *, as_of: datetime | None = None
    ) -> list[MemberResponse]:
        """Every member the campaign journaled, in member id order (an unknown campaign is
        :class:`~bcartnb.exceptions.CampaignStateError`). Events of members the campaign
        has no journal row for (none are recorded: the token names a journaled member) are
        not shown. ``as_of``: only what people first did by then (a follow-up campaign's
        resume reads the results its first run read)."""
        since = None if as_of is None else ts(as_of)
        with self._read() as c:
            self._status(c, campaign_id)
            rows = c.execute(_MEMBER_ROWS, (since, since, campaign_id)).fetchall()
        return [
            MemberResponse(
                member_id=int(mid),
                address=str(address),
                delivered=bool(sent),
                opened=bool(opens or clicks),
                clicked=bool(clicks),
                opens=int(opens),
                clicks=int(clicks),
                machine_opens=int(m_opens),
                machine_clicks=int(m_clicks),
                first_open=dt(first_open),
                first_click=dt(first_click),
            )
            for mid, address, sent, opens, clicks, m_opens, m_clicks, first_open, first_click in (
                rows
            )
        ]

    def sending_started(self, campaign_id: str) -> datetime | None:
        """When the campaign's first mail was accepted (the clock "since sending" starts
        at): the earliest ``result_at`` of a sent mail, None before any was."""
        with self._read() as c:
            self._status(c, campaign_id)
            row = c.execute(
                "SELECT min(result_at) FROM deliveries WHERE campaign_id = ? AND state = 'sent'",
                (campaign_id,),
            ).fetchone()
        return dt(row[0])

    def response_counts(self) -> dict[str, tuple[int, int]]:
        """campaign id → (people who opened or clicked, people who clicked) for every campaign
        measured (it has a link table or an event); the history's 開封率・クリック率."""
        with self._read() as c:
            rows = c.execute(
                "SELECT campaign_id, count(DISTINCT member_id), "
                "count(DISTINCT CASE WHEN kind = 'click' THEN member_id END) "
                "FROM tracking_events WHERE machine = 0 GROUP BY campaign_id"
            ).fetchall()
            seen = c.execute(
                "SELECT campaign_id FROM tracked_links "
                "UNION SELECT campaign_id FROM tracking_events"
            ).fetchall()
        out = {str(cid): (0, 0) for (cid,) in seen}
        out.update({str(cid): (int(o), int(k)) for cid, o, k in rows})
        return out

    def tracking_seen(self, campaign_id: str) -> bool:
        """Whether the campaign was measured at all: it has a link table or any event."""
        with self._read() as c:
            row = c.execute(
                "SELECT EXISTS (SELECT 1 FROM tracked_links WHERE campaign_id = ?) "
                "OR EXISTS (SELECT 1 FROM tracking_events WHERE campaign_id = ?)",
                (campaign_id, campaign_id),
            ).fetchone()
        return bool(row[0])
