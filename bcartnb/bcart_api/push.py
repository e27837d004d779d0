"""Suppressions written back to B-Cart: opt-outs as メール案内 off, bounces as an invalid address.

B-Cart keeps sending its own member mail (and other apps read its member list), so what
bcartnb learns goes back through ``PATCH /customers``. Which field each reason sets
(``mm_flag = 0``, メール案内を受け取らない, for an unsubscribe, a complaint or a manual entry;
``is_invalid_email = 1``, メールアドレス無効設定, for a bounce) is the ledger's rule
(:data:`bcartnb.ledger.BCART_FIELDS`), and so is which changes B-Cart has not been sent yet
(:meth:`~bcartnb.ledger.Ledger.bcart_changes`). Which member an address is, when the list
names none, is :mod:`bcartnb.hygiene.writeback`'s rule: :func:`plan_push` puts the three
together, and every address it cannot push is in the plan with the reason, never dropped.

Nothing is written unless asked (``apply=True``): the default lists every change. Changes go
in batches of 100 members, B-Cart's page size; ``on_applied`` is called after each batch
B-Cart accepted, so the caller can record them and a second push sends nothing again.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import pandas as pd

from bcartnb.bcart_api.client import BcartClient
from bcartnb.bcart_api.snapshot import DEFAULT_SNAPSHOT, snapshot_info
from bcartnb.exceptions import BcartApiError
from bcartnb.hygiene.writeback import (
    Unresolved,
    members_note,
    resolve_members,
    unresolved_counts,
)
from bcartnb.ledger import BcartChange, Ledger
from bcartnb.privacy import mask_address

__all__ = [
    "BATCH_SIZE",
    "PushPlan",
    "PushReport",
    "describe",
    "latest_snapshot",
    "plan_push",
    "push_suppressions",
]

_FIELD_JA: Final = {
    "mm_flag": "メール案内を「受け取らない」に",
    "is_invalid_email": "メールアドレスを「無効」に",
}
_SOURCE_JA: Final = {
    "suppression": "",
    "journal": "（送信記録で照合）",
    "members_file": "（会員ファイルで照合）",
}
#: Members per PATCH: B-Cart's bulk update takes a list (100 a request, as its pages).
BATCH_SIZE: Final = 100


def describe(change: BcartChange, source: str = "suppression") -> str:
    """One line for the dry run, the address masked as in every report."""
    what = _FIELD_JA.get(change.field, change.field)
    return (
        f"会員ID {change.member_id} ({mask_address(change.address)}, {change.reason}): "
        f"{what} ({change.field} = {change.value}){_SOURCE_JA.get(source, '')}"
    )


@dataclass(frozen=True)
class PushPlan:
    """What to push, what B-Cart already has, and every address that cannot be pushed."""

    changes: list[BcartChange]
    unresolved: list[Unresolved] = field(default_factory=list)
    already: int = 0
    sources: Mapping[str, str] = field(default_factory=dict)
    members_file: str | None = None
    members_pulled_at: str | None = None


def plan_push(ledger: Ledger, members: pd.DataFrame | None = None) -> PushPlan:
    """Resolve the list to members (``members``: a member file taken as B-Cart's whole list,
    else the journal) and keep what B-Cart has not been told yet."""
    found = resolve_members(
        ledger.suppressions(), journal=ledger.journal_members(), members=members
    )
    todo = ledger.bcart_changes(found.member_ids)
    told = set(found.member_ids) - {c.address for c in todo}
    attrs = members.attrs if members is not None else {}
    return PushPlan(
        changes=todo,
        unresolved=found.unresolved,
        already=len(told),
        sources=found.sources,
        members_file=None if members is None else str(attrs.get("source") or "（名前なし）"),
        members_pulled_at=attrs.get("pulled_at"),
    )


def latest_snapshot(folders: Iterable[str | os.PathLike[str]]) -> Path | None:
    """The newest ``bcart_members.parquet`` (what ``bcartnb bcart pull`` writes by default)
    among ``folders``, by the time it was pulled; None when there is none.

    A file by that name that is not a snapshot is an error, not skipped: the shop meant it.
    """
    found: dict[Path, Path] = {}
    for folder in folders:
        path = Path(folder) / DEFAULT_SNAPSHOT
        if path.is_file():
            found.setdefault(path.resolve(), path)
    if not found:
        return None
    return max(found.values(), key=lambda p: str(snapshot_info(p).get("pulled_at") or ""))


@dataclass
class PushReport:
    """What a push would do (a dry run) or did (``applied``), and what it leaves alone."""

    changes: list[BcartChange]
    applied: list[BcartChange] = field(default_factory=list)
    dry_run: bool = True
    requests: int = 0
    unresolved: list[Unresolved] = field(default_factory=list)
    already: int = 0
    sources: Mapping[str, str] = field(default_factory=dict)
    members_file: str | None = None
    members_pulled_at: str | None = None
    planned: bool = False  # built from a PushPlan: the member look-up is part of the story

    def as_dict(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "changes": len(self.changes),
            "applied": len(self.applied),
            "mm_flag": sum(c.field == "mm_flag" for c in self.changes),
            "is_invalid_email": sum(c.field == "is_invalid_email" for c in self.changes),
            "members": [
                {
                    "member_id": c.member_id,
                    "reason": c.reason,
                    "field": c.field,
                    "value": c.value,
                    "source": self.sources.get(c.address, "suppression"),
                }
                for c in self.changes
            ],
            "already_pushed": self.already,
            "unpushable": len(self.unresolved),
            "unpushable_reasons": dict(Counter(u.why for u in self.unresolved)),
            "unpushable_addresses": [u.to_dict() for u in self.unresolved],
            "members_file": self.members_file,
            "members_pulled_at": self.members_pulled_at,
        }

    def message(self) -> str:
        lines = [describe(c, self.sources.get(c.address, "suppression")) for c in self.changes]
        if not self.changes:
            lines.append("Bカートに反映する配信停止はありません。")
        elif self.dry_run:
            lines.append(
                f"確認のみ（Bカートは変更していません）: {len(self.changes)} 件。"
                "反映するには --apply を付けてください。"
            )
        else:
            lines.append(f"Bカートに反映しました: {len(self.applied)} 件。")
        if self.already:
            lines.append(f"反映済みのため送らない配信停止: {self.already} 件。")
        lines += self._unresolved_lines()
        if self.planned:
            lines.append(self._members_line())
        return "\n".join(lines)

    def _unresolved_lines(self) -> list[str]:
        if not self.unresolved:
            return []
        n, counts = unresolved_counts(self.unresolved)
        return [
            f"Bカートに反映できない配信停止: {n:,} 件（{counts}）。"
            "アドレスは --json で確かめられます。",
            *(f"  {u.describe()}" for u in self.unresolved),
        ]

    def _members_line(self) -> str:
        return members_note(self.members_file, self.members_pulled_at)


def _merge(changes: Iterable[BcartChange]) -> list[BcartChange]:
    """The same change twice is one. Two listed addresses of one member stay two lines (each
    is shown and recorded); the PATCH body holds the member once."""
    return list(dict.fromkeys(changes))


def push_suppressions(
    changes: Iterable[BcartChange] | PushPlan,
    client: BcartClient,
    *,
    apply: bool = False,
    batch_size: int = BATCH_SIZE,
    on_applied: Callable[[Sequence[BcartChange]], None] | None = None,
) -> PushReport:
    """List the changes, or (``apply=True``) PATCH them into B-Cart batch by batch.

    Given a :class:`PushPlan`, the report also carries what the plan leaves alone. A batch
    B-Cart refuses stops the push with :class:`BcartApiError`, saying how many were applied
    before it; ``on_applied`` has been told of those, so nothing is sent twice.
    """
    plan = changes if isinstance(changes, PushPlan) else PushPlan(list(changes))
    todo = _merge(plan.changes)
    report = PushReport(
        changes=todo,
        dry_run=not apply,
        unresolved=list(plan.unresolved),
        already=plan.already,
        sources=plan.sources,
        members_file=plan.members_file,
        members_pulled_at=plan.members_pulled_at,
        planned=isinstance(changes, PushPlan),
    )
    if not apply:
        return report
    for start in range(0, len(todo), batch_size):
        batch = todo[start : start + batch_size]
        body: dict[int, dict[str, int]] = {}
        for change in batch:
            body.setdefault(change.member_id, {"id": change.member_id})[change.field] = change.value
        try:
            reply = client.patch("customers", {"customers": list(body.values())})
            if reply is None:
                raise BcartApiError(
                    "PATCH customers: HTTP 404 (is [bcart] api_url right?)",
                    ja="BカートAPIの会員更新が見つかりません"
                    "（[bcart] api_url を確かめてください）。",
                )
        except BcartApiError as err:
            raise BcartApiError(
                f"{err} ({len(report.applied)} of {len(todo)} changes applied before this)",
                ja=f"{err.ja} Bカートに反映できたのは {len(report.applied)} / {len(todo)} 件です。",
            ) from err
        report.requests += 1
        report.applied.extend(batch)
        if on_applied is not None:
            on_applied(batch)
    return report
