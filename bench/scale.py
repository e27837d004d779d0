"""What the issue-24 benches share: generated member files, whole processes timed with their
peak memory, and runs alternated with their baseline so a noisy minute hits both.

Not a bench itself (``make bench`` runs ``bench/bench_*.py``). Only bcartnb's public
functions and its command line are used, so the benches outlive a reshuffled package.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"
GENERATOR = ROOT / "data" / "make_demo_members.py"
PY = sys.executable
#: The filter of the members benches: a 都道府県 list (the contract's filter) and opt-in.
PREF_FILTER = '{"pref": ["東京都", "大阪府", "愛知県"]}'


def generator() -> ModuleType:
    """data/make_demo_members.py as a module (it is a script, not part of the package)."""
    spec = importlib.util.spec_from_file_location("make_demo_members", GENERATOR)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def member_csv(rows: int, encoding: str = "cp932", seed: int = 1) -> Path:
    """A B-Cart export of ``rows`` generated members under bench/out/, made once and kept
    (1M members take half a minute to make) until the generator changes."""
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"members-{rows}-{seed}-{encoding}.csv"
    if not path.exists() or path.stat().st_mtime < GENERATOR.stat().st_mtime:
        gen = generator()
        t0 = time.perf_counter()
        tmp = path.with_suffix(".tmp")
        gen.write_members(gen.make_members(rows, seed), tmp, encoding)
        tmp.replace(path)
        print(f"generated {rows:,} members in {time.perf_counter() - t0:.1f} s: {path.name}")
    return path


def sizes_arg(parser: argparse.ArgumentParser, default: str) -> None:
    parser.add_argument(
        "--sizes",
        default=default,
        help=f"comma-separated member counts (default {default}; the issue asks for "
        "100000,300000,1000000)",
    )
    parser.add_argument("--runs", type=int, default=3, help="alternating runs of each (>= 3)")


def sizes(text: str) -> list[int]:
    return [int(s.replace("_", "")) for s in text.split(",") if s.strip()]


@dataclass(frozen=True)
class Run:
    wall: float  # seconds, start to exit
    cpu: float  # user + sys of the process
    rss_mb: float  # peak resident memory of the process
    out: str


def run_process(
    cmd: Sequence[str], *, env: Mapping[str, str] | None = None, cwd: Path | None = None
) -> Run:
    """One whole process: wall clock from start to exit, and its own peak RSS and CPU
    (``wait4``'s rusage is this child's alone; RUSAGE_CHILDREN would be the largest child
    so far, the baseline's or ours)."""
    full_env = {**os.environ, **(env or {})}
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(list(cmd), env=full_env, cwd=cwd, stdout=out, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        if proc.returncode != 0:
            tail = err.read().decode(errors="replace")[-2000:]
            raise SystemExit(f"{' '.join(cmd)} exited {proc.returncode}:\n{tail}")
        return Run(
            wall=wall,
            cpu=usage.ru_utime + usage.ru_stime,
            rss_mb=usage.ru_maxrss / 1024,  # KiB on Linux
            out=out.read().decode(errors="replace"),
        )


def median_runs(runs: list[Run]) -> Run:
    """The run of median wall time (its memory and output with it)."""
    ordered = sorted(runs, key=lambda r: r.wall)
    return ordered[len(ordered) // 2]


def alternate(contenders: Mapping[str, Callable[[], Run]], runs: int) -> dict[str, list[Run]]:
    """Each contender ``runs`` times, in turn, the order reversed every round."""
    got: dict[str, list[Run]] = {name: [] for name in contenders}
    names = list(contenders)
    for i in range(max(3, runs)):
        for name in names if i % 2 == 0 else reversed(names):
            got[name].append(contenders[name]())
    return got


def timed(fn: Callable[[], Any]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def median(values: Sequence[float]) -> float:
    return statistics.median(values)
