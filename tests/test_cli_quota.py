"""``bcartnb quota``: the contract's JSON, the Japanese summary, and one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest

from bcartnb.cli import main
from bcartnb.ledger import Ledger
from bcartnb.quota import TOKYO, month_of, now_tokyo

NOV = datetime(2026, 11, 20, 10, 0, tzinfo=TOKYO)


@pytest.fixture
def db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "ledger.sqlite3"
    monkeypatch.setenv("BCARTNB_DB", str(path))
    return path


def record_campaign(
    db: Path,
    cid: str,
    sent: int,
    now: datetime = NOV,
    plan: str = "plan10",
    params: dict[str, str] | None = None,
) -> None:
    """A finished campaign of ``sent`` mails plus a test send and an admin copy (not counted)."""
    with Ledger.open(db, clock=lambda: now) as led:
        led.claim(
            fingerprint=cid,
            plan=plan,
            params=params or {},
            recipients=[(i, f"m{i}@example.jp") for i in range(sent)],
            campaign_id=cid,
        )
        led.reserve(cid, sent, plan)
        led.mark_sending(cid, [(i, "pending") for i in range(sent)])
        led.mark_results(cid, [(i, "sent", 250, "ok") for i in range(sent)])
        led.record_send("test", "me@shop.example", campaign_id=cid)
        led.claim_admin_copy(cid)
        led.mark_admin_copy(cid, "admin@shop.example")
        led.release(cid)


def run_json(capsys: pytest.CaptureFixture[str], *args: str) -> dict:  # type: ignore[type-arg]
    assert main(["quota", "--json", *args]) == 0
    return json.loads(capsys.readouterr().out)  # type: ignore[no-any-return]


def test_json_has_the_contract_keys_and_counts(
    db: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BCARTNB_PLAN", "plan10")
    subject = {"subject": "{{ 会社名 }} 様\r\n12月のご案内"}
    record_campaign(db, "20261120-100000-aaaaaa", 150, params=subject)
    late = datetime(2026, 11, 20, 23, 30, tzinfo=TOKYO)  # 14:30 UTC: the JST date is shown
    record_campaign(db, "20261120-110000-bbbbbb", 30, now=late, params={"template": "お知らせ"})
    record_campaign(db, "20261015-090000-cccccc", 99, now=datetime(2026, 10, 15, tzinfo=TOKYO))
    out = run_json(capsys, "--month", "2026-11")
    assert {k: out[k] for k in ("plan", "month", "cap", "used", "remaining")} == {
        "plan": "プラン10",
        "month": "2026-11",
        "cap": 2000,
        "used": 180,
        "remaining": 1820,
    }
    assert out["reserved"] == 0
    assert out["campaigns"] == [
        {
            "campaign_id": "20261120-100000-aaaaaa",
            "used": 150,
            "created_at": "2026-11-20T10:00:00+09:00",
            "subject": "{{ 会社名 }} 様 12月のご案内",  # one line, as written
        },
        {
            "campaign_id": "20261120-110000-bbbbbb",
            "used": 30,
            "created_at": "2026-11-20T23:30:00+09:00",
            "subject": "テンプレート「お知らせ」",
        },
    ]
    assert run_json(capsys, "--month", "2026-10")["used"] == 99
    assert main(["quota", "--month", "2026-11"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert (
        "  2026-11-20 10:00       150件  {{ 会社名 }} 様 12月のご案内  20261120-100000-aaaaaa"
        in lines
    )
    assert (
        "  2026-11-20 23:30        30件  テンプレート「お知らせ」  20261120-110000-bbbbbb" in lines
    )


def test_default_month_is_this_month_in_tokyo(
    db: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BCARTNB_PLAN", "light")
    before = month_of(now_tokyo())
    out = run_json(capsys)
    assert out["month"] in {before, month_of(now_tokyo())}
    assert (out["cap"], out["used"], out["remaining"]) == (100, 0, 100)


def test_readable_summary_is_japanese(
    db: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BCARTNB_PLAN", "プラン10")
    record_campaign(db, "20200120-100000-aaaaaa", 1500, now=datetime(2020, 1, 20, tzinfo=TOKYO))
    assert main(["quota", "--month", "2020-01"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "プラン: プラン10" in lines
    assert "対象月: 2020-01" in lines
    assert "メール配信上限数: 2,000件" in lines  # 件, as the wizard says it
    assert "2020-01の送信数: 1,500件" in lines  # not this month, so not 今月
    assert "残り: 500件" in lines
    assert "  2020-01-20 00:00     1,500件  （件名不明）  20200120-100000-aaaaaa" in lines
    assert not any("通" in line for line in lines)


def test_readable_summary_for_this_month_says_kongetsu(
    db: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BCARTNB_PLAN", "light")
    # one clock for the record and the look: run at 23:59:59 JST on a month's last day, the
    # real one could have recorded in one month and read the next
    monkeypatch.setenv("BCARTNB_NOW", "2026-11-30T23:59:59.999+09:00")
    record_campaign(db, "now-campaign", 7, now=now_tokyo(), plan="light")
    assert main(["quota"]) == 0
    out = capsys.readouterr().out
    assert "今月の送信数: 7件" in out and "残り: 93件" in out


def test_running_campaign_reservation_is_shown(
    db: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BCARTNB_PLAN", "light")
    # one clock for the reservation and the look (see the test above)
    monkeypatch.setenv("BCARTNB_NOW", "2026-11-30T23:59:59.999+09:00")
    with Ledger.open(db) as led:
        led.claim(fingerprint="f", plan="light", params={}, recipients=[], campaign_id="running")
        led.reserve("running", 40, "light")  # this process is alive: the reservation holds
    out = run_json(capsys)
    assert (out["used"], out["reserved"], out["remaining"]) == (0, 40, 60)
    assert main(["quota"]) == 0
    assert "送信中のキャンペーンの予約: 40件" in capsys.readouterr().out


def test_own_smtp_reports_null_cap(
    db: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BCARTNB_PLAN", "own-smtp")
    record_campaign(db, "big", 5000, plan="own-smtp")
    out = run_json(capsys, "--month", "2026-11")
    assert (out["plan"], out["cap"], out["used"], out["remaining"]) == (
        "自社SMTP",
        None,
        5000,
        None,
    )
    assert main(["quota", "--month", "2026-11"]) == 0
    text = capsys.readouterr().out
    assert "メール配信上限数: 上限なし" in text and "残り: 上限なし" in text


def test_plan_and_db_come_from_the_settings_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = tmp_path / "bcartnb.toml"
    cfg.write_text('plan = "プラン30"\ndb = "shop-ledger.sqlite3"\n', encoding="utf-8")
    monkeypatch.setenv("BCARTNB_CONFIG", str(cfg))
    record_campaign(tmp_path / "shop-ledger.sqlite3", "c1", 12, plan="plan30")
    out = run_json(capsys, "--month", "2026-11")
    assert (out["plan"], out["cap"], out["used"]) == ("プラン30", 6000, 12)
    monkeypatch.setenv("BCARTNB_PLAN", "plan300")  # the environment wins
    assert run_json(capsys, "--month", "2026-11")["plan"] == "プラン300"


def one_line_error(capsys: pytest.CaptureFixture[str], args: list[str], code: int = 2) -> str:
    assert main(args) == code
    captured = capsys.readouterr()
    assert captured.out == ""
    err = captured.err
    assert err.startswith("bcartnb: error: ") and err.count("\n") == 1, err
    return err


def test_no_plan_is_a_one_line_error(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    err = one_line_error(capsys, ["quota"])
    assert "no plan set" in err and "BCARTNB_PLAN" in err
    assert not db.exists()  # nothing created on the way to the error


def test_unknown_plan_lists_valid_ones(
    db: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BCARTNB_PLAN", "plan20")
    err = one_line_error(capsys, ["quota", "--json"])
    assert "'plan20'" in err and "ライトプラン (light)" in err and "自社SMTP (own-smtp)" in err


def test_bad_month_is_a_one_line_error(
    db: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BCARTNB_PLAN", "light")
    assert "YYYY-MM" in one_line_error(capsys, ["quota", "--month", "2026-13"])


def test_corrupt_ledger_is_a_one_line_error_naming_it(
    db: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BCARTNB_PLAN", "light")
    garbage = os.urandom(4096)
    db.write_bytes(garbage)
    err = one_line_error(capsys, ["quota", "--json"])
    assert str(db) in err
    assert db.read_bytes() == garbage


def test_exit_codes_from_a_real_process(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BCARTNB_")}
    env |= {"BCARTNB_DB": str(tmp_path / "l.sqlite3"), "BCARTNB_PLAN": "light"}
    ok = subprocess.run(
        [sys.executable, "-m", "bcartnb", "quota", "--json", "--month", "2026-11"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["cap"] == 100
    del env["BCARTNB_PLAN"]
    bad = subprocess.run(
        [sys.executable, "-m", "bcartnb", "quota"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    assert bad.returncode == 2
    assert bad.stderr.count("\n") == 1 and "Traceback" not in bad.stderr
