"""Which B-Cart member each listed address is: one rule for the API push and the CSV export.

B-Cart changes a member by its id (``PATCH /customers``, 会員インポート), but an address often
lands on the list by itself: ``bcartnb suppress ADDRESS``, a bounce that names only the
address. Skipping those silently let the marketer believe B-Cart knew. So every listed
address is resolved here to exactly one member id, or set aside with the reason:

1. **A member file** (``--members``, or the snapshot ``bcartnb bcart pull`` wrote) is B-Cart's
   own list as of that day, taken as the whole list: it decides. The address must belong to
   one member in it; a row that names its member (an unsubscribe token, a bounce of our own
   mail) must find that member there with that address still.
2. **Without one**, a row's own member id, else the ledger's journal: every campaign mail
   recorded the member id and the address its member file gave.

No member, or several (B-Cart or the shop's files may hold one address on two members), is
never guessed: the address is listed as not pushable (:data:`UNRESOLVED_LABELS`) so the shop
can settle it in B-Cart. The B-Cart API documents no lookup of a customer by address that we
could check (its public notes show ``GET /customers`` paged by ``limit``/``offset``), so
nothing here asks the API per address: a pulled snapshot is the API's answer.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import pandas as pd

from bcartnb.address_key import SPACES
from bcartnb.ledger import Suppression
from bcartnb.ledger.suppressions import REASON_LABELS
from bcartnb.privacy import mask_address

__all__ = [
    "UNRESOLVED_HINTS",
    "UNRESOLVED_LABELS",
    "MemberIndex",
    "Resolution",
    "Unresolved",
    "member_index",
    "members_note",
    "resolve_members",
    "unresolved_counts",
]

#: Why a listed address reaches no member, as the screens say it (codes in the JSON).
UNRESOLVED_LABELS: Final[Mapping[str, str]] = {
    "no_member_id": "会員IDがわからない",
    "ambiguous": "同じアドレスの会員が複数いる",
    "not_in_members": "会員ファイルにこのアドレスの会員がいない",
    "member_missing": "会員ファイルにこの会員IDがない",
    "address_changed": "会員のアドレスが変わっている",
}
#: What the shop can do about each.
UNRESOLVED_HINTS: Final[Mapping[str, str]] = {
    "no_member_id": "送信記録にないアドレスです。bcartnb bcart pull で会員を取得するか、"
    "--members で会員ファイルを指定すると照合します。",
    "ambiguous": "どの会員のアドレスか決められません。"
    "Bカートの管理画面で確かめて変更してください。",
    "not_in_members": "アドレスを変えたか退会した会員です。会員ファイルが古ければ"
    " bcartnb bcart pull で取り直してください。",
    "member_missing": "退会したか、会員ファイルが古い可能性があります"
    "（bcartnb bcart pull で取り直してください）。",
    "address_changed": "Bカートではこの会員のアドレスが変わっています。"
    "新しいアドレスへの配信は止めていません。",
}


@dataclass(frozen=True)
class Unresolved:
    """A listed address the write-back leaves alone, and why (``why``: a code above)."""

    address: str
    reason: str
    why: str
    member_ids: tuple[int, ...] = ()

    @property
    def label(self) -> str:
        return UNRESOLVED_LABELS[self.why]

    @property
    def hint(self) -> str:
        return UNRESOLVED_HINTS[self.why]

    def describe(self) -> str:
        """One line for the screen: the address masked, whose it is not, what to do."""
        ids = f"（会員ID {', '.join(map(str, self.member_ids))}）" if self.member_ids else ""
        return (
            f"{mask_address(self.address)}（{REASON_LABELS[self.reason]}）: "
            f"{self.label}{ids}。{self.hint}"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "address": self.address,
            "reason": self.reason,
            "why": self.why,
            "why_ja": self.label,
            "member_ids": list(self.member_ids),
        }


@dataclass(frozen=True)
class Resolution:
    """Each listed address's one member (and where it was found), or why there is none."""

    member_ids: dict[str, int] = field(default_factory=dict)
    #: address → ``suppression`` (the row's own), ``journal`` or ``members_file``
    sources: dict[str, str] = field(default_factory=dict)
    unresolved: list[Unresolved] = field(default_factory=list)


@dataclass(frozen=True)
class MemberIndex:
    """A member file read for look-ups both ways: address → ids, id → address."""

    by_address: Mapping[str, tuple[int, ...]]
    address_of: Mapping[int, str | None]


def unresolved_counts(items: Iterable[Unresolved]) -> tuple[int, str]:
    """How many, and the counts by reason in words: ``(3, "会員IDがわからない 2 件、…")``."""
    counts = Counter(u.why for u in items)
    words = "、".join(f"{UNRESOLVED_LABELS[why]} {n:,} 件" for why, n in counts.items())
    return sum(counts.values()), words


def members_note(members_file: str | None, pulled_at: str | None = None) -> str:
    """Which evidence the look-up used, said once for the push and the export."""
    if members_file is None:
        return (
            "会員の照合: 送信記録のみ（会員ファイルなし。bcartnb bcart pull で取得するか"
            " --members で指定すると、送信していないアドレスも照合できます）。"
        )
    when = f"、{pulled_at} 取得" if pulled_at else ""
    return f"会員の照合: 会員ファイル {members_file}（Bカートの会員一覧として{when}）。"


def _key(value: object) -> str | None:
    """A member file's address as the list keys it (trimmed, lower-cased), or None."""
    if not isinstance(value, str):
        return None
    key = value.strip(SPACES).lower()
    return key or None


def member_index(members: pd.DataFrame) -> MemberIndex:
    """Index a member frame (``id``, ``email``) for :func:`resolve_members`."""
    by_address: dict[str, list[int]] = {}
    address_of: dict[int, str | None] = {}
    for raw_id, raw_address in zip(members["id"], members["email"], strict=True):
        member = int(raw_id)
        key = _key(raw_address)
        address_of[member] = key
        if key is not None:
            by_address.setdefault(key, []).append(member)
    return MemberIndex({a: tuple(sorted(set(ids))) for a, ids in by_address.items()}, address_of)


def _one(row: Suppression, ids: Iterable[int], missing: str) -> int | Unresolved:
    found = tuple(sorted(set(ids)))
    if len(found) == 1:
        return found[0]
    return Unresolved(row.address, row.reason, "ambiguous" if found else missing, found)


def _against_file(row: Suppression, index: MemberIndex) -> int | Unresolved:
    if row.member_id is None:
        return _one(row, index.by_address.get(row.address, ()), "not_in_members")
    if row.member_id not in index.address_of:
        return Unresolved(row.address, row.reason, "member_missing", (row.member_id,))
    if index.address_of[row.member_id] != row.address:
        return Unresolved(row.address, row.reason, "address_changed", (row.member_id,))
    return row.member_id


def resolve_members(
    suppressions: Iterable[Suppression],
    *,
    journal: Mapping[str, Iterable[int]] | None = None,
    members: pd.DataFrame | MemberIndex | None = None,
) -> Resolution:
    """Resolve each listed address to one member id (see the module's rule), or say why not.

    ``journal`` is :meth:`~bcartnb.ledger.Ledger.journal_members`; ``members`` a member frame
    (or its :func:`member_index`), taken as B-Cart's whole member list when given.
    """
    index = member_index(members) if isinstance(members, pd.DataFrame) else members
    journal = journal or {}
    out = Resolution()
    for row in suppressions:
        if index is not None:
            found, source = _against_file(row, index), "members_file"
        elif row.member_id is not None:
            found, source = row.member_id, "suppression"
        else:
            found, source = _one(row, journal.get(row.address, ()), "no_member_id"), "journal"
        if isinstance(found, Unresolved):
            out.unresolved.append(found)
        else:
            out.member_ids[row.address] = found
            out.sources[row.address] = source
    return out
