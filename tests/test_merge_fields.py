"""A merge field that exists for no member is the template's typo: one rule (templates.check_fields)
for the preview, the wizard and the command line's dry run, with the near names listed."""

from __future__ import annotations

import keyword
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from merge_field_table import BCART_KEYS

from bcartnb import campaign
from bcartnb.campaign import CampaignSpec
from bcartnb.exceptions import TemplateError
from bcartnb.members import CANONICAL_COLUMNS
from bcartnb.settings import load_settings
from bcartnb.templates import FIELD_ALIASES, check_fields, compile_template, merge_fields

COLUMNS = [*CANONICAL_COLUMNS, "業種", "カスタム項目(1)"]


def test_merge_fields_lists_aliases_canonical_and_custom_columns() -> None:
    names = [name for name, _ in merge_fields(COLUMNS)]
    assert names[: len(FIELD_ALIASES)] == list(FIELD_ALIASES)  # Japanese first
    assert {"comp_name", "email", "署名", "業種"} <= set(names)
    assert "カスタム項目(1)" not in names  # not an identifier: {{ member["…"] }} only
    assert len(names) == len(set(names))
    assert dict(merge_fields(COLUMNS))["会社名"] == "comp_name"


@pytest.mark.parametrize(
    ("source", "near"),
    [
        ("{{ 会社 }} 様", "会社名"),
        ("{{ comp_nam }} 様", "comp_name"),
        ("こんにちは\n{{ 業界 }}", "業種"),  # a custom column is a near name too
        ("{{ 都道府 }}", "都道府県"),
        ("{{ zzzzzz }}", None),
    ],
)
def test_unknown_field_names_the_near_ones(source: str, near: str | None) -> None:
    compiled = compile_template(source, "お知らせ", "body")
    with pytest.raises(TemplateError) as exc:
        check_fields(compiled, COLUMNS)
    unknown = source.split("{{ ")[1].split(" }}")[0]
    assert f"「{unknown}」という差し込み項目はありません" in exc.value.ja
    assert f"unknown field {unknown!r}" in str(exc.value)
    line = source[: source.index("{{")].count("\n") + 1
    assert f"テンプレート「お知らせ」の本文 {line}行目" in exc.value.ja
    if near:
        assert f"近い項目: {near}" in exc.value.ja and near in str(exc.value)
    else:
        assert "近い項目" not in exc.value.ja and "did you mean" not in str(exc.value)
    assert "会員" not in exc.value.ja.split("項目はありません")[0]  # no member blamed


def test_known_fields_globals_and_loops_pass() -> None:
    source = (
        "{{ 会社名 }} {{ comp_name }} {{ 業種 }} {{ 署名 }} {{ member['カスタム項目(1)'] }}"
        "{% for i in range(2) %}{{ loop.index }}{% endfor %}{% set x = 1 %}{{ x }}"
    )
    check_fields(compile_template(source, "t", "body"), COLUMNS)


# Every name a template may use with COLUMNS, written out by hand from the README's merge
# field table and B-Cart's customer keys (not taken from the code under test).
JINJA_GLOBALS = {"range", "lipsum", "dict", "cycler", "joiner", "namespace"}
KNOWN_BY_HAND = {
    *BCART_KEYS,  # B-Cart's customer keys (the canonical columns)
    # B-Cart's own words for them
    "会員ID",
    "Bカート会員ID",
    "貴社独自会員ID",
    "会社名",
    "会社名カナ",
    "担当部署",
    "部署名",
    "担当者名",
    "担当者姓",
    "担当者名前",
    "メールアドレス",
    "電話番号",
    "携帯番号",
    "郵便番号",
    "都道府県",
    "市区町村",
    "町域番地",
    "ビル建物名",
    "住所",
    "価格グループID",
    "営業担当ID",
    "状態",
    "登録日時",
    "更新日時",
    "業種",  # the file's own column (カスタム項目)
    "署名",  # filled by the composer, not the member
    "signature",
    "unsubscribe_token",
    "member",  # {{ member["カスタム項目(1)"] }}
    *JINJA_GLOBALS,
}
NAMES = st.from_regex(
    r"[a-zA-Z_\u3040-\u30ff\u4e00-\u9fff][a-zA-Z0-9_\u3040-\u30ff]{0,12}", fullmatch=True
)


@settings(max_examples=200, deadline=None)  # a template is compiled: real work
@given(st.one_of(st.sampled_from(sorted(KNOWN_BY_HAND)), NAMES))
def test_property_a_field_passes_iff_it_is_known(name: str) -> None:
    assume(name.isidentifier() and not keyword.iskeyword(name))
    assume(name not in JINJA_LITERALS)
    compiled = compile_template("{{ " + name + " }}", "t", "body")
    assert compiled.names or name in JINJA_GLOBALS  # a field, or a global no member fills
    if name in KNOWN_BY_HAND:
        check_fields(compiled, COLUMNS)
    else:
        with pytest.raises(TemplateError, match="unknown field"):
            check_fields(compiled, COLUMNS)


# Jinja's literals and operators, which are no field: {{ true }}, {{ none }}, {{ not }}...
JINJA_LITERALS = {"true", "false", "none", "True", "False", "None", "and", "or", "not", "in"}
JINJA_LITERALS |= {"is", "if", "else"}


def shop(tmp_path: Path) -> Path:
    (tmp_path / "members.csv").write_text(
        "会員ID,会社名,メールアドレス,業種\n1012,見本商事,a@example.co.jp,卸売\n", encoding="utf-8"
    )
    (tmp_path / "bcartnb.toml").write_text(
        'plan = "プラン10"\nfrom = "shop@example.co.jp"\ndb = "ledger.sqlite3"\n', encoding="utf-8"
    )
    return tmp_path / "bcartnb.toml"


def test_plan_and_preview_refuse_a_typo_before_any_member(tmp_path: Path) -> None:
    settings = load_settings(shop(tmp_path))
    spec = CampaignSpec.from_mapping(
        {"members": str(tmp_path / "members.csv"), "subject": "{{ 会社 }} 様", "body": "本文"}
    )
    with pytest.raises(TemplateError) as exc:
        campaign.plan_campaign(spec, settings)
    assert exc.value.ja.startswith("入力した件名 1行目: 「会社」という差し込み項目はありません。")
    # a custom column is a field; blank for the member it stays the member's error
    ok = CampaignSpec.from_mapping(
        {"members": str(tmp_path / "members.csv"), "subject": "{{ 業種 }}", "body": "{{ 部署名 }}"}
    )
    plan = campaign.plan_campaign(ok, settings)
    from bcartnb.compose import preview

    [p] = preview(plan.composer, plan.audience.sendable)
    assert p.error is not None and "'部署名' is missing or empty for member 1012" in p.error


def test_cli_dry_run_names_the_typo_and_near_fields(tmp_path: Path) -> None:
    config = shop(tmp_path)
    (tmp_path / "c.toml").write_text(
        'members = "members.csv"\nsubject = "ご案内"\nbody = "{{ 業 }}\\n{{ 会社名 }}"\n',
        encoding="utf-8",
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("BCARTNB_")}
    env["BCARTNB_CONFIG"] = str(config)
    out = subprocess.run(
        [sys.executable, "-m", "bcartnb", "run", "c.toml"],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120,
    )  # fmt: skip
    assert out.returncode == 2 and out.stderr.count("\n") == 1, out.stderr
    assert "「業」という差し込み項目はありません。近い項目: 業種" in out.stderr
    assert "unknown field '業'" in out.stderr and "Traceback" not in out.stderr
