"""Exactly once, whatever happens: real `bcartnb` processes against real, faulty SMTP servers.

Each test is one of the situations that once mailed people twice, lost them, or told the user
something untrue (issue 11): two runs at once, an outage then resumes, greylisting, a server
shutting down, a server that hangs after the data, refusals, bad settings, a deleted ledger.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
from smtp_servers import Faults, TestServer
from test_cli_run import ADMIN, bcartnb, env_for, member_mails, setup_campaign, start_bcartnb

from bcartnb import campaign
from bcartnb.delivery import DONE_MESSAGE
from bcartnb.settings import load_settings

Server = Callable[..., TestServer]

FAST = "\n[delivery]\nbackoff = 0.2\n"


def settings_file(tmp_path: Path, extra: str) -> None:
    path = tmp_path / "bcartnb.toml"
    path.write_text(path.read_text(encoding="utf-8") + extra, encoding="utf-8")


def everyone(n: int) -> Counter[str]:
    return Counter(f"user{i}@example.co.jp" for i in range(n))


def admin_copies(server: TestServer) -> int:
    return sum(1 for r in server.received if r.recipients == (ADMIN,))


def history(env: dict[str, str], cwd: Path) -> list[dict[str, object]]:
    out = bcartnb("campaigns", "--json", env=env, cwd=cwd)
    assert out.returncode == 0, out.stderr
    rows: list[dict[str, object]] = json.loads(out.stdout)
    return rows


def used(env: dict[str, str], cwd: Path) -> int:
    return int(json.loads(bcartnb("quota", "--json", env=env, cwd=cwd).stdout)["used"])


def test_two_identical_runs_started_together_mail_everyone_once(
    tmp_path: Path, smtp_server: Server
):
    n = 300
    server = smtp_server()
    path = setup_campaign(tmp_path, n)
    env = env_for(tmp_path, server)
    procs = [
        start_bcartnb("run", str(path), "--send", "--json", env=env, cwd=tmp_path) for _ in range(2)
    ]
    results = [p.communicate(timeout=120) for p in procs]
    codes = sorted(p.returncode for p in procs)
    assert codes in ([0, 2], [0, 0]), results
    rows = history(env, tmp_path)
    assert [(r["status"], r["sent"]) for r in rows] == [("done", n)]
    winner = str(rows[0]["campaign_id"])
    outs = [
        json.loads(out) for (out, _), p in zip(results, procs, strict=True) if p.returncode == 0
    ]
    if codes == [0, 2]:  # the second met the first running: refused at once, naming it
        loser = results[[p.returncode for p in procs].index(2)][1]
        assert loser.count("\n") == 1 and "Traceback" not in loser
        assert "送信中" in loser and winner in loser
    else:  # it came after the first had finished: everyone already has this mail
        late = min(outs, key=lambda o: o["sent_now"])
        assert (late["sent_now"], late["reasons"]["already_sent"]) == (0, n)
        assert late["campaign_id"] == winner
    assert member_mails(server) == everyone(n)
    assert admin_copies(server) == 1
    assert used(env, tmp_path) == n


@pytest.mark.parametrize("order", ["run-then-resume", "resume-then-run"])
def test_an_outage_then_runs_and_resumes_in_any_order_mail_everyone_once(
    tmp_path: Path, smtp_server: Server, order: str
):
    n = 20
    server = smtp_server()
    path = setup_campaign(tmp_path, n)
    env = env_for(tmp_path, server)
    server.down()
    first = bcartnb("run", str(path), "--send", env=env, cwd=tmp_path)
    second = bcartnb("run", str(path), "--send", env=env, cwd=tmp_path)  # 送信 twice
    for out in (first, second):
        assert out.returncode == 4, out.stderr
        assert "送信はまだ終わっていません" in out.stdout and "接続できません" in out.stdout
        assert "bcartnb resume" in out.stderr and "Traceback" not in out.stderr
    rows = history(env, tmp_path)
    assert len(rows) == 1 and rows[0]["status"] == "unfinished"  # one campaign, not two
    cid = str(rows[0]["campaign_id"])
    assert used(env, tmp_path) == 0
    server.up()
    steps = [["resume", cid], ["run", str(path), "--send"]]
    if order == "resume-then-run":
        codes = [bcartnb(*s, env=env, cwd=tmp_path) for s in steps]
        assert [c.returncode for c in codes] == [0, 0]  # the run: everyone already has it
        assert "すべて同じメールを送信済み" in codes[1].stdout
    else:
        codes = [bcartnb(*s, env=env, cwd=tmp_path) for s in reversed(steps)]
        assert [c.returncode for c in codes] == [0, 0]  # the run continued it; resume: nothing
        assert "残っていません" in codes[1].stdout
    assert member_mails(server) == everyone(n)
    assert admin_copies(server) == 1
    assert used(env, tmp_path) == n
    assert [(r["campaign_id"], r["status"]) for r in history(env, tmp_path)] == [(cid, "done")]


def test_an_outage_then_send_twice_in_the_wizard_then_resume_there(
    tmp_path: Path, smtp_server: Server, repo_root: Path
):
    from bcartnb.widgets import Wizard

    n = 6
    server = smtp_server()
    setup_campaign(tmp_path, n)
    env = env_for(tmp_path, server)
    server.down()
    settings = load_settings(tmp_path / "bcartnb.toml", env=env)
    settings = settings.replace(templates=repo_root / "data" / "templates")
    ids = []
    for _ in range(2):  # 送信, then 新しい配信を作成 and the same campaign again
        wizard = Wizard(tmp_path / "members.csv", settings)
        wizard.send_all.click()
        wizard.compose.template.value = "テキストニュースレター"
        wizard.compose.to_confirm.click()
        assert wizard.stage == "confirm", wizard.status.value
        wizard.confirm.send.click()
        assert wizard.result is not None and wizard.result.exit_code == 4
        assert "送信エラー" in wizard.status.value and "接続できません" in wizard.status.value
        ids.append(wizard.result.campaign_id)
    assert ids[0] == ids[1]  # the second 送信 continued the first campaign
    assert wizard.sending.resume.layout.display is None  # 再開 is offered
    assert "配信控え: 送信がすべて終わったときに送ります" in wizard.sending.done.value
    server.up()
    wizard.sending.resume.click()  # 再開, in the wizard itself
    done = wizard.result
    assert done is not None and done.status == "done" and done.exit_code == 0
    assert done.campaign_id == ids[0] and wizard.stage == "done"
    assert f"キャンペーンID: {ids[0]}" in wizard.sending.done.value
    assert "配信控え: 管理者アドレスに送信しました" in wizard.sending.done.value
    assert wizard.sending.done.value.count(DONE_MESSAGE) == 1
    assert DONE_MESSAGE not in wizard.status.value  # said once, on the done screen
    assert wizard.sending.resume.layout.display == "none"
    assert member_mails(server) == everyone(n) and admin_copies(server) == 1
    again = campaign.resume(ids[0], settings, progress=False).summary
    assert again.exit_code == 0 and member_mails(server) == everyone(n)


def test_greylisting_delivers_each_member_once_in_the_end(tmp_path: Path, smtp_server: Server):
    n = 8
    server = smtp_server(faults=Faults(greylist=0.3))
    path = setup_campaign(tmp_path, n)
    settings_file(tmp_path, FAST)
    env = env_for(tmp_path, server)
    out = bcartnb("run", str(path), "--send", "--json", env=env, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout)
    assert (summary["status"], summary["sent"], summary["deferred"]) == ("done", n, 0)
    assert member_mails(server) == everyone(n)
    assert all(server.rcpt_attempts[a] >= 2 for a in everyone(n))  # each was greylisted
    assert used(env, tmp_path) == n  # counted once, however often retried
    assert admin_copies(server) == 1


def test_a_server_shutting_down_mid_campaign_loses_nobody(tmp_path: Path, smtp_server: Server):
    n = 20
    server = smtp_server(faults=Faults(shutdown_after=10, shutdown_for=0.5))
    path = setup_campaign(tmp_path, n)
    settings_file(tmp_path, FAST)
    env = env_for(tmp_path, server)
    out = bcartnb("run", str(path), "--send", "--json", env=env, cwd=tmp_path)
    summary = json.loads(out.stdout)
    if out.returncode == 4:  # the reconnect met the shutdown: stopped, to be resumed
        assert (
            summary["stopped"]
            and summary["sent"] + summary["pending"] + summary["deferred"] + summary["uncertain"]
            == n
        )
        # The run gives up fast (backoff 0.2 s), so on a quick machine its exit can come
        # inside the 0.5 s window: resume once the server accepts again, as an operator would.
        assert server.wait_shutdown_over()
        out = bcartnb("resume", summary["campaign_id"], "--json", env=env, cwd=tmp_path)
        summary = json.loads(out.stdout)
    assert out.returncode == 0, out.stderr
    assert summary["sent"] == n and member_mails(server) == everyone(n)
    assert admin_copies(server) == 1


def test_retries_need_no_quota_so_a_full_month_cannot_stop_them(
    tmp_path: Path, smtp_server: Server
):
    # ライトプラン: 100 a month. A first campaign uses 90; the second, of 10, is greylisted
    # and retried: retries count nothing, so it finishes at exactly 100 with no refusal.
    server = smtp_server()
    path = setup_campaign(tmp_path, 90, plan="light")
    settings_file(tmp_path, FAST)
    env = env_for(tmp_path, server)
    assert bcartnb("run", str(path), "--send", env=env, cwd=tmp_path).returncode == 0
    (tmp_path / "b").mkdir()
    other = setup_campaign(tmp_path / "b", 10, plan="light")
    other.write_text(other.read_text(encoding="utf-8").replace("ご案内", "第二報"), "utf-8")
    (tmp_path / "b" / "bcartnb.toml").write_text(
        (tmp_path / "bcartnb.toml")
        .read_text(encoding="utf-8")
        .replace('db = "ledger.sqlite3"', f'db = "{tmp_path / "ledger.sqlite3"}"'),
        encoding="utf-8",
    )
    server.set_faults(Faults(greylist=0.3))
    env_b = env_for(tmp_path / "b", server)
    out = bcartnb("run", str(other), "--send", "--json", env=env_b, cwd=tmp_path / "b")
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout)
    assert summary["quota"] == {
        "plan": "ライトプラン",
        "month": summary["quota"]["month"],
        "cap": 100,
        "used_before": 90,
        "used_after": 100,
    }
    assert used(env, tmp_path) == 100


@pytest.mark.parametrize("k", [1, 4])
def test_a_server_that_hangs_after_the_data_costs_one_uncertain_mail_per_connection(
    tmp_path: Path, smtp_server: Server, k: int
):
    n = 12
    server = smtp_server(faults=Faults(hang_after_data=True))
    path = setup_campaign(tmp_path, n)
    # generous for a loaded machine's greeting and envelope replies: only the data waits
    settings_file(tmp_path, f"\n[smtp]\ntimeout = 3\n[delivery]\nconnections = {k}\n")
    env = env_for(tmp_path, server)
    out = bcartnb("run", str(path), "--send", "--json", env=env, cwd=tmp_path)
    assert out.returncode == 4, out.stderr
    summary = json.loads(out.stdout)
    assert summary["status"] == "unfinished" and summary["sent"] == 0
    # The K mails in flight when the server stopped answering are lost after their data;
    # with no reply since on any connection, nothing more is handed over: exactly K, the
    # contract's window (one per connection), and what reached the server is just those.
    assert (summary["uncertain"], summary["pending"]) == (k, n - k)
    assert len(member_mails(server)) == k
    assert "after the message data" in summary["stopped"]
    readable = bcartnb("resume", summary["campaign_id"], env=env, cwd=tmp_path)
    assert readable.returncode == 4 and not readable.stdout.startswith(DONE_MESSAGE)
    # the resume is a new outage: again one mail per connection, no more
    assert len(member_mails(server)) == 2 * k


def wait_for_state(db: Path, state: str, timeout: float = 60.0) -> bool:
    """Block until a journal row is in ``state`` (polling the file another process writes)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if db.exists():
            with (
                contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as c,
                contextlib.suppress(sqlite3.OperationalError),  # not created yet
            ):
                query = "SELECT 1 FROM deliveries WHERE state = ?"
                if c.execute(query, (state,)).fetchone():
                    return True
        time.sleep(0.02)
    return False


def test_one_connection_lost_after_its_data_while_others_answer_does_not_stop_the_run(
    tmp_path: Path, smtp_server: Server
):
    # The first mail loses its connection after the data; the other three are held until
    # the loss is in the journal, then answered: those replies show the server answers,
    # so the run goes on and only the lost mail is uncertain.
    n = 20
    server = smtp_server(faults=Faults(drop_at={1}, drop_stage="DATA", hold_after=0))
    path = setup_campaign(tmp_path, n)
    settings_file(tmp_path, "\n[delivery]\nconnections = 4\n")
    env = env_for(tmp_path, server)
    proc = start_bcartnb("run", str(path), "--send", "--json", env=env, cwd=tmp_path)
    try:
        assert wait_for_state(tmp_path / "ledger.sqlite3", "uncertain")
        assert server.wait_held(3)
        server.release()
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 4, err
    summary = json.loads(out)
    assert (summary["sent"], summary["uncertain"], summary["pending"]) == (n - 1, 1, 0)
    assert member_mails(server) == everyone(n)


def test_every_recipient_refused_exits_5(tmp_path: Path, smtp_server: Server):
    server = smtp_server(faults=Faults(reject_all=True))
    path = setup_campaign(tmp_path, 4)
    env = env_for(tmp_path, server)
    out = bcartnb("run", str(path), "--send", env=env, cwd=tmp_path)
    assert out.returncode == 5, out.stderr
    assert not out.stdout.startswith(DONE_MESSAGE) and "拒否" in out.stdout
    assert history(env, tmp_path)[0]["status"] == "done"  # finished: nothing left to try


@pytest.mark.parametrize(
    ("extra", "key"),
    [
        ("\n[delivery]\nrate_per_hour = -1\n", "rate_per_hour"),
        ("\n[delivery]\nrate_per_second = 1e-300\n", "rate_per_second"),
        ("\n[delivery]\nretries = -1\n", "retries"),
        ("\n[delivery]\nconnections = 0\n", "connections"),
        ("\n[delivery]\nbackoff = nan\n", "backoff"),
        ("\n[smtp]\ntimeout = 0\n", "timeout"),
        ("\n[smtp]\nport = 70000\n", "port"),
    ],
)
def test_a_bad_delivery_number_is_refused_at_load(
    tmp_path: Path, smtp_server: Server, extra: str, key: str
):
    server = smtp_server()
    path = setup_campaign(tmp_path, 4)
    settings_file(tmp_path, extra)
    env = env_for(tmp_path, server)
    out = bcartnb("run", str(path), "--send", env=env, cwd=tmp_path)
    assert out.returncode == 2, out.stderr
    assert out.stderr.count("\n") == 1 and key in out.stderr and "Traceback" not in out.stderr
    assert server.received == [] and server.transactions == 0
    assert not (tmp_path / "ledger.sqlite3").exists()  # nothing reserved, nothing marked


def test_the_ledger_deleted_during_a_campaign_is_noticed(tmp_path: Path, smtp_server: Server):
    n = 10
    server = smtp_server(faults=Faults(hold_after=3))
    path = setup_campaign(tmp_path, n)
    env = env_for(tmp_path, server)
    proc = start_bcartnb("run", str(path), "--send", env=env, cwd=tmp_path)
    try:
        assert server.wait_held(1, timeout=60)
        (tmp_path / "ledger.sqlite3").unlink()
        server.release()
        _out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode not in (0, 4, 5), err
    assert "deleted or replaced" in err and "削除" in err and "Traceback" not in err
    assert len(member_mails(server)) < n  # it stopped instead of mailing on unrecorded


@pytest.mark.parametrize("pipelining", [False, True], ids=["plain", "pipelining"])
def test_killed_between_a_mail_from_and_its_hand_over_commit_mails_nobody_twice(
    tmp_path: Path, smtp_server: Server, pipelining: bool
):
    """A step writes the next mail's MAIL FROM while it commits that mail's hand-over (and
    the last mail's result). Killed in between, here while the commit waits for another
    process's write lock, the server has a sender and nothing more: the member is still
    pending and the resume mails it once; the mail whose result was in that commit is
    uncertain, as any mail in flight at a SIGKILL."""
    import os
    import signal

    from bcartnb.ledger import Ledger

    n = 8
    server = smtp_server(faults=Faults(hold_after=3, pipelining=pipelining))
    path = setup_campaign(tmp_path, n)
    settings_file(tmp_path, "\n[delivery]\nconnections = 1\n")
    env = env_for(tmp_path, server)
    proc = start_bcartnb("run", str(path), "--send", "--json", env=env, cwd=tmp_path)
    blocker = sqlite3.connect(tmp_path / "ledger.sqlite3", isolation_level=None)
    try:
        assert server.wait_held(1, timeout=60), "user3's mail never reached the server"
        blocker.execute("BEGIN IMMEDIATE")  # the next step's commit waits for this lock
        server.release()  # user3 accepted: the step begins user4, then waits to commit
        assert server.wait_transactions(5, timeout=60), "user4's MAIL FROM never came"
        os.kill(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=30)
        blocker.execute("ROLLBACK")
        blocker.close()
    assert server.rcpt_attempts["user4@example.co.jp"] == 0
    assert member_mails(server) == everyone(4)
    with Ledger.open(tmp_path / "ledger.sqlite3") as led:
        cid = str(led.campaigns()["campaign_id"].iloc[0])
        frame = led.deliveries(cid)
    states = dict(zip(frame["member_id"], frame["state"], strict=True))
    assert (states[1003], states[1004]) == ("sending", "pending")

    resumed = bcartnb("resume", cid, "--json", env=env, cwd=tmp_path)
    assert resumed.returncode == 4, resumed.stderr  # user3 is left uncertain
    out = json.loads(resumed.stdout)
    assert (out["uncertain"], out["sent"], out["pending"]) == (1, n - 1, 0)
    with Ledger.open(tmp_path / "ledger.sqlite3") as led:
        assert [r.member_id for r in led.uncertain(cid)] == [1003]
    assert member_mails(server) == everyone(n)  # user4 and the rest once, nobody twice
    quota = json.loads(bcartnb("quota", "--json", env=env, cwd=tmp_path).stdout)
    assert quota["used"] == n  # user4's begun transaction counted nothing


def test_a_hand_over_that_waits_longer_than_the_smtp_timeout_does_not_expire_its_mail(
    tmp_path: Path, smtp_server: Server
):
    """The MAIL FROM goes out before the hand-over commits; a commit that waits for another
    process's write lock longer than [smtp] timeout must not make that mail's reply overdue
    (the wait was ours, not the server's): it is sent on its first try."""
    from bcartnb.ledger import Ledger

    n, timeout, lock_for = 8, 1.0, 2.0
    server = smtp_server(faults=Faults(hold_after=3))
    path = setup_campaign(tmp_path, n)
    settings_file(tmp_path, f"{FAST}connections = 1\n\n[smtp]\ntimeout = {timeout}\n")
    env = env_for(tmp_path, server)
    proc = start_bcartnb("run", str(path), "--send", "--json", env=env, cwd=tmp_path)
    blocker = sqlite3.connect(tmp_path / "ledger.sqlite3", isolation_level=None)
    try:
        assert server.wait_held(1, timeout=60), "user3's mail never reached the server"
        blocker.execute("BEGIN IMMEDIATE")
        server.release()
        assert server.wait_transactions(5, timeout=60), "user4's MAIL FROM never came"
        time.sleep(lock_for)  # the scenario: the commit waits this long (the ledger allows 5 s)
        blocker.execute("ROLLBACK")
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=30)
        blocker.close()
    assert proc.returncode == 0, err
    assert json.loads(out)["sent"] == n and member_mails(server) == everyone(n)
    with Ledger.open(tmp_path / "ledger.sqlite3") as led:
        frame = led.deliveries(str(led.campaigns()["campaign_id"].iloc[0]))
    attempts = dict(zip(frame["member_id"], frame["attempts"], strict=True))
    assert attempts[1004] == 1, attempts


def test_a_month_full_at_midnight_stops_the_run_and_says_how_many_went_out(
    tmp_path: Path, smtp_server: Server
):
    from datetime import datetime

    from bcartnb.ledger import Ledger
    from bcartnb.quota import TOKYO

    nov = datetime(2026, 11, 30, 23, 59, 59, tzinfo=TOKYO)
    dec = datetime(2026, 12, 1, 0, 0, 1, tzinfo=TOKYO)
    n = 20
    server = smtp_server()
    setup_campaign(tmp_path, n, plan="light")
    env = env_for(tmp_path, server)
    settings = load_settings(tmp_path / "bcartnb.toml", env=env)
    db = tmp_path / "ledger.sqlite3"
    with Ledger.open(db) as led:  # another campaign filled December's 100 already
        rows = [(i, f"dec{i}@example.co.jp") for i in range(100)]
        led.claim(fingerprint="december", plan="light", params={}, recipients=rows, now=dec)
        cid = led.campaigns()["campaign_id"][0]
        led.reserve(cid, 100, "light", now=dec)
        led.mark_sending(cid, [(i, "pending") for i, _ in rows], now=dec)
        led.mark_results(cid, [(i, "sent", 250, "ok") for i, _ in rows], now=dec)
        assert led.release(cid, now=dec) == "done"
    # our campaign starts on 30 November; midnight strikes after its fifth mail
    with Ledger.open(db, clock=lambda: dec if len(server.received) >= 5 else nov) as led:
        spec = campaign.load_campaign(tmp_path / "campaign.toml")
        plan = campaign.plan_campaign(spec, settings, ledger=led)
        summary = campaign.send(plan, ledger=led, progress=False, connections=1)
    assert summary.exit_code == 4 and summary.status == "unfinished"
    assert summary.sent == len(member_mails(server)) == 5  # the true count, not "nothing"
    assert summary.pending == n - 5
    # the sixth mail's MAIL FROM went out while its refused hand-over was being committed;
    # it was given up there: its recipient never reached the server
    assert sum(server.rcpt_attempts.values()) == 5 and server.transactions == 6
    assert "2026-12" in str(summary.stopped) and "nothing was sent" not in str(summary.stopped)
    assert "送信済み 5" in summary.message() and "bcartnb resume" in summary.message()


def test_a_resume_the_quota_refuses_says_what_the_campaign_already_sent(
    tmp_path: Path, smtp_server: Server
):
    from bcartnb.ledger import Ledger

    # ライトプラン (100 a month). The campaign sends 21, then the server shuts down; another
    # campaign fills the month meanwhile; the resume is refused (exit 3) and says so truly.
    n = 30
    server = smtp_server(faults=Faults(shutdown_after=21))
    path = setup_campaign(tmp_path, n, plan="light")
    settings_file(tmp_path, "\n[delivery]\nconnections = 1\nretries = 0\n")
    env = env_for(tmp_path, server)
    first = bcartnb("run", str(path), "--send", "--json", env=env, cwd=tmp_path)
    assert first.returncode == 4, first.stderr
    out = json.loads(first.stdout)
    cid = out["campaign_id"]
    assert out["sent"] == 21 and out["pending"] + out["deferred"] == n - 21
    with Ledger.open(tmp_path / "ledger.sqlite3") as led:
        rows = [(i, f"other{i}@example.co.jp") for i in range(100 - used(env, tmp_path) - 2)]
        other = led.claim(fingerprint="other", plan="light", params={}, recipients=rows).campaign_id
        led.reserve(other, len(rows), "light")
        led.mark_sending(other, [(i, "pending") for i, _ in rows])
        led.mark_results(other, [(i, "sent", 250, "ok") for i, _ in rows])
        led.release(other)
    server.set_faults(Faults())
    received = len(server.received)
    refused = bcartnb("resume", cid, "--json", env=env, cwd=tmp_path)
    assert refused.returncode == 3, refused.stderr
    summary = json.loads(refused.stdout)
    assert (summary["campaign_id"], summary["status"], summary["exit_code"]) == (cid, "refused", 3)
    assert (summary["sent"], summary["sent_now"]) == (21, 0)
    assert summary["pending"] + summary["deferred"] == n - 21
    assert summary["quota"]["used_before"] == summary["quota"]["used_after"] == 98
    line = refused.stderr
    assert line.count("\n") == 1 and "Traceback" not in line
    assert "既に 21件を送信済み" in line and f"残りは {n - 21}件" in line
    assert "had already sent 21 mails" in line and f"bcartnb resume {cid}" in line
    text = bcartnb("resume", cid, env=env, cwd=tmp_path)
    assert text.returncode == 3 and text.stdout == "" and "既に 21件を送信済み" in text.stderr
    assert len(server.received) == received  # nothing was sent


def test_a_server_that_never_greets_costs_one_try_per_connection_not_per_mail(
    tmp_path: Path,
):
    import socket
    import threading

    n = 20
    accepted: list[socket.socket] = []
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def accept() -> None:  # takes every connection, never says 220
        listener.settimeout(0.05)
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        path = setup_campaign(tmp_path, n)
        settings_file(tmp_path, "\n[smtp]\ntimeout = 0.5\n")
        env = env_for(tmp_path, _Silent(listener.getsockname()[1]))  # type: ignore[arg-type]
        out = bcartnb("run", str(path), "--send", "--json", env=env, cwd=tmp_path)
    finally:
        stop.set()
        thread.join()
        for s in accepted:
            s.close()
        listener.close()
    assert out.returncode == 4, out.stderr
    summary = json.loads(out.stdout)
    assert (summary["sent"], summary["pending"], summary["uncertain"]) == (0, n, 0)
    assert len(accepted) <= 4  # the 4 connections, each tried once: no reconnect per mail
    assert used(env, tmp_path) == 0  # nothing started, nothing counted


class _Silent:
    """The environment of a server that listens and never speaks (env_for needs only env())."""

    def __init__(self, port: int) -> None:
        self.port = port

    def env(self) -> dict[str, str]:
        return {
            "BCARTNB_SMTP_HOST": "127.0.0.1",
            "BCARTNB_SMTP_PORT": str(self.port),
            "BCARTNB_SMTP_SECURITY": "none",
        }


def test_530_starttls_first_says_to_set_starttls_not_a_password(
    tmp_path: Path, smtp_server: Server
):
    server = smtp_server(security="starttls", require_starttls=True)
    path = setup_campaign(tmp_path, 3)
    env = env_for(tmp_path, server)
    env["BCARTNB_SMTP_SECURITY"] = "none"  # the shop forgot: the server wants STARTTLS
    out = bcartnb("run", str(path), "--send", "--json", env=env, cwd=tmp_path)
    assert out.returncode == 4, out.stderr
    stopped = json.loads(out.stdout)["stopped"]
    assert 'security = "starttls"' in stopped and "PASSWORD" not in stopped
    assert server.received == []


@pytest.mark.parametrize(
    ("args", "config"),
    [
        (["run", "{tmp}"], None),
        (["quota"], "{tmp}"),
        (["quota"], "/dev/zero"),
        (["run", "/dev/zero"], None),
        (["run", "{campaign}", "--test-to", ""], None),
    ],
)
def test_what_is_not_a_file_or_not_an_address_is_one_line_not_a_traceback(
    tmp_path: Path, smtp_server: Server, args: list[str], config: str | None
):
    server = smtp_server()
    path = setup_campaign(tmp_path, 2)
    env = env_for(tmp_path, server)
    if config is not None:
        env["BCARTNB_CONFIG"] = config.format(tmp=tmp_path)
    argv = [a.format(tmp=tmp_path, campaign=path) for a in args]
    out = bcartnb(*argv, env=env, cwd=tmp_path)
    assert out.returncode == 2, out.stderr
    assert out.stderr.count("\n") == 1 and "Traceback" not in out.stderr
    assert out.stderr.startswith("bcartnb: error: ")
    assert server.received == []


def test_a_closed_pipe_is_quiet(tmp_path: Path, smtp_server: Server):
    server = smtp_server()
    setup_campaign(tmp_path, 2)
    env = env_for(tmp_path, server)
    for args in (["quota"], ["campaigns"], ["members", "members.csv"]):
        proc = subprocess.Popen(
            [sys.executable, "-m", "bcartnb", *args],
            env=env,
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None
        proc.stdout.close()  # `bcartnb quota | true`: the reader is gone before we print
        _out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0 and err == "", (args, err)


def test_a_bad_keyword_number_is_refused_before_the_campaign_is_claimed(
    tmp_path: Path, smtp_server: Server
):
    from bcartnb.exceptions import SettingsError
    from bcartnb.ledger import Ledger

    server = smtp_server()
    setup_campaign(tmp_path, 3)
    settings = load_settings(tmp_path / "bcartnb.toml", env=env_for(tmp_path, server))
    plan = campaign.plan_campaign(campaign.load_campaign(tmp_path / "campaign.toml"), settings)
    for bad in ({"retries": -1}, {"rate_per_second": 1e-300}, {"connections": 0}):
        with pytest.raises(SettingsError):
            campaign.send(plan, progress=False, **bad)  # type: ignore[arg-type]
    with Ledger.open(settings.db) as led:
        assert led.campaigns().empty  # nothing claimed, nothing marked
    assert server.transactions == 0
