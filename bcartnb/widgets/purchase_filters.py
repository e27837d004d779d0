"""購入履歴: the 絞込オプション's purchase controls, read back as the contract's filter keys.

Offered when the member frame carries the purchase columns (the wizard was given orders:
``Wizard(..., orders=)``, ``bcartnb wizard --orders``); otherwise the section says how to
give them, its controls disabled. Like the other controls it only builds the filter dict
(``{"顧客グループ": ["休眠"], "最終購入日": {"before": "2026-06-01"}, "購入回数": {"min": 3},
"購入金額合計": {"min": 100000}, "購入商品": {"contains": "A-100"}, "購入カテゴリ": {"contains":
"果物"}}``), the one a campaign file
takes, and shows it in words by :func:`bcartnb.filters.describe_filter`; :mod:`bcartnb.filters`
is the one matcher, run by the wizard's 絞込. Choices come from the members (the groups,
product codes and names, and categories they hold), so a value nobody holds cannot be picked.
"""

from __future__ import annotations

import datetime as dt
import html
from typing import Any, Final

import ipywidgets as widgets
import numpy as np
import pandas as pd
import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.compute as pc  # type: ignore[import-untyped]

from bcartnb.filters import describe_filter
from bcartnb.orders import GROUPS, PURCHASE_COLUMNS

from ._common import row

__all__ = ["NO_ORDERS_HINT", "PurchaseFilters", "has_purchases"]

#: Said in the section when the members carry no purchase columns.
NO_ORDERS_HINT: Final = (
    "購入履歴で絞り込むには、受注ファイルを指定してウィザードを開いてください"
    "（bcartnb wizard --orders 受注.csv、またはノートブックの orders_path）。"
)
_LABEL_STYLE: Final = {"description_width": "7em"}
#: More product codes than this are typed, not listed (a Combobox of 50,000 options is slow).
_MAX_PRODUCTS: Final = 5_000


def has_purchases(members: pd.DataFrame) -> bool:
    """Whether the members were joined with their orders (every purchase column present)."""
    return all(c in members.columns for c in PURCHASE_COLUMNS)


def _groups(members: pd.DataFrame, picked: tuple[str, ...] = ()) -> list[tuple[str, str]]:
    """(「休眠（35人）」, 休眠) for each group some member is in, or that is ``picked``, in
    GROUPS' order."""
    if not has_purchases(members):
        return []
    counts = members["顧客グループ"].value_counts()
    return [
        (f"{g}（{int(counts.get(g, 0)):,}人）", g)
        for g in GROUPS
        if counts.get(g, 0) or g in picked
    ]


def _items(members: pd.DataFrame, column: str) -> list[str]:
    """The items of a list column (購入商品's codes and names, 購入カテゴリ's categories) any
    member holds, sorted (one Arrow pass over the lists)."""
    if not has_purchases(members) or members.empty:
        return []
    lists = pa.chunked_array(pa.array(members[column].array)).combine_chunks()
    codes = pc.unique(pc.list_flatten(lists)).to_numpy(zero_copy_only=False)
    return sorted(str(c) for c in np.asarray(codes, dtype=object))


class PurchaseFilters(widgets.VBox):  # type: ignore[misc]
    """The 購入履歴 box; ``filter`` is what its controls say now (``{}``: no condition)."""

    def __init__(self, members: pd.DataFrame) -> None:
        self.available = has_purchases(members)
        off = not self.available
        groups = _groups(members)
        self.group = widgets.SelectMultiple(
            options=groups,
            value=(),
            rows=min(6, max(2, len(groups))),
            description="顧客グループ",
            style=_LABEL_STYLE,
            disabled=off or not groups,
        )
        self.group.add_class("bcartnb-filter-customer-group")
        self.last_after = widgets.DatePicker(
            description="最終購入日", style=_LABEL_STYLE, disabled=off
        )
        self.last_after.add_class("bcartnb-filter-last-after")
        self.last_before = widgets.DatePicker(description="より後、", disabled=off)
        self.last_before.add_class("bcartnb-filter-last-before")
        self.last_before_label = widgets.HTML("より前")
        self.min_count = widgets.BoundedIntText(
            value=0, min=0, max=1_000_000, description="購入回数", style=_LABEL_STYLE, disabled=off
        )
        self.min_count.add_class("bcartnb-filter-min-count")
        self.min_total = widgets.BoundedIntText(
            value=0,
            min=0,
            max=10**12,
            step=10_000,
            description="購入金額合計",
            style=_LABEL_STYLE,
            disabled=off,
        )
        self.min_total.add_class("bcartnb-filter-min-total")
        self.product = _combobox(_items(members, "購入商品"), "購入商品", "商品コード（例: A-100）")
        self.product.add_class("bcartnb-filter-product")
        self.category = _combobox(_items(members, "購入カテゴリ"), "購入カテゴリ", "カテゴリ名")
        self.category.add_class("bcartnb-filter-category")
        self.words = widgets.HTML("" if self.available else _note(NO_ORDERS_HINT))
        self.words.add_class("bcartnb-purchase-words")
        for w in self.controls:
            w.observe(lambda _c: self._say(), names="value")
        rows = [
            row(self.group),
            row(self.last_after, self.last_before, self.last_before_label),
            row(self.min_count, widgets.HTML("回以上"), self.min_total, widgets.HTML("円以上")),
            row(self.product, widgets.HTML("を買った会員")),
            row(self.category, widgets.HTML("の商品を買った会員")),
        ]
        # without orders only the title and how to give them: the screen stays as it was
        super().__init__(
            [widgets.HTML("<b>購入履歴</b>"), *(rows if self.available else []), self.words]
        )
        self.add_class("bcartnb-purchase-filters")

    @property
    def controls(self) -> list[widgets.Widget]:
        return [
            self.group,
            self.last_after,
            self.last_before,
            self.min_count,
            self.min_total,
            self.product,
            self.category,
        ]

    @property
    def filter(self) -> dict[str, Any]:
        """The purchase keys of the contract's filter for the current controls."""
        if not self.available:
            return {}
        out: dict[str, Any] = {}
        if self.group.value:
            out["顧客グループ"] = list(self.group.value)
        days = {
            op: w.value.isoformat()
            for op, w in (("after", self.last_after), ("before", self.last_before))
            if isinstance(w.value, dt.date)
        }
        if days:
            out["最終購入日"] = days
        if self.min_count.value > 0:
            out["購入回数"] = {"min": int(self.min_count.value)}
        if self.min_total.value > 0:
            out["購入金額合計"] = {"min": int(self.min_total.value)}
        for name, box in (("購入商品", self.product), ("購入カテゴリ", self.category)):
            item = str(box.value).strip()
            if item:
                out[name] = {"contains": item}
        return out

    def clear(self) -> None:
        """Every purchase control back to "no condition"."""
        self.group.value = ()
        self.last_after.value = None
        self.last_before.value = None
        self.min_count.value = 0
        self.min_total.value = 0
        self.product.value = ""
        self.category.value = ""

    def recount(self, members: pd.DataFrame) -> None:
        """The choices counted again for ``members`` (their purchase columns counted to a new
        day): what is picked stays picked, a group nobody is in now shown as （0人）, so the
        search asks what the marketer asked."""
        if not self.available:
            return
        picked = tuple(self.group.value)
        self.group.options = _groups(members, picked)
        self.group.value = picked
        self.group.disabled = not self.group.options
        for box, column in ((self.product, "購入商品"), (self.category, "購入カテゴリ")):
            items = _items(members, column)
            box.options = items if len(items) <= _MAX_PRODUCTS else []
            box.disabled = not items and not box.value

    def _say(self) -> None:
        """The section's conditions in the report's words, as the controls change."""
        flt = self.filter
        self.words.value = _note(describe_filter(flt)) if flt else ""


def _combobox(items: list[str], name: str, hint: str) -> widgets.Combobox:
    """A list column's item, picked from what members hold or typed (past
    :data:`_MAX_PRODUCTS` items); disabled when nobody holds one, or without orders."""
    return widgets.Combobox(
        options=items if len(items) <= _MAX_PRODUCTS else [],
        value="",
        placeholder=hint,
        description=name,
        ensure_option=False,
        style=_LABEL_STYLE,
        disabled=not items,
    )


def _note(text: str) -> str:
    return f'<div style="color:#555;font-size:90%">{html.escape(text)}</div>'
