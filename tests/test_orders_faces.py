"""Every face picks the same 休眠 members from the same orders (issue 26): ``bcartnb members
--orders``, a campaign file's dry run, a saved segment, the papermill campaign notebook, and
the send itself; the campaign records which orders it used and its report says the purchase
conditions in words. Real subprocesses, a real SMTP server, a real kernel."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import papermill  # type: ignore[import-untyped]
import pytest
from smtp_servers import TestServer
from test_orders import csv_text

from bcartnb.report import read_summary

Server = Callable[..., TestServer]
REPO = Path(__file__).resolve().parent.parent
DORMANT = {"user0@example.co.jp", "user1@example.co.jp"}  # 4000 and 4001
ADMIN = "admin@example.co.jp"


def shop(tmp_path: Path, server: TestServer) -> dict[str, str]:
    """Six members and their orders, dated from the real today (today decides 休眠)."""
    today = dt.datetime.now(dt.timezone(dt.timedelta(hours=9))).date()

    def ago(days: int) -> str:
        return (today - dt.timedelta(days=days)).strftime("%Y/%m/%d 12:00:00")

    members = "".join(f"{4000 + i},商事{i},user{i}@example.co.jp,受け取る\n" for i in range(6))
    (tmp_path / "members.csv").write_text(
        "会員ID,会社名,メールアドレス,メール案内\n" + members, encoding="utf-8"
    )
    lines = [
        ("1", "4000", ago(200), "発送済", "1000", "A-100", "りんご"),  # 休眠
        ("2", "4001", ago(250), "発送済", "1000", "A-1", "梨"),  # 休眠
        ("3", "4001", ago(10), "キャンセル", "1000", "A-1", "梨"),  # cancelled: still 休眠
        ("4", "4002", ago(3), "発送済", "1000", "A-1", "梨"),  # 新規
        ("5", "4003", ago(500), "発送済", "1000", "A-1", "梨"),  # 離反
        ("6", "4004", ago(181), "発送済", "-500", "A-1", "梨"),  # a return only: 未購入
    ]
    (tmp_path / "受注.csv").write_bytes(csv_text(lines).encode("cp932"))
    (tmp_path / "bcartnb.toml").write_text(
        f'plan = "プラン10"\nfrom = "見本商事 <shop@example.co.jp>"\nadmin = "{ADMIN}"\n'
        'signature = "見本商事"\ndb = "ledger.sqlite3"\n',
        encoding="utf-8",
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("BCARTNB_")}
    env.update(server.env())
    env["BCARTNB_CONFIG"] = str(tmp_path / "bcartnb.toml")
    return env


def bcartnb(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bcartnb", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=120,
    )


def test_every_face_picks_the_same_dormant_members(
    tmp_path: Path, smtp_server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = smtp_server()
    env = shop(tmp_path, server)
    dormant = '{"顧客グループ": "休眠"}'

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        done = bcartnb(*args, env=env, cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        return done

    # bcartnb members: the count, and which ones (--checked must lie inside the filter)
    looked = run("members", "members.csv", "--orders", "受注.csv", "--filter", dormant, "--json")
    assert json.loads(looked.stdout)["selected"] == 2
    run(
        "members",
        "members.csv",
        "--orders",
        "受注.csv",
        "--filter",
        dormant,
        "--checked",
        "4000,4001",
    )
    outside = bcartnb(
        *("members", "members.csv", "--orders", "受注.csv", "--filter", dormant),
        *("--checked", "4004"),
        env=env,
        cwd=tmp_path,
    )
    assert outside.returncode == 2 and "4004" in outside.stderr

    # a saved segment in a campaign file, ANDed with a purchase date
    run("segments", "--save", "休眠顧客", "--filter", dormant)
    limit = (dt.date.today() - dt.timedelta(days=150)).isoformat()
    campaign = tmp_path / "campaign.toml"
    campaign.write_text(
        'members = "members.csv"\norders = "受注.csv"\nsegment = "休眠顧客"\n'
        'subject = "ご無沙汰しております"\nbody = "{{ 会社名 }} 様\\n"\n'
        f'[filter]\n"最終購入日" = {{ before = "{limit}" }}\n',
        encoding="utf-8",
    )
    dry = json.loads(run("run", str(campaign), "--json").stdout)
    assert (dry["selected"], dry["sendable"], dry["sent"]) == (2, 2, 0)

    # papermill's campaign notebook, with orders and the filter as parameters
    for key, value in env.items():
        if key.startswith("BCARTNB_"):
            monkeypatch.setenv(key, value)
    out = tmp_path / "out.ipynb"
    papermill.execute_notebook(
        str(REPO / "notebooks" / "campaign.ipynb"),
        str(out),
        parameters={
            "members": str(tmp_path / "members.csv"),
            "orders": str(tmp_path / "受注.csv"),
            "filter": {"顧客グループ": "休眠"},
            "subject": "ご無沙汰しております",
            "body": "{{ 会社名 }} 様\n",
        },
        kernel_name="python3",
        cwd=str(tmp_path),
        progress_bar=False,
    )
    summary = read_summary(out)
    assert (summary["selected"], summary["sendable"], summary["dry_run"]) == (2, 2, True)
    assert server.received == []

    # the send: exactly those two, and the ledger says which orders decided it
    sent = json.loads(run("run", str(campaign), "--send", "--json").stdout)
    assert sent["sent"] == 2
    assert {r.recipients[0] for r in server.received} - {ADMIN} == DORMANT
    with sqlite3.connect(tmp_path / "ledger.sqlite3") as db:
        (params,) = db.execute(
            "SELECT params FROM campaigns WHERE campaign_id = ?", (sent["campaign_id"],)
        ).fetchone()
    used = json.loads(params)["orders_snapshot"]
    data = (tmp_path / "受注.csv").read_bytes()
    assert used["path"] == str(tmp_path / "受注.csv")
    assert used["sha256"] == hashlib.sha256(data).hexdigest() and used["modified_at"]

    # the report: the conditions in words, and the orders it used
    report = tmp_path / "report.html"
    run("report", sent["campaign_id"], "--out", str(report))
    html = report.read_text(encoding="utf-8")
    day = dt.date.fromisoformat(limit)
    assert "顧客グループが 休眠" in html
    assert f"最終購入日が {day.year}年{day.month}月{day.day}日 より前" in html
    assert "使った受注データ" in html and used["sha256"][:16] in html
