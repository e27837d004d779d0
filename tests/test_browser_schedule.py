"""予約配信 from the wizard in a real JupyterLab and Chromium (issue 27): 「予約して送信」 with a
date and a time on the confirmation, the campaign in 予約一覧, then 取消 with its question.

Reuses test_browser's ``open_wizard`` (the demo shop in tmp, a real SMTP server). The kernel
runs on the real clock, so the day picked is the day after tomorrow in Japan. The verdict is
the page, the ledger's ``scheduled`` row (read with sqlite3, as a person would look) and the
SMTP server, which receives nothing: scheduling and cancelling send no mail.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import test_browser
from browser_support import Screenshots, widget_input
from playwright.sync_api import expect

from bcartnb.quota import TOKYO

pytestmark = [pytest.mark.browser, pytest.mark.timeout(240)]

open_wizard = test_browser.open_wizard  # the fixtures, under their own names
shots = test_browser.shots
Opened = test_browser.Opened
UI_TIMEOUT = test_browser.UI_TIMEOUT


def status_of(ledger: Path, schedule_id: str) -> str:
    with sqlite3.connect(ledger) as db:
        row = db.execute(
            "SELECT status FROM scheduled WHERE schedule_id = ?", (schedule_id,)
        ).fetchone()
    assert row is not None, schedule_id
    return str(row[0])


def test_schedule_from_the_confirmation_see_it_listed_and_cancel_it(
    open_wizard: Callable[[str], Opened],
    shots: Callable[[str], Screenshots],
    tmp_path: Path,
) -> None:
    day = (datetime.now(TOKYO) + timedelta(days=2)).date()
    opened = open_wizard("プラン10")
    page, server = opened.page, opened.server
    shot = shots("schedule")

    page.locator(".bcartnb-send-all").click()
    expect(page.locator(".bcartnb-to-confirm")).to_be_visible(timeout=UI_TIMEOUT)
    widget_input(page, "bcartnb-template", "select").select_option(label=test_browser.TEMPLATE)
    expect(widget_input(page, "bcartnb-subject")).not_to_have_value("", timeout=UI_TIMEOUT)
    page.locator(".bcartnb-to-confirm").click()
    expect(page.locator("button.bcartnb-send")).to_be_visible(timeout=UI_TIMEOUT)

    # the date and the time beside 送信, and what scheduling will do
    note = page.locator(".bcartnb-schedule-note")
    expect(note).to_contain_text("送信時点の会員に送ります", timeout=UI_TIMEOUT)
    date_input = widget_input(page, "bcartnb-schedule-date", "input")
    date_input.fill(day.isoformat())
    date_input.dispatch_event("change")
    widget_input(page, "bcartnb-schedule-time", "select").select_option("10:30")
    shot.take(page, "confirm", page.locator(".bcartnb-schedule-form"))
    page.locator("button.bcartnb-schedule-send").click()

    result = page.locator(".bcartnb-schedule-result")
    expect(result).to_contain_text("予約しました", timeout=UI_TIMEOUT)
    expect(result).to_contain_text(f"{day.isoformat()} 10:30（日本時間）")
    expect(result).to_contain_text("bcartnb due を毎分動かすと送信されます")
    found = re.search(r"r-\d{8}-\d{4}-[0-9a-f]{4}", result.inner_text())
    assert found, result.inner_text()
    sid = found.group(0)
    assert sid.startswith(f"r-{day:%Y%m%d}-1030-")
    expect(page.locator("button.bcartnb-send")).to_be_disabled()  # not sent now as well
    ledger = tmp_path / "ledger.sqlite3"
    assert status_of(ledger, sid) == "scheduled"
    shot.take(page, "scheduled", result)

    # 予約一覧: the campaign, its time and status
    page.locator("button.bcartnb-open-schedules").click()
    listed = page.locator(f".bcartnb-schedule-{sid}")
    expect(listed).to_be_visible(timeout=UI_TIMEOUT)
    expect(listed).to_contain_text(f"{day.isoformat()} 10:30")
    expect(listed).to_contain_text("予約中")
    shot.take(page, "list", listed)

    # 取消: asked first, then cancelled; nothing is sent
    listed.locator("button.bcartnb-schedule-cancel").click()
    ask = page.locator(".bcartnb-schedule-confirm-cancel")
    expect(ask).to_contain_text(sid, timeout=UI_TIMEOUT)
    assert status_of(ledger, sid) == "scheduled"  # not before the answer
    page.locator("button.bcartnb-schedule-confirm-cancel-yes").click()
    expect(page.locator(".bcartnb-schedule-status")).to_contain_text(
        "を取り消しました（送信しません）", timeout=UI_TIMEOUT
    )
    expect(listed).to_have_count(0)
    assert status_of(ledger, sid) == "cancelled"
    shot.take(page, "cancelled", page.locator(".bcartnb-schedule-status"))
    assert server.received == []
