"""Suppressions written back to B-Cart: opt-outs as メール案内 off, bounces as an invalid address.

B-Cart keeps sending its own member mail (and other apps read its member list), so what
bcartnb learns goes back through ``PATCH /customers``. Which field each reason sets
(``mm_flag = 0``, メール案内を受け取らない, for an unsubscribe, a complaint or a manual entry;
``is_invalid_email = 1``, メールアドレス無効設定, for a bounce) is the ledger's rule
(:data:`bcartnb.ledger.BCART_FIELDS`), and so is which changes B-Cart has not been sent yet
(:meth:`~bcartnb.ledger.Ledger.bcart_changes`). Nothing is written unless asked
(``apply=True``): the default lists every change. Changes go in batches of 100 members,
B-Cart's page size; ``on_applied`` is called after each batch B-Cart accepted, so the
caller can record them and a second push sends nothing again.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from bcartnb.bcart_api.client import BcartClient
from bcartnb.delivery.summary import mask_address
from bcartnb.exceptions import BcartApiError
from bcartnb.ledger import BcartChange

__all__ = ["BATCH_SIZE", "PushReport", "describe", "push_suppressions"]

_FIELD_JA: Final = {
    "mm_flag": "メール案内を「受け取らない」に",
    "is_invalid_email": "メールアドレスを「無効」に",
}
#: Members per PATCH: B-Cart's bulk update takes a list (100 a request, as its pages).
BATCH_SIZE: Final = 100


def describe(change: BcartChange) -> str:
    """One line for the dry run, the address masked as in every report."""
    what = _FIELD_JA.get(change.field, change.field)
    return (
        f"会員ID {change.member_id} ({mask_address(change.address)}, {change.reason}): "
        f"{what} ({change.field} = {change.value})"
    )


@dataclass
class PushReport:
    """What a push would do (a dry run) or did (``applied``)."""

    changes: list[BcartChange]
    applied: list[BcartChange] = field(default_factory=list)
    dry_run: bool = True
    requests: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "changes": len(self.changes),
            "applied": len(self.applied),
            "mm_flag": sum(c.field == "mm_flag" for c in self.changes),
            "is_invalid_email": sum(c.field == "is_invalid_email" for c in self.changes),
            "members": [
                {"member_id": c.member_id, "reason": c.reason, "field": c.field, "value": c.value}
                for c in self.changes
            ],
        }

    def message(self) -> str:
        if not self.changes:
            return "Bカートに反映する配信停止はありません。"
        lines = [describe(c) for c in self.changes]
        if self.dry_run:
            lines.append(
                f"確認のみ（Bカートは変更していません）: {len(self.changes)} 件。"
                "反映するには --apply を付けてください。"
            )
        else:
            lines.append(f"Bカートに反映しました: {len(self.applied)} 件。")
        return "\n".join(lines)


def _merge(changes: Iterable[BcartChange]) -> list[BcartChange]:
    """One change per member and field: the same member twice is one update."""
    seen: dict[tuple[int, str], BcartChange] = {}
    for change in changes:
        seen.setdefault((change.member_id, change.field), change)
    return list(seen.values())


def push_suppressions(
    changes: Iterable[BcartChange],
    client: BcartClient,
    *,
    apply: bool = False,
    batch_size: int = BATCH_SIZE,
    on_applied: Callable[[Sequence[BcartChange]], None] | None = None,
) -> PushReport:
    """List the changes, or (``apply=True``) PATCH them into B-Cart batch by batch.

    A batch B-Cart refuses stops the push with :class:`BcartApiError`, saying how many were
    applied before it; ``on_applied`` has been told of those, so nothing is sent twice.
    """
    todo = _merge(changes)
    report = PushReport(changes=todo, dry_run=not apply)
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
