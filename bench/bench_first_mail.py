"""What a ``bcartnb run --send`` does before its first mail goes out, against another tree.

The shared end-to-end bench (``../shared/bench/bench_bcartnb.sh``) times a whole run; here the
part before the first mail is timed on its own, on the same inputs: a counting SMTP server
(bcartnb's aiosmtpd thread, in its own process) notes the monotonic clock at the first
message's data, and the run is timed from its ``exec``. Each round runs this tree and,
with ``--against DIR`` (a copy of another tree's ``bcartnb`` package, e.g. ``git archive
main bcartnb | tar -x -C DIR``), that tree through ``PYTHONPATH``, alternately, each with a
fresh ledger; then ``run --json`` without ``--send`` (the dry run) the same way.

Per run: seconds to the first mail, the whole run's wall, CPU seconds of the run and its
compose helper (``RUSAGE_CHILDREN``), the load average. Medians at the end. Compile both
trees first (``python -m compileall -q bcartnb DIR``): this machine's shells set
``PYTHONDONTWRITEBYTECODE``.

Inputs: the shared bench's (``bcartnb_inputs.py N DIR``, which ``bench_bcartnb.sh N`` writes
to ``/tmp/bench_bcartnb.N/full``: ``members.csv``, ``campaign.toml``) and its settings file.

Run: .venv/bin/python bench/bench_first_mail.py [--inputs /tmp/bench_bcartnb.10000]
[--against DIR] [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PY = Path(sys.executable)
BCARTNB = PY.parent / "bcartnb"

# Counts messages; "first" on stdin prints the monotonic time of the first message since the
# last question (0 if none) and how many came.
SERVER = r"""
import sys, time
from bcartnb.sink import SmtpServerThread

class First:
    at, n = 0.0, 0
    async def handle_DATA(self, server, session, envelope):
        if not First.n:
            First.at = time.monotonic()
        First.n += 1
        return "250 2.0.0 OK"

with SmtpServerThread(First(), "127.0.0.1", 0) as server:
    print(server.port, flush=True)
    for line in sys.stdin:
        print(First.at, First.n, flush=True)
        First.at, First.n = 0.0, 0
"""


def one(
    tree: str | None, inputs: Path, env: dict[str, str], server: subprocess.Popen[str], send: bool
) -> dict[str, float]:
    """One run of ``tree`` (None: this one) with a fresh ledger."""
    db = Path(env["BCARTNB_DB"]).parent
    shutil.rmtree(db, ignore_errors=True)
    db.mkdir(parents=True)
    run_env = dict(env)
    if tree is not None:
        run_env["PYTHONPATH"] = tree
    args = [str(BCARTNB), "run", str(inputs / "full" / "campaign.toml"), "--json"]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.monotonic()
    done = subprocess.run(
        [*args, *(["--send"] if send else [])], env=run_env, capture_output=True, text=True
    )
    wall = time.monotonic() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        sys.exit(f"bench_first_mail: {tree or 'this tree'} exited {done.returncode}: {done.stderr}")
    assert server.stdin is not None and server.stdout is not None
    server.stdin.write("first\n")
    server.stdin.flush()
    at, n = server.stdout.readline().split()
    want = int((inputs / "full" / "sendable").read_text()) + 1 if send else 0  # + admin copy
    if int(n) != want or (send and json.loads(done.stdout)["sent"] != want - 1):
        sys.exit(f"bench_first_mail: the server counted {n} messages, expected {want}")
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    out = {"wall": wall, "cpu": cpu, "load": os.getloadavg()[0]}
    if send:
        out["first"] = float(at) - start
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--inputs", type=Path, default=Path("/tmp/bench_bcartnb.10000"))
    parser.add_argument("--against", help="another tree's bcartnb package folder's parent")
    parser.add_argument("--rounds", type=int, default=5)
    opts = parser.parse_args()
    if not (opts.inputs / "full" / "campaign.toml").exists():
        sys.exit(f"bench_first_mail: no inputs in {opts.inputs}: run bench_bcartnb.sh once")
    trees: list[str | None] = [None] if opts.against is None else [None, opts.against]
    server = subprocess.Popen(
        [str(PY), "-c", SERVER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert server.stdout is not None
    port = server.stdout.readline().strip()
    work = Path(tempfile.mkdtemp(prefix="bench-first-mail-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("BCARTNB_")}
    env.update(
        BCARTNB_CONFIG=str(opts.inputs / "bcartnb.toml"),
        BCARTNB_DB=str(work / "db" / "ledger.db"),
        BCARTNB_SMTP_HOST="127.0.0.1",
        BCARTNB_SMTP_PORT=port,
        BCARTNB_SMTP_SECURITY="none",
        LC_ALL="C.UTF-8",
    )
    env.pop("PYTHONPATH", None)
    names = {None: "this tree", opts.against: opts.against}
    runs: dict[tuple[str | None, bool], list[dict[str, float]]] = {}
    try:
        for send in (True, False):
            for r in range(opts.rounds):
                for tree in trees if r % 2 == 0 else trees[::-1]:
                    got = one(tree, opts.inputs, env, server, send)
                    runs.setdefault((tree, send), []).append(got)
                    print(
                        f"{'send' if send else 'dry '} {names[tree]:>12}: "
                        + "  ".join(f"{k} {v:.3f}" for k, v in got.items()),
                        flush=True,
                    )
    finally:
        assert server.stdin is not None
        server.stdin.close()
        server.wait(30)
        shutil.rmtree(work, ignore_errors=True)
    print("\nmedians (s):")
    for (tree, send), rs in runs.items():
        med = {k: statistics.median(x[k] for x in rs) for k in rs[0]}
        what = "run --send" if send else "run (dry) "
        print(f"  {what} {names[tree]:>12}: " + "  ".join(f"{k} {v:.3f}" for k, v in med.items()))


if __name__ == "__main__":
    main()
