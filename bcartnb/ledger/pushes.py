"""What the ledger wrote back to B-Cart for its suppressed members, so it is written once.

A listed address's member gets one change in B-Cart (:data:`BCART_FIELDS`); B-Cart's answer
is remembered per member and field (``bcart_pushes``) until the address is unsuppressed, so
the next push leaves out what B-Cart already knows.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from bcartnb.ledger.database import Database, dt, ts
from bcartnb.ledger.suppressions import normalize_address

__all__ = ["BCART_FIELDS", "BcartChange", "BcartPushes"]

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


@dataclass(frozen=True)
class BcartChange:
    """One change to write back to B-Cart for a suppressed member."""

    member_id: int
    address: str
    reason: str
    field: str
    value: int


class BcartPushes(Database):
    """The write-back to B-Cart: what it does not know yet, and what it accepted."""

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
