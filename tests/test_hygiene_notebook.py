"""notebooks/list_hygiene.ipynb executed for real by papermill, after a real campaign."""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Callable
from pathlib import Path

import papermill
import pytest
from smtp_servers import TestServer
from test_hygiene_scan import bcartnb, dsn, maildir_with, mid, send_campaign, setup_shop

from bcartnb.report import read_summary

Server = Callable[..., TestServer]
NOTEBOOK = Path(__file__).resolve().parent.parent / "notebooks" / "list_hygiene.ipynb"


def execute(tmp_path: Path, **params: object) -> Path:
    out = tmp_path / "list_hygiene.out.ipynb"
    papermill.execute_notebook(
        str(NOTEBOOK),
        str(out),
        parameters=params,
        kernel_name="python3",
        cwd=str(tmp_path),
        progress_bar=False,
    )
    return out


def test_the_notebook_scans_charts_the_bounce_rate_and_writes_the_bcart_export(
    tmp_path: Path, smtp_server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = smtp_server()
    env = setup_shop(tmp_path, server, 4)
    cid = send_campaign(tmp_path, env)
    md = maildir_with(
        tmp_path / "bounces",
        [
            dsn("user1@example.co.jp", mid(cid, 1001), own_id="h1@mx"),
            dsn("user3@example.co.jp", mid(cid, 1003), own_id="s3@mx", status="4.2.2"),
            # quotes nothing of ours: waits for the marketer, masked
            re.sub(rb"(?m)^.*bcartnb\.[^\n]*\n", b"", dsn("user2@example.co.jp", "", own_id="u2")),
            dsn("stranger@example.jp", "", own_id="x@evil"),  # never mailed: ignored
        ],
    )
    for key in ("BCARTNB_CONFIG", "BCARTNB_SMTP_HOST", "BCARTNB_SMTP_PORT"):
        monkeypatch.setenv(key, env[key])
    export = tmp_path / "bcart_suppressions.csv"
    out = execute(
        tmp_path,
        source=str(md),
        export=str(export),
        members=str(tmp_path / "members.csv"),
    )
    summary = read_summary(out)
    assert (summary["scanned"], summary["hard"], summary["soft"], summary["suppressed_new"]) == (
        4,
        1,
        1,
        1,
    )
    assert (summary["unverified"], summary["unmatched"]) == (1, 1)
    assert summary["unmatched_reasons"] == {"never_mailed": 1}
    assert [n["address"] for n in summary["unverified_notices"]] == ["u***@example.co.jp"]
    [row] = summary["campaigns"]
    assert (row["campaign_id"], row["sent"], row["bounces"]) == (cid, 4, 2)
    assert row["rate"] == pytest.approx(0.5)
    # a hard bounce is not an opt-out: the import file stays empty, the review file has it
    assert summary["export"] == {"rows": 0, "without_id": 0, "bounces": 1}
    rows = list(csv.reader(io.StringIO(export.read_bytes().decode("cp932"))))
    assert rows == [["会員ID", "メール案内"]]
    review = tmp_path / "bcart_suppressions-bounces.csv"
    bounced = list(csv.reader(io.StringIO(review.read_bytes().decode("cp932"))))
    assert [r[:3] for r in bounced[1:]] == [["不達", "不達（恒久的なエラー）", "1001"]]

    text = out.read_text(encoding="utf-8")
    assert "user1@example.co.jp" not in text and "u***@example.co.jp" in text  # masked
    assert "user2@example.co.jp" not in text and "確認待ちの通知（伏せ字）" in text
    assert "bcartnb bounces confirm" in text
    # the tables of campaigns, suppressions and pending notices carry no pandas row numbers
    assert cid in text and '<th style=\\"text-align:left\\">0</th>' not in text
    cells = json.loads(text)["cells"]
    assert any("image/png" in o.get("data", {}) for c in cells for o in c.get("outputs", []))
    # the same mailbox again: nothing new, the report still there
    again = read_summary(execute(tmp_path, source=str(md)))
    assert (again["hard"], again["soft"], again["suppressed_new"], again["repeated"]) == (
        0,
        0,
        0,
        3,
    )
    listed = json.loads(bcartnb("suppressions", "--json", env=env, cwd=tmp_path).stdout)
    assert [r["address"] for r in listed] == ["user1@example.co.jp"]


def test_without_a_source_the_notebook_only_reports(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "bcartnb.toml").write_text(
        'plan = "プラン10"\nfrom = "shop@example.co.jp"\ndb = "ledger.sqlite3"\n', encoding="utf-8"
    )
    monkeypatch.setenv("BCARTNB_CONFIG", str(tmp_path / "bcartnb.toml"))
    out = execute(tmp_path, month="2026-11")
    summary = read_summary(out)
    assert summary == {"month": "2026-11", "campaigns": []}
    # the header says whose list, and which period; no pandas row numbers anywhere
    text = out.read_text(encoding="utf-8")
    assert "配信停止・不達のレポート" in text and "2026-11-01 〜 2026-11-30" in text
    assert "shop@example.co.jp" in text
