"""Who holds a campaign, and the monthly quota: reservations, usage and reclaim.

A reservation row is a running campaign's claim: its owner (pid, host, the process's start
time from ``/proc``, to see through pid reuse), a lease (default 10 minutes, renewed by
every step of the send loop and by :meth:`Reservations.heartbeat`), and ``held``: the quota
units the run may still count. The claim is taken with ``held = 0`` before anything is
composed (:meth:`bcartnb.ledger.campaigns.Campaigns.claim`); :meth:`Reservations.reserve`
then holds what the run will count, inside ``BEGIN IMMEDIATE``, refusing with
:class:`~bcartnb.exceptions.QuotaExceededError` if used + others' reservations + the
campaign's units exceed the cap: two processes racing for the last units are serialised by
the write lock and never exceed the cap together.

A reservation is *stale*, and reclaimed by the next claim, ``reserve`` or :meth:`reclaim`,
when its owner is gone (same host: no such pid, a zombie, or a different start time) or its
lease has expired (any host; this also frees a live but abandoned notebook kernel).
Reclaiming deletes the row, makes the campaign's ``sending`` mails ``uncertain`` and the
campaign ``unfinished``. A process whose reservation was reclaimed is refused at its next
step (:class:`~bcartnb.exceptions.CampaignStateError`), so it cannot overrun a cap that
others now share.

Counting. ``usage`` holds (month, campaign) → units. A unit is counted when a mail is first
handed to the server (see :mod:`bcartnb.ledger.lifecycle`), in the Asia/Tokyo calendar month of
that hand-over. A campaign crossing midnight at the end of a month moves its reservation to
the new month at its next hand-over, checking the new month's cap.
"""

from __future__ import annotations

import getpass
import os
import socket
import sqlite3
from dataclasses import dataclass
from datetime import datetime

from bcartnb.exceptions import CampaignStateError, QuotaExceededError
from bcartnb.ledger.database import Database, ts
from bcartnb.ledger.lifecycle import set_status, transition
from bcartnb.quota import Plan, QuotaStatus, check_quota, month_of, resolve_plan

__all__ = ["Owner", "Reservations", "mine"]

HOST = socket.gethostname()


@dataclass(frozen=True)
class Owner:
    """A process, as a reservation names it."""

    pid: int
    host: str
    start: str

    @classmethod
    def current(cls) -> Owner:
        pid = os.getpid()  # at call time: a forked child is a different owner
        me = _ME.get(pid)
        if me is None:
            me = _ME[pid] = cls(pid, HOST, _proc_start(pid) or "")
        return me


_ME: dict[int, Owner] = {}


def mine(pid: int, host: str, start: str) -> bool:
    """Whether a reservation naming this owner is this process's (asked at every step)."""
    me = Owner.current()
    return pid == me.pid and host == me.host and start == me.start


def _proc_stat(pid: int) -> tuple[str, str] | None:
    """(state, start time) of a pid from /proc, or None when /proc has no such process."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
            data = fh.read()
    except OSError:
        return None
    rest = data[data.rfind(")") + 2 :].split()  # the command name may hold spaces and ')'
    return (rest[0], rest[19]) if len(rest) > 19 else None


def _proc_start(pid: int) -> str | None:
    stat = _proc_stat(pid)
    return stat[1] if stat else None


def owner_alive(pid: int, host: str, start: str) -> bool | None:
    """True/False for a process on this host; None when it runs elsewhere (only the lease tells)."""
    if host != HOST:
        return None
    if os.path.isdir("/proc/self"):
        stat = _proc_stat(pid)
        if stat is None or stat[0] in ("Z", "X"):
            return False
        return not start or stat[1] == start
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stale(pid: int, host: str, start: str, lease_until: float, now: datetime) -> bool:
    return lease_until < now.timestamp() or owner_alive(pid, host, start) is False


def os_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # a container user without a passwd entry
        return str(os.getuid()) if hasattr(os, "getuid") else "unknown"


def used(c: sqlite3.Connection, month: str) -> int:
    return int(
        c.execute("SELECT COALESCE(SUM(sends), 0) FROM usage WHERE month = ?", (month,)).fetchone()[
            0
        ]
    )


def reserved(c: sqlite3.Connection, month: str, exclude: str) -> int:
    return int(
        c.execute(
            "SELECT COALESCE(SUM(held), 0) FROM reservations WHERE month = ? AND campaign_id != ?",
            (month, exclude),
        ).fetchone()[0]
    )


def holder(c: sqlite3.Connection, campaign_id: str) -> tuple[int, str, str, float] | None:
    """(pid, host, start, lease_until) of the campaign's reservation, if any."""
    row = c.execute(
        "SELECT pid, host, proc_start, lease_until FROM reservations WHERE campaign_id = ?",
        (campaign_id,),
    ).fetchone()
    return None if row is None else (int(row[0]), str(row[1]), str(row[2]), float(row[3]))


def take(
    c: sqlite3.Connection, campaign_id: str, plan: Plan, now: datetime, lease_until: float
) -> None:
    """Make this process the campaign's holder, with nothing reserved yet."""
    me = Owner.current()
    c.execute(
        "INSERT OR REPLACE INTO reservations (campaign_id, month, plan, held, pid, host, "
        "proc_start, lease_until, heartbeat_at) VALUES (?,?,?,0,?,?,?,?,?)",
        (campaign_id, month_of(now), plan.key, me.pid, me.host, me.start, lease_until, ts(now)),
    )


def reclaim_stale(c: sqlite3.Connection, now: datetime) -> list[str]:
    """Free every reservation whose owner is gone or whose lease ran out (see the docstring)."""
    gone = [
        cid
        for cid, pid, host, start, until in c.execute(
            "SELECT campaign_id, pid, host, proc_start, lease_until FROM reservations"
        ).fetchall()
        if stale(pid, host, start, until, now)
    ]
    for cid in gone:
        c.execute("DELETE FROM reservations WHERE campaign_id = ?", (cid,))
        transition(c, cid, "uncertain", frm="sending")
        set_status(c, cid, "unfinished", now, only_from=("sending",))
    return gone


class Reservations(Database):
    """Quota reservations and counting; see the module docstring."""

    def reserve(
        self, campaign_id: str, n: int, plan: str | Plan, *, now: datetime | None = None
    ) -> QuotaStatus:
        """Hold ``n`` units of this month's quota for the campaign this process has claimed.

        ``n`` is what the run may count: its pending mails plus the uncertain ones it will
        resend on purpose (retrying a deferred mail counts nothing). Replaces what the
        campaign held. Refuses with :class:`QuotaExceededError` (cap, used, reserved,
        needed) before any mail goes out, and with :class:`CampaignStateError` when this
        process does not hold the campaign. Returns the month's status with ``n`` reserved.
        """
        if n < 0:
            raise ValueError(f"cannot reserve {n} mails")
        plan = resolve_plan(plan)
        now = self._now(now)
        month = month_of(now)
        with self._write() as c:
            reclaim_stale(c, now)
            self._own_reservation(c, campaign_id, now)
            status = QuotaStatus(
                plan, month, used(c, month), reserved(c, month, exclude=campaign_id)
            )
            after = check_quota(status, n)
            c.execute(
                "UPDATE reservations SET month = ?, plan = ?, held = ? WHERE campaign_id = ?",
                (month, plan.key, n, campaign_id),
            )
        return after

    def usage(
        self, plan: str | Plan, month: str | None = None, *, now: datetime | None = None
    ) -> QuotaStatus:
        """The month's cap, used and reserved (live reservations only); month defaults to now's."""
        plan = resolve_plan(plan)
        now = self._now(now)
        month = month or month_of(now)
        with self._read() as c:
            spent = used(c, month)
            held = sum(
                units
                for units, pid, host, start, until in c.execute(
                    "SELECT held, pid, host, proc_start, lease_until FROM reservations "
                    "WHERE month = ?",
                    (month,),
                )
                if not stale(pid, host, start, until, now)
            )
        return QuotaStatus(plan, month, spent, held)

    def usage_by_campaign(self, month: str) -> dict[str, int]:
        """Counted mails per campaign in a month, in campaign id (= time) order."""
        with self._read() as c:
            return dict(
                c.execute(
                    "SELECT campaign_id, sends FROM usage WHERE month = ? AND sends > 0 "
                    "ORDER BY campaign_id",
                    (month,),
                ).fetchall()
            )

    def heartbeat(self, campaign_id: str, *, now: datetime | None = None) -> None:
        """Renew this process's lease on the campaign; call it during long waits (backoff).

        :class:`CampaignStateError` if the campaign is no longer ours (reclaimed).
        """
        now = self._now(now)
        with self._write() as c:
            self._own_reservation(c, campaign_id, now)

    def reclaim(self, *, now: datetime | None = None) -> list[str]:
        """Reclaim every stale reservation now; returns the campaign ids (now ``unfinished``).

        A claim or ``reserve`` does this by itself; ``bcartnb campaigns`` calls it so a
        crashed campaign shows as unfinished rather than sending.
        """
        now = self._now(now)
        with self._write() as c:
            return reclaim_stale(c, now)

    def _own_reservation(
        self, c: sqlite3.Connection, campaign_id: str, now: datetime
    ) -> tuple[str, str, int]:
        """(month, plan key, held) of our reservation, its lease renewed; else refuse."""
        row = c.execute(
            "SELECT month, plan, held, pid, host, proc_start FROM reservations "
            "WHERE campaign_id = ?",
            (campaign_id,),
        ).fetchone()
        if row is None or not mine(row[3], row[4], row[5]):
            self._status(c, campaign_id)
            raise CampaignStateError(
                f"campaign {campaign_id} is not held by this process (not claimed, finished, "
                "or reclaimed after its lease expired)",
                ja=f"キャンペーン {campaign_id} はこの処理が送信中のものではありません"
                "（終了済み、または長く応答がなかったため解放されました）。",
            )
        c.execute(
            "UPDATE reservations SET lease_until = ?, heartbeat_at = ? WHERE campaign_id = ?",
            ((now + self.lease).timestamp(), ts(now), campaign_id),
        )
        return str(row[0]), str(row[1]), int(row[2])

    def _move_to_month(
        self, c: sqlite3.Connection, campaign_id: str, plan_key: str, month: str, held: int
    ) -> None:
        """The campaign crossed midnight at the end of a month: hold its units in the new one."""
        status = QuotaStatus(
            resolve_plan(plan_key), month, used(c, month), reserved(c, month, exclude=campaign_id)
        )
        if not status.fits(held):
            raise QuotaExceededError(
                f"the month changed to {month} during the campaign and its quota has no room "
                f"for the {held} mails the campaign still holds (cap {status.cap}, used "
                f"{status.used}, reserved {status.reserved}); the rest stays to send",
                ja=f"送信中に月が変わり、{month} のメール配信上限数（{status.cap:,}件）に"
                f"残りの {held:,}件が収まりません。残りは未送信のままです。",
            )
        c.execute("UPDATE reservations SET month = ? WHERE campaign_id = ?", (month, campaign_id))

    @staticmethod
    def _take_units(c: sqlite3.Connection, campaign_id: str, held: int, k: int) -> None:
        if k > held:
            raise QuotaExceededError(
                f"campaign {campaign_id} has {held} reserved mails left, {k} needed; "
                "reserve() more before sending",
                ja=f"キャンペーン {campaign_id} の配信数の予約が足りません"
                f"（残り {held} 件、必要 {k} 件）。",
            )
