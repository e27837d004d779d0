"""The confirmation's layout in a real JupyterLab and Chromium (issue 23 item 8): From and the
admin copy's address shown, the HTML part first and tall enough to read, 送信前の確認 in the
quota warning's red, and the count on the same line as 送信.

Reuses test_browser's ``open_wizard`` (the demo shop in tmp, a real SMTP server) and sends
nothing: the verdict is what the page lays out.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import test_browser
from browser_support import widget_input
from playwright.sync_api import expect
from test_wizard_mail_check import member_file

from bcartnb.audience import build_audience
from bcartnb.members import read_members
from bcartnb.widgets.planning import CHECK_AT_ONCE_UP_TO

pytestmark = [pytest.mark.browser, pytest.mark.timeout(240)]

open_wizard = test_browser.open_wizard  # the fixture, under its own name
Opened = test_browser.Opened
UI_TIMEOUT = test_browser.UI_TIMEOUT
HTML_TEMPLATE = "HTMLニュースレター"


def test_the_confirmation_shows_from_admin_html_first_and_the_count_beside_send(
    open_wizard: Callable[[str], Opened],
) -> None:
    sendable = len(
        build_audience(read_members(test_browser.demo_members()), opt_in_only=True).sendable
    )
    opened = open_wizard("プラン10")
    page, server = opened.page, opened.server

    page.locator(".bcartnb-send-all").click()
    expect(page.locator(".bcartnb-to-confirm")).to_be_visible(timeout=UI_TIMEOUT)
    widget_input(page, "bcartnb-template", "select").select_option(label=HTML_TEMPLATE)
    expect(widget_input(page, "bcartnb-html", "input[type=checkbox]")).to_be_checked(
        timeout=UI_TIMEOUT
    )
    # a tag in the body of what is now a text mail is said under the form at once
    widget_input(page, "bcartnb-html", "input[type=checkbox]").uncheck()
    notice = page.locator(".bcartnb-html-in-text-warning")
    expect(notice).to_contain_text("HTMLのタグがあります", timeout=UI_TIMEOUT)
    red = notice.evaluate("e => getComputedStyle(e).color")
    assert red == "rgb(176, 0, 32)"  # #b00020, the quota warning's red

    # as a text mail: the finding on the confirmation, in the same red as the form's notice
    page.locator(".bcartnb-to-confirm").click()
    checks = page.locator(".bcartnb-checks")
    expect(checks).to_contain_text("HTMLのタグがあります", timeout=UI_TIMEOUT)
    assert checks.evaluate("e => getComputedStyle(e).color") == red
    expect(page.locator("iframe.bcartnb-preview-html")).to_have_count(0)
    page.locator(".bcartnb-back").click()

    # as the HTML mail it is
    widget_input(page, "bcartnb-html", "input[type=checkbox]").check()
    expect(notice).to_have_count(0, timeout=UI_TIMEOUT)
    page.locator(".bcartnb-to-confirm").click()
    send = page.locator("button.bcartnb-send")
    expect(send).to_be_visible(timeout=UI_TIMEOUT)
    expect(page.locator('.bcartnb-checks [data-code="html_in_text"]')).to_have_count(
        0, timeout=UI_TIMEOUT
    )

    sender = page.locator(".bcartnb-confirm-sender")
    expect(sender).to_contain_text("サンプル商店 <shop@example.co.jp>")
    expect(sender).to_contain_text(f"配信控えの送り先: {test_browser.ADMIN}")

    frame = page.locator("iframe.bcartnb-preview-html")
    text = page.locator("pre.bcartnb-preview-text")
    expect(frame).to_be_visible(timeout=UI_TIMEOUT)
    frame_box, text_box = frame.bounding_box(), text.bounding_box()
    assert frame_box is not None and text_box is not None
    assert frame_box["y"] + frame_box["height"] <= text_box["y"]  # the HTML first
    assert frame_box["height"] >= 550, frame_box  # a screenful, not 260 px

    count = page.locator(".bcartnb-send-count")
    expect(count).to_have_text(f"{sendable:,}件に送信します")
    send_box, count_box = send.bounding_box(), count.bounding_box()
    assert send_box is not None and count_box is not None
    assert count_box["x"] >= send_box["x"] + send_box["width"]  # beside 送信, to its right
    assert (
        abs((count_box["y"] + count_box["height"] / 2) - (send_box["y"] + send_box["height"] / 2))
        < send_box["height"]
    )
    assert server.received == []  # the confirmation sends nothing


def test_a_large_list_is_confirmed_at_once_and_the_check_of_every_mail_reaches_the_page(
    open_wizard: Callable[..., Opened], tmp_path: Path
) -> None:
    """More members than the confirmation composes before it shows: every mail is composed on
    a thread of the kernel, and what it finds reaches the browser. The last member's 会社名
    holds a line break, which the subject uses: the page names the member and 送信 is
    disabled; a subject without the field then confirms, and 送信 is usable."""
    n = CHECK_AT_ONCE_UP_TO + 100
    bad = 1000 + n - 1
    (tmp_path / "members").mkdir()
    members = member_file(tmp_path / "members", n, bad=n - 1)
    opened = open_wizard("自社SMTP", members)
    page, server = opened.page, opened.server

    page.locator(".bcartnb-send-all").click()
    expect(page.locator(".bcartnb-to-confirm")).to_be_visible(timeout=UI_TIMEOUT)
    widget_input(page, "bcartnb-subject").fill("{{ 会社名 }} 様へのご案内")
    widget_input(page, "bcartnb-body", "textarea").fill("{{ 会社名 }} 様\n本文です。")
    page.locator(".bcartnb-to-confirm").click()
    expect(page.locator("button.bcartnb-send")).to_be_visible(timeout=UI_TIMEOUT)
    status = page.locator(".bcartnb-status")
    expect(status).to_contain_text(f"会員 {bad} の件名に改行が入ります", timeout=UI_TIMEOUT)
    expect(status).to_contain_text("送信も予約もできません")
    expect(page.locator("button.bcartnb-send")).to_be_disabled()
    expect(page.locator("button.bcartnb-schedule-send")).to_be_disabled()

    page.locator("button.bcartnb-back").click()
    expect(page.locator(".bcartnb-to-confirm")).to_be_visible(timeout=UI_TIMEOUT)
    widget_input(page, "bcartnb-subject").fill("新商品のご案内")
    page.locator(".bcartnb-to-confirm").click()
    expect(status).to_contain_text(
        f"送信件数 {n:,}件。全員分のメールを確かめました", timeout=UI_TIMEOUT
    )
    expect(page.locator("button.bcartnb-send")).to_be_enabled()
    assert server.received == []
