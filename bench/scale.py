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

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"
GENERATOR = ROOT / "data" / "make_demo_members.py"
PY = sys.executable
TIME = "/usr/bin/time"  # GNU time (Debian: apt-get install time)
#: The members benches' filter: a 都道府県 list (the contract's filter; --opt-in-only beside it).
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
    err: str = ""


def run_process(
    cmd: Sequence[str], *, env: Mapping[str, str] | None = None, cwd: Path | None = None
) -> Run:
    """One whole process: wall clock from start to exit, its CPU and its own peak RSS.

    Through GNU time: Linux carries a process's RSS high-water mark across ``execve``, so
    a child forked from this (big) bench process would report the bench's memory as its own.
    """
    full_env = {**os.environ, **(env or {})}
    with tempfile.TemporaryDirectory() as tmp:
        usage, out, err = (Path(tmp) / name for name in ("usage", "out", "err"))
        timed_cmd = [TIME, "-f", "%M %U %S", "-o", str(usage), *cmd]
        with out.open("wb") as fo, err.open("wb") as fe:
            t0 = time.perf_counter()
            code = subprocess.run(timed_cmd, env=full_env, cwd=cwd, stdout=fo, stderr=fe).returncode
            wall = time.perf_counter() - t0
        if code != 0:
            tail = err.read_text(errors="replace")[-2000:]
            raise SystemExit(f"{' '.join(cmd)} exited {code}:\n{tail}")
        rss_kb, user, system = usage.read_text().split()[-3:]
        return Run(
            wall=wall,
            cpu=float(user) + float(system),
            rss_mb=int(rss_kb) / 1024,
            out=out.read_text(errors="replace"),
            err=err.read_text(errors="replace"),
        )


def alternate(contenders: Mapping[str, Callable[[], Run]], runs: int) -> dict[str, list[Run]]:
    """Each contender ``runs`` times, in turn, the order reversed every round."""
    got: dict[str, list[Run]] = {name: [] for name in contenders}
    names = list(contenders)
    for i in range(max(3, runs)):
        for name in names if i % 2 == 0 else reversed(names):
            got[name].append(contenders[name]())
    return got


def median(values: Sequence[float]) -> float:
    return statistics.median(values)
