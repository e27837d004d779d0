"""`bcartnb run`, `resume` and `campaigns` as real subprocesses against a real SMTP server."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from smtp_servers import Faults, TestServer

Server = Callable[..., TestServer]
ADMIN = "admin@example.co.jp"


def setup_campaign(tmp_path: Path, n: int, *, plan: str = "プラン10") -> Path:
    rows = "".join(
        f"{1000 + i},テスト商事{i},山田,太郎,user{i}@example.co.jp,東京都,受け取る\n"
        for i in range(n)
    )
    (tmp_path / "members.csv").write_text(
        "会員ID,会社名,担当者(姓),担当者(名),メールアドレス,都道府県,メール案内\n"
        + rows
        + "9999,不正商事,田中,一,bad address@example.co.jp,東京都,受け取る\n",
        encoding="utf-8",
    )
    (tmp_path / "bcartnb.toml").write_text(
        f'plan = "{plan}"\nfrom = "見本商事 <shop@example.co.jp>"\nadmin = "{ADMIN}"\n'
        'signature = "見本商事株式会社 東京都千代田区1-1"\ndb = "ledger.sqlite3"\n',
        encoding="utf-8",
    )
    campaign = tmp_path / "campaign.toml"
    campaign.write_text(
        'members = "members.csv"\nsubject = "{{ 会社名 }} 様へのご案内"\n'
        'body = "{{ 会社名 }} {{ 担当者名 }} 様\\n本文です。\\n"\n',
        encoding="utf-8",
    )
    return campaign


def env_for(tmp_path: Path, server: TestServer) -> dict[str, str]:
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


def start_bcartnb(*args: str, env: dict[str, str], cwd: Path) -> subprocess.Popen[str]:
    """``bcartnb ARGS`` started in the background, its output piped: for a test that acts on
    the server, the ledger or the process itself while it runs."""
    return subprocess.Popen(
        [sys.executable, "-m", "bcartnb", *args],
        env=env,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def member_mails(server: TestServer) -> Counter[str]:
    return Counter(r.recipients[0] for r in server.received if r.recipients[0] != ADMIN)


def test_run_dry_then_send_json_contract(tmp_path: Path, smtp_server: Server):
    server = smtp_server()
    campaign = setup_campaign(tmp_path, 12)
    env = env_for(tmp_path, server)
    dry = bcartnb("run", str(campaign), "--json", env=env, cwd=tmp_path)
    assert dry.returncode == 0, dry.stderr
    out = json.loads(dry.stdout)
    assert {
        "campaign_id",
        "selected",
        "sendable",
        "unsendable",
        "reasons",
        "sent",
        "failed",
        "quota",
    } <= set(out)
    assert (out["selected"], out["sendable"], out["unsendable"]) == (13, 12, 1)
    assert out["reasons"]["invalid_address"] == 1
    assert out["sent"] == 0 and out["quota"]["used_after"] == 12
    assert {"cap", "used_before", "used_after"} <= set(out["quota"])
    assert server.received == []

    sent = bcartnb("run", str(campaign), "--send", "--json", env=env, cwd=tmp_path)
    assert sent.returncode == 0, sent.stderr
    out = json.loads(sent.stdout)
    assert out["sent"] == 12 and out["failed"] == 0 and out["quota"]["used_after"] == 12
    assert member_mails(server) == Counter(f"user{i}@example.co.jp" for i in range(12))

    readable = bcartnb("run", str(campaign), "--send", env=env, cwd=tmp_path)
    # the same mail again: nobody is mailed twice; the output names the campaign and --repeat
    assert readable.returncode == 0, readable.stderr
    assert "すべて同じメールを送信済み" in readable.stdout and "--repeat" in readable.stdout
    assert out["campaign_id"] in readable.stdout
    assert "Traceback" not in readable.stderr
    assert member_mails(server) == Counter(f"user{i}@example.co.jp" for i in range(12))

    history = bcartnb("campaigns", "--json", env=env, cwd=tmp_path)
    rows = json.loads(history.stdout)
    assert [(r["status"], r["sent"], r["failed"]) for r in rows] == [("done", 12, 0)]
    assert {"campaign_id", "created_at", "status", "sent", "failed"} <= set(rows[0])

    quota = json.loads(bcartnb("quota", "--json", env=env, cwd=tmp_path).stdout)
    assert quota["used"] == 12 and quota["cap"] == 2000


def test_run_quota_refused_exit_3(tmp_path: Path, smtp_server: Server):
    server = smtp_server()
    campaign = setup_campaign(tmp_path, 101, plan="light")
    env = env_for(tmp_path, server)
    for args in (("run", str(campaign)), ("run", str(campaign), "--send")):
        done = bcartnb(*args, env=env, cwd=tmp_path)
        assert done.returncode == 3, done.stderr
        assert "cap 100" in done.stderr and done.stderr.count("\n") == 1
    assert server.received == []


def test_bad_campaign_file_exit_2(tmp_path: Path, smtp_server: Server):
    server = smtp_server()
    campaign = setup_campaign(tmp_path, 2)
    campaign.write_text(
        campaign.read_text(encoding="utf-8") + '[filter]\nprefecture = "東京都"\n', encoding="utf-8"
    )
    done = bcartnb("run", str(campaign), "--send", env=env_for(tmp_path, server), cwd=tmp_path)
    assert done.returncode == 2 and "prefecture" in done.stderr
    assert "Traceback" not in done.stderr and server.received == []


def test_sigkill_then_resume_loses_nobody(tmp_path: Path, smtp_server: Server):
    n = 40
    server = smtp_server(faults=Faults(hold_after=10))
    campaign = setup_campaign(tmp_path, n)
    env = env_for(tmp_path, server)
    proc = start_bcartnb("run", str(campaign), "--send", "--json", env=env, cwd=tmp_path)
    try:
        assert server.wait_held(4, timeout=60), "the sender never filled its 4 connections"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=30)  # reaps it and closes the pipes
    server.release()
    before = member_mails(server)
    assert sum(before.values()) == 14  # 10 answered + 4 in flight (recorded, never answered)

    history = json.loads(bcartnb("campaigns", "--json", env=env, cwd=tmp_path).stdout)
    assert history[0]["status"] == "unfinished"
    cid = history[0]["campaign_id"]

    resumed = bcartnb("resume", cid, "--json", env=env, cwd=tmp_path)
    assert resumed.returncode == 4, resumed.stderr  # the 4 uncertain ones are left
    out = json.loads(resumed.stdout)
    assert out["status"] == "unfinished" and out["uncertain"] == 4
    after = member_mails(server)
    assert set(after) == {f"user{i}@example.co.jp" for i in range(n)}  # zero lost
    assert max(after.values()) == 1  # nobody twice without asking
    assert out["sent"] == n - 4

    again = bcartnb("resume", cid, "--resend-uncertain", "--json", env=env, cwd=tmp_path)
    out = json.loads(again.stdout)
    assert again.returncode == 0 and out["uncertain"] == 0 and out["sent"] == n
    dupes = sum(c - 1 for c in member_mails(server).values())
    assert dupes == 4  # exactly the in-flight window, and only on request
    quota = json.loads(bcartnb("quota", "--json", env=env, cwd=tmp_path).stdout)
    assert quota["used"] == n + 4  # every mail counted once, the deliberately resent again
    admin = [r for r in server.received if r.recipients == (ADMIN,)]
    assert len(admin) == 1  # one admin copy per campaign, resumes included


def test_ctrl_c_stops_cleanly_and_resume_finishes(tmp_path: Path, smtp_server: Server):
    n = 30
    server = smtp_server(faults=Faults(hold_after=5))
    campaign = setup_campaign(tmp_path, n)
    env = env_for(tmp_path, server)
    proc = start_bcartnb("run", str(campaign), "--send", "--json", env=env, cwd=tmp_path)
    assert server.wait_held(4, timeout=60)
    proc.send_signal(signal.SIGINT)
    server.release()  # the in-flight mails get their answers while we stop
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    summary = json.loads(out)
    assert summary["status"] == "interrupted" and summary["uncertain"] == 0
    assert "bcartnb resume" in err
    with_quota = json.loads(bcartnb("quota", "--json", env=env, cwd=tmp_path).stdout)
    assert with_quota["reserved"] == 0  # the unused reservation was released
    resumed = json.loads(
        bcartnb("resume", summary["campaign_id"], "--json", env=env, cwd=tmp_path).stdout
    )
    assert resumed["status"] == "done" and resumed["sent"] == n
    assert member_mails(server) == Counter(f"user{i}@example.co.jp" for i in range(n))


def test_test_send_from_the_command_line(tmp_path: Path, smtp_server: Server):
    server = smtp_server()
    campaign = setup_campaign(tmp_path, 3)
    env = env_for(tmp_path, server)
    done = bcartnb("run", str(campaign), "--test-to", "tester@example.co.jp", env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "テスト送信しました: tester@example.co.jp" in done.stdout
    assert [r.recipients for r in server.received] == [("tester@example.co.jp",)]
    quota = json.loads(bcartnb("quota", "--json", env=env, cwd=tmp_path).stdout)
    assert quota["used"] == 0  # test sends never count
    bad = bcartnb("run", str(campaign), "--test-to", "no address", env=env, cwd=tmp_path)
    assert bad.returncode == 2 and "cannot be mailed" in bad.stderr
    assert len(server.received) == 1


def test_dry_run_shows_the_checks_before_sending(tmp_path: Path, smtp_server: Server):
    """送信前の確認: a body with no opt-out route is named in Japanese and in the JSON `checks`;
    a warning, not a refusal (exit 0); once the body has one, the heading is gone."""
    server = smtp_server()
    campaign = setup_campaign(tmp_path, 2)
    env = env_for(tmp_path, server)
    dry = bcartnb("run", str(campaign), env=env, cwd=tmp_path)
    assert dry.returncode == 0, dry.stderr
    lines = dry.stdout.splitlines()
    at = lines.index("送信前の確認（会員ID 1000 のメール）:")
    shown = lines[at + 1 :]
    assert any(
        line.startswith("  ・受信拒否の通知先と、受信拒否ができる旨が本文にありません")
        and "テキストパート: 受信拒否（配信停止）ができる旨の記載がありません" in line
        for line in shown
    ), dry.stdout
    out = json.loads(bcartnb("run", str(campaign), "--json", env=env, cwd=tmp_path).stdout)
    assert out["checks_member"] == 1000
    by_code = {c["code"]: c for c in out["checks"]}
    assert set(by_code) == {"opt_out", "contact"}
    assert set(by_code["opt_out"]) == {"code", "message", "detail"}
    assert by_code["opt_out"]["message"] in dry.stdout and not server.received

    campaign.write_text(
        'members = "members.csv"\nsubject = "{{ 会社名 }} 様へのご案内"\n'
        'body = "{{ 会社名 }} {{ 担当者名 }} 様\\n本文です。\\n見本商事 TEL 03-0000-0000\\n'
        '配信停止: https://shop.example.co.jp/stop\\n"\n',
        encoding="utf-8",
    )
    clean = bcartnb("run", str(campaign), env=env, cwd=tmp_path)
    assert clean.returncode == 0 and "送信前の確認" not in clean.stdout, clean.stdout
    assert (
        json.loads(bcartnb("run", str(campaign), "--json", env=env, cwd=tmp_path).stdout)["checks"]
        == []
    )
