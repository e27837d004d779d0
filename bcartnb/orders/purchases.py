"""Purchase columns on every member: what the orders say each member bought, and when.

One module computes them, and :func:`with_purchases` is the one join: the campaign planner
(papermill and ``bcartnb run``), ``bcartnb members`` and a notebook all call it, so 休眠
means the same members in every face. The columns are ordinary frame columns, filtered by
:mod:`bcartnb.filters` like the profile's.

What counts: an order with a member (a 非会員 order has no 会員ID) whose 対応状況 is not one
of ``[purchase] excluded_statuses`` (キャンセル and 返品 by default; every other status
counts, 新規注文 and 処理中 included: the member did order). An order whose total is zero or
less (a return booked as its own order, a credit) lowers 購入金額合計 but is not a purchase:
it adds nothing to 購入回数, the dates or 購入商品. Two orders on one day are two purchases.

=====================  ===================================================================
初回購入日, 最終購入日     the first and last purchase's day (Asia/Tokyo); blank without one
購入回数                 purchases (orders), 0 without one
購入金額合計              the counted orders' totals in yen 税込 (returns subtracted), 0 without
平均購入金額              購入金額合計 / 購入回数, rounded to the yen; blank without a purchase
購入商品                 the product codes bought, then their names (each once, each part
                        sorted, a name equal to a code once): ``contains`` matches one
                        item exactly, so ``{"contains": "A-100"}`` finds the code A-100 (not
                        A-1000) and ``{"contains": "りんご"}`` the product named りんご
購入カテゴリ              the bought products' categories, each once, sorted; a product
                        without one (an export without the column, an API order product
                        without ``category``) is :data:`NO_CATEGORY` (未分類), never left out
最終購入からの日数         whole days from the last purchase's day to ``today``
R, F, M                 ranks 1–5 by ``[purchase] recency_days / frequency / monetary``
顧客グループ              未購入, 離反, 休眠, 新規, 優良 or 一般, the first that fits, in that order
=====================  ===================================================================

顧客グループ: 未購入 no purchase; 離反 the last one ``churned_days`` (365) or more days ago;
休眠 ``dormant_days`` (180) or more; 新規 the first purchase within ``new_days`` (90); 優良 F
and M both at least ``loyal_rank`` (4); 一般 everyone else who bought.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Final

import numpy as np
import pandas as pd
import pyarrow as pa  # type: ignore[import-untyped]

from bcartnb.exceptions import InputError
from bcartnb.members import TOKYO
from bcartnb.quota import now_tokyo
from bcartnb.settings.purchase import PurchaseSettings

__all__ = [
    "GROUPS",
    "NO_CATEGORY",
    "PRODUCTS_DTYPE",
    "PURCHASE_COLUMNS",
    "QUANTITY_COLUMNS",
    "purchase_columns",
    "with_purchases",
]

#: The columns :func:`with_purchases` adds, in this order.
PURCHASE_COLUMNS: Final = (
    "初回購入日",
    "最終購入日",
    "購入回数",
    "購入金額合計",
    "平均購入金額",
    "購入商品",
    "購入カテゴリ",
    "最終購入からの日数",
    "R",
    "F",
    "M",
    "顧客グループ",
)
#: The purchase columns that count or sum (times, yen, days): shown with thousands separators
#: (12,345) wherever a person reads them, a mail's merge field included; R, F, M are ranks.
QUANTITY_COLUMNS: Final = ("購入回数", "購入金額合計", "平均購入金額", "最終購入からの日数")
#: 顧客グループ's values, in the order they are decided.
GROUPS: Final = ("未購入", "離反", "休眠", "新規", "優良", "一般")
#: 購入商品's and 購入カテゴリ's type: a list of text a member (Arrow, so ``contains`` is one
#: kernel).
PRODUCTS_DTYPE: Final = pd.ArrowDtype(pa.list_(pa.string()))
#: 購入カテゴリ's item for a bought product whose category the orders do not say.
NO_CATEGORY: Final = "未分類"


def _today(today: dt.date | None) -> dt.date:
    """``today``, else the one clock's day (:func:`~bcartnb.quota.now_tokyo`, which honours
    ``BCARTNB_NOW``): 休眠 must mean the same members in every face and in a test."""
    return today if today is not None else now_tokyo().date()


def _counted(orders: pd.DataFrame, settings: PurchaseSettings) -> pd.DataFrame:
    keep = orders["member_id"].notna() & ~orders["status"].isin(list(settings.excluded_statuses))
    return orders[keep.to_numpy(dtype=bool)]


def purchase_columns(
    orders: pd.DataFrame, settings: PurchaseSettings, today: dt.date | None = None
) -> pd.DataFrame:
    """One row a member who has a counted order (indexed by member id), :data:`PURCHASE_COLUMNS`."""
    lines = _counted(orders, settings)
    # orders as integers once: comparing 500,000 order ids as text took over a second
    order_code = pd.factorize(lines["order_id"])[0]
    first_line = ~pd.Series(order_code).duplicated().to_numpy()
    heads = lines[first_line][["order_id", "member_id", "ordered_at", "total"]]
    heads = heads.assign(member_id=heads["member_id"].astype("int64"))
    is_buy = (heads["total"] > 0).to_numpy(dtype=bool)
    buys = heads[is_buy]
    bought_order = np.zeros(int(order_code.max()) + 1 if len(order_code) else 0, dtype=bool)
    bought_order[order_code[first_line]] = is_buy
    by_member = buys.groupby("member_id", sort=True)
    out = pd.DataFrame(
        {
            "初回購入日": by_member["ordered_at"].min().dt.normalize(),
            "最終購入日": by_member["ordered_at"].max().dt.normalize(),
            "購入回数": by_member["order_id"].size().astype("Int64"),
        }
    )
    sums = heads.groupby("member_id", sort=True)["total"].sum().astype("Int64")
    out = out.reindex(sums.index)
    out["購入回数"] = out["購入回数"].fillna(0).astype("Int64")
    out["購入金額合計"] = sums
    out["平均購入金額"] = _average(sums, out["購入回数"])
    bought = bought_order[order_code]
    out["購入商品"] = _products(lines, bought, out.index)
    out["購入カテゴリ"] = _categories(lines, bought, out.index)
    day = pd.Timestamp(_today(today)).tz_localize(TOKYO)
    out["最終購入からの日数"] = ((day - out["最終購入日"]).dt.days).astype("Int64")
    _ranks(out, settings)
    return out


def _average(sums: pd.Series, counts: pd.Series) -> pd.Series:
    total = sums.to_numpy(dtype="float64", na_value=np.nan)
    times = counts.to_numpy(dtype="float64", na_value=np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = np.where(times > 0, total / times, np.nan)
    # half up, as a receipt rounds: numpy's round() goes to the even yen
    return pd.Series(np.floor(mean + 0.5), index=sums.index).astype("Int64")


def _products(lines: pd.DataFrame, bought: np.ndarray[Any, Any], members: pd.Index) -> pd.Series:
    """購入商品: each member's codes, then the names that are not one of its codes."""
    names, (codes, titles) = _coded([lines["product_code"], lines["product_name"]])
    return _lists(_positions(lines, members), bought, [codes, titles], names, members)


def _categories(lines: pd.DataFrame, bought: np.ndarray[Any, Any], members: pd.Index) -> pd.Series:
    """購入カテゴリ: a bought product's category, :data:`NO_CATEGORY` when it has none."""
    # an orders frame made before 購入カテゴリ has no such column: every product is 未分類
    blank = pd.Series("", index=lines.index, dtype="str")
    names, (codes,) = _coded([lines.get("product_category", blank)], extra=NO_CATEGORY)
    product = ((lines["product_code"] != "") | (lines["product_name"] != "")).to_numpy(bool)
    none = int(np.searchsorted(names, NO_CATEGORY))
    codes = np.where((codes < 0) & product, none, codes)
    return _lists(_positions(lines, members), bought, [codes], names, members)


def _coded(
    texts: list[pd.Series], extra: str | None = None
) -> tuple[np.ndarray[Any, Any], list[np.ndarray[Any, Any]]]:
    """The distinct non-blank values of ``texts`` (sorted, with ``extra``) and each line's
    value as a position in them (-1 for a blank). Factorized a column at a time: the
    distinct values are few (a shop's products), the lines many."""
    coded = [pd.factorize(t) for t in texts]
    pool = {str(v) for _, uniq in coded for v in uniq if isinstance(v, str) and v != ""}
    names = np.asarray(sorted(pool | ({extra} if extra else set())), dtype=object)
    index = pd.Index(names, dtype=object)
    out = []
    for codes, uniq in coded:
        remap = np.append(index.get_indexer(pd.Index(np.asarray(uniq, dtype=object))), -1)
        out.append(remap[np.where(codes >= 0, codes, len(remap) - 1)])
    return names, out


def _positions(lines: pd.DataFrame, members: pd.Index) -> np.ndarray[Any, Any]:
    """Each line's member as its position in ``members``."""
    ids = pd.Index(lines["member_id"].to_numpy(dtype="int64"))
    return members.get_indexer(ids).astype("int64")


def _lists(
    where: np.ndarray[Any, Any],
    bought: np.ndarray[Any, Any],
    parts: list[np.ndarray[Any, Any]],
    names: np.ndarray[Any, Any],
    members: pd.Index,
) -> pd.Series:
    """Each member's distinct values (``parts``: positions in ``names`` a line, -1 blank, in
    order, each part sorted; a value already in an earlier part is not repeated) as an Arrow
    list, from the lines ``bought`` marks. All integers here: sorts of int64 keys."""
    where = where[bought]
    width = max(len(names), 1)
    seen = np.array([], dtype="int64")
    runs, members_of = [], []
    for rank, part in enumerate(parts):
        mine = part[bought]
        pairs = _unique(where[mine >= 0] * width + mine[mine >= 0])  # by member, then value
        if len(seen):
            at = np.searchsorted(seen, pairs).clip(max=len(seen) - 1)
            pairs = pairs[seen[at] != pairs]
        if rank < len(parts) - 1:
            seen = pairs if not len(seen) else _unique(np.concatenate([seen, pairs]))
        runs.append(pairs % width)
        members_of.append(pairs // width)
    # each run is sorted by member: a stable merge by member puts part 0's values first
    member_of = np.concatenate(members_of)
    merged = np.argsort(member_of, kind="stable") if len(parts) > 1 else slice(None)
    member_of, order = member_of[merged], np.concatenate(runs)[merged]
    offsets = np.searchsorted(member_of, np.arange(len(members) + 1)).astype("int32")
    values = pa.array(names, type=pa.string()).take(order)
    arr = pa.ListArray.from_arrays(pa.array(offsets), values)
    return pd.Series(arr, index=members, dtype=PRODUCTS_DTYPE)


def _unique(keys: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """Sorted distinct int64 keys by one sort: numpy's hashing ``unique`` took 0.3 s a call
    on a million keys here, five times the sort."""
    keys = np.sort(keys)
    keep = np.ones(len(keys), dtype=bool)
    keep[1:] = keys[1:] != keys[:-1]
    return keys[keep]


def _rank(values: pd.Series, bounds: tuple[int, ...], *, lower_is_better: bool) -> pd.Series:
    data = values.astype("Float64")
    if lower_is_better:  # R: within bounds[0] days is 5
        rank = 5 - np.searchsorted(
            np.asarray(bounds, dtype=float), data.fillna(0).to_numpy(), side="left"
        )
    else:  # F, M: at least bounds[3] is 5, below bounds[0] is 1
        rank = 1 + np.searchsorted(
            np.asarray(bounds, dtype=float), data.fillna(0).to_numpy(), side="right"
        )
    return pd.Series(rank, index=values.index).astype("Int64").where(values.notna(), pd.NA)


def _ranks(out: pd.DataFrame, settings: PurchaseSettings) -> None:
    bought = out["購入回数"] > 0
    days = out["最終購入からの日数"]
    out["R"] = _rank(days, settings.recency_days, lower_is_better=True)
    out["F"] = _rank(out["購入回数"].where(bought), settings.frequency, lower_is_better=False)
    out["M"] = _rank(out["購入金額合計"].where(bought), settings.monetary, lower_is_better=False)
    since_first = days + (out["最終購入日"] - out["初回購入日"]).dt.days
    choices = [
        ~bought,
        days >= settings.churned_days,
        days >= settings.dormant_days,
        since_first < settings.new_days,
        (out["F"] >= settings.loyal_rank) & (out["M"] >= settings.loyal_rank),
    ]
    conds = [c.fillna(False).to_numpy(dtype=bool) for c in choices]
    groups = np.select(conds, list(GROUPS[:5]), default=GROUPS[5])
    out["顧客グループ"] = pd.Series(groups, index=out.index, dtype="str")


def with_purchases(
    members: pd.DataFrame,
    orders: pd.DataFrame,
    settings: PurchaseSettings,
    today: dt.date | None = None,
) -> pd.DataFrame:
    """The members with :data:`PURCHASE_COLUMNS` added (every member; 未購入 without orders).

    ``attrs`` are kept, with ``orders_source`` (the orders' file), ``orders_snapshot``
    (:func:`~bcartnb.orders.reader.orders_record`: path, hash, time) added for the record,
    and ``purchases_as_of`` (the day 最終購入からの日数, R and 顧客グループ were counted to,
    ISO): a frame kept open past Tokyo's midnight is a day behind, and the one join says so.
    """
    clash = [c for c in PURCHASE_COLUMNS if c in members.columns]
    if clash:
        raise InputError(
            f"the member file already has a column {clash[0]!r}, a purchase column's name",
            ja=f"会員ファイルに購入履歴の列と同じ名前の列「{clash[0]}」があります。"
            "会員ファイルの見出しを変えてください。",
        )
    today = _today(today)
    derived = purchase_columns(orders, settings, today)
    table = pd.concat([derived, _no_purchase(derived)])
    pos = derived.index.get_indexer(pd.Index(members["id"].to_numpy(dtype="int64")))
    taken = table.iloc[np.where(pos >= 0, pos, len(derived))]
    out = members.copy(deep=False)
    for name in PURCHASE_COLUMNS:
        out[name] = taken[name].array
    out.attrs = {
        **members.attrs,
        "orders_source": orders.attrs.get("orders_source"),
        "orders_snapshot": orders.attrs.get("orders_snapshot"),
        "purchases_as_of": today.isoformat(),
    }
    return out


def _no_purchase(like: pd.DataFrame) -> pd.DataFrame:
    """The row of a member without a counted purchase, in ``like``'s types."""
    row = pd.DataFrame({name: like[name].iloc[:0] for name in PURCHASE_COLUMNS})
    row = row.reindex([-1])
    row["購入回数"] = row["購入回数"].fillna(0)
    row["購入金額合計"] = row["購入金額合計"].fillna(0)
    row["購入商品"] = pd.Series([[]], index=row.index, dtype=PRODUCTS_DTYPE)
    row["購入カテゴリ"] = pd.Series([[]], index=row.index, dtype=PRODUCTS_DTYPE)
    row["顧客グループ"] = pd.Series([GROUPS[0]], index=row.index, dtype="str")
    return row.astype(like.dtypes.to_dict())
