"""The public server's click redirect (issue 25): ``bcartnb unsubscribe-server`` against a
plain Starlette redirect that records nothing, in the same run.

* **bcartnb**: the real command, ``python -m bcartnb unsubscribe-server``, in its own
  process on a fresh shop (a ledger with one campaign of 3 links and 5,000 members), every
  request a genuine signed token (``/t/c/<token>``), a browser's User-Agent: each click is
  checked, redirected to the recorded URL and recorded (the writer's batches);
* **plain**: a Starlette app with one route ``/t/c/{token}`` answering 302 to a fixed URL,
  under uvicorn with the same HTTP implementation (h11), in its own process.

The load generator is this process: raw asyncio sockets, keep-alive, one request at a time
per connection (no pipelining; what a reverse proxy's upstream pool does), so the client is
cheap next to the server it measures. Two runs per server, alternating:

* **paced**: ``--rate`` requests/s (1,000 by default) for ``--seconds``, each connection
  sending on a fixed schedule; latency is from the *scheduled* time to the last byte of the
  answer, so a server that falls behind pays for the queue (no coordinated omission);
* **flat out**: ``--connections`` connections sending as fast as answers come, for
  ``--seconds``: the throughput.

After the runs the bcartnb server is stopped cleanly (SIGTERM) and the ledger is read: its
counts must add up to every request sent, or the bench says so and fails; so it does when the
target is missed (flat out >= 1,000 requests/s and, paced, p99 <= 20 ms; medians of the rounds).

Run: .venv/bin/python bench/bench_tracking_server.py [--rate 1000] [--seconds 10]
[--connections 32] [--rounds 2]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SECRET = "bench-secret-not-for-production-0123456789"
MEMBERS = 5_000
LINKS = (
    "https://shop.example.co.jp/sale",
    "https://shop.example.co.jp/new",
    "https://shop.example.co.jp/",
)
CAMPAIGN = "20261206-090000-bench01"
TARGET_RPS = 1_000
TARGET_P99 = 20.0
AGENT = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/120 Safari/537.36"

PLAIN_APP = """
import sys, uvicorn
from starlette.applications import Starlette
from starlette.responses import RedirectResponse
from starlette.routing import Route

async def click(request):
    return RedirectResponse("https://shop.example.co.jp/sale", status_code=302)

app = Starlette(routes=[Route("/t/c/{token}", click, methods=["GET", "HEAD"])])
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), http="h11", lifespan="off",
            access_log=False, server_header=False, log_level="warning")
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def make_shop(folder: Path, port: int) -> tuple[dict[str, str], list[str]]:
    """A shop folder whose ledger has the campaign's link table; the tokens of its mails."""
    from bcartnb.ledger import Ledger
    from bcartnb.mailtokens import TrackSigner

    (folder / "bcartnb.toml").write_text(
        'plan = "自社SMTP"\nfrom = "見本商事 <shop@example.co.jp>"\ndb = "ledger.sqlite3"\n'
        'unsubscribe_url = "https://shop.example.co.jp/mail/stop/{{ unsubscribe_token }}"\n'
        f'[tracking]\nurl = "http://127.0.0.1:{port}/t"\n',
        encoding="utf-8",
    )
    with Ledger.open(folder / "ledger.sqlite3") as ledger:
        with sqlite3.connect(folder / "ledger.sqlite3") as conn:
            conn.execute(
                "INSERT INTO campaigns (campaign_id, created_at, user, host, plan, fingerprint, "
                "params, status, updated_at) "
                "VALUES (?, ?, 'bench', 'bench', '自社SMTP', 'x', '{}', 'done', ?)",
                (CAMPAIGN, "2026-12-06T09:00:00.000+09:00", "2026-12-06T09:00:00.000+09:00"),
            )
        ledger.record_links(CAMPAIGN, LINKS)
    signer = TrackSigner(SECRET)
    paths = [
        f"/t/c/{signer.make(CAMPAIGN, 1000 + m, link)}"
        for m in range(MEMBERS)
        for link in range(1, len(LINKS) + 1)
    ]
    env = {k: v for k, v in os.environ.items() if not k.startswith("BCARTNB_")}
    env |= {
        "BCARTNB_CONFIG": str(folder / "bcartnb.toml"),
        "BCARTNB_UNSUBSCRIBE_SECRET": SECRET,
    }
    return env, paths


def wait_listening(port: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise SystemExit("server did not start")


class Conn:
    """One keep-alive HTTP/1.1 connection: a request, then its whole answer."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port: int) -> Conn:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer)

    async def get(self, path: str) -> int:
        self.writer.write(
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: {AGENT}\r\n"
            "Accept: text/html\r\n\r\n".encode("ascii")
        )
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = 0
        for line in head.split(b"\r\n"):
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        if length:
            await self.reader.readexactly(length)
        return status


async def paced(port: int, paths: list[str], rate: float, seconds: float, conns: int) -> dict:
    pool = [await Conn.open(port) for _ in range(conns)]
    total = int(rate * seconds)
    latencies: list[float] = []
    bad = 0
    start = time.perf_counter() + 0.2

    async def worker(k: int) -> None:
        nonlocal bad
        for i in range(k, total, conns):
            due = start + i / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            status = await pool[k].get(paths[i % len(paths)])
            latencies.append(time.perf_counter() - due)
            bad += status != 302

    await asyncio.gather(*(worker(k) for k in range(conns)))
    elapsed = time.perf_counter() - start
    for c in pool:
        c.writer.close()
    return summary(latencies, elapsed, bad)


async def flat_out(port: int, paths: list[str], seconds: float, conns: int, offset: int) -> dict:
    pool = [await Conn.open(port) for _ in range(conns)]
    latencies: list[float] = []
    bad = 0
    end = time.perf_counter() + seconds
    counter = offset

    async def worker(k: int) -> None:
        nonlocal bad, counter
        while time.perf_counter() < end:
            counter += 1
            t0 = time.perf_counter()
            status = await pool[k].get(paths[counter % len(paths)])
            latencies.append(time.perf_counter() - t0)
            bad += status != 302

    start = time.perf_counter()
    await asyncio.gather(*(worker(k) for k in range(conns)))
    elapsed = time.perf_counter() - start
    for c in pool:
        c.writer.close()
    return summary(latencies, elapsed, bad)


def summary(latencies: list[float], elapsed: float, bad: int) -> dict:
    ordered = sorted(latencies)
    return {
        "n": len(ordered),
        "rps": len(ordered) / elapsed,
        "p50": ordered[len(ordered) // 2] * 1000,
        "p99": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000,
        "max": ordered[-1] * 1000,
        "bad": bad,
    }


def recorded(folder: Path) -> tuple[int, int, int]:
    """(all counted requests, people's, machines') in the ledger."""
    with sqlite3.connect(folder / "ledger.sqlite3") as conn:
        row = conn.execute(
            "SELECT coalesce(sum(count), 0), coalesce(sum(CASE WHEN machine = 0 THEN count END), 0)"
            " FROM tracking_events"
        ).fetchone()
    return int(row[0]), int(row[1]), int(row[0]) - int(row[1])


def line(name: str, r: dict) -> str:
    return (
        f"  {name:<8} {r['rps']:8,.0f} req/s  p50 {r['p50']:6.2f} ms  p99 {r['p99']:6.2f} ms  "
        f"max {r['max']:7.1f} ms  n={r['n']:,}  non-302={r['bad']}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rate", type=float, default=1000.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--paced-connections", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-track-") as tmp:
        folder = Path(tmp)
        real_port, plain_port = free_port(), free_port()
        env, paths = make_shop(folder, real_port)
        real = subprocess.Popen(
            [sys.executable, "-m", "bcartnb", "unsubscribe-server", "--port", str(real_port)],
            env=env,
            cwd=folder,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        plain = subprocess.Popen(
            [sys.executable, "-c", PLAIN_APP, str(plain_port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        sent = 0
        results: dict[str, dict[str, list[dict]]] = {
            "plain": {"paced": [], "flat": []},
            "bcartnb": {"paced": [], "flat": []},
        }
        try:
            wait_listening(real_port, real)
            wait_listening(plain_port, plain)
            ports = {"plain": plain_port, "bcartnb": real_port}
            asyncio.run(paced(real_port, paths, 200, 1, 4))  # warm: imports, first batch
            sent += 200
            deadline = time.monotonic() + 60
            while recorded(folder)[0] < 200:  # the writer process has written the warm-up
                if time.monotonic() > deadline:
                    raise SystemExit("the warm-up clicks were not recorded")
                time.sleep(0.1)
            load = os.getloadavg()
            for rnd in range(args.rounds):
                for name in ("plain", "bcartnb"):
                    port = ports[name]
                    r = asyncio.run(
                        paced(port, paths, args.rate, args.seconds, args.paced_connections)
                    )
                    results[name]["paced"].append(r)
                    print(f"round {rnd + 1} paced {args.rate:,.0f}/s", line(name, r), flush=True)
                    f = asyncio.run(
                        flat_out(port, paths, args.seconds, args.connections, offset=rnd * 7919)
                    )
                    results[name]["flat"].append(f)
                    print(f"round {rnd + 1} flat out   ", line(name, f), flush=True)
                    if name == "bcartnb":
                        sent += r["n"] + f["n"]
            load_after = os.getloadavg()
        finally:
            plain.terminate()
            real.send_signal(signal.SIGTERM)
            real.wait(timeout=120)
            plain.wait(timeout=30)
        total, people, machines = recorded(folder)

    def med(name: str, kind: str, key: str) -> float:
        return statistics.median(x[key] for x in results[name][kind])

    print()
    print(f"load average at start {load[0]:.1f}, at end {load_after[0]:.1f} (2 cores)")
    for kind, label in (("paced", f"paced at {args.rate:,.0f} req/s"), ("flat", "flat out")):
        p_rps, b_rps = med("plain", kind, "rps"), med("bcartnb", kind, "rps")
        p99p, p99b = med("plain", kind, "p99"), med("bcartnb", kind, "p99")
        print(
            f"{label}: plain {p_rps:,.0f} req/s p99 {p99p:.2f} ms; bcartnb {b_rps:,.0f} req/s "
            f"p99 {p99b:.2f} ms; bcartnb/plain throughput {b_rps / p_rps:.2f}x, "
            f"p99 {p99b / p99p:.2f}x"
        )
    print(
        f"recorded: {total:,} of {sent:,} requests sent to bcartnb "
        f"({people:,} people, {machines:,} machines); server exit {real.returncode}"
    )
    recorded_all = total == sent and real.returncode == 0
    if not recorded_all:
        print("NOT every request was recorded", file=sys.stderr)
    fast = (
        med("bcartnb", "flat", "rps") >= TARGET_RPS and med("bcartnb", "paced", "p99") <= TARGET_P99
    )
    print(
        f"target (>= {TARGET_RPS:,} req/s, p99 <= {TARGET_P99:.0f} ms at {args.rate:,.0f}/s): "
        + ("met" if fast else "NOT met")
    )
    return 0 if recorded_all and fast else 1


if __name__ == "__main__":
    sys.exit(main())
