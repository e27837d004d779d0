"""Orders: what members bought, read from B-Cart, and the purchase columns made from it.

    reader.py     a 受注 CSV (CP932, as the admin screen exports it) → the orders frame
    purchases.py  the orders → purchase columns and 顧客グループ on every member (one join)
    analysis.py   counts of the joined members for the customers notebook (RFM, 休眠, recency)

Where each shape comes from is in :mod:`bcartnb.orders.reader`'s docstring.
"""

from __future__ import annotations

from bcartnb.orders.purchases import (
    GROUPS,
    NO_CATEGORY,
    PRODUCTS_DTYPE,
    PURCHASE_COLUMNS,
    QUANTITY_COLUMNS,
    purchase_columns,
    with_purchases,
)
from bcartnb.orders.reader import (
    HEADERS,
    ORDER_COLUMNS,
    SNAPSHOT_METADATA_KEY,
    empty_orders,
    orders_record,
    read_orders,
    read_orders_plain,
    typed_orders,
)

__all__ = [
    "GROUPS",
    "HEADERS",
    "NO_CATEGORY",
    "ORDER_COLUMNS",
    "PRODUCTS_DTYPE",
    "PURCHASE_COLUMNS",
    "QUANTITY_COLUMNS",
    "SNAPSHOT_METADATA_KEY",
    "empty_orders",
    "orders_record",
    "purchase_columns",
    "read_orders",
    "read_orders_plain",
    "typed_orders",
    "with_purchases",
]
