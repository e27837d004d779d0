"""The pre-send checks on hostile and long lines: time grows with the line, not its square.

Moved here from tests/test_mailcheck.py and tests/test_templates.py (no timed assertion in a
test). For each kind of long line the checks run on a line of n and of 10n characters; the
ratio of the two times is ~10 when linear and ~100 when a pattern backtracks (a quadratic
one once took a minute on 100,000 letters). Also times the hostile HTML of the tests and the
render limits (a render that never ends, stopped by render_timeout; a value larger than a mail,
refused before it is built). Ratios are same-run, so a loaded machine moves both sides.

Run: .venv/bin/python bench/bench_mailcheck.py [--length N]  (exits 1 if a ratio is over 30)
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

from bcartnb.exceptions import TemplateError
from bcartnb.mailcheck import check_parts
from bcartnb.templates import compile_template

KINDS: dict[str, Callable[[int], str]] = {
    "letters": lambda n: "a" * n,
    "dots": lambda n: "a." * (n // 2),
    "at and dots": lambda n: "a@" + "b." * (n // 2) + "@",
    "ats": lambda n: "a@" * (n // 2),
    "digits and hyphens": lambda n: "0-" * (n // 2),
    "a URL": lambda n: "https://" + "a" * n,
}
NEVER = "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"
HUGE = ["{{ 'a' * 10**8 }}", "{{ (10**100000)**100000 }}", "{{ lipsum(10**6) }}"]


def timed(fn: Callable[[], object], runs: int = 3) -> float:
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def checks(line: str) -> Callable[[], object]:
    html = f"<p>{line}</p><a href='mailto:{line}'>{line}</a><a href='http://x.example/'>{line}</a>"
    return lambda: check_parts("ご案内", line, html, sender_name="見本商事")


def refused(source: str, timeout: float) -> Callable[[], object]:
    def run() -> None:
        try:
            compile_template(source, "t", "body", timeout=timeout).render({}, 1)
        except TemplateError:
            return
        raise SystemExit(f"not refused: {source}")

    return run


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--length", type=int, default=20_000)
    n = parser.parse_args().length
    worst = 0.0
    print(f"| line kind | {n:,} chars ms | {10 * n:,} chars ms | ratio (linear ~10) |")
    print("|---|---:|---:|---:|")
    for name, make in KINDS.items():
        small, big = timed(checks(make(n))), timed(checks(make(10 * n)))
        worst = max(worst, big / small)
        print(f"| {name} | {small * 1000:.1f} | {big * 1000:.1f} | {big / small:.1f}x |")
    print()
    never = timed(refused(NEVER, 0.3), runs=1)
    print(f"render that never ends, render_timeout 0.3 s: stopped after {never:.2f} s")
    for source in HUGE:
        print(f"{source}: refused in {timed(refused(source, 60)) * 1000:.1f} ms")
    if worst > 30:
        print(f"a check grew {worst:.0f}x for 10x the line: a pattern backtracks")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
