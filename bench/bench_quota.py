"""Quota and journal costs on a real SQLite ledger, empty and with 1,000,000 past deliveries.

    .venv/bin/python bench/bench_quota.py [--deliveries 1000000] [--repeat 200]

What it measures (medians; p95 beside them):

- check + reserve: ``usage()`` then ``reserve()`` for a new campaign, the step every campaign
  takes before sending; the target is <= 20 ms with a million deliveries in the ledger. The
  month total is a SUM over a few per-(month, campaign) counter rows, so it should not grow
  with the journal; the ratio to the empty ledger shows it.
- for comparison, what a COUNT(*) over the journal for this month would cost instead;
- the delivery path: one mail per transaction (mark_sending + mark_results for one member:
  two commits per mail) and batches of 100, as mails per second;
- add_recipients of 60,000 rows (プラン300's monthly cap) in one transaction.

The ledger uses WAL with synchronous=NORMAL, as in production.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from bcartnb.ledger import Ledger
from bcartnb.quota import TOKYO, month_of

PLAN = "plan300"  # 60,000 a month: room for 50,000-mail campaigns
NOW = datetime(2026, 11, 27, 14, 30, tzinfo=TOKYO)


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def check_and_reserve(led: Ledger, repeat: int) -> tuple[float, float]:
    """Median and p95 seconds of usage() + reserve() for a fresh campaign (finish untimed)."""
    times = []
    for i in range(repeat):
        cid = led.create_campaign(
            plan=PLAN, params={}, fingerprint="bench", campaign_id=f"bench-{time.time_ns()}-{i}"
        )

        def step(cid: str = cid) -> None:
            status = led.usage(PLAN, now=NOW)
            assert status.fits(100)
            led.reserve(cid, 100, PLAN, now=NOW)

        times.append(timed(step))
        led.finish(cid, "done", now=NOW)
    times.sort()
    return statistics.median(times), times[int(len(times) * 0.95) - 1]


def months_back(k: int) -> datetime:
    """The 15th of the month ``k`` months before NOW's (k = 0: NOW itself)."""
    if k == 0:
        return NOW
    y, m = divmod(NOW.year * 12 + NOW.month - 1 - k, 12)
    return NOW.replace(year=y, month=m + 1, day=15)


def fill(led: Ledger, total: int, per_campaign: int = 50_000, batch: int = 10_000) -> None:
    """``total`` past deliveries through the real API, one campaign a month, the last one now."""
    campaigns = -(-total // per_campaign)
    for k in range(campaigns):
        n = min(per_campaign, total - k * per_campaign)
        when = months_back(campaigns - 1 - k)
        cid = led.create_campaign(plan=PLAN, params={"past": True}, fingerprint="past", now=when)
        led.add_recipients(cid, ((i, f"member{i}@example.co.jp") for i in range(n)))
        led.reserve(cid, n, PLAN, now=when)
        for lo in range(0, n, batch):
            ids = range(lo, min(lo + batch, n))
            led.mark_sending(cid, ids, now=when)
            led.mark_results(cid, [(i, "sent", 250, "2.0.0 Ok") for i in ids], now=when)
        led.finish(cid, "done", now=when)


def delivery_rate(led: Ledger, mails: int, batch: int) -> float:
    """Mails per second through mark_sending + mark_results, ``batch`` mails per transaction."""
    cid = led.create_campaign(plan=PLAN, params={}, fingerprint="rate", now=NOW)
    led.add_recipients(cid, ((i, f"rate{i}@example.co.jp") for i in range(mails)))
    led.reserve(cid, mails, PLAN, now=NOW)

    def run() -> None:
        for lo in range(0, mails, batch):
            ids = list(range(lo, min(lo + batch, mails)))
            led.mark_sending(cid, ids, now=NOW)
            led.mark_results(cid, [(i, "sent", 250, "ok") for i in ids], now=NOW)

    seconds = timed(run)
    led.finish(cid, "done", now=NOW)
    return mails / seconds


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--deliveries", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=200)
    args = ap.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        empty = Ledger.open(Path(tmp) / "empty.sqlite3")
        big = Ledger.open(Path(tmp) / "big.sqlite3")
        # Warm both files the same way (schema, page cache) before timing.
        check_and_reserve(empty, 5)
        check_and_reserve(big, 5)

        e_med, e_p95 = check_and_reserve(empty, args.repeat)
        build = timed(lambda: fill(big, args.deliveries))
        b_med, b_p95 = check_and_reserve(big, args.repeat)

        month = month_of(NOW)
        conn = big._conn  # the benchmark peeks: what the counter row saves us
        scan = timed(
            lambda: conn.execute(
                "SELECT count(*) FROM deliveries WHERE counted_month = ?", (month,)
            ).fetchone()
        )
        rows = conn.execute("SELECT count(*) FROM deliveries").fetchone()[0]
        used_now = big.usage(PLAN, now=NOW).used

        rate_1 = delivery_rate(empty, 5_000, 1)
        rate_100 = delivery_rate(empty, 50_000, 100)
        add_60k = timed(
            lambda: empty.add_recipients(
                empty.create_campaign(plan=PLAN, params={}, fingerprint="add", now=NOW),
                ((i, f"add{i}@example.co.jp") for i in range(60_000)),
            )
        )
        empty.close()
        big.close()

    ms = 1000.0
    print(
        f"bench_quota: ledger with {rows:,} deliveries, {used_now:,} of them this month "
        f"(built in {build:.1f} s through the API), 2-core machine"
    )
    print()
    print("| operation | empty ledger | with deliveries | ratio |")
    print("|---|---:|---:|---:|")
    print(
        f"| check + reserve, median | {e_med * ms:.3f} ms | {b_med * ms:.3f} ms "
        f"| {b_med / e_med:.2f}x |"
    )
    print(
        f"| check + reserve, p95 | {e_p95 * ms:.3f} ms | {b_p95 * ms:.3f} ms "
        f"| {b_p95 / e_p95:.2f}x |"
    )
    print(
        f"| COUNT(*) of one month instead (not used) | - | {scan * ms:.1f} ms "
        f"| {scan / b_med:.0f}x the counter |"
    )
    print()
    print("| delivery path | figure |")
    print("|---|---:|")
    print(f"| 1 mail a transaction (2 commits a mail) | {rate_1:,.0f} mails/s |")
    print(f"| 100 mails a transaction | {rate_100:,.0f} mails/s ({rate_100 / rate_1:.1f}x) |")
    print(f"| add_recipients, 60,000 rows | {add_60k * ms:.0f} ms |")
    target = 0.020
    verdict = "OK" if b_med <= target else "TOO SLOW"
    print()
    print(f"target: check + reserve <= {target * ms:.0f} ms with deliveries: {verdict}")
    return 0 if b_med <= target else 1


if __name__ == "__main__":
    sys.exit(main())
