"""No open redirect, no forgery: the public server against hostile requests (a real uvicorn).

What :mod:`test_tracking` shows for a few forged tokens, here for any text at all (a
hypothesis property), for the hidden link's and the open image's tokens, for requests that
try to put a target anywhere (path, query, Host, forwarding headers), and for the text part
of a text-only mail.
"""

from __future__ import annotations

import re
import urllib.parse

import httpx
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from test_tracking import (  # noqa: F401 - fixtures
    BROWSER,
    SALE,
    SECRET,
    Shop,
    events,
    get,
    listening,
    mail_to,
    parts,
    send,
    server,
    shop,
    tracked,
)

from bcartnb.hygiene.tracking_server import Tracker
from bcartnb.mailtokens import OPEN_LINK, TRAP_LINK, TrackSigner

UNKNOWN = "20200101-000000-000000"


def _refused(reply: httpx.Response, value: str) -> None:
    assert reply.status_code in (400, 404, 414, 431), reply.status_code
    assert "location" not in reply.headers
    if len(value) >= 4:
        assert value not in reply.text


@pytest.mark.parametrize("kind", ["c", "o"])
def test_any_text_as_a_token_is_refused_echoes_nothing_and_records_nothing(
    shop: Shop,  # noqa: F811
    server: Tracker,  # noqa: F811
    kind: str,
) -> None:
    send(shop)

    @hsettings(
        max_examples=60,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(st.text(min_size=1, max_size=400))
    def probe(value: str) -> None:
        quoted = urllib.parse.quote(value, safe="")
        _refused(get(f"{shop.base}/{kind}/{quoted}"), quoted)

    probe()
    assert events(shop, server) == []


@pytest.mark.parametrize("tail", ["0%2F", "x/", "%2F", "a%2Fb%2F"])
@pytest.mark.parametrize("kind", ["c", "o"])
def test_a_trailing_slash_is_refused_not_redirected_to_the_path_without_it(
    shop: Shop,  # noqa: F811
    server: Tracker,  # noqa: F811
    kind: str,
    tail: str,
) -> None:
    # Starlette redirected ".../0/" to ".../0" (307, the path echoed in Location); found by the
    # property above with the token "0/".
    _refused(get(f"{shop.base}/{kind}/{tail}"), tail)
    assert events(shop, server) == []


def test_tokens_of_an_unknown_campaign_are_refused_whatever_their_link(
    shop: Shop,  # noqa: F811
    server: Tracker,  # noqa: F811
) -> None:
    cid = send(shop)
    signer = TrackSigner(SECRET)
    for link in (1, TRAP_LINK):
        _refused(get(f"{shop.base}/c/{signer.make(UNKNOWN, 1000, link)}"), UNKNOWN)
    _refused(get(f"{shop.base}/o/{signer.make(UNKNOWN, 1000, OPEN_LINK)}"), UNKNOWN)
    # the right campaign, the right kind on the wrong path
    _refused(get(f"{shop.base}/o/{signer.make(cid, 1000, TRAP_LINK)}"), cid)
    _refused(get(f"{shop.base}/c/{signer.make(cid, 1000, OPEN_LINK)}"), cid)
    assert events(shop, server) == []


def test_nothing_in_the_request_can_choose_the_target(
    shop: Shop,  # noqa: F811
    server: Tracker,  # noqa: F811
) -> None:
    send(shop)
    sale, _ = tracked(shop, parts(mail_to(shop, "user0@example.co.jp"))[1])
    evil = "https://evil.example/"
    for url in (
        f"{sale}?url={evil}&next={evil}&redirect={evil}",
        f"{sale}#{evil}",
    ):
        assert get(url).headers["location"] == SALE
    headers = {
        "User-Agent": BROWSER,
        "Host": "evil.example",
        "X-Forwarded-Host": "evil.example",
        "X-Forwarded-Proto": "http",
        "Referer": evil,
    }
    reply = httpx.get(sale, headers=headers, follow_redirects=False)
    assert reply.status_code == 302 and reply.headers["location"] == SALE
    for tail in (f"/{evil}", "%2F%2Fevil.example", "/..%2F..%2Fevil.example"):
        _refused(get(sale + tail), "evil.example")
    assert events(shop, server) == [(1000, 1, "click", 0, 3)]


def test_a_text_mail_keeps_readable_urls_and_never_rewrites_mailto_tel_or_unsubscribe(
    shop: Shop,  # noqa: F811
) -> None:
    shop.campaign.write_text(
        'members = "members.csv"\nsubject = "ご案内"\n'
        'body = """{{ 会社名 }} 様\n冬のセール（https://shop.example.co.jp/sale）\n'
        "お問い合わせ: mailto:shop@example.co.jp / tel:0312345678\n"
        '配信停止: {{ unsubscribe_link }}\n"""\n',
        "utf-8",
    )
    send(shop)
    msg = mail_to(shop, "user0@example.co.jp")
    assert msg.get_body(("html",)) is None
    text = str(msg.get_content())
    (link,) = re.findall(re.escape(shop.base) + r"/c/[A-Za-z0-9_-]+", text)
    assert f"冬のセール（{link}）" in text and SALE not in text  # on the shop's own domain
    assert "mailto:shop@example.co.jp / tel:0312345678" in text
    assert re.search(r"配信停止: .*https://shop\.example\.co\.jp/mail/stop/[A-Za-z0-9_-]+", text), (
        text
    )
    assert "/o/" not in text  # no image in a text mail, and no hidden link
