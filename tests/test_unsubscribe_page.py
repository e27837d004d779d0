"""What a member sees on the unsubscribe page (issue 23 item 10), through a real uvicorn.

The page says which address it stops (masked), whose mail (the shop's name from ``[shop]``),
links back to the shop's site and gives a contact line; once stopped it says so on every
later visit, without a button. Settings come from a real ``bcartnb.toml``; every value in it
is shown as text.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from html.parser import HTMLParser
from pathlib import Path

import httpx
import pytest
from test_unsubscribe import CID, RECIPIENTS, SECRET, T0, Running, one_click, title_of, token_for

from bcartnb.ledger import Ledger
from bcartnb.settings import Settings, load_settings

SHOP_URL = 'https://shop.example.co.jp/?from=mail&x="<b>"'
CONTACT = "TEL 03-0000-0000（平日 9:00〜18:00）<script>alert(1)</script>"
TOML = f"""\
plan = "プラン10"
from = "送信者名 <shop@example.co.jp>"
unsubscribe_url = "https://shop.example.co.jp/mail/stop/{{{{ unsubscribe_token }}}}"

[shop]
name = "見本商事 <&>"
url = '{SHOP_URL}'
contact = '{CONTACT}'
"""


class _Seen(HTMLParser):
    """The page as a browser reads it: its text, links, forms, buttons and scripts."""

    def __init__(self, page: str) -> None:
        super().__init__(convert_charrefs=True)
        self.text: list[str] = []
        self.links: list[tuple[str | None, str]] = []
        self.forms = self.buttons = self.scripts = 0
        self._link: str | None = None
        self._in_footer = False
        self.footer: list[str] = []
        self.feed(page)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        self.forms += tag == "form"
        self.buttons += tag == "button"
        self.scripts += tag == "script"
        if tag == "a":
            self._link = a.get("href")
            self.links.append((self._link, ""))
        self._in_footer = self._in_footer or tag == "footer"

    def handle_endtag(self, tag: str) -> None:
        if tag == "a":
            self._link = None
        if tag == "footer":
            self._in_footer = False

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        if self._in_footer:
            self.footer.append(data)
        if self._link is not None:
            href, words = self.links[-1]
            self.links[-1] = (href, words + data)


def _settings(tmp_path: Path, toml: str = TOML) -> Settings:
    path = tmp_path / "bcartnb.toml"
    path.write_text(toml, encoding="utf-8")
    return load_settings(
        path, env={"BCARTNB_UNSUBSCRIBE_SECRET": SECRET, "BCARTNB_DB": str(tmp_path / "l.db")}
    )


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Callable[[Settings], tuple[Running, Ledger]]]:
    opened: list[tuple[Running, Ledger]] = []

    def run(settings: Settings) -> tuple[Running, Ledger]:
        assert settings.db is not None
        led = Ledger.open(settings.db)
        led.claim(fingerprint="fp", plan="プラン10", params={}, recipients=RECIPIENTS,
                  campaign_id=CID, now=T0)  # fmt: skip
        running = Running(settings, led).start()
        opened.append((running, led))
        return running, led

    yield run
    for running, led in opened:
        running.stop()
        led.close()


def test_the_page_names_the_address_the_shop_its_site_and_a_contact_and_stays_stopped(
    tmp_path: Path, start: Callable[[Settings], tuple[Running, Ledger]]
) -> None:
    settings = _settings(tmp_path)
    server, ledger = start(settings)
    url = server.url + token_for(1001, "user1@example.co.jp")

    first = httpx.get(url)
    seen = _Seen(first.text)
    assert first.status_code == 200 and title_of(first) == "メール配信の停止"
    text = "".join(seen.text)
    assert "配信を停止するメールアドレス:u***@example.co.jp" in text
    assert "user1@" not in first.text
    assert "見本商事 <&>からのメールの配信を停止します" in text  # the [shop] name, as text
    assert (seen.forms, seen.buttons, seen.scripts) == (1, 1, 0)
    assert seen.links == [(SHOP_URL, "見本商事 <&>のサイトへ")]  # back to the shop, exactly
    assert f"お問い合わせ: {CONTACT}" in "".join(seen.footer)
    assert ledger.suppressed_addresses() == set()  # a GET never stops anything

    done = one_click(url)
    assert title_of(done) == "配信を停止しました"
    assert "u***@example.co.jp" in done.text and _Seen(done.text).links == seen.links
    assert ledger.suppressed_addresses() == {"user1@example.co.jp"}

    # every later visit: already stopped, no button, the same address and way back
    for later in (httpx.get(url), one_click(url)):
        again = _Seen(later.text)
        assert title_of(later) == "すでに配信停止済みです"
        assert (again.forms, again.buttons, again.scripts) == (0, 0, 0)
        assert "u***@example.co.jp" in "".join(again.text)
        assert again.links == seen.links and f"お問い合わせ: {CONTACT}" in "".join(again.footer)
    assert [s.count for s in ledger.suppressions()] == [1]


def test_without_a_shop_table_the_page_falls_back_on_the_from(
    tmp_path: Path, start: Callable[[Settings], tuple[Running, Ledger]]
) -> None:
    bare = TOML.split("[shop]")[0]
    server, _ = start(_settings(tmp_path, bare))
    page = httpx.get(server.url + token_for(1002, "user2@example.co.jp"))
    seen = _Seen(page.text)
    assert "送信者名からのメールの配信を停止します" in "".join(seen.text)
    assert seen.links == []  # no site to link to
    assert "".join(seen.footer).endswith("お問い合わせ: shop@example.co.jp")
    assert "u***@example.co.jp" in page.text and "user2@" not in page.text
