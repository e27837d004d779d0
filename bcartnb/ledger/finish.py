"""Finishing a campaign the server or the file will not let finish by itself.

A mail a server defers forever, an uncertain mail the marketer checked by hand, or a member
deleted from the file since would keep a campaign ``unfinished`` for good. The marketer
decides, and the journal records what was decided, mail by mail, through the one
:func:`~bcartnb.ledger.lifecycle.transition`: ``bcartnb cancel`` ends the campaign's pending
and deferred mails and the campaign; a resume's options give up deferred mails, mark or drop
uncertain ones, or skip members gone from the file (each move is drawn in
:mod:`bcartnb.ledger.lifecycle`).

Nothing here sends or counts anything: what went out stays counted; a cancelled mail that was
never handed over frees its address for this mail (:mod:`~bcartnb.ledger.claims`). The
resume options act inside the resume's own hold on the campaign, before it sends what is
left, so the campaign then ends ``done`` (with its administrator's copy) when nothing is left.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Collection, Mapping
from datetime import datetime

from bcartnb.exceptions import CampaignStateError
from bcartnb.ledger.campaigns import CampaignRecord, Campaigns, running_error
from bcartnb.ledger.lifecycle import DeliveryResult, set_status, transition
from bcartnb.ledger.reservations import holder, reclaim_stale

__all__ = ["ENDED_BY", "Finishing"]

#: The journal's ``message`` for each mail the marketer ended (the report shows it).
ENDED_BY: Mapping[str, str] = {
    "cancelled": "配信を取り消しました (bcartnb cancel)",
    "gave_up": "再送をあきらめました (--give-up-deferred)",
    "marked_sent": "届いたことを確認しました (--mark-uncertain-sent)",
    "dropped": "再送しないことにしました (--drop-uncertain)",
    "missing": "会員ファイルにいないため送りません (--skip-missing)",
}


class Finishing(Campaigns):
    """Cancel a campaign; end its stuck mails on the marketer's word."""

    def cancel(self, campaign_id: str, *, now: datetime | None = None) -> CampaignRecord:
        """``bcartnb cancel``: nothing more of this campaign is sent.

        Its pending and deferred mails become ``cancelled``; uncertain ones stay as they are
        (whether they arrived is still unknown); sent and failed ones stay counted. Refused
        while a live process sends it, and for a campaign already finished.
        """
        now = self._now(now)
        with self._write() as c:
            reclaim_stale(c, now)
            status = self._status(c, campaign_id)
            if status == "sending":
                raise running_error(campaign_id, holder(c, campaign_id))
            if status != "unfinished":
                word = "送信済み" if status == "done" else "取り消し済み"
                raise CampaignStateError(
                    f"campaign {campaign_id} is {status}: there is nothing to cancel",
                    ja=f"キャンペーン {campaign_id} は{word}です。取り消すものはありません。",
                )
            self._end(c, campaign_id, ("pending", "deferred"), "cancelled", "cancelled", now)
            set_status(c, campaign_id, "cancelled", now)
        return self.campaign(campaign_id)

    def end_mails(
        self,
        campaign_id: str,
        *,
        give_up_deferred: bool = False,
        uncertain: str | None = None,
        skip: Collection[int] = (),
        now: datetime | None = None,
    ) -> dict[str, list[tuple[int, str]]]:
        """The resume's choices, in one transaction of the run that holds the campaign.

        ``uncertain``: ``"sent"`` (the marketer saw them arrive) or ``"drop"`` (not resent).
        ``skip``: member ids no longer in the member file. Returns, per choice (``gave_up``,
        ``marked_sent``, ``dropped``, ``missing``), the (member id, address) it ended.
        """
        if uncertain not in (None, "sent", "drop"):
            raise ValueError(f"uncertain must be 'sent' or 'drop', not {uncertain!r}")
        now = self._now(now)
        ended: dict[str, list[tuple[int, str]]] = {}
        with self._write() as c:
            self._own_reservation(c, campaign_id, now)  # only inside a resume's hold
            if skip:
                ended["missing"] = self._end(
                    c, campaign_id, ("pending", "deferred"), "cancelled", "missing", now, skip
                )
            if give_up_deferred:
                ended["gave_up"] = self._end(
                    c, campaign_id, ("deferred",), "failed", "gave_up", now
                )
            if uncertain == "sent":
                ended["marked_sent"] = self._end(
                    c, campaign_id, ("uncertain",), "sent", "marked_sent", now
                )
            elif uncertain == "drop":
                ended["dropped"] = self._end(
                    c, campaign_id, ("uncertain",), "cancelled", "dropped", now
                )
        return ended

    def _end(
        self,
        c: sqlite3.Connection,
        campaign_id: str,
        states: tuple[str, ...],
        to: str,
        why: str,
        now: datetime,
        only: Collection[int] | None = None,
    ) -> list[tuple[int, str]]:
        rows = [
            (int(m), str(a))
            for m, a in c.execute(
                "SELECT member_id, address FROM deliveries WHERE campaign_id = ? "
                f"AND state IN ({', '.join('?' * len(states))}) ORDER BY member_id",
                (campaign_id, *states),
            )
            if only is None or int(m) in only
        ]
        results = [DeliveryResult(m, to, None, ENDED_BY[why]) for m, _ in rows]
        transition(c, campaign_id, to, results, now=now)
        return rows
