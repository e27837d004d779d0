"""The notebooks executed for real: papermill on the venv's python3 kernel, real SMTP servers.

papermill's ``execute_notebook`` takes no environment, and the kernel inherits this
process's: each test sets ``BCARTNB_*`` with monkeypatch (restored afterwards by the autouse
isolation fixture's monkeypatch) before executing.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import papermill
import pytest
from nbconvert import HTMLExporter
from papermill.exceptions import PapermillExecutionError
from secrets_scan import SECRET_ENV, SECRETS, assert_no_secret
from smtp_servers import TestServer

from bcartnb.audience import build_audience
from bcartnb.members import read_members
from bcartnb.report import SUMMARY_MIMETYPE, demo_path, read_summary

Server = Callable[..., TestServer]
REPO = Path(__file__).resolve().parent.parent
CAMPAIGN = REPO / "notebooks" / "campaign.ipynb"
TEMPLATES = REPO / "notebooks" / "templates.ipynb"
ADMIN = "admin@example.co.jp"
HEADER = "会員ID,会社名,担当者(姓),担当者(名),メールアドレス,都道府県,価格グループID,メール案内\n"


@pytest.fixture
def demo_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The demo shop's settings and a fresh ledger for the kernel."""
    monkeypatch.setenv("BCARTNB_CONFIG", str(demo_path("demo.toml")))
    monkeypatch.setenv("BCARTNB_DB", str(tmp_path / "ledger.sqlite3"))
    return tmp_path


def point_at(server: TestServer, monkeypatch: pytest.MonkeyPatch, **extra: str) -> None:
    for key, value in {**server.env(), **extra}.items():
        monkeypatch.setenv(key, value)


def write_members(path: Path, n: int, extra: str = "") -> Path:
    rows = [
        f"{2000 + i},テスト商事{i},山田,太郎{i},user{i}@example.co.jp,"
        f"{'東京都' if i % 2 else '大阪府'},{1 + i % 3},受け取る\n"
        for i in range(n)
    ]
    path.write_text(HEADER + "".join(rows) + extra, encoding="utf-8")
    return path


def run(tmp_path: Path, name: str = "out.ipynb", notebook: Path = CAMPAIGN, **params: Any) -> Path:
    out = tmp_path / name
    papermill.execute_notebook(
        str(notebook),
        str(out),
        parameters=params,
        kernel_name="python3",
        cwd=str(tmp_path),
        progress_bar=False,
    )
    return out


def member_mails(server: TestServer) -> list[str]:
    return [r.recipients[0] for r in server.received if r.recipients != (ADMIN,)]


def test_default_parameters_are_a_dry_run_of_the_demo_members(
    demo_env: Path, smtp_server: Server, monkeypatch: pytest.MonkeyPatch
):
    server = smtp_server()
    point_at(server, monkeypatch)
    out = run(demo_env)
    summary = read_summary(out)
    expected = build_audience(read_members(demo_path("demo_members.csv"))).summary()
    assert summary["dry_run"] is True
    assert summary["sent"] == 0
    assert {k: summary[k] for k in expected} == expected
    assert summary["quota"]["used_after"] == summary["quota"]["used_before"] + expected["sendable"]
    assert server.received == []
    text = out.read_text(encoding="utf-8")
    assert "条件なし（すべての会員）" in text  # the filter in words
    assert "image/png" in text  # the charts
    assert f"キャンペーンID: {summary['campaign_id']}" in text
    assert "bcartnb resume" not in text  # a dry run leaves nothing to resume


def test_send_delivers_and_records_the_summary(
    demo_env: Path, smtp_server: Server, monkeypatch: pytest.MonkeyPatch
):
    server = smtp_server()
    point_at(server, monkeypatch)
    members = write_members(
        demo_env / "members.csv",
        12,
        extra="2100,不正商事,佐藤,花子,bad address,東京都,1,受け取る\n",
    )
    out = run(
        demo_env,
        members=str(members),
        filter={"都道府県": "東京都"},
        template="HTMLニュースレター",
        send=True,
    )
    summary = read_summary(out)
    assert summary["dry_run"] is False
    assert summary["status"] == "done"
    assert (summary["selected"], summary["sendable"], summary["unsendable"]) == (7, 6, 1)
    assert summary["reasons"]["invalid_address"] == 1
    assert summary["sent"] == 6
    assert sorted(member_mails(server)) == sorted(f"user{i}@example.co.jp" for i in range(1, 12, 2))
    assert sum(r.recipients == (ADMIN,) for r in server.received) == 1
    text = out.read_text(encoding="utf-8")
    assert "都道府県が 東京都" in text
    assert "メール送信を完了いたしました。" in text
    for i in range(12):
        assert f"user{i}@example.co.jp" not in text  # masked everywhere
    assert "u***@example.co.jp" in text


def test_an_outage_fails_the_papermill_run_after_the_report_then_a_rerun_continues(
    demo_env: Path, smtp_server: Server, monkeypatch: pytest.MonkeyPatch
):
    server = smtp_server()
    point_at(server, monkeypatch)
    members = write_members(demo_env / "members.csv", 4)
    server.down()
    params = {"members": str(members), "template": "テキストニュースレター", "send": True}
    with pytest.raises(PapermillExecutionError) as info:
        run(demo_env, **params)
    assert info.value.ename == "IncompleteError"  # cron sees a failure ...
    summary = read_summary(demo_env / "out.ipynb")  # ... after the report was written
    assert summary["status"] == "unfinished" and summary["pending"] == 4
    assert "bcartnb resume " + summary["campaign_id"] in (demo_env / "out.ipynb").read_text(
        encoding="utf-8"
    )
    server.up()
    again = read_summary(run(demo_env, "again.ipynb", **params))  # the same campaign, continued
    assert again["campaign_id"] == summary["campaign_id"] and again["status"] == "done"
    assert sorted(member_mails(server)) == [f"user{i}@example.co.jp" for i in range(4)]


def test_unknown_filter_column_fails_naming_it_and_sends_nothing(
    demo_env: Path, smtp_server: Server, monkeypatch: pytest.MonkeyPatch
):
    server = smtp_server()
    point_at(server, monkeypatch)
    with pytest.raises(PapermillExecutionError, match="no_such_column") as info:
        run(demo_env, filter={"no_such_column": 1}, send=True)
    assert info.value.ename == "FilterError"
    assert server.received == []
    with pytest.raises(Exception, match="no campaign summary recorded"):
        read_summary(demo_env / "out.ipynb")


def test_no_secret_in_the_executed_notebooks_or_their_html(
    demo_env: Path, smtp_server: Server, monkeypatch: pytest.MonkeyPatch
):
    # every secret the shop holds is in the kernel's environment, the SMTP password used
    server = smtp_server(users={"shop": SECRETS["SMTP password"]}, auth_required=True)
    point_at(server, monkeypatch, BCARTNB_SMTP_USER="shop", **SECRET_ENV)
    members = write_members(demo_env / "members.csv", 3)
    out = run(demo_env, members=str(members), template="テキストニュースレター", send=True)
    assert read_summary(out)["sent"] == 3
    # the password was really used: the server only accepts mail after AUTH with it
    assert {r.auth_user for r in server.received} == {"shop"}
    folder = demo_env / "templates"
    shutil.copytree(demo_path("templates"), folder)
    previewed = run(
        demo_env,
        "templates-out.ipynb",
        notebook=TEMPLATES,
        templates_dir=str(folder),
        members=str(members),
        template="テキストニュースレター",
        member_id=2001,
    )
    pages = [HTMLExporter().from_filename(str(nb))[0] for nb in (out, previewed)]
    assert SUMMARY_MIMETYPE in out.read_text(encoding="utf-8")
    # the notebooks, their HTML, the mails, and every file the kernel wrote (ledger, reports)
    assert_no_secret(*pages, *(r.raw for r in server.received), demo_env)


def test_templates_notebook_previews_and_saves(demo_env: Path, monkeypatch: pytest.MonkeyPatch):
    folder = demo_env / "templates"
    shutil.copytree(demo_path("templates"), folder)
    members = write_members(demo_env / "members.csv", 2)
    out = run(
        demo_env,
        notebook=TEMPLATES,
        templates_dir=str(folder),
        members=str(members),
        template="テキストニュースレター",
        member_id=2001,
        save_as="年末のご挨拶",
        save_subject="{{ 会社名 }} 様 年末のご挨拶",
        save_body="{{ 担当者名 }} 様\n本年もありがとうございました。\n",
    )
    text = out.read_text(encoding="utf-8")
    assert "テスト商事1 様へ" in text  # the preview of member 2001
    assert "user1@example.co.jp" not in text
    saved = (folder / "年末のご挨拶.txt").read_text(encoding="utf-8")
    assert "本年もありがとうございました。" in saved
    # the repository's demo templates are untouched
    assert not (demo_path("templates") / "年末のご挨拶.txt").exists()


def test_templates_notebook_refuses_a_template_that_cannot_render(demo_env: Path):
    folder = demo_env / "templates"
    folder.mkdir()
    with pytest.raises(PapermillExecutionError, match="TemplateError"):
        run(
            demo_env,
            notebook=TEMPLATES,
            templates_dir=str(shutil.copytree(demo_path("templates"), folder, dirs_exist_ok=True)),
            save_as="壊れた",
            save_subject="{{ 存在しない項目 }}",
            save_body="本文",
        )
    assert not (folder / "壊れた.txt").exists()


def _subprocess_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BCARTNB_")}
    env.update(extra)
    return env


def test_make_demo_sends_to_the_sink_and_writes_the_report(tmp_path: Path):
    proc = subprocess.run(
        [sys.executable, "-m", "bcartnb.demo", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        env=_subprocess_env(),
    )
    assert proc.returncode == 0, proc.stderr
    reports = sorted((tmp_path / "reports").glob("campaign-*.ipynb"))
    assert len(reports) == 1
    summary = read_summary(reports[0])
    assert summary["sent"] > 0 and summary["failed"] == 0
    assert reports[0].name == f"campaign-{summary['campaign_id']}.ipynb"
    # the injected parameters read as written (papermill alone would write \\uXXXX escapes)
    (injected,) = [
        "".join(c["source"])
        for c in json.loads(reports[0].read_text(encoding="utf-8"))["cells"]
        if "injected-parameters" in c["metadata"].get("tags", [])
    ]
    assert "'東京都'" in injected and "HTMLニュースレター" in injected
    assert "\\u" not in injected
    html = reports[0].with_suffix(".html")
    assert "メール送信を完了いたしました。" in html.read_text(encoding="utf-8")
    mails = list((tmp_path / "demo-out" / "Maildir" / "new").iterdir())
    assert len(mails) == summary["sent"] + 1  # and the admin copy
    assert f"{len(mails)} 通" in proc.stdout
    assert str(html) in proc.stdout and "Maildir" in proc.stdout
    # a second run starts from a fresh demo-out (a fresh ledger: no repeat refusal)
    again = subprocess.run(
        [sys.executable, "-m", "bcartnb.demo", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        env=_subprocess_env(),
    )
    assert again.returncode == 0, again.stderr
    assert len(list((tmp_path / "demo-out" / "Maildir" / "new").iterdir())) == len(mails)
    assert len(list((tmp_path / "reports").glob("campaign-*.ipynb"))) == 2


def test_nbval_lax_runs_both_notebooks(tmp_path: Path):
    """The committed notebooks run top to bottom and their checked cells match (no send)."""
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "--nbval-lax",
            "--nbval-current-env",
            "-p",
            "no:cacheprovider",
            "-q",
            str(CAMPAIGN),
            str(TEMPLATES),
        ],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=REPO,
        env=_subprocess_env(
            BCARTNB_CONFIG=str(demo_path("demo.toml")),
            BCARTNB_DB=str(tmp_path / "ledger.sqlite3"),
            # nowhere to send: a send would fail, and the default is a dry run
            BCARTNB_SMTP_HOST="127.0.0.1",
            BCARTNB_SMTP_PORT="9",
        ),
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert " passed" in proc.stdout and "failed" not in proc.stdout
