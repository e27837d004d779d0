"""Reading a B-Cart API snapshot (Parquet) against pyarrow reading the same file.

Target (issue 24): :func:`bcartnb.members.read_snapshot` (what ``read_members`` does for a
``.parquet`` file: every check, every column typed) within 2x of the baseline
``pyarrow.parquet.read_table(path).to_pandas()`` of the same file, which only hands the text
over. Both run in the same process, alternately, medians of ``--runs`` (wall, and the CPU
time of the process: the machine is shared); the peak RSS of each is measured in a child
process of its own, so one does not hide the other.

The files are written into a temporary folder (``/tmp``) as ``bcartnb bcart pull`` writes
them: one text column a header (the API's keys, two カスタム項目 at the end), blanks as
nulls, the snapshot's metadata; the values are the demo members' (Japanese companies and
addresses, blanks, B-Cart's dates), repeated with unique ids and addresses.

    .venv/bin/python bench/bench_snapshot.py [--members 100000 300000 1000000] [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.parquet as pq  # type: ignore[import-untyped]

from bcartnb.members import read_snapshot
from bcartnb.members.columns import canonical
from bcartnb.members.snapshot import METADATA_KEY, SNAPSHOT_FORMAT

ROOT = Path(__file__).resolve().parent.parent


def write_members(path: Path, n: int) -> None:
    """A snapshot of ``n`` members, shaped like ``bcartnb bcart pull``'s."""
    demo = pd.read_csv(
        ROOT / "data" / "demo_members.csv", encoding="cp932", dtype=str, keep_default_na=False
    )
    names = [canonical(h) or h for h in demo.columns]
    take = np.arange(n) % len(demo)
    arrays = []
    for name, column in zip(names, demo.columns, strict=True):
        if name == "id":
            values = pa.array(np.arange(1, n + 1).astype(str))
        elif name == "email":
            values = pa.array([f"member{i}@c{i // 4}.example.co.jp" for i in range(n)])
        else:
            cells = demo[column].to_numpy(dtype=object)[take]
            values = pa.array(cells, type=pa.string())
            values = pa.compute.if_else(pa.compute.equal(values, ""), None, values)
        arrays.append(values)
    info = {"format": SNAPSHOT_FORMAT, "pulled_at": "2026-12-06T09:00:00+09:00", "members": n}
    info["api_url"] = "https://api.bcart.jp/api/v1"
    table = pa.Table.from_arrays(arrays, names=names)
    pq.write_table(table.replace_schema_metadata({METADATA_KEY: json.dumps(info).encode()}), path)


def pyarrow_read(path: Path) -> pd.DataFrame:
    frame: pd.DataFrame = pq.read_table(path).to_pandas()
    return frame


READERS: dict[str, Callable[[Path], pd.DataFrame]] = {
    "pyarrow": pyarrow_read,
    "bcartnb": read_snapshot,
}


def peak_mb(reader: str, path: Path) -> float:
    """The peak RSS of a fresh process that imports what it needs and reads the file once.

    VmHWM, not ``ru_maxrss``: a child's ``ru_maxrss`` starts at its parent's size at the fork
    (this process has read the files), VmHWM starts afresh at the exec."""
    code = (
        "import sys; sys.path.insert(0, sys.argv[3]);"
        "import bench_snapshot as b; from pathlib import Path;"
        "b.READERS[sys.argv[1]](Path(sys.argv[2]));"
        "print(open('/proc/self/status').read().split('VmHWM:')[1].split()[0])"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, reader, str(path), str(Path(__file__).parent)],
        check=True,
        capture_output=True,
        text=True,
    )
    return int(out.stdout.split()[-1]) / 1024


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--members", type=int, nargs="+", default=[100_000, 300_000, 1_000_000])
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    print("| members | pyarrow read_table + to_pandas | bcartnb read_snapshot | ratio |", end="")
    print(" CPU pyarrow / bcartnb | CPU ratio | peak RSS pyarrow | peak RSS bcartnb |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory(dir="/tmp") as tmp:
        for n in args.members:
            path = Path(tmp) / f"members_{n}.parquet"
            write_members(path, n)
            assert len(read_snapshot(path)) == n
            wall: dict[str, list[float]] = {name: [] for name in READERS}
            cpu: dict[str, list[float]] = {name: [] for name in READERS}
            for _ in range(args.runs):
                for name, read in READERS.items():
                    start, used = time.perf_counter(), time.process_time()
                    read(path)
                    cpu[name].append(time.process_time() - used)
                    wall[name].append(time.perf_counter() - start)
            base, ours = (statistics.median(wall[k]) for k in READERS)
            base_cpu, ours_cpu = (statistics.median(cpu[k]) for k in READERS)
            rss = [peak_mb(name, path) for name in READERS]
            print(
                f"| {n:,} | {base:.2f} s | {ours:.2f} s | {ours / base:.2f}x |"
                f" {base_cpu:.2f} / {ours_cpu:.2f} s | {ours_cpu / base_cpu:.2f}x |"
                f" {rss[0]:,.0f} MB | {rss[1]:,.0f} MB |"
            )


if __name__ == "__main__":
    main()
