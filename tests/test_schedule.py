"""予約配信 (issue 27): `run --at`, `schedule`, `due` as real processes against a real SMTP
server, the clock set per process with BCARTNB_NOW: sent once at its time, two `due` at
once, 取消, a machine off past the time, the quota projected then enforced, a month boundary."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
from smtp_servers import TestServer
from test_cli_run import ADMIN, bcartnb, env_for, member_mails, setup_campaign

Server = Callable[..., TestServer]


def at(env: dict[str, str], now: str) -> dict[str, str]:
    """The environment of a process that believes it is ``now`` (Tokyo time)."""
    return {**env, "BCARTNB_NOW": now}


def another_campaign(tmp_path: Path, name: str, subject: str) -> Path:
    """A second mail to the same members (another subject: another mail, not already sent)."""
    path = tmp_path / f"{name}.toml"
    path.write_text(
        f'members = "members.csv"\nsubject = "{subject}"\n'
        'body = "{{ 会社名 }} 様\\n本文。\\n"\n',
        encoding="utf-8",
    )
    return path


def admin_subjects(server: TestServer) -> list[str]:
    """The subjects of the mails the admin got (admin copies and 予約配信 notices), decoded."""
    from email import message_from_bytes, policy

    return [
        str(message_from_bytes(r.raw, policy=policy.default)["Subject"])
        for r in server.received
        if r.recipients[0] == ADMIN
    ]


def body_of(raw: bytes) -> str:
    from email import message_from_bytes, policy

    msg = message_from_bytes(raw, policy=policy.default)
    part = msg.get_body(("plain",))
    assert part is not None
    return str(part.get_content())  # type: ignore[attr-defined]


def schedules(env: dict[str, str], cwd: Path) -> list[dict[str, object]]:
    done = bcartnb("schedule", "--all", "--json", env=env, cwd=cwd)
    assert done.returncode == 0, done.stderr
    rows: list[dict[str, object]] = json.loads(done.stdout)
    return rows


def test_scheduled_then_due_sends_once_to_the_members_of_send_time(
    tmp_path: Path, smtp_server: Server
) -> None:
    server = smtp_server()
    campaign = setup_campaign(tmp_path, 5)
    env = env_for(tmp_path, server)
    made = bcartnb(
        "run", str(campaign), "--at", "2026-12-10 09:00",
        env=at(env, "2026-12-09T10:00"), cwd=tmp_path,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    assert "送信時点の会員に送ります" in made.stdout
    assert "2026-12-10 09:00" in made.stdout and "{{ 会社名 }} 様へのご案内" in made.stdout
    assert "5 件" in made.stdout and "検索結果すべて" in made.stdout
    listed = bcartnb("schedule", env=at(env, "2026-12-09T10:01"), cwd=tmp_path)
    assert listed.returncode == 0 and "予約中" in listed.stdout and "5" in listed.stdout
    [row] = schedules(env, tmp_path)
    assert row["send_at"] == "2026-12-10T00:00:00+00:00" and row["month"] == "2026-12"

    early = bcartnb("due", env=at(env, "2026-12-10T08:59:59"), cwd=tmp_path)
    assert early.returncode == 0, early.stderr
    assert server.received == [] and early.stdout == ""

    # the mail is frozen when scheduled: a signature changed since changes nothing in it
    toml = tmp_path / "bcartnb.toml"
    toml.write_text(
        toml.read_text(encoding="utf-8").replace("千代田区1-1", "新住所 2-2"), encoding="utf-8"
    )
    # a member joins after the campaign was scheduled: the file is read when it is sent
    with (tmp_path / "members.csv").open("a", encoding="utf-8") as fh:
        fh.write("2000,新規商事,佐藤,花子,new@example.co.jp,大阪府,受け取る\n")
    due = bcartnb("due", env=at(env, "2026-12-10T09:00:30"), cwd=tmp_path)
    assert due.returncode == 0, due.stderr + due.stdout
    expected = Counter([*(f"user{i}@example.co.jp" for i in range(5)), "new@example.co.jp"])
    assert member_mails(server) == expected
    assert "遅れて" not in due.stdout  # half a minute is cron's, not a delay
    bodies = [body_of(r.raw) for r in server.received if r.recipients[0] != ADMIN]
    assert all("千代田区1-1" in b and "新住所" not in b for b in bodies), bodies[0]

    again = bcartnb("due", env=at(env, "2026-12-10T09:01:00"), cwd=tmp_path)
    assert again.returncode == 0 and again.stdout == ""
    assert member_mails(server) == expected
    [row] = schedules(env, tmp_path)
    assert row["status"] == "sent" and row["exit_code"] == 0 and row["campaign_id"]
    history = json.loads(bcartnb("campaigns", "--json", env=env, cwd=tmp_path).stdout)
    assert [(r["campaign_id"], r["sent"]) for r in history] == [(row["campaign_id"], 6)]


def test_two_due_at_once_send_each_campaign_once(tmp_path: Path, smtp_server: Server) -> None:
    server = smtp_server()
    first = setup_campaign(tmp_path, 8)
    second = another_campaign(tmp_path, "second", "二通目のご案内")
    env = at(env_for(tmp_path, server), "2026-12-01T08:00")
    for path in (first, second):
        made = bcartnb("run", str(path), "--at", "2026-12-01 09:00", env=env, cwd=tmp_path)
        assert made.returncode == 0, made.stderr
    later = at(env, "2026-12-01T09:00:05")
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "bcartnb", "due", "--json"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=later,
            cwd=tmp_path,
        )
        for _ in range(2)
    ]
    results = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], results
    taken = [s["schedule_id"] for out, _ in results for s in json.loads(out)]
    # each scheduled campaign taken by exactly one of them (a broken claim would show here
    # even though the ledger's per-address claims would still keep the mails single)
    assert len(taken) == len(set(taken)) == 2
    # each member got each of the two mails exactly once
    assert member_mails(server) == Counter({f"user{i}@example.co.jp": 2 for i in range(8)})
    # and, per campaign, one admin copy and one 予約配信 notice
    assert len(server.received) == 16 + 4
    assert sum("【予約配信】送信しました" in s for s in admin_subjects(server)) == 2
    assert {s["status"] for s in schedules(env, tmp_path)} == {"sent"}


def test_cancel_before_its_time_sends_nothing(tmp_path: Path, smtp_server: Server) -> None:
    server = smtp_server()
    campaign = setup_campaign(tmp_path, 3)
    env = env_for(tmp_path, server)
    made = bcartnb(
        "run", str(campaign), "--at", "2026-12-10 09:00", "--json",
        env=at(env, "2026-12-09T10:00"), cwd=tmp_path,
    )  # fmt: skip
    sid = json.loads(made.stdout)["schedule_id"]
    shown = bcartnb("schedule", "show", sid, env=env, cwd=tmp_path)
    assert shown.returncode == 0 and "本文です。" in shown.stdout and "予約中" in shown.stdout
    gone = bcartnb("schedule", "cancel", sid, env=at(env, "2026-12-09T11:00"), cwd=tmp_path)
    assert gone.returncode == 0 and "取り消しました" in gone.stdout
    due = bcartnb("due", env=at(env, "2026-12-10T09:00:30"), cwd=tmp_path)
    assert due.returncode == 0 and due.stdout == "" and server.received == []
    twice = bcartnb("schedule", "cancel", sid, env=env, cwd=tmp_path)
    assert twice.returncode == 2 and "取り消せません" in twice.stderr
    assert twice.stderr.count("\n") == 1 and "Traceback" not in twice.stderr
    unknown = bcartnb("schedule", "cancel", "r-nope", env=env, cwd=tmp_path)
    assert unknown.returncode == 2 and "r-nope" in unknown.stderr
    [row] = schedules(env, tmp_path)
    assert row["status"] == "cancelled"


def test_a_machine_off_past_the_time_sends_late_or_expires(
    tmp_path: Path, smtp_server: Server
) -> None:
    server = smtp_server()
    campaign = setup_campaign(tmp_path, 4)
    env = env_for(tmp_path, server)
    made = bcartnb(
        "run", str(campaign), "--at", "2026-12-10 09:00",
        env=at(env, "2026-12-09T10:00"), cwd=tmp_path,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    late = bcartnb("due", env=at(env, "2026-12-10T12:05"), cwd=tmp_path)
    assert late.returncode == 0, late.stderr
    assert "3時間5分遅れて送信しました" in late.stdout
    assert len(member_mails(server)) == 4

    other = another_campaign(tmp_path, "other", "翌日のご案内")
    made = bcartnb(
        "run", str(other), "--at", "2026-12-11 09:00",
        env=at(env, "2026-12-10T13:00"), cwd=tmp_path,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    expired = bcartnb("due", env=at(env, "2026-12-12T09:01"), cwd=tmp_path)
    assert expired.returncode == 2, expired.stderr
    assert "期限切れ" in expired.stdout and "24時間" in expired.stdout
    assert "【予約配信】期限切れのため送りませんでした: 翌日のご案内" in admin_subjects(server)
    assert len(member_mails(server)) == 4  # nothing of the expired one
    statuses = {r["subject"]: r["status"] for r in schedules(env, tmp_path)}
    assert statuses == {"{{ 会社名 }} 様へのご案内": "sent", "翌日のご案内": "expired"}
    # a longer limit given on the command line does not revive an expired campaign
    again = bcartnb(
        "due", "--late-limit-hours", "72", env=at(env, "2026-12-12T09:02"), cwd=tmp_path
    )
    assert again.returncode == 0 and again.stdout == ""


def test_quota_warned_when_scheduling_and_enforced_when_sending(
    tmp_path: Path, smtp_server: Server
) -> None:
    server = smtp_server()
    first = setup_campaign(tmp_path, 60, plan="light")  # cap 100 a month
    second = another_campaign(tmp_path, "second", "二通目のご案内")
    env = env_for(tmp_path, server)
    one = bcartnb(
        "run", str(first), "--at", "2026-12-10 09:00", "--json",
        env=at(env, "2026-12-09T10:00"), cwd=tmp_path,
    )  # fmt: skip
    assert one.returncode == 0 and json.loads(one.stdout)["warnings"] == []
    two = bcartnb(
        "run", str(second), "--at", "2026-12-10 09:30",
        env=at(env, "2026-12-09T10:00"), cwd=tmp_path,
    )  # fmt: skip
    assert two.returncode == 0, two.stderr
    assert "予約済み 60件" in two.stdout and "100件" in two.stdout and "20件超えます" in two.stdout

    due = bcartnb("due", env=at(env, "2026-12-10T09:30:10"), cwd=tmp_path)
    assert due.returncode == 3, due.stderr + due.stdout  # the second did not fit: nothing of it
    assert Counter(member_mails(server).values()) == Counter({1: 60})
    statuses = [r["status"] for r in schedules(env, tmp_path)]
    assert statuses == ["sent", "refused"]
    told = admin_subjects(server)
    assert "【予約配信】送信できませんでした: 二通目のご案内" in told
    assert any(s.startswith("【予約配信】送信しました") for s in told)
    quota = json.loads(
        bcartnb("quota", "--month", "2026-12", "--json", env=env, cwd=tmp_path).stdout
    )
    assert quota["used"] == 60


def test_a_campaign_scheduled_into_next_month_counts_against_next_month(
    tmp_path: Path, smtp_server: Server
) -> None:
    server = smtp_server()
    now = setup_campaign(tmp_path, 60, plan="light")
    december = another_campaign(tmp_path, "december", "12月のご案内")
    env = env_for(tmp_path, server)
    sent = bcartnb("run", str(now), "--send", env=at(env, "2026-11-20T10:00"), cwd=tmp_path)
    assert sent.returncode == 0, sent.stderr
    # 60 of November's 100 are used: 60 more fit in December, not in November
    into_dec = bcartnb(
        "run", str(december), "--at", "2026-12-01 00:00", "--json",
        env=at(env, "2026-11-20T10:05"), cwd=tmp_path,
    )  # fmt: skip
    assert into_dec.returncode == 0, into_dec.stderr
    made = json.loads(into_dec.stdout)
    assert made["month"] == "2026-12" and made["warnings"] == []
    in_nov = bcartnb(
        "run", str(december), "--at", "2026-11-30 23:59", "--json",
        env=at(env, "2026-11-20T10:06"), cwd=tmp_path,
    )  # fmt: skip
    nov = json.loads(in_nov.stdout)
    assert nov["month"] == "2026-11" and any("2026-11" in w for w in nov["warnings"])
    assert bcartnb("schedule", "cancel", nov["schedule_id"], env=env, cwd=tmp_path).returncode == 0

    due = bcartnb("due", env=at(env, "2026-12-01T00:00:20"), cwd=tmp_path)
    assert due.returncode == 0, due.stderr + due.stdout
    assert Counter(member_mails(server).values()) == Counter({2: 60})
    month = {
        m: json.loads(bcartnb("quota", "--month", m, "--json", env=env, cwd=tmp_path).stdout)[
            "used"
        ]
        for m in ("2026-11", "2026-12")
    }
    assert month == {"2026-11": 60, "2026-12": 60}


def test_bad_times_are_refused_in_japanese(tmp_path: Path, smtp_server: Server) -> None:
    server = smtp_server()
    campaign = setup_campaign(tmp_path, 2)
    env = at(env_for(tmp_path, server), "2026-12-09T10:00")
    for when, words in (
        ("2026-12-09 09:59", "過ぎています"),
        ("明日の朝", "予約日時は"),
        ("2026-13-01 09:00", "予約日時は"),
    ):
        done = bcartnb("run", str(campaign), "--at", when, env=env, cwd=tmp_path)
        assert done.returncode == 2 and words in done.stderr, done.stderr
        assert done.stderr.count("\n") == 1
    bad_clock = bcartnb("due", env={**env, "BCARTNB_NOW": "tomorrow"}, cwd=tmp_path)
    assert bad_clock.returncode == 2 and "BCARTNB_NOW" in bad_clock.stderr
    assert schedules(env, tmp_path) == [] and server.received == []


EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _unit(path: Path) -> dict[str, dict[str, str]]:
    """A systemd unit file's sections and keys (one value per key in these two)."""
    sections: dict[str, dict[str, str]] = {}
    current = ""
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = line.strip("[]")
            sections[current] = {}
            continue
        key, _, value = line.partition("=")
        assert current and key.strip() and value.strip(), f"{path.name}: {raw!r}"
        sections[current][key.strip()] = value.strip()
    return sections


def test_the_systemd_units_run_bcartnb_due_every_minute(tmp_path: Path, smtp_server: Server):
    """The unit files name `bcartnb due` in the shop folder every minute; with their paths put
    to this machine's, systemd-analyze verifies them (where installed) and the service's
    command runs for real and sends a due campaign."""
    import shlex
    import shutil

    service = _unit(EXAMPLES / "systemd" / "bcartnb-due.service")
    timer = _unit(EXAMPLES / "systemd" / "bcartnb-due.timer")
    assert service["Service"]["Type"] == "oneshot"
    command = shlex.split(service["Service"]["ExecStart"])
    assert Path(command[0]).name == "bcartnb" and command[1:] == ["due"]
    assert timer["Timer"]["OnCalendar"] == "*-*-* *:*:00" and timer["Timer"]["Persistent"] == "true"
    assert timer["Install"]["WantedBy"] == "timers.target"

    here = Path(sys.executable).parent / "bcartnb"
    shop = tmp_path / "shop"
    shop.mkdir()
    units = tmp_path / "units"
    units.mkdir()
    for name in ("bcartnb-due.service", "bcartnb-due.timer"):
        text = (EXAMPLES / "systemd" / name).read_text(encoding="utf-8")
        text = text.replace(command[0], str(here)).replace("/srv/shop", str(shop))
        text = text.replace("User=shop\n", "")
        (units / name).write_text(text, encoding="utf-8")
    if shutil.which("systemd-analyze"):
        verified = subprocess.run(
            ["systemd-analyze", "verify", str(units / "bcartnb-due.timer")],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert verified.returncode == 0, verified.stderr

    server = smtp_server()
    campaign = setup_campaign(shop, 2)
    env = env_for(shop, server)
    made = bcartnb(
        "run", str(campaign), "--at", "2026-12-10 09:00", env=at(env, "2026-12-09T10:00"), cwd=shop
    )
    assert made.returncode == 0, made.stderr
    ran_as = shlex.split(_unit(units / "bcartnb-due.service")["Service"]["ExecStart"])
    workdir = _unit(units / "bcartnb-due.service")["Service"]["WorkingDirectory"]
    done = subprocess.run(
        ran_as, capture_output=True, text=True, timeout=120, cwd=workdir,
        env=at(env, "2026-12-10T09:00:20"),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert len(member_mails(server)) == 2


def test_the_crontab_runs_bcartnb_due_every_minute_in_the_shop() -> None:
    lines = [
        line
        for line in (EXAMPLES / "crontab").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#") and "=" not in line.split()[0]
    ]
    due = [line for line in lines if line.rstrip().split(">>")[0].endswith("bcartnb due ")]
    assert len(due) == 1, lines
    fields = due[0].split(None, 5)
    assert fields[:5] == ["*", "*", "*", "*", "*"]  # every minute
    assert fields[5].startswith("cd /srv/shop && ") and "%" not in fields[5]


def test_cancel_while_due_sends_it_stops_between_mails(tmp_path: Path, smtp_server: Server):
    """取消 during the send: `due` stops as Ctrl-C stops a run, the rest is never sent, and
    no later `due` takes the campaign up again."""
    import signal

    from smtp_servers import Faults

    n = 30
    server = smtp_server(faults=Faults(hold_after=5))
    campaign = setup_campaign(tmp_path, n)
    env = env_for(tmp_path, server)
    made = bcartnb(
        "run", str(campaign), "--at", "2026-12-10 09:00", "--json",
        env=at(env, "2026-12-09T10:00"), cwd=tmp_path,
    )  # fmt: skip
    sid = json.loads(made.stdout)["schedule_id"]
    later = at(env, "2026-12-10T09:00:10")
    proc = subprocess.Popen(
        [sys.executable, "-m", "bcartnb", "due"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=later,
        cwd=tmp_path,
    )
    try:
        assert server.wait_held(4, timeout=60), "due never got its mails in flight"
        gone = bcartnb("schedule", "cancel", sid, env=later, cwd=tmp_path)
        assert gone.returncode == 0, gone.stderr
        assert "送信中でした" in gone.stdout
        server.release()  # the mails in flight get their answers while it stops
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "送信中に取り消しました" in out
    sent = sum(member_mails(server).values())
    assert 5 <= sent < n and max(member_mails(server).values()) == 1
    [row] = schedules(env, tmp_path)
    assert row["status"] == "cancelled" and row["campaign_id"]
    history = json.loads(bcartnb("campaigns", "--json", env=env, cwd=tmp_path).stdout)
    assert history[0]["status"] == "cancelled" and history[0]["sent"] == sent
    assert history[0]["cancelled"] == n - sent
    again = bcartnb("due", env=at(env, "2026-12-10T09:05"), cwd=tmp_path)
    assert again.returncode == 0 and again.stdout == ""
    assert sum(member_mails(server).values()) == sent  # nothing after 取消


def test_a_due_killed_mid_send_is_taken_over_and_nobody_is_mailed_twice(
    tmp_path: Path, smtp_server: Server
) -> None:
    import signal

    from smtp_servers import Faults

    n = 20
    server = smtp_server(faults=Faults(hold_after=6))
    campaign = setup_campaign(tmp_path, n)
    env = env_for(tmp_path, server)
    made = bcartnb(
        "run", str(campaign), "--at", "2026-12-10 09:00",
        env=at(env, "2026-12-09T10:00"), cwd=tmp_path,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    later = at(env, "2026-12-10T09:00:10")
    proc = subprocess.Popen(
        [sys.executable, "-m", "bcartnb", "due"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=later,
        cwd=tmp_path,
    )
    try:
        assert server.wait_held(4, timeout=60), "due never got its mails in flight"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    server.release()  # the server answers again; the mails held when it died stay uncertain
    [row] = schedules(env, tmp_path)
    assert row["status"] == "sending"  # its process is gone: the next due takes it over
    again = bcartnb("due", env=at(env, "2026-12-10T09:01:10"), cwd=tmp_path)
    # the mails lost in flight are uncertain: never resent on their own (exit 4, resume says how)
    assert again.returncode == 4, again.stderr + again.stdout
    mails = member_mails(server)
    assert max(mails.values()) == 1 and len(mails) == n
    [row] = schedules(env, tmp_path)
    assert row["status"] == "sent" and row["exit_code"] == 4
    third = bcartnb("due", env=at(env, "2026-12-10T09:02:10"), cwd=tmp_path)
    assert third.returncode == 0 and third.stdout == ""


def test_due_in_a_shop_without_a_ledger_yet_creates_nothing(tmp_path: Path, smtp_server: Server):
    server = smtp_server()
    setup_campaign(tmp_path, 1)
    env = env_for(tmp_path, server)
    done = bcartnb("due", env=env, cwd=tmp_path)
    assert done.returncode == 0 and done.stdout == "" and done.stderr == ""
    assert not (tmp_path / "ledger.sqlite3").exists()
    listed = bcartnb("schedule", env=env, cwd=tmp_path)
    assert listed.returncode == 0 and "予約中の配信はありません" in listed.stdout
    assert not (tmp_path / "ledger.sqlite3").exists()


def test_the_notebooks_send_at_schedules_and_due_sends_it(
    tmp_path: Path, smtp_server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    """papermill with ``send_at``: the run is a dry run that schedules; `due` sends it then."""
    import papermill

    server = smtp_server()
    setup_campaign(tmp_path, 3)
    env = at(env_for(tmp_path, server), "2026-12-09T10:00")
    for key, value in env.items():
        if key.startswith("BCARTNB_") or key in server.env():
            monkeypatch.setenv(key, value)
    out = tmp_path / "out.ipynb"
    papermill.execute_notebook(
        str(Path(__file__).resolve().parent.parent / "notebooks" / "campaign.ipynb"),
        str(out),
        parameters={
            "members": str(tmp_path / "members.csv"),
            "subject": "ノートブックからの予約",
            "body": "{{ 会社名 }} 様\n本文。\n",
            "send_at": "2026-12-10 09:00",
            "report_html": "",
        },
        kernel_name="python3",
        cwd=str(tmp_path),
        progress_bar=False,
    )
    assert "予約しました: r-20261210-0900-" in out.read_text(encoding="utf-8")
    assert server.received == []  # the notebook's own run is a dry run
    [row] = schedules(env, tmp_path)
    assert (row["status"], row["subject"], row["projected"]) == (
        "scheduled",
        "ノートブックからの予約",
        3,
    )
    due = bcartnb("due", env=at(env, "2026-12-10T09:00:30"), cwd=tmp_path)
    assert due.returncode == 0, due.stderr
    assert len(member_mails(server)) == 3
