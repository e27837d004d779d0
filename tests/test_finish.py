"""Finishing a campaign that cannot finish by itself (issue 20): cancel, give up, check by hand.

Each choice as a real `bcartnb` process against a real SMTP server: the exit code follows the
contract, the summary and `campaigns ID` say which mails ended how, and nobody is mailed
twice (or at all, once the marketer said no).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from smtp_servers import Faults, TestServer
from test_cli_run import ADMIN, bcartnb, env_for, member_mails, setup_campaign

Server = Callable[..., TestServer]
ONE_TRY = "\n[delivery]\nretries = 0\nconnections = 1\n"


def prepare(tmp_path: Path, n: int, extra: str = ONE_TRY) -> Path:
    campaign = setup_campaign(tmp_path, n)
    toml = tmp_path / "bcartnb.toml"
    toml.write_text(toml.read_text(encoding="utf-8") + extra, encoding="utf-8")
    return campaign


def as_json(out: object) -> dict[str, object]:
    data: dict[str, object] = json.loads(out.stdout)  # type: ignore[attr-defined]
    return data


def show(cid: str, env: dict[str, str], cwd: Path) -> dict[str, object]:
    out = bcartnb("campaigns", cid, "--json", env=env, cwd=cwd)
    assert out.returncode == 0, out.stderr
    return as_json(out)


def test_cancel_ends_an_unfinished_campaign_and_frees_the_unsent_addresses(
    tmp_path: Path, smtp_server: Server
):
    server = smtp_server()
    campaign = prepare(tmp_path, 4)
    env = env_for(tmp_path, server)
    server.down()
    first = bcartnb("run", str(campaign), "--send", "--json", env=env, cwd=tmp_path)
    assert first.returncode == 4, first.stderr
    cid = str(as_json(first)["campaign_id"])
    out = bcartnb("cancel", cid, "--json", env=env, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    summary = as_json(out)
    assert (summary["status"], summary["cancelled"], summary["sent"]) == ("cancelled", 4, 0)
    text = bcartnb("campaigns", cid, env=env, cwd=tmp_path).stdout
    assert "取消" in text and "取り消し 4 件" in text and "配信を取り消しました" in text
    # cancelled is final: no resume, no second cancel; both say so in one Japanese line
    for args in (["resume", cid], ["cancel", cid]):
        again = bcartnb(*args, env=env, cwd=tmp_path)
        assert again.returncode == 2 and "取り消" in again.stderr, again.stderr
        assert again.stderr.count("\n") == 1 and "Traceback" not in again.stderr
    # none of its mails ever went out, so the same mail can still reach them, once
    server.up()
    rerun = bcartnb("run", str(campaign), "--send", "--json", env=env, cwd=tmp_path)
    assert rerun.returncode == 0, rerun.stderr
    assert as_json(rerun)["sent"] == 4
    assert member_mails(server) == Counter(f"user{i}@example.co.jp" for i in range(4))


def test_cancel_keeps_what_was_sent_and_refuses_a_finished_campaign(
    tmp_path: Path, smtp_server: Server
):
    server = smtp_server(faults=Faults(defer={"user2@example.co.jp": 1000}))
    campaign = prepare(tmp_path, 4)
    env = env_for(tmp_path, server)
    first = as_json(bcartnb("run", str(campaign), "--send", "--json", env=env, cwd=tmp_path))
    assert (first["status"], first["sent"], first["deferred"]) == ("unfinished", 3, 1)
    cid = str(first["campaign_id"])
    cancelled = as_json(bcartnb("cancel", cid, "--json", env=env, cwd=tmp_path))
    assert (cancelled["sent"], cancelled["cancelled"], cancelled["deferred"]) == (3, 1, 0)
    quota = as_json(bcartnb("quota", "--json", env=env, cwd=tmp_path))
    assert quota["used"] == 4  # the deferred one was handed over once: it stays counted
    # the same mail again: the three who have it, and the deferred one, are not mailed
    rerun = as_json(bcartnb("run", str(campaign), "--send", "--json", env=env, cwd=tmp_path))
    assert rerun["sent"] == 0 and rerun["reasons"]["already_sent"] == 4  # type: ignore[index]
    assert admin_mails(server) == 0  # a cancelled campaign sends no administrator's copy


def admin_mails(server: TestServer) -> int:
    return sum(1 for r in server.received if r.recipients == (ADMIN,))


def test_give_up_deferred_finishes_with_the_refusals_listed(tmp_path: Path, smtp_server: Server):
    server = smtp_server(faults=Faults(defer={"user1@example.co.jp": 1000}))
    campaign = prepare(tmp_path, 3)
    env = env_for(tmp_path, server)
    first = bcartnb("run", str(campaign), "--send", "--json", env=env, cwd=tmp_path)
    assert first.returncode == 4 and as_json(first)["deferred"] == 1
    cid = str(as_json(first)["campaign_id"])
    out = bcartnb("resume", cid, "--give-up-deferred", "--json", env=env, cwd=tmp_path)
    assert out.returncode == 5, out.stderr  # finished, one mail refused for good
    summary = as_json(out)
    assert (summary["status"], summary["sent"], summary["failed"]) == ("done", 2, 1)
    assert summary["ended"] == {"gave_up": [1001]}
    assert admin_mails(server) == 1
    shown = show(cid, env, tmp_path)
    assert shown["status"] == "done"
    assert [(f["id"], "あきらめ" in f["reply"]) for f in shown["failures"]] == [(1001, True)]  # type: ignore[index, union-attr]
    text = bcartnb("resume", cid, env=env, cwd=tmp_path)
    assert text.returncode == 5 and "残っていません" in text.stdout  # its state, told again


def test_uncertain_mails_marked_sent_or_dropped_are_never_resent(
    tmp_path: Path, smtp_server: Server
):
    for choice, state in (("--mark-uncertain-sent", "sent"), ("--drop-uncertain", "cancelled")):
        folder = tmp_path / choice.strip("-")
        folder.mkdir()
        server = smtp_server(faults=Faults(drop_at={2}, drop_stage="DATA"))
        campaign = prepare(folder, 3)
        env = env_for(folder, server)
        first = as_json(bcartnb("run", str(campaign), "--send", "--json", env=env, cwd=folder))
        # one connection: the first mail lost after its data stops the run (one uncertain)
        assert (first["status"], first["uncertain"], first["pending"]) == ("unfinished", 1, 1)
        cid = str(first["campaign_id"])
        before = len(server.received)
        both = bcartnb(
            "resume", cid, "--mark-uncertain-sent", "--drop-uncertain", env=env, cwd=folder
        )
        assert both.returncode == 2 and "どれか1つ" in both.stderr
        out = bcartnb("resume", cid, choice, "--json", env=env, cwd=folder)
        assert out.returncode == 0, out.stderr
        summary = as_json(out)
        assert summary["status"] == "done" and summary["uncertain"] == 0
        ended = summary["ended"]
        assert isinstance(ended, dict) and sum(len(v) for v in ended.values()) == 1
        # the uncertain one was not resent: only the pending one and the administrator's copy
        assert [r.recipients for r in server.received[before:]] == [
            ("user2@example.co.jp",),
            (ADMIN,),
        ]
        shown = show(cid, env, folder)
        assert shown["uncertain"] == 0
        if state == "sent":
            assert shown["sent"] == 3
        else:
            assert shown["sent"] == 2 and shown["cancelled"] == 1


def test_members_gone_from_the_file_are_named_and_can_be_skipped(
    tmp_path: Path, smtp_server: Server
):
    server = smtp_server()
    campaign = prepare(tmp_path, 5)
    env = env_for(tmp_path, server)
    server.down()
    first = bcartnb("run", str(campaign), "--send", "--json", env=env, cwd=tmp_path)
    cid = str(as_json(first)["campaign_id"])
    server.up()
    members = tmp_path / "members.csv"
    kept = [line for line in members.read_text(encoding="utf-8").splitlines(keepends=True)]
    members.write_text("".join(kept[:3] + kept[5:]), encoding="utf-8")  # 1002, 1003 deleted
    plain = bcartnb("resume", cid, "--json", env=env, cwd=tmp_path)
    assert plain.returncode == 4  # left pending, and named
    summary = as_json(plain)
    assert summary["pending"] == 2 and any("1002" in w for w in summary["warnings"])  # type: ignore[union-attr]
    skipped = bcartnb("resume", cid, "--skip-missing", env=env, cwd=tmp_path)
    assert skipped.returncode == 0, skipped.stderr
    assert "会員ファイルにいないため送らないことにしたメール 2 件: 1002" in skipped.stdout
    assert member_mails(server) == Counter(f"user{i}@example.co.jp" for i in (0, 1, 4))
    shown = show(cid, env, tmp_path)
    assert (shown["status"], shown["cancelled"]) == ("done", 2)
    assert {e["id"] for e in shown["ended_list"]} == {1002, 1003}  # type: ignore[union-attr, index]


def test_a_ticked_member_gone_from_the_file_does_not_block_the_resume(
    tmp_path: Path, smtp_server: Server
):
    # チェックした会員に送信: a ticked member deleted from the file since is missing, not an error
    server = smtp_server()
    campaign = prepare(tmp_path, 5)
    campaign.write_text(
        campaign.read_text(encoding="utf-8") + "checked = [1000, 1002, 1003]\n", "utf-8"
    )
    env = env_for(tmp_path, server)
    server.down()
    first = bcartnb("run", str(campaign), "--send", "--json", env=env, cwd=tmp_path)
    cid = str(as_json(first)["campaign_id"])
    server.up()
    members = tmp_path / "members.csv"
    lines = members.read_text(encoding="utf-8").splitlines(keepends=True)
    members.write_text("".join(line for line in lines if "1002," not in line), encoding="utf-8")
    plain = bcartnb("resume", cid, "--json", env=env, cwd=tmp_path)
    assert plain.returncode == 4, plain.stderr
    assert as_json(plain)["pending"] == 1  # 1002, named in the warnings
    skipped = bcartnb("resume", cid, "--skip-missing", "--json", env=env, cwd=tmp_path)
    assert skipped.returncode == 0, skipped.stderr
    assert as_json(skipped)["ended"] == {"missing": [1002]}
    # only the ticked ones still there got the mail: the selection never widened
    assert member_mails(server) == Counter({"user0@example.co.jp": 1, "user3@example.co.jp": 1})
