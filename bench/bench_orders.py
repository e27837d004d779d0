"""Purchase columns at scale (issue 26): 30,000 members and 500,000 order lines.

Times, in one process and alternated so a noisy minute hits both:

- fast: :func:`bcartnb.orders.with_purchases` (every purchase column, 購入商品 (codes and
  names) and 購入カテゴリ as Arrow lists, the RFM ranks and 顧客グループ) on the orders
  frame already read;
- baseline: a plain pandas ``groupby`` + ``merge`` of the same orders (first and last day,
  count, sum, mean; no product lists, ranks or groups): what one writes first;
- the 休眠 filter on the joined frame (:func:`bcartnb.filters.apply_filter`), what a wizard
  絞込 adds on top of the profile filter;
- reading the CSV itself (CP932, :func:`bcartnb.orders.read_orders`), once;
- read + derive + join in a fresh process each, so that each peak RSS (VmHWM) is its own: the
  fast reader (Arrow, :func:`~bcartnb.orders.read_orders`) and the plain one (pandas' C
  parser, :func:`~bcartnb.orders.read_orders_plain`), the fast one first and last.

Target: derive + join <= 1.5 s; read + derive + join <= 500 MB peak; filter <= 150 ms.

Run: .venv/bin/python bench/bench_orders.py [--members 30000] [--lines 500000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from bcartnb.filters import apply_filter
from bcartnb.orders import read_orders, read_orders_plain, with_purchases
from bcartnb.settings import PurchaseSettings

TODAY = dt.date(2026, 12, 6)


def orders_csv(path: Path, members: int, lines: int, seed: int = 26) -> None:
    """``lines`` order products in about lines/3 orders by 80% of the members, over 3 years."""
    rng = np.random.default_rng(seed)
    n_orders = max(1, lines // 3)
    order_of_line = np.sort(rng.integers(0, n_orders, lines))
    buyer = rng.integers(1, int(members * 0.8) + 1, n_orders)
    days = rng.integers(0, 3 * 365, n_orders)
    status = rng.choice(
        ["発送済", "新規注文", "キャンセル", "返品"], n_orders, p=[0.85, 0.1, 0.04, 0.01]
    )
    total = rng.integers(-5_000, 400_000, n_orders)
    product = rng.integers(1, 2000, lines)
    when = pd.Timestamp(TODAY) - pd.to_timedelta(days, unit="D") + pd.Timedelta(hours=10)
    frame = pd.DataFrame(
        {
            "受注ID": order_of_line + 1,
            "会員ID": buyer[order_of_line],
            "受注日時": when.strftime("%Y/%m/%d %H:%M:%S")[order_of_line],
            "対応状況": status[order_of_line],
            "合計金額": total[order_of_line],
            "商品コード": [f"A-{c}" for c in product],
            "商品名": [f"商品{c}" for c in product],
            # 20 categories; one product in ten has none (未分類)
            "商品カテゴリ": [f"カテゴリ{c % 20}" if c % 10 else "" for c in product],
        }
    )
    frame.to_csv(path, index=False, encoding="cp932")


def plain(members: pd.DataFrame, orders: pd.DataFrame) -> pd.DataFrame:
    counted = orders[~orders["status"].isin(["キャンセル", "返品"]) & orders["member_id"].notna()]
    heads = counted.drop_duplicates("order_id")
    agg = heads.groupby("member_id").agg(
        first=("ordered_at", "min"),
        last=("ordered_at", "max"),
        count=("order_id", "size"),
        total=("total", "sum"),
        mean=("total", "mean"),
    )
    return members.merge(agg, left_on="id", right_index=True, how="left")


def timed(fn: Callable[[], object], rounds: int) -> float:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def peak_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def child(way: str, path: Path, n_members: int) -> None:
    """Read + derive + join in this (fresh) process; print seconds and peak MB as JSON-ish."""
    members = pd.DataFrame(
        {
            "id": np.arange(1, n_members + 1, dtype="int64"),
            "email": [f"user{i}@example.co.jp" for i in range(n_members)],
        }
    )
    base = peak_mb()
    start = time.perf_counter()
    orders = (read_orders if way == "fast" else read_orders_plain)(path)
    read_s = time.perf_counter() - start
    with_purchases(members, orders, PurchaseSettings(), TODAY)
    total_s = time.perf_counter() - start
    print(f"{read_s:.3f} {total_s:.3f} {peak_mb():.0f} {base:.0f}")


def fresh(way: str, path: Path, n_members: int) -> list[float]:
    done = subprocess.run(
        [sys.executable, __file__, "--child", way, str(path), "--members", str(n_members)],
        capture_output=True,
        text=True,
        check=True,
    )
    return [float(x) for x in done.stdout.split()]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--child", nargs=2, metavar=("WAY", "PATH"))
    parser.add_argument("--members", type=int, default=30_000)
    parser.add_argument("--lines", type=int, default=500_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], Path(args.child[1]), args.members)
        return
    members = pd.DataFrame(
        {
            "id": np.arange(1, args.members + 1, dtype="int64"),
            "email": [f"user{i}@example.co.jp" for i in range(args.members)],
        }
    )
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "受注.csv"
        orders_csv(path, args.members, args.lines)
        start = time.perf_counter()
        orders = read_orders(path)
        read_s = time.perf_counter() - start
        ways = [("fast", fresh("fast", path, args.members))]
        ways += [("plain", fresh("plain", path, args.members))]
        ways += [("fast", fresh("fast", path, args.members))]
    settings = PurchaseSettings()
    fast_t, base_t = [], []
    for _ in range(args.rounds):  # alternated
        fast_t.append(timed(lambda: with_purchases(members, orders, settings, TODAY), 1))
        base_t.append(timed(lambda: plain(members, orders), 1))
    joined = with_purchases(members, orders, settings, TODAY)
    flt = {"顧客グループ": "休眠"}
    filter_s = timed(lambda: apply_filter(joined, flt), args.rounds)
    dormant = len(apply_filter(joined, flt))
    print(f"members {args.members:,}, order lines {len(orders):,}, 休眠 {dormant:,}")
    print(f"read the CP932 受注 CSV:               {read_s:7.3f} s (once)")
    print(f"with_purchases (derive + join):       {statistics.median(fast_t):7.3f} s median")
    print(f"baseline groupby + merge (5 columns): {statistics.median(base_t):7.3f} s median")
    print(f"filter 顧客グループ = 休眠:               {filter_s * 1000:7.1f} ms median")
    print(f"peak RSS of the process:              {peak_mb():7.0f} MB")
    print("read + derive + join, a fresh process each (read s, total s, peak MB, at import MB):")
    for way, (read_t, total_t, peak, base) in ways:
        print(
            f"  {way:5} read {read_t:6.3f} s, total {total_t:6.3f} s, peak {peak:5.0f} MB"
            f" (import {base:3.0f} MB)"
        )


if __name__ == "__main__":
    main()
