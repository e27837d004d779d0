"""One step of the send loop, ``Ledger.hand_over``, on a real ledger: this tree against a base.

    .venv/bin/python bench/bench_step.py [--base 66da5c4] [--rows 10000] [--rounds 3] [--profile]

A fresh ledger (WAL, synchronous=NORMAL, as in production) in a temporary folder; a claimed campaign
of ``--rows`` members, all reserved, on the plan the end-to-end bench uses (自社SMTP); 1,000
addresses on the suppression list, 20 of them the campaign's (withheld at their hand-over). Then
the steps the end-to-end bench's loop takes (4 connections): each step records 1 or 2 results
(``sent``, 250) of the oldest mails in flight and hands the next 1 or 2 ``pending`` mails over, in
the pattern 1/1, 2/2, 1/2, 2/1, until every row is handed over and recorded (about 0.6 steps a
mail, as measured in the real run). The clock is the ledger's own (``now`` not given), as in a
run.

Per step: CPU (``time.process_time``: user + sys of the process) and wall, summed over the run and
divided by the steps. The base commit's package (``git archive`` of its ``bcartnb/`` into a
temporary folder, first on ``PYTHONPATH``) and this tree's are each run in a subprocess, alternated
``--rounds`` times: the old path is reachable only here, the product keeps one. Medians are printed,
with the load average beside them, and the last line is
``step_us_cpu base=B new=N ratio=R`` (new / base).

``--profile`` runs this tree's steps once under cProfile instead and prints the top functions.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from io import BytesIO
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHAPE = ((1, 1), (2, 2), (1, 2), (2, 1))  # (results, hand-overs) of successive steps
K = 4  # connections: at most this many mails in flight


def run_steps(rows: int, profile: bool = False) -> dict[str, float]:
    """Build the ledger and take every step with whatever ``bcartnb`` is importable."""
    from bcartnb.ledger import DeliveryResult, Ledger

    with tempfile.TemporaryDirectory() as tmp, Ledger.open(Path(tmp) / "ledger.sqlite3") as led:
        members = [(i, f"member{i}@example.co.jp") for i in range(1, rows + 1)]
        for i in range(1, 981):
            led.suppress(f"gone{i}@example.net", "unsubscribed")
        for i in range(rows // 20, rows, rows // 20):
            led.suppress(f"member{i}@example.co.jp", "unsubscribed")
        claim = led.claim(
            fingerprint="bench-step",
            plan="自社SMTP",
            params={},
            recipients=members,
            sendable=rows,
        )
        cid = claim.campaign_id
        led.reserve(cid, rows, "自社SMTP")
        todo = [(r.member_id, r.state) for r in led.to_send(cid)]
        todo.reverse()
        flight: list[int] = []
        steps = 0
        withheld = 0
        if profile:
            import cProfile

            prof = cProfile.Profile()
            prof.enable()
        cpu0, wall0 = time.process_time(), time.perf_counter()
        while todo or flight:
            n_res, n_hand = SHAPE[steps % len(SHAPE)]
            done, flight = flight[:n_res], flight[n_res:]
            hand = [todo.pop() for _ in range(min(n_hand, K - len(flight), len(todo)))]
            results = [DeliveryResult(m, "sent", 250, "2.0.0 Ok") for m in done]
            step = led.hand_over(cid, results, hand)
            gone = set(step.withheld)
            withheld += len(gone)
            flight += [m for m, _ in hand if m not in gone]
            steps += 1
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
        if profile:
            import pstats

            prof.disable()
            pstats.Stats(prof).sort_stats("tottime").print_stats(25)
        counts = dict(
            led._conn.execute(
                "SELECT state, count(*) FROM deliveries WHERE campaign_id = ? GROUP BY state",
                (cid,),
            ).fetchall()
        )
    if counts != {"sent": rows - withheld, "withheld": withheld}:
        raise SystemExit(f"the steps left the journal wrong: {counts}")
    return {
        "steps": steps,
        "withheld": withheld,
        "cpu_us": cpu / steps * 1e6,
        "wall_us": wall / steps * 1e6,
    }


def base_tree(rev: str, into: Path) -> Path:
    """The base commit's ``bcartnb`` package, unpacked under ``into``."""
    got = subprocess.run(["git", "-C", str(ROOT), "archive", rev, "bcartnb"], capture_output=True)
    if got.returncode != 0:
        raise SystemExit(f"bench_step: cannot read {rev} from git: {got.stderr.decode().strip()}")
    data = got.stdout
    with tarfile.open(fileobj=BytesIO(data)) as tar:
        tar.extractall(into, filter="data")
    return into


def measure(pythonpath: Path, rows: int) -> dict[str, float]:
    env = dict(os.environ, PYTHONPATH=str(pythonpath))
    env.pop("BCARTNB_NOW", None)
    out = subprocess.run(
        [sys.executable, __file__, "--inner", "--rows", str(rows)],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return dict(json.loads(out.splitlines()[-1]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", default="66da5c4", help="the commit to compare with")
    ap.add_argument("--rows", type=int, default=10_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--inner", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.inner:
        print(json.dumps(run_steps(args.rows)))
        return
    if args.profile:
        sys.path.insert(0, str(ROOT))
        print(run_steps(args.rows, profile=True))
        return
    figures: dict[str, list[dict[str, float]]] = {"base": [], "new": []}
    with tempfile.TemporaryDirectory() as tmp:
        trees = {"base": base_tree(args.base, Path(tmp)), "new": ROOT}
        for r in range(args.rounds):
            for name, tree in trees.items():
                load = os.getloadavg()[0]
                fig = measure(tree, args.rows)
                figures[name].append(fig)
                print(
                    f"round {r + 1} {name:4}: {fig['steps']:,} steps, {fig['withheld']} withheld, "
                    f"{fig['cpu_us']:.1f} us CPU, {fig['wall_us']:.1f} us wall a step "
                    f"(load {load:.1f})",
                    flush=True,
                )
    med = {
        name: (
            statistics.median(f["cpu_us"] for f in figs),
            statistics.median(f["wall_us"] for f in figs),
        )
        for name, figs in figures.items()
    }
    for name, (cpu, wall) in med.items():
        print(f"{name:4} median: {cpu:.1f} us CPU, {wall:.1f} us wall a step")
    print(
        f"step_us_cpu base={med['base'][0]:.1f} new={med['new'][0]:.1f} "
        f"ratio={med['new'][0] / med['base'][0]:.2f} (load {os.getloadavg()[0]:.1f})"
    )


if __name__ == "__main__":
    main()
