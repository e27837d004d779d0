"""Make the synthetic demo orders ``data/demo_orders.csv`` for the demo members (deterministic).

    python data/make_demo_orders.py                        # rewrites data/demo_orders.csv
    python data/make_demo_orders.py --members 30000 --out /tmp/orders.csv

It looks like a B-Cart 受注一覧 CSV export: CP932, CRLF, one line an order product (受注商品),
the order's columns repeated on each of its lines, 受注日時 as ``2026/05/01 10:00:00`` and
合計金額 税込 with thousands separators. The members are the demo's (会員ID 1001 onwards, as
``make_demo_members.py`` numbers them), each given a buying habit so every 顧客グループ shows
up in the demo as of :data:`AS_OF`: some never ordered, some stopped a year ago or half a
year ago, some started lately, some order often and much. A few orders are キャンセル or
返品, and a few returns are booked as their own negative order; a few orders are a
非会員's (no 会員ID). One pass over the members, each drawing from one seeded generator:
the same arguments always write the same bytes, in time linear in the members.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import random
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

__all__ = ["AS_OF", "HEADERS", "PRODUCTS", "make_orders", "write_orders"]

SEED = 20261206
#: The day the demo is drawn for: the groups below fit it (the notebook's ``as_of``).
AS_OF = dt.date(2026, 12, 1)
HEADERS = ("受注ID", "会員ID", "受注日時", "対応状況", "合計金額", "商品コード", "商品名", "数量")
# (code, name, unit price 税込)
PRODUCTS = (
    ("A-100", "業務用コーヒー豆 1kg", 3_240),
    ("A-110", "ドリップバッグ 100袋", 4_860),
    ("B-200", "紙コップ 1000個", 2_750),
    ("B-210", "マドラー ①号 5000本", 1_980),
    ("C-300", "髙級緑茶 500g", 5_400),
    ("C-310", "ほうじ茶ﾃｨｰﾊﾞｯｸﾞ", 2_160),
    ("D-400", "業務用シュガー 3kg", 1_620),
    ("E-500", "保冷ボックス（大）", 12_800),
)
# habit: (weight, first order days before AS_OF (range), last order days before, orders (range))
HABITS = {
    "none": (20, (0, 0), (0, 0), (0, 0)),
    "churned": (15, (500, 1000), (370, 700), (1, 4)),
    "dormant": (15, (250, 700), (185, 350), (1, 5)),
    "new": (10, (5, 80), (0, 30), (1, 2)),
    "loyal": (15, (300, 900), (0, 40), (10, 24)),
    "regular": (25, (120, 900), (0, 170), (2, 8)),
}
STATUSES = (("発送済", 88), ("処理中", 4), ("新規注文", 2), ("キャンセル", 4), ("返品", 2))


def _when(rng: random.Random, days_ago: int) -> dt.datetime:
    day = AS_OF - dt.timedelta(days=days_ago)
    return dt.datetime(day.year, day.month, day.day, rng.randrange(8, 20), rng.randrange(60))


def _days(rng: random.Random, habit: str) -> list[int]:
    """The days (before AS_OF) of one member's orders, oldest first."""
    _w, (f0, f1), (l0, l1), (n0, n1) = HABITS[habit]
    count = rng.randint(n0, n1)
    if not count:
        return []
    last = rng.randint(l0, l1)
    first = max(last, rng.randint(f0, f1)) if count > 1 else last
    between = sorted(rng.randint(last, first) for _ in range(count - 2))
    return sorted({first, *between, last} if count > 1 else {last}, reverse=True)


def _order(
    rng: random.Random, order_id: int, member: str, days_ago: int, status: str
) -> list[dict[str, str]]:
    at = _when(rng, days_ago).strftime("%Y/%m/%d %H:%M:%S")
    picked = rng.sample(PRODUCTS, rng.randint(1, 3))
    qty = [rng.randint(1, 12) for _ in picked]
    total = sum(p[2] * q for p, q in zip(picked, qty, strict=True))
    return [
        {
            "受注ID": str(order_id),
            "会員ID": member,
            "受注日時": at,
            "対応状況": status,
            "合計金額": f"{total:,}",
            "商品コード": code,
            "商品名": name,
            "数量": str(q),
        }
        for (code, name, _price), q in zip(picked, qty, strict=True)
    ]


def _return(order: list[dict[str, str]], order_id: int) -> dict[str, str]:
    """A return booked as its own order: the first product's line, a negative total."""
    line = dict(order[0])
    price = next(p[2] for p in PRODUCTS if p[0] == line["商品コード"])
    back = dt.datetime.strptime(line["受注日時"], "%Y/%m/%d %H:%M:%S") + dt.timedelta(days=3)
    return {
        **line,
        "受注ID": str(order_id),
        "受注日時": back.strftime("%Y/%m/%d %H:%M:%S"),
        "対応状況": "発送済",
        "合計金額": f"{-price:,}",
        "数量": "-1",
    }


def make_orders(members: int = 300, seed: int = SEED) -> Iterator[dict[str, str]]:
    """The order lines of members 1001 … 1000 + ``members``, in 受注ID order."""
    rng = random.Random(seed)
    habits = list(HABITS)
    weights = [HABITS[h][0] for h in habits]
    statuses, status_weights = zip(*STATUSES, strict=True)
    order_id = 50_001
    for i in range(members):
        member = str(1001 + i)
        for days_ago in _days(rng, rng.choices(habits, weights)[0]):
            status = rng.choices(statuses, status_weights)[0]
            order = _order(rng, order_id, member, days_ago, status)
            order_id += 1
            yield from order
            if status == "発送済" and days_ago > 3 and rng.random() < 0.03:
                yield _return(order, order_id)
                order_id += 1
        if rng.random() < 0.02:  # a 非会員's order
            yield from _order(rng, order_id, "", rng.randint(0, 400), "発送済")
            order_id += 1


def write_orders(lines: Iterator[dict[str, str]], path: Path) -> int:
    """Write as B-Cart does (CP932, CRLF); return the lines written."""
    n = 0
    with path.open("w", encoding="cp932", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=HEADERS, lineterminator="\r\n")
        writer.writeheader()
        for line in lines:
            writer.writerow(line)
            n += 1
    return n


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=300)
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("demo_orders.csv"))
    args = parser.parse_args(argv)
    n = write_orders(make_orders(args.members, args.seed), args.out)
    print(f"wrote {n} order lines for {args.members} members to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
