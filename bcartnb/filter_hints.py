"""A filter value no member holds, named with the values members do hold near it.

「東京」 for 都道府県 matches nobody (the members hold 東京都), and a filter that matches
nobody is not an error: the search result is simply empty, 送信件数 0, and the marketer is
left guessing. Each text value of an equals or one-of condition that no member holds becomes
one line with the nearest values that exist (:func:`bcartnb.near.near_names`), for the command
line and the wizard's 絞込 to say beside the count. A hint, never a refusal: a value may be
meant for members not in this file yet.
"""

from __future__ import annotations

import unicodedata
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
        present = pd.Series(column.dropna().unique(), dtype="str")
        folded = _folded(present)
        label = COLUMN_LABELS.get(cond.column, cond.column)
        for value in absent:
            near = near_names(value, _candidates(present, folded, value))
            out.append(
                f"絞込条件「{label}」の「{value}」に当たる会員はいません。"
                + (f"近い値: {quoted(near)}。" if near else "")
            )
    return out


#: Above this many distinct values (会社名 of 100,000 members), only the values sharing the most
#: two-character pieces with the typed one are compared: difflib over every one would take
#: seconds, and a hint is not worth a wait.
MANY = 2_000
_PIECES = 8


def _folded(present: pd.Series) -> pd.Series | None:
    """The distinct values after NFKC and case folding, once a column; None when few."""
    return present.str.normalize("NFKC").str.casefold() if len(present) > MANY else None


def _candidates(present: pd.Series, folded: pd.Series | None, value: str) -> list[str]:
    """The values worth comparing with ``value``: all of them, or the :data:`MANY` sharing the
    most two-character pieces with it (vectorised, on the ``folded`` values)."""
    if folded is None:
        return [str(v) for v in present.tolist()]
    key = unicodedata.normalize("NFKC", value).strip().casefold()
    grams = [key[i : i + 2] for i in range(max(len(key) - 1, 1))]
    step = max(len(grams) // _PIECES, 1)
    score = sum(
        (folded.str.contains(g, regex=False).astype("int64") for g in grams[::step][:_PIECES]),
        start=pd.Series(0, index=present.index),
    )
    best = score[score > 0].sort_values(ascending=False, kind="stable").head(MANY)
    return [str(v) for v in present[best.index].tolist()]
