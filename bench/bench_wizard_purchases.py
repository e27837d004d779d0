"""The wizard's 購入履歴 絞込 at 30,000 members with 500,000 order lines (issue 26).

Each action is what the 絞込 button calls (``filter_step.apply.click()``, the controls set as a
marketer sets them), no browser: the filter through :mod:`bcartnb.filters`, the audience, the
first page of the table and the quota warning. Against each, in the same rounds (alternated),
a plain pandas mask of the same condition on the same joined frame, and a 絞込 by a profile
key alone (都道府県) on the same wizard as a reference: what any 絞込 costs on this machine.
Medians of ``--runs``.
Target (issue 26): a 絞込 that uses the purchase columns <= 150 ms in the library.

The members are data/make_demo_members.py's (seed 1), the orders bench_orders.py's
(80% of the members buying over three years); the wizard is built with ``orders=`` (the
orders read and joined once, timed apart).

    .venv/bin/python bench/bench_wizard_purchases.py [--members 30000] [--lines 500000] [--runs 7]
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from zoneinfo import ZoneInfo

import pandas as pd
from bench_orders import orders_csv
from scale import median, member_csv

from bcartnb.members import read_members
from bcartnb.settings import Settings
from bcartnb.widgets import Wizard

TARGET_MS = 150.0


def ms(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return (time.perf_counter() - t0) * 1000


def cases(
    wizard: Wizard, members: pd.DataFrame
) -> dict[str, tuple[Callable[[], None], Callable[[], pd.Series]]]:
    """name → (the wizard's 絞込 with the controls set, the plain mask of the same condition)."""
    p = wizard.filter_step.purchases
    cutoff = dt.datetime.now(ZoneInfo("Asia/Tokyo")).date() - dt.timedelta(days=180)
    start = pd.Timestamp(cutoff).tz_localize("Asia/Tokyo")

    def click(**values: object) -> Callable[[], None]:
        def run() -> None:
            p.clear()
            for name, value in values.items():
                getattr(p, name).value = value
            wizard.filter_step.apply.click()
            assert "検索結果" in str(wizard.status.value), wizard.status.value

        return run

    def profile() -> None:
        p.clear()
        wizard.filter_step.pref.value = ("東京都",)
        wizard.filter_step.apply.click()
        wizard.filter_step.pref.value = ()

    return {
        "reference: 都道府県 = 東京都 (a profile key, no purchase key)": (
            profile,
            lambda: members["pref"] == "東京都",
        ),
        "顧客グループ = 休眠": (
            click(group=("休眠",)),
            lambda: members["顧客グループ"] == "休眠",
        ),
        "最終購入日 before + 購入回数 >= 3 + 購入金額合計 >= 100,000": (
            click(last_before=cutoff, min_count=3, min_total=100_000),
            lambda: (
                (members["最終購入日"] < start)
                & (members["購入回数"] >= 3)
                & (members["購入金額合計"] >= 100_000)
            ),
        ),
        "購入商品 contains A-100": (
            click(product="A-100"),
            lambda: members["購入商品"].map(lambda codes: "A-100" in list(codes)),
        ),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=30_000)
    parser.add_argument("--lines", type=int, default=500_000)
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args(argv)
    members = read_members(member_csv(args.members))
    with tempfile.TemporaryDirectory() as tmp:
        orders = Path(tmp) / "orders.csv"
        orders_csv(orders, args.members, args.lines)
        settings = Settings(plan="プラン300", db=Path(tmp) / "ledger.sqlite3")
        t0 = time.perf_counter()
        wizard = Wizard(members, settings, orders=orders)
        built = time.perf_counter() - t0
        joined = wizard.members
        table = cases(wizard, joined)
        for act, mask in table.values():  # warm: the first page, pandas' caches
            act()
            mask()
        times: dict[str, dict[str, list[float]]] = {}
        for round_ in range(max(3, args.runs)):
            for name, (act, mask) in table.items():
                pair = [("wizard", act), ("mask", mask)]
                for which, fn in pair if round_ % 2 == 0 else pair[::-1]:
                    times.setdefault(name, {}).setdefault(which, []).append(ms(fn))
        counts = {}
        for name, (act, mask) in table.items():
            act()
            counts[name] = len(wizard.table.result_ids)
            assert counts[name] == int(mask().sum()), (name, counts[name])

    print(
        f"{args.members:,} members, {args.lines:,} order lines; "
        f"Wizard(..., orders=) built in {built:.1f} s (the CSV read and joined once)"
    )
    print()
    print("| 絞込 | found | wizard, ms | plain pandas mask, ms | ratio | target |")
    print("|---|---:|---:|---:|---:|---:|")
    ok = True
    for name, got in times.items():
        w, m = median(got["wizard"]), median(got["mask"])
        ok &= w <= TARGET_MS or name.startswith("reference")
        print(f"| {name} | {counts[name]:,} | {w:,.1f} | {m:,.1f} | {w / m:,.1f}x | <= 150 |")
    print()
    print(f"target: every 絞込 <= {TARGET_MS:.0f} ms in the library:", "met" if ok else "NOT met")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
