"""Trying the tool in a checkout leaves the checkout as it was (issue 23, 11).

A marketer clones the repository, runs ``make demo`` and a campaign as the README shows, and
then ``git status``: every file the tools wrote (the demo shop, reports, the ledger, the
B-Cart export, the segment file's lock) is under a shop folder's ``reports/`` or ignored by git,
so the working tree stays clean. This runs on a copy of the repository (its tracked and new
files, committed in a fresh git repository), never on the checkout the tests run from.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from smtp_servers import TestServer
from test_cli_run import bcartnb

REPO = Path(__file__).resolve().parent.parent


def _git(*args: str, cwd: Path) -> str:
    return subprocess.run(
        ["git", "-c", "user.name=test", "-c", "user.email=test@example.jp", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout


def _copy_of_the_repository(into: Path) -> Path:
    """The files git would see here (tracked, and new ones not ignored), committed anew."""
    files = _git("ls-files", "-z", "--cached", "--others", "--exclude-standard", cwd=REPO)
    for name in filter(None, files.split("\0")):
        source = REPO / name
        if source.is_file():
            (into / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, into / name)
    _git("init", "-q", cwd=into)
    _git("add", "-A", cwd=into)
    _git("commit", "-q", "-m", "checkout", cwd=into)
    assert _git("status", "--porcelain", cwd=into) == ""
    return into


@pytest.mark.timeout(600)
def test_the_demo_and_a_campaign_leave_git_status_clean(
    tmp_path: Path, smtp_server: Callable[..., TestServer]
) -> None:
    repo = _copy_of_the_repository(tmp_path / "checkout")
    env = {k: v for k, v in os.environ.items() if not k.startswith("BCARTNB_")}

    # make demo: the demo shop, its Maildir and the reports, from the checkout's root
    demo = subprocess.run(
        [sys.executable, "-m", "bcartnb.demo"],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert demo.returncode == 0, demo.stderr
    # its lines are Japanese only: the label before each ": " holds no English words
    for line in demo.stdout.splitlines():
        label = line.split(": ", 1)[0]
        assert not re.search(r"\b(?!HTML\b|SMTP|Maildir\b)[A-Za-z]{3,}", label), line
    for english in ("the demo shop", "report notebook", "as HTML", "the sink received"):
        assert english not in demo.stdout
    shop = repo / "demo-out"
    listed = json.loads(bcartnb("campaigns", "--json", env=env, cwd=shop).stdout)
    assert bcartnb("report", listed[0]["campaign_id"], env=env, cwd=shop).returncode == 0

    # a campaign with the demo's settings, run from the root as a newcomer would
    server = smtp_server()
    shop_env = env | server.env() | {"BCARTNB_CONFIG": str(repo / "data" / "demo.toml")}
    sent = bcartnb("run", "data/demo_campaign.toml", "--send", "--json", env=shop_env, cwd=repo)
    assert sent.returncode == 0, sent.stderr
    cid = json.loads(sent.stdout)["campaign_id"]
    report = bcartnb("report", cid, env=shop_env, cwd=repo)
    assert report.returncode == 0, report.stderr
    assert (repo / "data" / "reports" / f"campaign-{cid}.html").is_file()
    for args in (
        ("suppress", "member@example.co.jp"),
        ("suppressions", "--export-bcart", "bcart_suppressions.csv"),
        ("segments", "--save", "東京の会員", "--filter", '{"pref": "東京都"}'),
    ):
        done = bcartnb(*args, env=shop_env, cwd=repo)
        assert done.returncode == 0, (args, done.stderr)
    assert (repo / "bcart_suppressions.csv").is_file()

    assert _git("status", "--porcelain", "--untracked-files=all", cwd=repo) == ""
