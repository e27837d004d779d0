"""End-to-end delivery: ``bcartnb run --send`` against mailmerge 2.3.0 and a plain smtplib loop.

All three send the same synthetic members the same Japanese newsletter (the demo template
テキストニュースレター, with the same signature) to one counting SMTP server: aiosmtpd in its
own process (so the server does not share the senders' GIL), answering 250 and discarding.
The Maildir sink would measure fsync, not the senders. Each sender is timed by wall clock
from start to exit, start-up included, and the server's count is checked against the
members (+1 for bcartnb's admin copy).

* bcartnb: ``bcartnb run campaign.toml --send --json`` in a subprocess, a fresh ledger,
  plan 自社SMTP (no cap), 4 connections (the default);
* mailmerge 2.3.0 (awdeorio), installed into its own venv under bench/out/, with
  ``--no-dry-run --no-limit --output-format raw`` (stdout to /dev/null); it opens one SMTP
  session per message, which is how it works;
* a plain loop: ``csv.DictReader``, the template compiled once (jinja2), one
  ``EmailMessage`` per member composed inside the timed loop, sent over ONE reused
  ``smtplib.SMTP`` connection.

Peak memory: ``bcartnb run --send`` of the larger list in a fresh child python that runs it
and reports ``RUSAGE_CHILDREN.ru_maxrss`` (the peak RSS of its only child).

bcartnb and mailmerge run alternately ``--pairs`` times (3 by default) and the medians are
compared: the machine is shared, and one noisy minute must not decide the ratio.

Run: .venv/bin/python bench/bench_delivery.py [--members N] [--memory-members N] [--quick]
[--pairs N] [--no-memory]
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import json
import os
import resource
import smtplib
import statistics
import subprocess
import sys
import threading
import time
import tomllib
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from email.utils import formatdate, make_msgid
from pathlib import Path
from typing import Any

import jinja2

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"
VENV = OUT / "venv"
PY = Path(sys.executable)
BCARTNB = PY.parent / "bcartnb"
TEMPLATE = ROOT / "data" / "templates" / "テキストニュースレター.txt"
FROM_NAME = "サンプル商店"
FROM_ADDR = "shop@example.co.jp"
ADMIN = "admin@example.co.jp"
SIGNATURE = (
    "――――――――――――――――――――\n"
    "サンプル商店 株式会社\n"
    "〒100-0001 東京都千代田区千代田1-1\n"
    "TEL 03-0000-0000 / shop@example.co.jp\n"
    "――――――――――――――――――――"
)

# A counting SMTP server: bcartnb's aiosmtpd server thread (Nagle off) with a handler that
# counts recipients and discards the mail. "count" on stdin prints the count and resets it.
SERVER = r"""
import os, sys
from bcartnb.sink import SmtpServerThread

class Count:
    n = 0
    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        session.host_name = hostname
        if sys.argv[1:] == ["--pipelining"]:  # as Postfix, Gmail or SES do
            responses.insert(len(responses) - 1, "250-PIPELINING")
        return responses
    async def handle_DATA(self, server, session, envelope):
        Count.n += len(envelope.rcpt_tos)
        return "250 2.0.0 OK"

with SmtpServerThread(Count(), "127.0.0.1", 0) as server:
    print(server.port, flush=True)
    for line in sys.stdin:
        t = os.times()
        print(Count.n, t.user + t.system, flush=True)
        Count.n = 0
"""

# Peak RSS of one command: this fresh python has no other child.
MEMORY = r"""
import resource, subprocess, sys, time
t = time.perf_counter()
rc = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL).returncode
wall = time.perf_counter() - t
print(rc, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, wall)
"""


class CountingServer:
    def __init__(self, *, pipelining: bool = False) -> None:
        self.proc = subprocess.Popen(
            [str(PY), "-c", SERVER, *(["--pipelining"] if pipelining else [])],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        self.port = int(self.proc.stdout.readline())
        self.cpu = 0.0
        self.take_count()

    def take_count(self) -> tuple[int, float]:
        """(recipients since the last call, the server's CPU seconds since then)."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write("count\n")
        self.proc.stdin.flush()
        n, cpu = self.proc.stdout.readline().split()
        spent, self.cpu = float(cpu) - self.cpu, float(cpu)
        return int(n), spent

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(30)


# --- inputs -----------------------------------------------------------------------------


def make_member_rows(n: int) -> list[dict[str, str]]:
    """The demo generator's B-Cart rows, every address valid and distinct (all sendable)."""
    spec = importlib.util.spec_from_file_location(
        "make_demo_members", ROOT / "data" / "make_demo_members.py"
    )
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    base = mod.make_members(min(n, 10_000))
    rows = []
    for i in range(n):
        row = dict(base[i % len(base)])
        mid = 1001 + i
        row["Bカート会員ID"] = str(mid)
        row["メールアドレス"] = f"member{mid}@{mod.DOMAINS[i % len(mod.DOMAINS)]}"
        rows.append(row)
    return rows


def write_inputs(rows: list[dict[str, str]], folder: Path) -> dict[str, Path]:
    """Members CSV (UTF-8, as B-Cart exports), bcartnb campaign + settings, mailmerge files."""
    folder.mkdir(parents=True, exist_ok=True)
    headers = list(rows[0])
    members = folder / "members.csv"
    with members.open("w", encoding="utf-8", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=headers, lineterminator="\r\n")
        w.writeheader()
        w.writerows(rows)
    # mailmerge fills {{ name }} from a column: it gets the same rows plus 担当者名
    mm_db = folder / "mailmerge_database.csv"
    with mm_db.open("w", encoding="utf-8", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=[*headers, "担当者名"], lineterminator="\r\n")
        w.writeheader()
        for r in rows:
            w.writerow({**r, "担当者名": f"{r['担当者(姓)']} {r['担当者(名)']}"})

    subject, body = template_parts()
    campaign = folder / "campaign.toml"
    campaign.write_text(
        f'members = "{members.name}"\ntemplate = "テキストニュースレター"\n', encoding="utf-8"
    )
    settings = folder / "bcartnb.toml"
    settings.write_text(
        "\n".join(
            [
                'plan = "自社SMTP"',
                f'from = "{FROM_NAME} <{FROM_ADDR}>"',
                f'admin = "{ADMIN}"',
                f"signature = '''\n{SIGNATURE}'''",
                f'templates = "{TEMPLATE.parent}"',
                "",
            ]
        ),
        encoding="utf-8",
    )
    mm_template = folder / "mailmerge_template.txt"
    mm_template.write_text(
        f"TO: {{{{ メールアドレス }}}}\nSUBJECT: {subject}\nFROM: {FROM_NAME} <{FROM_ADDR}>\n\n"
        f"{body.rstrip()}\n\n{SIGNATURE}\n",
        encoding="utf-8",
    )
    return {
        "members": members,
        "campaign": campaign,
        "settings": settings,
        "mm_db": mm_db,
        "mm_template": mm_template,
    }


def template_parts() -> tuple[str, str]:
    """Subject and body of the demo template (TOML front matter between +++ lines)."""
    text = TEMPLATE.read_text(encoding="utf-8")
    _, front, body = text.split("+++\n", 2)
    meta = tomllib.loads(front)
    return str(meta["subject"]), body


def ensure_mailmerge() -> Path:
    exe = VENV / "bin" / "mailmerge"
    if not exe.exists():
        print("installing mailmerge==2.3.0 into", VENV, flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        subprocess.run([str(VENV / "bin" / "pip"), "install", "-q", "mailmerge==2.3.0"], check=True)
    return exe


# --- the three senders ------------------------------------------------------------------


def bcartnb_env(files: dict[str, Path], port: int, db: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BCARTNB_")}
    env.update(
        BCARTNB_CONFIG=str(files["settings"]),
        BCARTNB_DB=str(db),
        BCARTNB_SMTP_HOST="127.0.0.1",
        BCARTNB_SMTP_PORT=str(port),
        BCARTNB_SMTP_SECURITY="none",
    )
    return env


def fresh_db(name: str) -> Path:
    db = OUT / name
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    return db


def run_bcartnb(files: dict[str, Path], port: int) -> tuple[float, dict[str, Any]]:
    env = bcartnb_env(files, port, fresh_db("ledger.sqlite3"))
    cmd = [str(BCARTNB), "run", str(files["campaign"]), "--send", "--json"]
    t = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=OUT)
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        sys.exit(f"bcartnb run failed ({proc.returncode}):\n{proc.stderr}")
    return wall, json.loads(proc.stdout)


def run_mailmerge(exe: Path, files: dict[str, Path], port: int) -> float:
    conf = files["mm_db"].parent / "mailmerge_server.conf"
    conf.write_text(
        f"[smtp_server]\nhost = 127.0.0.1\nport = {port}\nratelimit = 0\n", encoding="utf-8"
    )
    cmd = [
        str(exe),
        "--no-dry-run",
        "--no-limit",
        "--output-format",
        "raw",
        "--template",
        str(files["mm_template"]),
        "--database",
        str(files["mm_db"]),
        "--config",
        str(conf),
    ]
    t = time.perf_counter()
    proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        sys.exit(f"mailmerge failed ({proc.returncode}):\n{proc.stderr}")
    return wall


def run_smtplib(files: dict[str, Path], port: int) -> float:
    """The straightforward loop: one EmailMessage per member, one reused connection."""
    subject, body = template_parts()
    env = jinja2.Environment(autoescape=False, keep_trailing_newline=True)
    subject_t = env.from_string(subject)
    body_t = env.from_string(body.rstrip() + "\n\n" + SIGNATURE + "\n")
    t = time.perf_counter()
    with (
        files["members"].open(encoding="utf-8", newline="") as fh,
        smtplib.SMTP("127.0.0.1", port) as smtp,
    ):
        for row in csv.DictReader(fh):
            ctx = {**row, "担当者名": f"{row['担当者(姓)']} {row['担当者(名)']}"}
            msg = EmailMessage(policy=SMTP_POLICY)
            msg["From"] = f"{FROM_NAME} <{FROM_ADDR}>"
            msg["To"] = row["メールアドレス"]
            msg["Subject"] = subject_t.render(ctx)
            msg["Date"] = formatdate(localtime=True)
            msg["Message-ID"] = make_msgid(domain="example.co.jp")
            msg.set_content(body_t.render(ctx))
            smtp.sendmail(FROM_ADDR, [row["メールアドレス"]], msg.as_bytes())
    return time.perf_counter() - t


def run_ceiling(files: dict[str, Path], port: int) -> tuple[float, float]:
    """Only the wire: bcartnb's SmtpTransport, 4 threads, mails composed before timing."""
    from bcartnb.settings import SmtpSettings
    from bcartnb.transports import SmtpTransport

    subject, body = template_parts()
    env = jinja2.Environment(autoescape=False, keep_trailing_newline=True)
    subject_t = env.from_string(subject)
    body_t = env.from_string(body.rstrip() + "\n\n" + SIGNATURE + "\n")
    mails: list[tuple[str, bytes]] = []
    with files["members"].open(encoding="utf-8", newline="") as fh:
        for row in csv.DictReader(fh):
            ctx = {**row, "担当者名": f"{row['担当者(姓)']} {row['担当者(名)']}"}
            msg = EmailMessage(policy=SMTP_POLICY)
            msg["From"] = f"{FROM_NAME} <{FROM_ADDR}>"
            msg["To"] = row["メールアドレス"]
            msg["Subject"] = subject_t.render(ctx)
            msg.set_content(body_t.render(ctx))
            mails.append((row["メールアドレス"], msg.as_bytes()))
    transport = SmtpTransport(SmtpSettings(host="127.0.0.1", port=port, security="none"))

    def one(part: list[tuple[str, bytes]]) -> None:
        with transport.connect() as conn:
            for to, raw in part:
                assert conn.send(FROM_ADDR, [to], raw).sent

    c, t = own_cpu(), time.perf_counter()
    threads = [threading.Thread(target=one, args=(mails[i::4],)) for i in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    return time.perf_counter() - t, own_cpu() - c


def peak_memory(files: dict[str, Path], port: int) -> tuple[float, float]:
    """(peak RSS in MB, wall seconds) of one ``bcartnb run --send`` in a fresh parent."""
    env = bcartnb_env(files, port, fresh_db("ledger-memory.sqlite3"))
    cmd = [str(PY), "-c", MEMORY, str(BCARTNB), "run", str(files["campaign"]), "--send", "--json"]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=OUT, check=True)
    rc, kb, wall = out.stdout.split()
    if rc != "0":
        sys.exit(f"bcartnb run (memory) failed ({rc})")
    return int(kb) / 1024, float(wall)


def import_time() -> float:
    """Wall time of ``bcartnb --help`` (interpreter + argparse start-up)."""
    t = time.perf_counter()
    subprocess.run([str(BCARTNB), "--help"], capture_output=True, check=True, cwd=OUT)
    return time.perf_counter() - t


# --- main -------------------------------------------------------------------------------


def check(server: CountingServer, expected: int, who: str) -> float:
    """The server got exactly the expected mails; returns its CPU seconds for them."""
    got, cpu = server.take_count()
    if got != expected:
        sys.exit(f"{who}: the server counted {got} recipients, expected {expected}")
    return cpu


def children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def own_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=10_000)
    parser.add_argument("--memory-members", type=int, default=60_000)
    parser.add_argument("--quick", action="store_true", help="2,000 members, memory at 10,000")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory run")
    parser.add_argument(
        "--pairs",
        type=int,
        default=3,
        help="bcartnb and mailmerge run alternately this many times; medians reported",
    )
    args = parser.parse_args()
    n, n_mem = (2_000, 10_000) if args.quick else (args.members, args.memory_members)

    OUT.mkdir(parents=True, exist_ok=True)
    exe = ensure_mailmerge()
    t = time.perf_counter()
    rows = make_member_rows(max(n, 0 if args.no_memory else n_mem))
    files = write_inputs(rows[:n], OUT / f"run-{n}")
    mem_files = None if args.no_memory else write_inputs(rows[:n_mem], OUT / f"run-{n_mem}")
    print(f"inputs: {n:,} members (+{n_mem:,} for memory) in {time.perf_counter() - t:.1f} s")

    # (name, wall s, sender CPU s, server CPU s)
    results: list[tuple[str, float, float, float]] = []
    server = CountingServer()
    try:
        # Alternate the two, so a noisy minute on a shared machine hits both alike.
        pairs: list[tuple[tuple[float, float, float], tuple[float, float, float]]] = []
        for i in range(max(1, args.pairs)):
            c = children_cpu()
            wall, summary = run_bcartnb(files, server.port)
            assert summary["sent"] == n and summary["status"] == "done", summary
            srv = check(server, n + 1, "bcartnb")  # + the admin copy
            ours = (wall, children_cpu() - c, srv)
            c = children_cpu()
            wall = run_mailmerge(exe, files, server.port)
            srv = check(server, n, "mailmerge")
            theirs = (wall, children_cpu() - c, srv)
            pairs.append((ours, theirs))
            print(
                f"pair {i + 1}: bcartnb {n / ours[0]:,.0f} msg/s, mailmerge "
                f"{n / theirs[0]:,.0f} msg/s: {theirs[0] / ours[0]:.2f}x",
                flush=True,
            )
        ours = statistics.median_low(p[0] for p in pairs)
        theirs = statistics.median_low(p[1] for p in pairs)
        pair_ratios = sorted(t[0] / o[0] for o, t in pairs)
        results.append(("bcartnb run --send (4 connections)", *ours))
        results.append(("mailmerge 2.3.0 (a session per mail)", *theirs))

        c = own_cpu()
        wall = run_smtplib(files, server.port)
        srv = check(server, n, "smtplib")
        results.append(("smtplib loop, one reused connection", wall, own_cpu() - c, srv))

        wall, cpu = run_ceiling(files, server.port)
        srv = check(server, n, "ceiling")
        results.append(("wire only: SmtpTransport x4, no compose/journal", wall, cpu, srv))
        for name, wall, _cpu, _srv in results:
            print(f"{name}: {wall:.2f} s, {n / wall:,.0f} msg/s", flush=True)

        # The same run against a server that offers PIPELINING (aiosmtpd does not by
        # itself; real servers do): not part of the target, which is against plain aiosmtpd.
        piped = CountingServer(pipelining=True)
        try:
            c = children_cpu()
            wall, summary = run_bcartnb(files, piped.port)
            assert summary["sent"] == n, summary
            srv = check(piped, n + 1, "bcartnb (PIPELINING)")
            extra = ("bcartnb run --send, server offers PIPELINING", wall, children_cpu() - c, srv)
        finally:
            piped.close()

        startup = import_time()
        mem = None
        if mem_files is not None:
            mem = peak_memory(mem_files, server.port)
            check(server, n_mem + 1, "bcartnb (memory)")
    finally:
        server.close()

    b, m, s, w = (n / wall for _, wall, _, _ in results)
    print()
    print(
        f"| sender, {n:,} members | wall s | msg/s | bcartnb is | sender CPU ms/msg "
        "| server CPU ms/msg |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    ratios = ("–", f"{b / m:.1f}x", f"{b / s:.1f}x", f"{b / w:.2f}x")
    for (name, wall, cpu, srv), ratio in zip(results, ratios, strict=True):
        print(
            f"| {name} | {wall:.2f} | {n / wall:,.0f} | {ratio} | {cpu / n * 1000:.2f} "
            f"| {srv / n * 1000:.2f} |"
        )
    name, wall, cpu, srv = extra
    print(
        f"| {name} | {wall:.2f} | {n / wall:,.0f} | {(n / wall) / m:.1f}x mailmerge "
        f"| {cpu / n * 1000:.2f} | {srv / n * 1000:.2f} |"
    )
    cost = [(cpu + srv) / n * 1000 for _, _, cpu, srv in results]
    print(
        f"\nCPU per message, sender + server: bcartnb {cost[0]:.2f} ms, mailmerge "
        f"{cost[1]:.2f} ms ({cost[1] / cost[0]:.1f}x), smtplib loop {cost[2]:.2f} ms "
        f"({cost[2] / cost[0]:.1f}x)"
    )
    print(f"`bcartnb --help` start-up: {startup * 1000:.0f} ms")
    ok = b / m >= 4
    if mem is not None:
        mb, wall = mem
        print(
            f"peak RSS of bcartnb run --send, {n_mem:,} members: {mb:.0f} MB "
            f"({wall:.1f} s, {n_mem / wall:,.0f} msg/s); target <= 300 MB"
        )
        ok = ok and mb <= 300
    print(
        f"bcartnb / mailmerge over {len(pair_ratios)} alternating pairs: "
        + ", ".join(f"{r:.2f}x" for r in pair_ratios)
        + f" (median walls: {b / m:.2f}x)"
    )
    print(f"target >= 4x mailmerge: {'met' if b / m >= 4 else 'MISSED'} ({b / m:.2f}x)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
