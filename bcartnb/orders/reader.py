"""A 受注 CSV (受注管理 > 受注一覧 > CSVエクスポート) read into the orders frame.

B-Cart's admin screen exports orders as CP932 (Shift_JIS) text, one line per order product
(受注商品), the order's own columns repeated on each of its lines. The file's bytes are
decoded by the member CSV's rule (:func:`bcartnb.members.decode.decode`: UTF-8 or CP932,
never a guess), and its columns are found by header, so a shop's export with more columns,
or in another order, reads the same.

Where the shapes come from, and what is not verified: B-Cart's user guide (受注一覧,
userguide.bcart.jp) names 受注ID and 受注番号 (both numbered automatically), 会員ID and the
対応状況, whose values a shop can add to (アップデート 2.2.6: 新規注文, 処理中, 保留 are built
in, キャンセル too; a shop may add 返品 or its own). The exact header spelling of the export
(受注日時 or 受注日, 合計金額 or 総合計, 商品コード or 品番) was not checked against a real
export: :data:`HEADERS` lists each column's accepted headers, the first one being what our
test files use. The total is read as yen 税込 (an export's 合計金額 includes tax); ``1,200``,
``¥1,200`` and ``1200円`` read as 1200, ``-1200`` (a return's credit) as -1200.

The frame's columns (:data:`ORDER_COLUMNS`): ``order_id`` text, ``member_id`` Int64 (blank
for a 非会員 order), ``ordered_at`` (Asia/Tokyo), ``status`` text, ``total`` Int64 (the
order's, repeated on each line), ``product_code``, ``product_name`` and ``product_category``
text (blank on an order without products; the category blank too when the export has no
category column, which B-Cart's standard 受注 export may not have: 購入カテゴリ then says
未分類). The API's snapshot (:mod:`bcartnb.bcart_api.orders`) reads into the same frame.

Two ways to the same frame: :func:`read_orders_plain` decodes the text and parses it with
pandas' C parser (the reference, which names what is wrong in a file); :func:`read_orders`
parses the UTF-8 bytes with Arrow (:func:`bcartnb.members.arrowcsv.parse_utf8`, as the member
CSV's fast reader does) and types the cells by the same :func:`typed_orders`, so every cleaning
rule and error is one. What the two parsers could read apart (a blank line, which pandas
skips; a short or long row; a header pandas would rename; a NUL; a file the decoder refuses)
is read the plain way. tests/test_orders_fast.py holds the two equal over generated files.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import re
import unicodedata
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any, Final
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pyarrow as pa  # type: ignore[import-untyped]

from bcartnb.exceptions import MembersFileError, OrdersFileError
from bcartnb.members import TOKYO
from bcartnb.members.arrowcsv import parse_utf8, utf8_lines
from bcartnb.members.decode import decode, utf8_bytes
from bcartnb.members.where import Where

__all__ = [
    "HEADERS",
    "ORDER_COLUMNS",
    "SNAPSHOT_METADATA_KEY",
    "empty_orders",
    "orders_record",
    "read_orders",
    "read_orders_plain",
    "typed_orders",
]

#: Each column of the orders frame and the headers that name it in an export (NFKC, trimmed).
HEADERS: Final[Mapping[str, tuple[str, ...]]] = {
    "order_id": ("受注ID", "受注番号", "order_id"),
    "member_id": ("会員ID", "customer_id"),
    "ordered_at": ("受注日時", "受注日", "注文日時", "ordered_at"),
    "status": ("対応状況", "status"),
    "total": ("合計金額", "合計金額(税込)", "総合計", "請求金額", "total_price"),
    "product_code": ("商品コード", "品番", "product_no"),
    "product_name": ("商品名", "product_name"),
    "product_category": ("商品カテゴリ", "カテゴリ", "カテゴリー", "カテゴリ名", "category"),
}
ORDER_COLUMNS: Final = tuple(HEADERS)
#: An API snapshot's Parquet metadata key (written by :mod:`bcartnb.bcart_api.orders`).
SNAPSHOT_METADATA_KEY: Final = b"bcartnb_orders"
_REQUIRED: Final = ("order_id", "member_id", "ordered_at", "status", "total")
_MONEY: Final = re.compile(r"[,\s¥￥円]")
#: Two line breaks in a row, where a blank line can be (pandas skips it, Arrow reads a row of
#: blanks): such a file is read plainly. Searched as plain bytes: a regex took 1.4 s on 50 MB.
_BLANK_LINE: Final = (b"\n\n", b"\r\r", b"\n\r")


def read_orders(path: str | os.PathLike[str]) -> pd.DataFrame:
    """The orders of a 受注 CSV (or a ``.parquet`` of the orders frame), typed and checked.

    ``attrs["orders_snapshot"]`` says which file this was, for a campaign's record
    (:func:`orders_record`). The frame, and any error, is :func:`read_orders_plain`'s.
    """
    file = Path(path)
    if file.suffix.lower() != ".parquet":
        frame = _read_fast(file)
        if frame is not None:
            return frame
    return read_orders_plain(file)


def _read_fast(file: Path) -> pd.DataFrame | None:
    """The CSV's frame from its UTF-8 bytes parsed by Arrow; None (read it plainly) for what
    the plain way would refuse or the parsers could read apart. The bytes are hashed for the
    record and let go before the cells are typed: pandas' parser peaked at 512 MB for 500,000
    lines (a Python string a cell); this way holds the UTF-8 bytes, then the Arrow cells."""
    try:
        raw = file.read_bytes()
    except OSError:
        return None
    record = orders_record(file, raw)
    utf8 = utf8_bytes(raw)
    del raw
    if utf8 is None:
        return None
    data = utf8[0]
    del utf8
    if b"\x00" in data or data.startswith((b"\r", b"\n")) or any(b in data for b in _BLANK_LINE):
        return None
    try:
        header = next(csv.reader(utf8_lines(data)))
    except (csv.Error, StopIteration, UnicodeDecodeError):
        return None
    # pandas renames a repeated or blank header ("X.1", "Unnamed: 3"): read those plainly
    if len(header) < 2 or len(set(header)) < len(header) or "" in header:
        return None
    body = parse_utf8(data, header)  # empties data
    del data
    if body is None:
        return None
    body.columns = pd.Index(header)
    frame = typed_orders(body, file)
    frame.attrs["orders_snapshot"] = record
    return frame


def read_orders_plain(path: str | os.PathLike[str]) -> pd.DataFrame:
    """:func:`read_orders` the plain way only: the whole text decoded, parsed by pandas. The
    reference the fast way is held equal to."""
    file = Path(path)
    where = Where(file, (f"orders file {file}", f"受注ファイル {file}"))
    try:
        raw = file.read_bytes()
        if file.suffix.lower() == ".parquet":
            # here, not at the top: reading a CSV (every campaign's members) never needs it
            import pyarrow.parquet as pq  # type: ignore[import-untyped]

            table = pq.read_table(io.BytesIO(raw))
            body = table.to_pandas().fillna("").astype("str")
            frame = typed_orders(body, file)
            frame.attrs["orders_snapshot"] = orders_record(file, raw, table.schema.metadata)
            return frame
        text, _ = decode(raw, where)
    except MembersFileError as err:
        raise OrdersFileError(str(err), ja=err.ja) from None
    except OSError as err:
        raise OrdersFileError(
            f"{file}: cannot be read: {err.strerror or err}",
            ja=f"受注ファイル {file} を読めません（パスと読み取りの権限を確かめてください）。",
        ) from None
    except pa.ArrowException as err:
        raise OrdersFileError(
            f"{file}: not a Parquet file of orders: {err}",
            ja=f"受注ファイル {file} は受注のスナップショット（.parquet）として読めません。",
        ) from None
    body = pd.read_csv(
        io.StringIO(text), dtype=str, keep_default_na=False, na_filter=False, skipinitialspace=False
    )
    frame = typed_orders(body, file)
    frame.attrs["orders_snapshot"] = orders_record(file, raw)
    return frame


def orders_record(
    file: Path, raw: bytes, metadata: Mapping[bytes, bytes] | None = None
) -> dict[str, Any]:
    """Which orders a campaign used: the file's absolute path, its content's SHA-256, when
    it was last written and, for an API snapshot, when it was pulled (its metadata,
    :data:`SNAPSHOT_METADATA_KEY`). A re-export of other orders under the same name has
    another hash."""
    try:
        modified = datetime.fromtimestamp(file.stat().st_mtime, ZoneInfo(TOKYO))
    except OSError:
        modified = None
    pulled = None
    if metadata and SNAPSHOT_METADATA_KEY in metadata:
        try:
            pulled = json.loads(metadata[SNAPSHOT_METADATA_KEY]).get("pulled_at")
        except (ValueError, AttributeError):
            pulled = None
    return {
        "path": os.path.abspath(file),
        "sha256": hashlib.sha256(raw).hexdigest(),
        "modified_at": modified.isoformat(timespec="seconds") if modified else None,
        **({"pulled_at": str(pulled)} if pulled else {}),
    }


def _columns(frame: pd.DataFrame, file: Path) -> dict[str, str]:
    """Frame column → the file's header that holds it."""
    heads = {unicodedata.normalize("NFKC", str(h)).strip(): str(h) for h in frame.columns}
    found: dict[str, str] = {}
    for name, names in HEADERS.items():
        for head in names:
            if unicodedata.normalize("NFKC", head) in heads:
                found[name] = heads[unicodedata.normalize("NFKC", head)]
                break
    missing = [n for n in _REQUIRED if n not in found]
    if missing:
        wanted = "、".join(HEADERS[n][0] for n in missing)
        raise OrdersFileError(
            f"{file}: no column {', '.join(HEADERS[n][0] for n in missing)} in the header",
            ja=f"受注ファイル {file} に {wanted} の列がありません"
            "（受注一覧の CSV エクスポートのファイルか確かめてください）。",
        )
    return found


def typed_orders(body: pd.DataFrame, file: Path) -> pd.DataFrame:
    """The export's text (every cell a str) typed into the orders frame."""
    cols = _columns(body, file)

    def text(name: str) -> pd.Series:
        # a column at a time: 500,000 lines' stripped copies of every column at once were
        # a third of the read's peak memory
        return body[cols[name]].astype(str).str.strip()

    out = pd.DataFrame(index=pd.RangeIndex(len(body)))
    out["order_id"] = text("order_id").astype("str")
    out["member_id"] = _integers(text("member_id"), "member_id", file)
    out["ordered_at"] = _times(text("ordered_at"), file)
    out["status"] = _nfkc(text("status"))
    out["total"] = _integers(text("total").str.replace(_MONEY, "", regex=True), "total", file)
    for name in ("product_code", "product_name", "product_category"):
        out[name] = (text(name) if name in cols else pd.Series("", index=out.index)).astype("str")
    blank = out["order_id"] == ""
    if blank.any():
        raise _cell_error(file, int(blank.to_numpy().argmax()), "order_id", "")
    out.attrs["orders_source"] = str(file)
    return out


def _nfkc(text: pd.Series) -> pd.Series:
    """NFKC once a distinct value: a shop has a handful of 対応状況 over 500,000 lines."""
    codes, values = pd.factorize(text)
    names = [unicodedata.normalize("NFKC", str(v)) for v in values]
    return pd.Series(np.asarray(names, dtype=object)[codes], index=text.index, dtype="str")


def _integers(text: pd.Series, name: str, file: Path) -> pd.Series:
    ok = text.str.fullmatch(r"-?[0-9]{1,15}") | (text == "")
    if not ok.all():
        row = int((~ok).to_numpy().argmax())
        raise _cell_error(file, row, name, str(text.iloc[row]))
    if name == "total" and (text == "").any():
        row = int((text == "").to_numpy().argmax())
        raise _cell_error(file, row, name, "")
    return pd.to_numeric(text.where(text != ""), errors="raise").astype("Int64")


def _times(text: pd.Series, file: Path) -> pd.Series:
    """B-Cart's 2026/05/01 10:00:00 (or -, or a day alone) in Asia/Tokyo."""
    parsed = pd.to_datetime(
        text.str.replace("/", "-", regex=False), format="ISO8601", errors="coerce"
    )
    bad = parsed.isna()
    if bad.any():
        row = int(bad.to_numpy().argmax())
        raise _cell_error(file, row, "ordered_at", str(text.iloc[row]))
    return parsed.dt.tz_localize(TOKYO)


def _cell_error(file: Path, row: int, name: str, value: str) -> OrdersFileError:
    head = HEADERS[name][0]
    shown = value[:40].encode("unicode_escape").decode("ascii") if value else "(blank)"
    return OrdersFileError(
        f"{file}: row {row + 2}, column {head}: {shown!s} is not a valid {name}",
        ja=f"受注ファイル {file} の {row + 2} 行目「{head}」の値 {value[:40]!r} が読めません。",
    )


def empty_orders() -> pd.DataFrame:
    """No orders, with the frame's columns and types."""
    return typed_orders(
        pd.DataFrame({HEADERS[n][0]: pd.Series([], dtype=str) for n in HEADERS}), Path("-")
    )
