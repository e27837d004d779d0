"""予約配信 in the ledger: scheduled campaigns, and the claim that sends each exactly once.

A scheduled campaign is a row of ``scheduled``: its time (UTC ISO 8601, compared as text),
the Asia/Tokyo quota month of that time, the frozen mail, the audience rule and its status::

    scheduled ──► sending ──► sent            (the conductor ran it: campaign id, exit code)
        │            └──────► refused         (quota or input refused it; nothing sent)
        ├──────────► expired                  (its time passed by more than the limit)
        └──────────► cancelled                (取消: before it was taken, or while sent:
                                               the rest of its mails are never sent)

:meth:`Schedules.take_due` is the claim: inside ``BEGIN IMMEDIATE`` it moves one due row
from ``scheduled`` to ``sending`` and names this process, so two ``bcartnb due`` started
together (cron and a hand, two timers) never both take it. A ``sending`` row whose process
is gone (killed, the machine rebooted) is taken again: the campaign's own claim in the
ledger (its fingerprint, one claim per mail and address) makes that re-run continue the
campaign instead of mailing anyone twice.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from bcartnb.exceptions import CampaignStateError
from bcartnb.ledger.database import Database, ts
from bcartnb.ledger.reservations import Owner, owner_alive, used
from bcartnb.quota import TOKYO, month_of

__all__ = ["Owner", "Scheduled", "Schedules", "new_schedule_id", "utc_text"]

_COLUMNS = (
    "schedule_id, created_at, send_at, month, plan, params, mail, projected, status, "
    "claimed_at, campaign_id, exit_code, result, finished_at"
)


def utc_text(moment: datetime) -> str:
    """How ``send_at`` is stored: UTC, seconds, so rows compare in time order as text."""
    return moment.astimezone(UTC).isoformat(timespec="seconds")


def new_schedule_id(at: datetime) -> str:
    """``r-YYYYMMDD-HHMM-xxxx``: the time it goes out (Tokyo), then a random tail."""
    return f"r-{at.astimezone(TOKYO):%Y%m%d-%H%M}-{secrets.token_hex(2)}"


@dataclass(frozen=True)
class Scheduled:
    """One scheduled campaign as the ledger holds it."""

    schedule_id: str
    created_at: datetime
    send_at: datetime
    month: str
    plan: str
    params: dict[str, Any]
    mail: dict[str, Any]
    projected: int
    status: str
    claimed_at: datetime | None
    campaign_id: str | None
    exit_code: int | None
    result: str | None
    finished_at: datetime | None

    @classmethod
    def from_row(cls, row: tuple[Any, ...]) -> Scheduled:
        def when(v: Any) -> datetime | None:
            return None if v is None else datetime.fromisoformat(str(v))

        return cls(
            schedule_id=str(row[0]),
            created_at=datetime.fromisoformat(row[1]),
            send_at=datetime.fromisoformat(row[2]),
            month=str(row[3]),
            plan=str(row[4]),
            params=json.loads(row[5]),
            mail=json.loads(row[6]),
            projected=int(row[7]),
            status=str(row[8]),
            claimed_at=when(row[9]),
            campaign_id=row[10],
            exit_code=row[11],
            result=row[12],
            finished_at=when(row[13]),
        )

    @property
    def subject(self) -> str:
        return str(self.mail.get("subject", ""))


class Schedules(Database):
    """Scheduled campaigns: add, list, cancel, take when due, and record the outcome."""

    def schedule(
        self,
        *,
        send_at: datetime,
        plan: str,
        params: Mapping[str, Any],
        mail: Mapping[str, Any],
        projected: int,
        now: datetime | None = None,
    ) -> Scheduled:
        """Store a campaign to send at ``send_at`` (aware); its quota month is that time's."""
        now = self._now(now)
        sid = new_schedule_id(send_at)
        with self._write() as c:
            c.execute(
                "INSERT INTO scheduled (schedule_id, created_at, send_at, month, plan, params, "
                "mail, projected) VALUES (?,?,?,?,?,?,?,?)",
                (
                    sid,
                    ts(now),
                    utc_text(send_at),
                    month_of(send_at),
                    plan,
                    json.dumps(dict(params), ensure_ascii=False, sort_keys=True),
                    json.dumps(dict(mail), ensure_ascii=False, sort_keys=True),
                    projected,
                ),
            )
        return self.scheduled(sid)

    def scheduled(self, schedule_id: str) -> Scheduled:
        """One scheduled campaign; :class:`CampaignStateError` for an unknown id."""
        with self._read() as c:
            row = c.execute(
                f"SELECT {_COLUMNS} FROM scheduled WHERE schedule_id = ?", (schedule_id,)
            ).fetchone()
        if row is None:
            raise CampaignStateError(
                f"unknown scheduled campaign {schedule_id!r} in {self.path}",
                ja=f"予約 {schedule_id} は配信記録 {self.path} にありません"
                "（bcartnb schedule で一覧を表示します）。",
            )
        return Scheduled.from_row(row)

    def schedules(self, *, every: bool = False) -> list[Scheduled]:
        """Scheduled campaigns in time order: those still to send, or ``every`` one."""
        where = "" if every else "WHERE status IN ('scheduled', 'sending')"
        with self._read() as c:
            rows = c.execute(
                f"SELECT {_COLUMNS} FROM scheduled {where} ORDER BY send_at, schedule_id"
            ).fetchall()
        return [Scheduled.from_row(r) for r in rows]

    def month_outlook(self, month: str) -> tuple[int, int]:
        """(counted so far, projected by campaigns still scheduled) for a quota month."""
        with self._read() as c:
            ahead = c.execute(
                "SELECT COALESCE(SUM(projected), 0) FROM scheduled "
                "WHERE month = ? AND status = 'scheduled'",
                (month,),
            ).fetchone()[0]
            return used(c, month), int(ahead)

    def cancel_scheduled(
        self, schedule_id: str, *, now: datetime | None = None
    ) -> tuple[Scheduled, Owner | None]:
        """取消: the campaign is ``cancelled`` and never taken again.

        Before ``due`` took it, nothing is ever sent. While a ``due`` sends it, the row is
        marked all the same and that process is returned (pid, host, start), for the
        conductor to stop it between two mails; the ``due`` then ends the campaign's
        remaining mails. Refused for a campaign already ended (sent, refused, expired).
        """
        now = self._now(now)
        holder: Owner | None = None
        with self._write() as c:
            row = c.execute(
                "SELECT status, claimed_pid, claimed_host, claimed_start FROM scheduled "
                "WHERE schedule_id = ?",
                (schedule_id,),
            ).fetchone()
            status = None if row is None else str(row[0])
            if status in ("scheduled", "sending"):
                c.execute(
                    "UPDATE scheduled SET status = 'cancelled', result = ?, "
                    "finished_at = CASE WHEN status = 'scheduled' THEN ? END "
                    "WHERE schedule_id = ?",
                    ("取消しました", ts(now), schedule_id),
                )
            if status == "sending":
                holder = Owner(int(row[1]), str(row[2]), str(row[3]))
        if status is None:
            self.scheduled(schedule_id)  # raises: unknown id
        if status not in (None, "scheduled", "sending"):
            raise CampaignStateError(
                f"scheduled campaign {schedule_id} is {status}, it can no longer be cancelled",
                ja=f"予約 {schedule_id} は取り消せません（状態: {status}）。",
            )
        return self.scheduled(schedule_id), holder

    def take_due(self, *, now: datetime | None = None) -> Scheduled | None:
        """Claim the earliest campaign whose time has come, for this process, or None.

        One ``BEGIN IMMEDIATE``: a row moves from ``scheduled`` (or from a ``sending`` whose
        process is gone) to ``sending`` with this process's name, so of two ``due`` at once
        exactly one gets it.
        """
        now = self._now(now)
        me = Owner.current()
        with self._write() as c:
            sid = self._first_due(c, utc_text(now))
            if sid is None:
                return None
            c.execute(
                "UPDATE scheduled SET status = 'sending', claimed_pid = ?, claimed_host = ?, "
                "claimed_start = ?, claimed_at = ? WHERE schedule_id = ?",
                (me.pid, me.host, me.start, ts(now), sid),
            )
        return self.scheduled(sid)

    @staticmethod
    def _first_due(c: sqlite3.Connection, now: str) -> str | None:
        for sid, status, pid, host, start in c.execute(
            "SELECT schedule_id, status, claimed_pid, claimed_host, claimed_start "
            "FROM scheduled WHERE status IN ('scheduled', 'sending') AND send_at <= ? "
            "ORDER BY send_at, schedule_id",
            (now,),
        ).fetchall():
            if status == "scheduled" or owner_alive(int(pid), str(host), str(start)) is False:
                return str(sid)
        return None

    def finish_scheduled(
        self,
        schedule_id: str,
        status: str,
        *,
        result: str,
        exit_code: int,
        campaign_id: str | None = None,
        now: datetime | None = None,
    ) -> Scheduled:
        """Record what became of a campaign this process took (``sent``, ``refused``,
        ``expired``; one cancelled while it was sent stays ``cancelled``); refused when it is
        not ours (another ``due`` took it over)."""
        now = self._now(now)
        me = Owner.current()
        with self._write() as c:
            done = c.execute(
                "UPDATE scheduled SET status = CASE status WHEN 'cancelled' THEN status "
                "ELSE ? END, result = ?, exit_code = ?, campaign_id = ?, finished_at = ? "
                "WHERE schedule_id = ? AND status IN ('sending', 'cancelled') "
                "AND finished_at IS NULL AND claimed_pid = ? AND claimed_host = ?",
                (status, result, exit_code, campaign_id, ts(now), schedule_id, me.pid, me.host),
            ).rowcount
        if not done:
            raise CampaignStateError(
                f"scheduled campaign {schedule_id} is not held by this process",
                ja=f"予約 {schedule_id} はこの処理が送信中のものではありません。",
            )
        return self.scheduled(schedule_id)
