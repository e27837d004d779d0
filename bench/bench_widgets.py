"""Wizard responsiveness on a big member list: the keyword box and one 絞込 click.

Baseline = the keyword search as a plain Python loop (NFKC + lower per cell, every column),
the way one would first write it; fast = :func:`bcartnb.search.keyword_mask` (Arrow kernels:
normalise, join, scan) and a reused :class:`~bcartnb.search.KeywordIndex` (scan only, what
the wizard does after its first keyword search). Also times what a marketer waits for:
building the wizard, and a 絞込 click (filter + keyword + audience + first table page).

Run: .venv/bin/python bench/bench_widgets.py [--members N]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import unicodedata
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from bcartnb.members import read_members
from bcartnb.search import KEYWORD_COLUMNS, KeywordIndex, keyword_mask, keyword_terms
from bcartnb.settings import Settings
from bcartnb.widgets import Wizard

ROOT = Path(__file__).resolve().parent.parent


def big_frame(n: int) -> pd.DataFrame:
    demo = read_members(ROOT / "data" / "demo_members.csv")
    reps = -(-n // len(demo))
    frame = pd.concat([demo] * reps, ignore_index=True).head(n).copy()
    frame["id"] = np.arange(1, n + 1, dtype="int64")
    frame["email"] = [f"user{i}@example.co.jp" for i in range(n)]
    frame.attrs = {"source": "bench"}
    return frame


def loop_mask(df: pd.DataFrame, text: str) -> list[bool]:
    terms = keyword_terms(text)
    cols = [c for c in KEYWORD_COLUMNS if c in df.columns]
    out = []
    for rec in df[cols].itertuples(index=False):
        vals = [unicodedata.normalize("NFKC", str(v)).lower() for v in rec if isinstance(v, str)]
        vals.append("".join(vals[3:5]))  # tanto last + first, as the fast path joins them
        out.append(all(any(t in v for v in vals) for t in terms))
    return out


def timed(fn: Callable[[], object], runs: int) -> float:
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--members", type=int, default=100_000)
    args = ap.parse_args()
    df = big_frame(args.members)
    text = "商事 東京都"
    assert keyword_mask(df, text).sum() > 0
    base = timed(lambda: loop_mask(df, text), 1)
    fast = timed(lambda: keyword_mask(df, text), 3)
    index = KeywordIndex(df)
    again = timed(lambda: index.mask(text), 5)
    assert index.mask(text)[:2000].tolist() == loop_mask(df.head(2000), text)
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(plan="プラン300", db=Path(tmp) / "l.sqlite3")
        build = timed(lambda: Wizard(df, settings), 3)
        wizard = Wizard(df, settings)
        wizard.filter_step.pref.value = ("東京都", "大阪府")
        wizard.filter_step.text.value = "商事"

        def click() -> None:
            wizard.filter_step.apply.click()

        apply = timed(click, 5)
        found = len(wizard.table.result_ids)
    print(f"members: {args.members:,}  keyword: {text!r}")
    print(f"| keyword search, plain loop (baseline) | {base * 1000:,.0f} ms | 1.0x |")
    for name, secs in (
        ("keyword_mask (index + scan)", fast),
        ("KeywordIndex.mask (scan)", again),
    ):
        print(f"| keyword search, {name} | {secs * 1000:,.1f} ms | {base / secs:,.1f}x |")
    print(f"| Wizard(...) built (all members, page 1) | {build * 1000:,.0f} ms | - |")
    print(f"| 絞込 click (2 prefs + keyword, {found:,} found) | {apply * 1000:,.0f} ms | - |")


if __name__ == "__main__":
    main()
