"""How a member's value reads in a mail: what ``{{ 最終購入日 }}`` or ``{{ 購入商品 }}`` writes.

A member frame holds pandas' values, and Python's ``str`` of them is not what a shop writes:
``2026-08-14 00:00:00+09:00``, ``['A-100', 'りんご']``, ``12345``. Each value a template reads
is shown here as the shop writes it to people, while it stays the value it was, so a
template's logic (``{% if 購入回数 >= 5 %}``, ``{% for p in 購入商品 %}``,
``{{ 最終購入日.strftime("%Y/%m/%d") }}``) works on it as before:

==============================  ==============================================================
a day (初回購入日, 最終購入日;    ``2026年8月14日``, the filter's words for a day
a date column at midnight)      (:func:`~bcartnb.members.columns.day_words`); still a date
a time (登録日時, 更新日時)       ``2023年9月17日 07:50`` (the time as the file holds it)
a list (購入商品, 購入カテゴリ)   its items joined with 「、」; still a list
a purchase quantity             ``12,345`` (:data:`~bcartnb.orders.purchases.QUANTITY_COLUMNS`:
                                購入回数, 購入金額合計, 平均購入金額, 最終購入からの日数);
                                still an int. Ids and other numbers as written
a blank (None, NA, NaT, NaN,    left out of the context: the field is missing, which is an
white space, an empty list)     error in the preview (DESIGN), never a blank, ``<NA>``,
                                ``NaT`` or ``[]`` in a sent mail
==============================  ==============================================================

:func:`~bcartnb.templates.fields.context_builder` is the one caller, and every render path (the
fast templates and the reference pipeline) reads the context it builds, so both write the
same text.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from bcartnb.members.columns import day_words
from bcartnb.orders.purchases import QUANTITY_COLUMNS

__all__ = ["ShownDay", "ShownList", "ShownNumber", "ShownTime", "is_quantity", "shown_value"]


class ShownDay(dt.date):
    """A day that prints as 2026年8月14日."""

    __slots__ = ()

    def __str__(self) -> str:
        return day_words(self.year, self.month, self.day)


class ShownTime(dt.datetime):
    """A moment that prints as 2023年9月17日 07:50."""

    __slots__ = ()

    def __str__(self) -> str:
        return f"{day_words(self.year, self.month, self.day)} {self.hour:02d}:{self.minute:02d}"


class ShownList(list[Any]):
    """A list that prints its items joined with 「、」."""

    __slots__ = ()

    def __str__(self) -> str:
        return "、".join(str(item) for item in self)


class ShownNumber(int):
    """A whole number that prints with thousands separators (12,345), as every count and
    amount bcartnb shows is written."""

    __slots__ = ()

    def __str__(self) -> str:
        return f"{int(self):,}"


def is_quantity(column: str) -> bool:
    """Whether ``column``'s numbers are read with thousands separators (not an id)."""
    return column in QUANTITY_COLUMNS


def _moment(value: dt.datetime) -> Any:
    if value != value:  # NaT is a datetime too
        return None
    midnight = not (value.hour or value.minute or value.second or value.microsecond)
    if midnight and not getattr(value, "nanosecond", 0):
        return ShownDay(value.year, value.month, value.day)
    return ShownTime(
        value.year, value.month, value.day, value.hour, value.minute, value.second,
        value.microsecond, value.tzinfo,
    )  # fmt: skip


def shown_value(value: Any, quantity: bool = False) -> Any:
    """``value`` as a mail shows it (the module's table), None for a blank.

    ``quantity``: the column is one of :data:`~bcartnb.orders.purchases.QUANTITY_COLUMNS`.
    Text and plain numbers, most of what a mail holds, are answered first.
    """
    kind = type(value)
    if kind is str:
        return value if value.strip() else None
    if kind is int:
        return ShownNumber(value) if quantity else value
    if value is None or kind is bool:
        return value
    if kind.__module__ == "numpy":  # a numpy scalar or array: its Python value
        return shown_value(value.tolist(), quantity)
    if isinstance(value, dt.datetime):
        return _moment(value)
    if isinstance(value, dt.date):
        return ShownDay(value.year, value.month, value.day)
    if isinstance(value, list | tuple):
        items = [shown_value(item) for item in value]
        kept = ShownList(item for item in items if item is not None)
        return kept if kept else None
    if isinstance(value, float) and value == value and value.is_integer() and quantity:
        return ShownNumber(int(value))
    try:
        return None if value != value else value  # pandas NA refuses bool(): missing
    except (TypeError, ValueError):
        return None
