"""Arrow text typed without leaving Arrow: the common case of every column fast.

A snapshot holds its members' text as Arrow strings. The plain rules
(:func:`~bcartnb.members.typed.typed_column`) read pandas text with "" for blank, and turning
23 columns of a million members into Python strings and back cost ten times the file's own
read. Here each column is typed by Arrow compute and NumPy when the plain rules would settle
it the same way for certain: text and addresses as they are, ids and whole numbers that are
digits, メール案内 by its table, dates in the one form B-Cart and its API write (2024/05/01
12:34:56, 2024-05-01 12:34:56). Any other column (a value its kind does not allow, a date
written another way, a blank id) goes to the plain rules as text, so its value, or its error,
is theirs; the frame is put together by the same :func:`~bcartnb.members.typed.assemble`.
tests/test_snapshot_fast.py holds the two equal over generated snapshots.

The CSV's fast parse (:mod:`bcartnb.members.arrowcsv`) gives the same Arrow text, blanks as
"" rather than null, and is typed here too (:func:`typed_columns`), letting each column go as
it is typed; tests/test_members_fast.py holds that read to the plain one.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

import numpy as np
import pandas as pd
import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.compute as pc  # type: ignore[import-untyped]

from bcartnb.members.columns import MM_FLAG_VALUES, SPACES
from bcartnb.members.typed import (
    CUSTOM_INT_RE,
    DATE_RE,
    ID_RE,
    assemble,
    blank_as_null,
    source_columns,
    tokyo_times,
    typed_column,
    typed_members,
)

__all__ = ["typed_columns", "typed_table"]

_Array = Any  # a pyarrow (chunked) string array: pyarrow has no type hints


def _text_body(columns: list[_Array], rows: int) -> pd.DataFrame:
    """The columns as the plain rules read text: one ``str`` column a position, "" for blank."""
    index = pd.RangeIndex(rows)
    return pd.DataFrame({i: _text(column, index) for i, column in enumerate(columns)}, index=index)


def typed_table(table: pa.Table, source: Path) -> pd.DataFrame:
    """The member frame of a table of text (a snapshot), as
    :func:`~bcartnb.members.typed.typed_members` makes it from the same text."""
    return typed_columns([str(name) for name in table.column_names], table.columns, source)


def typed_columns(header: list[str], columns: list[_Array], source: Path) -> pd.DataFrame:
    """:func:`typed_table` of columns of text under ``header``. ``columns`` is used up: each
    is let go once typed, so that the text of ids, dates and flags (of a million members,
    over 100 MB) is not held beside what they became, and a column kept as text moves to the
    frame instead of being held twice."""
    found = source_columns(header, lambda pos: _has_values(columns[pos]), source)
    ids = columns[found.columns["id"][0]]
    rows = len(ids)
    if not rows or ((ids.null_count or not _matches(ids, ID_RE)) and pc.any(_blank(ids)).as_py()):
        # rows to drop (every cell blank), or a blank id to name: the plain rules' to judge
        del ids
        return typed_members(header, _text_body(columns, rows), source)
    del ids
    index = pd.RangeIndex(2, rows + 2, name="row")

    def convert(pos: int, kind: str | None, label: str) -> pd.Series:
        column, columns[pos] = columns[pos], None
        typed = _FAST[kind](column, index)
        if typed is None:
            typed = typed_column(_text(column, index), kind, label, found.where)
        return typed

    frame = assemble(found, index, convert)
    columns.clear()
    return frame


# --- text ------------------------------------------------------------------------------------


def _text(column: _Array, index: pd.Index) -> pd.Series:
    """A column as the plain rules take it: ``str``, "" for blank (null)."""
    return pd.Series(pd.array(pc.fill_null(column, ""), dtype="str"), index=index)


def _series(values: _Array, index: pd.Index) -> pd.Series:
    """Arrow strings as a ``str`` column, null and "" both missing (:func:`typed._text`),
    the strings shared (:func:`~bcartnb.members.typed.blank_as_null`)."""
    return pd.Series(pd.array(blank_as_null(values), dtype="str"), index=index)


def _has_values(column: _Array) -> bool:
    """A cell that is not blank ("" or null): a column without a header must have none."""
    return pc.any(pc.fill_null(pc.not_equal(column, ""), False)).as_py() is True


def _blank(column: _Array) -> _Array:
    """Null, or only spaces: blank by the plain rules (stripped, then "")."""
    stripped = pc.utf8_trim(column, SPACES)
    return pc.fill_null(pc.equal(pc.binary_length(stripped), 0), True)


#: :data:`ID_RE` is 1 to 18 ASCII digits, which two Arrow kernels check in a tenth of a regex's
#: time (the property test holds them to the regex)
_ID_DIGITS: Final = 18


def _matches(values: _Array, pattern: str) -> bool:
    """Every non-null value is ``pattern`` whole (RE2: ``\\d`` and ``[0-9]`` ASCII only)."""
    if pattern == ID_RE:
        width = pc.binary_length(values)
        ok = pc.and_(pc.ascii_is_decimal(values), pc.less_equal(width, _ID_DIGITS))
    else:
        ok = pc.match_substring_regex(values, f"^(?:{pattern})$")
    return bool(pc.all(ok).as_py() is not False)


def _email(column: _Array, index: pd.Index) -> pd.Series | None:
    # normalize_addresses: surrounding spaces trimmed, then "" is missing
    return _series(pc.utf8_trim(column, SPACES), index)


def _numbers(column: _Array, pattern: str) -> _Array | None:
    """The column's int64s (null for blank), or None when a value is not ``pattern``."""
    if _matches(column, pattern):  # nothing to trim, no "" (nulls are blank)
        return pc.cast(column, pa.int64())
    stripped = pc.utf8_trim(column, SPACES)
    stripped = pc.if_else(pc.equal(stripped, ""), pa.scalar(None, stripped.type), stripped)
    if not _matches(stripped, pattern):
        return None
    return pc.cast(stripped, pa.int64())


def _id(column: _Array, index: pd.Index) -> pd.Series | None:
    numbers = _numbers(column, ID_RE)  # a blank id never comes here (typed_table)
    if numbers is None:
        return None
    return pd.Series(numbers.to_numpy(), index=index, dtype=np.int64)


def _int(column: _Array, index: pd.Index) -> pd.Series | None:
    numbers = _numbers(column, ID_RE)
    return None if numbers is None else _nullable_int(numbers, index)


def _nullable_int(numbers: _Array, index: pd.Index) -> pd.Series:
    values = pc.fill_null(numbers, 0).to_numpy()
    missing = pc.is_null(numbers).to_numpy()
    return pd.Series(pd.arrays.IntegerArray(values, missing), index=index)


_FLAG_KEYS: Final = pa.array(list(MM_FLAG_VALUES), type=pa.string())
_FLAGS: Final = np.array(list(MM_FLAG_VALUES.values()), dtype=bool)


_BLANK_FLAG: Final = list(MM_FLAG_VALUES).index("")


def _bool(column: _Array, index: pd.Index) -> pd.Series | None:
    found = pc.index_in(column, value_set=_FLAG_KEYS)  # mostly written as the table has them
    if found.null_count != column.null_count:
        # the plain rules: stripped, lower-cased (the same Arrow kernel), looked up
        found = pc.index_in(pc.utf8_lower(pc.utf8_trim(column, SPACES)), value_set=_FLAG_KEYS)
        if found.null_count != column.null_count:
            return None
    return pd.Series(_FLAGS[pc.fill_null(found, _BLANK_FLAG).to_numpy()], index=index)


# --- dates -----------------------------------------------------------------------------------

_FIXED: Final = len("2024/05/01 12:34:56")
_DIGITS: Final = np.array([0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18])
# (position, the bytes DATE_RE allows there); 年 and 月 are not one byte: not this form
_SEPARATORS: Final = ((4, b"-/."), (7, b"-/."), (10, b" T"), (13, b":"), (16, b":"))
# years every pandas datetime holds; any other goes to the plain rules
_YEARS: Final = (1900, 2200)


def _datetime(column: _Array, index: pd.Index) -> pd.Series | None:
    stamps = _stamps(column)
    if stamps is None:
        return None
    localized, skipped = tokyo_times(pd.Series(stamps, index=index))
    return None if skipped.any() else localized  # a skipped hour: the plain rules' error


def _stamps(column: _Array) -> np.ndarray[Any, Any] | None:
    """datetime64[us] of each value (NaT for blank) when every one is in the fixed form
    ``YYYY?MM?DD HH:MM:SS`` (a form :data:`DATE_RE` reads) and a real time; else None.

    Read from the bytes with NumPy: a regex with six captures a value was the slow part."""
    text = _one_chunk(column)
    lengths = pc.fill_null(pc.binary_length(text), 0).to_numpy()
    if ((lengths != 0) & (lengths != _FIXED)).any():  # spaces around, or another form
        text = pc.utf8_trim(text, SPACES)
        lengths = pc.fill_null(pc.binary_length(text), 0).to_numpy()
        if ((lengths != 0) & (lengths != _FIXED)).any():
            return None
    present = lengths > 0
    stamps = np.full(len(text), np.datetime64("NaT"), dtype="datetime64[us]")
    if not present.any():
        return stamps
    chars = _fixed_bytes(text, present)
    seconds = np.empty(len(chars), dtype=np.int64)
    for start in range(0, len(chars), _BLOCK):  # a block at a time: its arrays stay in cache
        block = _seconds(chars[start : start + _BLOCK])
        if block is None:
            return None
        seconds[start : start + _BLOCK] = block
    stamps[present] = (seconds * 1_000_000).view("datetime64[us]")
    return stamps


_BLOCK: Final = 1 << 15


def _seconds(chars: np.ndarray[Any, Any]) -> np.ndarray[Any, Any] | None:
    """Seconds since 1970 of each row of fixed-form bytes, or None when one is not a real
    date and time written that way (the plain rules then judge the column)."""
    rows = np.ascontiguousarray(chars.T)  # one row a character
    for pos, allowed in _SEPARATORS:
        if not np.logical_or.reduce([rows[pos] == c for c in allowed]).all():
            return None
    digits = rows[_DIGITS] - np.uint8(ord("0"))  # below "0" wraps round, above 9 too
    if (digits > 9).any():
        return None
    year, month, day, hour, minute, second = _fields(digits)
    if not ((year >= _YEARS[0]) & (year <= _YEARS[1]) & (month >= 1) & (month <= 12)).all():
        return None
    leap = (year % 4 == 0) & ((year % 100 != 0) | (year % 400 == 0))
    days_in = _MONTH_DAYS[month - 1] + (leap & (month == 2))
    real = (day >= 1) & (day <= days_in) & (hour <= 23) & (minute <= 59) & (second <= 59)
    if not real.all():  # 2024/02/30, 24:00:00: the plain rules' to judge (and refuse)
        return None
    clock = hour.astype(np.int32) * 3_600 + minute.astype(np.int32) * 60 + second
    seconds: np.ndarray[Any, Any] = _days(year, month, day).astype(np.int64) * 86_400 + clock
    return seconds


def _fields(digits: np.ndarray[Any, Any]) -> list[np.ndarray[Any, Any]]:
    """Year (int16), month, day, hour, minute and second (uint8) from the 14 digit rows."""
    year = digits[0].astype(np.int16) * 1000 + digits[1].astype(np.int16) * 100
    year += digits[2] * np.int16(10) + digits[3]
    return [year, *(digits[i] * np.uint8(10) + digits[i + 1] for i in (4, 6, 8, 10, 12))]


_MONTH_DAYS: Final = np.array([31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31], dtype=np.int32)


def _days(
    year: np.ndarray[Any, Any], month: np.ndarray[Any, Any], day: np.ndarray[Any, Any]
) -> np.ndarray[Any, Any]:
    """Days since 1970-01-01 of a proleptic Gregorian date, in integers (H. Hinnant's
    days_from_civil): NumPy's month-to-day conversion costs far more per value."""
    y = year.astype(np.int32) - (month <= 2)
    era = y // 400
    yoe = y - era * 400
    doy = (153 * ((month.astype(np.int32) + 9) % 12) + 2) // 5 + day - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    days: np.ndarray[Any, Any] = era * 146_097 + doe - 719_468
    return days


def _one_chunk(column: _Array) -> _Array:
    """The column as one array: its only chunk as it is (a file of one row group), or joined."""
    if not isinstance(column, pa.ChunkedArray):
        return column
    return column.chunk(0) if column.num_chunks == 1 else column.combine_chunks()


def _fixed_bytes(text: _Array, present: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """The bytes of the present values, one row of :data:`_FIXED` each: a view when they lie
    end to end in the buffer (a blank or null takes no byte), else gathered."""
    _, offsets, data = text.buffers()
    wide = pa.types.is_large_string(text.type)
    ends = np.frombuffer(offsets, np.int64 if wide else np.int32)
    ends = ends[text.offset : text.offset + len(text) + 1]
    raw = np.frombuffer(data, np.uint8)
    count = int(present.sum())
    if int(ends[-1]) - int(ends[0]) == count * _FIXED:
        return raw[int(ends[0]) : int(ends[-1])].reshape(count, _FIXED)
    gathered: np.ndarray[Any, Any] = raw[ends[:-1][present][:, None] + np.arange(_FIXED)]
    return gathered


# --- custom fields (カスタム項目) ----------------------------------------------------------------


def _custom(column: _Array, index: pd.Index) -> pd.Series | None:
    """typed._custom's choice: whole numbers, else dates (if the first value is one), else text;
    told apart by the first non-blank value as there."""
    first = _first_value(column)
    if first is None:
        return _series(column, index)
    if re.fullmatch(CUSTOM_INT_RE, first):
        numbers = _numbers(column, CUSTOM_INT_RE)
        if numbers is not None:
            return _nullable_int(numbers, index)
    if re.match(DATE_RE, first):
        return _datetime(column, index)  # None: a date another way, or not one (plain rules)
    return _series(column, index)


def _first_value(column: _Array) -> str | None:
    """The first value that is not blank (stripped), or None: the head is looked at first."""
    for size in (64, len(column)):
        stripped = pc.utf8_trim(column.slice(0, size), SPACES)
        found = pc.drop_null(
            pc.if_else(pc.equal(stripped, ""), pa.scalar(None, stripped.type), stripped)
        )
        if len(found):
            return str(found[0].as_py())
    return None


_FAST: Final[dict[str | None, Callable[[_Array, pd.Index], pd.Series | None]]] = {
    "str": _series,
    "email": _email,
    "id": _id,
    "int": _int,
    "bool": _bool,
    "datetime": _datetime,
    None: _custom,
}
