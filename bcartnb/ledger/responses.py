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

from datetime import datetime
from typing import TYPE_CHECKING, Final

from bcartnb.ledger.database import Database, dt, ts
from bcartnb.quota import TOKYO

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["MEMBER_COLUMNS", "Responses"]


#: The columns of :meth:`Responses.member_responses`, in order.
MEMBER_COLUMNS: Final = (
    "member_id",
    "address",
    "delivered",
    "opens",
    "clicks",
    "machine_opens",
    "machine_clicks",
    "first_open",
    "first_click",
)

_DTYPES: Final = {
    "member_id": "int64",
    "address": "object",
    "delivered": "int64",
    "opens": "int64",
    "clicks": "int64",
    "machine_opens": "int64",
    "machine_clicks": "int64",
    "first_open": "object",
    "first_click": "object",
}

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

    def member_responses(self, campaign_id: str, *, as_of: datetime | None = None) -> pd.DataFrame:
        """One row per member the campaign journaled, in member id order (an unknown campaign
        is :class:`~bcartnb.exceptions.CampaignStateError`): :data:`MEMBER_COLUMNS`, and
        ``opened`` (a person's open or click) and ``clicked`` (a person's click). Counts are
        requests; ``first_open`` (a person's first open or click) and ``first_click`` are
        Asia/Tokyo times, NaT when never. ``as_of``: only what people first did by then (a
        follow-up campaign's resume reads the results its first run read). Built column by
        column: a campaign of 100,000 members is one query and a few arrays."""
        import pandas as pd

        since = None if as_of is None else ts(as_of)
        with self._read() as c:
            self._status(c, campaign_id)
            rows = c.execute(_MEMBER_ROWS, (since, since, campaign_id)).fetchall()
        columns = list(zip(*rows, strict=True)) if rows else [()] * len(MEMBER_COLUMNS)
        frame = pd.DataFrame(
            {
                name: pd.Series(values, dtype=_DTYPES.get(name))
                for name, values in zip(MEMBER_COLUMNS, columns, strict=True)
            }
        )
        for name in ("first_open", "first_click"):
            frame[name] = pd.to_datetime(frame[name], format="ISO8601", utc=True).dt.tz_convert(
                TOKYO
            )
        frame["delivered"] = frame["delivered"].astype(bool)
        frame["opened"] = (frame["opens"] + frame["clicks"]) > 0
        frame["clicked"] = frame["clicks"] > 0
        return frame

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
