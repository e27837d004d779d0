"""The one-click unsubscribe loop: signed tokens, the server, a real mail's header.

Real parts only: uvicorn serving the Starlette app on a free 127.0.0.1 port (in a thread, and
``bcartnb unsubscribe-server`` as a process), httpx and raw sockets as its clients, real
ledger files, campaigns sent into the test SMTP server (tests/smtp_servers.py). What must
hold (issue 15): a one-click POST lists the address at once and a repeat changes nothing; a
GET never unsubscribes; a forged, tampered, truncated or foreign token changes nothing and
reflects nothing; many POSTs at once all land; the header of a mail really sent carries a
token the server takes, and the next dry run holds that member back as ``suppressed``.
"""

from __future__ import annotations

import email
import email.policy
import json
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from html.parser import HTMLParser
from pathlib import Path

import httpx
import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from smtp_servers import TestServer
from test_cli_run import bcartnb, env_for, setup_campaign

from bcartnb.campaign import CampaignSpec, run
from bcartnb.compose import Composer, Draft
from bcartnb.exceptions import SettingsError
from bcartnb.hygiene.tokens import TokenSigner, parse
from bcartnb.hygiene.unsubscribe import (
    MAX_BODY_BYTES,
    SECURITY_HEADERS,
    create_app,
    make_server,
    prefix_from_settings,
)
from bcartnb.ledger import Ledger
from bcartnb.quota import TOKYO
from bcartnb.settings import Settings, load_settings
from bcartnb.templates import Template, TemplateStore

Server = Callable[..., TestServer]
SECRET = "s3cret-for-tests-only-0123456789abcdef"
OTHER_SECRET = "another-secret-nobody-else-has-0123456789"
T0 = datetime(2026, 11, 29, 10, 0, tzinfo=TOKYO)
CID = "20261129-100000-abc123"
PREFIX = "/mail/stop/"
RECIPIENTS = [(1000 + i, f"user{i}@example.co.jp") for i in range(40)]
SHOP = "見本商事 <&>"
URL_SETTING = "https://shop.example.co.jp/mail/stop/{{ unsubscribe_token }}"


# --- fixtures ------------------------------------------------------------------------------


def shop_settings(tmp_path: Path, secret: str | None = SECRET) -> Settings:
    return Settings(
        plan="プラン10",
        from_addr="shop@example.co.jp",
        from_name=SHOP,
        db=tmp_path / "ledger.sqlite3",
        unsubscribe_url=URL_SETTING,
        unsubscribe_secret=secret,
    )


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return shop_settings(tmp_path)


@pytest.fixture
def ledger(settings: Settings) -> Iterator[Ledger]:
    """A ledger holding one campaign with :data:`RECIPIENTS` pending (a journal to match)."""
    with Ledger.open(settings.db) as led:
        led.claim(
            fingerprint="fp",
            plan="プラン10",
            params={},
            recipients=RECIPIENTS,
            campaign_id=CID,
            now=T0,
        )
        yield led


class Running:
    """uvicorn serving the app on 127.0.0.1 in a thread; ``url`` is its prefix's URL."""

    def __init__(self, settings: Settings, ledger: Ledger, prefix: str = PREFIX) -> None:
        self.server = make_server(settings, ledger, prefix=prefix, log_level="warning")
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.base = f"http://127.0.0.1:{self.port}"
        self.url = self.base + prefix
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]})

    def start(self) -> Running:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            assert self.thread.is_alive() and time.monotonic() < deadline, "server did not start"
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=20)
        self.sock.close()


@pytest.fixture
def serve() -> Iterator[Callable[..., Running]]:
    started: list[Running] = []

    def start(settings: Settings, ledger: Ledger, prefix: str = PREFIX) -> Running:
        running = Running(settings, ledger, prefix)
        started.append(running.start())
        return running

    yield start
    for running in started:
        running.stop()


@pytest.fixture
def server(serve: Callable[..., Running], settings: Settings, ledger: Ledger) -> Running:
    return serve(settings, ledger)


def token_for(member_id: int, address: str, secret: str = SECRET, cid: str = CID) -> str:
    return TokenSigner(secret).make(cid, member_id, address)


def listed(ledger: Ledger) -> list[tuple[object, ...]]:
    return [
        (s.address, s.reason, s.source, s.count, s.campaign_id, s.member_id)
        for s in ledger.suppressions()
    ]


def raw_request(port: int, request_line: bytes) -> tuple[int, bytes]:
    """Send one request exactly as written (httpx would normalise ``../``): status, whole reply."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request_line + b"\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    status = int(reply.split(b" ", 2)[1])
    return status, reply


class _Page(HTMLParser):
    """What a page asks of a browser: forms, buttons, scripts, and every URL it loads."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.forms: list[dict[str, str | None]] = []
        self.buttons = 0
        self.scripts = 0
        self.urls: list[str] = []
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "form":
            self.forms.append(a)
        if tag == "button" or (tag == "input" and a.get("type") == "submit"):
            self.buttons += 1
        if tag == "script":
            self.scripts += 1
        self.urls += [v for k, v in attrs if k in ("src", "href", "action") and v]
        self.urls += [v for k, v in attrs if k.startswith("on") and v]  # inline handlers


# --- the token -----------------------------------------------------------------------------


@hsettings(max_examples=200, deadline=None)
@given(
    st.integers(-(1 << 63), (1 << 63) - 1),
    st.text(min_size=1, max_size=60).filter(lambda s: len(s.encode()) <= 200),
    st.sampled_from(["a@x.jp", "Taro.Yamada+news@Example.co.jp", "x" * 60 + "@example.com"]),
)
def test_a_token_round_trips_for_any_member_and_campaign(
    member_id: int, campaign_id: str, address: str
) -> None:
    signer = TokenSigner(SECRET)
    token = signer.make(campaign_id, member_id, address)
    assert re.fullmatch(r"[A-Za-z0-9_-]+", token) and len(token) <= 400
    journal = {(campaign_id, member_id): address.upper()}  # the ledger compares ignoring case
    found = signer.open(token, lambda c, m: journal.get((c, m)))
    assert found is not None
    assert (found.campaign_id, found.member_id) == (campaign_id, member_id)
    # the same mail under another secret, or to another address, is not this token
    assert TokenSigner(OTHER_SECRET).open(token, lambda c, m: journal.get((c, m))) is None
    assert signer.open(token, lambda c, m: "someone.else@example.co.jp") is None


@hsettings(max_examples=300, deadline=None)
@given(st.data())
def test_any_change_to_a_token_is_refused(data: st.DataObject) -> None:
    signer = TokenSigner(SECRET)
    token = signer.make(CID, 1001, "user1@example.co.jp")
    at = data.draw(st.integers(0, len(token) - 1))
    edit = data.draw(st.sampled_from(["replace", "drop", "insert", "truncate"]))
    ch = data.draw(st.sampled_from("AZaz09_-=+/.%\x00<"))
    changed = {
        "replace": token[:at] + ch + token[at + 1 :],
        "drop": token[:at] + token[at + 1 :],
        "insert": token[:at] + ch + token[at:],
        "truncate": token[:at],
    }[edit]
    if changed == token:
        return
    assert signer.open(changed, lambda c, m: "user1@example.co.jp") is None


def test_a_token_is_short_enough_for_a_header_line() -> None:
    token = token_for((1 << 63) - 1, "user1@example.co.jp")
    assert len(f"List-Unsubscribe: <https://shop.example.co.jp/mail/stop/{token}>") < 160


@pytest.mark.parametrize(
    ("secret", "said"),
    [(None, "needs the secret BCARTNB_UNSUBSCRIBE_SECRET"), ("Qz7#kW", "too short (6 characters")],
)
def test_no_token_without_a_good_secret(secret: str | None, said: str) -> None:
    with pytest.raises(SettingsError, match=re.escape(said)) as info:
        TokenSigner(secret)
    assert info.value.ja.startswith(("配信停止リンク", "BCARTNB_UNSUBSCRIBE_SECRET が短すぎます"))
    assert secret is None or secret not in str(info.value) + info.value.ja


def test_the_secret_comes_from_the_environment_or_dotenv_and_never_shows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / ".env").write_text(f"BCARTNB_UNSUBSCRIBE_SECRET={SECRET}\n", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    loaded = load_settings()
    assert loaded.unsubscribe_secret == SECRET
    assert SECRET not in repr(loaded)
    monkeypatch.setenv("BCARTNB_UNSUBSCRIBE_SECRET", OTHER_SECRET)  # the environment wins
    assert load_settings().unsubscribe_secret == OTHER_SECRET
    assert SECRET not in repr(TokenSigner(SECRET))


# --- compose ---------------------------------------------------------------------------------


def test_the_token_is_one_member_value_for_the_header_and_both_render_paths(
    tmp_path: Path,
) -> None:
    body = (
        '<p>{{ 会社名 }} 様</p><p><a href="https://shop.example.co.jp/mail/stop/'
        '{{ unsubscribe_token }}">配信停止</a></p>'
    )
    composer = Composer(Draft("ご案内", body, html=True), shop_settings(tmp_path), CID)
    assert composer.fast_html and composer.fast_text
    member = {"id": 1001, "email": "User1@Example.co.jp", "comp_name": "テスト商事"}
    mail = composer.compose(member)
    token = token_for(1001, "user1@example.co.jp")
    assert mail.list_unsubscribe == f"<https://shop.example.co.jp/mail/stop/{token}>"
    assert mail.html is not None and f"/mail/stop/{token}" in mail.html
    assert f"/mail/stop/{token}" in mail.text
    _, text, html = composer.render_reference(member)
    assert (mail.text, mail.html) == (text, html)
    parsed = email.message_from_bytes(mail.raw, policy=email.policy.default)
    assert parsed["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


def test_a_template_with_the_token_can_be_saved_and_a_column_cannot_fake_it(
    tmp_path: Path,
) -> None:
    body = (
        "{{ 会社名 }} 様\n配信停止: https://shop.example.co.jp/mail/stop/{{ unsubscribe_token }}\n"
    )
    store = TemplateStore(tmp_path / "templates")
    store.save(Template("配信停止つき", "ご案内", body))
    assert store.get("配信停止つき").body == body
    composer = Composer(Draft("ご案内", body), shop_settings(tmp_path), CID)
    member = {
        "id": 1001,
        "email": "user1@example.co.jp",
        "comp_name": "A",
        "unsubscribe_token": "x",
    }
    assert f"/mail/stop/{token_for(1001, 'user1@example.co.jp')}\n" in composer.compose(member).text


@pytest.mark.parametrize("where", ["setting", "template"], ids=["unsubscribe_url", "template body"])
def test_without_the_secret_the_dry_run_refuses_in_japanese(
    tmp_path: Path, smtp_server: Server, where: str
) -> None:
    server = smtp_server()
    campaign = setup_campaign(tmp_path, 3)
    config = tmp_path / "bcartnb.toml"
    if where == "setting":
        config.write_text(
            config.read_text("utf-8") + f'unsubscribe_url = "{URL_SETTING}"\n', "utf-8"
        )
    else:
        campaign.write_text(
            campaign.read_text("utf-8").replace("本文です。", "停止: {{ unsubscribe_token }}"),
            "utf-8",
        )
    out = bcartnb("run", str(campaign), "--json", env=env_for(tmp_path, server), cwd=tmp_path)
    assert out.returncode == 2 and out.stdout == ""
    lines = out.stderr.splitlines()
    assert len(lines) == 1 and "Traceback" not in out.stderr
    assert lines[0].startswith("bcartnb: error: 設定のエラー: 配信停止リンク（unsubscribe_token）")
    assert "BCARTNB_UNSUBSCRIBE_SECRET" in lines[0]
    assert ("unsubscribe_url" if where == "setting" else "template 'draft'") in lines[0]
    assert server.received == []


# --- the server ----------------------------------------------------------------------------


def test_one_click_post_suppresses_at_once_and_a_repeat_changes_nothing(
    server: Running, ledger: Ledger
) -> None:
    token = token_for(1001, "user1@example.co.jp")
    with httpx.Client() as client:
        first = client.post(
            server.url + token,
            content=b"List-Unsubscribe=One-Click",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        assert first.status_code == 200
        assert "配信を停止しました" in first.text
        after_one = listed(ledger)
        assert after_one == [
            ("user1@example.co.jp", "unsubscribed", "unsubscribe-server", 1, CID, 1001)
        ]
        row = ledger.suppression("user1@example.co.jp")
        assert row is not None and row.detail == "one-click (RFC 8058)"
        for _ in range(3):
            again = client.post(server.url + token, content=b"List-Unsubscribe=One-Click")
            assert again.status_code == 200
    assert listed(ledger) == after_one
    assert ledger.suppressed_addresses() == {"user1@example.co.jp"}


def test_get_shows_one_button_and_never_unsubscribes(server: Running, ledger: Ledger) -> None:
    token = token_for(1002, "user2@example.co.jp")
    with httpx.Client() as client:
        page = client.get(server.url + token)
        head = client.head(server.url + token)
    assert page.status_code == 200 and head.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "メール配信の停止" in page.text and "配信を停止する" in page.text
    assert "見本商事 &lt;&amp;&gt;" in page.text and SHOP not in page.text  # the shop, escaped
    seen = _Page(page.text)
    assert seen.buttons == 1 and seen.scripts == 0 and seen.urls == []
    assert len(seen.forms) == 1 and seen.forms[0]["method"] == "post"
    assert "action" not in seen.forms[0]  # posts back to the very URL it was opened at
    assert "set-cookie" not in page.headers
    for name, value in SECURITY_HEADERS.items():
        assert page.headers[name] == value
        assert head.headers[name] == value
    assert "default-src 'none'" in page.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    assert "server" not in page.headers
    assert listed(ledger) == []


def test_the_page_button_posts_any_body_and_suppresses(server: Running, ledger: Ledger) -> None:
    token = token_for(1003, "user3@example.co.jp")
    reply = httpx.post(server.url + token, data={"confirm": "1"})
    assert reply.status_code == 200 and "配信を停止しました" in reply.text
    row = ledger.suppression("user3@example.co.jp")
    assert row is not None and (row.reason, row.detail) == ("unsubscribed", "confirmation page")
    empty = httpx.post(server.url + token_for(1004, "user4@example.co.jp"))
    assert empty.status_code == 200
    assert ledger.suppressed_addresses() == {"user3@example.co.jp", "user4@example.co.jp"}


def _forged() -> list[tuple[str, str]]:
    good = token_for(1005, "user5@example.co.jp")
    raw = parse(good)
    assert raw is not None
    return [
        ("another secret", token_for(1005, "user5@example.co.jp", secret=OTHER_SECRET)),
        ("another address", token_for(1005, "someone@example.co.jp")),
        ("unknown campaign", token_for(1005, "user5@example.co.jp", cid="20260101-000000-ffffff")),
        ("unknown member", token_for(4242, "user5@example.co.jp")),
        ("truncated", good[:-3]),
        ("one character changed", good[:10] + ("A" if good[10] != "A" else "B") + good[11:]),
        ("padded", good + "=="),
        ("empty-ish", "AQ"),
        ("garbage", "x" * 80),
    ]


@pytest.mark.parametrize(("what", "token"), _forged(), ids=[w for w, _ in _forged()])
def test_forged_or_tampered_tokens_answer_404_and_change_nothing(
    server: Running, ledger: Ledger, what: str, token: str
) -> None:
    with httpx.Client() as client:
        for method in ("GET", "POST"):
            reply = client.request(
                method, server.url + token, content=b"List-Unsubscribe=One-Click"
            )
            assert reply.status_code == 404, what
            assert token not in reply.text and "ページが見つかりません" in reply.text
            assert reply.headers["referrer-policy"] == "no-referrer"
    assert listed(ledger) == []


@pytest.mark.parametrize(
    "path",
    [
        b"/mail/stop/../stop/AAAA",
        b"/mail/stop/%2e%2e%2fetc%2fpasswd",
        b"/mail/stop/..%2F..%2Fledger.sqlite3",
        b"/mail/stop/abc%00def",
        b"/mail/stop/%3Cscript%3Ealert(1)%3C/script%3E",
        b"/mail/stop/<script>alert(1)</script>",
        b"/mail/stop/" + b"A" * 8000,
        b"/mail/stop/",
        b"/mail/stop//",
        b"/mail/stop/tok/extra",
        b"/other/AAAA",
        b"/",
    ],
    ids=lambda p: p[:40].decode("latin-1"),
)
def test_hostile_paths_answer_404_without_reflection(
    server: Running, ledger: Ledger, path: bytes
) -> None:
    for method in (b"GET", b"POST"):
        status, reply = raw_request(server.port, method + b" " + path + b" HTTP/1.1")
        assert status == 404, reply[:200]
        body = reply.partition(b"\r\n\r\n")[2]
        assert b"script" not in body.lower() and b"passwd" not in body and b"AAAA" not in body
        assert b"content-security-policy: default-src 'none'" in reply.lower()
    assert listed(ledger) == []


def test_other_methods_and_big_bodies_are_refused(server: Running, ledger: Ledger) -> None:
    token = token_for(1006, "user6@example.co.jp")
    with httpx.Client() as client:
        for method in ("PUT", "DELETE", "PATCH"):
            reply = client.request(method, server.url + token)
            assert reply.status_code == 405
            assert set(reply.headers["allow"].replace(" ", "").split(",")) == {
                "GET",
                "HEAD",
                "POST",
            }
            assert reply.headers["x-frame-options"] == "DENY"
        big = client.post(server.url + token, content=b"x" * (MAX_BODY_BYTES + 1))
        assert big.status_code == 413

        def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
            for _ in range(MAX_BODY_BYTES // 1024 + 2):
                yield b"y" * 1024

        streamed = client.post(server.url + token, content=chunks())
        assert streamed.status_code == 413
    assert listed(ledger) == []
    ok = httpx.post(server.url + token, content=b"x" * MAX_BODY_BYTES)
    assert ok.status_code == 200 and len(listed(ledger)) == 1


def test_many_posts_at_once_all_land(server: Running, ledger: Ledger) -> None:
    tokens = [token_for(m, a) for m, a in RECIPIENTS]
    with httpx.Client(limits=httpx.Limits(max_connections=20)) as client:

        def post(token: str) -> int:
            return client.post(
                server.url + token, content=b"List-Unsubscribe=One-Click"
            ).status_code

        with ThreadPoolExecutor(max_workers=20) as pool:
            codes = list(pool.map(post, tokens + tokens))  # every mail twice, at once
    assert codes == [200] * (2 * len(tokens))
    assert ledger.suppressed_addresses() == {a for _, a in RECIPIENTS}
    assert {s.count for s in ledger.suppressions()} == {1}


def test_the_prefix_comes_from_unsubscribe_url_or_is_refused(tmp_path: Path) -> None:
    s = shop_settings(tmp_path)
    assert prefix_from_settings(s) == "/mail/stop/"
    root = s.replace(unsubscribe_url="https://stop.example.co.jp/{{unsubscribe_token}}")
    assert prefix_from_settings(root) == "/"
    for bad in (None, "https://x.jp/stop?t={{ unsubscribe_token }}", "https://x.jp/stop/{{ id }}"):
        with pytest.raises(SettingsError, match=re.escape("must end in /{{ unsubscribe_token }}")):
            prefix_from_settings(s.replace(unsubscribe_url=bad))


def test_the_prefix_is_where_the_server_answers(
    serve: Callable[..., Running], settings: Settings, ledger: Ledger
) -> None:
    running = serve(settings, ledger, prefix="/")
    token = token_for(1007, "user7@example.co.jp")
    assert httpx.get(running.base + "/" + token).status_code == 200
    assert httpx.get(running.base + PREFIX + token).status_code == 404
    with pytest.raises(SettingsError, match="plain path"):
        create_app(settings, ledger, prefix="/mail/../stop/")


# --- end to end: a real mail, the real command -----------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_a_sent_mails_header_unsubscribes_and_the_next_dry_run_holds_the_member_back(
    tmp_path: Path, smtp_server: Server
) -> None:
    smtp = smtp_server()
    campaign = setup_campaign(tmp_path, 4)
    config = tmp_path / "bcartnb.toml"
    config.write_text(config.read_text("utf-8") + f'unsubscribe_url = "{URL_SETTING}"\n', "utf-8")
    env = env_for(tmp_path, smtp) | {"BCARTNB_UNSUBSCRIBE_SECRET": SECRET}
    sent = bcartnb("run", str(campaign), "--send", "--json", env=env, cwd=tmp_path)
    assert sent.returncode == 0, sent.stderr
    assert SECRET not in sent.stdout + sent.stderr
    mail = next(r for r in smtp.received if r.recipients == ("user2@example.co.jp",))
    header = email.message_from_bytes(mail.raw, policy=email.policy.default)
    assert header["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    url = re.fullmatch(
        r"<(https://shop\.example\.co\.jp(/mail/stop/[A-Za-z0-9_-]+))>", header["List-Unsubscribe"]
    )
    assert url is not None

    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "bcartnb", "unsubscribe-server", "--port", str(port)],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert f"127.0.0.1:{port}/mail/stop/<token>" in first, proc.stderr and proc.stderr.read()
        path = url.group(2)
        reply = httpx.post(f"http://127.0.0.1:{port}{path}", content=b"List-Unsubscribe=One-Click")
        assert reply.status_code == 200
    finally:
        proc.terminate()
        out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert SECRET not in out + err and path.rsplit("/", 1)[1] not in out + err
    cid = json.loads(sent.stdout)["campaign_id"]
    assert f"配信停止: キャンペーン {cid} 会員 1002" in err and "user2@" not in out + err

    rows = json.loads(bcartnb("suppressions", "--json", env=env, cwd=tmp_path).stdout)
    assert [(r["address"], r["reason"], r["campaign_id"], r["member_id"]) for r in rows] == [
        ("user2@example.co.jp", "unsubscribed", cid, 1002)
    ]
    dry = json.loads(bcartnb("run", str(campaign), "--json", env=env, cwd=tmp_path).stdout)
    assert dry["reasons"]["suppressed"] == 1 and dry["sendable"] == 3
    again = bcartnb("run", str(campaign), "--send", "--repeat", "--json", env=env, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    to_user2 = [r for r in smtp.received if r.recipients == ("user2@example.co.jp",)]
    assert len(to_user2) == 1  # the first campaign's mail only


@pytest.mark.parametrize(
    ("env_extra", "args", "said"),
    [
        ({}, [], "設定のエラー: 配信停止リンク（unsubscribe_token）を使うには"),
        ({"BCARTNB_UNSUBSCRIBE_SECRET": "Qz7#kW"}, [], "BCARTNB_UNSUBSCRIBE_SECRET が短すぎます"),
        ({"BCARTNB_UNSUBSCRIBE_SECRET": SECRET}, ["--prefix", "/a/../b"], "--prefix"),
        ({"BCARTNB_UNSUBSCRIBE_SECRET": SECRET}, ["--host", "203.0.113.1"], "起動できません"),
    ],
)
def test_the_command_refuses_bad_settings_in_one_japanese_line(
    tmp_path: Path, smtp_server: Server, env_extra: dict[str, str], args: list[str], said: str
) -> None:
    setup_campaign(tmp_path, 1)
    config = tmp_path / "bcartnb.toml"
    config.write_text(config.read_text("utf-8") + f'unsubscribe_url = "{URL_SETTING}"\n', "utf-8")
    env = env_for(tmp_path, smtp_server()) | env_extra
    out = bcartnb("unsubscribe-server", "--port", str(free_port()), *args, env=env, cwd=tmp_path)
    assert out.returncode == 2 and len(out.stderr.splitlines()) == 1, out.stderr
    assert out.stderr.startswith("bcartnb: error: ") and said in out.stderr
    assert "Traceback" not in out.stderr and SECRET not in out.stderr


def test_a_busy_port_is_one_line(tmp_path: Path, smtp_server: Server) -> None:
    setup_campaign(tmp_path, 1)
    config = tmp_path / "bcartnb.toml"
    config.write_text(config.read_text("utf-8") + f'unsubscribe_url = "{URL_SETTING}"\n', "utf-8")
    env = env_for(tmp_path, smtp_server()) | {"BCARTNB_UNSUBSCRIBE_SECRET": SECRET}
    with socket.create_server(("127.0.0.1", 0)) as busy:
        port = busy.getsockname()[1]
        out = bcartnb("unsubscribe-server", "--port", str(port), env=env, cwd=tmp_path)
    assert out.returncode == 2 and len(out.stderr.splitlines()) == 1, out.stderr
    assert "配信停止サーバーを" in out.stderr and f"127.0.0.1:{port}" in out.stderr


def test_a_dry_run_composes_each_token_and_sends_nothing(tmp_path: Path) -> None:
    """Planning with the secret composes every mail (a token each) and sends nothing."""
    members = tmp_path / "members.csv"
    members.write_text(
        "会員ID,会社名,メールアドレス,メール案内\n1,A商事,a@example.co.jp,受け取る\n", "utf-8"
    )
    spec = CampaignSpec.from_mapping(
        {"members": str(members), "subject": "件名", "body": "停止 {{ unsubscribe_token }}"},
        where="test",
    )
    result = run(spec, shop_settings(tmp_path), send=False, progress=False)
    assert result.summary.sent == 0 and result.plan is not None
    mail = result.plan.composer.compose({"id": 1, "email": "a@example.co.jp"})
    assert token_for(1, "a@example.co.jp", cid=result.plan.campaign_id) in mail.text


# --- in a real browser ------------------------------------------------------------------------


@pytest.mark.browser
@pytest.mark.timeout(120)
def test_in_chromium_the_button_unsubscribes_and_confirms(
    server: Running, ledger: Ledger, tmp_path: Path
) -> None:
    from browser_support import VIEWPORT, launch_chromium
    from playwright.sync_api import expect, sync_playwright

    token = token_for(1008, "user8@example.co.jp")
    requests: list[str] = []
    problems: list[str] = []
    with sync_playwright() as pw:
        browser = launch_chromium(pw)
        try:
            page = browser.new_page(viewport=VIEWPORT, locale="ja-JP")
            page.on("request", lambda r: requests.append(f"{r.method} {r.url}"))
            page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
            page.goto(server.url + token)
            expect(page).to_have_title("メール配信の停止")
            expect(page.get_by_text("見本商事 <&>からのメールの配信を停止します")).to_be_visible()
            assert ledger.suppressed_addresses() == frozenset()
            button = page.get_by_role("button", name="配信を停止する")
            expect(button).to_have_count(1)
            page.screenshot(path=str(tmp_path / "unsubscribe-confirm.png"))
            button.click()
            expect(page.get_by_role("heading", name="配信を停止しました")).to_be_visible()
            page.screenshot(path=str(tmp_path / "unsubscribe-done.png"))
        finally:
            browser.close()
    assert requests == [f"GET {server.url}{token}", f"POST {server.url}{token}"]
    assert problems == []  # no Content-Security-Policy violation, nothing blocked
    assert listed(ledger) == [
        ("user8@example.co.jp", "unsubscribed", "unsubscribe-server", 1, CID, 1008)
    ]
