"""The CSV export parsed by Arrow: the fast way to the same text cells pandas' parser gives.

pandas' C parser builds a Python string for every cell before its ``str`` columns turn them
back into Arrow (5 of the 13 seconds of a 1M-member CP932 file); ``pyarrow.csv`` parses the
UTF-8 bytes straight into Arrow strings, on every core. The two read well-formed CSV alike
(quoted commas and newlines, doubled quotes, a quote inside a field, CRLF or LF); where they
would not, this parser declines (None) and :mod:`bcartnb.members.reader` reads the file the
plain way, which also says what is wrong. tests/test_members_fast.py holds the two equal over
generated files.

Declined: a row with fewer or more fields than the header (pandas pads the one and refuses
the other; a line of spaces is a short row, a blank line a row of blanks to both), a header
Arrow reads otherwise than :mod:`csv`, and a file that ends inside a quoted field (pandas
refuses it; Arrow keeps the rest of the file as the value). That last one is caught by a
sentinel row of NUL cells appended to the file: no NUL gets this far
(:func:`~bcartnb.members.decode.check_not_binary`), so the last row is the sentinel exactly
when the file's last record was closed.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Final

import numpy as np
import pandas as pd
import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.csv as pacsv  # type: ignore[import-untyped]

__all__ = ["parse_utf8", "utf8_lines"]

_SENTINEL: Final = "\x00"
_BLOCK: Final = 1 << 22  # a record longer than a block is declined by Arrow: read plainly


def utf8_lines(data: bytes | bytearray) -> Iterator[str]:
    """The lines of UTF-8 ``data`` as text, lazily (what the reader's header needs)."""
    start = 0
    while start < len(data):
        end = data.find(b"\n", start)
        end = len(data) if end < 0 else end + 1
        yield bytes(data[start:end]).decode("utf-8")
        start = end


def parse_utf8(data: bytearray, header: list[str]) -> pd.DataFrame | None:
    """The body under ``header`` (the header row as :mod:`csv` read it, unstripped), every
    cell a ``str`` as pandas' parser gives it with ``dtype=str`` and no NA values; None when
    the two parsers could differ. ``data`` is UTF-8 with the header row first, and is used up:
    the sentinel row is appended to it, and it is emptied once parsed, so that the file's text
    and its cells are never held twice beside the cells pandas will have (of a million
    members, 283 MB of text and 330 MB of cells; Arrow's 32-bit offsets until then, pandas'
    64-bit ones after)."""
    width = len(header)
    if not width:
        return None
    if data and not data.endswith((b"\n", b"\r")):
        data += b"\n"
    data += (",".join([_SENTINEL] * width) + "\n").encode()
    names = [f"f{i}" for i in range(width)]
    source = pa.py_buffer(data)
    try:
        table = pacsv.read_csv(
            source,
            read_options=pacsv.ReadOptions(column_names=names, block_size=_BLOCK),
            parse_options=pacsv.ParseOptions(newlines_in_values=True, ignore_empty_lines=False),
            convert_options=pacsv.ConvertOptions(
                column_types=dict.fromkeys(names, pa.string()),
                null_values=[],
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
            ),
        )
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
    finally:
        del source
        with contextlib.suppress(BufferError):  # still exported: left to the collector
            data.clear()
    rows = table.num_rows
    if rows < 2 or _row(table, 0) != header or _row(table, rows - 1) != [_SENTINEL] * width:
        return None
    dtype = pd.StringDtype("pyarrow", na_value=np.nan)  # pandas' str: the Arrow arrays kept
    body: pd.DataFrame = table.slice(1, rows - 2).to_pandas(types_mapper={pa.string(): dtype}.get)
    body.columns = pd.RangeIndex(width)
    return body


def _row(table: pa.Table, index: int) -> list[str]:
    return [column[index].as_py() for column in table.columns]
