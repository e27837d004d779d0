"""What the command line shows around a campaign (issue 14, 8): the dry run's sample mail, the
campaign id after a send, one campaign in detail, and every error Japanese first."""

from __future__ import annotations

import json
from pathlib import Path

from smtp_servers import Faults
from test_cli_run import Server, bcartnb, env_for, setup_campaign


def no_retries(tmp_path: Path) -> None:
    """Deferred mails stay deferred (for resume) instead of a 30 s backoff in the test."""
    cfg = tmp_path / "bcartnb.toml"
    cfg.write_text(
        cfg.read_text(encoding="utf-8") + "\n[delivery]\nretries = 0\n", encoding="utf-8"
    )


def only_line(stderr: str) -> str:
    assert stderr.count("\n") == 1 and "Traceback" not in stderr, stderr
    return stderr


def test_dry_run_shows_the_subject_and_a_masked_sample(tmp_path: Path, smtp_server: Server) -> None:
    server = smtp_server()
    campaign = setup_campaign(tmp_path, 3)
    env = env_for(tmp_path, server)
    dry = bcartnb("run", str(campaign), env=env, cwd=tmp_path)
    assert dry.returncode == 0, dry.stderr
    lines = dry.stdout.splitlines()
    at = lines.index("見本のメール（会員ID 1000）:")
    assert lines[at + 1 : at + 4] == [
        "  宛先: u***@example.co.jp",
        "  件名: テスト商事0 様へのご案内",
        "  | テスト商事0 山田 太郎 様",
    ]
    assert "user0@example.co.jp" not in dry.stdout  # masked, as in the report
    assert "キャンペーンID" not in dry.stdout  # nothing was recorded
    as_json = json.loads(bcartnb("run", str(campaign), "--json", env=env, cwd=tmp_path).stdout)
    assert as_json["sample"]["to"] == "u***@example.co.jp"
    assert as_json["sample"]["subject"] == "テスト商事0 様へのご案内"
    assert as_json["sample"]["text"].startswith("テスト商事0 山田 太郎 様\n本文です。")
    assert server.received == []


def test_send_prints_the_id_and_campaigns_id_lists_refusals(
    tmp_path: Path, smtp_server: Server
) -> None:
    server = smtp_server(
        faults=Faults(
            reject=["user1@example.co.jp"],
            reject_reply="550 5.1.1 <user1@example.co.jp>: <script>x</script> unknown",
        )
    )
    campaign = setup_campaign(tmp_path, 4)
    env = env_for(tmp_path, server)
    sent = bcartnb("run", str(campaign), "--send", env=env, cwd=tmp_path)
    assert sent.returncode == 5, sent.stderr
    cid = json.loads(bcartnb("campaigns", "--json", env=env, cwd=tmp_path).stdout)[0]["campaign_id"]
    assert f"キャンペーンID: {cid}" in sent.stdout.splitlines()
    assert only_line(sent.stderr).startswith(
        "bcartnb: 送信は終わりましたが、1 件は受信側に拒否されました"
        f"（`bcartnb campaigns {cid}` で一覧を表示します）"
    )

    shown = bcartnb("campaigns", cid, env=env, cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert lines[0] == f"キャンペーンID: {cid}" and "状態: 完了" in lines
    assert "件名: {{ 会社名 }} 様へのご案内" in lines
    assert "送信済み 3 件 / 失敗 1 件 / 未送信 0 件 / 再試行待ち 0 件 / 結果不明 0 件" in lines
    assert "送信できない理由: 登録できないメールアドレス 1" in lines
    refused = lines[
        lines.index("受信側に拒否されたメール（会員ID / メールアドレス / サーバーの返答）:") + 1
    ]
    assert refused.startswith("  1001  u***@example.co.jp  550 ")
    assert "u***@example.co.jp>: <script>x</script> unknown" in refused  # the reply, masked
    assert "user1@" not in shown.stdout and not any(x.startswith("続きを送るには") for x in lines)

    data = json.loads(bcartnb("campaigns", cid, "--json", env=env, cwd=tmp_path).stdout)
    assert (data["status"], data["sent"], data["failed"], data["resume_command"]) == (
        "done",
        3,
        1,
        None,
    )
    [failure] = data["failures"]
    assert (failure["id"], failure["email"], failure["code"]) == (1001, "u***@example.co.jp", 550)
    assert "user1@" not in json.dumps(data)


def test_an_unfinished_campaign_shows_what_is_left_and_the_resume_command(
    tmp_path: Path, smtp_server: Server
) -> None:
    server = smtp_server(faults=Faults(defer={"user2@example.co.jp": 1}))
    campaign = setup_campaign(tmp_path, 4)
    no_retries(tmp_path)
    env = env_for(tmp_path, server)
    sent = bcartnb("run", str(campaign), "--send", env=env, cwd=tmp_path)
    assert sent.returncode == 4, sent.stderr
    cid = json.loads(bcartnb("campaigns", "--json", env=env, cwd=tmp_path).stdout)[0]["campaign_id"]
    assert only_line(sent.stderr).startswith(
        "bcartnb: 送信はまだ終わっていません（送信済み 3 件、残り 1 件）。"
        f"続きは `bcartnb resume {cid}` で送れます"
    )
    lines = bcartnb("campaigns", cid, env=env, cwd=tmp_path).stdout.splitlines()
    assert "状態: 送信途中" in lines
    assert lines[lines.index("再試行待ちのメール:") + 1] == "  1002  u***@example.co.jp"
    assert lines[-1] == f"続きを送るには: bcartnb resume {cid}"
    data = json.loads(bcartnb("campaigns", cid, "--json", env=env, cwd=tmp_path).stdout)
    assert data["deferred"] == 1 and data["deferred_list"] == [
        {"id": 1002, "email": "u***@example.co.jp"}
    ]
    assert data["resume_command"] == f"bcartnb resume {cid}"
    resumed = bcartnb("resume", cid, env=env, cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert (
        json.loads(bcartnb("campaigns", cid, "--json", env=env, cwd=tmp_path).stdout)[
            "resume_command"
        ]
        is None
    )


def test_every_error_of_a_campaign_is_japanese_first(tmp_path: Path, smtp_server: Server) -> None:
    server = smtp_server()
    campaign = setup_campaign(tmp_path, 2)
    env = env_for(tmp_path, server)
    cases = [
        (
            ["campaigns", "2026-nope"],
            {},
            2,
            "配信の状態のエラー: キャンペーンID「2026-nope」は配信記録にありません。",
        ),
        (
            ["resume", "2026-nope"],
            {},
            2,
            "配信の状態のエラー: キャンペーンID「2026-nope」は配信記録にありません。",
        ),
        (
            ["run", str(campaign)],
            {"BCARTNB_PLAN": ""},
            2,
            "設定のエラー: プランが設定されていません（",
        ),
        (["quota"], {"BCARTNB_PLAN": ""}, 2, "設定のエラー: プランが設定されていません（"),
        (
            ["run", str(campaign)],
            {"BCARTNB_PLAN": "light", "BCARTNB_SMTP_PORT": "0"},
            2,
            "設定のエラー: BCARTNB_SMTP_PORT のポート番号 0 は範囲外です（1〜65535）。",
        ),
        (
            ["run", str(campaign), "--test-to", "a b@example.jp"],
            {},
            2,
            "入力のエラー: テスト送信先 'a b@example.jp' には送れません",
        ),
    ]
    cfg = tmp_path / "bcartnb.toml"
    cfg.write_text(
        cfg.read_text(encoding="utf-8").replace('plan = "プラン10"\n', ""), encoding="utf-8"
    )
    for args, extra, code, first in cases:
        done = bcartnb(*args, env={**env, "BCARTNB_PLAN": "plan10", **extra}, cwd=tmp_path)
        assert done.returncode == code, (args, done.stderr)
        assert only_line(done.stderr).startswith(f"bcartnb: error: {first}"), done.stderr
        assert " / " in done.stderr  # then the exact detail


def test_smtp_down_and_already_sent_are_japanese_first(
    tmp_path: Path, smtp_server: Server, closed_port: int
) -> None:
    server = smtp_server()
    campaign = setup_campaign(tmp_path, 2)
    env = env_for(tmp_path, server)
    port = closed_port
    down = bcartnb(
        "run", str(campaign), "--send", env={**env, "BCARTNB_SMTP_PORT": str(port)}, cwd=tmp_path
    )
    assert down.returncode == 4, down.stderr  # unfinished: a scheduler retries with resume
    first = only_line(down.stderr)
    assert first.startswith("bcartnb: 送信はまだ終わっていません（送信済み 0 件、残り 2 件）"), (
        first
    )
    assert f"止まった理由: SMTPサーバー 127.0.0.1:{port} に接続できません" in first
    assert server.received == []
    done = bcartnb("run", str(campaign), "--send", env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    again = bcartnb("run", str(campaign), "--send", env=env, cwd=tmp_path)
    assert again.returncode == 0 and again.stderr == ""  # nothing to do is not an error
    assert again.stdout.startswith("送るメールはありません: 対象の会員には、すべて同じメールを")


def test_hostile_member_values_reach_the_terminal_as_text(
    tmp_path: Path, smtp_server: Server
) -> None:
    server = smtp_server()
    campaign = setup_campaign(tmp_path, 1)
    members = tmp_path / "members.csv"
    members.write_text(
        members.read_text(encoding="utf-8").replace(
            "テスト商事0", "\x1b[2J\x1b]0;pwned\x07<script>alert(1)</script>商事"
        ),
        encoding="utf-8",
    )
    env = env_for(tmp_path, server)
    # in the subject (a header) a control character is refused, naming member and field; the
    # error line itself reaches the terminal escaped
    refused = bcartnb("run", str(campaign), env=env, cwd=tmp_path)
    assert refused.returncode == 2, refused.stderr
    assert "\x1b" not in refused.stderr and "\x07" not in refused.stderr
    assert only_line(refused.stderr).startswith(
        "bcartnb: error: メール作成のエラー: 会員 1000 の件名に制御文字が入ります（「会社名」の値）"
    )
    # in the body it is text: the dry run's sample shows it escaped
    campaign.write_text(
        campaign.read_text(encoding="utf-8").replace("{{ 会社名 }} 様へのご案内", "ご案内"),
        encoding="utf-8",
    )
    dry = bcartnb("run", str(campaign), env=env, cwd=tmp_path)
    assert dry.returncode == 0, dry.stderr
    assert "\x1b" not in dry.stdout and "\x07" not in dry.stdout
    assert "\\x1b[2J\\x1b]0;pwned\\x07<script>alert(1)</script>商事" in dry.stdout
    listed = bcartnb("members", str(members), "--list", env=env, cwd=tmp_path)
    assert listed.returncode == 0 and "\x1b" not in listed.stdout
