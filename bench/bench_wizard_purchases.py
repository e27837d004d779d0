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

from bcartnb.filters import apply_filter
from bcartnb.members import read_members
from bcartnb.settings import Settings
from bcartnb.widgets import Wizard

TARGET_MS = 150.0


CPU: list[float] = []  # the process's CPU time of each ms() call, beside its wall time


def ms(fn: Callable[[], object]) -> float:
    c0, t0 = time.process_time(), time.perf_counter()
    fn()
    CPU.append((time.process_time() - c0) * 1000)
    return (time.perf_counter() - t0) * 1000


Case = tuple[Callable[[], None], dict[str, object], Callable[[], pd.Series]]


def cases(wizard: Wizard, members: pd.DataFrame) -> dict[str, Case]:
    """name → (the wizard's 絞込 with the controls set, the filter dict the controls build,
    the plain pandas mask of the same condition)."""
    p, step = wizard.filter_step.purchases, wizard.filter_step
    cutoff = dt.datetime.now(ZoneInfo("Asia/Tokyo")).date() - dt.timedelta(days=180)
    start = pd.Timestamp(cutoff).tz_localize("Asia/Tokyo")

    def click(**values: object) -> tuple[Callable[[], None], dict[str, object]]:
        def run() -> None:
            p.clear()
            step.pref.value = ()
            for name, value in values.items():
                target = step.pref if name == "pref" else getattr(p, name)
                target.value = value
            step.apply.click()
            assert "検索結果" in str(wizard.status.value), wizard.status.value

        p.clear()
        for name, value in values.items():
            (step.pref if name == "pref" else getattr(p, name)).value = value
        flt = dict(step.filter)
        step.pref.value = ()
        return run, flt

    return {
        "reference: 都道府県 = 東京都 (a profile key)": (
            *click(pref=("東京都",)),
            lambda: members["pref"] == "東京都",
        ),
        "顧客グループ = 休眠": (
            *click(group=("休眠",)),
            lambda: members["顧客グループ"] == "休眠",
        ),
        "最終購入日 before + 購入回数 >= 3 + 購入金額合計 >= 100,000": (
            *click(last_before=cutoff, min_count=3, min_total=100_000),
            lambda: (
                (members["最終購入日"] < start)
                & (members["購入回数"] >= 3)
                & (members["購入金額合計"] >= 100_000)
            ),
        ),
        "購入商品 contains A-100": (
            *click(product="A-100"),
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
        plain = Wizard(members, settings)  # no orders: the same 絞込 without purchase columns
        joined = wizard.members
        table = cases(wizard, joined)

        def plain_click() -> None:
            plain.filter_step.pref.value = ("東京都",)
            plain.filter_step.apply.click()

        runs: dict[str, dict[str, Callable[[], object]]] = {
            name: {
                "wizard": act,
                "filter": lambda flt=flt: apply_filter(joined, flt),  # type: ignore[misc]
                "mask": lambda mask=mask: joined.loc[mask()],  # type: ignore[misc]
            }
            for name, (act, flt, mask) in table.items()
        }
        runs["reference: 都道府県 = 東京都, a wizard without orders"] = {"wizard": plain_click}
        for fns in runs.values():  # warm: the first page, pandas' caches
            for fn in fns.values():
                fn()
        times: dict[str, dict[str, list[float]]] = {}
        cpu: dict[str, dict[str, list[float]]] = {}
        for round_ in range(max(3, args.runs)):
            for name, fns in runs.items():
                pairs = list(fns.items())
                for which, fn in pairs if round_ % 2 == 0 else pairs[::-1]:
                    times.setdefault(name, {}).setdefault(which, []).append(ms(fn))
                    cpu.setdefault(name, {}).setdefault(which, []).append(CPU[-1])
        counts = {}
        for name, (act, flt, mask) in table.items():
            act()
            counts[name] = len(wizard.table.result_ids)
            assert counts[name] == int(mask().sum()) == len(apply_filter(joined, flt)), name
        plain_click()
        counts["reference: 都道府県 = 東京都, a wizard without orders"] = len(
            plain.table.result_ids
        )

    print(
        f"{args.members:,} members, {args.lines:,} order lines; "
        f"Wizard(..., orders=) built in {built:.1f} s (the CSV read and joined once)"
    )
    print()
    print(
        "| 絞込 | found | wizard 絞込, ms | its CPU, ms | apply_filter, ms | pandas mask + loc, ms "
        "| apply_filter / mask | target (wizard) |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    ok = True
    for name, got in times.items():
        w = median(got["wizard"])
        if "filter" in got:
            f, m = median(got["filter"]), median(got["mask"])
            cells = f"{f:,.1f} | {m:,.1f} | {f / m:,.1f}x"
        else:
            cells = " | | "
        ok &= w <= TARGET_MS or name.startswith("reference")
        c = median(cpu[name]["wizard"])
        print(f"| {name} | {counts[name]:,} | {w:,.1f} | {c:,.1f} | {cells} | <= {TARGET_MS:.0f} |")
    print()
    print(f"target: every 絞込 <= {TARGET_MS:.0f} ms in the library:", "met" if ok else "NOT met")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
