"""Typing a source's text into the member frame: one set of column rules for every source.

The CSV export and the API snapshot both arrive as text cells under headers; here they become
the frame the package documents (:mod:`bcartnb.members`): canonical columns typed by their
kind, custom fields typed by what they hold, the row numbers a spreadsheet shows, and an error
naming the row and column of the first value that does not fit. Everything is vectorised:
a row loop over 100,000 members would cost seconds.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
import pandas as pd
import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.compute as pc  # type: ignore[import-untyped]

from bcartnb.exceptions import MembersFileError
from bcartnb.members.addresses import normalize_addresses
from bcartnb.members.columns import (
    CANONICAL_COLUMNS,
    COLUMN_KINDS,
    COLUMN_LABELS,
    DAY_PATTERN,
    MM_FLAG_VALUES,
    SPACES,
    TOKYO,
    canonical,
    custom_column,
    renamed_note,
)
from bcartnb.members.hints import missing_column_notes, near_headers
from bcartnb.members.where import Where, show
from bcartnb.near import quoted

__all__ = [
    "CUSTOM_INT_RE",
    "DATE_RE",
    "ID_RE",
    "SourceColumns",
    "assemble",
    "blank_as_null",
    "source_columns",
    "tokyo_times",
    "typed_column",
    "typed_members",
]

_REQUIRED: Final = ("id", "email")
#: A date as B-Cart writes it (2024/05/01 12:34:56) or a person does (2024-5-1, 2024年5月1日).
DATE_RE: Final = (
    rf"^{DAY_PATTERN}"
    r"(?:[ T]+(\d{1,2}):(\d{2})(?::(\d{2})(?:\.\d+)?)?)?$"
)
#: A member id or a group id: at most 18 digits (int64 holds every one).
ID_RE: Final = r"[0-9]{1,18}"
_BCART_DATETIME: Final = "%Y/%m/%d %H:%M:%S"


def typed_members(
    header: list[str],
    body: pd.DataFrame,
    source: str | os.PathLike[str],
    *,
    described_as: tuple[str, str] | None = None,
) -> pd.DataFrame:
    """The member frame from a source's text: ``header`` names ``body``'s columns, every cell
    a string as a CSV holds it ("" for blank).

    Every source goes through here (the CSV export, the B-Cart API snapshot), so the same
    members give the same typed frame whichever way they came: one set of column rules. A
    later header naming a column already taken is a custom field (:func:`custom_column`);
    ``df.attrs["warnings"]`` says which were renamed. ``described_as`` (English, Japanese) names a
    source that is not a file yet (members pulled from the API) in errors.
    """
    columns = source_columns(
        header, lambda pos: not (body.iloc[:, pos] == "").all(), source, described_as
    )
    body.index = pd.RangeIndex(2, len(body) + 2, name="row")
    blank = _blank_rows(body)
    if blank.any():  # copying every column of a million members when no row is blank cost 0.5 s
        body = body[~blank]
    return assemble(
        columns,
        body.index,
        lambda pos, kind, label: typed_column(body.iloc[:, pos], kind, label, columns.where),
    )


@dataclass(frozen=True)
class SourceColumns:
    """Where each column of the frame comes from: name -> (position, header as written)."""

    where: Where
    columns: dict[str, tuple[int, str]]
    #: the custom fields read under another name (:func:`renamed_note`)
    notes: list[str]


def source_columns(
    header: list[str],
    has_values: Callable[[int], bool],
    source: str | os.PathLike[str],
    described_as: tuple[str, str] | None = None,
) -> SourceColumns:
    """The frame's columns from a source's headers, or the error a header deserves.

    ``has_values(position)`` says whether a column holds any non-blank cell: a column without
    a header is skipped when blank and refused otherwise. The one header rule, whatever the
    source holds its text in (pandas for the CSV, Arrow for a snapshot).
    """
    where = Where(Path(source), described_as)
    notes: list[str] = []
    columns: dict[str, tuple[int, str]] = {}  # column name -> (position, header)
    for pos, head in enumerate(header):
        if not head:
            if not has_values(pos):
                continue
            raise where.error(
                f"column {pos + 1} has values but no header",
                ja=where.ja(f"の {pos + 1} 列目に値がありますが、見出しがありません。"),
            )
        name = canonical(head) or head
        if name in columns:
            name = custom_column(head, columns)
            notes.append(renamed_note(head, name))
        columns[name] = (pos, head)
    missing = [name for name in _REQUIRED if name not in columns]
    others = [head for name, (_, head) in columns.items() if name not in COLUMN_KINDS]
    near = near_headers((n for n in CANONICAL_COLUMNS if n not in columns), others)
    if missing and len(header) == 1:
        for sep, what in (("\t", "tab"), (";", "semicolon")):
            if sep in header[0]:
                raise where.error(
                    f"is {what}-separated: save the member list as a CSV (commas)",
                    ja=where.ja(
                        "はカンマ区切りではありません。CSV（カンマ区切り）で保存してください。"
                    ),
                )
    if missing:
        hints = [
            f"「{COLUMN_LABELS[n]}」に近い見出し: {quoted(near[n])}。" for n in missing if n in near
        ]
        wanted = ", ".join(f"{n} ({COLUMN_LABELS[n]})" for n in missing)
        raise where.error(
            f"missing column {wanted}; headers are: {', '.join(header)}",
            ja=where.ja(
                f"に必要な列がありません: {'、'.join(COLUMN_LABELS[n] for n in missing)}。"
                + "".join(hints)
            ),
        )
    notes += missing_column_notes(near)
    return SourceColumns(where, columns, notes)


#: the kinds whose values can be refused (text, addresses and custom fields take any value)
_REFUSING: Final = frozenset({"id", "int", "bool", "datetime"})


def assemble(
    source: SourceColumns,
    index: pd.Index,
    convert: Callable[[int, str | None, str], pd.Series],
) -> pd.DataFrame:
    """The typed frame: each column as ``convert(position, kind, label)`` makes it (kind
    None for a custom field), in the contract's order, the ids checked unique, the attrs set.

    The one assembly, whoever converts the cells (:func:`typed_column` from pandas text, or
    :mod:`bcartnb.members.arrow_typed` straight from a snapshot's Arrow columns), so both
    convert the same columns in the same order and a file's first error is the same.
    """
    columns = source.columns
    named: list[tuple[str, str | None]] = [
        (n, COLUMN_KINDS[n]) for n in CANONICAL_COLUMNS if n in columns
    ]
    named += [(n, None) for n in columns if n not in COLUMN_KINDS]
    typed: dict[str, pd.Series] = {}
    # the kinds a value can be refused in first, in the contract's order (so a file's first
    # error is the same), then the text, which refuses nothing: a column read as numbers or
    # dates lets its text go before the text columns take pandas' wider offsets
    for name, kind in sorted(named, key=lambda nk: nk[1] not in _REFUSING):
        pos, head = columns[name]
        label = head if kind is None or head == name else f"{head} ({name})"
        typed[name] = convert(pos, kind, label)
    data = {
        name: typed[name] if name in typed else _blank(COLUMN_KINDS[name], index)
        for name in CANONICAL_COLUMNS
    }
    data.update((name, typed[name]) for name, kind in named if kind is None)
    headers = {name: columns[name][1] for name, _ in named}

    frame = pd.DataFrame(data, index=index, copy=False)  # every column is new: none copied
    _check_unique_ids(frame["id"], source.where, columns["id"][1])
    frame.attrs = {
        "source": str(source.where.path),
        "headers": headers,
        "missing_columns": [n for n in CANONICAL_COLUMNS if n not in columns],
        "warnings": source.notes,
    }
    return frame


def _blank_rows(body: pd.DataFrame) -> np.ndarray[Any, np.dtype[np.bool_]]:
    """Rows whose every cell is blank, a column at a time: most files are done after the first
    (every member has an id), where comparing the whole frame at once took 0.4 s."""
    blank = np.ones(len(body), dtype=bool)
    for pos in range(body.shape[1]):
        if not blank.any():
            break
        blank &= (body.iloc[:, pos] == "").to_numpy(dtype=bool)
    return blank


def typed_column(col: pd.Series, kind: str | None, label: str, where: Where) -> pd.Series:
    """One column of text by the rules: a canonical column by its ``kind``, a custom field
    (``kind`` None) by what it holds (:func:`_custom`)."""
    return _custom(col) if kind is None else _convert(col, kind, label, where)


def _blank(kind: str, index: pd.Index) -> pd.Series:
    if kind == "bool":
        return pd.Series(False, index=index, dtype=bool)
    if kind == "int":
        return pd.Series(pd.NA, index=index, dtype="Int64")
    if kind == "datetime":
        return pd.Series(pd.NaT, index=index, dtype=f"datetime64[us, {TOKYO}]")
    return pd.Series(np.nan, index=index, dtype="str")


def _text(col: pd.Series) -> pd.Series:
    """Blank is missing. A column already ``str`` (both CSV parsers give one) is not cast again,
    and one with no blank is not copied."""
    text = col if col.dtype == "str" else col.astype("str")
    blank = (col == "").to_numpy(dtype=bool)
    if not blank.any():
        return text
    shared = _blanks_missing(text)
    return text.mask(blank) if shared is None else shared


def _blanks_missing(text: pd.Series) -> pd.Series | None:
    """``text`` with its blank cells missing, sharing its Arrow strings (:func:`blank_as_null`);
    None when the column already has missing cells or is not Arrow strings."""
    try:
        chunked = text.array.__arrow_array__()
    except AttributeError:
        return None
    if chunked.null_count or not pa.types.is_large_string(chunked.type):
        return None
    array = blank_as_null(chunked)
    values = array.to_pandas(types_mapper={array.type: text.dtype}.get).array
    return pd.Series(values, index=text.index, name=text.name, copy=False)


def blank_as_null(values: Any) -> Any:
    """Arrow strings (an array or a chunked one) with every "" null, the strings themselves
    shared: only a validity bitmap is new (masking copied every text column with a blank,
    100 MB of a million members)."""
    chunks = values.chunks if isinstance(values, pa.ChunkedArray) else [values]
    return pa.chunked_array([_chunk_blank_as_null(c) for c in chunks], type=values.type)


def _chunk_blank_as_null(chunk: Any) -> Any:
    empty = pc.equal(pc.binary_length(chunk), 0)
    if not pc.any(empty).as_py():
        return chunk
    # computed over the chunk's buffers from their start, so that its bits line up with them
    whole = pa.Array.from_buffers(chunk.type, chunk.offset + len(chunk), chunk.buffers())
    valid = pc.fill_null(pc.not_equal(whole, ""), False)
    if valid.offset:  # pragma: no cover - a kernel's output starts at its buffer's start
        return pc.if_else(empty, pa.scalar(None, chunk.type), chunk)
    return pa.Array.from_buffers(
        chunk.type, len(chunk), [valid.buffers()[1], *chunk.buffers()[1:]], offset=chunk.offset
    )


#: A custom column's whole number: no sign but a minus, no leading zero (0123 is a code, and
#: a code read as 123 would lose its zero), at most 18 digits (int64 holds every one).
CUSTOM_INT_RE: Final = r"-?(?:0|[1-9][0-9]{0,17})"


def _custom(col: pd.Series) -> pd.Series:
    """A custom field (カスタム項目) typed by what it holds, so a filter can take its range.

    Whole numbers, blanks allowed, become nullable ``Int64`` (``{"取引開始年": {"min": 2010}}``);
    dates in any form B-Cart or a person writes (2024/05/01, 2024-5-1, 2024年5月1日) become
    Asia/Tokyo datetimes like 登録日時. One value that is neither, or a leading zero anywhere
    (``0123``, a code), keeps the whole column text: a column never holds two types.
    """
    stripped = col.str.strip(SPACES)
    blank = stripped == ""
    if blank.all():
        return _text(col)
    values = stripped[~blank]
    first = str(values.iloc[0])  # most text columns are told apart by their first value
    if re.fullmatch(CUSTOM_INT_RE, first) and values.str.fullmatch(CUSTOM_INT_RE).all():
        return stripped.mask(blank).astype("Int64")
    if re.match(DATE_RE, first):
        stamps, bad = _parse_datetimes(stripped, blank)
        if not bad.any():
            localized, skipped = tokyo_times(stamps)
            if not skipped.any():  # a time Tokyo's clocks skipped is no date: text
                return localized
    return _text(col)


def _first_bad(col: pd.Series, bad: pd.Series | np.ndarray[Any, Any]) -> tuple[int, Any]:
    mask = np.asarray(bad, dtype=bool)
    pos = int(np.flatnonzero(mask)[0])
    return int(col.index[pos]), col.iloc[pos]


#: What a value of each kind is not, when it does not fit: (English, Japanese).
_NOT_A: Final[dict[str, tuple[str, str]]] = {
    "id": ("is not a member id (a whole number)", "は会員ID（整数）ではありません。"),
    "int": ("is not a whole number", "は整数ではありません。"),
    "bool": (
        "is not 受け取る/受け取らない (or 1/0, true/false, blank)",
        "は「受け取る」「受け取らない」のどちらでもありません。",
    ),
    "datetime": ("is not a date and time", "は日時として読めません。"),
    "skipped": (
        "is not a time in Japan (the hour skipped for summer time, 1948-1951)",
        "は日本時間にない時刻です（1948〜1951年の夏時間で飛ばされた1時間）。",
    ),
}


def _bad_value(
    col: pd.Series, bad: pd.Series | np.ndarray[Any, Any], label: str, where: Where, kind: str
) -> MembersFileError:
    """The first value ``bad`` marks, named by its row and column and what a ``kind`` value
    is not (:data:`_NOT_A`), so every column's refusal reads alike."""
    row, value = _first_bad(col, bad)
    shown = show(value)
    english, japanese = _NOT_A[kind]
    return where.error(
        f"{shown} {english}",
        row,
        label,
        ja=where.ja(f"の {row} 行目「{label}」の {shown} {japanese}"),
    )


def _convert(col: pd.Series, kind: str, label: str, where: Where) -> pd.Series:
    if kind in ("str",):
        return _text(col)
    if kind == "email":
        trimmed = normalize_addresses(col)
        return trimmed.mask(trimmed == "")
    stripped = col.str.strip(SPACES)
    blank = stripped == ""
    if kind == "id":
        if blank.any():
            row, _ = _first_bad(col, blank)
            raise where.error(
                "member id is blank", row, label, ja=where.ja(f"の {row} 行目の会員IDが空欄です。")
            )
        bad = ~stripped.str.fullmatch(ID_RE)
        if bad.any():
            raise _bad_value(col, bad, label, where, kind)
        return stripped.astype(np.int64)
    if kind == "int":
        bad = ~blank & ~stripped.str.fullmatch(ID_RE)
        if bad.any():
            raise _bad_value(col, bad, label, where, kind)
        return stripped.mask(blank).astype("Int64")
    if kind == "bool":
        # a handful of distinct values: each is looked up once, not once a member
        codes, uniques = pd.factorize(stripped.str.lower(), use_na_sentinel=False)
        looked_up = pd.Series(uniques).map(MM_FLAG_VALUES).to_numpy(dtype=object)
        flags = pd.Series(looked_up[codes], index=stripped.index)
        bad = flags.isna()
        if bad.any():
            raise _bad_value(col, bad, label, where, kind)
        return flags.astype(bool)
    if kind == "datetime":
        return _datetimes(col, stripped, blank, label, where)
    raise AssertionError(kind)  # pragma: no cover


def _datetimes(
    col: pd.Series, stripped: pd.Series, blank: pd.Series, label: str, where: Where
) -> pd.Series:
    """B-Cart's date column, or an error naming the first value that is not a date."""
    stamps, bad = _parse_datetimes(stripped, blank)
    if bad.any():
        raise _bad_value(col, bad, label, where, "datetime")
    localized, skipped = tokyo_times(stamps)
    if skipped.any():
        raise _bad_value(col, skipped, label, where, "skipped")
    return localized


def tokyo_times(stamps: pd.Series) -> tuple[pd.Series, np.ndarray[Any, np.dtype[np.bool_]]]:
    """Tokyo wall-clock times made aware, and which of them Tokyo's clocks never showed.

    Japan kept summer time from 1948 to 1951: each spring the hour after midnight was skipped
    (1949/04/03 00:30 never happened) and each autumn it came twice (1949/09/11 00:30 did,
    first in summer time, then an hour later). A doubled time is read as the first one
    (Python's ``fold=0``), as the clock showed it first; midnight of a day that began at
    01:00 is that day's start (a date written alone, or as B-Cart writes one, 00:00:00);
    any other skipped time is no time, marked as a 2024/02/30 is refused. Other times cost
    one localisation, as before.
    """
    try:
        localized: pd.Series = stamps.dt.tz_localize(TOKYO)
        return localized, np.zeros(len(stamps), dtype=bool)
    except ValueError:  # pandas' nonexistent or ambiguous time: only 1948-1951
        pass
    localized = stamps.dt.tz_localize(
        TOKYO, ambiguous=np.ones(len(stamps), dtype=bool), nonexistent="shift_forward"
    )
    moved = (localized.dt.tz_localize(None) != stamps) & stamps.notna()
    skipped = (moved & (stamps != stamps.dt.normalize())).to_numpy(dtype=bool)
    return localized, skipped


def _parse_datetimes(stripped: pd.Series, blank: pd.Series) -> tuple[pd.Series, pd.Series]:
    """Naive datetimes, and which non-blank values are not dates.

    B-Cart writes 2024/05/01 12:34:56; people edit to 2024-5-1 or 2024年5月1日. All are
    Tokyo wall-clock times. B-Cart's own form is parsed in C; the rest from the regex's
    parts, so "1" or "May" is never taken for a date."""
    stamps = pd.to_datetime(stripped.mask(blank), format=_BCART_DATETIME, errors="coerce").astype(
        "datetime64[us]"
    )
    bad_all = pd.Series(False, index=stripped.index)
    rest = (~blank & stamps.isna()).to_numpy(dtype=bool)
    if rest.any():
        others = stripped[rest]
        parts = others.str.extract(DATE_RE)
        parts.columns = ["year", "month", "day", "hour", "minute", "second"]
        ok_shape = parts["year"].notna()
        comps = parts.apply(pd.to_numeric).fillna({"hour": 0, "minute": 0, "second": 0})
        comps = comps.where(ok_shape, 2000).astype(np.int64)  # placeholder for the bad ones
        parsed = pd.to_datetime(comps, errors="coerce").astype("datetime64[us]")
        clock = (comps["hour"] <= 23) & (comps["minute"] <= 59) & (comps["second"] <= 59)
        bad = ~ok_shape | parsed.isna() | ~clock
        bad_all[rest] = bad.to_numpy()
        stamps[rest] = parsed.mask(bad).to_numpy()
    return stamps, bad_all


def _check_unique_ids(ids: pd.Series, where: Where, header: str) -> None:
    values = ids.to_numpy()
    if len(values) < 2 or bool((values[1:] > values[:-1]).all()):
        return  # B-Cart lists its members by id: unique without a hash table (30 MB at 1M)
    dup = ids.duplicated(keep=False)
    if not dup.any():
        return
    groups = ids[dup].groupby(ids[dup], sort=False).groups
    first_id, rows = next(iter(groups.items()))
    more = len(groups) - 1
    tail = f" (and {more} more duplicated id{'s' if more > 1 else ''})" if more else ""
    row_list = ", ".join(str(r) for r in rows)
    raise where.error(
        f"member id {first_id} appears more than once (column {header}, rows {row_list}){tail}",
        ja=where.ja(f"で会員ID {first_id} が複数の行（{row_list} 行目）にあります。"),
    )
