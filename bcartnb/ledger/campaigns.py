"""Campaigns: identity, lifecycle and history, test sends and the admin copy.

A campaign's identity is its :func:`fingerprint`: its mail (:func:`~bcartnb.ledger.claims.mail_key`)
and its recipients, never the path of the member file they came from. Each address it mails
is claimed for that mail (:mod:`bcartnb.ledger.claims`), so no other campaign sends the same
mail to it again. Every change of its status goes through
:func:`~bcartnb.ledger.lifecycle.set_status` (the lifecycle is drawn in
:mod:`bcartnb.ledger.lifecycle`).

At most one campaign per fingerprint is ``sending`` or ``unfinished`` (a partial unique
index holds it even against a bug): :meth:`Campaigns.claim` takes it atomically, in one
``BEGIN IMMEDIATE`` transaction, before anything is composed or sent. A second claim while
the first run lives is refused naming it; a claim of an unfinished campaign continues it
(same id); otherwise a new campaign holds the addresses no other campaign holds for this
mail (``repeat``: also those of finished campaigns).
"""

from __future__ import annotations

import hashlib
import json
import secrets
import sqlite3
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, NamedTuple

from bcartnb.exceptions import CampaignStateError
from bcartnb.ledger.claims import OPEN_STATUSES, live_claims, mail_key, split_claims, write_claims
from bcartnb.ledger.database import dt, ts, unknown_campaign
from bcartnb.ledger.journal import Journal, insert_recipients, journal_counts
from bcartnb.ledger.lifecycle import CAMPAIGN_TRANSITIONS, LEFT_STATES, set_status, transition
from bcartnb.ledger.reservations import (
    HOST,
    Owner,
    holder,
    os_user,
    reclaim_stale,
    stale,
    take,
)
from bcartnb.ledger.schema import DELIVERY_STATES
from bcartnb.quota import TOKYO, Plan, now_tokyo, resolve_plan

if TYPE_CHECKING:
    import pandas as pd

# CAMPAIGN_TRANSITIONS, LEFT_STATES and set_status are lifecycle's, named here too for the
# callers that import them from here.
__all__ = [
    "CAMPAIGN_TRANSITIONS",
    "LEFT_STATES",
    "CampaignRecord",
    "Campaigns",
    "Claim",
    "fingerprint",
    "new_campaign_id",
    "running_error",
    "set_status",
]


def new_campaign_id(now: datetime | None = None) -> str:
    """``YYYYMMDD-HHMMSS-xxxxxx`` in Asia/Tokyo: sorts by time, reads as the shop's clock."""
    now = (now or now_tokyo()).astimezone(TOKYO)
    return f"{now:%Y%m%d-%H%M%S}-{secrets.token_hex(3)}"


def fingerprint(params: Mapping[str, Any], recipients: Iterable[tuple[int, str]]) -> str:
    """A hash of what identifies the campaign (the conductor passes its mail's key) and its
    recipient set (order and case ignored).

    Running the same campaign twice gives the same fingerprint: the ledger's claim uses it
    to continue an unfinished campaign instead of starting another one.
    """
    h = hashlib.sha256()
    h.update(json.dumps(params, sort_keys=True, ensure_ascii=False, default=str).encode())
    rows = sorted((int(m), str(a).strip().lower()) for m, a in recipients)
    # one update of every line: the same bytes, so the same digest as a line at a time
    h.update("".join(f"\n{member_id}\t{address}" for member_id, address in rows).encode())
    return h.hexdigest()


class Claim(NamedTuple):
    """The campaign a run now holds; ``continued``: an unfinished one taken over (same id).

    ``skipped``: recipients another campaign took for the same mail between the plan and
    the claim, as (member id, address, that campaign): they are not in this campaign.
    ``created`` is False when every recipient was skipped: no campaign was recorded, and
    ``campaign_id`` names the one holding most of them.
    """

    campaign_id: str
    continued: bool
    skipped: tuple[tuple[int, str, str], ...] = ()
    created: bool = True


@dataclass(frozen=True)
class CampaignRecord:
    """A campaign's row plus its journal counts (``journal``: state → number of rows)."""

    campaign_id: str
    created_at: datetime
    user: str
    host: str
    plan: str
    fingerprint: str
    params: dict[str, Any]
    selected: int
    sendable: int
    unsendable: int
    reasons: dict[str, int]
    status: str
    admin_copy: str | None
    admin_copy_at: datetime | None
    finished_at: datetime | None
    journal: dict[str, int] = field(default_factory=dict)
    #: the mail's identity and the mail as frozen when claimed (None: an older ledger's)
    mail_key: str | None = None
    mail: dict[str, Any] | None = None

    @property
    def sent(self) -> int:
        return self.journal.get("sent", 0)

    @property
    def failed(self) -> int:
        return self.journal.get("failed", 0)

    @property
    def left(self) -> int:
        """Mails not yet sent or refused for good (pending, deferred, uncertain, in flight)."""
        return sum(self.journal.get(s, 0) for s in LEFT_STATES)


_CAMPAIGN_SELECT = (
    "SELECT campaign_id, created_at, user, host, plan, fingerprint, params, selected, "
    "sendable, unsendable, reasons, status, admin_copy, admin_copy_at, finished_at, "
    "mail_key, mail FROM campaigns"
)


def _record(row: Sequence[Any], journal: dict[str, int]) -> CampaignRecord:
    created = dt(row[1])
    assert created is not None
    return CampaignRecord(
        campaign_id=row[0],
        created_at=created,
        user=row[2],
        host=row[3],
        plan=row[4],
        fingerprint=row[5],
        params=json.loads(row[6]),
        selected=row[7],
        sendable=row[8],
        unsendable=row[9],
        reasons=json.loads(row[10]),
        status=row[11],
        admin_copy=row[12],
        admin_copy_at=dt(row[13]),
        finished_at=dt(row[14]),
        journal=journal,
        mail_key=row[15],
        mail=None if row[16] is None else json.loads(row[16]),
    )


def running_error(campaign_id: str, who: tuple[int, str, str, float] | None) -> CampaignStateError:
    by = f" by pid {who[0]} on {who[1]}" if who else ""
    return CampaignStateError(
        f"campaign {campaign_id} is being sent right now{by}: nothing was done; wait for it "
        f"to end (`bcartnb campaigns` shows it), then `bcartnb resume {campaign_id}` if it "
        "stopped unfinished",
        ja=f"このキャンペーン（{campaign_id}）はいま別の処理が送信中です。"
        "同じ会員に二度送らないよう、何もせずに止めました。終わるのを待ってください。",
    )


class Campaigns(Journal):
    """Claims and the lifecycle, the send history, test sends and the admin copy."""

    def claim(
        self,
        *,
        fingerprint: str,
        plan: str | Plan,
        params: Mapping[str, Any],
        recipients: Iterable[tuple[int, str]],
        selected: int = 0,
        sendable: int = 0,
        unsendable: int = 0,
        reasons: Mapping[str, int] | None = None,
        campaign_id: str | None = None,
        repeat: bool = False,
        user: str | None = None,
        now: datetime | None = None,
        mail: Mapping[str, Any] | None = None,
        also_known_as: Sequence[str] = (),
    ) -> Claim:
        """Hold the campaign with this fingerprint for this process, atomically.

        An unfinished one is continued (same id, its mails as the journal has them). A
        running one (a live holder) is refused naming it; ``repeat`` while one is unfinished
        is refused (finish it first). Otherwise a new campaign ``campaign_id`` is recorded
        with those of its ``recipients`` (member id, address) whose address no other
        campaign holds for this ``mail`` (:mod:`~bcartnb.ledger.claims`; ``repeat``: none
        still under way), pending; the others are returned in :attr:`Claim.skipped`.
        ``also_known_as``: identities an older ledger gave the same mail. Without ``mail``
        the fingerprint stands for it (a caller that does not say what it sends).
        """
        plan = resolve_plan(plan)
        now = self._now(now)
        try:
            params_json = json.dumps(dict(params), ensure_ascii=False, sort_keys=True)
        except (TypeError, ValueError) as err:
            raise CampaignStateError(
                f"campaign params are not JSON-serialisable: {err}",
                ja="キャンペーンの設定を記録できません（JSON にできない値があります）。",
            ) from err
        rows = list(recipients)
        key = mail_key(mail) if mail is not None else "fp:" + fingerprint
        mail_json = None if mail is None else json.dumps(dict(mail), ensure_ascii=False)
        with self._write() as c:
            reclaim_stale(c, now)
            open_ = c.execute(
                "SELECT campaign_id, status FROM campaigns WHERE fingerprint = ? "
                "AND status IN ('sending', 'unfinished')",
                (fingerprint,),
            ).fetchone()
            if open_ is not None:
                cid, status = str(open_[0]), str(open_[1])
                if status == "sending":
                    raise running_error(cid, holder(c, cid))
                if repeat:
                    raise CampaignStateError(
                        f"campaign {cid} (the same mail to the same members) is unfinished: "
                        f"`bcartnb resume {cid}` (or run without --repeat) continues it; "
                        "--repeat sends again only once it is finished",
                        ja=f"同じ内容のキャンペーン {cid} が送信途中です。"
                        f"`bcartnb resume {cid}` で続きを送ってください。",
                    )
                self._take(c, cid, plan, now)
                return Claim(cid, True)
            kept, skipped = split_claims(c, (key, *also_known_as), rows, repeat=repeat)
            if rows and not kept:  # all taken since the plan: an empty campaign says nothing
                most = Counter(held for _, _, held in skipped).most_common(1)[0][0]
                return Claim(most, False, tuple(skipped), created=False)
            if skipped:  # the counts as held: the skipped ones are the audience's already_sent
                reasons = {**(reasons or {})}
                reasons["already_sent"] = reasons.get("already_sent", 0) + len(skipped)
                sendable, unsendable = sendable - len(skipped), unsendable + len(skipped)
            cid = campaign_id or new_campaign_id(now)
            try:
                c.execute(
                    "INSERT INTO campaigns (campaign_id, created_at, user, host, plan, "
                    "fingerprint, params, selected, sendable, unsendable, reasons, status, "
                    "updated_at, mail_key, mail) VALUES (?,?,?,?,?,?,?,?,?,?,?, 'sending', ?,?,?)",
                    (
                        cid,
                        ts(now),
                        user or os_user(),
                        HOST,
                        plan.name,
                        fingerprint,
                        params_json,
                        selected,
                        sendable,
                        unsendable,
                        json.dumps(dict(reasons or {}), ensure_ascii=False, sort_keys=True),
                        ts(now),
                        key,
                        mail_json,
                    ),
                )
            except sqlite3.IntegrityError as err:
                raise CampaignStateError(
                    f"campaign {cid} already exists",
                    ja=f"キャンペーンID {cid} はすでに使われています。",
                ) from err
            insert_recipients(c, cid, kept)
            write_claims(c, (key, *also_known_as), cid, kept)
            take(c, cid, plan, now, (now + self.lease).timestamp())
        return Claim(cid, False, tuple(skipped))

    def open_campaign(self, fp: str) -> str | None:
        """The campaign with this fingerprint still under way (sending or unfinished), if any:
        the one a run of the same mail to the same members continues."""
        with self._read() as c:
            row = c.execute(
                "SELECT campaign_id FROM campaigns WHERE fingerprint = ? "
                f"AND status IN {OPEN_STATUSES!r}",
                (fp,),
            ).fetchone()
        return None if row is None else str(row[0])

    def already_sent(
        self, keys: Sequence[str], *, exclude: str | None = None, repeat: bool = False
    ) -> dict[str, str]:
        """Lower-cased address → the campaign that mailed it this mail (or is mailing it).

        ``keys``: the mail's identity, then what older ledgers called it. ``exclude``: the
        campaign being continued or resumed (its own addresses are its to send).
        ``repeat``: only the campaigns still under way hold an address.
        """
        with self._read() as c:
            held = live_claims(c, keys)
        return {
            address: h.campaign_id
            for address, h in held.items()
            if h.campaign_id != exclude and (not repeat or h.status in OPEN_STATUSES)
        }

    def take_over(self, campaign_id: str, *, now: datetime | None = None) -> bool:
        """Hold an existing campaign by id (``bcartnb resume``): False if it is done already.

        Refused when a live process runs it, or when it was cancelled (nothing went out:
        run the campaign again instead).
        """
        now = self._now(now)
        with self._write() as c:
            reclaim_stale(c, now)
            status = self._status(c, campaign_id)
            if status == "done":
                return False
            if status == "sending":
                raise running_error(campaign_id, holder(c, campaign_id))
            if status == "cancelled":
                raise CampaignStateError(
                    f"campaign {campaign_id} was cancelled: nothing to resume; run the "
                    "campaign again (members who already have the mail are not mailed twice)",
                    ja=f"キャンペーン {campaign_id} は取り消されています。続きを送るには、"
                    "もう一度キャンペーンを実行してください（送信済みの会員には送りません）。",
                )
            plan = c.execute(
                "SELECT plan FROM campaigns WHERE campaign_id = ?", (campaign_id,)
            ).fetchone()[0]
            self._take(c, campaign_id, resolve_plan(plan), now)
        return True

    def _take(self, c: sqlite3.Connection, campaign_id: str, plan: Plan, now: datetime) -> None:
        take(c, campaign_id, plan, now, (now + self.lease).timestamp())
        transition(c, campaign_id, "uncertain", frm="sending")
        set_status(c, campaign_id, "sending", now)

    def release(
        self,
        campaign_id: str,
        *,
        cancel: bool = False,
        admin_owed: bool = False,
        now: datetime | None = None,
    ) -> str:
        """End this process's run: free the reservation and set the campaign's status.

        ``done`` only when nothing is left to do: no mail pending, deferred or uncertain,
        and no admin copy owed (``admin_owed``). ``cancel``: the run was refused (quota, a
        compose error) and, if no mail of the campaign was ever handed over, the campaign is
        ``cancelled``. Mails still ``sending`` become ``uncertain``. Returns the status.
        A campaign reclaimed meanwhile keeps the status the reclaim gave it.
        :class:`CampaignStateError` if another live process holds it.
        """
        now = self._now(now)
        with self._write() as c:
            status = self._status(c, campaign_id)
            who = holder(c, campaign_id)
            if who is not None:
                pid, host, start, until = who
                if Owner(pid, host, start) != Owner.current() and not stale(
                    pid, host, start, until, now
                ):
                    raise running_error(campaign_id, who)
                c.execute("DELETE FROM reservations WHERE campaign_id = ?", (campaign_id,))
            transition(c, campaign_id, "uncertain", frm="sending")
            if status != "sending" or who is None:
                return status
            counts = journal_counts(c, campaign_id)
            left = sum(counts.get(s, 0) for s in LEFT_STATES)
            touched = c.execute(
                "SELECT 1 FROM deliveries WHERE campaign_id = ? AND attempts > 0 LIMIT 1",
                (campaign_id,),
            ).fetchone()
            if cancel and touched is None:
                final = "cancelled"
            elif left or admin_owed:
                final = "unfinished"
            else:
                final = "done"
            set_status(c, campaign_id, final, now)
        return final

    # --- the history -----------------------------------------------------------------------

    def campaign(self, campaign_id: str) -> CampaignRecord:
        """One campaign with its journal counts; :class:`CampaignStateError` if unknown."""
        with self._read() as c:
            row = c.execute(_CAMPAIGN_SELECT + " WHERE campaign_id = ?", (campaign_id,)).fetchone()
            if row is None:
                raise unknown_campaign(campaign_id, self.path)
            return _record(row, journal_counts(c, campaign_id))

    def find_by_fingerprint(self, fp: str) -> list[CampaignRecord]:
        """Campaigns with this fingerprint, newest first: the same mail to the same people."""
        with self._read() as c:
            rows = c.execute(
                _CAMPAIGN_SELECT + " WHERE fingerprint = ? ORDER BY created_at DESC", (fp,)
            ).fetchall()
            return [_record(r, journal_counts(c, r[0])) for r in rows]

    def campaigns(self) -> pd.DataFrame:
        """The send history B-Cart does not keep, oldest first, one row per campaign.

        Columns: campaign_id, created_at, user, host, plan, status, selected, sendable,
        unsendable, one column per mail state (pending … uncertain), admin_copy,
        admin_copy_at, finished_at, fingerprint, filter (dict), params (dict), reasons (dict).
        """
        import pandas as pd

        with self._read() as c:
            rows = c.execute(_CAMPAIGN_SELECT + " ORDER BY created_at, campaign_id").fetchall()
            counts: dict[str, dict[str, int]] = {}
            for cid, state, n in c.execute(
                "SELECT campaign_id, state, count(*) FROM deliveries GROUP BY campaign_id, state"
            ):
                counts.setdefault(cid, {})[state] = n
        records = [_record(r, counts.get(r[0], {})) for r in rows]
        columns = [
            "campaign_id",
            "created_at",
            "user",
            "host",
            "plan",
            "status",
            "selected",
            "sendable",
            "unsendable",
            *DELIVERY_STATES,
            "admin_copy",
            "admin_copy_at",
            "finished_at",
            "fingerprint",
            "filter",
            "params",
            "reasons",
        ]
        data = [
            {
                "campaign_id": r.campaign_id,
                "created_at": r.created_at,
                "user": r.user,
                "host": r.host,
                "plan": r.plan,
                "status": r.status,
                "selected": r.selected,
                "sendable": r.sendable,
                "unsendable": r.unsendable,
                **{s: r.journal.get(s, 0) for s in DELIVERY_STATES},
                "admin_copy": r.admin_copy,
                "admin_copy_at": r.admin_copy_at,
                "finished_at": r.finished_at,
                "fingerprint": r.fingerprint,
                "filter": r.params.get("filter", {}),
                "params": r.params,
                "reasons": r.reasons,
            }
            for r in records
        ]
        frame = pd.DataFrame(data, columns=columns)
        for col in ("created_at", "admin_copy_at", "finished_at"):
            frame[col] = pd.to_datetime(frame[col], utc=True).dt.tz_convert(TOKYO)
        for col in ("selected", "sendable", "unsendable", *DELIVERY_STATES):
            frame[col] = frame[col].astype("int64")
        return frame

    # --- uncounted sends and the admin copy ----------------------------------------------

    def record_send(
        self,
        kind: str,
        address: str,
        *,
        campaign_id: str | None = None,
        code: int | None = None,
        message: str | None = None,
        now: datetime | None = None,
    ) -> int:
        """Record a test send (``kind="test"``) or an admin copy (``"admin"``): never counted."""
        if kind not in ("test", "admin"):
            raise ValueError(f"kind must be 'test' or 'admin', not {kind!r}")
        now = self._now(now)
        with self._write() as c:
            if campaign_id is not None:
                self._status(c, campaign_id)
            cur = c.execute(
                "INSERT INTO sends (kind, campaign_id, address, at, code, message) "
                "VALUES (?,?,?,?,?,?)",
                (kind, campaign_id, address, ts(now), code, message),
            )
            return int(cur.lastrowid or 0)

    def sends(self) -> pd.DataFrame:
        """Test sends and admin copies, oldest first."""
        import pandas as pd

        cols = ["id", "kind", "campaign_id", "address", "at", "code", "message"]
        with self._read() as c:
            rows = c.execute(f"SELECT {', '.join(cols)} FROM sends ORDER BY id").fetchall()
        frame = pd.DataFrame(rows, columns=cols)
        frame["at"] = pd.to_datetime(frame["at"], utc=True).dt.tz_convert(TOKYO)
        return frame

    def claim_admin_copy(self, campaign_id: str, *, now: datetime | None = None) -> bool:
        """True exactly once per campaign: the caller must then send the admin copy.

        Claimed before sending, so a crash between the claim and :meth:`mark_admin_copy`
        leaves ``admin_copy='sending'`` and no resume sends a second copy (an uncertain copy
        is the lesser harm than two). After a definite failure, :meth:`release_admin_copy`.
        """
        now = self._now(now)
        with self._write() as c:
            self._status(c, campaign_id)
            cur = c.execute(
                "UPDATE campaigns SET admin_copy = 'sending', admin_copy_at = ?, updated_at = ? "
                "WHERE campaign_id = ? AND admin_copy IS NULL",
                (ts(now), ts(now), campaign_id),
            )
            return cur.rowcount == 1

    def mark_admin_copy(
        self,
        campaign_id: str,
        address: str,
        *,
        code: int | None = None,
        message: str | None = None,
        now: datetime | None = None,
    ) -> None:
        """The admin copy was accepted: ``admin_copy='sent'``, recorded in ``sends`` (uncounted)."""
        now = self._now(now)
        with self._write() as c:
            self._status(c, campaign_id)
            c.execute(
                "UPDATE campaigns SET admin_copy = 'sent', admin_copy_at = ?, updated_at = ? "
                "WHERE campaign_id = ?",
                (ts(now), ts(now), campaign_id),
            )
            c.execute(
                "INSERT INTO sends (kind, campaign_id, address, at, code, message) "
                "VALUES ('admin', ?, ?, ?, ?, ?)",
                (campaign_id, address, ts(now), code, message),
            )

    def release_admin_copy(self, campaign_id: str) -> None:
        """The claimed admin copy definitely failed: let a later run (resume) send it."""
        with self._write() as c:
            c.execute(
                "UPDATE campaigns SET admin_copy = NULL, admin_copy_at = NULL "
                "WHERE campaign_id = ? AND admin_copy = 'sending'",
                (campaign_id,),
            )
