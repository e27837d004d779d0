"""配信履歴と結果 in a real JupyterLab and Chromium (issue 25): a campaign sent with click and
open measurement, a click and an open recorded through the real tracking server, the panel's
開封率 and クリック率, then 配信結果で絞り込む → 開封しなかった会員 narrows the member table to
exactly the members who did not open.

The shop is five members (test_results' file) in place of the demo file; the campaign goes
out with the command line into the test SMTP server before the notebook starts, and the
responses are real HTTP requests to the public server's app (as in ``test_results``).
"""

from __future__ import annotations

import os
import re
import shutil
import socket
from collections.abc import Callable
from pathlib import Path

import pytest
import test_browser
import test_tracking as tt
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
from playwright.sync_api import expect, sync_playwright
from test_results import FORMULA, _members_csv

from bcartnb.ledger import Ledger
from bcartnb.settings import load_settings

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]

shots = test_browser.shots
Server = test_browser.Server
UI_TIMEOUT = test_browser.UI_TIMEOUT
NOTEBOOK = test_browser.NOTEBOOK
REPO = test_browser.REPO
MEMBERS = [1001, 1002, 1003, 1004, 1005]  # 1006 has a bad address: never mailed


def _shop(tmp_path: Path, smtp: Server, base: str) -> tt.Shop:
    """The wizard's shop with five members, measuring clicks and opens at ``base``."""
    root = tmp_path / "shop"
    (root / "notebooks").mkdir(parents=True)
    shutil.copy2(REPO / NOTEBOOK, root / NOTEBOOK)
    shutil.copytree(REPO / "data", root / "data")
    _members_csv(root / "members.csv")
    text = (root / "members.csv").read_text("utf-8")  # the screenshot shows a plain name
    quoted = '"' + FORMULA.replace('"', '""') + '"'
    (root / "members.csv").write_text(text.replace(quoted, "結果商事1005"), "utf-8")
    shutil.copy2(root / "members.csv", root / "data" / "demo_members.csv")  # the wizard's
    config = root / "bcartnb.toml"
    config.write_text(
        test_browser.settings_toml("プラン10", tmp_path / "ledger.sqlite3")
        + f'unsubscribe_url = "{tt.UNSUB}"\n[tracking]\nurl = "{base}"\n',
        "utf-8",
    )
    campaign = root / "campaign.toml"
    tt.write_campaign(campaign, tt.BODY)
    server = smtp()
    env = {k: v for k, v in os.environ.items() if not k.startswith("BCARTNB_")}
    env |= server.env() | {
        "BCARTNB_CONFIG": str(config),
        "BCARTNB_UNSUBSCRIBE_SECRET": tt.SECRET,
    }
    return tt.Shop(root, env, server, campaign, base)


def test_the_results_panel_shows_the_rates_and_narrows_to_the_non_openers(
    tmp_path: Path, smtp_server: Server, shots: Callable[[str], Screenshots]
) -> None:
    listening = socket.create_server(("127.0.0.1", 0))
    base = f"http://127.0.0.1:{listening.getsockname()[1]}/t"
    shop = _shop(tmp_path, smtp_server, base)
    cid = tt.send(shop)
    settings = load_settings(env=shop.env)
    with Ledger.open(settings.db) as led:
        running = tt._Serving(settings, led, listening).start()
        try:
            html = tt.parts(tt.mail_to(shop, "user1001@example.co.jp"))[1]
            assert tt.get(tt.tracked(shop, html)[0]).status_code == 302  # 1001 clicks
            html = tt.parts(tt.mail_to(shop, "user1002@example.co.jp"))[1]
            (image,) = re.findall(re.escape(base) + r"/o/[A-Za-z0-9_-]+", html)
            assert tt.get(image).status_code == 200  # 1002 opens
            assert tt.tracker_of(running).writer.flush()
        finally:
            running.server.should_exit = True
            running.thread.join(timeout=20)
            listening.close()
    got = tt.results(shop, cid)
    assert (got["delivered"], got["opened"], got["clicked"]) == (5, 2, 1)

    shot = shots("results")
    lab = JupyterLab(shop.tmp, tmp_path / "lab", env=shop.env)
    with sync_playwright() as pw:
        browser = launch_chromium(pw)
        lab.start()
        try:
            page = browser.new_page(viewport=VIEWPORT, locale="ja-JP")
            open_notebook(page, lab, NOTEBOOK)
            collapse_left_sidebar(page)
            run_all_cells(page)
            wait_for_wizard(page, timeout=UI_TIMEOUT)
            count = page.locator(".bcartnb-result-count")
            expect(count).to_have_text("検索結果: 6件", timeout=UI_TIMEOUT)

            history = page.locator(".bcartnb-history")
            row = history.locator("tr", has_text=cid)
            expect(row).to_be_visible(timeout=UI_TIMEOUT)
            cells = row.locator("td")
            expect(cells.nth(2)).to_have_text("5件")
            expect(cells.nth(3)).to_have_text("40.0%")  # 1001 (clicked) and 1002 opened
            expect(cells.nth(4)).to_have_text("20.0%")

            chooser = widget_input(page, "bcartnb-results-campaign", "select")
            label = chooser.locator("option", has_text=cid).inner_text()
            chooser.select_option(label=label)
            widget_input(page, "bcartnb-results-who", "select").select_option(
                label="開封しなかった会員"
            )
            page.locator(".bcartnb-results-use").click()
            expect(count).to_have_text("検索結果: 3件", timeout=UI_TIMEOUT)
            table = page.locator(".bcartnb-member-table")
            for mid, shown in ((1003, 1), (1004, 1), (1005, 1), (1001, 0), (1002, 0), (1006, 0)):
                box = table.get_by_role("checkbox", name=f"会員ID {mid} をチェック")
                expect(box).to_have_count(shown)  # 1001, 1002 opened; 1006 was never mailed
            shot.take(page, "non-openers", page.locator(".bcartnb-results"))
        finally:
            browser.close()
            lab.stop()
