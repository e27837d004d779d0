"""Orders pulled from ``GET /orders`` into a snapshot the orders reader reads like a 受注 CSV.

Each order comes with its products (``order_products``); :func:`orders_text` lays them out
as the admin screen's 受注 CSV does, one line an order product with the order's columns
repeated, under the CSV's headers, and :func:`bcartnb.orders.typed_orders` types that text:
an API snapshot and the CSV export of the same orders are the same orders frame, by one
set of rules. The snapshot is Parquet, written whole (0600) or not at all, like the members'.

The first pull fetches every order. Each next pull into the same snapshot asks only for the
orders changed since the last one began (``updated_at_min``, :data:`OVERLAP` earlier, so a
clock that differs from B-Cart's loses nothing) and merges them in: a changed order
replaces the old one whole, its products too, and a cancelled order stays, with its status
(キャンセル does not count as a purchase, :mod:`bcartnb.orders.purchases`). ``full=True``
(``--full``) pulls everything again. The paging, its ends, the rate limit, the retries and
the resume are the member pull's (:func:`bcartnb.bcart_api.pages.fetch_pages`): the pages
of a stopped pull are kept in ``FILE.parquet.partial`` and the next pull, asking the same
question, continues from there, even after a SIGKILL. The token is never written.

Where the shapes come from:

- ``GET /orders`` with ``limit``/``offset`` like every list of the API, answering
  ``{"orders": [...]}``, and ``complete=1`` bringing each order's ``order_products`` (and
  ``logistics``): B-Cart's β2 notes (api.bcart.jp/news/2: with ``complete=1`` an order brings
  up to 300 order products), and a public integrator's design of its order import
  (``GET /api/v1/orders?status=新規注文&complete=1``).
- The order's keys ``id``, ``code`` (受注番号), ``customer_id``, ``status`` and the order
  product's ``id``, ``order_id``, ``product_id``, ``product_no`` (品番), ``product_name``: that
  same design's sample reply. ``status`` is the 対応状況's name as the admin screen shows it
  (``新規注文``; a shop's own status reads as its name, e.g. ``カスタム1``), so the
  ``[purchase] excluded_statuses`` names apply to it unchanged.
- ``order_customs`` and ``order_products`` as their own resources: B-Cart's API news of
  2020-08 (api.bcart.jp/news/17); ``order.created``/``order.updated`` webhooks carrying
  ``order_products``: api.bcart.jp/news/37.
- ``updated_at_min`` (``YYYY-MM-DD HH:MM:SS``, Asia/Tokyo) as "changed since": the same
  design pages ``GET /customers`` with ``created_at_min``/``updated_at_min`` from its last run.

Not verified against the live API (the local test API, tests/bcart_server.py, follows the
shapes above): whether ``/orders`` takes ``updated_at_min`` as ``/customers`` does (if it
ignored it, every pull would be whole: slower, never wrong, since orders are merged by
id); the keys ``ordered_at`` and ``total_price`` and whether the total includes tax (taken
as 税込, as the CSV's 合計金額); the order product's ``category`` (its category's name, for
購入カテゴリ: if the live API has only the product's ``category_id``, the products' and
categories' lists will be needed); and whether ``complete=1`` caps the products of a very
large order at 300. An order deleted in B-Cart (not cancelled) is not in a changed-since
answer: it stays in the snapshot until a ``--full`` pull.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Final
from zoneinfo import ZoneInfo

import pandas as pd
import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.parquet as pq  # type: ignore[import-untyped]

from bcartnb.bcart_api.client import BcartClient
from bcartnb.bcart_api.pages import PAGE_SIZE, PartialPull, fetch_pages
from bcartnb.bcart_api.snapshot import partial_path
from bcartnb.exceptions import BcartApiError, InputError, OrdersFileError
from bcartnb.files import write_atomically
from bcartnb.orders import HEADERS, SNAPSHOT_METADATA_KEY, typed_orders

__all__ = [
    "MAX_ORDERS",
    "METADATA_KEY",
    "ORDERS_SNAPSHOT",
    "OVERLAP",
    "fetch_orders",
    "orders_text",
    "pull_orders",
    "snapshot_info",
]

#: Where ``bcartnb bcart pull --orders`` writes without ``--out``.
ORDERS_SNAPSHOT: Final = "bcart_orders.parquet"
#: A pull stops past this many orders: ten years of a busy B2B shop, not an endless API.
MAX_ORDERS: Final = 2_000_000
#: A changed-since pull asks from this long before the last pull began: B-Cart's clock and
#: ours may differ, and an order asked for twice is merged once.
OVERLAP: Final = timedelta(hours=1)
#: The snapshot's Parquet metadata key (what was pulled, when, from where; never the token).
METADATA_KEY: Final = SNAPSHOT_METADATA_KEY
_FORMAT: Final = 2
#: The API's key for each column of the CSV (its first header in :data:`HEADERS`).
_ORDER_KEYS: Final = {
    "order_id": "id",
    "member_id": "customer_id",
    "ordered_at": "ordered_at",
    "status": "status",
    "total": "total_price",
}
_PRODUCT_KEYS: Final = {
    "product_code": "product_no",
    "product_name": "product_name",
    "product_category": "category",
}
_TEXT_COLUMNS: Final = [HEADERS[n][0] for n in (*_ORDER_KEYS, *_PRODUCT_KEYS)]
_TOKYO: Final = ZoneInfo("Asia/Tokyo")


def fetch_orders(
    client: BcartClient,
    *,
    page_size: int = PAGE_SIZE,
    max_orders: int = MAX_ORDERS,
    since: str | None = None,
    partial: PartialPull | None = None,
    progress: bool | Callable[[int], None] = False,
) -> list[dict[str, Any]]:
    """Every order (or those changed ``since``, ``YYYY-MM-DD HH:MM:SS``) with its products.

    The member pull's pager: a page with nothing new, or too many orders, is
    :class:`~bcartnb.bcart_api.pages.PullStopped`; with ``partial`` each page is kept and a
    stopped pull continues.
    """
    return _fetch(client, page_size, max_orders, since, partial, progress)[0]


def _fetch(
    client: BcartClient,
    page_size: int,
    max_orders: int,
    since: str | None,
    partial: PartialPull | None,
    progress: bool | Callable[[int], None],
) -> tuple[list[dict[str, Any]], list[str]]:
    return fetch_pages(
        client,
        "orders",
        noun="受注",
        query=_query(since),
        page_size=page_size,
        progress=progress,
        ceiling=max_orders,
        partial=partial,
    )


def _query(since: str | None) -> dict[str, Any]:
    return {"complete": 1, **({"updated_at_min": since} if since else {})}


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
    columns = list(zip(*rows, strict=True)) if rows else [()] * len(_TEXT_COLUMNS)
    return pd.DataFrame(
        {n: pd.Series(list(c), dtype=object) for n, c in zip(_TEXT_COLUMNS, columns, strict=True)}
    )


def snapshot_info(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """An orders snapshot's metadata (``pulled_at``, ``api_url``, ``orders``, ``changed``,
    ``full``), or None for a file that is not one (a CSV, a missing or foreign file)."""
    try:
        meta = pq.read_schema(path).metadata or {}
        info = json.loads(meta[METADATA_KEY])
    except (OSError, KeyError, ValueError, pa.ArrowException):
        return None
    return info if isinstance(info, dict) else None


def _since(path: Path, api_url: str, full: bool) -> str | None:
    """``updated_at_min`` for this pull: None for a whole one (first, ``full``, another API)."""
    info = None if full else snapshot_info(path)
    if not info or info.get("api_url") != api_url:
        return None
    try:
        last = datetime.fromisoformat(str(info["pulled_at"])).astimezone(_TOKYO)
    except (KeyError, ValueError):
        return None
    return (last - OVERLAP).strftime("%Y-%m-%d %H:%M:%S")


def _merged(path: Path, changed: pd.DataFrame, since: str | None) -> pd.DataFrame:
    """The snapshot's lines with each changed order's lines replaced by its new ones."""
    if since is None:
        return changed
    old: pd.DataFrame = pq.read_table(path).to_pandas().fillna("").astype(object)
    old = old.reindex(columns=_TEXT_COLUMNS, fill_value="")  # a snapshot before a column
    gone = old[HEADERS["order_id"][0]].isin(set(changed[HEADERS["order_id"][0]]))
    return pd.concat([old[~gone.to_numpy(dtype=bool)], changed], ignore_index=True)


def pull_orders(
    client: BcartClient,
    out: str | os.PathLike[str],
    *,
    now: datetime | None = None,
    full: bool = False,
    progress: bool | Callable[[int], None] = False,
) -> pd.DataFrame:
    """The orders into the snapshot ``out``: all of them the first time (or ``full``), then
    those changed since the last pull, merged in. The typed orders frame, as it reads back,
    with ``pulled_at``, ``changed`` (orders fetched), ``full`` and ``warnings`` (a resumed
    pull, an order seen twice while paging) in its ``attrs``.

    A pull that stops keeps its pages for the next one (:func:`partial_path`); orders whose
    values are refused are not kept (the next pull would bring the same values back).
    """
    path = Path(out)
    if path.suffix.lower() != ".parquet":
        raise InputError(
            f"{path}: a snapshot file name must end in .parquet",
            ja=f"スナップショットのファイル名 {path} は .parquet で終わるようにしてください。",
        )
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise _write_error(path, err) from err
    started = (now or datetime.now(_TOKYO)).astimezone(_TOKYO)
    since = _since(path, client.api_url, full)
    query = {k: str(v) for k, v in _query(since).items()}
    partial = PartialPull(
        partial_path(path), client.api_url, PAGE_SIZE, key="orders", query=query
    ).open(started)
    try:
        changed, warnings = _fetch(client, PAGE_SIZE, MAX_ORDERS, since, partial, progress)
        if partial.started_at is not None:  # resumed: dated from its first page
            started = min(started, partial.started_at.astimezone(_TOKYO))
        try:
            frame = _write(path, changed, since, client.api_url, started)
        except OrdersFileError:
            partial.discard()
            raise
        partial.discard()
        frame.attrs["warnings"] = warnings
        return frame
    except BaseException:
        if not partial.members:  # nothing fetched: nothing to resume, no file to leave
            partial.discard()
        raise
    finally:
        partial.close()


def _write(
    path: Path, changed: list[dict[str, Any]], since: str | None, api_url: str, at: datetime
) -> pd.DataFrame:
    text = _merged(path, orders_text(changed), since)
    try:
        frame = typed_orders(text, path)  # refused before anything is written
    except OrdersFileError as err:
        label = f"BカートAPI（{api_url}）から取得した受注"
        raise OrdersFileError(
            str(err).replace(str(path), f"orders pulled from {api_url}"),
            ja=err.ja.replace(f"受注ファイル {path}", label),
        ) from None
    info = {
        "format": _FORMAT,
        "pulled_at": at.isoformat(timespec="seconds"),
        "api_url": api_url,
        "orders": int(frame["order_id"].nunique()),
        "changed": len(changed),
        "full": since is None,
        **({"since": since} if since else {}),
    }
    table = pa.Table.from_pandas(text.astype(str), preserve_index=False)
    table = table.replace_schema_metadata({METADATA_KEY: json.dumps(info).encode()})
    try:
        write_atomically(path, lambda fh: pq.write_table(table, fh), mode=0o600)
    except OSError as err:
        raise _write_error(path, err) from err
    frame.attrs.update(
        pulled_at=info["pulled_at"], changed=len(changed), full=since is None, orders=info["orders"]
    )
    return frame


def _write_error(path: Path, err: OSError) -> InputError:
    return InputError(
        f"{path}: cannot write the snapshot: {err.strerror or err}",
        ja=f"スナップショット {path} を書き込めません"
        "（フォルダーと書き込み権限を確かめてください）。",
    )
