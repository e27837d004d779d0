"""A person's click and open in a real browser: Debian's headless Chromium reads a sent mail.

The campaign is sent with the command line into the test SMTP server; the HTML part of the
mail as received is written to a file and opened in Chromium (as a webmail or mail client
shows it), which loads the open image from the public server and follows a tracked link
through it to the shop's page (a local server here). Chromium says it is Chrome on Windows:
headless Chromium's own User-Agent names it ``HeadlessChrome``, which the server rightly
counts as a machine.
"""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from browser_support import launch_chromium
from playwright.sync_api import sync_playwright
from test_tracking import (  # noqa: F401 - fixtures
    BROWSER,
    Shop,
    events,
    hidden,
    listening,
    mail_to,
    parts,
    results,
    send,
    server,
    shop,
    tracked,
    write_campaign,
)

from bcartnb.hygiene.tracking_server import Tracker

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]


class _Landing(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = "<!doctype html><title>冬のセール</title><h1>冬のセール会場</h1>".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def landing() -> Iterator[str]:
    """The shop's own page a tracked link leads to."""
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Landing)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/sale"
    httpd.shutdown()
    httpd.server_close()


def test_chromium_click_is_redirected_and_counted_once_as_a_person_with_one_open(
    shop: Shop,  # noqa: F811
    server: Tracker,  # noqa: F811
    landing: str,
    tmp_path: Path,
) -> None:
    write_campaign(
        shop.campaign,
        f'<p>{{{{ 会社名 }}}} 様</p><p><a href="{landing}">冬のセール</a></p>'
        '<p><a href="{{ unsubscribe_link }}">配信停止</a></p>',
    )
    cid = send(shop)
    html = parts(mail_to(shop, "user1@example.co.jp"))[1]
    (link,) = tracked(shop, html)
    mail = tmp_path / "mail.html"
    mail.write_text(html, "utf-8")
    with sync_playwright() as pw:
        browser = launch_chromium(pw)
        try:
            page = browser.new_context(user_agent=BROWSER).new_page()
            for _ in range(3):  # read the mail, click, come back: three times
                page.goto(mail.as_uri(), wait_until="load")
                sale = page.get_by_role("link", name="冬のセール")
                assert sale.get_attribute("href") == link  # through the tracking server
                with page.expect_navigation(url=landing):
                    sale.click()
                assert page.url == landing
                assert page.get_by_role("heading").inner_text() == "冬のセール会場"
            # the hidden link is neither shown nor in the page's accessibility tree
            page.goto(mail.as_uri(), wait_until="load")
            trap = page.locator(f'a[href="{hidden(shop, html)}"]')
            assert trap.count() == 1 and not trap.is_visible()
            assert page.get_by_role("link").count() == 2  # 冬のセール and 配信停止 only
        finally:
            browser.close()
    got = results(shop, cid, server)
    assert (got["clicked"], got["clicks"], got["opened"]) == (1, 3, 1)
    assert got["machine"] == {"opens": 0, "clicks": 0}
    assert [(x["url"], x["people"], x["clicks"]) for x in got["links"]] == [(landing, 1, 3)]
    rows = events(shop, server)
    assert [r[:4] for r in rows] == [(1001, 0, "open", 0), (1001, 1, "click", 0)]
    assert rows[1][4] == 3 and rows[0][4] >= 1  # each showing of the mail loads the image
