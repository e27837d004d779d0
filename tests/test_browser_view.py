"""What the marketer sees after each click (issue 23, item 1), in a real JupyterLab.

The wizard's screens replace each other in place: after a click at the bottom of a long list
the page used to stay scrolled down and look blank, 送信's progress bar was never seen, and
テスト送信's result appeared ~1,500 px above its button. Here every click is followed by the
element it changed being inside the notebook's visible area, at 1280×720 and at 600 px wide,
and a button is disabled while its action runs and enabled again after, an error included.
The wizard is opened by tests/test_browser.py's fixture (the same copy of the notebook, the
same SMTP server in this process).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import pytest
import test_browser
from browser_support import OFF_ROW_JS, wait_page_settled, widget_input
from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import Locator, Page, ViewportSize, expect
from test_browser import TEMPLATE, UI_TIMEOUT, Opened, demo_members, tick

from bcartnb.audience import build_audience
from bcartnb.delivery import DONE_MESSAGE
from bcartnb.members import read_members
from bcartnb.widgets.member_table import PAGE_SIZE

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]

open_wizard = test_browser.open_wizard  # the fixture, shared with the wizard's other tests

#: True when the element is inside every scrolling box around it and the window; an element
#: taller than the visible area must at least show its top.
IN_VIEW_JS = """el => {
  const r = el.getBoundingClientRect();
  if (!r.height) return false;
  let top = 0, bottom = window.innerHeight;
  for (let p = el.parentElement; p; p = p.parentElement) {
    const s = getComputedStyle(p);
    if (/(auto|scroll)/.test(s.overflowY) && p.scrollHeight > p.clientHeight) {
      const q = p.getBoundingClientRect();
      top = Math.max(top, q.top);
      bottom = Math.min(bottom, q.bottom);
    }
  }
  const fits = r.height <= bottom - top;
  return r.top >= top - 1 && (fits ? r.bottom <= bottom + 1 : r.top < bottom);
}"""

#: Records each change of the button's ``disabled`` attribute on window.__disabled.
WATCH_DISABLED_JS = """el => {
  window.__disabled = [];
  new MutationObserver(() => window.__disabled.push(el.disabled))
    .observe(el, {attributes: true, attributeFilter: ["disabled"]});
}"""

SIZES: dict[str, ViewportSize] = {
    "1280x720": {"width": 1280, "height": 720},
    "600x720": {"width": 600, "height": 720},
}


def assert_in_view(page: Page, locator: Locator, what: str) -> None:
    """The element comes into view (the scroll runs in the browser just after the update)."""
    expect(locator).to_be_visible(timeout=UI_TIMEOUT)
    handle = locator.element_handle(timeout=UI_TIMEOUT)
    try:
        page.wait_for_function(IN_VIEW_JS, arg=handle, timeout=15_000)
    except Exception as err:
        box = locator.bounding_box()
        raise AssertionError(
            f"{what} is not in view: {box}, viewport {page.viewport_size}"
        ) from err


def clicked_while_disabled(page: Page, button: Locator, then: Callable[[], None]) -> list[bool]:
    """Click ``button``, wait for ``then``; the button's disabled states in between."""
    button.evaluate(WATCH_DISABLED_JS)
    button.click()
    then()
    expect(button).to_be_enabled(timeout=UI_TIMEOUT)
    seen: list[bool] = page.evaluate("window.__disabled")
    return seen


@pytest.mark.parametrize("size", list(SIZES))
def test_each_click_brings_what_it_changed_into_view(
    open_wizard: Callable[[str], Opened], size: str
) -> None:
    members = read_members(demo_members())
    tokyo = build_audience(members, {"pref": ["東京都"]})
    first_page = set(tokyo.selected["id"].head(PAGE_SIZE).astype("int64").tolist())
    chosen = [i for i in tokyo.sendable["id"].astype("int64").tolist() if i in first_page][:2]
    assert len(chosen) == 2

    opened = open_wizard("プラン10")
    page, server = opened.page, opened.server
    page.set_viewport_size(SIZES[size])

    # 絞込 → the result count
    widget_input(page, "bcartnb-filter-pref", "select").select_option(label="東京都")
    page.locator(".bcartnb-filter-apply").click()
    count = page.locator(".bcartnb-result-count")
    expect(count).to_have_text(f"検索結果: {len(tokyo.selected):,}件", timeout=UI_TIMEOUT)
    assert_in_view(page, count, "絞込's result count")
    wait_page_settled(page, chosen, timeout=UI_TIMEOUT)

    # チェックした会員に送信, at the bottom of the list → the form's top
    for member_id in chosen:
        tick(page, member_id)
    page.locator(".bcartnb-send-checked").click()
    expect(page.locator(".bcartnb-to-confirm")).to_be_visible(timeout=UI_TIMEOUT)
    expect(page.locator(".bcartnb-counts")).to_contain_text("2", timeout=UI_TIMEOUT)
    assert_in_view(page, page.locator(".bcartnb-status"), "the status line")
    assert_in_view(page, page.locator(".bcartnb-quota"), "the form's top")

    widget_input(page, "bcartnb-template", "select").select_option(label=TEMPLATE)
    expect(widget_input(page, "bcartnb-subject")).not_to_have_value("", timeout=UI_TIMEOUT)

    def to_confirm() -> None:
        page.locator(".bcartnb-to-confirm").click()
        counts = page.locator(".bcartnb-confirm-counts")
        expect(counts).to_contain_text("送信件数: 2件", timeout=UI_TIMEOUT)
        assert_in_view(page, counts, "the confirmation's counts")

    to_confirm()

    # テスト送信 → its result right by the button, the button disabled meanwhile
    test_send = page.locator("button.bcartnb-test-send")
    result = page.locator(".bcartnb-test-result")
    seen = clicked_while_disabled(
        page,
        test_send,
        lambda: expect(result).to_contain_text("テスト送信しました", timeout=UI_TIMEOUT),
    )
    assert True in seen and seen[-1] is False, seen
    assert_in_view(page, result, "テスト送信's result")
    assert_in_view(page, test_send, "テスト送信")
    assert server.wait_for(1)

    # …and after an error, the button is enabled again and the error is by it
    widget_input(page, "bcartnb-test-to").fill("not an address")
    seen = clicked_while_disabled(
        page,
        test_send,
        lambda: expect(result).to_contain_text("cannot be mailed", timeout=UI_TIMEOUT),
    )
    assert True in seen and seen[-1] is False, seen
    assert_in_view(page, result, "テスト送信's error")
    assert len(server.received) == 1

    # 戻る → the form's top; 確認画面へ again → the counts
    page.locator(".bcartnb-back").click()
    expect(page.locator(".bcartnb-to-confirm")).to_be_visible(timeout=UI_TIMEOUT)
    assert_in_view(page, page.locator(".bcartnb-quota"), "the form's top after 戻る")
    to_confirm()

    # 送信 → the progress bar and the done screen
    page.locator(".bcartnb-send").click()
    done = page.locator(".bcartnb-done")
    expect(done).to_contain_text(DONE_MESSAGE, timeout=UI_TIMEOUT)
    assert_in_view(page, page.locator(".bcartnb-progress"), "the progress bar")
    assert_in_view(page, done, "the done screen")
    assert server.wait_for(4)  # the test send, two members, the admin copy

    # 新しい配信を作成 → the member list's top again
    page.locator(".bcartnb-new-campaign").click()
    expect(page.locator(".bcartnb-send-checked")).to_be_visible(timeout=UI_TIMEOUT)
    assert_in_view(page, page.locator(".bcartnb-status"), "the status line after 新しい配信")


def off_rows(page: Page, ids: list[int]) -> list[int]:
    """The members whose box is not on their row once the page has settled: a new page's
    cells and its boxes' names arrive as separate widget messages, so this waits (up to
    UI_TIMEOUT) for every box to be on its row, then says which are not."""
    with contextlib.suppress(PlaywrightError):  # the list below says which
        page.wait_for_function(
            f"ids => ({OFF_ROW_JS})(ids).length === 0", arg=ids, timeout=UI_TIMEOUT
        )
    return list(page.evaluate(OFF_ROW_JS, ids))


def test_the_table_s_boxes_sit_on_their_rows_are_named_and_take_the_keyboard(
    open_wizard: Callable[[str], Opened],
) -> None:
    everyone = build_audience(read_members(demo_members()), {})
    ids = everyone.selected["id"].astype("int64").tolist()
    first, second = ids[:PAGE_SIZE], ids[PAGE_SIZE : 2 * PAGE_SIZE]
    page = open_wizard("プラン10").page
    page.set_viewport_size({"width": 375, "height": 720})  # a phone: long cells wrap
    checked = page.locator(".bcartnb-checked-count")

    assert off_rows(page, first) == []
    box = page.get_by_role("checkbox", name=f"会員ID {first[0]} をチェック")
    expect(box).to_have_count(1)  # what a screen reader says of a box with no visible text
    box.focus()
    page.keyboard.press("Space")
    expect(checked).to_have_text("チェックした会員: 1件", timeout=UI_TIMEOUT)
    page.keyboard.press("Tab")  # the next row's box
    page.keyboard.press("Space")
    expect(checked).to_have_text("チェックした会員: 2件", timeout=UI_TIMEOUT)
    expect(widget_input(page, f"bcartnb-check-{first[1]}", "input")).to_be_checked()

    page.locator(".bcartnb-page-next").click()
    expect(widget_input(page, f"bcartnb-check-{second[0]}", "input")).not_to_be_checked(
        timeout=UI_TIMEOUT
    )
    assert off_rows(page, second) == []
    page.locator(".bcartnb-page-prev").click()
    expect(widget_input(page, f"bcartnb-check-{first[1]}", "input")).to_be_checked(
        timeout=UI_TIMEOUT
    )
    expect(widget_input(page, f"bcartnb-check-{first[2]}", "input")).not_to_be_checked()
    expect(checked).to_have_text("チェックした会員: 2件")
