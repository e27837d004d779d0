"""Reading a member file: the one place a source is told apart, and the CSV export's parse.

A ``.parquet`` file is a snapshot pulled from the B-Cart API (:mod:`bcartnb.members.snapshot`);
anything else is B-Cart's CSV export (or a list edited in Excel), decoded by
:mod:`bcartnb.members.decode` and parsed here into text cells. Both are typed by
:mod:`bcartnb.members.typed`'s rules (:func:`~bcartnb.members.typed.typed_members`, or its
Arrow twin held equal to it), so a new source of members reads into the same frame the same way.

A CSV is read the fast way first (the file transcoded to UTF-8 a megabyte at a time and
parsed by Arrow as it comes, :mod:`bcartnb.members.arrowcsv`, its Arrow text typed by
:mod:`bcartnb.members.arrow_typed` as a snapshot's is); whatever that way declines, and every
file with something wrong in it, is read by :func:`read_members_plain`, the reference the fast
way is held equal to (tests/test_members_fast.py): one set of rules, and one voice for errors.
"""

from __future__ import annotations

import contextlib
import csv
import io
import os
import re
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path

import pandas as pd

from bcartnb.exceptions import MembersFileError
from bcartnb.files import open_regular, read_regular
from bcartnb.members.arrow_typed import typed_columns
from bcartnb.members.arrowcsv import block_lines, parse_blocks
from bcartnb.members.columns import SPACES
from bcartnb.members.decode import Declined, check_not_binary, decode, utf8_blocks
from bcartnb.members.snapshot import SNAPSHOT_SUFFIXES, read_snapshot
from bcartnb.members.typed import typed_members
from bcartnb.members.where import Where

__all__ = ["read_members", "read_members_plain"]


def _lines(text: str) -> Iterator[str]:
    """The text's lines, lazily: csv.reader takes only what the header needs."""
    start = 0
    while start < len(text):
        end = text.find("\n", start)
        end = len(text) if end < 0 else end + 1
        yield text[start:end]
        start = end


def _header(lines: Iterable[str], where: Where) -> list[str]:
    """The header row as written (not stripped)."""
    try:
        return next(csv.reader(lines))
    except (csv.Error, StopIteration) as err:
        raise where.error(f"is not a CSV: {err}", ja=where.ja("を CSV として読めません。")) from err


def _parse(text: str, where: Where) -> tuple[list[str], pd.DataFrame]:
    header = [h.strip() for h in _header(_lines(text), where)]
    try:
        # UTF-8 bytes, not a StringIO: the parser reads bytes natively, and a StringIO of a
        # Japanese text holds 4 bytes a character (the peak memory of a 60,000-member read)
        with warnings.catch_warnings():
            # pandas only warns when the first row is longer than the header, and drops
            # the extra values: an error like any other row's
            warnings.simplefilter("error", pd.errors.ParserWarning)
            body = pd.read_csv(
                io.BytesIO(text.encode("utf-8")),
                encoding="utf-8",
                dtype=str,
                keep_default_na=False,
                na_filter=False,
                index_col=False,
                skip_blank_lines=False,
            )
    except pd.errors.ParserWarning as err:
        raise _long_row_error(text, len(header), where) from err
    except (pd.errors.ParserError, ValueError) as err:
        message = " ".join(str(err).split())
        found = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", message)
        if found:
            expected, line, saw = found.groups()
            message = f"{saw} fields where the header has {expected}"
            raise MembersFileError(
                f"{where.path}: line {line}: {message}",
                ja=where.ja(
                    f"の {line} 行目の項目の数（{saw}）が見出し（{expected}）と合いません。"
                ),
            ) from err
        raise where.error(
            f"is not a readable CSV: {message}",
            ja=where.ja('を CSV として読めません（引用符 " の対応などを確かめてください）。'),
        ) from err
    if body.shape[1] != len(header):  # pragma: no cover - pandas and csv disagree on quoting
        raise where.error(
            f"header has {len(header)} columns but pandas found {body.shape[1]}",
            ja=where.ja("の列の数が見出しと合いません。"),
        )
    return header, body


def _read_file(file: Path, where: Where) -> bytes:
    """The file's bytes, if it is a regular file (:func:`~bcartnb.files.read_regular`):
    ``/dev/zero`` reads forever and a FIFO blocks until someone writes; neither is a member
    list."""
    try:
        return read_regular(file, "会員ファイル", MembersFileError)
    except OSError as err:
        raise where.unreadable(
            err,
            "is a directory, not a member CSV",
            "はフォルダーです。会員CSVファイルを指定してください。",
        ) from err


def _long_row_error(text: str, width: int, where: Where) -> MembersFileError:
    """The first record with more fields than the header, named by its line."""
    reader = csv.reader(_lines(text))
    line, saw = 2, width + 1
    with contextlib.suppress(csv.Error):
        for record in reader:
            if len(record) > width:
                line, saw = reader.line_num, len(record)
                break
    return MembersFileError(
        f"{where.path}: line {line}: {saw} fields where the header has {width}",
        ja=where.ja(f"の {line} 行目の項目の数（{saw}）が見出し（{width}）と合いません。"),
    )


def read_members(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read a B-Cart member CSV (CP932/Shift_JIS, UTF-8 or UTF-8 with BOM) into a typed frame.

    A ``.parquet`` file is a snapshot pulled from the B-Cart API (``bcartnb bcart pull``) and
    gives the same frame as the CSV export of the same members. Headers may be Japanese
    (会員ID, メールアドレス, ...) or canonical (id, email, ...); other columns are kept as text.
    Dtypes: ``id`` int64, group ids nullable ``Int64``, ``mm_flag`` bool,
    ``created_at``/``updated_at`` Asia/Tokyo datetimes, the rest text with blanks as missing;
    ``email`` is trimmed. Rows whose every cell is blank (Excel leaves them) are dropped.
    Anything unreadable is a :class:`MembersFileError` naming the file,
    row and column: nothing half-read comes back.
    """
    file = Path(path)
    if file.suffix.lower() in SNAPSHOT_SUFFIXES:  # the one place a source is told apart
        return read_snapshot(file)
    fast = _read_fast(file)
    if fast is None:
        return read_members_plain(file)
    frame, encoding = fast
    frame.attrs["encoding"] = encoding
    return frame


def read_members_plain(path: str | os.PathLike[str]) -> pd.DataFrame:
    """:func:`read_members` of a CSV the plain way only: the whole text decoded, parsed by
    pandas. The reference the fast way is held equal to; it names what is wrong in a file."""
    file = Path(path)
    header, body, encoding = _cells(file, Where(file))
    frame = typed_members(header, body, file)
    frame.attrs["encoding"] = encoding
    return frame


def _cells(file: Path, where: Where) -> tuple[list[str], pd.DataFrame, str]:
    """Header, text cells and encoding, the plain way (every refusal is made here)."""
    raw = _read_file(file, where)
    check_not_binary(raw, where)
    text, encoding = decode(raw, where)
    del raw
    if not text.strip(SPACES + "\ufeff"):
        raise where.error(
            "is empty: a member CSV needs a header row and members",
            ja=where.ja("が空です。見出しの行と会員の行が必要です。"),
        )
    header, body = _parse(text, where)
    return header, body, encoding


def _read_fast(file: Path) -> tuple[pd.DataFrame, str] | None:
    """The frame and encoding, from the file's UTF-8 parsed by Arrow a block at a time as
    it is transcoded, and typed in Arrow (:func:`~bcartnb.members.arrow_typed.typed_columns`,
    held to :func:`typed_members` as a snapshot is); None (read it plainly) for whatever the
    plain way would refuse or the two parsers could read apart. Neither the file's bytes
    nor its UTF-8 are ever held whole: a million members peaked at 800 MB with both."""
    try:
        with open_regular(file, "会員ファイル", MembersFileError) as fh:
            utf8 = utf8_blocks(fh)
            if utf8 is None:
                return None
            header, blocks = _fast_header(utf8[0])
            encoding = utf8[1]
            del utf8
            table = None if header is None else parse_blocks(blocks, header)
            del blocks
    except (Declined, OSError):
        return None  # the plain way names what is wrong
    if table is None or header is None:
        return None
    columns = table.columns
    del table  # typed_columns lets each column go once typed
    return typed_columns([h.strip() for h in header], columns, file), encoding


def _fast_header(blocks: Iterator[bytes]) -> tuple[list[str] | None, Iterator[bytes]]:
    """The header row as :func:`_header` reads it, and the blocks again from the first; None
    for a file the fast way leaves to the plain one (blank, or a header :mod:`csv` cannot
    read: the plain way says why). The blocks the header took are let go as they are given
    again (``itertools.tee`` kept 57 of them: 60 MB)."""
    taken: list[bytes] = []

    def taking() -> Iterator[bytes]:
        for block in blocks:
            taken.append(block)
            yield block

    def again() -> Iterator[bytes]:
        while taken:
            yield taken.pop(0)
        yield from blocks

    try:
        header: list[str] | None = next(csv.reader(block_lines(taking())))
    except (csv.Error, StopIteration, UnicodeDecodeError):
        header = None
    if header is not None and not "".join(header).strip(SPACES + "\ufeff"):
        header = None
    return header, again()
