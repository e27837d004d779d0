"""絞込オプション for the custom fields (カスタム項目: 業種, 会員ランク, …) and names beside ids.

Each custom column of the member file gets the control its values call for: a list when it
holds few distinct values (業種), a range for numbers, from/to for dates, a yes/no for
booleans, and a 「を含む」 box for free text. Whatever is picked is read back as the contract's
filter (:mod:`bcartnb.filters`), keyed by the column's header, so the wizard's filter is the
very dict ``bcartnb members --filter`` and a campaign file take; the column's type is the one
:func:`~bcartnb.filters.validate_filter` reads from the frame, so a filter made here is never
refused there.

価格グループ and 営業担当 are shown as 「2: 卸A」 where ``[names]`` in ``bcartnb.toml`` names
them (:class:`~bcartnb.settings.IdNames`); the filter keeps the ids.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any, Final

import ipywidgets as widgets
import pandas as pd

from bcartnb.exceptions import FilterError
from bcartnb.members import CANONICAL_COLUMNS
from bcartnb.orders import PURCHASE_COLUMNS
from bcartnb.settings import IdNames

from ._common import row
from .purchase_filters import has_purchases

__all__ = ["MAX_CHOICES", "CustomFilters", "id_options", "name_ids", "relabel_ids"]

#: A text column with at most this many distinct values is offered as a list.
MAX_CHOICES: Final = 30
_STYLE: Final = {"description_width": "7em"}
_YES_NO: Final = (("指定なし", ""), ("はい", "yes"), ("いいえ", "no"))


def id_options(values: list[Any], names: Mapping[int, str]) -> list[tuple[str, Any]]:
    """The list's entries for ids: 「2: 卸A」 where the id has a name, else 「2」."""
    return [(f"{v}: {names[v]}" if v in names else str(v), v) for v in values]


def relabel_ids(select: widgets.SelectMultiple, names: Mapping[int, str]) -> None:
    """Name the ids of a 価格グループ or 営業担当 list in place (the values stay the ids)."""
    if names:
        select.options = id_options([v for _, v in select.options], names)


def _kind(series: pd.Series) -> str:
    if pd.api.types.is_bool_dtype(series.dtype):
        return "bool"
    if pd.api.types.is_integer_dtype(series.dtype):
        return "int"
    if pd.api.types.is_datetime64_any_dtype(series.dtype):
        return "date"
    values = series.dropna().unique()
    return "choice" if 0 < len(values) <= MAX_CHOICES else "text"


def _whole(text: str, label: str, what: str) -> int | None:
    text = text.strip().replace(",", "")
    if not text:
        return None
    try:
        return int(text)
    except ValueError:
        raise FilterError(
            f"filter key {label!r}: {what} {text!r} is not a whole number",
            ja=f"絞込条件「{label}」: {what}は 3 のように整数で書いてください（{text!r}）。",
        ) from None


class _Field:
    """One custom column's control(s) and the condition they say."""

    def __init__(self, column: str, series: pd.Series, css: str) -> None:
        self.column, self.kind = column, _kind(series)
        self.controls: list[widgets.Widget] = []
        label = column if len(column) <= 10 else column[:9] + "…"
        if self.kind == "choice":
            values = sorted(series.dropna().unique().tolist(), key=str)
            w: widgets.Widget = widgets.SelectMultiple(
                options=[(str(v), v) for v in values],
                value=(),
                description=label,
                rows=min(6, max(2, len(values))),
                style=_STYLE,
            )
            self.controls = [w]
        elif self.kind == "int":
            self.controls = [
                widgets.Text(description=label, placeholder="以上", style=_STYLE),
                widgets.Text(description="〜", placeholder="以下", style=_STYLE),
            ]
        elif self.kind == "date":
            self.controls = [
                widgets.DatePicker(description=label, style=_STYLE),
                widgets.DatePicker(description="〜", style=_STYLE),
            ]
        elif self.kind == "bool":
            self.controls = [
                widgets.Dropdown(options=list(_YES_NO), value="", description=label, style=_STYLE)
            ]
        else:
            self.controls = [widgets.Text(description=label, placeholder="を含む", style=_STYLE)]
        for i, c in enumerate(self.controls):
            c.add_class(f"{css}-{i}" if i else css)
            c.tooltip = column
        self.widget = row(*self.controls)

    def condition(self) -> Any:
        """The filter value for this column, or None when nothing is picked."""
        c = self.controls
        if self.kind == "choice":
            return list(c[0].value) or None
        if self.kind == "int":
            low = _whole(str(c[0].value), self.column, "下限")
            high = _whole(str(c[1].value), self.column, "上限")
            rng = {k: v for k, v in (("min", low), ("max", high)) if v is not None}
            return rng or None
        if self.kind == "date":
            days = {
                k: w.value.isoformat()
                for k, w in (("from", c[0]), ("to", c[1]))
                if isinstance(w.value, dt.date)
            }
            return days or None
        if self.kind == "bool":
            return None if not c[0].value else c[0].value == "yes"
        text = str(c[0].value).strip()
        return {"contains": text} if text else None

    def clear(self) -> None:
        for c in self.controls:
            c.value = (
                ()
                if isinstance(c, widgets.SelectMultiple)
                else (None if isinstance(c, widgets.DatePicker) else "")
            )


class CustomFilters(widgets.VBox):  # type: ignore[misc]
    """The カスタム項目 part of 絞込オプション; empty (and hidden) when the file has none."""

    def __init__(self, members: pd.DataFrame) -> None:
        canonical = set(CANONICAL_COLUMNS)
        if has_purchases(members):  # joined with the orders: 購入履歴 has its own section
            canonical |= set(PURCHASE_COLUMNS)
        custom = [str(c) for c in members.columns if str(c) not in canonical]
        self.fields = {
            c: _Field(c, members[c], f"bcartnb-custom-filter-{i}") for i, c in enumerate(custom)
        }
        kids = [f.widget for f in self.fields.values()]
        head = widgets.HTML("<b>カスタム項目</b>") if kids else widgets.HTML("")
        super().__init__([head, *kids])
        self.add_class("bcartnb-custom-filters")

    @property
    def controls(self) -> list[widgets.Widget]:
        return [c for f in self.fields.values() for c in f.controls]

    @property
    def filter(self) -> dict[str, Any]:
        """The contract's filter for the picked custom fields, keyed by their headers."""
        out = {}
        for column, f in self.fields.items():
            cond = f.condition()
            if cond is not None:
                out[column] = cond
        return out

    def field(self, column: str) -> list[widgets.Widget]:
        """The control(s) of one custom column (for scripts and tests)."""
        return self.fields[column].controls

    def clear(self) -> None:
        for f in self.fields.values():
            f.clear()


def name_ids(
    price_group: widgets.SelectMultiple, salesman: widgets.SelectMultiple, names: IdNames
) -> None:
    """価格グループ and 営業担当 lists with the names ``[names]`` gives."""
    relabel_ids(price_group, names.price_groups)
    relabel_ids(salesman, names.sales_staff)
