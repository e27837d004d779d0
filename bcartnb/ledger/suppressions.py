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
"""

from __future__ import annotations

import sqlite3
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final, Literal

from bcartnb.exceptions import HygieneError
from bcartnb.ledger.database import Database, dt, ts
from bcartnb.ledger.journal import DeliveryResult, transition
from bcartnb.ledger.schema import SUPPRESSION_REASONS

__all__ = [
    "BCART_FIELDS",
    "HANDED_OVER",
    "REASON_LABELS",
    "REASON_RANK",
    "BcartChange",
    "ConfirmOutcome",
    "HygieneEvent",
    "RecordOutcome",
    "Suppression",
    "Suppressions",
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
#: What B-Cart should record for each reason (PATCH /customers): the member's own wish not
#: to be mailed is メール案内 = 受け取らない (``mm_flag`` 0); a dead address is
#: ``is_invalid_email`` 1, so B-Cart's own screens stop mailing it too.
BCART_FIELDS: Final[Mapping[str, tuple[str, int]]] = {
    "unsubscribed": ("mm_flag", 0),
    "complaint": ("mm_flag", 0),
    "manual": ("mm_flag", 0),
    "hard_bounce": ("is_invalid_email", 1),
    "soft_bounce": ("is_invalid_email", 1),
}
#: Journal states of a mail that may have reached the server: the only mails a bounce or a
#: complaint can be about. ``failed`` and ``deferred`` were refused by the shop's own server
#: (the journal has why), ``pending`` and ``withheld`` never left.
HANDED_OVER: Final = ("sent", "uncertain", "sending")
#: ``hygiene_events.cleared`` of a notice tied to no mail of ours (no Message-ID, no VERP):
#: kept, counted nowhere, until the marketer confirms it (0 = counts, 1 = cleared by
#: ``unsuppress``). A value of an existing column, so no schema change is needed.
UNVERIFIED: Final = 2
_MAX_ADDRESS = 254  # RFC 5321's path limit, less the angle brackets
_TRIM = " \t\u3000"


def normalize_address(address: str) -> str:
    """The list's key for an address: trimmed like the member file's, lower-cased.

    Refuses what no member file could hold as one address (empty, white space or a control
    character inside, no ``@``, longer than a mail path), so nothing odd becomes a key.
    """
    if not isinstance(address, str):
        raise HygieneError(
            f"address must be text, not {type(address).__name__}",
            ja="メールアドレスは文字列で指定してください",
        )
    key = address.strip(_TRIM).lower()
    bad = next((ch for ch in key if ch.isspace() or unicodedata.category(ch).startswith("C")), None)
    if not key or bad is not None or "@" not in key or len(key) > _MAX_ADDRESS:
        what = (
            "empty"
            if not key
            else f"contains {bad!r}"
            if bad is not None
            else "has no @"
            if "@" not in key
            else f"is longer than {_MAX_ADDRESS} characters"
        )
        raise HygieneError(
            f"not a mail address: {address[:80]!r} {what}",
            ja="メールアドレスとして扱えません（空欄・空白や制御文字・@ がない・長すぎる）",
        )
    return key


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


@dataclass(frozen=True)
class BcartChange:
    """One change to write back to B-Cart for a suppressed member."""

    member_id: int
    address: str
    reason: str
    field: str
    value: int


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


def _check_reason(reason: str) -> None:
    if reason not in SUPPRESSION_REASONS:
        raise HygieneError(
            f"unknown suppression reason {reason!r}; one of {', '.join(SUPPRESSION_REASONS)}",
            ja="配信停止の理由が正しくありません",
        )


def _list(
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
    row = c.execute(
        "SELECT reason, first_seen, last_seen FROM suppressions WHERE address = ?", (address,)
    ).fetchone()
    stamp = ts(at)
    if row is None:
        c.execute(
            f"INSERT INTO suppressions ({_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?)",
            (address, reason, source, stamp, stamp, count, campaign_id, member_id, detail),
        )
        return True
    stronger = REASON_RANK[reason] > REASON_RANK[str(row[0])]
    c.execute(
        "UPDATE suppressions SET count = count + 1, last_seen = max(last_seen, ?), "
        "first_seen = min(first_seen, ?), "
        "reason = CASE WHEN ? THEN ? ELSE reason END, "
        "source = CASE WHEN ? THEN ? ELSE source END, "
        "detail = CASE WHEN ? THEN ? ELSE detail END, "
        "campaign_id = coalesce(campaign_id, ?), member_id = coalesce(member_id, ?) "
        "WHERE address = ?",
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
        ),
    )
    return False


#: Where an address stands for an unsubscribe (:meth:`Suppressions.unsubscribe_state`).
UnsubscribeState = Literal["not_listed", "listed", "unsuppressed"]


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


def event_id(key: str) -> str:
    """The short id the screens show for an event: the first hex characters of its key."""
    return key.rpartition(":")[2][:12]


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
                ja="確認待ちの通知が見つかりません（bcartnb bounces unverified で一覧できます）",
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
    c: sqlite3.Connection,
    ev: HygieneEvent,
    address: str,
    soft_threshold: int,
    soft_window: timedelta,
) -> bool:
    """List ``address`` for a counted event if its kind condemns it; True when newly listed.

    A soft bounce condemns only at ``soft_threshold`` within some ``soft_window`` (or an
    address already listed, whose row it bumps), whatever order the notices arrive or are
    confirmed in: a late scan decides as a timely one would have.
    """
    count = 1
    if ev.kind == "soft_bounce":
        rows = c.execute(
            "SELECT at FROM hygiene_events WHERE address = ? AND kind = 'soft_bounce' "
            "AND cleared = 0",
            (address,),
        ).fetchall()
        count = _most_within((str(at) for (at,) in rows), soft_window)
        listed = c.execute("SELECT 1 FROM suppressions WHERE address = ?", (address,)).fetchone()
        if count < soft_threshold and listed is None:
            return False
    return _list(
        c,
        address,
        ev.kind,
        ev.source,
        ev.at,
        campaign_id=ev.campaign_id,
        member_id=ev.member_id,
        detail=ev.detail or ev.status,
        count=count,
    )


class Suppressions(Database):
    """The ledger's suppression list, the hygiene events behind it and the B-Cart write-back."""

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
        a bounce or an unsubscribe goes through :meth:`record_events`, which remembers the
        event so it is never counted twice.
        """
        key = normalize_address(address)
        _check_reason(reason)
        now = self._now(now)
        with self._write() as c:
            return _list(
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
            _check_reason(ev.kind)
        keyed = [(ev, normalize_address(ev.address)) for ev in batch]
        now = self._now(now)
        recorded = repeated = unverified = 0
        new: list[str] = []
        by_kind: dict[str, int] = {}
        with self._write() as c:
            for ev, address in keyed:
                inserted = c.execute(
                    "INSERT OR IGNORE INTO hygiene_events (event_key, kind, address, at, "
                    "recorded_at, source, campaign_id, member_id, status, detail, cleared) "
                    "VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                    (
                        ev.key,
                        ev.kind,
                        address,
                        ts(ev.at),
                        ts(now),
                        ev.source,
                        ev.campaign_id,
                        ev.member_id,
                        ev.status,
                        ev.detail,
                        0 if ev.verified else UNVERIFIED,
                    ),
                ).rowcount
                if not inserted:
                    repeated += 1
                    continue
                recorded += 1
                if not ev.verified:
                    unverified += 1
                    continue
                by_kind[ev.kind] = by_kind.get(ev.kind, 0) + 1
                if _condemn(c, ev, address, soft_threshold, soft_window):
                    new.append(address)
        return RecordOutcome(recorded, repeated, tuple(new), by_kind, unverified)

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
                if _condemn(c, ev, row["address"], soft_threshold, soft_window):
                    new.append(row["address"])
        return ConfirmOutcome(tuple(done), tuple(new))

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
            rows = [
                DeliveryResult(int(m), "withheld", None, f"suppressed: {r}")
                for m, r in c.execute(
                    "SELECT d.member_id, s.reason FROM deliveries d JOIN suppressions s "
                    "ON s.address = lower(d.address) WHERE d.campaign_id = ? "
                    "AND d.state IN ('pending', 'deferred', 'uncertain')",
                    (campaign_id,),
                )
            ]
            transition(c, campaign_id, "withheld", rows, now=now)
        return len(rows)

    def delivery(self, campaign_id: str, member_id: int) -> tuple[str, str] | None:
        """(address, journal state) of a campaign's mail to ``member_id``: a notice's match."""
        with self._read() as c:
            row = c.execute(
                "SELECT address, state FROM deliveries WHERE campaign_id = ? AND member_id = ?",
                (campaign_id, int(member_id)),
            ).fetchone()
        return None if row is None else (str(row[0]), str(row[1]))

    def delivery_address(self, campaign_id: str, member_id: int) -> str | None:
        """The address a campaign's mail to ``member_id`` went to: a bounce's match."""
        with self._read() as c:
            row = c.execute(
                "SELECT address FROM deliveries WHERE campaign_id = ? AND member_id = ?",
                (campaign_id, int(member_id)),
            ).fetchone()
        return None if row is None else str(row[0])

    # --- the unsubscribe server's requests -------------------------------------------------

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
        _check_reason(event.kind)
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
                if c.execute(
                    "INSERT OR IGNORE INTO hygiene_events (event_key, kind, address, at, "
                    "recorded_at, source, campaign_id, member_id, status, detail) "
                    "VALUES (?,?,?,?,?,?,?,?,?,?)",
                    (
                        key,
                        event.kind,
                        address,
                        ts(event.at),
                        ts(now),
                        event.source,
                        event.campaign_id,
                        event.member_id,
                        event.status,
                        event.detail,
                    ),
                ).rowcount:
                    break
            _list(
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

    # --- the write-back to B-Cart ----------------------------------------------------------

    def bcart_changes(self, member_ids: Mapping[str, int] | None = None) -> list[BcartChange]:
        """What B-Cart does not know yet: a change for each listed address whose member and
        field B-Cart has not been sent.

        ``member_ids`` maps a listed address to the one member it was resolved to
        (:func:`bcartnb.hygiene.writeback.resolve_members`); addresses it leaves out are
        not pushed. Without it, each row's own member id (a row without one cannot be
        pushed). See :data:`BCART_FIELDS` for the field each reason sets. A push is
        remembered per member and field until the address that made it is unsuppressed.
        """
        out: list[BcartChange] = []
        with self._read() as c:
            rows = c.execute(
                "SELECT s.member_id, s.address, s.reason FROM suppressions s ORDER BY s.address"
            ).fetchall()
            pushed = {
                (int(m), str(f)) for m, f in c.execute("SELECT member_id, field FROM bcart_pushes")
            }
        for m, a, r in rows:
            member = m if member_ids is None else member_ids.get(str(a))
            if member is None:
                continue
            field, value = BCART_FIELDS[str(r)]
            if (int(member), field) not in pushed:
                out.append(BcartChange(int(member), str(a), str(r), field, value))
        return sorted(out, key=lambda ch: (ch.member_id, ch.field, ch.address))

    def journal_members(self) -> dict[str, frozenset[int]]:
        """Listed address → every member id the journal holds it under.

        Each campaign mail records the member id and the address its member file gave: the
        ledger's own evidence of whose an address entered by hand is. One pass over the
        journal (no index by address; the suppression list is looked up by its key).
        """
        found: dict[str, set[int]] = {}
        with self._read() as c:
            for address, member in c.execute(
                "SELECT DISTINCT s.address, d.member_id FROM deliveries d "
                "JOIN suppressions s ON s.address = lower(d.address)"
            ):
                found.setdefault(str(address), set()).add(int(member))
        return {a: frozenset(ids) for a, ids in found.items()}

    def bcart_pushes(self, address: str) -> list[tuple[int, str, int, datetime]]:
        """(member id, field, value, when) of each change B-Cart accepted for ``address``."""
        key = normalize_address(address)
        with self._read() as c:
            rows = c.execute(
                "SELECT member_id, field, value, pushed_at FROM bcart_pushes WHERE address = ? "
                "ORDER BY member_id, field",
                (key,),
            ).fetchall()
        out = []
        for m, f, v, at in rows:
            when = dt(at)
            assert when is not None
            out.append((int(m), str(f), int(v), when))
        return out

    def record_bcart_push(self, change: BcartChange, *, now: datetime | None = None) -> None:
        """Remember that B-Cart accepted ``change``, so the next push leaves it out.

        Only while its address is listed: one unsuppressed during the push leaves no record
        behind, so listed again it is pushed again.
        """
        now = self._now(now)
        with self._write() as c:
            c.execute(
                "INSERT OR REPLACE INTO bcart_pushes (member_id, field, value, address, "
                "pushed_at) SELECT ?,?,?,?,? "
                "WHERE EXISTS (SELECT 1 FROM suppressions WHERE address = ?)",
                (
                    change.member_id,
                    change.field,
                    change.value,
                    change.address,
                    ts(now),
                    change.address,
                ),
            )
