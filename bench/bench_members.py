"""Members speed: filter + audience on 1,000,000 members, and reading 100,000 from CP932.

Targets (issue 2): filter + audience (address checks included) for 1M members in <= 1 s and
>= 20x faster than a plain-Python row loop doing the same work; reading and validating a
100,000-member CP932 file in <= 3 s.

Two row loops, both over ``DataFrame.itertuples`` and both checked to give exactly the
vectorised result:

* **plain loop** (the baseline of the target): per member the filter tests, trim, the
  B-Cart local-part regex, ``email_validator.validate_email`` on the address (no DNS),
  opt-in, and a set for duplicates. Its cost per row is constant, so it runs on a sample
  (``--sample``, 50,000) and is extrapolated per row to 1M.
* **tuned loop**: the same algorithm as the vectorised code, one row at a time: the fast
  regex and email-validator once per distinct domain (a dict). Its cost is not linear in
  rows (the domain cache warms up), so it runs on all 1M rows, never extrapolated. It
  shows what vectorising alone buys.

The read baseline is ``csv.DictReader`` with per-row conversion (int, メール案内,
``strptime``) and the plain address check, on the whole 100,000-member file.

    .venv/bin/python bench/bench_members.py [--members 1000000] [--sample 50000]
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import importlib.util
import platform
import re
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from email_validator import EmailNotValidError, validate_email

from bcartnb.audience import build_audience
from bcartnb.filters import apply_filter
from bcartnb.members import (
    HEADER_ALIASES,
    MM_FLAG_VALUES,
    addresses,
    check_addresses,
    is_valid_domain,
    read_members,
)

ROOT = Path(__file__).resolve().parent.parent
PREFS = ["東京都", "大阪府", "愛知県", "福岡県", "北海道", "宮城県", "広島県", "京都府"]
TRADES = ["商事", "産業", "物産", "食品", "工業"]
BAD = [
    "",
    "\u3000",
    "no-at.example.jp",
    "a..b@example.jp",
    "ｆｕｌｌ@example.jp",
    "x y@example.com",
    "nodot@example",
    "bad@-example.jp",
    "x@ab--cd.example.jp",
    "x@host.example.test",
]
FILTER: dict[str, Any] = {
    "pref": ["東京都", "大阪府", "愛知県", "福岡県"],
    "price_group_id": {"min": 2, "max": 4},
    "created_at": {"from": "2024-01-01", "to": "2025-12-31"},
    "status": "有効",
}


def synthetic_members(n: int, seed: int = 7) -> pd.DataFrame:
    """A typed member frame as read_members returns it: about n/5 distinct company domains
    (B2B: a few contacts per company), 3% bad addresses of every kind, 2% shared addresses
    in another case, 80% opted in."""
    rng = np.random.default_rng(seed)
    suffix = np.array(["example.co.jp", "example.com", "example.jp", "example.ne.jp"])
    company = rng.integers(0, max(1, n // 5), n)
    domains = [f"c{c}.{suffix[c % 4]}" for c in company.tolist()]
    emails = [f"user{i}@{d}" for i, d in enumerate(domains)]
    for pos in rng.choice(n, n * 3 // 100, replace=False).tolist():
        emails[pos] = BAD[pos % len(BAD)]
    for pos in rng.choice(n, n * 2 // 100, replace=False).tolist():
        emails[pos] = emails[pos // 2].upper()
    created = pd.to_datetime(rng.integers(1_672_531_200, 1_793_000_000, n), unit="s").tz_localize(
        "Asia/Tokyo"
    )
    return pd.DataFrame(
        {
            "id": np.arange(1, n + 1, dtype=np.int64),
            "comp_name": pd.array(
                [f"株式会社サンプル{c}{TRADES[c % 5]}" for c in company.tolist()], dtype="str"
            ),
            "email": pd.array(emails, dtype="str"),
            "pref": pd.array(np.array(PREFS)[rng.integers(0, len(PREFS), n)], dtype="str"),
            "price_group_id": pd.array(rng.integers(1, 6, n), dtype="Int64"),
            "mm_flag": rng.random(n) < 0.8,
            "status": pd.array(np.where(rng.random(n) < 0.9, "有効", "停止"), dtype="str"),
            "created_at": created,
        },
        index=pd.RangeIndex(2, n + 2, name="row"),
    )


# --- the row loops ------------------------------------------------------------------------

_SPACES = " \t\r\n\v\f\u3000"
_FAST = re.compile(addresses._FAST_ADDRESS)
_SPECIAL = re.compile(addresses._special_tail_re(), re.IGNORECASE)
_SHAPE = re.compile(addresses._SHAPE)


def plain_reason(address: Any) -> str | None:
    """One address the straightforward way: trim, B-Cart's rule, email-validator."""
    text = "" if address is None or address != address else str(address).strip(_SPACES)
    if not text:
        return "empty_address"
    if len(text) > 254 or text.find("@") > 64 or not _SHAPE.fullmatch(text):
        return "invalid_address"
    try:
        validate_email(
            text, check_deliverability=False, allow_smtputf8=False, allow_quoted_local=False
        )
    except EmailNotValidError:
        return "invalid_address"
    return None


def tuned_reason(address: Any, cache: dict[str, bool]) -> str | None:
    """The vectorised algorithm for one address: fast regex, else email-validator per domain."""
    text = "" if address is None or address != address else str(address).strip(_SPACES)
    if not text:
        return "empty_address"
    if len(text) > 254 or text.find("@") > 64:
        return "invalid_address"
    if _FAST.fullmatch(text) and "--" not in text and not _SPECIAL.search(text[-12:]):
        return None
    if not _SHAPE.fullmatch(text):
        return "invalid_address"
    domain = text.split("@", 1)[1].lower()
    if domain not in cache:
        cache[domain] = len(domain) <= 253 and is_valid_domain.__wrapped__(domain)
    return None if cache[domain] else "invalid_address"


def loop_audience(
    df: pd.DataFrame, flt: Mapping[str, Any] | None, tuned: bool
) -> tuple[pd.DataFrame, dict[str, int]]:
    """Filter + audience one member at a time; returns the sendable frame and the reasons."""
    if flt:
        start = pd.Timestamp(flt["created_at"]["from"], tz="Asia/Tokyo")
        end = pd.Timestamp(flt["created_at"]["to"], tz="Asia/Tokyo") + pd.Timedelta(days=1)
        prefs = set(flt["pref"])
        low, high = flt["price_group_id"]["min"], flt["price_group_id"]["max"]
        status = flt["status"]
    cache: dict[str, bool] = {}
    seen: set[str] = set()
    reasons: dict[str, int] = {}
    keep: list[int] = []
    for row in df.itertuples():
        if flt:
            group = row.price_group_id
            if not (
                row.pref in prefs
                and group is not pd.NA
                and low <= group <= high
                and start <= row.created_at < end
                and row.status == status
            ):
                continue
        reason = tuned_reason(row.email, cache) if tuned else plain_reason(row.email)
        if reason is None and not row.mm_flag:
            reason = "not_opted_in"
        if reason is None:
            key = str(row.email).strip(_SPACES).lower()
            if key in seen:
                reason = "duplicate_address"
            else:
                seen.add(key)
        if reason is None:
            keep.append(row.Index)
        else:
            reasons[reason] = reasons.get(reason, 0) + 1
    return df.loc[keep], reasons


def loop_read(path: Path) -> int:
    """csv.DictReader with per-row conversion and the plain address check."""
    ids: set[int] = set()
    count = 0
    with path.open(encoding="cp932", newline="") as fh:
        for raw in csv.DictReader(fh):
            row = {HEADER_ALIASES.get(k, k): v for k, v in raw.items()}
            member_id = int(row["id"])
            if member_id in ids:
                raise ValueError(member_id)
            ids.add(member_id)
            row["mm_flag"] = MM_FLAG_VALUES[row["mm_flag"].strip().lower()]
            for key in ("price_group_id", "salesman_id"):
                row[key] = int(row[key]) if row[key] else None
            for key in ("created_at", "updated_at"):
                row[key] = dt.datetime.strptime(row[key], "%Y/%m/%d %H:%M:%S")
            plain_reason(row["email"])
            count += 1
    return count


# --- timing --------------------------------------------------------------------------------


def best_of(repeat: int, fn: Callable[[], Any], setup: Callable[[], Any] = lambda: None) -> float:
    times = []
    for _ in range(repeat):
        setup()
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def demo_generator() -> Any:
    spec = importlib.util.spec_from_file_location(
        "make_demo", ROOT / "data" / "make_demo_members.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    t0 = time.perf_counter()
    result = fn()
    return time.perf_counter() - t0, result


def same(vec: Any, loop: tuple[pd.DataFrame, dict[str, int]]) -> None:
    """The loops must do the same work: same sendable members, same reason counts."""
    sendable, reasons = loop
    assert vec.sendable.index.equals(sendable.index), "sendable members differ"
    assert {k: v for k, v in vec.reasons.items() if v} == reasons, (vec.reasons, reasons)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=1_000_000)
    parser.add_argument("--sample", type=int, default=50_000)
    parser.add_argument("--read-members", type=int, default=100_000)
    args = parser.parse_args(argv)
    n, k = args.members, args.sample
    print(f"python {platform.python_version()}, pandas {pd.__version__}, {platform.machine()}")

    df = synthetic_members(n)
    distinct = df["email"].str.rsplit("@", n=1).str[-1].str.lower().nunique()
    print(f"{n:,} members, {distinct:,} distinct domains; plain loop on {k:,}, x{n / k:g}")
    cold = is_valid_domain.cache_clear
    sample = df.iloc[:k]
    table = []
    for name, flt in (("4-key filter", FILTER), ("no filter", None)):
        vec_s = best_of(3, lambda flt=flt: build_audience(df, flt, opt_in_only=True), cold)
        cold()
        audience = build_audience(df, flt, opt_in_only=True)
        calls = is_valid_domain.cache_info().misses
        print(f"{name}: {audience.summary()}, email-validator calls {calls}")
        plain_s, plain = timed(lambda flt=flt: loop_audience(sample, flt, tuned=False))
        same(build_audience(sample, flt, opt_in_only=True), plain)
        plain_s *= n / k
        tuned_s, tuned = timed(lambda flt=flt: loop_audience(df, flt, tuned=True))
        same(audience, tuned)
        table.append((f"filter + audience, {n:,}, {name}, opt-in only", vec_s, plain_s, tuned_s))
    filter_s = best_of(5, lambda: apply_filter(df, FILTER))
    check_s = best_of(3, lambda: check_addresses(df["email"]), cold)

    gen = demo_generator()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "members.csv"
        gen.write_members(gen.make_members(args.read_members, seed=1), path)
        size = path.stat().st_size
        read_s = best_of(3, lambda: check_addresses(read_members(path)["email"]), cold)
        loop_read_s, count = timed(lambda: loop_read(path))
        assert count == args.read_members

    print()
    print("| measure | vectorised s | plain loop s | ratio | tuned loop s | ratio |")
    print("|---|---:|---:|---:|---:|---:|")
    for label, vec_s, plain_s, tuned_s in table:
        print(
            f"| {label} | {vec_s:.3f} | {plain_s:.2f} | {plain_s / vec_s:.0f}x "
            f"| {tuned_s:.2f} | {tuned_s / vec_s:.1f}x |"
        )
    print(f"| apply_filter alone, 4 keys, {n:,} | {filter_s:.3f} | | | | |")
    print(f"| check_addresses alone, {n:,} | {check_s:.3f} | | | | |")
    print(
        f"| read_members + check_addresses, {args.read_members:,} CP932 ({size / 1e6:.1f} MB) "
        f"| {read_s:.3f} | {loop_read_s:.2f} | {loop_read_s / read_s:.0f}x | | |"
    )
    worst = max(vec for _, vec, _, _ in table)
    ratio = min(plain / vec for _, vec, plain, _ in table)
    ok = worst <= 1.0 and ratio >= 20 and read_s <= 3.0
    print()
    print(
        f"targets: 1M <= 1 s ({worst:.3f}), >= 20x the plain loop ({ratio:.0f}x), "
        f"100k read <= 3 s ({read_s:.3f}):",
        "met" if ok else "NOT met",
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
