"""A B-Cart API snapshot (Parquet) read by bcartnb against ``pyarrow.parquet.read_table``.

Issue 24's target: reading a snapshot within 2x of ``pq.read_table(FILE).to_pandas()`` of
the same file. The snapshots hold the generated members of data/make_demo_members.py (seed
1), written by ``bcartnb.bcart_api.write_snapshot`` as ``bcartnb bcart pull`` writes them
(one string column a header, the pull's metadata), kept under bench/out/. Two comparisons,
each alternated with its baseline, the order reversed each round, medians compared:

* in one process: ``bcartnb.members.read_members(FILE)`` (what every face calls for a
  ``.parquet`` file) against ``pq.read_table(FILE).to_pandas()``;
* whole processes, start to exit with their own peak RSS: ``bcartnb members FILE --json``
  against a process that runs only the Arrow read.

    .venv/bin/python bench/bench_snapshot.py [--sizes 100000,300000,1000000] [--runs 3]
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pyarrow.parquet as pq
from scale import OUT, PY, Run, alternate, median, member_csv, run_process, sizes, sizes_arg

from bcartnb.bcart_api import Pulled, write_snapshot
from bcartnb.members import read_members

ARROW = "import sys, pyarrow.parquet as pq; pq.read_table(sys.argv[1]).to_pandas()"
TARGET_RATIO = 2.0


def snapshot(rows: int) -> Path:
    """The generated members as a snapshot, written once by bcartnb's own writer."""
    path = OUT / f"snapshot-{rows}-1.parquet"
    source = member_csv(rows)
    if not path.exists() or path.stat().st_mtime < source.stat().st_mtime:
        t0 = time.perf_counter()
        with source.open(encoding="cp932", newline="") as fh:
            header, *body = list(csv.reader(fh))
        pulled = Pulled(
            header=header,
            rows=body,
            pulled_at=datetime(2026, 12, 1, 9, 0, tzinfo=ZoneInfo("Asia/Tokyo")),
            api_url="https://api.bcart.jp/api/v1",
        )
        write_snapshot(pulled, path)
        print(f"wrote the snapshot in {time.perf_counter() - t0:.1f} s: {path.name}")
    return path


def arrow_read(path: Path) -> Any:
    return pq.read_table(path).to_pandas()


def in_process(fn: Callable[[], Any]) -> Callable[[], Run]:
    def run() -> Run:
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        return Run(time.perf_counter() - t0, time.process_time() - c0, 0.0, "")

    return run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sizes_arg(parser, "100000,300000")
    args = parser.parse_args(argv)
    table = []
    with tempfile.TemporaryDirectory() as cwd:  # no bcartnb.toml: no ledger, no suppressions
        for n in sizes(args.sizes):
            path = snapshot(n)
            assert len(read_members(path)) == n
            reads = alternate(
                {
                    "read_members": in_process(partial(read_members, path)),
                    "arrow": in_process(partial(arrow_read, path)),
                },
                args.runs,
            )
            cmd = [PY, "-m", "bcartnb", "members", str(path), "--json"]
            procs = alternate(
                {
                    "members": partial(run_process, cmd, cwd=Path(cwd)),
                    "arrow": partial(run_process, [PY, "-c", ARROW, str(path)]),
                },
                args.runs,
            )
            assert json.loads(procs["members"][0].out)["selected"] == n
            for label, got in (("in process", reads), ("process", procs)):
                for name, runs in got.items():
                    each = ", ".join(f"{r.wall:.2f} s (CPU {r.cpu:.2f})" for r in runs)
                    print(f"{n:,} {label} {name}: {each}")
            walls = {f"{k} {w}": median([r.wall for r in v]) for k, w, v in _all(reads, procs)}
            rss = {k: median([r.rss_mb for r in v]) for k, v in procs.items()}
            table.append((n, path.stat().st_size, walls, rss))

    print()
    print(
        "| members (file) | read_members s | pq.read_table().to_pandas() s | ratio "
        "| bcartnb members process s | Arrow-only process s | ratio | peak RSS MB members / Arrow |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    ok = True
    for n, size, w, m in table:
        reader = w["read_members in"] / w["arrow in"]
        process = w["members proc"] / w["arrow proc"]
        ok &= reader <= TARGET_RATIO
        print(
            f"| {n:,} ({size / 1e6:.1f} MB) | {w['read_members in']:.3f} | {w['arrow in']:.3f} "
            f"| {reader:.1f}x | {w['members proc']:.2f} | {w['arrow proc']:.2f} | {process:.1f}x "
            f"| {m['members']:,.0f} / {m['arrow']:,.0f} |"
        )
    print()
    print(f"target: read_members <= {TARGET_RATIO}x Arrow + to_pandas:", "met" if ok else "NOT met")
    return 0 if ok else 1


def _all(
    reads: dict[str, list[Run]], procs: dict[str, list[Run]]
) -> list[tuple[str, str, list[Run]]]:
    return [(k, "in", v) for k, v in reads.items()] + [(k, "proc", v) for k, v in procs.items()]


if __name__ == "__main__":
    sys.exit(main())
