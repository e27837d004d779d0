"""The wizard's confirmation and its hints, driven from Python like a user (no browser): From and
the admin copy's address, the HTML part first at a readable height, 送信前の確認 styled as the
quota warning is, the count beside 送信, HTML tags in a text mail said in the form, a misnamed
column and a filter value no member holds said in the status line."""

from __future__ import annotations

import re
from pathlib import Path

import ipywidgets as widgets
import pytest
from smtp_servers import TestServer
from test_widgets import (
    ADMIN,
    HEADER,
    Server,
    make_settings,
    member_mails,
    member_rows,
    to_compose,
    walk,
)

from bcartnb.plans import resolve_plan
from bcartnb.quota import QuotaStatus
from bcartnb.segments import SegmentStore
from bcartnb.widgets import Wizard
from bcartnb.widgets._common import WARNING_STYLE
from bcartnb.widgets.compose_step import quota_warning_html

NO_OPT_OUT = "{{ 会社名 }} 様\n新商品のご案内です。"


@pytest.fixture
def members_csv(tmp_path: Path) -> Path:
    path = tmp_path / "members.csv"
    prefs = ["東京都", "大阪府", "東京都", "北海道", "東京都"]
    path.write_text(HEADER + member_rows(prefs), encoding="utf-8")
    return path


@pytest.fixture
def server(smtp_server: Server) -> TestServer:
    return smtp_server()


@pytest.fixture
def wizard(members_csv: Path, tmp_path: Path, repo_root: Path, server: TestServer) -> Wizard:
    return Wizard(members_csv, make_settings(tmp_path, repo_root, server.settings()))


def style_of(markup: str, css: str) -> str:
    found = re.search(rf'<div class="{css}" style="([^"]*)"', markup)
    assert found, markup
    return found.group(1)


def confirm_text_mail(wizard: Wizard, ids: list[int], body: str = NO_OPT_OUT) -> None:
    to_compose(wizard, ids)
    wizard.compose.subject.value = "{{ 会社名 }} 様へのご案内"
    wizard.compose.body.value = body
    wizard.compose.to_confirm.click()
    assert wizard.stage == "confirm", wizard.status.value


def test_the_confirmation_says_from_and_where_the_admin_copy_goes(
    wizard: Wizard, server: TestServer
) -> None:
    confirm_text_mail(wizard, [1002, 1003])
    sender = wizard.confirm.sender.value
    assert "差出人（From）</b>: 見本商事 &lt;shop@example.co.jp&gt;" in sender
    assert f"配信控えの送り先</b>: {ADMIN}" in sender
    assert wizard.confirm.sender in wizard.confirm.children
    assert server.received == []


def test_no_admin_address_is_said_before_sending(
    members_csv: Path, tmp_path: Path, repo_root: Path, server: TestServer
) -> None:
    settings = make_settings(tmp_path, repo_root, server.settings(), admin=None, from_name="")
    wiz = Wizard(members_csv, settings)
    confirm_text_mail(wiz, [1002])
    assert "差出人（From）</b>: shop@example.co.jp<br>" in wiz.confirm.sender.value
    assert "未設定（配信控えは送られません" in wiz.confirm.sender.value


def test_the_count_sits_beside_send_and_follows_the_plan(
    wizard: Wizard, server: TestServer
) -> None:
    confirm_text_mail(wizard, [1002, 1003, 1005])
    [buttons] = [
        box
        for box in walk(wizard.confirm)
        if isinstance(box, widgets.HBox) and wizard.confirm.send in box.children
    ]
    assert wizard.confirm.send_count in buttons.children
    assert "<b>3件</b>に送信します" in wizard.confirm.send_count.value
    wizard.confirm.back.click()
    wizard.compose.back.click()
    wizard.table.uncheck([1003, 1005])
    wizard.send_checked.click()
    wizard.compose.to_confirm.click()
    assert "<b>1件</b>に送信します" in wizard.confirm.send_count.value
    wizard.confirm.send.click()
    server.wait_for(2)
    assert member_mails(server) == ["user1002@example.co.jp"]


def test_the_html_part_comes_first_at_a_readable_height(wizard: Wizard) -> None:
    to_compose(wizard, [1002])
    wizard.compose.template.value = "HTMLニュースレター"
    wizard.compose.to_confirm.click()
    shown = wizard.confirm.preview.value
    assert shown.index("<iframe") < shown.index("<pre")  # what most members see, first
    frame = re.search(r'<iframe sandbox="" class="bcartnb-preview-html" style="([^"]*)"', shown)
    assert frame and "height:600px" in frame.group(1), shown[:500]
    assert "260px" not in shown and "28em" not in shown
    assert "テキスト</b>（HTMLを表示しないメールソフトでの見え方）" in shown


def test_a_text_mail_shows_its_text_only(wizard: Wizard) -> None:
    confirm_text_mail(wizard, [1002])
    shown = wizard.confirm.preview.value
    assert "<iframe" not in shown and "<pre" in shown


def test_the_checks_look_like_the_quota_warning(wizard: Wizard) -> None:
    """送信前の確認 and 注意 in the one warning style (red, bold, ⚠) the quota warning has."""
    confirm_text_mail(wizard, [1002], "{{ 会社名 }} 様\n<p>新商品のご案内です。</p>")
    shown = wizard.confirm.warnings.value
    assert 'data-code="html_in_text"' in shown
    checks = style_of(shown, "bcartnb-checks")
    quota = QuotaStatus(plan=resolve_plan("プラン10"), month="2026-12", used=1990)
    over = quota_warning_html(quota, 20)
    assert checks == style_of(over, "bcartnb-over-quota") == WARNING_STYLE
    assert "⚠ <b>送信前の確認</b>" in shown and "⚠" in over


def test_html_pasted_into_a_text_mail_is_said_in_the_form_and_on_the_confirmation(
    wizard: Wizard,
) -> None:
    to_compose(wizard, [1002])
    notice = wizard.compose.markup_notice
    assert notice in wizard.compose.children and notice.value == ""
    wizard.compose.subject.value = "ご案内"
    wizard.compose.body.value = "{{ 会社名 }} 様\n<p>新商品のご案内です。</p>"
    assert "テキストメールの本文にHTMLのタグがあります" in notice.value
    assert "メール本文 2 行目: &lt;p&gt;（ほか 1 か所）" in notice.value
    assert style_of(notice.value, "bcartnb-html-in-text-warning") == WARNING_STYLE
    wizard.compose.html.value = True  # an HTML mail: the tags are the mail
    assert notice.value == ""
    wizard.compose.html.value = False
    wizard.compose.to_confirm.click()
    assert wizard.stage == "confirm", wizard.status.value
    assert 'data-code="html_in_text"' in wizard.confirm.warnings.value
    assert not wizard.confirm.send.disabled  # a warning, never a refusal


def test_a_hostile_tag_in_the_body_is_shown_as_text(wizard: Wizard) -> None:
    to_compose(wizard, [1002])
    wizard.compose.body.value = '<a href="x" onclick="alert(1)"><script>'
    shown = wizard.compose.markup_notice.value
    assert "<script>" not in shown and "<a " not in shown
    assert "&lt;a href=" in shown


def test_a_misnamed_opt_in_column_is_said_when_the_file_is_read(
    tmp_path: Path, repo_root: Path, server: TestServer
) -> None:
    path = tmp_path / "renamed.csv"
    path.write_text(
        HEADER.replace("メール案内", "メール案内（受取）") + member_rows(["東京都", "大阪府"]),
        encoding="utf-8",
    )
    wiz = Wizard(path, make_settings(tmp_path, repo_root, server.settings()))
    assert "注意: 「メール案内」の列がありません。近い見出し: 「メール案内（受取）」" in (
        wiz.status.value
    )
    wiz.load_members(path)  # read again from the wizard's own 読み込む
    assert "会員ファイルを読み込みました: 2件" in wiz.status.value
    assert "近い見出し: 「メール案内（受取）」" in wiz.status.value


def test_a_segment_value_no_member_holds_is_said_beside_the_count(
    members_csv: Path, tmp_path: Path, repo_root: Path, server: TestServer
) -> None:
    settings = make_settings(
        tmp_path, repo_root, server.settings(), segments=tmp_path / "segments.toml"
    )
    SegmentStore(tmp_path / "segments.toml").save("東京", {"都道府県": "東京"})
    wiz = Wizard(members_csv, settings)
    assert "注意" not in wiz.status.value
    wiz.filter_step.segment.value = "東京"
    wiz.filter_step.apply.click()
    assert "検索結果: 0件" in wiz.status.value
    assert "「東京」に当たる会員はいません。近い値: 「東京都」" in wiz.status.value
