"""What a member sees on the unsubscribe page (issue 23 item 10), through a real uvicorn.

The page says which address it stops (masked), whose mail (the shop's name from ``[shop]``),
links back to the shop's site and gives a contact line; once stopped it says so on every
later visit, without a button. Settings come from a real ``bcartnb.toml``; every value in it
is shown as text. The demo templates' visible 配信停止 link (``{{ unsubscribe_link }}``) is the
List-Unsubscribe URL with the member's token, so a member clicking it in a mail really sent
reaches this page.
"""

from __future__ import annotations

import email
import email.policy
from collections.abc import Callable, Iterator
from email.message import EmailMessage
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import httpx
import pytest
from test_unsubscribe import CID, RECIPIENTS, SECRET, T0, Running, one_click, title_of, token_for

from bcartnb.campaign import CampaignSpec, plan_campaign, send
from bcartnb.compose import Composer, Draft
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


# --- the demo templates' visible link reaches this page ---------------------------------------

DEMO_TEMPLATES = Path(__file__).resolve().parent.parent / "data" / "templates"


class _Links(HTMLParser):
    def __init__(self, page: str) -> None:
        super().__init__(convert_charrefs=True)
        self.links: dict[str, str] = {}
        self._href: str | None = None
        self.feed(page)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self._href = dict(attrs).get("href")

    def handle_data(self, data: str) -> None:
        if self._href is not None:
            self.links[data.strip()] = self._href

    def handle_endtag(self, tag: str) -> None:
        if tag == "a":
            self._href = None


def test_a_member_clicking_the_demo_templates_link_reaches_the_one_click_page(
    tmp_path: Path, smtp_server: Any
) -> None:
    smtp = smtp_server()
    members = tmp_path / "members.csv"
    members.write_text(
        "会員ID,会社名,担当者(姓),担当者(名),メールアドレス,都道府県\n"
        "7001,テスト商事,山田,太郎,taro@member.co.jp,東京都\n"
        "7002,見本物産,佐藤,花子,hanako@member.co.jp,大阪府\n",
        encoding="utf-8",
    )
    toml = TOML.split("[shop]")[0] + f'templates = "{DEMO_TEMPLATES}"\n'
    (tmp_path / "bcartnb.toml").write_text(toml, encoding="utf-8")
    settings = load_settings(
        tmp_path / "bcartnb.toml",
        env={
            **smtp.env(),
            "BCARTNB_UNSUBSCRIBE_SECRET": SECRET,
            "BCARTNB_DB": str(tmp_path / "l.db"),
        },
    )
    links: dict[str, str] = {}
    for template in ("HTMLニュースレター", "テキストニュースレター", "セミナーのご案内"):
        spec = CampaignSpec.from_mapping({"members": str(members), "template": template})
        summary = send(plan_campaign(spec, settings), progress=False)
        assert summary.sent == 2, template
        for got in smtp.received[-3:]:  # two members and the admin copy
            mail = email.message_from_bytes(got.raw, policy=email.policy.default)
            if got.recipients != ("taro@member.co.jp",):
                continue
            assert isinstance(mail, EmailMessage)
            header = str(mail["List-Unsubscribe"]).strip("<>")
            text = mail.get_body(("plain",))
            assert text is not None and header in text.get_content()  # one setting, both
            html = mail.get_body(("html",))
            if html is not None:
                assert _Links(html.get_content()).links["配信停止のお手続き"] == header
            links[template] = header
    assert len(links) == 3 and all("/mail/stop/" in u for u in links.values())

    assert settings.db is not None
    with Ledger.open(settings.db) as ledger:
        running = Running(settings, ledger).start()
        try:
            for template, link in links.items():
                url = running.base + "/mail/stop/" + link.rsplit("/", 1)[1]
                page = httpx.get(url)
                assert title_of(page) in ("メール配信の停止", "すでに配信停止済みです"), template
                assert "t***@member.co.jp" in page.text and "taro@" not in page.text
            stopped = httpx.post(url, data={"confirm": "1"})
            assert title_of(stopped) == "配信を停止しました"
            assert ledger.suppressed_addresses() == {"taro@member.co.jp"}
        finally:
            running.stop()


def test_without_an_unsubscribe_url_the_link_is_the_mailto_or_a_reply_to_the_from() -> None:
    body = "配信停止: {{ unsubscribe_link }}\n"
    member = {"id": 1, "comp_name": "テスト商事", "email": "taro@member.co.jp"}
    for extra, want in (
        ({}, "mailto:shop@example.co.jp"),
        ({"unsubscribe_mailto": "stop@example.co.jp"}, "mailto:stop@example.co.jp"),
        (
            {"unsubscribe_url": "https://x.jp/stop?id={{ id }}&c=会社"},
            "https://x.jp/stop?id=1&c=%E4",
        ),
    ):
        settings = Settings(from_addr="shop@example.co.jp", **extra)
        mail = Composer(Draft(subject="s", body=body), settings, CID).compose(member)
        assert mail.text.startswith(f"配信停止: {want}"), (extra, mail.text)
