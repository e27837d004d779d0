"""A filter value no member holds, named with the values members do hold near it.

「東京」 for 都道府県 matches nobody (the members hold 東京都), and a filter that matches
nobody is not an error: the search result is simply empty, 送信件数 0, and the marketer is
left guessing. Each text value of an equals or one-of condition that no member holds becomes
one line with the nearest values that exist (:func:`bcartnb.near.near_names`), for the command
line and the wizard's 絞込 to say beside the count. A hint, never a refusal: a value may be
meant for members not in this file yet.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

from bcartnb.filters import validate_filter
from bcartnb.members import COLUMN_LABELS
from bcartnb.near import near_names, quoted

__all__ = ["value_hints"]


def value_hints(members: pd.DataFrame, filter: Mapping[str, Any] | None) -> list[str]:
    """One line a text value in ``filter`` that no member holds, with near values members
    hold; [] when every value is held. A malformed filter is :func:`validate_filter`'s
    :class:`~bcartnb.exceptions.FilterError`."""
    out: list[str] = []
    for cond in validate_filter(filter, members):
        if cond.kind != "str" or cond.op not in ("equals", "one_of"):
            continue
        values = cond.value if cond.op == "one_of" else (cond.value,)
        wanted = [v for v in dict.fromkeys(values) if isinstance(v, str)]
        if not wanted:
            continue
        column = members[cond.column]
        held = column.isin(wanted).to_numpy(dtype=bool, na_value=False)
        found = set(column[held].tolist())
        absent = [v for v in wanted if v not in found]
        if not absent:
            continue
        present = [str(v) for v in column.dropna().unique().tolist()]
        label = COLUMN_LABELS.get(cond.column, cond.column)
        for value in absent:
            near = near_names(value, present)
            out.append(
                f"絞込条件「{label}」の「{value}」に当たる会員はいません。"
                + (f"近い値: {quoted(near)}。" if near else "")
            )
    return out
