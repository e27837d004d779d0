"""Issue 23 (5): メールテンプレート管理 in the wizard, driven from Python like a user.

Saved from the compose step, picked again in the next campaign and sent through a real SMTP
server; read by the CLI from the same folder; overwritten and deleted only after the question
is answered; a B-Cart template pasted as text imported, its unknown placeholders named. The
import is also held to a property: whatever is pasted, the template compiles and its literal
text comes out as it went in.
"""

from __future__ import annotations

import email
import email.policy
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from smtp_servers import TestServer

from bcartnb.exceptions import TemplateError
from bcartnb.settings import Settings, load_settings
from bcartnb.templates import TemplateStore, compile_template
from bcartnb.templates.bcart_import import import_bcart_text
from bcartnb.widgets import Wizard

Server = Callable[..., TestServer]
HEADER = "会員ID,会社名,担当者(姓),担当者(名),メールアドレス,都道府県,メール案内,業種\n"
ROWS = "".join(
    f"{m},テスト商事{m},山田,太郎,u{m}@example.co.jp,東京都,受け取る,卸売\n"
    for m in range(1001, 1006)
)


@pytest.fixture
def shop(tmp_path: Path, smtp_server: Server) -> tuple[Path, TestServer]:
    server = smtp_server()
    (tmp_path / "members.csv").write_text(HEADER + ROWS, "utf-8")
    (tmp_path / "bcartnb.toml").write_text(
        'plan = "プラン10"\nfrom = "見本商事 <shop@example.co.jp>"\n'
        'admin = "admin@example.co.jp"\nsignature = "見本商事"\nledger = "ledger.sqlite3"\n',
        "utf-8",
    )
    return tmp_path, server


def settings_of(folder: Path, server: TestServer) -> Settings:
    s = load_settings(folder / "bcartnb.toml", env={})
    return s.replace(smtp=server.settings())


@pytest.fixture
def wizard(shop: tuple[Path, TestServer]) -> Wizard:
    folder, server = shop
    return Wizard(folder / "members.csv", settings_of(folder, server), member_folders=[folder])


def to_compose(wizard: Wizard) -> None:
    wizard.send_all.click()
    assert wizard.stage == "compose", wizard.status.value


def write(wizard: Wizard, subject: str, body: str, *, html: bool = False) -> None:
    wizard.compose.subject.value = subject
    wizard.compose.body.value = body
    wizard.compose.html.value = html


# --- テンプレートとして保存 from the compose step, then reused -----------------------------------


def test_saved_from_compose_is_reused_in_the_next_campaign_and_read_by_the_cli(
    wizard: Wizard, shop: tuple[Path, TestServer]
) -> None:
    folder, server = shop
    to_compose(wizard)
    write(
        wizard,
        "【{{ 会社名 }}様】秋のご案内",
        "{{ 会社名 }}\n{{ 担当者名 }} 様\n秋の新商品です。\n",
    )
    saver = wizard.templates.saver
    saver.name.value = "秋のご案内"
    saver.save.click()
    assert "テンプレート「秋のご案内」を保存しました" in saver.status.value
    assert (folder / "templates" / "秋のご案内.txt").is_file()
    assert "秋のご案内" in wizard.compose.template.options  # listed in the picker at once

    # the next campaign: a clean form, the template picked, sent
    write(wizard, "", "")
    wizard.compose.template.value = "秋のご案内"
    assert wizard.compose.subject.value == "【{{ 会社名 }}様】秋のご案内"
    wizard.compose.to_confirm.click()
    assert wizard.stage == "confirm", wizard.status.value
    wizard.confirm.send.click()
    assert wizard.stage == "done", wizard.status.value
    server.wait_for(6)
    subjects = {
        str(email.message_from_bytes(r.raw, policy=email.policy.default)["Subject"])
        for r in server.received
    }
    assert "【テスト商事1003様】秋のご案内" in subjects

    # the CLI reads the same file from the same folder
    campaign = folder / "campaign.toml"
    campaign.write_text('members = "members.csv"\ntemplate = "秋のご案内"\n', "utf-8")
    env = {"BCARTNB_CONFIG": str(folder / "bcartnb.toml"), "PATH": "/usr/bin:/bin"}
    dry = subprocess.run(
        [sys.executable, "-m", "bcartnb", "run", str(campaign)],
        capture_output=True,
        text=True,
        env=env,
        cwd=folder,
        timeout=120,
    )
    assert dry.returncode == 0, dry.stderr
    # the CLI's template is the very mail the wizard sent: every member already has it
    assert "既に同じメールを送信済み 5" in dry.stdout


def test_a_bad_name_is_refused_with_the_stores_words(wizard: Wizard) -> None:
    to_compose(wizard)
    write(wizard, "件名", "本文\n")
    for bad in ("", "  ", "a/b", "a:b", "CON", "x" * 101, "名前\x00", "../../etc"):
        wizard.templates.saver.name.value = bad
        wizard.templates.saver.save.click()
        assert "テンプレート名「" in wizard.templates.saver.status.value
        assert "は使えません" in wizard.templates.saver.status.value
    assert wizard.store.list() == []


def test_a_broken_template_is_refused_before_it_is_stored(wizard: Wizard) -> None:
    to_compose(wizard)
    write(wizard, "件名", "{{ 会社 }} 様\n")  # a typo of 会社名
    wizard.templates.saver.name.value = "typo"
    wizard.templates.saver.save.click()
    assert "「会社」という差し込み項目はありません" in wizard.templates.saver.status.value
    assert "会社名" in wizard.templates.saver.status.value  # the near field
    assert wizard.store.list() == []


def test_overwriting_asks_first_and_cancel_keeps_the_old_one(wizard: Wizard) -> None:
    to_compose(wizard)
    saver = wizard.templates.saver
    write(wizard, "一通目", "一通目の本文\n")
    saver.name.value = "ご案内"
    saver.save.click()
    write(wizard, "二通目", "二通目の本文\n")
    saver.save.click()
    assert saver.ask.layout.display != "none"
    assert "テンプレート「ご案内」はすでにあります。上書きしますか？" in saver.ask.text.value
    assert wizard.store.get("ご案内").subject == "一通目"  # nothing written yet
    saver.ask.no.click()
    assert saver.ask.layout.display == "none"
    assert wizard.store.get("ご案内").subject == "一通目"
    saver.save.click()
    saver.ask.yes.click()
    assert wizard.store.get("ご案内").subject == "二通目"


# --- the screen: list, preview, edit, delete ----------------------------------------------------


def test_list_preview_edit_and_save(wizard: Wizard) -> None:
    wizard.store.save(import_bcart_text("件名: {会社名}様へ\n{担当者名} 様\n", "見本").template)
    screen = wizard.templates.screen
    assert screen.layout.display == "none"
    screen.open_button.click()
    assert screen.layout.display != "none"
    assert screen.names.options == ("見本",)
    screen.names.value = "見本"
    assert screen.subject.value == "{{ 会社名 }}様へ"
    # rendered for the first member of the loaded file
    assert "テスト商事1001様へ" in screen.preview.value
    assert "山田 太郎 様" in screen.preview.value
    screen.body.value = "<p>{{ 担当者名 }} 様</p>"
    screen.html.value = True
    screen.show_preview.click()
    assert "<iframe" in screen.preview.value and 'sandbox=""' in screen.preview.value
    screen.save.click()  # its own name: no question
    assert screen.ask_overwrite.layout.display == "none"
    assert wizard.store.get("見本").html is True


def test_delete_asks_and_only_the_answer_deletes(wizard: Wizard) -> None:
    for name in ("残す", "消す"):
        wizard.store.save(import_bcart_text(f"件名: {name}\n本文\n", name).template)
    screen = wizard.templates.screen
    screen.open_button.click()
    screen.names.value = "消す"
    screen.delete.click()
    assert screen.ask_delete.layout.display != "none"
    assert "テンプレート「消す」を削除しますか？" in screen.ask_delete.text.value
    assert {screen.ask_delete.yes.description, screen.ask_delete.no.description} == {
        "削除",
        "キャンセル",
    }
    assert wizard.store.list() == ["残す", "消す"]
    screen.ask_delete.no.click()
    assert wizard.store.list() == ["残す", "消す"]
    screen.delete.click()
    screen.ask_delete.yes.click()
    assert wizard.store.list() == ["残す"]
    assert "削除しました" in screen.status.value
    assert "消す" not in wizard.compose.template.options
    screen.ask_delete.yes.click()  # a stale second click deletes nothing more
    assert wizard.store.list() == ["残す"]


def test_delete_with_nothing_picked_says_so(wizard: Wizard) -> None:
    wizard.templates.screen.open_button.click()
    wizard.templates.screen.delete.click()
    assert "一覧から選んでください" in wizard.templates.screen.status.value
    assert wizard.templates.screen.ask_delete.layout.display == "none"


def test_a_template_removed_by_another_notebook_is_an_error_not_a_crash(wizard: Wizard) -> None:
    wizard.store.save(import_bcart_text("件名: 一時\n本文\n", "一時").template)
    screen = wizard.templates.screen
    screen.open_button.click()
    screen.names.value = "一時"
    screen.delete.click()
    wizard.store.delete("一時")  # meanwhile, elsewhere
    screen.ask_delete.yes.click()
    assert "テンプレート「一時」が" in screen.status.value and "ありません" in screen.status.value


# --- import of a B-Cart template pasted as text -------------------------------------------------

PASTED = """件名：【{会社名}様】新商品のご案内
本文：
{会社名}
{担当者} 様

いつもお世話になっております。{業種}のお客様へ。
ポイント残高: {ポイント残高}
{{ 会員ID }} / {%raw%}
"""


def test_import_pasted_text_maps_what_it_can_and_names_the_rest(wizard: Wizard) -> None:
    screen = wizard.templates.screen
    screen.open_button.click()
    screen.paste.value = PASTED
    screen.name.value = "Bカート新商品"
    screen.import_button.click()
    assert screen.subject.value == "【{{ 会社名 }}様】新商品のご案内"
    assert "{{ 担当者名 }} 様" in screen.body.value
    assert "{{ 業種 }}" in screen.body.value  # a custom column of the loaded file
    assert "{ポイント残高}" in screen.status.value  # said, left as text
    assert "{%raw%}" in screen.status.value
    assert "テスト商事1001" in screen.preview.value
    assert "ポイント残高: {ポイント残高}" in screen.preview.value
    assert "1001 / {%raw%}" in screen.preview.value
    assert wizard.store.list() == []  # nothing stored before 保存
    screen.save.click()
    assert wizard.store.get("Bカート新商品").subject == "【{{ 会社名 }}様】新商品のご案内"


def test_import_without_a_subject_line_says_how(wizard: Wizard) -> None:
    screen = wizard.templates.screen
    screen.paste.value = "本文だけ\n"
    screen.import_button.click()
    assert "件名がありません" in screen.status.value and "件名：" in screen.status.value


def test_html_is_ticked_when_the_body_holds_tags() -> None:
    got = import_bcart_text("件名: 夏\n<p>{会社名} 様</p>\n", "夏")
    assert got.template.html and got.unmapped == ()
    assert import_bcart_text("件名: 夏\n1 < 2\n", "夏").template.html is False


_TEXT = st.text(alphabet="{}%#ab あ\n\r-:：'\"\\", max_size=80)


@settings(max_examples=500, deadline=None)
@given(body=_TEXT)
def test_pasted_text_always_compiles_and_its_literal_text_survives(body: str) -> None:
    """No field is named here (a, b, あ name none), so the rendered body is the pasted one."""
    try:
        got = import_bcart_text("件名: x\n" + body, "p")
    except TemplateError as err:
        assert err.ja  # an empty body: said in Japanese
        return
    compiled = compile_template(got.template.body, "p", "body")
    rendered = compiled.render({})
    lines = body.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    while lines and not lines[0].strip():
        lines.pop(0)
    assert rendered == "\n".join(lines).rstrip() + "\n"


_PIECES = st.sampled_from(
    [
        "{会社名}",
        "{{会社名}}",
        "{ 担当者 }",
        "{",
        "}",
        "{{",
        "}}",
        "{%",
        "%}",
        "{#",
        "#}",
        "a",
        "\n",
    ]
)


@settings(max_examples=500, deadline=None)
@given(pieces=st.lists(_PIECES, min_size=1, max_size=30))
def test_pasted_placeholders_next_to_braces_always_compile(pieces: list[str]) -> None:
    body = "x" + "".join(pieces)
    got = import_bcart_text("件名: {会社名}\n" + body, "p")
    compiled = compile_template(got.template.body, "p", "body")
    rendered = compiled.render({"会社名": "見本商事", "担当者名": "山田 太郎"})
    assert rendered.startswith("x")
    if not any(p in body for p in ("{", "}")):
        assert rendered == body.rstrip() + "\n"


def test_the_store_is_the_clis(tmp_path: Path) -> None:
    """The screen writes through TemplateStore: the file is the CLI's format, read back whole."""
    store = TemplateStore(tmp_path)
    store.save(import_bcart_text(PASTED, "往復").template)
    text = (tmp_path / "往復.txt").read_text("utf-8")
    assert text.startswith("+++\nsubject = ")
    assert store.get("往復").body.startswith("{{ 会社名 }}\n{{ 担当者名 }} 様")


def test_without_a_member_file_the_preview_uses_the_sample_member(
    shop: tuple[Path, TestServer],
) -> None:
    folder, server = shop
    wizard = Wizard(None, settings_of(folder, server), member_folders=[folder])
    screen = wizard.templates.screen
    screen.open_button.click()
    screen.paste.value = "件名: {会社名} 様\n{住所}\n"
    screen.import_button.click()
    assert "株式会社サンプル商事 様" in screen.preview.value
    assert "東京都千代田区千代田1-1 サンプルビル5階" in screen.preview.value


def test_hostile_values_in_the_editor_are_escaped_in_the_preview(wizard: Wizard) -> None:
    screen = wizard.templates.screen
    screen.name.value = "危険"
    screen.subject.value = "<script>alert(1)</script>"
    screen.body.value = "<b>太字</b>\n{{ 会社名 }}\n"
    screen.show_preview.click()
    assert "<script>" not in screen.preview.value and "&lt;script&gt;" in screen.preview.value
    screen.subject.value = "一行目\r\n二行目"
    screen.save.click()
    assert "件名は1行で書いてください" in screen.status.value
    assert wizard.store.list() == []
