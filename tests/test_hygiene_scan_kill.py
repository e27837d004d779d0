"""A ``bcartnb bounces scan`` process killed (SIGKILL) while it records, then run again, records
each notice once: the scan writes its whole batch in one transaction, so a kill leaves all of
it or none, and the rerun adds exactly what is missing.

A real shop sends a campaign into a Maildir outbox; a Maildir of DSNs answers every mail. The
scan is killed the moment it is seen holding the ledger's write lock (a second connection's
``BEGIN IMMEDIATE`` refused at once), which only its recording takes.
"""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_hygiene_scan_imports import bounced_shop

N = 800
ATTEMPTS = 20  # tries until a kill lands inside the transaction (the first, as a rule)


@pytest.fixture
def shop(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    return bounced_shop(tmp_path, N)


def counts(ledger: Path) -> tuple[int, int]:
    with sqlite3.connect(ledger) as db:
        events = db.execute("SELECT count(*) FROM hygiene_events").fetchone()[0]
        listed = db.execute("SELECT count(*) FROM suppressions").fetchone()[0]
    return int(events), int(listed)


def writing(ledger: Path) -> bool:
    """Whether another connection holds the ledger's write lock right now."""
    db = sqlite3.connect(ledger, timeout=0, isolation_level=None)
    try:
        db.execute("BEGIN IMMEDIATE")
        db.execute("ROLLBACK")
        return False
    except sqlite3.OperationalError as err:
        assert "locked" in str(err)
        return True
    finally:
        db.close()


def scan(path: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    cmd = [sys.executable, "-m", "bcartnb", "bounces", "scan", str(path / "bounces"), "--json"]
    return subprocess.Popen(
        cmd, env=env, cwd=path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def kill_while_recording(path: Path, env: dict[str, str]) -> bool:
    """Run a scan and SIGKILL it once it holds the write lock; False if it finished first."""
    ledger = path / "ledger.sqlite3"
    proc = scan(path, env)
    try:
        while proc.poll() is None:
            if ledger.exists() and writing(ledger):
                proc.send_signal(signal.SIGKILL)
                proc.communicate(timeout=120)
                return True
            time.sleep(0.0005)
        proc.communicate(timeout=120)
        return False
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=120)


def test_a_scan_killed_while_it_records_then_run_again_records_each_notice_once(
    shop: tuple[Path, dict[str, str]],
) -> None:
    path, env = shop
    ledger = path / "ledger.sqlite3"
    clean = path / "clean.sqlite3"
    with sqlite3.connect(ledger) as src, sqlite3.connect(clean) as dst:
        src.backup(dst)  # the sent ledger, to start each attempt from

    rolled_back = False
    for _ in range(ATTEMPTS):  # a kill may land just after the commit: then again
        with sqlite3.connect(clean) as src, sqlite3.connect(ledger) as dst:
            src.backup(dst)
        if kill_while_recording(path, env):
            assert counts(ledger) in {(0, 0), (N, N)}  # all of the batch or none, never part
            if counts(ledger) == (0, 0):
                rolled_back = True  # killed inside its transaction: the case to run again
                break
    assert rolled_back, "no scan was killed inside its transaction"

    done = scan(path, env)
    out, err = done.communicate(timeout=300)
    assert done.returncode == 0, err[-2000:]
    result = json.loads(out)
    assert result["scanned"] == N and result["unmatched"] == 0
    assert result["hard"] + result["repeated"] == N
    assert counts(ledger) == (N, N)

    again = scan(path, env)
    out, err = again.communicate(timeout=300)
    assert again.returncode == 0, err[-2000:]
    assert (json.loads(out)["hard"], json.loads(out)["repeated"]) == (0, N)
    assert counts(ledger) == (N, N)
    with sqlite3.connect(ledger) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
