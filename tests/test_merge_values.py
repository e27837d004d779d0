"""A member's purchase columns merged into a mail read as a Japanese shop writes them.

``{{ 最終購入日 }}`` is 2026年8月14日 (not ``2026-08-14 00:00:00+09:00``), ``{{ 購入商品 }}``
its items joined with 「、」 (not ``['a', 'b']``), an amount 12,345, and a blank is the
preview's error naming the field, never ``<NA>``, ``NaT``, ``nan`` or ``[]`` in a sent mail;
while a template's logic (a loop, a comparison, ``strftime``) still gets the values.
The members are joined with a real 受注 CSV by :func:`~bcartnb.orders.with_purchases`.
"""

from __future__ import annotations

import datetime as dt
import email
import email.policy
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from bcartnb.compose import Composer, Draft, preview
from bcartnb.exceptions import TemplateError
from bcartnb.members import read_members
from bcartnb.orders import PURCHASE_COLUMNS, read_orders, with_purchases
from bcartnb.settings import PurchaseSettings, Settings
from bcartnb.templates import check_fields, compile_template, merge_fields

TODAY = dt.date(2026, 8, 24)
SETTINGS = Settings(from_addr="info@shop.example.co.jp", from_name="サンプル商店", signature="")
MEMBERS = (
    "会員ID,会社名,担当者(姓),担当者(名),メールアドレス,メール案内,登録日時\r\n"
    "1001,株式会社いろは,山田,太郎,a@example.co.jp,受け取る,2023/09/17 07:50:08\r\n"
    "1002,有限会社ほへと,佐藤,花子,b@example.co.jp,受け取る,2024/01/05 00:00:00\r\n"
)
ORDERS = (
    "受注ID,会員ID,受注日時,対応状況,合計金額,商品コード,商品名\r\n"
    '1,1001,2026/08/14 10:00:00,発送済,"12,345",A-100,りんご <赤>\r\n'
    '1,1001,2026/08/14 10:00:00,発送済,"12,345",B-200,みかん\r\n'
    '2,1001,2025/02/03 09:00:00,発送済,"1,000,000",A-100,りんご <赤>\r\n'
)
BODY = (
    "最終購入日: {{ 最終購入日 }}\n初回購入日: {{ 初回購入日 }}\n購入商品: {{ 購入商品 }}\n"
    "購入カテゴリ: {{ 購入カテゴリ }}\n購入金額合計: {{ 購入金額合計 }}円\n"
    "平均購入金額: {{ 平均購入金額 }}円\n購入回数: {{ 購入回数 }}回\n"
    "最終購入からの日数: {{ 最終購入からの日数 }}日\n顧客グループ: {{ 顧客グループ }}\n"
    "R: {{ R }}\n登録日時: {{ 登録日時 }}\n"
)
EXPECTED = (
    "最終購入日: 2026年8月14日\n初回購入日: 2025年2月3日\n"
    "購入商品: A-100、B-200、みかん、りんご <赤>\n"
    "購入カテゴリ: 未分類\n購入金額合計: 1,012,345円\n平均購入金額: 506,173円\n購入回数: 2回\n"
    "最終購入からの日数: 10日\n顧客グループ: 一般\nR: 5\n登録日時: 2023年9月17日 07:50\n"
)
PYTHONISH = ("NaT", "<NA>", "nan", "None", "[]", "['", "+09:00", "00:00:00", "Timestamp")


@pytest.fixture
def members(tmp_path: Path) -> pd.DataFrame:
    (tmp_path / "members.csv").write_text(MEMBERS, "utf-8")
    (tmp_path / "受注.csv").write_bytes(ORDERS.encode("cp932"))
    orders = read_orders(tmp_path / "受注.csv")
    return with_purchases(
        read_members(tmp_path / "members.csv"), orders, PurchaseSettings(), today=TODAY
    )


def composer(
    body: str, members: pd.DataFrame, html: bool = False, subject: str = "{{ 会社名 }} 様"
) -> Composer:
    draft = Draft(subject, body, html=html, insert_signature=False)
    return Composer(draft, SETTINGS, "c-values", columns=members.columns)


def row(members: pd.DataFrame, member_id: int) -> dict[str, Any]:
    first = members[members["id"] == member_id].to_dict("records")[0]
    return {str(k): v for k, v in first.items()}


def test_every_purchase_column_reads_as_the_shop_writes_it(members: pd.DataFrame) -> None:
    mail = composer(BODY, members, subject="{{ 会社名 }} 様 {{ 最終購入日 }}").compose(
        row(members, 1001)
    )
    assert mail.text.replace("\r\n", "\n") == EXPECTED
    assert mail.subject == "株式会社いろは 様 2026年8月14日"
    parsed = email.message_from_bytes(mail.raw, policy=email.policy.default)
    assert parsed["Subject"] == mail.subject
    assert not any(word in mail.text for word in PYTHONISH)


def test_html_mail_escapes_the_joined_items_and_both_paths_agree(members: pd.DataFrame) -> None:
    body = "<p>{{ 会社名 }} 様</p><p>{{ 購入商品 }}</p><p>{{ 購入金額合計 }}円 {{ 最終購入日 }}</p>"
    c = composer(body, members, html=True)
    mail = c.compose(row(members, 1001))
    assert mail.html is not None
    assert "<p>A-100、B-200、みかん、りんご &lt;赤&gt;</p>" in mail.html
    assert "<p>1,012,345円 2026年8月14日</p>" in mail.html
    assert "A-100、B-200、みかん、りんご <赤>" in mail.text
    _, text, html = c.render_reference(row(members, 1001))
    assert (mail.text, mail.html) == (text, html)


def test_the_values_stay_values_for_a_templates_logic(members: pd.DataFrame) -> None:
    body = (
        "{% for p in 購入商品 %}[{{ p }}]{% endfor %}\n"
        "{% if 購入回数 >= 2 and 購入金額合計 > 1000000 %}常連{% endif %}\n"
        '{{ 最終購入日.strftime("%Y/%m/%d") }} {{ 購入商品|length }} {{ 購入商品|join("/") }}\n'
        "{{ 購入金額合計 + 1 }} {{ member['購入金額合計'] }} {{ member['最終購入日'] }}\n"
    )
    text = composer(body, members).compose(row(members, 1001)).text.replace("\r\n", "\n")
    assert text == (
        "[A-100][B-200][みかん][りんご <赤>]\n常連\n"
        "2026/08/14 4 A-100/B-200/みかん/りんご <赤>\n1012346 1,012,345 2026年8月14日\n"
    )


@pytest.mark.parametrize(
    "field", ["最終購入日", "初回購入日", "購入商品", "購入カテゴリ", "平均購入金額", "R"]
)
def test_a_member_without_purchases_is_the_previews_error_not_a_python_word(
    members: pd.DataFrame, field: str
) -> None:
    c = composer(f"{{{{ 会社名 }}}} 様 {{{{ {field} }}}}", members)
    with pytest.raises(TemplateError) as info:
        c.compose(row(members, 1002))
    assert f"会員 1002 の「{field}」が空欄か" in info.value.ja
    shown = preview(c, members, n=2)
    assert shown[0].error is None and shown[1].error is not None and field in shown[1].error


def test_a_blank_can_be_left_out_on_purpose(members: pd.DataFrame) -> None:
    body = (
        "{% if 購入商品 is defined %}ご購入: {{ 購入商品 }}{% else %}はじめまして{% endif %}\n"
        '[{{ 最終購入日|default("") }}] {{ 購入回数 }}回 {{ 購入金額合計 }}円 {{ 顧客グループ }}\n'
    )
    c = composer(body, members)
    text = c.compose(row(members, 1002)).text.replace("\r\n", "\n")
    assert text == "はじめまして\n[] 0回 0円 未購入\n"
    assert "ご購入: A-100、" in c.compose(row(members, 1001)).text


def test_the_field_list_names_the_purchase_columns_and_a_missing_join_says_why(
    members: pd.DataFrame,
) -> None:
    listed = dict(merge_fields(members.columns))
    assert all(listed[name] == "購入履歴" for name in PURCHASE_COLUMNS)
    assert listed["会社名"] == "comp_name"
    compiled = compile_template("{{ 会社名 }}\n{{ 最終購入日 }}", "draft", "body")
    check_fields(compiled, members.columns)  # joined: a field
    without = [c for c in members.columns if c not in PURCHASE_COLUMNS]
    with pytest.raises(TemplateError) as info:
        check_fields(compiled, without)
    assert info.value.ja == (
        "入力した本文 2行目: 「最終購入日」は購入履歴の差し込み項目です。"
        "受注CSV（orders）を読み込んだ会員にだけ使えます。"
    )
