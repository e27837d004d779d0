"""Wizard responsiveness on a big member list: the keyword box, and every button of step 1.

Baseline = the keyword search as a plain Python loop (NFKC + lower per cell, every column),
the way one would first write it; fast = :func:`bcartnb.search.keyword_mask` (Arrow kernels:
normalise, join, scan) and a reused :class:`~bcartnb.search.KeywordIndex` (scan only, what
the wizard does after its first keyword search). Also times what a marketer waits for:
building the wizard, and a 絞込 click (filter + keyword + audience + first table page).

``--wizard`` (issue 24): the wizard on ``--wizard-members`` (30,000) members with
``--suppressed`` (30,000) addresses on the ledger's suppression list (half of them members),
each action as its button calls the library (``click()``, a tick as the check box's value):
絞込, 次へ/前へ, ticking a member, 検索結果すべてに送信, チェックした会員に送信, 戻る, and a
絞込 just after another process listed an address (the list read again). Target: every action
<= 100 ms. Baseline in the same run: a plain pandas mask (the prefectures and the
suppression list as ``isin``). Wall medians, and the CPU time of the process (the machine
is shared: wall time includes waiting for a core).

Run: .venv/bin/python bench/bench_widgets.py [--members N] [--wizard [--only-wizard]]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
import unicodedata
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from bcartnb.ledger import HygieneEvent, Ledger
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


def cpu_and_wall(fn: Callable[[], object], runs: int) -> tuple[float, float]:
    """Median wall and CPU seconds of ``fn``."""
    wall, cpu = [], []
    for _ in range(runs):
        w, c = time.perf_counter(), time.process_time()
        fn()
        cpu.append(time.process_time() - c)
        wall.append(time.perf_counter() - w)
    return statistics.median(wall), statistics.median(cpu)


def suppress(db: Path, addresses: list[str], key: str) -> None:
    """List ``addresses`` as unsubscribes, in one transaction (the public way a scan does)."""
    now = datetime.now(UTC)
    events = [
        HygieneEvent(f"{key}:{i}", "unsubscribed", a, now, "bench") for i, a in enumerate(addresses)
    ]
    with Ledger.open(db) as led:
        led.record_events(events)


def wizard_actions(n: int, listed: int, runs: int) -> None:
    df = big_frame(n)
    prefs = ("東京都", "大阪府")
    with tempfile.TemporaryDirectory(dir="/tmp") as tmp:
        db = Path(tmp) / "ledger.sqlite3"
        own = [f"user{i}@example.co.jp" for i in range(0, 2 * listed, 4)][: listed // 2]
        suppress(db, own + [f"gone{i}@example.com" for i in range(listed - len(own))], "bench")
        wizard = Wizard(df, Settings(plan="プラン300", db=db))
        table = wizard.table
        wizard.filter_step.pref.value = prefs
        wizard.filter_step.apply.click()
        listed_set = set(own)

        def mask() -> object:
            return df[df["pref"].isin(prefs)]

        def mask_listed() -> object:
            found = df[df["pref"].isin(prefs)]
            return found[~found["email"].str.lower().isin(listed_set)]

        def tick() -> None:
            box = table._boxes[table.page_ids()[0]]
            box.value = not box.value

        def choose(button: object) -> Callable[[], None]:
            def click() -> None:
                button.click()  # type: ignore[attr-defined]
                assert wizard.stage == "compose", wizard.status.value
                wizard._go("select")  # untimed: 戻る is timed on its own

            return click

        def back() -> None:
            wizard.send_all.click()
            start = time.perf_counter(), time.process_time()
            wizard.compose.back.click()
            back_times.append((time.perf_counter() - start[0], time.process_time() - start[1]))

        def listed_elsewhere() -> None:
            """Another process lists a member of the result: the next 絞込 holds it back."""
            assert wizard.found is not None
            before = wizard.found.reasons["suppressed"]
            address = str(wizard.found.sendable["email"].iloc[0])
            code = (
                "import sys; sys.path.insert(0, sys.argv[1]); import bench_widgets as b;"
                "from pathlib import Path;"
                "b.suppress(Path(sys.argv[2]), [sys.argv[3]], sys.argv[3])"
            )
            here = str(Path(__file__).parent)
            subprocess.run([sys.executable, "-c", code, here, str(db), address], check=True)
            after.append(cpu_and_wall(wizard.filter_step.apply.click, 1))
            assert wizard.found.reasons["suppressed"] == before + 1

        rows: list[tuple[str, float, float]] = []
        rows.append(("a plain pandas mask: 都道府県 (baseline)", *cpu_and_wall(mask, runs)))
        rows.append(("the same mask, and the suppression list", *cpu_and_wall(mask_listed, runs)))
        rows.append(("絞込 (2 prefs)", *cpu_and_wall(wizard.filter_step.apply.click, runs)))
        rows.append(("次へ (next page)", *cpu_and_wall(table.next.click, runs)))
        rows.append(("前へ (previous page)", *cpu_and_wall(table.prev.click, runs)))
        rows.append(("tick a member", *cpu_and_wall(tick, runs)))
        table.check(table.page_ids()[:3])
        rows.append(("検索結果すべてに送信", *cpu_and_wall(choose(wizard.send_all), runs)))
        rows.append(("チェックした会員に送信", *cpu_and_wall(choose(wizard.send_checked), runs)))
        back_times: list[tuple[float, float]] = []
        for _ in range(runs):
            back()
        rows.append(
            (
                "戻る (to the list, sorted again)",
                statistics.median(t[0] for t in back_times),
                statistics.median(t[1] for t in back_times),
            )
        )
        after: list[tuple[float, float]] = []
        for _ in range(runs):
            listed_elsewhere()
        rows.append(
            (
                "絞込 after another process listed an address",
                statistics.median(t[0] for t in after),
                statistics.median(t[1] for t in after),
            )
        )
        found = len(table.result_ids)
        rows += confirm_actions(wizard, runs)
    base = rows[0][1]
    print(f"members: {n:,}  suppressed: {listed:,}  found by 絞込: {found:,}  runs: {runs}")
    print("| action | wall (median) | CPU | wall / pandas mask |")
    print("|---|---:|---:|---:|")
    for name, wall, cpu in rows:
        print(f"| {name} | {wall * 1000:,.1f} ms | {cpu * 1000:,.1f} ms | {wall / base:,.1f}x |")


def confirm_actions(wizard: Wizard, runs: int) -> list[tuple[str, float, float]]:
    """確認画面へ with every search result (the mail written), 戻る from the confirmation, and
    the composing of every mail that goes on on a thread after the confirmation shows."""
    wizard.send_all.click()
    wizard.compose.subject.value = "{{ 会社名 }} 様 新商品のご案内"
    wizard.compose.body.value = "{{ 会社名 }} {{ 担当者名 }} 様\nいつもありがとうございます。\n" * 5
    confirm, back, check = [], [], []
    for _ in range(runs):
        w, c = time.perf_counter(), time.process_time()
        wizard.compose.to_confirm.click()
        confirm.append((time.perf_counter() - w, time.process_time() - c))
        assert wizard.stage == "confirm", wizard.status.value
        assert wizard.mail_check is not None and wizard.mail_check.wait(120)
        check.append((time.perf_counter() - w, 0.0))
        w, c = time.perf_counter(), time.process_time()
        wizard.confirm.back.click()
        back.append((time.perf_counter() - w, time.process_time() - c))
    assert wizard.plan is None
    mails = len(wizard.table.result_ids)

    def row(name: str, times: list[tuple[float, float]]) -> tuple[str, float, float]:
        return (
            name,
            statistics.median(t[0] for t in times),
            statistics.median(t[1] for t in times),
        )

    return [
        row(f"確認画面へ ({mails:,} found)", confirm),
        row("戻る from the confirmation (sorted again for the mail)", back),
        row("... every mail composed, on its thread (wall from the click; CPU not counted)", check),
    ]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--members", type=int, default=100_000)
    ap.add_argument("--wizard", action="store_true", help="time every action of step 1")
    ap.add_argument("--only-wizard", action="store_true")
    ap.add_argument("--wizard-members", type=int, default=30_000)
    ap.add_argument("--suppressed", type=int, default=30_000)
    ap.add_argument("--runs", type=int, default=7)
    args = ap.parse_args()
    if args.wizard or args.only_wizard:
        wizard_actions(args.wizard_members, args.suppressed, args.runs)
        if args.only_wizard:
            return
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
