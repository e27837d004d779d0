"""Orders pulled from ``GET /orders`` into a snapshot the orders reader reads like a 受注 CSV.

Each order comes with its products (``order_products``); :func:`orders_text` lays them out
as the admin screen's 受注 CSV does, one line an order product with the order's columns
repeated, under the CSV's headers, and :func:`bcartnb.orders.typed_orders` types that text:
an API snapshot and the CSV export of the same orders are the same orders frame, by one
set of rules. The snapshot is Parquet, written whole (0600) or not at all, like the members'.

Where the shapes come from, and what is not verified: B-Cart's API publishes ``/orders``
beside ``/customers`` (scope ``orders-read``, the developer start guide) with ``limit``/
``offset`` paging like every list; the keys used here (``id``, ``customer_id``,
``ordered_at``, ``status``, ``total_price``, and ``order_products`` with ``product_no`` and
``product_name``) follow the member list's naming and public integrators' code, and were
not checked against the live API, nor are: whether ``total_price`` includes tax (taken as
税込, as the CSV's 合計金額), whether ``status`` is the 対応状況's name (a number would
need its list), and whether the API takes a changed-since parameter (every pull is whole:
"only orders changed since the last pull" is left for when it is known). The local test
API (tests/bcart_server.py) follows these shapes. This first version keeps no partial
file: a stopped pull starts again (the members' resume is in :mod:`.pages`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, Final
from zoneinfo import ZoneInfo

import pandas as pd
import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.parquet as pq  # type: ignore[import-untyped]

from bcartnb.bcart_api.client import BcartClient
from bcartnb.bcart_api.pages import PAGE_SIZE, PullStopped
from bcartnb.exceptions import BcartApiError, InputError
from bcartnb.files import write_atomically
from bcartnb.orders import HEADERS, typed_orders

__all__ = ["MAX_ORDERS", "ORDERS_SNAPSHOT", "fetch_orders", "orders_text", "pull_orders"]

#: Where ``bcartnb bcart pull --orders`` writes without ``--out``.
ORDERS_SNAPSHOT: Final = "bcart_orders.parquet"
#: A pull stops past this many orders: ten years of a busy B2B shop, not an endless API.
MAX_ORDERS: Final = 2_000_000
#: The API's key for each column of the CSV (its first header in :data:`HEADERS`).
_ORDER_KEYS: Final = {
    "order_id": "id",
    "member_id": "customer_id",
    "ordered_at": "ordered_at",
    "status": "status",
    "total": "total_price",
}
_PRODUCT_KEYS: Final = {"product_code": "product_no", "product_name": "product_name"}
_TOKYO: Final = ZoneInfo("Asia/Tokyo")


def fetch_orders(
    client: BcartClient, *, page_size: int = PAGE_SIZE, max_orders: int = MAX_ORDERS
) -> list[dict[str, Any]]:
    """Every order, page by page; a page with nothing new, or too many, is :class:`PullStopped`."""
    seen: dict[int, dict[str, Any]] = {}
    offset = 0
    while True:
        page = client.get("orders", {"limit": page_size, "offset": offset})
        if page is None and offset > 0:
            break
        items = page.get("orders") if isinstance(page, dict) else None
        if not isinstance(items, list) or not all(isinstance(o, dict) for o in items):
            raise BcartApiError(
                f"GET orders?offset={offset}: the reply has no list of orders",
                ja=f"BカートAPIの受注一覧の応答（offset={offset}）の形が想定と違います。",
            )
        fresh = [o for o in items if _order_id(o, offset) not in seen]
        if items and not fresh:
            raise PullStopped(
                f"GET orders?offset={offset}: the page holds only orders already fetched",
                ja=f"BカートAPIが取得済みの受注だけを返しました（{offset:,} 件目から）。"
                "同じページを繰り返しているため取得を止めました。",
            )
        seen.update((_order_id(o, offset), o) for o in items)
        if len(seen) > max_orders:
            raise PullStopped(
                f"GET orders?offset={offset}: more than {max_orders:,} orders",
                ja=f"BカートAPIの受注一覧が終わりません（{max_orders:,} 件を超えました）。",
            )
        if len(items) < page_size:
            break
        offset += len(items)
    return list(seen.values())


def _order_id(order: Mapping[str, Any], offset: int) -> int:
    oid = order.get("id")
    if isinstance(oid, bool) or not isinstance(oid, int):
        raise BcartApiError(
            f"GET orders?offset={offset}: an order without an integer id: {oid!r:.40}",
            ja=f"BカートAPIの応答（offset={offset}）に受注IDのない受注があります: {oid!r:.40}",
        )
    return oid


def _cell(value: Any, order: Any, key: str) -> str:
    if value is None:
        return ""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise BcartApiError(
            f"order {order}: {key} is not a value: {value!r:.60}",
            ja=f"Bカートの受注 {order} の {key} が想定と違う形です: {value!r:.60}",
        )
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    return str(value)


def orders_text(orders: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """The orders as the 受注 CSV's text: one row an order product, the CSV's headers."""
    rows: list[list[str]] = []
    for order in orders:
        oid = order.get("id")
        head = [_cell(order.get(key), oid, key) for key in _ORDER_KEYS.values()]
        products = order.get("order_products") or [{}]
        if not isinstance(products, list) or not all(isinstance(p, dict) for p in products):
            raise BcartApiError(
                f"order {oid}: order_products is not a list of products",
                ja=f"Bカートの受注 {oid} の受注商品（order_products）が想定と違う形です。",
            )
        for product in products:
            rows.append(head + [_cell(product.get(k), oid, k) for k in _PRODUCT_KEYS.values()])
    names = [HEADERS[n][0] for n in (*_ORDER_KEYS, *_PRODUCT_KEYS)]
    columns = list(zip(*rows, strict=True)) if rows else [()] * len(names)
    return pd.DataFrame(
        {n: pd.Series(list(c), dtype=object) for n, c in zip(names, columns, strict=True)}
    )


def pull_orders(
    client: BcartClient, out: str | os.PathLike[str], *, now: datetime | None = None
) -> pd.DataFrame:
    """Every order into the snapshot ``out``; the typed orders frame, as it reads back."""
    path = Path(out)
    if path.suffix.lower() != ".parquet":
        raise InputError(
            f"{path}: a snapshot file name must end in .parquet",
            ja=f"スナップショットのファイル名 {path} は .parquet で終わるようにしてください。",
        )
    pulled_at = (now or datetime.now(_TOKYO)).astimezone(_TOKYO)
    text = orders_text(fetch_orders(client))
    frame = typed_orders(text, path)  # refused before anything is written
    table = pa.Table.from_pandas(text.astype(str), preserve_index=False)
    info = {"pulled_at": pulled_at.isoformat(timespec="seconds"), "api_url": client.api_url}
    table = table.replace_schema_metadata({b"bcartnb_orders": json.dumps(info).encode()})
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(path, lambda fh: pq.write_table(table, fh), mode=0o600)
    except OSError as err:
        raise InputError(
            f"{path}: cannot write the snapshot: {err.strerror or err}",
            ja=f"スナップショット {path} を書き込めません"
            "（フォルダーと書き込み権限を確かめてください）。",
        ) from err
    frame.attrs["pulled_at"] = info["pulled_at"]
    return frame
