"""Interleavings of `run --send`, `resume`, SIGKILL and outages, as real processes.

A hypothesis property test: each example is a short program (2-5 steps) played against one
fresh real SMTP server (``TestServer``) and one fresh ledger, with up to TWO ``bcartnb``
processes alive at once. A step is one of:

* ``("run",)``: ``run c.toml --send`` to its end;
* ``("run_kill", k)`` / ``("resume_kill", k)``: the server holds the mails after ``k`` more
  accepted ones; once it holds one, SIGKILL the process, then let the held mails go;
* ``("pair", k, second, kill)``: process A ``run --send`` with the hold at ``k`` and,
  started at the same moment, process B ``run --send`` (or ``resume ID``) of the same
  campaign; once a mail is held and one of them has ended, SIGKILL the other (``kill``)
  or let the held mails go and let it finish;
* ``("race",)``: A and B ``run --send`` started together, no faults;
* ``("resume",)`` / ``("resend",)``: ``resume ID`` / ``resume ID --resend-uncertain``;
* ``("down", step)``: the server is down (connections refused) around ``run``, ``resume``
  or ``resend``;
* ``("down_held", k)``: the server goes down while it holds a running ``run``'s mails.

Every example ends with ``resume ID --resend-uncertain`` against the server up and fault
free. Invariants (DESIGN.md, "Campaign lifecycle"):

1. after every step, no member got the campaign twice, except through
   ``--resend-uncertain``, and then at most as many duplicates as mails were uncertain
   before those steps (the in-flight window: one mail per connection per lost run);
2. after every step, SIGKILLs (``run_kill``, ``resume_kill``, a killed ``pair``) and outages
   included, at most one more uncertain mail per connection (one process holds the
   campaign at a time, so a step loses at most one process's window);
3. after every step, each mail the server has is ``sent``, ``sending`` or ``uncertain`` in
   the ledger: never ``pending`` or ``deferred``, which a later run would send again;
4. at the end: every member got the mail, the campaign is ``done``, it is the only
   campaign (one fingerprint, one row), the admin got exactly one copy, the quota counted
   each member once plus each deliberate resend, and every ``run``/``resume`` exited with
   0, 2, 4, 5, 130 or was the one SIGKILLed (-9).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from smtp_servers import Faults, TestServer

pytestmark = pytest.mark.slow

MEMBERS = 15
CONNECTIONS = 4  # the [delivery] connections default: the in-flight window
# Read at import (the autouse fixture clears BCARTNB_*): BCARTNB_INTERLEAVINGS=200 for a
# long hunt; the default keeps the suite's run to a few minutes (about 10 s an example).
EXAMPLES = int(os.environ.get("BCARTNB_INTERLEAVINGS", "12"))
ADMIN = "admin@example.co.jp"
ALLOWED_EXITS = {0, 2, 4, 5, 130, -signal.SIGKILL}
PROCESS_TIMEOUT = 60.0
Step = tuple[Any, ...]


# --- the program --------------------------------------------------------------------------

# k = MEMBERS holds the admin copy of a first run: a SIGKILL while it is in flight
_k = st.integers(min_value=0, max_value=MEMBERS)
_starts = st.one_of(  # a first step that leaves the campaign unfinished, most of the time
    st.tuples(st.just("run_kill"), _k),
    st.tuples(st.just("pair"), _k, st.just("run"), st.booleans()),
    st.just(("race",)),
    st.just(("down", "run")),
)
_steps = st.one_of(
    _starts,
    st.just(("run",)),
    st.tuples(st.just("resume_kill"), _k),
    st.tuples(st.just("pair"), _k, st.sampled_from(["run", "resume"]), st.booleans()),
    st.just(("resume",)),
    st.just(("resend",)),
    st.tuples(st.just("down"), st.sampled_from(["run", "resume", "resend"])),
    st.tuples(st.just("down_held"), _k),
)
programs = st.builds(
    lambda first, rest: [first, *rest], _starts, st.lists(_steps, min_size=1, max_size=5)
)


# --- one example's world: a campaign folder, a ledger, a server ---------------------------


def _write_campaign(folder: Path) -> Path:
    rows = "".join(
        f"{1000 + i},テスト商事{i},山田,太郎,user{i}@example.co.jp,東京都,受け取る\n"
        for i in range(MEMBERS)
    )
    (folder / "members.csv").write_text(
        "会員ID,会社名,担当者(姓),担当者(名),メールアドレス,都道府県,メール案内\n" + rows,
        encoding="utf-8",
    )
    (folder / "bcartnb.toml").write_text(
        'plan = "プラン10"\nfrom = "見本商事 <shop@example.co.jp>"\n'
        f'admin = "{ADMIN}"\nsignature = "見本商事株式会社 東京都千代田区1-1"\n'
        'db = "ledger.sqlite3"\n\n[smtp]\ntimeout = 10\n\n[delivery]\nbackoff = 0.1\n',
        encoding="utf-8",
    )
    campaign = folder / "c.toml"
    campaign.write_text(
        'members = "members.csv"\nsubject = "{{ 会社名 }} 様へのご案内"\n'
        'body = "{{ 会社名 }} {{ 担当者名 }} 様\\n本文です。\\n"\n',
        encoding="utf-8",
    )
    return campaign


class World:
    """Plays one program; keeps what the invariants need."""

    def __init__(self, folder: Path, server: TestServer) -> None:
        self.folder = folder
        self.server = server
        self.campaign = _write_campaign(folder)
        env = {k: v for k, v in os.environ.items() if not k.startswith("BCARTNB_")}
        env.update(server.env())
        env["BCARTNB_CONFIG"] = str(folder / "bcartnb.toml")
        self.env = env
        self.cid: str | None = None
        self.exits: list[tuple[str, int]] = []  # (command, exit code) of every run/resume
        self.dupe_budget = 0  # mails uncertain before each --resend-uncertain
        self.resent = 0  # uncertain mails a --resend-uncertain handed over (counted again)
        self.log: list[str] = []
        self.t0 = time.monotonic()

    # --- processes ---------------------------------------------------------------------
    def _argv(self, cmd: str) -> list[str]:
        base = [sys.executable, "-m", "bcartnb"]
        if cmd == "run":
            return [*base, "run", str(self.campaign), "--send", "--json"]
        assert self.cid is not None
        if cmd == "resume":
            return [*base, "resume", self.cid, "--json"]
        assert cmd == "resend"
        return [*base, "resume", self.cid, "--resend-uncertain", "--json"]

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "bcartnb", *args],
            capture_output=True,
            text=True,
            env=self.env,
            cwd=self.folder,
            timeout=PROCESS_TIMEOUT,
        )

    def spawn(self, cmd: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            self._argv(cmd),
            env=self.env,
            cwd=self.folder,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def finish(self, cmd: str, proc: subprocess.Popen[str], *, kill: bool = False) -> int:
        """SIGKILL (if asked and still alive) or wait; reap; record the exit code."""
        if kill and proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        try:
            _, err = proc.communicate(timeout=PROCESS_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            raise AssertionError(f"{cmd} did not end within {PROCESS_TIMEOUT} s") from None
        code = proc.returncode
        self.exits.append((cmd, code))
        at = time.monotonic() - self.t0
        self.log.append(f"  {cmd}: exit {code} at {at:.1f}s {err.strip()[-300:]}")
        return code

    def command(self, cmd: str) -> int:
        return self.finish(cmd, self.spawn(cmd))

    # --- the ledger ------------------------------------------------------------------
    def campaigns(self) -> list[dict[str, Any]]:
        """``bcartnb campaigns --json``: what a user (or a scheduler) sees."""
        done = self.cli("campaigns", "--json")
        assert done.returncode == 0, done.stderr
        rows: list[dict[str, Any]] = json.loads(done.stdout)
        return rows

    def _query(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        """Read the ledger file between steps (no process of ours is running then).

        A subprocess per look would double the test's time; reading the SQLite file
        changes nothing (unlike ``campaigns``, which reclaims a dead run's campaign).
        """
        db = self.folder / "ledger.sqlite3"
        if not db.exists():
            return []
        with contextlib.closing(sqlite3.connect(db, timeout=30)) as con:
            return con.execute(sql, args).fetchall()

    def find_cid(self) -> str | None:
        if self.cid is None:
            rows = self._query("SELECT campaign_id FROM campaigns ORDER BY created_at")
            if rows:
                self.cid = str(rows[0][0])
        return self.cid

    def ledger_states(self) -> dict[str, str]:
        """Each member address's state in the campaign's journal."""
        rows = self._query(
            "SELECT lower(address), state FROM deliveries WHERE campaign_id = ?", self.cid
        )
        return {str(a): str(s) for a, s in rows}

    def uncertain(self) -> int:
        """The campaign's uncertain mails, counting those a killed run left ``sending``."""
        rows = self._query(
            "SELECT count(*) FROM deliveries WHERE campaign_id = ? "
            "AND state IN ('uncertain', 'sending')",
            self.cid,
        )
        return int(rows[0][0]) if rows else 0

    # --- the server's hold -------------------------------------------------------------
    def hold(self, k: int) -> int:
        """Hold the mails after ``k`` more accepted ones; returns the held count so far."""
        handler = self.server.handler
        with handler.lock:
            accepted, held = handler.accepted, handler.held
        self.server.set_faults(Faults(hold_after=accepted + k))
        return held

    def unhold(self) -> None:
        self.server.set_faults(Faults())  # answers the held mails (to dead sockets, if killed)
        time.sleep(0.05)  # the held handlers poll every 10 ms: let them count as accepted

    def wait_held(self, held0: int, procs: Sequence[subprocess.Popen[str]]) -> bool:
        """Until the server holds a new mail (True) or every process has ended (False)."""
        deadline = time.monotonic() + PROCESS_TIMEOUT
        while time.monotonic() < deadline:
            if self.server.wait_held(held0 + 1, timeout=0.02):
                time.sleep(0.3)  # the other connections reach their held mail too
                return True
            if all(p.poll() is not None for p in procs):
                return False
        raise AssertionError("no mail was held and the processes did not end")

    # --- the steps ---------------------------------------------------------------------
    def play(self, step: Step) -> None:
        kind = step[0]
        self.log.append(f"step {step} at {time.monotonic() - self.t0:.1f}s")
        if kind == "run":
            self.command("run")
        elif kind in ("run_kill", "resume_kill"):
            cmd = "resume" if kind == "resume_kill" and self.find_cid() else "run"
            held0 = self.hold(step[1])
            proc = self.spawn(cmd)
            try:
                self.wait_held(held0, [proc])
            finally:
                self.finish(cmd, proc, kill=True)
                self.unhold()
        elif kind == "pair":
            _, k, second, kill = step
            second = "resume" if second == "resume" and self.find_cid() else "run"
            held0 = self.hold(k)
            pair = [("run", self.spawn("run")), (second, self.spawn(second))]
            try:
                if self.wait_held(held0, [p for _, p in pair]):
                    # the one not holding mail is refused at its claim: let it end first
                    deadline = time.monotonic() + 15
                    while all(p.poll() is None for _, p in pair) and time.monotonic() < deadline:
                        time.sleep(0.02)
                if not kill:
                    self.unhold()
            finally:
                for cmd, proc in pair:
                    self.finish(cmd, proc, kill=kill)
                self.unhold()
        elif kind == "race":
            racers = [self.spawn("run"), self.spawn("run")]
            for proc in racers:
                self.finish("run", proc)
        elif kind in ("resume", "resend"):
            self.resume(kind)
        elif kind == "down":
            self.server.down()
            try:
                if step[1] == "run":
                    self.command("run")
                else:
                    self.resume(step[1])
            finally:
                self.server.up()
        elif kind == "down_held":
            held0 = self.hold(step[1])
            proc = self.spawn("run")
            try:
                if self.wait_held(held0, [proc]):
                    self.server.down()  # the held mails' connections end after their data
            finally:
                try:
                    self.finish("run", proc)
                finally:
                    if not self.server.is_up:
                        self.server.up()
                    self.unhold()
        else:
            raise AssertionError(f"unknown step {step!r}")

    def resume(self, kind: str) -> None:
        if self.find_cid() is None:
            self.log.append("  (no campaign yet: nothing to resume)")
            return
        if kind == "resume":
            self.command("resume")
            return
        before = self.uncertain()
        self.command("resend")
        after = self.uncertain()
        self.log.append(f"  uncertain before {before}, after {after}")
        self.dupe_budget += before
        self.resent += before - after

    # --- what the server got -----------------------------------------------------------
    def member_mails(self) -> dict[str, int]:
        counts = self.server.count_by_recipient()
        return {addr: n for addr, n in counts.items() if addr != ADMIN}

    def duplicates(self) -> int:
        return sum(n - 1 for n in self.member_mails().values())

    def admin_copies(self) -> int:
        return self.server.count_by_recipient()[ADMIN]

    def report(self) -> str:
        return "\n".join(self.log)


def _play(program: list[Step]) -> None:
    server = TestServer().start()
    try:
        with tempfile.TemporaryDirectory(prefix="bcartnb-interleave-") as tmp:
            world = World(Path(tmp), server)
            try:
                _check(world, program)
            except BaseException:
                print(world.report())  # shown with the falsifying example
                raise
    finally:
        server.stop()


def _check(world: World, program: list[Step]) -> None:
    for step in program:
        uncertain_before = world.uncertain() if world.find_cid() else 0
        world.play(step)
        _check_step(world, step, uncertain_before)

    # the end of every example: the server up and fault free, the uncertain resent
    assert world.server.is_up and world.server.faults == Faults()
    cid = world.find_cid()
    assert cid is not None, "no campaign was ever claimed"
    world.resume("resend")
    final_cmd, final_code = world.exits[-1]
    assert (final_cmd, final_code) == ("resend", 0), world.exits[-1]

    rows = world.campaigns()
    assert len(rows) == 1, f"one fingerprint, one campaign; got {rows}"
    assert rows[0]["campaign_id"] == cid
    assert rows[0]["status"] == "done", rows[0]
    assert rows[0]["sent"] == MEMBERS and rows[0]["failed"] == 0, rows[0]

    mails = world.member_mails()
    missing = {f"user{i}@example.co.jp" for i in range(MEMBERS)} - mails.keys()
    assert not missing, f"never mailed: {sorted(missing)}"
    assert world.duplicates() <= world.dupe_budget
    assert world.admin_copies() == 1, f"{world.admin_copies()} admin copies"

    bad = [(cmd, code) for cmd, code in world.exits if code not in ALLOWED_EXITS]
    assert not bad, f"exit codes outside {sorted(ALLOWED_EXITS)}: {bad}"

    quota = world.cli("quota", "--json")
    assert quota.returncode == 0, quota.stderr
    used = json.loads(quota.stdout)["used"]
    assert used == MEMBERS + world.resent, (
        f"quota used {used}, expected {MEMBERS} members + {world.resent} resent uncertain"
    )


def _check_step(world: World, step: Step, uncertain_before: int) -> None:
    """Invariants 1-3, after every step."""
    dupes = world.duplicates()
    assert dupes <= world.dupe_budget, (
        f"after {step}: {dupes} members mailed twice, "
        f"but only {world.dupe_budget} mails were resent as uncertain on purpose"
    )
    if world.find_cid() is None:
        assert not world.member_mails(), f"after {step}: mail went out with no campaign"
        return
    grew = world.uncertain() - uncertain_before
    assert grew <= CONNECTIONS, (
        f"after {step}: {grew} more uncertain mails, more than the in-flight "
        f"window of {CONNECTIONS} connections"
    )
    states = world.ledger_states()
    again = {a: states.get(a) for a in world.member_mails() if states.get(a) not in _HANDED}
    assert not again, f"after {step}: mailed, yet the ledger would send again: {again}"


#: the states of a mail the server may have: it went out, or may have
_HANDED = ("sent", "sending", "uncertain")


# Each example starts a dozen real processes: on a loaded 2-core machine twelve of them outlast
# the suite's 300 s, a timeout that would say nothing about mailing anyone twice.
@pytest.mark.timeout(1500)
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(program=programs)
@example(program=[("run_kill", 3), ("pair", 2, "resume", True), ("down_held", 5), ("resend",)])
def test_interleavings_never_mail_anyone_twice_without_asking(program: list[Step]) -> None:
    _play(program)


def test_only_uncertain_left_is_not_reported_as_a_failed_admin_copy() -> None:
    """A resume with only uncertain mails left says so; it never tried the admin copy."""
    server = TestServer().start()
    try:
        with tempfile.TemporaryDirectory(prefix="bcartnb-interleave-") as tmp:
            world = World(Path(tmp), server)
            world.play(("run_kill", MEMBERS - CONNECTIONS))  # the last 4 mails in flight
            cid = world.find_cid()
            assert cid is not None and world.uncertain() == CONNECTIONS
            done = world.cli("resume", cid, "--json")
            out = json.loads(done.stdout)
            assert done.returncode == 4 and out["status"] == "unfinished", done.stderr
            assert (out["pending"], out["deferred"], out["uncertain"]) == (0, 0, CONNECTIONS)
            assert out["admin_copy"] is None  # not attempted: it waits until nothing is left
            # the reason is the uncertain mails, not an admin copy (found here, fixed in cc7184d)
            assert "uncertain" in (out["stopped"] or ""), out["stopped"]
            assert "admin copy" not in (out["stopped"] or ""), out["stopped"]
    finally:
        server.stop()
