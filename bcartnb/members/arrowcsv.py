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
import io
from collections.abc import Iterable, Iterator
from typing import Any, Final

import numpy as np
import pandas as pd
import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.csv as pacsv  # type: ignore[import-untyped]

__all__ = ["block_lines", "parse_blocks", "parse_utf8", "utf8_lines"]

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


def block_lines(blocks: Iterable[bytes]) -> Iterator[str]:
    """The lines of UTF-8 ``blocks`` as text, lazily, however the blocks cut them."""
    rest = b""
    for block in blocks:
        data = rest + block
        start = 0
        while (end := data.find(b"\n", start)) >= 0:
            yield data[start : end + 1].decode("utf-8")
            start = end + 1
        rest = data[start:]
    if rest:
        yield rest.decode("utf-8")


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
    data += _sentinel(width)
    source = pa.py_buffer(data)
    try:
        table = _read(source, header, pa.string())
    finally:
        del source
        with contextlib.suppress(BufferError):  # still exported: left to the collector
            data.clear()
    if table is None:
        return None
    dtype = pd.StringDtype("pyarrow", na_value=np.nan)  # pandas' str: the Arrow arrays kept
    body: pd.DataFrame = table.to_pandas(types_mapper={pa.string(): dtype}.get)
    body.columns = pd.RangeIndex(width)
    return body


def parse_blocks(blocks: Iterable[bytes], header: list[str]) -> pa.Table | None:
    """The body under ``header``, as :func:`parse_utf8` reads it, from UTF-8 ``blocks`` (the
    header row first) as they come, so that the file's text is never held whole: a table of
    Arrow text (32-bit offsets: pandas' 64-bit ones are made a column at a time, as each is
    typed). None when the two parsers could differ; the blocks' own exception passes."""
    width = len(header)
    if not width:
        return None
    return _read(_Stream(_closed(blocks, width)), header, pa.string())


def _sentinel(width: int) -> bytes:
    return (",".join([_SENTINEL] * width) + "\n").encode()


def _closed(blocks: Iterable[bytes], width: int) -> Iterator[bytes]:
    """The blocks, the last record ended by a newline, then the sentinel row."""
    last = b"\n"
    for block in blocks:
        if block:
            last = block[-1:]
            yield block
    if last not in (b"\n", b"\r"):
        yield b"\n"
    yield _sentinel(width)


class _Stream(io.RawIOBase):
    """An iterator of byte blocks as the readable file Arrow's CSV reader takes: each read
    gives the size asked for (Arrow's block), however the blocks come, as Arrow needs a record
    within two of its blocks (a record cut across three it refuses as "straddling")."""

    def __init__(self, blocks: Iterator[bytes]) -> None:
        super().__init__()
        self._blocks = blocks
        self._left = b""

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> Any:
        """Up to ``size`` bytes, in a buffer of Arrow's pool: the parser keeps the blocks it
        is given until parsed, and the transcoder's own are let go at once (the C library
        kept what they had taken: 40 MB of a million members)."""
        parts, have = [], 0
        wanted = size if size is not None and size >= 0 else None
        while wanted is None or have < wanted:
            block = self._left or next(self._blocks, b"")
            self._left = b""
            if not block:
                break
            if wanted is not None and have + len(block) > wanted:
                block, self._left = block[: wanted - have], block[wanted - have :]
            parts.append(block)
            have += len(block)
        buffer = pa.allocate_buffer(have)
        view, at = memoryview(buffer).cast("B"), 0
        for part in parts:
            view[at : at + len(part)] = part
            at += len(part)
        return buffer

    def readinto(self, buffer: Any) -> int:  # pragma: no cover - Arrow calls read()
        block = memoryview(self.read(len(buffer))).cast("B")
        buffer[: len(block)] = block
        return len(block)


def _read(source: Any, header: list[str], kind: Any) -> pa.Table | None:
    """The rows between the header and the sentinel, every column of ``kind`` (Arrow text),
    or None when Arrow refuses the text or reads the header or the end otherwise."""
    width = len(header)
    names = [f"f{i}" for i in range(width)]
    try:
        table = pacsv.read_csv(
            source,
            read_options=pacsv.ReadOptions(column_names=names, block_size=_BLOCK),
            parse_options=pacsv.ParseOptions(newlines_in_values=True, ignore_empty_lines=False),
            convert_options=pacsv.ConvertOptions(
                column_types=dict.fromkeys(names, kind),
                null_values=[],
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
            ),
        )
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
    rows = table.num_rows
    if rows < 2 or _row(table, 0) != header or _row(table, rows - 1) != [_SENTINEL] * width:
        return None
    return table.slice(1, rows - 2)


def _row(table: pa.Table, index: int) -> list[str]:
    return [column[index].as_py() for column in table.columns]
