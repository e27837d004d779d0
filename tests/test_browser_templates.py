"""Issue 23 (5, 6) in a real JupyterLab and Chromium: a custom-field filter, then a mail saved
as a template from the compose step, picked again, and deleted from テンプレート管理 after its
question, each checked on the page and in the shop's templates folder (the CLI's store)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from browser_support import (
    VIEWPORT,
    JupyterLab,
    Screenshots,
    collapse_left_sidebar,
    launch_chromium,
    open_notebook,
    run_all_cells,
    wait_for_wizard,
    widget_input,
)
from playwright.sync_api import Page, expect, sync_playwright
from smtp_servers import TestServer

from bcartnb.audience import build_audience
from bcartnb.members import read_members

pytestmark = [pytest.mark.browser, pytest.mark.timeout(240)]

REPO = Path(__file__).resolve().parent.parent
# read at import: the autouse fixture clears every BCARTNB_* variable before a test runs
SCREENSHOT_DIR = os.environ.get("BCARTNB_SCREENSHOTS")  # make screenshots: docs/screenshots
NOTEBOOK = "notebooks/campaign_wizard.ipynb"
UI_TIMEOUT = 60_000  # ms; the first render includes the kernel's imports
NAME = "秋の新商品"

Server = Callable[..., TestServer]


@pytest.fixture
def shop(tmp_path: Path, smtp_server: Server) -> Iterator[tuple[Page, Path]]:
    """The wizard notebook run in JupyterLab, over a shop whose templates folder is its own."""
    root = tmp_path / "shop"
    (root / "notebooks").mkdir(parents=True)
    shutil.copy2(REPO / NOTEBOOK, root / NOTEBOOK)
    shutil.copytree(REPO / "data", root / "data")
    (root / "templates").mkdir()
    config = root / "bcartnb.toml"
    config.write_text(
        'plan = "プラン10"\nfrom = "サンプル商店 <shop@example.co.jp>"\n'
        f'admin = "admin@example.co.jp"\ndb = "{tmp_path / "ledger.sqlite3"}"\n'
        '[names.price_groups]\n1 = "一般"\n',
        "utf-8",
    )
    server = smtp_server()
    lab = JupyterLab(root, tmp_path / "lab", env={"BCARTNB_CONFIG": str(config), **server.env()})
    with sync_playwright() as pw:
        browser = launch_chromium(pw)
        try:
            lab.start()
            page = browser.new_page(viewport=VIEWPORT, locale="ja-JP")
            open_notebook(page, lab, NOTEBOOK)
            collapse_left_sidebar(page)
            run_all_cells(page)
            wait_for_wizard(page, timeout=UI_TIMEOUT)
            expect(page.locator(".bcartnb-result-count")).to_contain_text(
                "検索結果", timeout=UI_TIMEOUT
            )
            yield page, root
        finally:
            browser.close()
            lab.stop()


def test_custom_filter_then_save_reuse_and_delete_a_template(
    shop: tuple[Page, Path], tmp_path: Path
) -> None:
    page, root = shop
    shots = Path(SCREENSHOT_DIR) if SCREENSHOT_DIR else tmp_path / "screenshots"
    shot = Screenshots(shots if shots.is_absolute() else REPO / shots, "templates")
    members = read_members(root / "data" / "demo_members.csv")
    kind = sorted(members["業種"].dropna().unique().tolist())[0]
    found = build_audience(members, {"業種": [kind]})

    # 絞込オプション: a custom field (業種) as a list; 価格グループ by its [names] name
    expect(widget_input(page, "bcartnb-filter-price-group", "select")).to_contain_text("1: 一般")
    widget_input(page, "bcartnb-custom-filter-0", "select").select_option(label=kind)
    page.locator(".bcartnb-filter-apply").click()
    expect(page.locator(".bcartnb-result-count")).to_have_text(
        f"検索結果: {len(found.selected):,}件", timeout=UI_TIMEOUT
    )
    shot.take(page, "custom-filter", page.locator(".bcartnb-custom-filters"))

    # compose, then テンプレートとして保存
    page.locator(".bcartnb-send-all").click()
    expect(page.locator(".bcartnb-to-confirm")).to_be_visible(timeout=UI_TIMEOUT)
    subject = "【{{ 会社名 }} 様】秋の新商品のご案内"
    widget_input(page, "bcartnb-subject").fill(subject)
    widget_input(page, "bcartnb-body", "textarea").fill("{{ 担当者名 }} 様\n{{ 業種 }}向けです。\n")
    widget_input(page, "bcartnb-save-template-name").fill(NAME)
    page.locator(".bcartnb-save-template").click()
    expect(page.locator(".bcartnb-save-template-status")).to_contain_text(
        f"テンプレート「{NAME}」を保存しました", timeout=UI_TIMEOUT
    )
    assert (root / "templates" / f"{NAME}.txt").is_file()
    shot.take(page, "saved-from-compose", page.locator(".bcartnb-save-template"))

    # reuse: a clean form, the template picked from the list
    widget_input(page, "bcartnb-subject").fill("")
    widget_input(page, "bcartnb-body", "textarea").fill("")
    widget_input(page, "bcartnb-template", "select").select_option(label=NAME)
    expect(widget_input(page, "bcartnb-subject")).to_have_value(subject, timeout=UI_TIMEOUT)

    # テンプレート管理: picked, previewed, deleted only after the question
    page.locator(".bcartnb-compose-back").click()
    page.locator(".bcartnb-open-templates").click()
    widget_input(page, "bcartnb-tpl-list", "select").select_option(label=NAME)
    expect(page.locator(".bcartnb-tpl-preview")).to_contain_text(
        "様】秋の新商品", timeout=UI_TIMEOUT
    )
    page.locator(".bcartnb-tpl-delete").click()
    ask = page.locator(".bcartnb-tpl-confirm-delete")
    expect(ask).to_contain_text(f"テンプレート「{NAME}」を削除しますか？", timeout=UI_TIMEOUT)
    shot.take(page, "delete-question", ask)
    assert (root / "templates" / f"{NAME}.txt").is_file()
    page.locator("button.bcartnb-tpl-confirm-delete-yes").click()
    expect(page.locator(".bcartnb-tpl-status")).to_contain_text("削除しました", timeout=UI_TIMEOUT)
    assert not (root / "templates" / f"{NAME}.txt").exists()
    expect(ask).to_be_hidden()
