"""A member CSV's bytes to text: UTF-8 (with or without a BOM) or CP932, never a guess.

B-Cart exports CP932 (Shift_JIS) and Excel saves "CSV UTF-8" with a BOM; a file that mixes
the two, an Excel workbook, UTF-16 or binary data is refused here, naming the line, the
column and the byte, before anything is parsed.
"""

from __future__ import annotations

import codecs
import csv
import re
from collections.abc import Iterator
from typing import BinaryIO, Final

import numpy as np

from bcartnb.exceptions import MembersFileError
from bcartnb.members.where import Where

__all__ = ["Declined", "check_not_binary", "decode", "utf8_blocks", "utf8_bytes"]

_PRIVATE_USE: Final = re.compile("[\ue000-\uf8ff]")
_CHUNK: Final = 1 << 20  # bytes a step, where the whole file is scanned or decoded


def decode(raw: bytes, where: Where) -> tuple[str, str]:
    """Text and encoding name. CP932 is tried after strict UTF-8: Japanese text in Shift_JIS
    is practically never valid UTF-8, and ASCII reads the same either way.

    A file that mixes the two (rows pasted from another export) is refused, naming a line of
    each: read whole as CP932, its UTF-8 rows would be silently garbled, and the error UTF-8
    or CP932 stumbles on first can be far from the row that is different.
    """
    if raw.startswith(b"\xef\xbb\xbf"):
        try:
            return raw[3:].decode("utf-8"), "utf-8-sig"
        except UnicodeDecodeError as err:
            raise _decode_error(raw, err.start + 3, "UTF-8 (it starts with a BOM)", where) from err
    try:
        return raw.decode("utf-8"), "utf-8"
    except UnicodeDecodeError as err:
        not_utf8 = err.start
    utf8_line = _utf8_line(raw, _line_start(raw, not_utf8))
    if utf8_line is not None:  # a line before the one UTF-8 stumbled on is UTF-8 Japanese
        raise _mixed_error(raw, utf8_line, not_utf8, where, "utf-8")
    try:
        text = raw.decode("cp932")
    except UnicodeDecodeError as err:
        if _is_utf8_line(raw, err.start):  # CP932 up to a line that is UTF-8
            raise _mixed_error(raw, err.start, not_utf8, where, "cp932") from err
        raise _decode_error(raw, err.start, "UTF-8 or CP932 (Shift_JIS)", where, "cp932") from err
    utf8_line = _utf8_line(raw, len(raw))
    if utf8_line is not None:  # CP932 read it all, garbling that UTF-8 line
        raise _mixed_error(raw, utf8_line, not_utf8, where, "cp932")
    return text, "cp932"


def utf8_bytes(raw: bytes) -> tuple[bytearray, str] | None:
    """What :func:`decode` returns, as UTF-8 bytes, when it reads ``raw`` without a word;
    None whenever it would refuse, so that the refusal (and its message) stays its own.

    For the fast reader, which parses UTF-8 bytes: decoding a 230 MB CP932 file whole held
    its bytes, its text and the text re-encoded at once (about 750 MB for 1M members); here it
    goes a megabyte at a time, and a UTF-8 file is checked without being decoded at all.
    The same tests decide, in the same order: a BOM means UTF-8; valid UTF-8 is UTF-8;
    otherwise CP932 must read every byte and no line may be UTF-8 Japanese
    (:func:`_utf8_line` over the whole file finds every line the partial scans would).
    """
    if raw.startswith(b"\xef\xbb\xbf"):
        return (bytearray(memoryview(raw)[3:]), "utf-8-sig") if _is_utf8(raw, 3) else None
    if _is_utf8(raw, 0):
        return bytearray(raw), "utf-8"
    out = bytearray()
    decoder = codecs.getincrementaldecoder("cp932")()
    view = memoryview(raw)
    try:
        for start in range(0, len(raw), _CHUNK):
            out += decoder.decode(view[start : start + _CHUNK]).encode("utf-8")
        out += decoder.decode(b"", True).encode("utf-8")
    except UnicodeDecodeError:
        return None
    if _utf8_line(raw, len(raw)) is not None:
        return None
    return out, "cp932"


class Declined(Exception):
    """Raised by :func:`utf8_blocks` mid-file: :func:`decode` would refuse the file or read it
    otherwise (the reader then reads it the plain way, which says why)."""


#: what :func:`check_not_binary` refuses by its first bytes (a workbook, UTF-16)
_BINARY_STARTS: Final = (
    b"PK\x03\x04",
    b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1",
    b"\xff\xfe",
    b"\xfe\xff",
)


def utf8_blocks(fh: BinaryIO) -> tuple[Iterator[bytes], str] | None:
    """What :func:`utf8_bytes` gives, from an open file, a megabyte at a time: neither the
    file's bytes nor its UTF-8 are ever held whole (of a million members, 231 and 283 MB).

    None when the file's first bytes say it is no text, or its encoding is not settled the
    way :func:`decode` settles it; the blocks raise :class:`Declined` where a later byte
    would make :func:`check_not_binary` or :func:`decode` refuse the file (a NUL, a byte
    CP932 cannot read, a line of Japanese in UTF-8 in a CP932 file). A file is UTF-8 when
    every byte is (read through once first, as a CP932 file stops at its first Japanese
    character); else CP932, transcoded a whole number of lines at a time, each judged by
    :func:`_utf8_line` as the whole file is (no CP932 byte is a newline, and no run it looks
    for spans one). UTF-8 blocks pass as read; their UTF-8 is for the parser to check.
    """
    head = fh.read(len(_BINARY_STARTS[1]))
    if head.startswith(_BINARY_STARTS):
        return None
    bom = head.startswith(b"\xef\xbb\xbf")
    if not bom and not _is_utf8_file(fh):
        fh.seek(0)
        return _cp932_blocks(fh), "cp932"
    fh.seek(3 if bom else 0)
    return _plain_blocks(fh), "utf-8-sig" if bom else "utf-8"


def _is_utf8_file(fh: BinaryIO) -> bool:
    fh.seek(0)
    decoder = codecs.getincrementaldecoder("utf-8")()
    try:
        while block := fh.read(_CHUNK):
            decoder.decode(block)
        decoder.decode(b"", True)
    except UnicodeDecodeError:
        return False
    return True


def _plain_blocks(fh: BinaryIO) -> Iterator[bytes]:
    while block := fh.read(_CHUNK):
        if b"\x00" in block:
            raise Declined("NUL")
        yield block


def _cp932_blocks(fh: BinaryIO) -> Iterator[bytes]:
    rest = b""
    while True:
        block = fh.read(_CHUNK)
        if b"\x00" in block:
            raise Declined("NUL")
        data = rest + block
        cut = data.rfind(b"\n") + 1 if block else len(data)
        lines, rest = data[:cut], data[cut:]
        del data
        if lines:
            if _utf8_line(lines, len(lines)) is not None:
                raise Declined("a line in UTF-8")
            try:
                yield lines.decode("cp932").encode("utf-8")
            except UnicodeDecodeError as err:
                raise Declined("not CP932") from err
        if not block:
            return


def _is_utf8(raw: bytes, skip: int) -> bool:
    """Whether ``raw[skip:]`` is UTF-8, a megabyte at a time (nothing is kept)."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    view = memoryview(raw)
    try:
        for start in range(skip, len(raw), _CHUNK):
            decoder.decode(view[start : start + _CHUNK])
        decoder.decode(b"", True)
    except UnicodeDecodeError:
        return False
    return True


def _line_start(raw: bytes, offset: int) -> int:
    return raw.rfind(b"\n", 0, offset) + 1


def _line_of(raw: bytes, offset: int) -> int:
    return raw.count(b"\n", 0, offset) + 1


def _utf8_line(raw: bytes, stop: int, run: int = 2) -> int | None:
    """The offset of a line before ``stop`` that is Japanese text in UTF-8, if any.

    Candidates are ``run`` UTF-8 kana or kanji in a row (three bytes each, led by E3-E9),
    found with NumPy (a regex took 0.2 s on a 100,000-member CP932 file); only their lines
    are decoded and judged by :func:`_is_utf8_line`. Two in a row, not one: of 100,000
    lines of 1-12 random CP932 characters, about 17 short ones pass that judgement by
    chance with one (``劍o``), none with two.
    """
    seen = -1
    for offset in _candidates(raw, stop, run):
        start = _line_start(raw, offset)
        if start != seen and _is_utf8_line(raw, offset):
            return offset
        seen = start
    return None


def _candidates(raw: bytes, stop: int, run: int) -> Iterator[int]:
    """Where ``run`` UTF-8 kana or kanji in a row start, in order, a megabyte at a time: the
    masks of a whole 230 MB file at once took 884 MB and two seconds."""
    width = 3 * run
    n = stop - width + 1  # the offsets a candidate can start at
    b = np.frombuffer(raw, dtype=np.uint8, count=max(stop, 0))
    for first in range(0, max(n, 0), _CHUNK):
        count = min(_CHUNK, n - first)
        chunk = b[first : first + count + width - 1]
        lead = (chunk - np.uint8(0xE3)) < 7  # E3-E9 (uint8 wraps below E3)
        tail = (chunk & 0xC0) == 0x80  # 80-BF
        hit = np.ones(count, dtype=bool)
        for k in range(run):
            hit &= lead[3 * k : 3 * k + count]
            hit &= tail[3 * k + 1 : 3 * k + 1 + count]
            hit &= tail[3 * k + 2 : 3 * k + 2 + count]
        for offset in np.flatnonzero(hit).tolist():
            yield first + offset


def _is_utf8_line(raw: bytes, offset: int) -> bool:
    """Whether the line holding ``offset`` is text in UTF-8: valid UTF-8, not ASCII only, and
    every character one CP932 has outside its private-use area (where CP932 bytes decoded as
    UTF-8 by chance land: U+E000-U+F8FF, or CJK characters CP932 lacks)."""
    end = raw.find(b"\n", offset)
    line = raw[_line_start(raw, offset) : len(raw) if end < 0 else end]
    try:
        text = line.decode("utf-8")
        text.encode("cp932")
    except UnicodeError:
        return False
    return not line.isascii() and not _PRIVATE_USE.search(text)


def _column(raw: bytes, offset: int, encoding: str) -> str:
    """``, column N (header)`` of the byte at ``offset``: the CSV field it falls in, counted on
    its line (a quoted field spanning lines aside), with the header read in ``encoding``;
    empty when the line is no CSV to count in (a stray CR)."""
    start = _line_start(raw, offset)
    before = raw[start:offset].decode(encoding, errors="replace")
    try:
        number = len(next(csv.reader([before]), [""])) or 1
    except csv.Error:
        return ""
    end = raw.find(b"\n")
    try:
        header = next(csv.reader([raw[: len(raw) if end < 0 else end].decode(encoding)]))
    except (UnicodeDecodeError, csv.Error, StopIteration):
        header = []
    name = header[number - 1].strip().lstrip("\ufeff") if number <= len(header) else ""
    return f", column {number}" + (f" ({name})" if name else "")


def _decode_error(
    raw: bytes, offset: int, tried: str, where: Where, header: str = "utf-8"
) -> MembersFileError:
    line = _line_of(raw, offset)
    column = _column(raw, offset, header)
    return where.error(
        f"cannot be read as {tried}: byte 0x{raw[offset]:02x} at line {line}{column} "
        f"(offset {offset})",
        ja=where.ja(
            f"の {line} 行目の文字が UTF-8 でも Shift_JIS（CP932）でも読めません。"
            "CSV（UTF-8 または Shift_JIS）で保存し直してください。"
        ),
    )


def _mixed_error(raw: bytes, utf8: int, other: int, where: Where, header: str) -> MembersFileError:
    """A file with UTF-8 text at offset ``utf8`` and other (CP932) text at ``other``."""
    utf8_line, other_line = _line_of(raw, utf8), _line_of(raw, other)
    column = _column(raw, other, header)
    return where.error(
        f"mixes encodings: line {utf8_line} is UTF-8 but line {other_line}{column} is not "
        f"(byte 0x{raw[other]:02x} at offset {other}; CP932/Shift_JIS?): "
        "save the whole file in one encoding",
        ja=where.ja(
            f"に UTF-8 の行（{utf8_line} 行目）と Shift_JIS（CP932）の行（{other_line} 行目）が"
            "混ざっています。ファイル全体を一つの文字コードで保存し直してください。"
        ),
    )


def check_not_binary(raw: bytes, where: Where) -> None:
    """Refuse what is no text at all (a workbook, UTF-16, a NUL byte) before decoding it."""
    if raw.startswith(b"PK\x03\x04"):
        raise where.error(
            "is not a CSV but an Excel workbook (.xlsx) or a ZIP archive: save it as CSV",
            ja=where.ja(
                "は CSV ではなく Excel ファイル（.xlsx）か ZIP です。CSV 形式で保存してください。"
            ),
        )
    if raw.startswith(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"):
        raise where.error(
            "is not a CSV but an old Excel workbook (.xls): save it as CSV",
            ja=where.ja(
                "は CSV ではなく古い Excel ファイル（.xls）です。CSV 形式で保存してください。"
            ),
        )
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise where.error(
            "is UTF-16 text, not a CSV in CP932 or UTF-8: save it as CSV UTF-8",
            ja=where.ja(
                "は UTF-16 のテキストです。CSV UTF-8 か Shift_JIS の CSV で保存してください。"
            ),
        )
    # Anywhere, not just in the first block: pandas' parser reads a NUL as the end of a
    # field, so a NUL deep in the file silently cut a member's value short.
    nul = raw.find(b"\x00")
    if nul >= 0:
        line = _line_of(raw, nul)
        raise where.error(
            f"is not a CSV: binary data (a NUL byte at line {line}, offset {nul})",
            ja=where.ja(
                f"の {line} 行目に NUL 文字（バイナリデータ）があります。"
                "CSV として保存し直してください。"
            ),
        )
