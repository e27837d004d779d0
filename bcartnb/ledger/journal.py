"""The mail journal: one row per (campaign, member), and the one state machine it follows.

Every change of a row's state goes through :func:`~bcartnb.ledger.lifecycle.transition`,
the one state machine of :mod:`bcartnb.ledger.lifecycle` (drawn there, with what counts in
the quota and when), which refuses (changing nothing) a move its table does not allow or a
row that is not in the state its caller believes.

A row is ``sending`` only while its SMTP transaction may be under way, and each result is
committed before the loop hands anything else over, so after a SIGKILL a resume sends the
``pending`` and ``deferred`` rows and nobody twice; only the rows that were in flight (at
most one per connection) are ``uncertain``, and resending them is the user's explicit choice.

The suppression list is checked inside the hand-over's own transaction (:meth:`Journal.hand_over`):
a row whose address is listed when it would be handed over is ``withheld`` instead, so an
unsubscribe committed before a mail's hand-over always holds, and one committed after it
(the mail is ``sending``, its SMTP transaction under way) changes nothing about that mail.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from datetime import datetime
from typing import TYPE_CHECKING, Any, NamedTuple

from bcartnb.exceptions import CampaignStateError, QuotaExceededError
from bcartnb.ledger.database import ts
from bcartnb.ledger.lifecycle import (
    COUNTED_FROM,
    RESULT_STATES,
    TRANSITIONS,
    DeliveryResult,
    RowsRefused,
    transition,
)
from bcartnb.ledger.reservations import Reservations, mine
from bcartnb.ledger.suppressions import withhold_listed
from bcartnb.quota import TOKYO, month_of

if TYPE_CHECKING:
    import pandas as pd

# COUNTED_FROM, TRANSITIONS, DeliveryResult and transition are lifecycle's, named here too
# for the callers that import them from the journal.
__all__ = [
    "COUNTED_FROM",
    "TRANSITIONS",
    "DeliveryResult",
    "Handover",
    "Journal",
    "Recipient",
    "transition",
]


class Recipient(NamedTuple):
    """A journal row to (re)send; ``attempts`` counts earlier hand-overs to the server."""

    member_id: int
    address: str
    attempts: int
    state: str


class Handover(NamedTuple):
    """One step of the send loop, as committed: the units the hand-over counted, and the
    rows it withheld instead of handing over (their address is on the suppression list)."""

    counted: int
    withheld: tuple[int, ...] = ()


def insert_recipients(
    c: sqlite3.Connection, campaign_id: str, rows: Iterable[tuple[int, str]]
) -> int:
    """A new campaign's sendable recipients, every one ``pending``."""
    data = [(campaign_id, int(m), str(a)) for m, a in rows]
    seen: set[int] = set()
    for _, m, _ in data:
        if m in seen:
            raise CampaignStateError(
                f"campaign {campaign_id}: member {m} is a recipient twice",
                ja=f"キャンペーン {campaign_id} で会員 {m} が二重に宛先になっています。",
            )
        seen.add(m)
    c.executemany("INSERT INTO deliveries (campaign_id, member_id, address) VALUES (?,?,?)", data)
    return len(data)


def journal_counts(c: sqlite3.Connection, campaign_id: str) -> dict[str, int]:
    return dict(
        c.execute(
            "SELECT state, count(*) FROM deliveries WHERE campaign_id = ? GROUP BY state",
            (campaign_id,),
        ).fetchall()
    )


class Journal(Reservations):
    """The send loop's side of the ledger: hand mails over, record what became of them."""

    def exchange(
        self,
        campaign_id: str,
        results: Iterable[DeliveryResult | tuple[Any, ...]],
        handovers: Iterable[tuple[int, str]],
        *,
        resend: bool = False,
        now: datetime | None = None,
    ) -> int:
        """:meth:`hand_over`, returning only the units counted (for callers that never
        start a mail: a listed row is withheld all the same)."""
        return self.hand_over(campaign_id, results, handovers, resend=resend, now=now).counted

    def hand_over(
        self,
        campaign_id: str,
        results: Iterable[DeliveryResult | tuple[Any, ...]],
        handovers: Iterable[tuple[int, str]],
        *,
        resend: bool = False,
        now: datetime | None = None,
    ) -> Handover:
        """Record results, then hand the next mails over, in ONE commit: the send loop's step.

        ``handovers`` are (member id, state the row is in: ``pending``, ``deferred``, or
        ``uncertain`` with ``resend=True``). A row whose address is on the suppression list
        at that moment is ``withheld`` instead (counting nothing) and named in the result:
        the loop must not start it. Handing over needs this process's reservation
        and room in it for the rows that count; refused (changing nothing but the results,
        which are committed alone: the mails they describe are out, whatever happens to the
        next ones) with :class:`CampaignStateError` or
        :class:`~bcartnb.exceptions.QuotaExceededError`. Results alone are accepted from a
        process whose reservation was reclaimed: late news is still the truth.
        """
        items = [r if isinstance(r, DeliveryResult) else DeliveryResult(*r) for r in results]
        for r in items:
            if r.state not in RESULT_STATES:
                raise ValueError(
                    f"member {r.member_id}: result state must be one of "
                    f"{', '.join(RESULT_STATES)}, not {r.state!r}"
                )
        hand = [(int(m), str(s)) for m, s in handovers]
        now = self._now(now)
        try:
            return self._commit_step(campaign_id, items, hand, resend, now)
        except (CampaignStateError, QuotaExceededError):
            if not (items and hand):
                raise
            self._commit_step(campaign_id, items, [], resend, now)
            raise

    def mark_sending(
        self,
        campaign_id: str,
        handovers: Iterable[tuple[int, str]],
        *,
        resend: bool = False,
        now: datetime | None = None,
    ) -> int:
        """Hand rows over to the server (see :meth:`exchange`); returns the units counted."""
        return self.exchange(campaign_id, [], handovers, resend=resend, now=now)

    def mark_results(
        self,
        campaign_id: str,
        results: Iterable[DeliveryResult | tuple[Any, ...]],
        *,
        now: datetime | None = None,
    ) -> int:
        """Record what became of handed-over mails, in one commit; returns how many."""
        items = list(results)
        self.exchange(campaign_id, items, [], now=now)
        return len(items)

    def _commit_step(
        self,
        campaign_id: str,
        items: list[DeliveryResult],
        hand: list[tuple[int, str]],
        resend: bool,
        now: datetime,
    ) -> Handover:
        """:meth:`_step` in its own write transaction; a refused row named after the rollback."""
        try:
            with self._write() as c:
                return self._step(c, campaign_id, items, hand, resend, now)
        except RowsRefused as refused:
            raise self._bad_rows(campaign_id, refused) from None

    def _step(
        self,
        c: sqlite3.Connection,
        campaign_id: str,
        items: list[DeliveryResult],
        hand: list[tuple[int, str]],
        resend: bool,
        now: datetime,
    ) -> Handover:
        row = c.execute(
            "SELECT month, plan, held, pid, host, proc_start FROM reservations "
            "WHERE campaign_id = ?",
            (campaign_id,),
        ).fetchone()
        ours = row is not None and mine(row[3], row[4], row[5])
        if hand and not ours:
            self._own_reservation(c, campaign_id, now)  # raises, naming why
        units = 0
        if items:
            by_state: dict[str, list[DeliveryResult]] = {}
            for r in items:
                by_state.setdefault(r.state, []).append(r)
            for state, group in by_state.items():
                if state == "unsent":
                    units += transition(
                        c, campaign_id, "unsent", [r.member_id for r in group], now=now
                    )
                else:
                    transition(c, campaign_id, state, group, now=now)
        counted = 0
        withheld: tuple[int, ...] = ()
        if hand:
            withheld = withhold_listed(c, campaign_id, now, [m for m, _ in hand])
            if withheld:
                gone = set(withheld)
                hand = [(m, s) for m, s in hand if m not in gone]
        if hand:
            assert row is not None
            month = month_of(now)
            if row[0] != month:
                self._move_to_month(c, campaign_id, str(row[1]), month, int(row[2]) - units)
            need = sum(1 for _, s in hand if s in COUNTED_FROM)
            self._take_units(c, campaign_id, int(row[2]) - units, need)
            counted = transition(c, campaign_id, "sending", hand, now=now, resend=resend)
        if ours:
            c.execute(
                "UPDATE reservations SET held = held - ?, lease_until = ?, heartbeat_at = ? "
                "WHERE campaign_id = ?",
                (units + counted, (now + self.lease).timestamp(), ts(now), campaign_id),
            )
        return Handover(counted, withheld)

    # --- reading the journal -------------------------------------------------------------

    def to_send(self, campaign_id: str, *, resend_uncertain: bool = False) -> list[Recipient]:
        """What a run hands over: ``pending`` and ``deferred`` rows (and ``uncertain`` ones
        when resent on purpose), in member id order."""
        states = (
            ("pending", "deferred", "uncertain") if resend_uncertain else ("pending", "deferred")
        )
        return self._rows(campaign_id, states)

    def pending(self, campaign_id: str) -> list[Recipient]:
        """Rows never handed over, in member id order."""
        return self._rows(campaign_id, ("pending",))

    def deferred(self, campaign_id: str) -> list[Recipient]:
        """Rows the server answered with a 4xx (or dropped before the data): to retry."""
        return self._rows(campaign_id, ("deferred",))

    def uncertain(self, campaign_id: str) -> list[Recipient]:
        """Rows lost after the data, or in flight when their run died: maybe delivered."""
        return self._rows(campaign_id, ("uncertain",))

    def failures(self, campaign_id: str) -> list[tuple[int, str, int | None, str]]:
        """(member id, address, SMTP code, reply) of each failed mail, in member id order."""
        with self._read() as c:
            self._status(c, campaign_id)
            rows = c.execute(
                "SELECT member_id, address, code, message FROM deliveries "
                "WHERE campaign_id = ? AND state = 'failed' ORDER BY member_id",
                (campaign_id,),
            ).fetchall()
        return [
            (int(m), str(a), None if k is None else int(k), str(t or "")) for m, a, k, t in rows
        ]

    def deliveries(self, campaign_id: str) -> pd.DataFrame:
        """The campaign's journal as a DataFrame (for the report), in member id order."""
        import pandas as pd

        cols = [
            "member_id",
            "address",
            "state",
            "attempts",
            "code",
            "message",
            "counted_month",
            "sending_at",
            "result_at",
        ]
        with self._read() as c:
            self._status(c, campaign_id)
            rows = c.execute(
                f"SELECT {', '.join(cols)} FROM deliveries WHERE campaign_id = ? "
                "ORDER BY member_id",
                (campaign_id,),
            ).fetchall()
        frame = pd.DataFrame(rows, columns=cols)
        for col in ("sending_at", "result_at"):
            frame[col] = pd.to_datetime(frame[col], utc=True).dt.tz_convert(TOKYO)
        return frame

    def _rows(self, campaign_id: str, states: tuple[str, ...]) -> list[Recipient]:
        with self._read() as c:
            self._status(c, campaign_id)
            return [
                Recipient(int(m), str(a), int(n), str(s))
                for m, a, n, s in c.execute(
                    "SELECT member_id, address, attempts, state FROM deliveries "
                    f"WHERE campaign_id = ? AND state IN ({', '.join('?' * len(states))}) "
                    "ORDER BY member_id",
                    (campaign_id, *states),
                )
            ]

    def _bad_rows(self, campaign_id: str, refused: RowsRefused) -> CampaignStateError:
        """A refused batch as a CampaignStateError naming the rows, read after the rollback."""
        seen: set[int] = set()
        bad: list[str] = []
        with self._read() as c:
            self._status(c, campaign_id)
            for m in refused.ids:
                row = c.execute(
                    "SELECT state FROM deliveries WHERE campaign_id = ? AND member_id = ?",
                    (campaign_id, m),
                ).fetchone()
                if m in seen:
                    bad.append(f"{m} (twice in the batch)")
                elif row is None:
                    bad.append(f"{m} (not a recipient)")
                elif row[0] not in refused.allowed:
                    bad.append(f"{m} ({row[0]})")
                seen.add(m)
                if len(bad) == 5:
                    break
        return CampaignStateError(
            f"campaign {campaign_id}: cannot {refused.action} for member "
            f"{', '.join(bad) or '?'}; expected state {' or '.join(refused.allowed)}; "
            "nothing was changed"
        )
