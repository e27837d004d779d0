"""The wizard in a real JupyterLab, driven in Debian's headless Chromium (issue 7).

Each test copies ``notebooks/campaign_wizard.ipynb`` and ``data/`` to tmp, writes a settings
file there, starts ``jupyter lab`` with ``BCARTNB_CONFIG`` and the ``BCARTNB_SMTP_*`` of a
real aiosmtpd server in this process, opens the notebook in Chromium, runs it with
Run > Run All Cells and clicks through the wizard as a marketer would. What the server
received is the verdict; the screenshots of each step are what the README shows.

Screenshots go to ``$BCARTNB_SCREENSHOTS`` when set (``make screenshots`` sets it to
docs/screenshots), else to the test's tmp directory.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

import pytest
from browser_support import (
    OFF_ROW_JS,
    VIEWPORT,
    JupyterLab,
    Screenshots,
    collapse_left_sidebar,
    launch_chromium,
    open_notebook,
    run_all_cells,
    wait_for_wizard,
    wait_page_settled,
    widget_input,
)
from playwright.sync_api import Page, expect, sync_playwright
from smtp_servers import TestServer

from bcartnb.audience import build_audience
from bcartnb.delivery import DONE_MESSAGE
from bcartnb.members import read_members
from bcartnb.templates import TemplateStore
from bcartnb.widgets.member_table import PAGE_SIZE

pytestmark = [pytest.mark.browser, pytest.mark.timeout(240)]

# Read at import: the autouse fixture clears every BCARTNB_* variable before a test runs.
SCREENSHOT_DIR = os.environ.get("BCARTNB_SCREENSHOTS")
REPO = Path(__file__).resolve().parent.parent
NOTEBOOK = "notebooks/campaign_wizard.ipynb"
ADMIN = "admin@example.co.jp"
TEMPLATE = "テキストニュースレター"
UI_TIMEOUT = 60_000  # ms; the first wizard render includes the kernel's imports

Server = Callable[..., TestServer]


def settings_toml(plan: str, db: Path) -> str:
    return f"""\
plan = "{plan}"
from = "サンプル商店 <shop@example.co.jp>"
admin = "{ADMIN}"
signature = "サンプル商店 東京都千代田区1-1 配信停止: shop@example.co.jp"
templates = "data/templates"
db = "{db}"
"""


@pytest.fixture
def shots(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[str], Screenshots]:
    def make(prefix: str) -> Screenshots:
        directory = Path(SCREENSHOT_DIR) if SCREENSHOT_DIR else tmp_path / "screenshots"
        if not directory.is_absolute():
            directory = REPO / directory
        return Screenshots(directory, prefix)

    return make


@dataclass
class Opened:
    """The wizard on a page, and the SMTP server its kernel sends to."""

    page: Page
    server: TestServer


@pytest.fixture
def open_wizard(tmp_path: Path, smtp_server: Server) -> Iterator[Callable[..., Opened]]:
    """Factory: ``open_wizard(plan[, members])`` → the wizard shown in JupyterLab, all
    stopped after."""
    started: list[JupyterLab] = []
    with sync_playwright() as pw:
        browser = launch_chromium(pw)
        try:

            def open_(plan: str, members: Path | None = None) -> Opened:
                """``members``: a member file shown instead of the demo's 300."""
                root = tmp_path / "shop"
                (root / "notebooks").mkdir(parents=True)
                shutil.copy2(REPO / NOTEBOOK, root / NOTEBOOK)
                shutil.copytree(REPO / "data", root / "data")
                if members is not None:
                    shutil.copy2(members, root / "data" / "demo_members.csv")
                config = root / "bcartnb.toml"
                config.write_text(settings_toml(plan, tmp_path / "ledger.sqlite3"), "utf-8")
                server = smtp_server()
                lab = JupyterLab(
                    root,
                    tmp_path / "lab",
                    env={"BCARTNB_CONFIG": str(config), **server.env()},
                )
                started.append(lab.start())
                page = browser.new_page(viewport=VIEWPORT, locale="ja-JP")
                open_notebook(page, lab, NOTEBOOK)
                collapse_left_sidebar(page)
                run_all_cells(page)
                wait_for_wizard(page, timeout=UI_TIMEOUT)
                # the wizard runs an empty 絞込 on start: every member is listed
                total = len(read_members(root / "data" / "demo_members.csv"))
                expect(page.locator(".bcartnb-result-count")).to_have_text(
                    f"検索結果: {total:,}件", timeout=UI_TIMEOUT
                )
                return Opened(page, server)

            yield open_
        finally:
            browser.close()
            for lab in started:
                lab.stop()


def demo_members() -> Path:
    return REPO / "data" / "demo_members.csv"


def parsed(raw: bytes) -> EmailMessage:
    msg = message_from_bytes(raw, policy=policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


def tick(page: Page, member_id: int) -> None:
    """Tick the member's box once it sits on the member's row (its cells and its name agree)."""
    page.wait_for_function(
        f"ids => ({OFF_ROW_JS})(ids).length === 0", arg=[member_id], timeout=UI_TIMEOUT
    )
    box = widget_input(page, f"bcartnb-check-{member_id}", "input[type=checkbox]")
    box.check()
    expect(box).to_be_checked()


def test_wizard_sends_to_the_two_checked_members_and_the_admin(
    open_wizard: Callable[[str], Opened], shots: Callable[[str], Screenshots]
) -> None:
    members = read_members(demo_members())
    tokyo = build_audience(members, {"pref": ["東京都"]})
    # the first two sendable members on the table's first page, whose boxes are rendered
    first_page = set(tokyo.selected["id"].head(PAGE_SIZE).astype("int64").tolist())
    chosen = [i for i in tokyo.sendable["id"].astype("int64").tolist() if i in first_page][:2]
    assert len(chosen) == 2
    ids = members["id"].astype("int64").tolist()
    companies = dict(zip(ids, members["comp_name"].astype(str).tolist(), strict=True))
    every_email = dict(zip(ids, members["email"].astype(str).tolist(), strict=True))
    emails = {i: every_email[i] for i in chosen}
    template = TemplateStore(REPO / "data" / "templates").get(TEMPLATE)

    opened = open_wizard("プラン10")
    page, server = opened.page, opened.server
    shot = shots("wizard")
    shot.take(page, "start", page.locator(".bcartnb-wizard"))

    # 絞込オプション: 都道府県 = 東京都, 絞込
    widget_input(page, "bcartnb-filter-pref", "select").select_option(label="東京都")
    page.locator(".bcartnb-filter-apply").click()
    expect(page.locator(".bcartnb-result-count")).to_have_text(
        f"検索結果: {len(tokyo.selected):,}件", timeout=UI_TIMEOUT
    )
    wait_page_settled(page, chosen, timeout=UI_TIMEOUT)
    for member_id in chosen:
        tick(page, member_id)
    expect(page.locator(".bcartnb-checked-count")).to_have_text("チェックした会員: 2件")
    shot.take(page, "filter-and-check", page.locator(".bcartnb-select-buttons"))

    # 【チェックした会員に送信】 → the form, with the counts and this month's quota
    page.locator(".bcartnb-send-checked").click()
    expect(page.locator(".bcartnb-to-confirm")).to_be_visible(timeout=UI_TIMEOUT)
    expect(page.locator(".bcartnb-counts")).to_contain_text("2", timeout=UI_TIMEOUT)
    widget_input(page, "bcartnb-template", "select").select_option(label=TEMPLATE)
    expect(widget_input(page, "bcartnb-subject")).to_have_value(
        template.subject, timeout=UI_TIMEOUT
    )
    expect(widget_input(page, "bcartnb-body", "textarea")).to_have_value(template.body)
    shot.take(page, "compose", page.locator(".bcartnb-fields"))

    # 確認画面へ: final counts, the preview of a real mail
    page.locator(".bcartnb-to-confirm").click()
    send = page.locator(".bcartnb-send")
    expect(send).to_be_visible(timeout=UI_TIMEOUT)
    expect(send).to_be_enabled()
    expect(page.locator(".bcartnb-preview")).to_contain_text(
        companies[chosen[0]], timeout=UI_TIMEOUT
    )
    assert server.received == []  # nothing leaves before 送信
    shot.take(page, "confirm", page.locator(".bcartnb-confirm-counts"))

    # 送信
    send.click()
    expect(page.locator(".bcartnb-done")).to_contain_text(DONE_MESSAGE, timeout=UI_TIMEOUT)
    shot.take(page, "done", page.locator(".bcartnb-done"))

    assert server.wait_for(3)
    to_members = [r for r in server.received if r.recipients != (ADMIN,)]
    copies = [r for r in server.received if r.recipients == (ADMIN,)]
    assert sorted(r.recipients for r in to_members) == sorted((e,) for e in emails.values())
    assert len(copies) == 1
    assert len(server.received) == 3
    for r in to_members:
        member_id = next(i for i, e in emails.items() if (e,) == r.recipients)
        msg = parsed(r.raw)
        assert str(msg["Subject"]) == template.subject.replace("{{ 会社名 }}", companies[member_id])
        assert companies[member_id] in msg.get_content()

    # 新しい配信を作成: the member list again, ticks cleared, for the next campaign
    page.locator(".bcartnb-new-campaign").click()
    expect(page.locator(".bcartnb-send-checked")).to_be_visible(timeout=UI_TIMEOUT)
    expect(page.locator(".bcartnb-checked-count")).to_have_text("チェックした会員: 0件")
    expect(page.locator(".bcartnb-done")).to_be_hidden()


#: Buttons whose labels were cut (「このページをすべ…」) before issue 14; each must show whole.
LABELLED = (
    "bcartnb-send-all",
    "bcartnb-send-checked",
    "bcartnb-check-page",
    "bcartnb-filter-apply",
    "bcartnb-filter-reset",
    "bcartnb-save-segment",
    "bcartnb-members-load",
    "bcartnb-members-refresh",
)
COMPOSE_LABELLED = ("bcartnb-insert-subject", "bcartnb-insert-body", "bcartnb-to-confirm")


def cut_labels(page: Page, classes: tuple[str, ...]) -> dict[str, tuple[int, int]]:
    """Each visible button whose label is wider than the button (scrollWidth > clientWidth)."""
    cut = {}
    for css in classes:
        button = page.locator(f"button.{css}").first
        expect(button).to_be_visible(timeout=UI_TIMEOUT)
        scroll, client = button.evaluate("b => [b.scrollWidth, b.clientWidth]")
        if scroll > client:
            cut[css] = (scroll, client)
    return cut


def test_over_the_quota_is_said_early_and_refused_and_labels_show_whole(
    open_wizard: Callable[[str], Opened], shots: Callable[[str], Screenshots]
) -> None:
    # ライトプラン: 100 mails a month; the demo list has more sendable members than that
    sendable = len(build_audience(read_members(demo_members()), opt_in_only=True).sendable)
    assert sendable > 100

    opened = open_wizard("ライトプラン")
    page, server = opened.page, opened.server
    shot = shots("quota")

    # the selection step says it at once, with the numbers
    warning = page.locator(".bcartnb-select-quota-warning")
    expect(warning).to_contain_text(
        f"検索結果すべての送信件数 {sendable:,}件は、今月の残り 100件を {sendable - 100:,}件超えて",
        timeout=UI_TIMEOUT,
    )
    assert cut_labels(page, LABELLED) == {}  # 1280 px: every label whole
    shot.take(page, "selection-warning", page.locator(".bcartnb-select-buttons"))
    page.set_viewport_size({"width": 720, "height": 900})  # narrower: rows wrap, labels whole
    assert cut_labels(page, LABELLED) == {}
    page.set_viewport_size(VIEWPORT)

    page.locator(".bcartnb-send-all").click()
    expect(page.locator(".bcartnb-to-confirm")).to_be_visible(timeout=UI_TIMEOUT)
    expect(page.locator(".bcartnb-compose-quota-warning")).to_contain_text(
        f"送信件数 {sendable:,}件は、今月の残り 100件を {sendable - 100:,}件超えています",
        timeout=UI_TIMEOUT,
    )
    assert cut_labels(page, COMPOSE_LABELLED) == {}
    widget_input(page, "bcartnb-subject").fill("{{ 会社名 }} 様 年末のご案内")
    widget_input(page, "bcartnb-body", "textarea").fill("{{ 担当者名 }} 様\n年末のご案内です。")
    shot.take(page, "compose-warning", page.locator(".bcartnb-fields"))

    page.set_viewport_size({"width": 720, "height": 900})
    assert cut_labels(page, COMPOSE_LABELLED) == {}
    page.set_viewport_size(VIEWPORT)

    page.locator(".bcartnb-to-confirm").click()
    status = page.locator(".bcartnb-status")
    expect(status).to_contain_text("メール配信上限数を超えるため送信できません", timeout=UI_TIMEOUT)
    expect(status).to_contain_text(re.compile(r"100"))
    expect(page.locator(".bcartnb-send")).to_be_disabled()
    shot.take(page, "refused", status)
    assert server.received == []
    assert server.sessions == 0


def test_back_from_the_confirmation_keeps_what_was_typed(
    open_wizard: Callable[[str], Opened], shots: Callable[[str], Screenshots]
) -> None:
    members = read_members(demo_members())
    first = build_audience(members).sendable["id"].astype("int64").head(2).tolist()
    subject = "{{ 会社名 }} 様 展示会のご案内"
    body = "{{ 担当者名 }} 様\n\n12月の展示会にぜひお越しください。\n会場: 東京ビッグサイト"

    opened = open_wizard("プラン10")
    page, server = opened.page, opened.server
    shot = shots("back")

    for member_id in first:
        tick(page, member_id)
    page.locator(".bcartnb-send-checked").click()
    expect(page.locator(".bcartnb-to-confirm")).to_be_visible(timeout=UI_TIMEOUT)
    widget_input(page, "bcartnb-subject").fill(subject)
    widget_input(page, "bcartnb-body", "textarea").fill(body)
    page.locator(".bcartnb-to-confirm").click()
    expect(page.locator(".bcartnb-back")).to_be_visible(timeout=UI_TIMEOUT)
    shot.take(page, "confirm", page.locator(".bcartnb-confirm-counts"))

    page.locator(".bcartnb-back").click()
    expect(page.locator(".bcartnb-to-confirm")).to_be_visible(timeout=UI_TIMEOUT)
    expect(page.locator(".bcartnb-send")).to_be_hidden()
    expect(widget_input(page, "bcartnb-subject")).to_have_value(subject)
    expect(widget_input(page, "bcartnb-body", "textarea")).to_have_value(body)
    shot.take(page, "kept", page.locator(".bcartnb-quota"))
    assert server.received == []


def test_the_same_mail_is_held_back_and_sent_again_only_when_ticked(
    open_wizard: Callable[[str], Opened], shots: Callable[[str], Screenshots]
) -> None:
    """Issue 20: the second 送信 of a mail to the same members mails nobody, and says who has it;
    「同じ内容を再送する」 counts them in again and 送信 mails them again."""
    members = read_members(demo_members())
    first_page = set(members["id"].head(PAGE_SIZE).astype("int64").tolist())
    # メール案内「受け取る」 only, as the form has it by default
    sendable = build_audience(members, opt_in_only=True).sendable["id"].astype("int64").tolist()
    chosen = [i for i in sendable if i in first_page][:2]
    assert len(chosen) == 2

    opened = open_wizard("プラン10")
    page, server = opened.page, opened.server
    shot = shots("same-mail")

    def send_to_chosen() -> None:
        for member_id in chosen:
            tick(page, member_id)
        page.locator(".bcartnb-send-checked").click()
        expect(page.locator(".bcartnb-to-confirm")).to_be_visible(timeout=UI_TIMEOUT)
        template = widget_input(page, "bcartnb-template", "select")
        if template.input_value() != TEMPLATE:  # the second time, the form has kept it
            template.select_option(label=TEMPLATE)
            expect(widget_input(page, "bcartnb-subject")).not_to_have_value("", timeout=UI_TIMEOUT)
        page.locator(".bcartnb-to-confirm").click()
        expect(page.locator(".bcartnb-confirm-counts")).to_be_visible(timeout=UI_TIMEOUT)

    send_to_chosen()
    expect(page.locator(".bcartnb-repeat")).to_be_hidden()  # nobody has this mail yet
    page.locator(".bcartnb-send").click()
    expect(page.locator(".bcartnb-done")).to_contain_text(DONE_MESSAGE, timeout=UI_TIMEOUT)
    assert server.wait_for(3)

    page.locator(".bcartnb-new-campaign").click()  # the form keeps the mail
    expect(page.locator(".bcartnb-send-checked")).to_be_visible(timeout=UI_TIMEOUT)
    # the table is drawn anew (sorted for the mail): tick its new boxes, not the old ones
    expect(page.locator(".bcartnb-status")).to_contain_text("新しい配信", timeout=UI_TIMEOUT)
    send_to_chosen()
    counts = page.locator(".bcartnb-confirm-counts")
    expect(counts).to_contain_text("既に同じメールを送信済み 2件", timeout=UI_TIMEOUT)
    expect(page.locator(".bcartnb-warnings")).to_contain_text("同じメールをキャンペーン")
    repeat = page.locator(".bcartnb-repeat")
    expect(repeat).to_contain_text("同じ内容を再送する（送信済みの 2 件にも、もう一度送ります）")
    box = widget_input(page, "bcartnb-repeat", "input[type=checkbox]")
    expect(box).not_to_be_checked()
    expect(page.locator(".bcartnb-send")).to_be_disabled()
    shot.take(page, "held-back", counts)

    box.check()  # planned again: the two count in, the quota too
    expect(counts).to_contain_text("送信件数: 2件", timeout=UI_TIMEOUT)
    expect(counts).to_contain_text("2件 → 4件")
    expect(page.locator(".bcartnb-send")).to_be_enabled(timeout=UI_TIMEOUT)
    shot.take(page, "repeat", repeat)
    assert len(server.received) == 3  # nothing more before 送信
    page.locator(".bcartnb-send").click()
    expect(page.locator(".bcartnb-done")).to_contain_text(DONE_MESSAGE, timeout=UI_TIMEOUT)
    assert server.wait_for(6)
    to_members = sorted(r.recipients for r in server.received if r.recipients != (ADMIN,))
    emails = dict(zip(members["id"].astype("int64"), members["email"].astype(str), strict=True))
    assert to_members == sorted([(emails[i],) for i in chosen] * 2)
