"""Members: a B-Cart member CSV or API snapshot read into one typed frame, and the address rules.

The frame is the same whatever the source (the CSV export, or a ``.parquet`` snapshot pulled
from the B-Cart API by :mod:`bcartnb.bcart_api`; both go through :func:`typed_members`): canonical
columns named after the API's customer keys, in :data:`CANONICAL_COLUMNS` order, then every
other column of the file (カスタム項目) under its own header, as text. A canonical column
missing from the file is still there, blank, so later stages never need to ask whether
``mm_flag`` exists; ``df.attrs["missing_columns"]`` says which ones the file lacked.

The index is the row number in the file as a spreadsheet shows it (the header is row 1, the
first member row 2), so an error found later (a bad address, an unencodable company name)
can still point at the row to fix. ``df.attrs`` holds ``source`` (the path), ``encoding``
and ``headers`` (column -> the header as written in the file).

Everything is vectorised: a row loop over 100,000 members would cost seconds, and the
widgets re-run the audience on every click.
"""

from __future__ import annotations

import contextlib
import csv
import functools
import io
import os
import re
import unicodedata
import warnings
from collections.abc import Container, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, Final

import numpy as np
import pandas as pd
import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.compute as pc  # type: ignore[import-untyped]

from bcartnb.exceptions import MembersFileError
from bcartnb.files import read_regular

__all__ = [
    "CANONICAL_COLUMNS",
    "COLUMN_KINDS",
    "COLUMN_LABELS",
    "CUSTOM_PREFIX",
    "HEADER_ALIASES",
    "MM_FLAG_VALUES",
    "SNAPSHOT_SUFFIXES",
    "address_codes",
    "check_addresses",
    "custom_column",
    "empty_members",
    "is_valid_domain",
    "normalize_address",
    "normalize_addresses",
    "read_members",
    "renamed_note",
    "to_arrow_strings",
    "typed_members",
]

# canonical name, kind, Japanese headers accepted (the first is the label shown to users)
_SPEC: Final[tuple[tuple[str, str, tuple[str, ...]], ...]] = (
    ("id", "id", ("Bカート会員ID", "会員ID")),
    ("ext_id", "str", ("貴社独自会員ID",)),
    ("comp_name", "str", ("会社名",)),
    ("comp_name_kana", "str", ("会社名(カナ)",)),
    ("department", "str", ("担当部署", "部署名")),
    ("tanto_last_name", "str", ("担当者(姓)",)),
    ("tanto_first_name", "str", ("担当者(名)",)),
    ("email", "email", ("メールアドレス",)),
    ("email_cc", "str", ("CCメールアドレス",)),
    ("tel", "str", ("電話番号",)),
    ("mobile_phone", "str", ("携帯番号",)),
    ("zip", "str", ("郵便番号",)),
    ("pref", "str", ("都道府県",)),
    ("address1", "str", ("市区町村",)),
    ("address2", "str", ("町域・番地",)),
    ("address3", "str", ("ビル建物名など",)),
    ("price_group_id", "int", ("価格グループID",)),
    ("view_group_id", "int", ("閲覧グループID",)),
    ("salesman_id", "int", ("営業担当ID",)),
    ("mm_flag", "bool", ("メール案内",)),
    ("status", "str", ("状態",)),
    ("created_at", "datetime", ("登録日時",)),
    ("updated_at", "datetime", ("更新日時",)),
)

#: The canonical member columns, in the contract's order.
CANONICAL_COLUMNS: Final[tuple[str, ...]] = tuple(name for name, _, _ in _SPEC)
#: canonical column -> "id" | "str" | "email" | "int" | "bool" | "datetime"
COLUMN_KINDS: Final[Mapping[str, str]] = {name: kind for name, kind, _ in _SPEC}
#: canonical column -> the Japanese header B-Cart shows (for messages and reports)
COLUMN_LABELS: Final[Mapping[str, str]] = {name: aliases[0] for name, _, aliases in _SPEC}
#: Japanese header -> canonical column. Headers are compared after NFKC, so 会社名（カナ）
#: with full-width parentheses is 会社名(カナ).
HEADER_ALIASES: Final[Mapping[str, str]] = {
    alias: name for name, _, aliases in _SPEC for alias in aliases
}
#: メール案内 values (compared stripped and case-folded); blank is False; anything else is an error.
MM_FLAG_VALUES: Final[Mapping[str, bool]] = {
    "受け取る": True,
    "1": True,
    "true": True,
    "受け取らない": False,
    "0": False,
    "false": False,
    "": False,
}

#: File suffixes read as a B-Cart API snapshot (:mod:`bcartnb.bcart_api`); anything else is a CSV.
SNAPSHOT_SUFFIXES: Final = (".parquet",)
TOKYO: Final = "Asia/Tokyo"
_REQUIRED: Final = ("id", "email")
# ASCII white space and the full-width space U+3000, trimmed around an address.
_SPACES: Final = " \t\r\n\v\f\u3000"
_ATEXT: Final = r"A-Za-z0-9!#$%&'*+/=?^_{|}~-"
_LOCAL: Final = rf"[{_ATEXT}]+(?:\.[{_ATEXT}]+)*"
_LABEL: Final = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
# An address whose local part B-Cart accepts and whose domain is plainly a DNS name
# (LDH labels of at most 63, a letters-only TLD). Anything of that shape that email-validator
# could still refuse (an R-LDH label like "ab--c", a special-use TLD, a length limit) is
# caught by the checks in check_addresses; the property tests hold the two to each other.
_FAST_ADDRESS: Final = rf"{_LOCAL}@(?:{_LABEL}\.)+[A-Za-z]{{2,63}}"
# The local part is ours to judge; an ASCII domain goes to email-validator (which would take
# 例え.jp as IDNA, but B-Cart registers no full-width character anywhere in an address).
_SHAPE: Final = rf"{_LOCAL}@[A-Za-z0-9.-]+"
_LOCAL_MAX: Final = 64
_ADDRESS_MAX: Final = 254
_DOMAIN_MAX: Final = 253
_DATE_RE: Final = (
    r"^(\d{4})[-/.年](\d{1,2})[-/.月](\d{1,2})日?"
    r"(?:[ T]+(\d{1,2}):(\d{2})(?::(\d{2})(?:\.\d+)?)?)?$"
)
_ID_RE: Final = r"[0-9]{1,18}"
_BCART_DATETIME: Final = "%Y/%m/%d %H:%M:%S"


# --- addresses ---------------------------------------------------------------------------


def normalize_address(address: str | None) -> str:
    """The address as mail goes to it: surrounding ASCII and full-width (U+3000) spaces trimmed.

    People paste addresses from Japanese documents, where a trailing full-width space is
    invisible; B-Cart trims them too. ``None`` is the empty address.
    """
    if address is None or (isinstance(address, float) and np.isnan(address)):
        return ""
    return str(address).strip(_SPACES)


def normalize_addresses(emails: pd.Series) -> pd.Series:
    """:func:`normalize_address` for a whole column at once (blank stays blank, never NaN)."""
    text = emails.astype("str").fillna("")
    return text.str.strip(_SPACES)


@functools.lru_cache(maxsize=1 << 16)
def is_valid_domain(domain: str) -> bool:
    """email-validator's full syntax check of a domain (no DNS), cached per distinct domain.

    It costs about 27 µs a call, so it runs once per domain the fast regex could not settle;
    the local part is checked by a vectorised regex against B-Cart's narrower rules.
    """
    from email_validator import EmailNotValidError, validate_email

    try:
        validate_email(
            f"a@{domain}",
            check_deliverability=False,
            allow_smtputf8=False,
            allow_quoted_local=False,
            allow_domain_literal=False,
        )
    except EmailNotValidError:
        return False
    return True


@functools.cache
def _special_tail_re() -> str:
    """Special-use names (``.test``, ``.local`` ...) that email-validator refuses, read from it."""
    from email_validator import SPECIAL_USE_DOMAIN_NAMES

    return rf"\.(?:{'|'.join(re.escape(d) for d in SPECIAL_USE_DOMAIN_NAMES)})$"


_TAIL: Final = 12  # the longest special-use name with its dot, and some
_OK, _EMPTY, _INVALID = 0, 1, 2
_CODES: Final = (None, "empty_address", "invalid_address")


def _bools(result: Any) -> np.ndarray[Any, np.dtype[np.bool_]]:
    return np.asarray(result.to_numpy(zero_copy_only=False), dtype=bool)


def to_arrow_strings(column: pd.Series) -> pa.Array:
    """A text column as one Arrow string array, missing values null: zero-copy for pandas'
    Arrow-backed ``str`` dtype, converted for anything else (object, ``string[python]``)."""
    try:
        raw = pa.array(column, from_pandas=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        raw = pa.array(column.astype("str"), from_pandas=True)
    if not (pa.types.is_string(raw.type) or pa.types.is_large_string(raw.type)):
        raw = pa.array(column.astype("str"), from_pandas=True, type=pa.large_string())
    if isinstance(raw, pa.ChunkedArray):  # pragma: no cover - pa.array gives one chunk
        raw = raw.combine_chunks()
    return raw


def address_codes(emails: pd.Series) -> tuple[np.ndarray[Any, np.dtype[np.int8]], pa.Array]:
    """The vectorised core of :func:`check_addresses`: per row 0 (valid), 1 (empty) or 2
    (invalid), and the trimmed addresses as an Arrow array (for duplicate detection).

    Each step is one pass of Arrow compute (RE2 regexes, no Python per row); email-validator
    runs once per distinct domain that the fast regex could not settle (rare shapes: a
    ``--`` anywhere, a special-use TLD, anything but a plain LDH domain).
    """
    text = pc.fill_null(pc.utf8_trim(to_arrow_strings(emails), _SPACES), "")
    lengths = pc.utf8_length(text).to_numpy(zero_copy_only=False)
    empty = lengths == 0
    fast = _bools(pc.match_substring_regex(text, f"^(?:{_FAST_ADDRESS})$"))
    at = pc.find_substring(text, "@").to_numpy(zero_copy_only=False)
    within = (lengths <= _ADDRESS_MAX) & (at <= _LOCAL_MAX)
    if fast.any():
        tail = pc.utf8_slice_codeunits(text, -_TAIL)
        odd = _bools(pc.match_substring(text, "--")) | _bools(
            pc.match_substring_regex(tail, _special_tail_re(), ignore_case=True)
        )
        slow = (~fast | odd) & ~empty & within
        valid = fast & ~odd & within
    else:
        slow = ~empty & within
        valid = np.zeros(len(text), dtype=bool)
    if slow.any():
        idx = np.flatnonzero(slow)
        candidates = pc.take(text, pa.array(idx))
        shaped = _bools(pc.match_substring_regex(candidates, f"^(?:{_SHAPE})$"))
        idx = idx[shaped]
        if len(idx):
            domains = pc.utf8_lower(
                pc.replace_substring_regex(pc.take(text, pa.array(idx)), "^[^@]*@", "")
            )
            encoded = pc.dictionary_encode(domains)
            verdict = np.array(
                [
                    len(d) <= _DOMAIN_MAX and is_valid_domain(d)
                    for d in encoded.dictionary.to_pylist()
                ],
                dtype=bool,
            )
            valid[idx] = verdict[encoded.indices.to_numpy(zero_copy_only=False)]
    codes = np.where(valid, _OK, _INVALID).astype(np.int8)
    codes[empty] = _EMPTY
    return codes, text


def check_addresses(emails: pd.Series) -> pd.Series:
    """The reason each address cannot be mailed: ``empty_address``, ``invalid_address`` or <NA>.

    Addresses are trimmed first (:func:`normalize_address`). Valid means both B-Cart can
    register it (local part only ``A-Za-z0-9`` and ``.!#$%&'*+-/=?^_{|}~``, no leading,
    trailing or doubled dot, ASCII only) and email-validator accepts it (no DNS, no SMTPUTF8,
    no quoted local part). The result has the index of ``emails`` and the ``string`` dtype.
    """
    codes, _ = address_codes(emails)
    reason = np.array(_CODES, dtype=object)[codes]
    return pd.Series(reason, index=emails.index, dtype="string", name="reason")


# --- reading -----------------------------------------------------------------------------


def _header_key(header: str) -> str:
    return unicodedata.normalize("NFKC", header).strip()


_ALIAS_KEYS: Final[Mapping[str, str]] = {
    **{_header_key(alias): name for alias, name in HEADER_ALIASES.items()},
    **{name: name for name in CANONICAL_COLUMNS},
}


def _canonical(header: str) -> str | None:
    key = _header_key(header)
    return _ALIAS_KEYS.get(key) or _ALIAS_KEYS.get(key.lower())


#: A custom field (カスタム項目) whose name is a standard column's is read under this prefix.
CUSTOM_PREFIX: Final = "カスタム:"


def custom_column(head: str, taken: Container[str]) -> str:
    """The column a custom field is read into: its own name, unless that names a standard
    column (状態, メール案内, 会員ID, status, ...) or a column already taken; then
    ``カスタム:名前`` (``カスタム:名前(2)`` should that be taken too).

    B-Cart lets a shop name a custom field anything, and it cannot be deleted once used, so
    a clash is read, not refused. The CSV export lists custom fields after the standard
    columns and the API apart from them: either way the custom one is renamed, by this one
    rule, and both sources give the same frame.
    """
    if _canonical(head) is None and head not in taken:
        return head
    name, n = f"{CUSTOM_PREFIX}{head}", 2
    while name in taken:
        name, n = f"{CUSTOM_PREFIX}{head}({n})", n + 1
    return name


def renamed_note(head: str, name: str) -> str:
    """The warning line for a custom field read under another name (:func:`custom_column`)."""
    return (
        f"カスタム項目「{head}」は標準の列または他の列と同じ名前のため、"
        f'「{name}」として読み込みました（テンプレートでは {{{{ member["{name}"] }}}}）。'
    )


def empty_members(extra: Iterable[str] = ()) -> pd.DataFrame:
    """A member frame with no rows but every canonical column typed (the schema, for UIs)."""
    cols: dict[str, Any] = {}
    for name in CANONICAL_COLUMNS:
        cols[name] = _typed_empty(COLUMN_KINDS[name])
    for name in extra:
        cols[name] = pd.Series([], dtype="str")
    frame = pd.DataFrame(cols, index=pd.Index([], dtype=np.int64, name="row"))
    return frame


def _typed_empty(kind: str) -> pd.Series:
    if kind == "id":
        return pd.Series([], dtype=np.int64)
    if kind == "int":
        return pd.Series([], dtype="Int64")
    if kind == "bool":
        return pd.Series([], dtype=bool)
    if kind == "datetime":
        return pd.Series([], dtype=f"datetime64[us, {TOKYO}]")
    return pd.Series([], dtype="str")


class _Where:
    """Builds one-line error messages that name the file, row and column."""

    def __init__(self, path: Path, label: tuple[str, str] | None = None) -> None:
        self.path = path
        self.label = label

    def error(
        self, message: str, row: int | None = None, column: str | None = None, *, ja: str = ""
    ) -> MembersFileError:
        where = self.label[0] if self.label else str(self.path)
        if row is not None:
            where += f": row {row}"
        if column is not None:
            where += f", column {column}" if row is not None else f": column {column}"
        return MembersFileError(f"{where}: {message}", ja=ja)

    def ja(self, text: str) -> str:
        """The Japanese first line: which file, then ``text``."""
        return f"{self.label[1] if self.label else f'会員ファイル {self.path}'} {text}"


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "...'"


_PRIVATE_USE: Final = re.compile("[\ue000-\uf8ff]")


def _decode(raw: bytes, where: _Where) -> tuple[str, str]:
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
    width = 3 * run
    if stop < width:
        return None
    b = np.frombuffer(raw, dtype=np.uint8, count=stop)
    lead = (b >= 0xE3) & (b <= 0xE9)
    tail = (b >= 0x80) & (b <= 0xBF)
    n = stop - width + 1
    hit = np.ones(n, dtype=bool)
    for k in range(run):
        hit &= lead[3 * k : 3 * k + n] & tail[3 * k + 1 : 3 * k + 1 + n]
        hit &= tail[3 * k + 2 : 3 * k + 2 + n]
    seen = -1
    for offset in np.flatnonzero(hit).tolist():
        start = _line_start(raw, offset)
        if start != seen and _is_utf8_line(raw, offset):
            return int(offset)
        seen = start
    return None


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
    raw: bytes, offset: int, tried: str, where: _Where, header: str = "utf-8"
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


def _mixed_error(raw: bytes, utf8: int, other: int, where: _Where, header: str) -> MembersFileError:
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


def _check_not_binary(raw: bytes, where: _Where) -> None:
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


def _lines(text: str) -> Iterator[str]:
    """The text's lines, lazily: csv.reader takes only what the header needs."""
    start = 0
    while start < len(text):
        end = text.find("\n", start)
        end = len(text) if end < 0 else end + 1
        yield text[start:end]
        start = end


def _parse(text: str, where: _Where) -> tuple[list[str], pd.DataFrame]:
    try:
        header = next(csv.reader(_lines(text)))
    except (csv.Error, StopIteration) as err:
        raise where.error(f"is not a CSV: {err}", ja=where.ja("を CSV として読めません。")) from err
    header = [h.strip() for h in header]
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


def _read_file(file: Path, where: _Where) -> bytes:
    """The file's bytes, if it is a regular file (:func:`~bcartnb.files.read_regular`):
    ``/dev/zero`` reads forever and a FIFO blocks until someone writes; neither is a member
    list."""
    try:
        return read_regular(file, "会員ファイル", MembersFileError)
    except FileNotFoundError as err:
        raise where.error(
            "no such member file", ja=where.ja("が見つかりません。パスを確かめてください。")
        ) from err
    except IsADirectoryError as err:
        raise _directory_error(where) from err
    except OSError as err:
        raise where.error(
            f"cannot be read: {err.strerror or err}",
            ja=where.ja("を読めません（読み取りの権限などを確かめてください）。"),
        ) from err


def _directory_error(where: _Where) -> MembersFileError:
    return where.error(
        "is a directory, not a member CSV",
        ja=where.ja("はフォルダーです。会員CSVファイルを指定してください。"),
    )


def _long_row_error(text: str, width: int, where: _Where) -> MembersFileError:
    """The first record with more fields than the header, named by its line."""
    reader = csv.reader(_lines(text))
    line, saw = 2, width + 1
    with contextlib.suppress(csv.Error):
        for record in reader:
            if len(record) > width:
                line, saw = reader.line_num, len(record)
                break
    return MembersFileError(f"{where.path}: line {line}: {saw} fields where the header has {width}")


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
        from bcartnb.bcart_api import read_snapshot

        return read_snapshot(file)
    where = _Where(file)
    raw = _read_file(file, where)
    _check_not_binary(raw, where)
    text, encoding = _decode(raw, where)
    if not text.strip(_SPACES + "\ufeff"):
        raise where.error(
            "is empty: a member CSV needs a header row and members",
            ja=where.ja("が空です。見出しの行と会員の行が必要です。"),
        )
    header, body = _parse(text, where)
    frame = typed_members(header, body, file)
    frame.attrs["encoding"] = encoding
    return frame


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
    file = Path(source)
    where = _Where(file, described_as)
    notes: list[str] = []
    columns: dict[str, tuple[int, str]] = {}  # column name -> (position, header)
    for pos, head in enumerate(header):
        if not head:
            if (body.iloc[:, pos] == "").all():
                continue
            raise where.error(
                f"column {pos + 1} has values but no header",
                ja=where.ja(f"の {pos + 1} 列目に値がありますが、見出しがありません。"),
            )
        name = _canonical(head) or head
        if name in columns:
            name = custom_column(head, columns)
            notes.append(renamed_note(head, name))
        columns[name] = (pos, head)
    missing = [name for name in _REQUIRED if name not in columns]
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
        wanted = ", ".join(f"{n} ({COLUMN_LABELS[n]})" for n in missing)
        raise where.error(
            f"missing column {wanted}; headers are: {', '.join(header)}",
            ja=where.ja(
                f"に必要な列がありません: {'、'.join(COLUMN_LABELS[n] for n in missing)}。"
            ),
        )

    body.index = pd.RangeIndex(2, len(body) + 2, name="row")
    body = body[~(body == "").all(axis=1)] if len(body) else body

    data: dict[str, pd.Series] = {}
    headers: dict[str, str] = {}
    for name in CANONICAL_COLUMNS:
        kind = COLUMN_KINDS[name]
        if name not in columns:
            data[name] = _blank(kind, body.index)
            continue
        pos, head = columns[name]
        label = head if head == name else f"{head} ({name})"
        data[name] = _convert(body.iloc[:, pos], kind, label, where)
        headers[name] = head
    for name, (pos, head) in columns.items():
        if name not in COLUMN_KINDS:
            data[name] = _custom(body.iloc[:, pos])
            headers[name] = head

    frame = pd.DataFrame(data, index=body.index)
    _check_unique_ids(frame["id"], where, columns["id"][1])
    frame.attrs = {
        "source": str(file),
        "headers": headers,
        "missing_columns": [n for n in CANONICAL_COLUMNS if n not in columns],
        "warnings": notes,
    }
    return frame


def _blank(kind: str, index: pd.Index) -> pd.Series:
    if kind == "bool":
        return pd.Series(False, index=index, dtype=bool)
    if kind == "int":
        return pd.Series(pd.NA, index=index, dtype="Int64")
    if kind == "datetime":
        return pd.Series(pd.NaT, index=index, dtype=f"datetime64[us, {TOKYO}]")
    return pd.Series(np.nan, index=index, dtype="str")


def _text(col: pd.Series) -> pd.Series:
    return col.astype("str").mask(col == "")


#: A custom column's whole number: no sign but a minus, no leading zero (0123 is a code, and
#: a code read as 123 would lose its zero), at most 18 digits (int64 holds every one).
_CUSTOM_INT_RE: Final = r"-?(?:0|[1-9][0-9]{0,17})"


def _custom(col: pd.Series) -> pd.Series:
    """A custom field (カスタム項目) typed by what it holds, so a filter can take its range.

    Whole numbers, blanks allowed, become nullable ``Int64`` (``{"取引開始年": {"min": 2010}}``);
    dates in any form B-Cart or a person writes (2024/05/01, 2024-5-1, 2024年5月1日) become
    Asia/Tokyo datetimes like 登録日時. One value that is neither, or a leading zero anywhere
    (``0123``, a code), keeps the whole column text: a column never holds two types.
    """
    stripped = col.str.strip(_SPACES)
    blank = stripped == ""
    if blank.all():
        return _text(col)
    values = stripped[~blank]
    first = str(values.iloc[0])  # most text columns are told apart by their first value
    if re.fullmatch(_CUSTOM_INT_RE, first) and values.str.fullmatch(_CUSTOM_INT_RE).all():
        return stripped.mask(blank).astype("Int64")
    if re.match(_DATE_RE, first):
        stamps, bad = _parse_datetimes(stripped, blank)
        if not bad.any():
            localized: pd.Series = stamps.dt.tz_localize(TOKYO)
            return localized
    return _text(col)


def _first_bad(col: pd.Series, bad: pd.Series | np.ndarray[Any, Any]) -> tuple[int, Any]:
    mask = np.asarray(bad, dtype=bool)
    pos = int(np.flatnonzero(mask)[0])
    return int(col.index[pos]), col.iloc[pos]


def _convert(col: pd.Series, kind: str, label: str, where: _Where) -> pd.Series:
    if kind in ("str",):
        return _text(col)
    if kind == "email":
        trimmed = normalize_addresses(col)
        return trimmed.mask(trimmed == "")
    stripped = col.str.strip(_SPACES)
    blank = stripped == ""
    if kind == "id":
        if blank.any():
            row, _ = _first_bad(col, blank)
            raise where.error(
                "member id is blank", row, label, ja=where.ja(f"の {row} 行目の会員IDが空欄です。")
            )
        bad = ~stripped.str.fullmatch(_ID_RE)
        if bad.any():
            row, value = _first_bad(col, bad)
            raise where.error(
                f"{_show(value)} is not a member id (a whole number)",
                row,
                label,
                ja=where.ja(
                    f"の {row} 行目「{label}」の {_show(value)} は会員ID（整数）ではありません。"
                ),
            )
        return stripped.astype(np.int64)
    if kind == "int":
        bad = ~blank & ~stripped.str.fullmatch(_ID_RE)
        if bad.any():
            row, value = _first_bad(col, bad)
            raise where.error(
                f"{_show(value)} is not a whole number",
                row,
                label,
                ja=where.ja(f"の {row} 行目「{label}」の {_show(value)} は整数ではありません。"),
            )
        return stripped.mask(blank).astype("Int64")
    if kind == "bool":
        flags = stripped.str.lower().map(MM_FLAG_VALUES)
        bad = flags.isna()
        if bad.any():
            row, value = _first_bad(col, bad)
            raise where.error(
                f"{_show(value)} is not 受け取る/受け取らない (or 1/0, true/false, blank)",
                row,
                label,
                ja=where.ja(
                    f"の {row} 行目「{label}」の {_show(value)} は"
                    "「受け取る」「受け取らない」のどちらでもありません。"
                ),
            )
        return flags.astype(bool)
    if kind == "datetime":
        return _datetimes(col, stripped, blank, label, where)
    raise AssertionError(kind)  # pragma: no cover


def _datetimes(
    col: pd.Series, stripped: pd.Series, blank: pd.Series, label: str, where: _Where
) -> pd.Series:
    """B-Cart's date column, or an error naming the first value that is not a date."""
    stamps, bad = _parse_datetimes(stripped, blank)
    if bad.any():
        row, value = _first_bad(col, bad)
        raise where.error(
            f"{_show(value)} is not a date and time",
            row,
            label,
            ja=where.ja(f"の {row} 行目「{label}」の {_show(value)} は日時として読めません。"),
        )
    localized: pd.Series = stamps.dt.tz_localize(TOKYO)
    return localized


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
        parts = others.str.extract(_DATE_RE)
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


def _check_unique_ids(ids: pd.Series, where: _Where, header: str) -> None:
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
