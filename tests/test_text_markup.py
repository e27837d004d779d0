"""HTML tags in a text mail (「HTMLメールで送信」 unticked): a 送信前の確認 finding in the dry run,
never a refusal; nothing for an HTML mail, an address in <>, a link in <> or a word in 〈〉."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import tomli_w
from hypothesis import given, settings
from hypothesis import strategies as st
from test_cli_run import bcartnb
from test_hints import env, write_shop

from bcartnb.mailcheck import CODES, check_parts
from bcartnb.text_markup import HTML_IN_TEXT, html_tags

LEGAL = "\n見本商事 東京都千代田区1-1 TEL 03-0000-0000\n配信停止: https://shop.example.co.jp/stop\n"


def codes(text: str, html: str | None = None) -> list[str]:
    return [f.code for f in check_parts("件名", text + LEGAL, html, sender_name="見本商事")]


@pytest.mark.parametrize(
    "body",
    [
        "<p>新商品のご案内です。</p>",
        "こんにちは<br>新商品です。",
        '詳しくは <a href="https://shop.example.co.jp/">こちら</a>',
        "<!DOCTYPE html>\n<html><body>本文</body></html>",
        "<!-- B-Cartのテンプレートから -->本文",
        "<DIV STYLE='color:red'>本文</DIV>",
        '<img src="https://shop.example.co.jp/a.png" alt="写真"/>',
        "<h2>見出し</h2>",
    ],
)
def test_html_in_a_text_mail_is_a_finding(body: str) -> None:
    assert HTML_IN_TEXT in codes(body)
    assert HTML_IN_TEXT not in codes(body, html=f"<html><body>{body}</body></html>")


@pytest.mark.parametrize(
    "body",
    [
        "ご質問は <info@example.co.jp> まで",
        "詳しくは <https://shop.example.co.jp/new> をご覧ください",
        "〈新商品〉と<新商品>のご案内",
        "a < b かつ c > d",
        "<p 行目で改行\n>",  # a tag never spans lines in a text body
        "<END>",
        "<pre-order> 予約受付中",
    ],
)
def test_text_that_only_looks_like_markup_is_no_finding(body: str) -> None:
    assert HTML_IN_TEXT not in codes(body)


def test_the_finding_names_the_first_tag_its_line_and_how_many() -> None:
    [found] = [
        f
        for f in check_parts(
            "件名", "一行目\n<p>二行目</p>\n<br>" + LEGAL, None, sender_name="見本商事"
        )
        if f.code == HTML_IN_TEXT
    ]
    assert found.detail == "テキストパート 2 行目: <p>（ほか 2 か所）"
    assert "「HTMLメールで送信」にチェック" in found.message
    assert CODES.index("leftover_markup") < CODES.index(HTML_IN_TEXT) < CODES.index("sender_name")


def test_a_control_character_in_a_tag_is_shown_escaped() -> None:
    [found] = [
        f
        for f in check_parts("件名", '<a href="x\x1b[2J">' + LEGAL, None, sender_name="見本商事")
        if f.code == HTML_IN_TEXT
    ]
    assert "\x1b" not in found.detail and "\\x1b" in found.detail


@given(st.text(alphabet=st.sampled_from("<>/ap br-!\n\"'=x"), max_size=400))
@settings(max_examples=300, deadline=None)
def test_html_tags_never_raises_and_finds_only_tags(text: str) -> None:
    for line, tag in html_tags(text):
        assert tag.startswith("<") and (tag.endswith(">") or tag.startswith("<!"))
        assert tag in text.splitlines()[line - 1]


def test_a_huge_line_of_open_brackets_is_read_in_one_pass() -> None:
    """Linear: 200,000 unclosed ``<p `` on one line are no tag and take no quadratic time (a
    quadratic scan would not finish within the test's timeout)."""
    assert html_tags("<p " * 200_000) == []


def test_the_dry_run_says_it_and_still_exits_0(tmp_path: Path) -> None:
    write_shop(tmp_path)
    campaign = tmp_path / "campaign.toml"
    campaign.write_text(
        tomli_w.dumps(
            {
                "members": "members.csv",
                "subject": "{{ 会社名 }} 様",
                "body": "<p>{{ 会社名 }} 様</p>\n<p>新商品のご案内です。</p>\n" + LEGAL,
            }
        ),
        encoding="utf-8",
    )
    dry = bcartnb("run", str(campaign), env=env(tmp_path), cwd=tmp_path)
    assert dry.returncode == 0, dry.stderr
    assert "テキストメールの本文にHTMLのタグがあります" in dry.stdout
    assert "テキストパート 1 行目: <p>（ほか 3 か所）" in dry.stdout
    out = json.loads(
        bcartnb("run", str(campaign), "--json", env=env(tmp_path), cwd=tmp_path).stdout
    )
    assert [c["code"] for c in out["checks"]] == [HTML_IN_TEXT]
