"""The filter (絞込オプション) and the selection (検索結果すべて / チェックした会員).

A filter is plain data, a dict that survives JSON, TOML and papermill unchanged, so the same
campaign narrows the same members from the wizard, a notebook or the command line, and the
report can print it (:func:`describe_filter`). Each key is a column, the keys are ANDed:

=====================================================  ==========================================
``{"pref": "東京都"}``                                  equals (``None``: the cell is blank)
``{"pref": ["東京都", "大阪府"]}``                        one of
``{"comp_name": {"contains": "商事"}}``                  contains (text columns)
``{"price_group_id": {"min": 2, "max": 5}}``             range, both ends inclusive (numbers)
``{"created_at": {"from": "2025-01-01", "to": ...}}``    whole days in Asia/Tokyo, inclusive
``{"最終購入日": {"before": "2026-06-01"}}``              before the day (``after``: after it)
``{"購入商品": {"contains": "A-100"}}``                  a list column holds that item, exactly
``{"mm_flag": true}``                                   booleans
=====================================================  ==========================================

A key is a canonical column (``pref``), a Japanese header (``都道府県``) or a custom column's
header (``業種``). Values are typed: ``3`` for a number column, never ``"3"``; a mistake is a
:class:`FilterError` naming the key, never a silently empty result. Every test is a
vectorised pandas operation: a million members filter in a few tens of milliseconds.
"""

from __future__ import annotations

import datetime as dt
import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import pandas as pd
import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.compute as pc  # type: ignore[import-untyped]

from bcartnb.exceptions import FilterError, SelectionError
from bcartnb.members import COLUMN_KINDS, COLUMN_LABELS, HEADER_ALIASES
from bcartnb.members.columns import day_parts, day_words
from bcartnb.members.typed import tokyo_times

__all__ = [
    "OPERATORS",
    "Condition",
    "apply_filter",
    "describe_filter",
    "resolve_column",
    "select",
    "validate_filter",
]

#: The operators a key may take in its dict form.
OPERATORS: Final[tuple[str, ...]] = ("contains", "min", "max", "from", "to", "before", "after")
_KIND_NAMES: Final[Mapping[str, str]] = {
    "int": "a whole number",
    "str": "text",
    "bool": "true or false",
    "datetime": "a date (YYYY-MM-DD)",
    "list": "a list (of product codes)",
}
_KIND_JA: Final[Mapping[str, str]] = {
    "int": "整数",
    "str": "文字",
    "bool": "true / false",
    "datetime": "日付（YYYY-MM-DD）",
    "list": "一覧（商品コードなど）",
}
#: Which operators fit which column kind, and what to say when one does not.
_OPERATOR_KINDS: Final[Mapping[str, tuple[str, str, str]]] = {
    "contains": ("str", "a text column", "文字の列"),
    "min": ("int", "a number column", "数の列"),
    "max": ("int", "a number column", "数の列"),
    "from": ("datetime", "a date column", "日付の列"),
    "to": ("datetime", "a date column", "日付の列"),
    "before": ("datetime", "a date column", "日付の列"),
    "after": ("datetime", "a date column", "日付の列"),
}
_CUSTOM_TYPES: Final = (
    "a custom column is whole numbers only when every value is one (no leading zero, as in "
    "0123), and dates only when every value is a date; otherwise it is text"
)
_CUSTOM_TYPES_JA: Final = (
    "カスタム項目は、すべての値が整数（0123 のような先頭の0なし）なら整数の列、"
    "すべてが日付なら日付の列、それ以外は文字の列になります"
)


def _key_error(key: Any, detail: str, ja: str) -> FilterError:
    """One wording for every mistake in one key: the key first, in both languages."""
    return FilterError(f"filter key {key!r}: {detail}", ja=f"絞込条件「{key}」: {ja}")


def _unknown_operator(key: Any, op: Any) -> FilterError:
    if op is None:
        return _key_error(
            key,
            f"empty operator dict; use one of {', '.join(OPERATORS)}",
            f"条件が空です（{'、'.join(OPERATORS)} のどれかを書いてください）。",
        )
    return _key_error(
        key,
        f"unknown operator {op!r}; use one of {', '.join(OPERATORS)}",
        f"{op!r} という条件はありません（{'、'.join(OPERATORS)} のどれか）。",
    )


@dataclass(frozen=True)
class Condition:
    """One checked test: ``column`` ``op`` ``value``; ``key`` is as the user wrote it.

    ``op`` is ``equals``, ``one_of``, or one of :data:`OPERATORS`.
    """

    key: str
    column: str
    kind: str
    op: str
    value: Any


def _kind_of(dtype: Any) -> str:
    if isinstance(dtype, pd.ArrowDtype) and pa.types.is_list(dtype.pyarrow_dtype):
        return "list"
    if pd.api.types.is_bool_dtype(dtype):
        return "bool"
    if pd.api.types.is_integer_dtype(dtype):
        return "int"
    if pd.api.types.is_datetime64_any_dtype(dtype):
        return "datetime"
    return "str"


def _column_kinds(columns: pd.DataFrame | Iterable[str]) -> dict[str, str]:
    if isinstance(columns, pd.DataFrame):
        return {str(c): _kind_of(t) for c, t in columns.dtypes.items()}
    kinds = {}
    for c in columns:
        kind = COLUMN_KINDS.get(c, "str")
        kinds[c] = {"id": "int", "email": "str"}.get(kind, kind)
    return kinds


def resolve_column(key: str, columns: Iterable[str]) -> str | None:
    """The frame column a filter key means: itself, or the canonical name of a Japanese header."""
    names = set(columns)
    if key in names:
        return key
    canonical = HEADER_ALIASES.get(key)
    if canonical is None:
        canonical = HEADER_ALIASES.get(unicodedata.normalize("NFKC", key).strip())
    return canonical if canonical in names else None


def _typed(key: str, kind: str, value: Any, what: str = "value") -> Any:
    """Check one scalar against the column kind; dates come back as :class:`datetime.date`."""
    if value is None:
        return None
    if kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise _key_error(
                key,
                f'{what} {value!r} must be a whole number (3, not "3")',
                f'整数の列なので {value!r} ではなく 3 のように（"" なしで）書いてください。',
            )
        return value
    if kind == "bool":
        if not isinstance(value, bool):
            raise _key_error(
                key,
                f"{what} {value!r} must be true or false",
                f"true か false で書いてください（{value!r} は使えません）。",
            )
        return value
    if kind == "datetime":
        return _date(key, value, what)
    if not isinstance(value, str):
        raise _key_error(
            key,
            f"{what} {value!r} must be text (a string)",
            f'文字の列なので "{value}" のように "" で囲んで書いてください。',
        )
    return value


def _date(key: str, value: Any, what: str) -> dt.date:
    """A day as the member file writes one: 2025-01-31, B-Cart's 2025/01/31, 2025年1月31日."""
    parts = day_parts(value) if isinstance(value, str) else None
    if parts is None:
        raise _key_error(
            key,
            f"{what} {value!r} must be a date YYYY-MM-DD (or YYYY/MM/DD)",
            f"日付は 2025-01-31 か 2025/01/31 のように書いてください（{value!r} は使えません）。",
        )
    try:
        return dt.date(*parts)
    except ValueError as err:
        raise _key_error(
            key, f"{what} {value!r} is not a real date", f"{value} という日付はありません。"
        ) from err


def _number(key: str, value: Any, what: str) -> float | int:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _key_error(
            key,
            f"{what} {value!r} must be a number",
            f'{what} は 3 のように数で（"" なしで）書いてください。',
        )
    return value


def _conditions_for(key: str, column: str, kind: str, spec: Any) -> list[Condition]:
    if isinstance(spec, Mapping):
        return _operator_conditions(key, column, kind, spec)
    if kind == "list":
        raise _key_error(
            key,
            'a list column is filtered with {"contains": "CODE"}',
            f'一覧の列なので {{"contains": "{spec}"}} のように書いてください。',
        )
    if isinstance(spec, list | tuple):
        if not spec:
            raise _key_error(
                key,
                "an empty list matches nobody; leave the key out instead",
                "空のリストには誰も当てはまりません。条件ごと外してください。",
            )
        values = tuple(_typed(key, kind, v, "list item") for v in spec)
        return [Condition(key, column, kind, "one_of", values)]
    if spec is not None and not isinstance(spec, str | int | float | bool):
        raise _key_error(key, f"unsupported value {spec!r}", f"値 {spec!r} は条件に使えません。")
    return [Condition(key, column, kind, "equals", _typed(key, kind, spec))]


def _operator_conditions(
    key: str, column: str, kind: str, spec: Mapping[Any, Any]
) -> list[Condition]:
    if not spec:
        raise _unknown_operator(key, None)
    unknown = [op for op in spec if op not in OPERATORS]
    if unknown:
        raise _unknown_operator(key, unknown[0])
    out = []
    for op, value in spec.items():
        fits, needs, needs_ja = _OPERATOR_KINDS[op]
        if kind != fits and not (op == "contains" and kind == "list"):
            raise _kind_mismatch(key, column, kind, op, needs, needs_ja)
        if op == "contains":
            if not isinstance(value, str) or not value:
                raise _key_error(
                    key,
                    "'contains' needs non-empty text",
                    "contains には探す文字を書いてください。",
                )
            out.append(Condition(key, column, kind, op, value))
        elif op in ("min", "max"):
            out.append(Condition(key, column, kind, op, _number(key, value, op)))
        else:  # from / to / before / after
            out.append(Condition(key, column, kind, op, _date(key, value, op)))
    bounds = {c.op: c.value for c in out}
    for low, high in (("min", "max"), ("from", "to"), ("after", "before")):
        if low in bounds and high in bounds and bounds[low] > bounds[high]:
            raise _key_error(
                key,
                f"{low} {spec[low]!r} is after {high} {spec[high]!r}",
                f"{low}（{spec[low]}）が {high}（{spec[high]}）より後です。",
            )
    return out


def _kind_mismatch(
    key: str, column: str, kind: str, op: str, needs: str, needs_ja: str
) -> FilterError:
    """Says which type the column has, and for a custom column how that type was decided."""
    detail = f"{op!r} needs {needs}, but column {column!r} holds {_KIND_NAMES[kind]}"
    ja = f"{op} は{needs_ja}にだけ使えます。「{key}」は{_KIND_JA[kind]}の列です"
    if kind == "datetime" and op in ("min", "max"):
        detail += "; use from/to for dates"
        ja += "。日付には from / to を使ってください。"
    elif column not in COLUMN_KINDS:
        detail += f" ({_CUSTOM_TYPES})"
        ja += f"（{_CUSTOM_TYPES_JA}）。"
    else:
        ja += "。"
    return _key_error(key, detail, ja)


def validate_filter(
    filter: Mapping[str, Any] | None, columns: pd.DataFrame | Iterable[str]
) -> list[Condition]:
    """Check a filter against the member columns once; the conditions :func:`apply_filter` runs.

    ``columns`` is the member frame (its dtypes decide the value types) or column names
    (canonical kinds, text for the rest). Raises :class:`FilterError` naming the key.
    """
    if filter is None:
        return []
    if not isinstance(filter, Mapping):
        raise _not_a_dict(filter)
    kinds = _column_kinds(columns)
    out: list[Condition] = []
    for key, spec in filter.items():
        if not isinstance(key, str):
            raise _key_error(key, "must be a column name (text)", "列の名前で書いてください。")
        column = resolve_column(key, kinds)
        if column is None:
            raise _key_error(
                key,
                "unknown column; use a canonical name (pref), "
                "a Japanese header (都道府県) or a custom column's header",
                "会員ファイルにない列です。都道府県（pref）のような見出しか、"
                "カスタム項目の見出しを書いてください。",
            )
        out.extend(_conditions_for(key, column, kinds[column], spec))
    return out


def _not_a_dict(filter: Any) -> FilterError:
    return FilterError(
        f"a filter is a dict of column: condition, not {filter!r}",
        ja='絞込条件は {"pref": "東京都"} のように「列: 条件」の組で書いてください'
        f"（{filter!r} ではなく）。",
    )


def _day_start(day: dt.date) -> pd.Timestamp:
    """The day's first instant in Tokyo: 01:00 on the four days summer time began."""
    start: pd.Timestamp = tokyo_times(pd.Series([pd.Timestamp(day)]))[0].iloc[0]
    return start


def _mask(members: pd.DataFrame, cond: Condition) -> np.ndarray[Any, np.dtype[np.bool_]]:
    col = members[cond.column]
    if cond.op in ("equals", "one_of"):
        values = cond.value if cond.op == "one_of" else (cond.value,)
        want_blank = any(v is None for v in values)
        values = tuple(v for v in values if v is not None)
        if cond.kind == "datetime":
            days = col.dt.tz_localize(None).dt.normalize()  # the Tokyo day, summer time too
            hit = days.isin([pd.Timestamp(d) for d in values]) if values else _false(col)
        else:
            hit = col.isin(list(values)) if values else _false(col)
        mask = hit.to_numpy(dtype=bool, na_value=False)
        if want_blank:
            mask = mask | col.isna().to_numpy(dtype=bool)
        return mask
    if cond.op == "contains" and cond.kind == "list":
        return _list_holds(col, cond.value)
    if cond.op == "contains":
        found = col.str.contains(cond.value, regex=False)
        return found.to_numpy(dtype=bool, na_value=False)
    if cond.op in ("min", "max"):
        compared: pd.Series = col >= cond.value if cond.op == "min" else col <= cond.value
        return compared.to_numpy(dtype=bool, na_value=False)
    if cond.op == "from":
        return (col >= _day_start(cond.value)).to_numpy(dtype=bool, na_value=False)
    if cond.op == "to":
        end = _day_start(cond.value + dt.timedelta(days=1))
        return (col < end).to_numpy(dtype=bool, na_value=False)
    if cond.op == "before":
        return (col < _day_start(cond.value)).to_numpy(dtype=bool, na_value=False)
    if cond.op == "after":
        after = _day_start(cond.value + dt.timedelta(days=1))
        return (col >= after).to_numpy(dtype=bool, na_value=False)
    raise AssertionError(cond.op)  # pragma: no cover


def _list_holds(col: pd.Series, item: str) -> np.ndarray[Any, np.dtype[np.bool_]]:
    """Which rows' lists hold ``item`` exactly (A-10 is not in [A-100]): one pass in Arrow."""
    arr = pa.chunked_array(pa.array(col.array)).combine_chunks()
    hits = pc.equal(pc.list_flatten(arr), item).to_numpy(zero_copy_only=False)
    rows = pc.list_parent_indices(arr).to_numpy()
    mask = np.zeros(len(col), dtype=bool)
    mask[rows[hits.astype(bool, copy=False)]] = True
    return mask


def _false(col: pd.Series) -> pd.Series:
    return pd.Series(False, index=col.index)


def apply_filter(members: pd.DataFrame, filter: Mapping[str, Any] | None) -> pd.DataFrame:
    """The members that match every key of ``filter`` (all of them for ``None`` or ``{}``),
    in file order, with every column and ``attrs`` kept."""
    conditions = validate_filter(filter, members)
    if not conditions:
        return members
    mask = np.ones(len(members), dtype=bool)
    for cond in conditions:
        mask &= _mask(members, cond)
    return members[mask]


def select(filtered: pd.DataFrame, checked: Sequence[int] | None) -> pd.DataFrame:
    """検索結果すべてに送信 (``checked`` None or empty) or チェックした会員に送信 (those ids).

    A checked id outside the search result is a :class:`SelectionError` naming it: a member
    ticked before the filter changed must not be mailed, nor silently dropped. The result
    keeps file order, whatever order the ids were ticked in.
    """
    if not checked:
        return filtered
    ids: list[int] = []
    for item in checked:
        if isinstance(item, bool) or not isinstance(item, int | np.integer):
            raise SelectionError(
                f"checked member id {item!r} is not a whole number",
                ja=f"チェックした会員ID {item!r} が整数ではありません。",
            )
        ids.append(int(item))
    present = filtered["id"].isin(ids)
    outside = sorted(set(ids) - set(filtered["id"][present].tolist()))
    if outside:
        shown = ", ".join(str(i) for i in outside[:10])
        more = f" (and {len(outside) - 10} more)" if len(outside) > 10 else ""
        raise SelectionError(
            f"checked member id{'s' if len(outside) > 1 else ''} not in the search result: "
            f"{shown}{more}",
            ja=f"チェックした会員ID {shown}{'…' if more else ''} は絞込の結果に入っていません。"
            "絞込条件かチェックを見直してください。",
        )
    return filtered[present.to_numpy(dtype=bool)]


# --- in Japanese words, for the confirmation screen and the report ------------------------


def _label(key: str) -> str:
    return COLUMN_LABELS.get(key, key)


def _word(key: str, value: Any) -> str:
    if value is None:
        return "空欄"
    if isinstance(value, bool):
        if HEADER_ALIASES.get(key, key) == "mm_flag":
            return "受け取る" if value else "受け取らない"
        return "はい" if value else "いいえ"
    return str(value)


def _day(value: Any) -> str:
    """A day as the shop reads it (2026年6月1日); any other value as written."""
    text = value.isoformat() if isinstance(value, dt.date) else str(value)
    found = re.fullmatch(r"(\d{4})-(\d{2})-(\d{2})", text.strip())
    if not found:
        return text
    year, month, day = (int(g) for g in found.groups())
    return day_words(year, month, day)


def describe_filter(filter: Mapping[str, Any] | None) -> str:
    """The filter in Japanese words for the confirmation screen and the report.

    e.g. 「都道府県が 東京都 または 大阪府、会社名に「商事」を含む」, and the purchase
    columns alike: 「顧客グループが 休眠、最終購入日が 2026年6月1日 より前、購入商品に
    「A-100」を含む」 (days in 年月日, whatever column they are on).

    Needs no member frame, so a report can print a saved filter; a filter that is not even
    well formed (an unknown operator) is a :class:`FilterError`.
    """
    if not filter:
        return "条件なし（すべての会員）"
    if not isinstance(filter, Mapping):
        raise _not_a_dict(filter)
    parts = []
    for key, spec in filter.items():
        label = _label(str(key))
        if isinstance(spec, Mapping):
            unknown = [op for op in spec if op not in OPERATORS]
            if unknown or not spec:
                raise _unknown_operator(key, (unknown or [None])[0])
            words = []
            if "contains" in spec:
                words.append(f"{label}に「{spec['contains']}」を含む")
            rng = []
            if "min" in spec:
                rng.append(f"{_word(key, spec['min'])} 以上")
            if "max" in spec:
                rng.append(f"{_word(key, spec['max'])} 以下")
            if "from" in spec:
                start = _day(spec["from"])
                rng.append(f"{start} から" if "to" in spec else f"{start} 以降")
            if "to" in spec:
                rng.append(f"{_day(spec['to'])} まで")
            if "after" in spec:
                rng.append(f"{_day(spec['after'])} より後")
            if "before" in spec:
                rng.append(f"{_day(spec['before'])} より前")
            if rng:
                words.append(f"{label}が " + " ".join(rng))
            parts.append("、".join(words))
        elif isinstance(spec, list | tuple):
            parts.append(f"{label}が " + " または ".join(_word(key, v) for v in spec))
        else:
            parts.append(f"{label}が {_word(key, spec)}")
    return "、".join(parts)
