"""The report's building blocks: masking, tables, charts (real PNGs, Japanese glyphs), summary."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pandas as pd
import pytest
from nbformat.v4 import new_code_cell, new_notebook, new_output

from bcartnb import report
from bcartnb.audience import REASON_LABELS, REASONS
from bcartnb.campaign import CampaignSpec, plan_campaign
from bcartnb.exceptions import BcartnbError
from bcartnb.members import read_members
from bcartnb.settings import Settings

PNG = b"\x89PNG\r\n\x1a\n"


def test_mask_text_masks_every_address_and_keeps_the_rest():
    text = "宛先 taro@example.co.jp, CC hanako.y+x@shop.example.com です。"
    masked = report.mask_text(text)
    assert masked == "宛先 t***@example.co.jp, CC h***@shop.example.com です。"
    assert report.mask_text("アドレスなし") == "アドレスなし"


def test_mask_frame_masks_email_columns_only_and_keeps_blanks():
    frame = pd.DataFrame(
        {
            "id": [1, 2],
            "email": ["taro@example.co.jp", ""],
            "email_cc": [None, "cc@example.jp"],
            "comp_name": ["見本商事", "テスト"],
        }
    )
    out = report.mask_frame(frame)
    assert out["email"].tolist() == ["t***@example.co.jp", ""]
    assert out["email_cc"].tolist()[1] == "c***@example.jp"
    assert pd.isna(out["email_cc"].tolist()[0])
    assert out["comp_name"].tolist() == ["見本商事", "テスト"]
    assert frame["email"].tolist()[0] == "taro@example.co.jp"  # the input is untouched


def test_parameters_table_drops_secret_keys_and_masks_addresses():
    table = report.parameters_table(
        {
            "template": "HTMLニュースレター",
            "body": "ご質問は info@example.co.jp まで",
            "filter": {"都道府県": ["東京都"]},
            "checked": [],
            "send": False,
            "smtp_password": "hunter2",
            "api_token": "abc",
        }
    )
    assert list(table.index) == [
        "テンプレート",
        "メール本文",
        "絞込オプション",
        "チェックした会員",
        "送信する",
    ]
    assert table.loc["メール本文", "値"] == "ご質問は i***@example.co.jp まで"
    assert table.loc["絞込オプション", "値"] == '{"都道府県": ["東京都"]}'
    assert table.loc["送信する", "値"] == "いいえ"
    assert "hunter2" not in table.to_string()


def test_reasons_table_in_decision_order_with_japanese_labels_and_zeros():
    table = report.reasons_table({"invalid_address": 3, "duplicate_address": 1})
    assert list(table.index) == [REASON_LABELS[r] for r in REASONS]
    assert table["件数"].tolist() == [0, 3, 0, 1]


def test_counts_and_quota_tables():
    summary = {"selected": 10, "sendable": 8, "unsendable": 2, "sent": 7, "failed": 1}
    counts = report.counts_table(summary)
    assert counts["件数"].to_dict() == {
        "対象の会員": 10,
        "送信件数": 8,
        "送信できない件数": 2,
        "送信済み": 7,
        "失敗": 1,
    }
    quota = report.quota_table(
        {"plan": "プラン10", "month": "2026-11", "cap": 2000, "used_before": 5, "used_after": 13}
    )
    assert quota.loc["メール配信上限数（月）", "値"] == "2,000"
    assert quota.loc["残り（送信後）", "値"] == "1,987"
    uncapped = report.quota_table(
        {"plan": "自社SMTP", "month": "2026-11", "cap": None, "used_before": 0, "used_after": 4}
    )
    assert uncapped.loc["メール配信上限数（月）", "値"] == "上限なし"
    assert "残り（送信後）" not in uncapped.index


def test_usage_chart_is_a_png_and_japanese_renders_without_glyph_warnings():
    # filterwarnings=error: a missing Japanese glyph would fail this test
    png = report.usage_chart(
        {"20261101-090000-aaaaaa": 120, "20261115-090000-bbbbbb": 300},
        2000,
        "2026-11",
        current="20261115-090000-bbbbbb",
    )
    assert png.startswith(PNG)
    empty = report.usage_chart({}, None, "2026-11")
    assert empty.startswith(PNG)
    assert empty != png


def test_breakdown_chart_counts_prefectures():
    members = pd.DataFrame({"pref": ["東京都", "大阪府", "東京都", None]})
    png = report.breakdown_chart(members, "pref")
    assert png.startswith(PNG)
    # a column the file does not have is a chart saying 該当なし, not an error
    assert report.breakdown_chart(members, "price_group_id").startswith(PNG)


def test_resolve_members_defaults_to_the_demo_file_from_any_cwd(tmp_path: Path):
    demo = report.resolve_members(None)
    assert demo == report.demo_path("demo_members.csv")
    assert demo.is_file()
    assert report.resolve_members("m.csv") == Path.cwd().resolve() / "m.csv"
    assert report.resolve_members(str(tmp_path / "x.csv")) == tmp_path / "x.csv"


def _notebook_with(tmp_path: Path, *outputs: dict[str, object]) -> Path:
    cell = new_code_cell("x = 1")
    cell.outputs = [new_output("display_data", data=data) for data in outputs]
    path = tmp_path / "out.ipynb"
    nbformat.write(new_notebook(cells=[cell]), path)
    return path


def test_read_summary_reads_the_last_recorded_summary(tmp_path: Path):
    path = _notebook_with(
        tmp_path,
        {report.SUMMARY_MIMETYPE: {"sent": 1}, "text/plain": "{}"},
        {"text/plain": "other"},
        {report.SUMMARY_MIMETYPE: {"sent": 2}, "text/plain": "{}"},
    )
    assert report.read_summary(path) == {"sent": 2}


def test_read_summary_errors_name_the_file(tmp_path: Path):
    with pytest.raises(BcartnbError, match=r"no campaign summary recorded"):
        report.read_summary(_notebook_with(tmp_path, {"text/plain": "x"}))
    with pytest.raises(BcartnbError, match=r"missing\.ipynb: notebook not found"):
        report.read_summary(tmp_path / "missing.ipynb")
    bad = tmp_path / "bad.ipynb"
    bad.write_text("{", encoding="utf-8")
    with pytest.raises(BcartnbError, match=r"bad\.ipynb: not a notebook"):
        report.read_summary(bad)


def test_record_summary_masks_warnings_and_is_json(capsys: pytest.CaptureFixture[str]):
    data = report.record_summary(
        {"campaign_id": "c1", "warnings": ["member 3 taro@example.co.jp: long line"]}
    )
    assert data["warnings"] == ["member 3 t***@example.co.jp: long line"]
    json.dumps(data)
    assert "taro@" not in capsys.readouterr().out


def test_sample_mail_is_the_first_sendable_member_masked(tmp_path: Path):
    members = tmp_path / "m.csv"
    members.write_text(
        "会員ID,会社名,担当者(姓),担当者(名),メールアドレス,都道府県,メール案内\n"
        "1,空欄商事,山田,太郎,,東京都,受け取る\n"
        "2,見本商事,佐藤,花子,hanako@example.co.jp,大阪府,受け取る\n",
        encoding="utf-8",
    )
    spec = CampaignSpec.from_mapping(
        {
            "members": str(members),
            "subject": "{{ 会社名 }} 様",
            "body": "{{ 担当者名 }} 様 ({{ メールアドレス }})\n",
        }
    )
    settings = Settings(plan="プラン10", from_addr="shop@example.co.jp", db=tmp_path / "l.db")
    plan = plan_campaign(spec, settings, members=read_members(members))
    sample = report.sample_mail(plan)
    assert sample is not None
    assert sample["member_id"] == "2"
    assert sample["to"] == "h***@example.co.jp"
    assert sample["subject"] == "見本商事 様"
    assert "h***@example.co.jp" in sample["text"]
    assert "hanako@" not in json.dumps(sample, ensure_ascii=False)
