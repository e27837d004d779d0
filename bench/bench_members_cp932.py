"""``bcartnb members`` on a big CP932 export, whole processes, against ``pandas.read_csv`` alone.

Issue 24's target: a whole ``bcartnb members FILE --filter 都道府県 --opt-in-only`` process no
slower than a process that only runs ``pandas.read_csv(FILE, encoding="cp932", dtype=str)``,
every check kept, and a million members within 800 MB peak RSS (in every run of every
command here, not only the median). Also ``members`` with no filter and with ``--list`` (the
exclusions are built only then). Each process is timed from start to exit; the contenders
alternate, the order reversed each round, and medians are compared. Peak RSS is each child's
own, from ``os.wait4``: this parent imports neither pandas nor bcartnb, so the high-water mark
Linux carries across ``execve`` is this small process's.

The files are B-Cart exports from data/make_demo_members.py (seed 1), written once into
``--dir`` (not the repository: the 1M file is 231 MB). ``--generator`` takes another copy of
the generator (a linear one makes 1M members in half a minute).

    .venv/bin/python bench/bench_members_cp932.py [--sizes 100000,300000,1000000] [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
PREF_FILTER = '{"pref": ["東京都", "大阪府", "愛知県"]}'
PANDAS = "import sys, pandas; pandas.read_csv(sys.argv[1], encoding='cp932', dtype=str)"
TARGET_RATIO = 1.0
TARGET_RSS_1M = 800.0


@dataclass(frozen=True)
class Run:
    wall: float
    cpu: float
    rss_mb: float
    out: str


def run(cmd: list[str], cwd: Path) -> Run:
    """One whole process: wall clock start to exit, its CPU and its own peak RSS (wait4)."""
    out_path, err_path = cwd / "out.txt", cwd / "err.txt"
    with out_path.open("wb") as out, err_path.open("wb") as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=cwd, stdout=out, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        tail = err_path.read_text(errors="replace")[-2000:]
        raise SystemExit(f"{' '.join(cmd)} exited {proc.returncode}:\n{tail}")
    return Run(
        wall=wall,
        cpu=usage.ru_utime + usage.ru_stime,
        rss_mb=usage.ru_maxrss / 1024,
        out=out_path.read_text(errors="replace"),
    )


def _medians(runs: list[Run]) -> dict[str, float]:
    return {f: statistics.median(getattr(r, f) for r in runs) for f in ("wall", "cpu", "rss_mb")}


def member_csv(rows: int, folder: Path, generator: Path) -> Path:
    path = folder / f"members-{rows}-1-cp932.csv"
    if not path.exists():
        t0 = time.perf_counter()
        tmp = path.with_suffix(".tmp")
        cmd = [PY, str(generator), "--rows", str(rows), "--seed", "1", "--out", str(tmp)]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        tmp.replace(path)
        print(f"generated {rows:,} members in {time.perf_counter() - t0:.1f} s: {path}")
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100000,300000,1000000")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--dir", type=Path, default=Path("/tmp/bcartnb-bench-members"))
    parser.add_argument("--generator", type=Path, default=ROOT / "data" / "make_demo_members.py")
    args = parser.parse_args(argv)
    args.dir.mkdir(parents=True, exist_ok=True)
    cwd = args.dir / "cwd"  # no bcartnb.toml here: no ledger, no suppressions
    cwd.mkdir(exist_ok=True)
    print(f"load average before: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    rows = []
    peaks: dict[int, float] = {}
    for n in (int(s.replace("_", "")) for s in args.sizes.split(",") if s.strip()):
        path = str(member_csv(n, args.dir, args.generator))
        members = [PY, "-m", "bcartnb", "members", path, "--json"]
        contenders = {
            "filtered": [*members, "--filter", PREF_FILTER, "--opt-in-only"],
            "pandas": [PY, "-c", PANDAS, path],
            "everyone": members,
            "list": [*members, "--filter", PREF_FILTER, "--opt-in-only", "--list"],
        }
        got: dict[str, list[Run]] = {name: [] for name in contenders}
        names = list(contenders)
        for i in range(max(3, args.runs)):
            for name in names if i % 2 == 0 else reversed(names):
                got[name].append(run(contenders[name], cwd))
        summary = json.loads(got["filtered"][0].out)
        assert 0 < summary["selected"] < n, summary
        assert json.loads(got["everyone"][0].out)["selected"] == n
        listed = json.loads(got["list"][0].out)
        assert len(listed["excluded"]) == listed["unsendable"] == summary["unsendable"]
        med = {name: _medians(runs) for name, runs in got.items()}
        rows.append((n, summary["selected"], med))
        # the memory target holds for every run of every bcartnb command, not their median
        peaks[n] = max(r.rss_mb for name, runs in got.items() if name != "pandas" for r in runs)
        for name, runs in got.items():
            each = ", ".join(f"{r.wall:.2f} s (CPU {r.cpu:.2f}, {r.rss_mb:.0f} MB)" for r in runs)
            print(f"{n:,} {name}: {each}")
    print(f"load average after: {os.getloadavg()[0]:.1f}")
    print()
    print(
        "| members | filtered s | pandas.read_csv s | filtered / pandas | CPU filtered / pandas "
        "| everyone s | --list s | peak RSS MB filtered / everyone / --list / pandas |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    ok = True
    for n, selected, m in rows:
        f, p = m["filtered"], m["pandas"]
        ratio = f["wall"] / p["wall"]
        ok &= ratio <= TARGET_RATIO and (n < 1_000_000 or peaks[n] <= TARGET_RSS_1M)
        print(
            f"| {n:,} ({selected:,} selected) | {f['wall']:.2f} | {p['wall']:.2f} | {ratio:.2f}x "
            f"| {f['cpu']:.2f} / {p['cpu']:.2f} = {f['cpu'] / p['cpu']:.2f}x "
            f"| {m['everyone']['wall']:.2f} | {m['list']['wall']:.2f} "
            f"| {f['rss_mb']:,.0f} / {m['everyone']['rss_mb']:,.0f} / {m['list']['rss_mb']:,.0f} "
            f"/ {p['rss_mb']:,.0f} |"
        )
    print()
    for n, peak in peaks.items():
        print(f"{n:,}: the highest peak of any bcartnb run {peak:,.0f} MB")
    print(
        f"target: filtered <= {TARGET_RATIO}x pandas.read_csv, 1M <= {TARGET_RSS_1M:.0f} MB "
        "in every run:",
        "met" if ok else "NOT met",
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
