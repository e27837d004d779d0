"""How orders become purchase columns and customer groups: ``[purchase]``.

The defaults are what a B2B shop usually means by the words: 休眠 is no order for 180 days
(half a year, the issue's 休眠顧客), 離反 no order for a year, 新規 a first order within 90
days, 優良 a frequency and an amount both ranked 4 or 5. The rank bounds are fixed amounts,
not quantiles, so a member's rank does not move when other members order and the report can
say what a rank means in yen and days.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from bcartnb.exceptions import SettingsError
from bcartnb.settings.checks import in_range, read_section

__all__ = ["PurchaseSettings", "purchase_from_file"]

_PURCHASE_KINDS: dict[str, type] = {
    "new_days": int,
    "dormant_days": int,
    "churned_days": int,
    "loyal_rank": int,
    "recency_days": list,
    "frequency": list,
    "monetary": list,
    "excluded_statuses": list,
}


@dataclass(frozen=True)
class PurchaseSettings:
    """Thresholds of the purchase columns (:mod:`bcartnb.orders.purchases`).

    ``recency_days``: four day counts; a last order at most ``recency_days[0]`` days ago is
    R 5, at most ``[1]`` R 4, … , older than ``[3]`` R 1. ``frequency``: four order counts;
    at least ``[3]`` orders is F 5, at least ``[2]`` F 4, … , fewer than ``[0]`` F 1.
    ``monetary``: four amounts in yen (税込), the same way for M. ``excluded_statuses``: the
    対応状況 whose orders do not count (B-Cart's キャンセル and 返品; a shop's own statuses
    can be added).
    """

    new_days: int = 90
    dormant_days: int = 180
    churned_days: int = 365
    loyal_rank: int = 4
    recency_days: tuple[int, ...] = (30, 90, 180, 365)
    frequency: tuple[int, ...] = (2, 3, 5, 10)
    monetary: tuple[int, ...] = (30_000, 100_000, 300_000, 1_000_000)
    excluded_statuses: tuple[str, ...] = ("キャンセル", "返品")

    def __post_init__(self) -> None:
        for key in ("new_days", "dormant_days", "churned_days"):
            in_range(f"[purchase] {key}", getattr(self, key), 1, 36_500, integer=True, unit=" days")
        in_range("[purchase] loyal_rank", self.loyal_rank, 1, 5, integer=True)
        if not self.dormant_days < self.churned_days:
            raise SettingsError(
                f"[purchase] dormant_days ({self.dormant_days}) must be less than churned_days "
                f"({self.churned_days})",
                ja=f"[purchase] dormant_days（{self.dormant_days}）は churned_days"
                f"（{self.churned_days}）より小さくしてください。",
            )
        for key in ("recency_days", "frequency", "monetary"):
            _bounds(key, getattr(self, key))
        for status in self.excluded_statuses:
            if not isinstance(status, str) or not status.strip():
                raise SettingsError(
                    f"[purchase] excluded_statuses: {status!r} is not a status name",
                    ja=f"[purchase] excluded_statuses の {status!r} は"
                    "対応状況の名前ではありません。",
                )


def _bounds(key: str, values: Sequence[Any]) -> None:
    """Four whole numbers, each above the one before."""
    ok = (
        len(values) == 4
        and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in values)
        and all(a < b for a, b in itertools.pairwise(values))
    )
    if not ok:
        raise SettingsError(
            f"[purchase] {key} must be four increasing whole numbers, not {list(values)!r}",
            ja=f"[purchase] {key} は小さい順の整数4つで書いてください"
            f"（例: [30, 90, 180, 365]。{list(values)!r} ではなく）。",
        )


def purchase_from_file(data: Mapping[str, Any], where: str) -> dict[str, Any]:
    """The ``[purchase]`` table's keys, typed; ranges are checked by PurchaseSettings."""
    kw = read_section(data, "purchase", _PURCHASE_KINDS, where)
    return {k: tuple(v) if isinstance(v, list) else v for k, v in kw.items()}
