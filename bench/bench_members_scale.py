"""``bcartnb members`` on a big CP932 export against ``pandas.read_csv`` of the same file.

Issue 24's first target: a whole ``bcartnb members FILE --filter 都道府県 --opt-in-only``
process no slower than a process that only runs ``pandas.read_csv(FILE, encoding="cp932",
dtype=str)``, every check kept, and 1M members within 800 MB. Also ``members`` with no
filter (everyone sorted into sendable or not: the case that built a masked row for every
unsendable member). The files are B-Cart exports from data/make_demo_members.py (seed 1),
kept under bench/out/. Each process is timed start to exit, with its own peak RSS; the
three alternate, the order reversed each round, and the medians are compared.

    .venv/bin/python bench/bench_members_scale.py [--sizes 100000,300000,1000000] [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from functools import partial
from pathlib import Path

from scale import PREF_FILTER, PY, alternate, median, member_csv, run_process, sizes, sizes_arg

PANDAS = "import sys, pandas; pandas.read_csv(sys.argv[1], encoding='cp932', dtype=str)"
TARGET_RATIO = 1.0
TARGET_RSS_1M = 800.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sizes_arg(parser, "100000,300000")
    args = parser.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as cwd:  # no bcartnb.toml: no ledger, no suppressions
        for n in sizes(args.sizes):
            path = str(member_csv(n))
            members = [PY, "-m", "bcartnb", "members", path, "--json"]
            filtered = [*members, "--filter", PREF_FILTER, "--opt-in-only"]
            here = Path(cwd)
            got = alternate(
                {
                    "filtered": partial(run_process, filtered, cwd=here),
                    "everyone": partial(run_process, members, cwd=here),
                    "pandas": partial(run_process, [PY, "-c", PANDAS, path]),
                },
                args.runs,
            )
            selected = json.loads(got["filtered"][0].out)["selected"]
            assert 0 < selected < n, selected
            assert json.loads(got["everyone"][0].out)["selected"] == n
            walls = {k: median([r.wall for r in v]) for k, v in got.items()}
            rss = {k: median([r.rss_mb for r in v]) for k, v in got.items()}
            cpu = {k: median([r.cpu for r in v]) for k, v in got.items()}
            rows.append((n, selected, walls, rss, cpu))
            for name, runs in got.items():  # CPU says less about the machine's other load
                each = ", ".join(f"{r.wall:.2f} s (CPU {r.cpu:.2f})" for r in runs)
                print(f"{n:,} {name}: {each}")

    print()
    print(
        "| members | filtered s | everyone s | pandas.read_csv s | filtered / pandas "
        "| everyone / pandas | CPU filtered / pandas | peak RSS MB filtered / everyone / pandas "
        "| µs a member (filtered) |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    ok = True
    for n, selected, w, m, c in rows:
        ratio = w["filtered"] / w["pandas"]
        ok &= ratio <= TARGET_RATIO and (n < 1_000_000 or m["filtered"] <= TARGET_RSS_1M)
        print(
            f"| {n:,} ({selected:,} selected) | {w['filtered']:.2f} | {w['everyone']:.2f} "
            f"| {w['pandas']:.2f} | {ratio:.2f}x | {w['everyone'] / w['pandas']:.2f}x "
            f"| {c['filtered']:.2f} / {c['pandas']:.2f} s = {c['filtered'] / c['pandas']:.2f}x "
            f"| {m['filtered']:,.0f} / {m['everyone']:,.0f} / {m['pandas']:,.0f} "
            f"| {w['filtered'] / n * 1e6:.1f} |"
        )
    print()
    print(
        f"target: filtered <= {TARGET_RATIO}x pandas.read_csv, 1M <= {TARGET_RSS_1M:.0f} MB:",
        "met" if ok else "NOT met",
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
