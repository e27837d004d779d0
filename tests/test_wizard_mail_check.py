"""確認画面へ on a large list: the confirmation shows at once and every mail is composed
meanwhile on a thread (:mod:`bcartnb.widgets.mail_check`), so the click stays quick.

Driven from Python like a user, on a real member file, a real ledger and a real SMTP server:
the check's verdict reaches the screen when it is done; a member whose mail cannot be composed
is named and neither 送信 nor 予約 stays usable; 戻る, 送信 or a second 確認画面へ stop the
check, and a stopped check never writes to the screen afterwards; 送信 pressed before the
check is done sends every mail exactly once, and a bad mail is still refused before the first.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from smtp_servers import TestServer
from test_cli_run import env_for, member_mails, setup_campaign

from bcartnb.settings import load_settings
from bcartnb.widgets import Wizard
from bcartnb.widgets.planning import CHECK_AT_ONCE_UP_TO

Server = Callable[..., TestServer]
LARGE = CHECK_AT_ONCE_UP_TO + 100
WAIT = 120.0  # seconds: the check of a few thousand mails takes well under one


def member_file(folder: Path, n: int, *, bad: int | None = None) -> Path:
    """test_cli_run's shop in ``folder`` (plan 自社SMTP: no monthly cap) with ``n`` sendable
    members; member ``1000 + bad`` has a line break and a Bcc header in 会社名."""
    setup_campaign(folder, n, plan="自社SMTP")
    members = folder / "members.csv"
    if bad is not None:
        text = members.read_text(encoding="utf-8")
        text = text.replace(f"テスト商事{bad},", f'"テスト\r\nBcc: evil@example.com商事{bad}",')
        members.write_text(text, encoding="utf-8")
    return members


def shop_wizard(tmp_path: Path, server: TestServer, n: int, *, bad: int | None = None) -> Wizard:
    """A wizard on :func:`member_file`'s members, the mail's subject using 会社名."""
    members = member_file(tmp_path, n, bad=bad)
    w = Wizard(members, load_settings(env=env_for(tmp_path, server)))
    w.send_all.click()
    assert w.stage == "compose", w.status.value
    w.compose.subject.value = "{{ 会社名 }} 様へのご案内"
    w.compose.body.value = "{{ 会社名 }} {{ 担当者名 }} 様\n本文です。"
    return w


def test_a_small_list_is_checked_before_the_confirmation_shows(
    tmp_path: Path, smtp_server: Server
) -> None:
    w = shop_wizard(tmp_path, smtp_server(), 5)
    w.compose.to_confirm.click()
    assert w.stage == "confirm"
    assert w.mail_check is None
    assert "送信件数 5件。内容を確認して「送信」を押してください。" in w.status.value


def test_a_large_list_is_confirmed_at_once_and_every_mail_checked_meanwhile(
    tmp_path: Path, smtp_server: Server
) -> None:
    w = shop_wizard(tmp_path, smtp_server(), LARGE)
    w.compose.to_confirm.click()
    assert w.stage == "confirm"
    check = w.mail_check
    assert check is not None
    assert not w.confirm.send.disabled  # the send composes every mail first: usable now
    assert check.wait(WAIT)
    assert f"送信件数 {LARGE:,}件。全員分のメールを確かめました。" in w.status.value
    assert not w.confirm.send.disabled
    assert not w.scheduling.form.button.disabled


def test_a_mail_that_cannot_be_composed_is_named_and_nothing_can_be_sent(
    tmp_path: Path, smtp_server: Server
) -> None:
    """The bad member is the last: the confirmation's one-mail checks pass, the check finds it."""
    server = smtp_server()
    w = shop_wizard(tmp_path, server, LARGE, bad=LARGE - 1)
    w.compose.to_confirm.click()
    assert w.stage == "confirm"
    check = w.mail_check
    assert check is not None and check.wait(WAIT)
    status = w.status.value
    assert "bcartnb-status-error" in status
    assert f"会員 {1000 + LARGE - 1} の件名に改行が入ります" in status
    assert "送信も予約もできません。「戻る」でメールを直してください。" in status
    assert w.confirm.send.disabled and w.scheduling.form.button.disabled
    w.confirm.send.click()
    w.scheduling.form.button.click()
    assert w.stage == "confirm" and w.result is None
    assert not server.received
    w.confirm.back.click()  # fixed in the form, the next confirmation is usable again
    assert w.stage == "compose"
    w.compose.subject.value = "ご案内"
    w.compose.to_confirm.click()
    assert w.mail_check is not None and w.mail_check.wait(WAIT)
    assert "全員分のメールを確かめました" in w.status.value
    assert not w.confirm.send.disabled


def test_back_stops_the_check_and_it_never_writes_to_the_form(
    tmp_path: Path, smtp_server: Server
) -> None:
    w = shop_wizard(tmp_path, smtp_server(), LARGE, bad=LARGE - 1)
    w.compose.to_confirm.click()
    check = w.mail_check
    assert check is not None
    w.confirm.back.click()
    assert check.cancelled and w.mail_check is None
    assert check.wait(WAIT)
    assert w.stage == "compose"
    assert "改行" not in w.status.value  # the error, had it been found, went nowhere
    assert not w.compose.to_confirm.disabled


def test_a_second_confirmation_replaces_the_first_check(
    tmp_path: Path, smtp_server: Server
) -> None:
    """「同じ内容を再送する」 or 確認画面へ again: only the newest check may speak."""
    w = shop_wizard(tmp_path, smtp_server(), LARGE)
    w.compose.to_confirm.click()
    first = w.mail_check
    w.confirm.back.click()
    w.compose.to_confirm.click()
    second = w.mail_check
    assert first is not None and second is not None and first is not second
    assert first.cancelled and not second.cancelled
    assert first.wait(WAIT) and second.wait(WAIT)
    assert "全員分のメールを確かめました" in w.status.value


def test_send_pressed_before_the_check_is_done_sends_every_mail_once(
    tmp_path: Path, smtp_server: Server
) -> None:
    server = smtp_server()
    w = shop_wizard(tmp_path, server, LARGE)
    w.compose.to_confirm.click()
    check = w.mail_check
    assert check is not None
    w.confirm.send.click()  # at once: the check is stopped, the send composes every mail
    assert check.cancelled or check.wait(0)
    assert w.stage == "done", w.status.value
    mails = member_mails(server)
    assert len(mails) == LARGE and set(mails.values()) == {1}
    assert check.wait(WAIT)
    assert "全員分のメールを確かめました" not in w.status.value  # the done screen stays


@pytest.mark.parametrize("bad", [0, LARGE - 1])
def test_send_pressed_at_once_with_a_bad_mail_sends_nothing(
    tmp_path: Path, smtp_server: Server, bad: int
) -> None:
    """Whichever comes first, the check (送信 then disabled) or the send's own composing of
    every mail before the first, not one mail goes out."""
    server = smtp_server()
    w = shop_wizard(tmp_path, server, LARGE, bad=bad)
    w.compose.to_confirm.click()
    w.confirm.send.click()
    if w.mail_check is not None:
        assert w.mail_check.wait(WAIT)
    assert not server.received
    assert "改行" in w.status.value or "改行" in w.sending.done.value, w.status.value
