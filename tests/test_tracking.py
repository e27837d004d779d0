"""Click and open measurement end to end (issue 25): real mails, a real server, the CLI.

A campaign is sent with the command line into the test SMTP server with ``[tracking] url``
pointing at a uvicorn server on 127.0.0.1 (the public server's app, in a thread); the
tracked links are taken from the mails as received and fetched with httpx, as a person's
browser or a mail gateway would; ``bcartnb results`` reads what was counted.
"""

from __future__ import annotations

import email
import email.policy
import json
import re
import socket
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any, NamedTuple

import httpx
import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from smtp_servers import TestServer
from test_cli_run import ADMIN, bcartnb, env_for, setup_campaign
from test_unsubscribe import Running, bound_port

from bcartnb.hygiene.tracking_server import Tracker
from bcartnb.hygiene.unsubscribe import make_server
from bcartnb.ledger import Ledger
from bcartnb.mailtokens import TRAP_LINK, TokenSigner, TrackSigner
from bcartnb.quota import NOW_ENV, now_tokyo
from bcartnb.settings import Settings, load_settings

SECRET = "s3cret-for-tests-only-0123456789abcdef"
BROWSER = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/120 Safari/537.36"
SALE = "https://shop.example.co.jp/sale"
NEW = "https://shop.example.co.jp/new?a=1&b=2"
UNSUB = "https://shop.example.co.jp/mail/stop/{{ unsubscribe_token }}"
BODY = (
    "<p>{{ 会社名 }} 様</p>"
    f'<p><a href="{SALE}">冬のセール</a></p>'
    '<p><a href="https://shop.example.co.jp/new?a=1&amp;b=2">新商品</a></p>'
    '<p><a href="mailto:shop@example.co.jp">お問い合わせ</a> <a href="tel:0312345678">電話</a></p>'
    '<p><a href="{{ unsubscribe_link }}">配信停止</a></p>'
)


class Shop(NamedTuple):
    tmp: Path
    env: dict[str, str]
    smtp: TestServer
    campaign: Path
    base: str


def _body_line(body: str) -> str:
    return "body = " + json.dumps(body, ensure_ascii=False) + "\n"


def write_campaign(campaign: Path, body: str, extra: str = "") -> None:
    campaign.write_text(
        'members = "members.csv"\nsubject = "ご案内"\nhtml = true\n' + _body_line(body) + extra,
        "utf-8",
    )


@pytest.fixture
def listening() -> Iterator[socket.socket]:
    sock = socket.create_server(("127.0.0.1", 0))
    yield sock
    sock.close()


@pytest.fixture
def shop(tmp_path: Path, smtp_server: Any, listening: socket.socket) -> Shop:
    smtp = smtp_server()
    campaign = setup_campaign(tmp_path, 3)
    write_campaign(campaign, BODY)
    base = f"http://127.0.0.1:{listening.getsockname()[1]}/t"
    config = tmp_path / "bcartnb.toml"
    config.write_text(
        config.read_text("utf-8") + f'unsubscribe_url = "{UNSUB}"\n[tracking]\nurl = "{base}"\n',
        "utf-8",
    )
    env = env_for(tmp_path, smtp) | {"BCARTNB_UNSUBSCRIBE_SECRET": SECRET}
    return Shop(tmp_path, env, smtp, campaign, base)


def send(shop: Shop) -> str:
    sent = bcartnb("run", str(shop.campaign), "--send", "--json", env=shop.env, cwd=shop.tmp)
    assert sent.returncode == 0, sent.stderr
    return str(json.loads(sent.stdout)["campaign_id"])


def mail_to(shop: Shop, address: str, nth: int = -1) -> EmailMessage:
    raws = [r.raw for r in shop.smtp.received if r.recipients == (address,)]
    msg = email.message_from_bytes(raws[nth], policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


def parts(msg: EmailMessage) -> tuple[str, str]:
    text = msg.get_body(("plain",))
    html = msg.get_body(("html",))
    assert text is not None and html is not None
    return str(text.get_content()), str(html.get_content())


def _clicks(shop: Shop, html: str) -> list[str]:
    return re.findall(re.escape(shop.base) + r"/c/[A-Za-z0-9_-]+", html)


def _link_of(url: str) -> int:
    found = TrackSigner(SECRET).open(url.rsplit("/", 1)[1])
    assert found is not None
    return found.link


def tracked(shop: Shop, html: str) -> list[str]:
    """The mail's tracked links a person sees, in order (not the hidden link)."""
    return [u for u in _clicks(shop, html) if _link_of(u) != TRAP_LINK]


def hidden(shop: Shop, html: str) -> str:
    """The mail's one hidden link."""
    (trap,) = [u for u in _clicks(shop, html) if _link_of(u) == TRAP_LINK]
    return trap


def later() -> datetime:
    """The server's clock in most tests: an hour after now, so a click is never "at delivery"
    (a gateway's scan, :data:`~bcartnb.ledger.tracking.DELIVERY_SECONDS`) however quick."""
    return now_tokyo() + timedelta(hours=1)


class _Serving(Running):
    """:class:`Running` on the socket the mails' tracking URL already names."""

    def __init__(
        self,
        settings: Settings,
        ledger: Ledger,
        sock: socket.socket,
        clock: Callable[[], datetime] = later,
    ) -> None:
        self.server = make_server(
            settings, ledger, prefix="/mail/stop/", log_level="warning", clock=clock
        )
        self.sock = sock
        self.port = sock.getsockname()[1]
        self.base = f"http://127.0.0.1:{self.port}"
        self.url = self.base + "/mail/stop/"
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [sock]})


def tracker_of(running: Running) -> Tracker:
    tracker = running.server.config.app.state.tracker
    assert isinstance(tracker, Tracker)
    return tracker


@pytest.fixture
def server(shop: Shop, listening: socket.socket) -> Iterator[Tracker]:
    """The public server in a thread; ``server.writer.flush()`` waits for what it queued."""
    settings = load_settings(env=shop.env)
    with Ledger.open(settings.db) as led:
        running = _Serving(settings, led, listening).start()
        try:
            yield tracker_of(running)
        finally:
            running.server.should_exit = True
            running.thread.join(timeout=20)


def results(shop: Shop, cid: str, server: Tracker | None = None) -> dict[str, Any]:
    if server is not None:
        assert server.writer.flush()
    out = bcartnb("results", cid, "--json", env=shop.env, cwd=shop.tmp)
    assert out.returncode == 0, out.stderr
    return dict(json.loads(out.stdout))


def events(shop: Shop, server: Tracker | None = None) -> list[tuple[Any, ...]]:
    if server is not None:
        assert server.writer.flush()
    with sqlite3.connect(shop.tmp / "ledger.sqlite3") as conn:
        return conn.execute(
            "SELECT member_id, link, kind, machine, count FROM tracking_events ORDER BY 1, 2, 3, 4"
        ).fetchall()


def get(url: str, agent: str = BROWSER, method: str = "GET") -> httpx.Response:
    return httpx.request(method, url, headers={"User-Agent": agent}, follow_redirects=False)


# --- the mail --------------------------------------------------------------------------------


def test_links_are_rewritten_but_never_the_unsubscribe_mailto_or_tel(shop: Shop) -> None:
    cid = send(shop)
    msg = mail_to(shop, "user0@example.co.jp")
    text, html = parts(msg)
    links = tracked(shop, html)
    assert len(links) == 2 and SALE not in html and "new?a=1" not in html
    assert 'href="mailto:shop@example.co.jp"' in html and 'href="tel:0312345678"' in html
    assert re.search(r'href="https://shop\.example\.co\.jp/mail/stop/[A-Za-z0-9_-]+"', html)
    assert re.fullmatch(
        r"<https://shop\.example\.co\.jp/mail/stop/[A-Za-z0-9_-]+>", msg["List-Unsubscribe"]
    )
    opens = re.findall(re.escape(shop.base) + r"/o/[A-Za-z0-9_-]+", html)
    assert len(opens) == 1 and 'width="1" height="1" alt=""' in html
    # the text part: each tracked URL stands where the original stood, after its label
    assert f"冬のセール（{links[0]}）" in text and f"新商品（{links[1]}）" in text
    assert SALE not in text and "/mail/stop/" in text
    # the link table is frozen with the campaign
    with Ledger.open(shop.tmp / "ledger.sqlite3") as led:
        assert led.tracked_links(cid) == {1: SALE, 2: NEW}
    # the administrator's copy shows the first member's mail, untracked: clicks count for nobody
    admin = [r.raw for r in shop.smtp.received if r.recipients == (ADMIN,)]
    copy = email.message_from_bytes(admin[0], policy=email.policy.default)
    assert isinstance(copy, EmailMessage)
    shown = str(copy.get_content())
    assert f"冬のセール（{SALE}）" in shown and shop.base not in shown
    # every member's token is their own
    other = tracked(shop, parts(mail_to(shop, "user1@example.co.jp"))[1])
    assert other[0] != links[0]


def test_track_false_sends_the_mail_untouched(shop: Shop) -> None:
    write_campaign(shop.campaign, BODY, "track = false\n")
    cid = send(shop)
    text, html = parts(mail_to(shop, "user0@example.co.jp"))
    assert shop.base not in html + text and f'href="{SALE}"' in html
    with Ledger.open(shop.tmp / "ledger.sqlite3") as led:
        assert led.tracked_links(cid) == {}


# --- the server --------------------------------------------------------------------------------


def test_a_persons_click_redirects_to_the_recorded_url_and_counts_once(
    shop: Shop, server: Tracker
) -> None:
    cid = send(shop)
    sale, _ = tracked(shop, parts(mail_to(shop, "user0@example.co.jp"))[1])
    for _ in range(3):
        reply = get(sale)
        assert reply.status_code == 302 and reply.headers["location"] == SALE
        assert reply.headers["referrer-policy"] == "no-referrer"
    got = results(shop, cid, server)
    assert (got["delivered"], got["clicked"], got["clicks"], got["opened"]) == (3, 1, 3, 1)
    assert got["click_rate"] == round(1 / 3, 4)
    assert [(x["number"], x["url"], x["people"], x["clicks"]) for x in got["links"]] == [
        (1, SALE, 1, 3),
        (2, NEW, 0, 0),
    ]
    assert got["machine"] == {"opens": 0, "clicks": 0}
    assert events(shop, server) == [(1000, 1, "click", 0, 3)]
    text = bcartnb("results", cid, env=shop.env, cwd=shop.tmp).stdout
    assert "配信数: 3件" in text and "クリック数: 1人（クリック率 33.3%" in text
    assert "Apple メールのプライバシー保護" in text


def test_the_open_image_counts_an_open(shop: Shop, server: Tracker) -> None:
    cid = send(shop)
    html = parts(mail_to(shop, "user2@example.co.jp"))[1]
    image = re.findall(re.escape(shop.base) + r"/o/[A-Za-z0-9_-]+", html)[0]
    reply = get(image)
    assert reply.status_code == 200 and reply.headers["content-type"] == "image/gif"
    assert reply.content.startswith(b"GIF89a")
    assert get(image.replace("/o/", "/c/")).status_code == 404  # an open token is no link
    got = results(shop, cid, server)
    assert (got["opened"], got["open_rate"], got["clicked"]) == (1, round(1 / 3, 4), 0)


def test_gateway_prefetches_are_machines_counted_apart(shop: Shop, server: Tracker) -> None:
    cid = send(shop)
    sale0, _ = tracked(shop, parts(mail_to(shop, "user0@example.co.jp"))[1])
    sale1, new1 = tracked(shop, parts(mail_to(shop, "user1@example.co.jp"))[1])
    sale2, _ = tracked(shop, parts(mail_to(shop, "user2@example.co.jp"))[1])
    assert get(sale0, method="HEAD").status_code == 302  # a HEAD
    assert get(sale2, agent="Mozilla/5.0 (compatible; Barracuda Sentinel)").status_code == 302
    # a gateway posing as a browser, fetching every link of the mail at once
    assert get(sale1).status_code == 302 and get(new1).status_code == 302
    got = results(shop, cid, server)
    assert (got["clicked"], got["clicks"], got["opened"]) == (0, 0, 0)
    assert got["machine"]["clicks"] == 4
    assert all(machine == 1 for *_, machine, _ in events(shop, server))


def test_forged_altered_and_foreign_tokens_are_404_and_record_nothing(
    shop: Shop, server: Tracker
) -> None:
    cid = send(shop)
    sale, _ = tracked(shop, parts(mail_to(shop, "user0@example.co.jp"))[1])
    token = sale.rsplit("/", 1)[1]
    altered = token[:-3] + ("AAA" if token[-3:] != "AAA" else "BBB")
    signer = TrackSigner(SECRET)
    forged = TrackSigner("another-secret-nobody-else-has-0123456789").make(cid, 1000, 1)
    bad = [
        altered,
        forged,
        signer.make(cid, 1000, 99),  # no link 99: never a URL from anywhere else
        signer.make("20200101-000000-000000", 1000, 1),  # another (unknown) campaign
        token + "A",
        "<script>alert(1)</script>",
        "x" * 5000,
    ]
    for value in bad:
        reply = get(f"{shop.base}/c/{value}")
        assert reply.status_code in (404, 431), value
        assert "location" not in reply.headers
        assert value not in reply.text and "script>" not in reply.text
    reply = get(f"{shop.base}/c/{token}?url=https://evil.example/")
    assert reply.headers["location"] == SALE  # the query is nobody's redirect target
    assert events(shop, server) == [(1000, 1, "click", 0, 1)]


def test_a_link_added_after_sending_is_not_redirectable(shop: Shop, server: Tracker) -> None:
    first = send(shop)
    added = BODY + '<p><a href="https://shop.example.co.jp/added">追加</a></p>'
    write_campaign(shop.campaign, added)
    second = send(shop)  # a new mail: a new campaign with its own table
    assert second != first
    signer = TrackSigner(SECRET)
    assert get(f"{shop.base}/c/{signer.make(first, 1000, 3)}").status_code == 404
    reply = get(f"{shop.base}/c/{signer.make(second, 1000, 3)}")
    assert reply.headers["location"] == "https://shop.example.co.jp/added"
    assert events(shop, server) == [(1000, 3, "click", 0, 1)]


def test_the_unsubscribe_server_command_serves_clicks_too(
    shop: Shop, listening: socket.socket
) -> None:
    """One process for the shop's public endpoints: ``bcartnb unsubscribe-server``."""
    cid = send(shop)
    sale, _ = tracked(shop, parts(mail_to(shop, "user1@example.co.jp"))[1])
    named = f"127.0.0.1:{listening.getsockname()[1]}"  # the port the mails name
    # the command binds a port of its own (0: the kernel's pick, named in its banner); a
    # port closed here for it to bind a second later could be another process's by then
    proc = subprocess.Popen(
        [sys.executable, "-m", "bcartnb", "unsubscribe-server", "--port", "0"],
        env=shop.env | {NOW_ENV: later().isoformat()},  # a reader, not the gateway at delivery
        cwd=shop.tmp,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        lines = [proc.stdout.readline() for _ in range(3)]
        port = bound_port(lines[0])
        assert f"開封・クリックの計測: http://127.0.0.1:{port}/t/c/<トークン>" in lines[2], lines
        reply = get(sale.replace(named, f"127.0.0.1:{port}", 1))  # as a reverse proxy would
        assert reply.status_code == 302 and reply.headers["location"] == SALE
    finally:
        proc.terminate()
        out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert sale.rsplit("/", 1)[1] not in out + err  # no token in any log
    assert results(shop, cid)["clicked"] == 1  # the clean stop wrote the queued click


# --- the token -------------------------------------------------------------------------------


@hsettings(max_examples=200, deadline=None)
@given(
    st.integers(-(1 << 63), (1 << 63) - 1),
    st.integers(0, 9999),
    st.text(min_size=1, max_size=60).filter(lambda s: len(s.encode()) <= 200),
    st.integers(0, 200),
)
def test_a_token_names_exactly_what_it_was_made_for(
    member_id: int, link: int, cid: str, flip: int
) -> None:
    signer = TrackSigner(SECRET)
    token = signer.make(cid, member_id, link)
    assert signer.open(token) == (cid, member_id, link)
    assert TrackSigner("another-secret-nobody-else-has-0123456789").open(token) is None
    # one character changed anywhere: nothing (the canonical encoding, then the MAC)
    at = flip % len(token)
    changed = token[:at] + ("A" if token[at] != "A" else "B") + token[at + 1 :]
    assert signer.open(changed) is None
    # an unsubscribe token of the same secret is no click token, nor the other way round
    unsub = TokenSigner(SECRET).make(cid, member_id, "a@example.co.jp")
    assert signer.open(unsub) is None
    assert TokenSigner(SECRET).open(token, lambda c, m: "a@example.co.jp") is None


def test_tracking_without_the_secret_is_refused_when_planning(shop: Shop) -> None:
    env = {k: v for k, v in shop.env.items() if k != "BCARTNB_UNSUBSCRIBE_SECRET"}
    dry = bcartnb("run", str(shop.campaign), env=env, cwd=shop.tmp)
    assert dry.returncode == 2
    # the unsubscribe link's own line comes first here (the body uses it); without it, ours
    write_campaign(shop.campaign, BODY.replace("{{ unsubscribe_link }}", "mailto:x@example.co.jp"))
    config = shop.tmp / "bcartnb.toml"
    config.write_text(config.read_text("utf-8").replace(f'unsubscribe_url = "{UNSUB}"\n', ""))
    dry = bcartnb("run", str(shop.campaign), env=env, cwd=shop.tmp)
    assert dry.returncode == 2 and "開封・クリックの計測（[tracking] url）には" in dry.stderr
    assert not (shop.tmp / "ledger.sqlite3").exists() or events(shop) == []


def test_previews_show_the_links_as_written_and_check_the_mail_as_sent(shop: Shop) -> None:
    """The confirmation screen's and the report's sample: no tracked link (none has a target
    before sending, and a reviewer's click would count for the member)."""
    from bcartnb.campaign import load_campaign, plan_campaign
    from bcartnb.compose import preview

    plan = plan_campaign(load_campaign(shop.campaign), load_settings(env=shop.env))
    assert plan.composer.tracked_links == (SALE, NEW)
    (seen,) = preview(plan.composer, plan.audience.sendable, n=1)
    assert seen.html is not None and f'href="{SALE}"' in seen.html
    assert shop.base not in seen.html + seen.text
    assert shop.base in str(plan.composer.compose(plan.audience.sendable.iloc[0].to_dict()).html)
