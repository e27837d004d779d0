"""The wizard from click to screen in a real JupyterLab, 30,000 members, 30,000 suppressed.

Issue 24's target: every action of the wizard within 150 ms from click to screen (100 ms in
the library is bench_wizard_scale.py's). A shop folder in tmp holds the wizard notebook with
``members_path`` set to data/make_demo_members.py's 30,000 members (seed 1) and a ledger with
30,000 suppressed addresses (half of them members'); ``jupyter lab`` serves it and Debian's
headless Chromium runs it, as tests/browser_support.py does for the browser tests.

Each action is a real mouse click (Playwright): 絞込 (都道府県 東京都 or 大阪府, in turn), 次へ
(the table's next page), a tick (the page's first member), 検索結果すべてに送信, 確認画面へ
(the mail typed into the form first), 戻る from the confirmation and 戻る from the form. Its
time is taken inside the page: ``performance.now()`` at the click event (a capturing listener
on the document) to the first animation frame at which the DOM shows the whole new state;
page.wait_for_function waits for that frame. The new state is the one a twin Wizard in this
process reaches by the same action on the same files: the status line, the counts, the page
label, every cell of the table's page, the quota warning, which screen shows, the clicked
control enabled again. Before each action, the baseline: a plain ipywidgets Button in the same
page whose handler only sets a Label (the widget round trip: click → kernel → update → DOM).
The ratio says what the wizard adds to that round trip.

Beside each: the twin's own time for the action (the library, no browser) and how many
comm messages it sends (a widget's state update, an echo, a new widget), the traffic the
browser has to apply.

    .venv/bin/python bench/bench_wizard_browser.py [--members 30000] [--suppressed 30000] [--runs 5]
"""

from __future__ import annotations

import argparse
import html
import json
import os
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from scale import ROOT, median, member_csv

sys.path.insert(0, str(ROOT / "tests"))

import comm
from bench_wizard_scale import fill_suppressions
from browser_support import (
    VIEWPORT,
    JupyterLab,
    collapse_left_sidebar,
    launch_chromium,
    open_notebook,
    run_all_cells,
    wait_for_wizard,
    wait_kernel_idle,
    widget_input,
)
from playwright.sync_api import Page, sync_playwright
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from bcartnb.members import read_members
from bcartnb.settings import load_settings
from bcartnb.widgets import Wizard

TARGET_MS = 150.0
PREFS = ("東京都", "大阪府")
#: the mail typed before 確認画面へ: every member's own values in it
SUBJECT = "{{ 会社名 }} 様 新商品のご案内"
BODY = "{{ 会社名 }} {{ 担当者名 }} 様\nいつもありがとうございます。\n新商品のご案内です。"
NOTEBOOK = "notebooks/campaign_wizard.ipynb"
TIMEOUT = int(
    os.environ.get("BENCH_TIMEOUT_MS", "120000")
)  # ms: a busy machine; the wait is for behaviour, the time is taken in the page

BASELINE_CELL = """\
import ipywidgets as widgets

bench_label = widgets.Label("0")
bench_label.add_class("bench-baseline-label")
bench_button = widgets.Button(description="baseline")
bench_button.add_class("bench-baseline-button")
bench_button.on_click(lambda _b: setattr(bench_label, "value", str(int(bench_label.value) + 1)))
widgets.HBox([bench_button, bench_label])
"""

# The click's time, taken by the page itself: a capturing listener sees the click first.
ARM_JS = """\
(checks) => {
  const bench = (window.__bench = window.__bench || {});
  if (!bench.listening) {
    document.addEventListener("click", () => { bench.t0 = performance.now(); }, true);
    bench.listening = true;
  }
  bench.t0 = null;
  bench.t1 = null;
  const norm = (s) => (s || "").replace(/[\\s\\u200b]+/g, "");
  const shown = (el) => !!el && el.getClientRects().length > 0;
  const holds = () => checks.every(([sel, kind, want]) => {
    const el = document.querySelector(sel);
    if (kind === "hidden") return !shown(el);
    if (!el) return false;
    if (kind === "text") return norm(el.textContent) === want;
    if (kind === "visible") return shown(el);
    if (kind === "enabled") return !el.disabled === want;
    if (kind === "checked") return el.checked === want;
    throw new Error("unknown check " + kind);
  });
  if (holds()) return false;  // the new state is already on screen: nothing to time
  const frame = () => {
    if (bench.t0 !== null && holds()) { bench.t1 = performance.now(); return; }
    requestAnimationFrame(frame);
  };
  requestAnimationFrame(frame);
  return true;
}
"""

UNMET_JS = """\
(checks) => checks.map((c) => {
  const el = document.querySelector(c[0]);
  if (!el) return [c, null];
  return [c, [el.textContent.replace(/[\\s\\u200b]+/g, ""), el.disabled, el.checked,
              el.getClientRects().length]];
})
"""

Check = tuple[str, str, Any]


def text_of(markup: str) -> str:
    """What the DOM's textContent shows of an HTML widget's value, whitespace dropped."""
    return re.sub(r"\s+", "", html.unescape(re.sub(r"<[^>]*>", "", markup)))


def screen(w: Wizard) -> list[Check]:
    """The checks that hold once the browser shows what the twin wizard ``w`` holds (on the
    confirmation, the status line comes twice: at once, and when every mail is composed)."""
    checks: list[Check] = []
    if w.stage != "confirm":
        checks.append((".bcartnb-status", "text", text_of(w.status.value)))
    if w.stage == "select":
        table = w.table
        grid = "".join(  # a check box's text is its label (read aloud, kept off the screen)
            text_of(str(c.description if hasattr(c, "indent") else c.value))
            for c in table.grid.children
        )
        checks += [
            (".bcartnb-result-count", "text", text_of(table.result_count.value)),
            (".bcartnb-checked-count", "text", text_of(table.checked_count.value)),
            (".bcartnb-page-label", "text", text_of(table.page_label.value)),
            (".bcartnb-member-table .widget-gridbox", "text", grid),
            (".bcartnb-select-quota-warning", "text", text_of(w.select_warning.value)),
            ("button.bcartnb-send-all", "visible", True),
            ("button.bcartnb-filter-apply", "enabled", True),
            ("button.bcartnb-page-next", "enabled", not table.next.disabled),
            ("button.bcartnb-to-confirm", "hidden", True),
        ]
        checks += [
            (f".bcartnb-check-{mid} input", "checked", mid in table.checked)
            for mid in table.page_ids()
        ]
    elif w.stage == "compose":
        checks += [
            ("button.bcartnb-to-confirm", "visible", True),
            ("button.bcartnb-to-confirm", "enabled", True),
            (".bcartnb-counts", "text", text_of(w.compose.counts.value)),
            (".bcartnb-quota", "text", text_of(w.compose.quota.value)),
            ("button.bcartnb-send-all", "hidden", True),
        ]
    elif w.stage == "confirm":
        checks += [
            ("button.bcartnb-send", "visible", True),
            ("button.bcartnb-back", "enabled", True),
            (".bcartnb-send-count", "text", text_of(w.confirm.send_count.value)),
            (".bcartnb-confirm-counts", "text", text_of(w.confirm.counts.value)),
            ("button.bcartnb-to-confirm", "hidden", True),
        ]
    else:
        raise AssertionError(f"the bench does not reach the {w.stage} screen")
    return checks


@contextmanager
def counting_messages() -> Iterator[list[int]]:
    """Every comm message the twin's widgets send (updates, echoes, opens), counted."""
    got = [0]
    original = comm.DummyComm.publish_msg

    def publish(self: Any, *args: Any, **kwargs: Any) -> None:
        got[0] += 1

    comm.DummyComm.publish_msg = publish  # type: ignore[method-assign]
    try:
        yield got
    finally:
        comm.DummyComm.publish_msg = original  # type: ignore[method-assign]


class Bench:
    """The page and its twin, driven step by step; each action timed both ways."""

    def __init__(self, page: Page, twin: Wizard) -> None:
        self.page = page
        self.twin = twin
        self.times: dict[str, list[float]] = {}
        self.library: dict[str, list[float]] = {}
        self.messages: dict[str, list[int]] = {}

    def settle(self) -> None:
        """The kernel idle again: a click's trailing messages are not the next click's time."""
        time.sleep(0.2)
        wait_kernel_idle(self.page, timeout=TIMEOUT)

    def click(self, selector: str, checks: list[Check]) -> float:
        """Click ``selector``; the ms from the click event to the frame showing ``checks``."""
        if not self.page.evaluate(ARM_JS, checks):
            raise AssertionError(f"{selector}: the new state is on screen before the click")
        self.page.locator(selector).first.click()
        try:
            self.page.wait_for_function(
                "() => window.__bench.t1 !== null", timeout=TIMEOUT, polling=50
            )
        except PlaywrightTimeout:
            raise AssertionError(f"{selector}: not shown\n{self.unmet(checks)}") from None
        took: float = self.page.evaluate("() => window.__bench.t1 - window.__bench.t0")
        self.settle()
        return took

    def unmet(self, checks: list[Check]) -> str:
        """The checks the screen fails, with what it shows instead."""
        seen = self.page.evaluate(UNMET_JS, checks)
        return "\n".join(f"{c[0]} {c[1]}: want {c[2]!r}, shows {s!r}" for c, s in seen)

    def act(self, name: str, selector: str, twin_action: Callable[[], object]) -> None:
        with counting_messages() as sent:
            t0 = time.perf_counter()
            twin_action()
            self.library.setdefault(name, []).append((time.perf_counter() - t0) * 1000)
        self.messages.setdefault(name, []).append(sent[0])
        self.times.setdefault(name, []).append(self.click(selector, screen(self.twin)))

    def baseline(self) -> None:
        label = self.page.locator(".bench-baseline-label").first
        after = str(int(label.inner_text().strip()) + 1)
        took = self.click(".bench-baseline-button", [(".bench-baseline-label", "text", after)])
        self.times.setdefault("baseline", []).append(took)

    def write_mail(self) -> None:
        """The subject and body typed in the page, and the same set in the twin."""
        for css, kind, text in (
            ("bcartnb-subject", "input", SUBJECT),
            ("bcartnb-body", "textarea", BODY),
        ):
            widget_input(self.page, css, kind).fill(text)
        self.twin.compose.subject.value, self.twin.compose.body.value = SUBJECT, BODY
        self.settle()

    def round(self, n: int) -> None:
        twin, page = self.twin, self.page
        pref = PREFS[n % 2]
        widget_input(page, "bcartnb-filter-pref", "select").select_option(label=pref)
        twin.filter_step.pref.value = (pref,)
        self.settle()
        steps: list[tuple[str, str, Callable[[], object]]] = [
            ("絞込", "button.bcartnb-filter-apply", twin.filter_step.apply.click),
            ("次へ", "button.bcartnb-page-next", twin.table.next.click),
            ("1 件チェック", "", lambda: None),  # the selector is the page's first member's
            ("検索結果すべてに送信", "button.bcartnb-send-all", twin.send_all.click),
            ("確認画面へ", "button.bcartnb-to-confirm", twin.compose.to_confirm.click),
            ("戻る (確認画面から)", "button.bcartnb-back", twin.confirm.back.click),
            ("戻る", "button.bcartnb-compose-back", twin.compose.back.click),
        ]
        for name, selector, action in steps:
            if name == "確認画面へ":
                self.write_mail()
            self.baseline()
            if name == "1 件チェック":
                first = twin.table.page_ids()[0]
                box = twin.table.boxes[0]  # the box the click sets, as the browser would
                selector = f".bcartnb-check-{first} input"
                action = lambda box=box: setattr(box, "value", True)  # noqa: E731
            self.act(name, selector, action)


def shop(tmp: Path, members_csv: Path) -> tuple[Path, Path]:
    """The shop folder: the wizard notebook on the generated members, the baseline cell
    before it, the templates and a settings file; returns (root, settings file)."""
    root = tmp / "shop"
    (root / "notebooks").mkdir(parents=True)
    shutil.copytree(ROOT / "data" / "templates", root / "data" / "templates")
    nb = json.loads((ROOT / NOTEBOOK).read_text(encoding="utf-8"))
    cells = nb["cells"]
    for cell in cells:
        src = "".join(cell["source"])
        if src.startswith("settings_path") or "\nmembers_path" in src:
            cell["source"] = re.sub(
                r"members_path = [^\n#]*", f"members_path = {str(members_csv)!r} ", src
            )
    baseline = {
        "cell_type": "code",
        "execution_count": None,
        "metadata": {},
        "outputs": [],
        "source": BASELINE_CELL,
    }
    cells.insert(len(cells) - 1, baseline)
    (root / NOTEBOOK).write_text(json.dumps(nb, ensure_ascii=False), encoding="utf-8")
    config = root / "bcartnb.toml"
    config.write_text(
        'plan = "プラン300"\n'
        'from = "サンプル商店 <shop@example.co.jp>"\n'
        'admin = "admin@example.co.jp"\n'
        'signature = "サンプル商店 東京都千代田区1-1 配信停止: shop@example.co.jp"\n'
        'templates = "data/templates"\n'
        f'db = "{tmp / "ledger.sqlite3"}"\n',
        encoding="utf-8",
    )
    return root, config


def open_page(page: Page, lab: JupyterLab, twin: Wizard) -> None:
    open_notebook(page, lab, NOTEBOOK)
    collapse_left_sidebar(page)
    run_all_cells(page)
    wait_for_wizard(page, timeout=TIMEOUT)
    page.wait_for_function(
        "want => (document.querySelector('.bcartnb-result-count') || {}).textContent === want",
        arg=twin.table.result_count.value,
        timeout=TIMEOUT,
    )
    wait_kernel_idle(page, timeout=TIMEOUT)


def report(bench: Bench, args: argparse.Namespace, load: tuple[float, float]) -> bool:
    base = median(bench.times["baseline"])
    print(
        f"\n{args.members:,} members, {args.suppressed:,} suppressed; medians of {args.runs}; "
        f"load average {load[0]:.2f} at the start, {load[1]:.2f} at the end"
    )
    print()
    print(
        "| action | click to screen, ms | baseline, ms | ratio | wizard's own, ms "
        "| library (twin), ms | comm messages | target |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    print(f"| a Button setting a Label (baseline) | {base:.0f} | | 1.0x | | | | |")
    ok = True
    for name, got in bench.times.items():
        if name == "baseline":
            continue
        took = median(got)
        ok &= took <= TARGET_MS
        print(
            f"| {name} | {took:.0f} | {base:.0f} | {took / base:.1f}x | {took - base:.0f} "
            f"| {median(bench.library[name]):.1f} | {median(bench.messages[name]):.0f} "
            f"| <= {TARGET_MS:.0f} |"
        )
    print()
    for name, got in bench.times.items():
        print(f"{name}: " + ", ".join(f"{t:.0f}" for t in got) + " ms")
    print()
    print(f"target: every action <= {TARGET_MS:.0f} ms from click to screen:", end=" ")
    print("met" if ok else "NOT met")
    return ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=30_000)
    parser.add_argument("--suppressed", type=int, default=30_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args(argv)
    csv = member_csv(args.members)
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        root, config = shop(tmp, csv)
        settings = load_settings(config)
        fill_suppressions(settings, read_members(csv), args.suppressed)
        twin = Wizard(csv, settings)
        env = {"BCARTNB_CONFIG": str(config)}
        with JupyterLab(root, tmp / "lab", env=env) as lab, sync_playwright() as pw:
            browser = launch_chromium(pw)
            try:
                page = browser.new_page(viewport=VIEWPORT, locale="ja-JP")
                open_page(page, lab, twin)
                bench = Bench(page, twin)
                bench.round(1)  # warm: the first page turn, the compose screen's first show
                bench = Bench(page, twin)
                load_start = os.getloadavg()[0]
                for n in range(args.runs):
                    bench.round(n)
                load_end = os.getloadavg()[0]
            finally:
                browser.close()
    return 0 if report(bench, args, (load_start, load_end)) else 1


if __name__ == "__main__":
    sys.exit(main())
