"""Secrets in every form, URLs with control characters, weak signing secrets.

The echo forms below are written out here, from what servers and libraries do (JSON with
PHP's escaped slashes, percent-encoding in either case, base64 of the header), not taken
from bcartnb.privacy: the test is an independent oracle of the scrubbing.
"""

from __future__ import annotations

import base64
import contextlib
import html
import json
import re
import socket
import threading
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_cli_run import bcartnb

from bcartnb.exceptions import HygieneError, SettingsError, TransportError
from bcartnb.hygiene.sources import open_mailbox, parse_imap_url
from bcartnb.mailtokens.tokens import TokenSigner, check_secret, secret_bits
from bcartnb.privacy import scrub
from bcartnb.settings import BcartSettings, SmtpSettings, load_settings
from bcartnb.transports import SmtpTransport


def _lower_hex(text: str) -> str:
    return re.sub(r"%[0-9A-F]{2}", lambda m: m.group().lower(), text)


ECHOES: dict[str, Callable[[str], str]] = {
    "as is": lambda t: t,
    "lower": str.lower,
    "upper": str.upper,
    "swapcase": str.swapcase,
    "json": lambda t: json.dumps(t)[1:-1],
    "json, slashes escaped": lambda t: json.dumps(t).replace("/", "\\/")[1:-1],
    "json of json": lambda t: json.dumps(json.dumps(t))[1:-1],
    "repr": repr,
    "percent": lambda t: urllib.parse.quote(t, safe=""),
    "percent, lower hex": lambda t: _lower_hex(urllib.parse.quote(t, safe="")),
    "form": urllib.parse.quote_plus,
    "every byte percent": lambda t: "".join(f"%{b:02X}" for b in t.encode()),
    "html": html.escape,
    "base64": lambda t: base64.b64encode(t.encode()).decode(),
    "base64 url-safe": lambda t: base64.urlsafe_b64encode(t.encode()).decode(),
    "base64 of Bearer": lambda t: base64.b64encode(f"Bearer {t}".encode()).decode(),
    "base64 of the header line": lambda t: base64.b64encode(
        f"Authorization: Bearer {t}\r\n".encode()
    ).decode(),
}
PRINTABLE_ASCII = st.characters(min_codepoint=0x20, max_codepoint=0x7E)


def assert_no_form(text: str, token: str) -> None:
    low = text.lower()
    for name, echo in ECHOES.items():
        if not name.startswith("base64"):
            assert echo(token).lower() not in low, name
    for k in range(8, len(token) + 1):  # cut short, from either end
        assert token[:k].lower() not in low and token[-k:].lower() not in low, k
    revealed = base64_revealed(text)
    raw = token.encode()
    for k in range(10, len(raw) + 1):  # what any base64 left in the text decodes to
        assert raw[:k] not in revealed and raw[-k:] not in revealed, ("base64", k)


def base64_revealed(text: str) -> bytes:
    """Everything the base64-looking runs of ``text`` decode to, at every alignment."""
    out = []
    for run in re.findall(r"[A-Za-z0-9+/_-]{4,}", text):
        run = run.replace("-", "+").replace("_", "/")
        for start in range(4):
            piece = run[start:]
            piece = piece[: len(piece) // 4 * 4]
            out.append(base64.b64decode(piece) if piece else b"")
    return b"\n".join(out)


@settings(max_examples=200, deadline=None)
@given(
    token=st.text(PRINTABLE_ASCII, min_size=16, max_size=80),
    form=st.sampled_from(sorted(ECHOES)),
    cut=st.sampled_from(["whole", "head", "tail"]),
    size=st.integers(8, 80),
)
def test_any_token_in_any_echo_form_is_scrubbed(token: str, form: str, cut: str, size: int):
    echoed = ECHOES[form](token)
    if cut == "head":
        echoed = echoed[: max(size, 8)]
    elif cut == "tail":
        echoed = echoed[-max(size, 8) :]
    # non-ASCII around it: nothing of the context can join a leftover into a piece
    text = f"エラー「{echoed}」と「{echoed}」"
    out = scrub(text, [token])
    assert "エラー「" in out and "」と「" in out  # the message around it stays
    assert_no_form(out, token)
    if cut == "whole" and not form.startswith("base64"):
        assert "***" in out


def test_scrub_leaves_other_text_and_skips_missing_secrets():
    assert scrub("HTTP 400: bad request", ["s3cret-value-123456", None, ""]) == (
        "HTTP 400: bad request"
    )
    assert scrub("pw=Tab\tPass word!", ["Tab\tPass word!"]) == "pw=***"


# --- a server quoting the password back -------------------------------------------------------


@contextlib.contextmanager
def line_server(reply: Callable[[bytes], bytes | None], greeting: bytes) -> Iterator[int]:
    """A real TCP server on 127.0.0.1 answering each line with ``reply(line)``."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve() -> None:
        with contextlib.suppress(OSError):
            conn, _ = listener.accept()
            with conn, conn.makefile("rb") as lines:
                conn.sendall(greeting)
                for line in lines:
                    answer = reply(line)
                    if answer is None:
                        return
                    conn.sendall(answer)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield port
    finally:
        listener.close()
        thread.join(10)


PASSWORD = "Pa55/w0rd+Secret-Value"


@pytest.mark.parametrize("form", ["as is", "lower", "json, slashes escaped", "base64", "percent"])
def test_an_imap_server_quoting_the_login_never_shows_the_password(form: str):
    def reply(line: bytes) -> bytes | None:
        tag, _, rest = line.decode().rstrip("\r\n").partition(" ")
        if rest.upper().startswith("CAPABILITY"):
            return f"* CAPABILITY IMAP4rev1\r\n{tag} OK done\r\n".encode()
        if rest.upper().startswith("LOGIN"):
            return f"{tag} NO refused: {ECHOES[form](rest)}\r\n".encode()
        return f"* BYE\r\n{tag} OK bye\r\n".encode() if rest.upper() == "LOGOUT" else None

    with line_server(reply, b"* OK ready\r\n") as port:
        url = f"imap://shop@127.0.0.1:{port}/INBOX"
        with pytest.raises(HygieneError) as err:
            open_mailbox(url, env={"BCARTNB_IMAP_PASSWORD": PASSWORD})
    text = err.value.line()
    assert "refused" in text and "***" in text
    assert_no_form(text, PASSWORD)


@pytest.mark.parametrize("form", ["as is", "lower", "base64"])
def test_an_smtp_server_quoting_auth_never_shows_the_password(form: str):
    def reply(line: bytes) -> bytes | None:
        text = line.decode().rstrip("\r\n")
        if text.upper().startswith("EHLO"):
            return b"250-test\r\n250 AUTH PLAIN\r\n"
        if text.upper().startswith("AUTH"):
            echoed = ECHOES[form](text) if form != "base64" else text  # already base64
            return f"535 5.7.8 not accepted: {echoed}\r\n".encode()
        return b"221 bye\r\n" if text.upper().startswith("QUIT") else b"250 ok\r\n"

    with line_server(reply, b"220 test ESMTP\r\n") as port:
        smtp = SmtpSettings(host="127.0.0.1", port=port, user="shop", password=PASSWORD)
        with pytest.raises(TransportError) as err:
            SmtpTransport(smtp).connect()
    text = err.value.line()
    assert "535" in text
    assert_no_form(text, PASSWORD)  # AUTH PLAIN's base64 holds it after "\0shop\0"


# --- control characters in URLs ---------------------------------------------------------------

IMAP_PARTS = {
    "user": "imap://shop%0d%0aA1 LOGOUT@127.0.0.1:{port}/INBOX",
    "host": "imap://shop@127.0.0.1%00:{port}/INBOX",
    "port": "imap://shop@127.0.0.1:{port}%0a/INBOX",
    "path": "imap://shop@127.0.0.1:{port}/IN%0d%0aA2 DELETE INBOX",
    "query": "imap://shop@127.0.0.1:{port}/INBOX?x=%c2%85",
    "raw": "imap://shop\r\nA1 LOGOUT@127.0.0.1:{port}/INBOX",
}


@pytest.mark.parametrize("part", sorted(IMAP_PARTS))
def test_a_control_character_in_any_imap_url_part_is_refused_before_connecting(
    part: str, tmp_path: Path
):
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.5)
    port = listener.getsockname()[1]
    url = IMAP_PARTS[part].format(port=port)
    with pytest.raises(HygieneError) as err:
        parse_imap_url(url)
    named = {"raw": "ユーザー名", "user": "ユーザー名", "host": "ホスト名", "port": "ポート番号"}
    assert named.get(part, {"path": "パス", "query": "クエリ"}.get(part, "?")) in err.value.ja
    (tmp_path / "bcartnb.toml").write_text('plan = "プラン10"\n', encoding="utf-8")
    env = {
        "BCARTNB_CONFIG": str(tmp_path / "bcartnb.toml"),
        "BCARTNB_IMAP_PASSWORD": PASSWORD,
        "XDG_DATA_HOME": str(tmp_path / "data"),  # no per-user ledger of the machine
    }
    done = bcartnb("bounces", "scan", url, env=env, cwd=tmp_path)
    assert done.returncode == 2 and done.stderr.count("\n") == 1
    assert "制御文字" in done.stderr and "\r" not in done.stderr
    assert PASSWORD not in done.stderr + done.stdout
    with pytest.raises(TimeoutError):  # nobody ever connected: the password never left
        listener.accept()
    listener.close()


def test_an_imap_user_name_imap_cannot_carry_is_refused():
    for user in ("a%20b", "a%22b", "a%5cb", "a%7b3%7d"):
        with pytest.raises(HygieneError, match="IMAP LOGIN cannot carry"):
            parse_imap_url(f"imaps://{user}@mail.example.jp/INBOX")
    assert parse_imap_url("imaps://shop%40example.jp@mail.example.jp/迷惑メール").user == (
        "shop@example.jp"
    )


@pytest.mark.parametrize(
    ("key", "value", "part"),
    [
        ("unsubscribe_url", "https://shop.example.jp/stop%0d%0a/{{ unsubscribe_token }}", "パス"),
        ("unsubscribe_url", "https://shop.example.jp/{{ unsubscribe_token }}?a=%00", "クエリ"),
        ("unsubscribe_mailto", "mailto:stop@example.jp?subject=%0d%0aBcc:x@evil.jp", "クエリ"),
        ("api_url", "https://api.bcart.jp%0a/api/v1", "ホスト名"),
        ("api_url", "https://api.bcart.jp/api/v1%e2%80%a8", "パス"),
    ],
)
def test_settings_urls_with_control_characters_are_refused(
    key: str, value: str, part: str, tmp_path: Path
):
    cfg = tmp_path / "bcartnb.toml"
    table = "[bcart]\n" if key == "api_url" else ""
    cfg.write_text(f"{table}{key} = {json.dumps(value)}\n", encoding="utf-8")
    with pytest.raises(SettingsError) as err:
        load_settings(cfg, env={})
    assert f"{key} のURLの{part}" in err.value.ja and "制御文字" in err.value.ja
    assert value not in err.value.line()


def test_good_urls_still_load(tmp_path: Path):
    cfg = tmp_path / "bcartnb.toml"
    cfg.write_text(
        'unsubscribe_url = "https://shop.example.jp/mail/stop/{{ unsubscribe_token }}"\n'
        'unsubscribe_mailto = "mailto:stop@example.jp?subject=%E9%85%8D%E4%BF%A1"\n'
        '[bcart]\napi_url = "https://api.bcart.jp/api/v1"\n',
        encoding="utf-8",
    )
    loaded = load_settings(cfg, env={})
    assert loaded.bcart == BcartSettings()


# --- weak signing secrets -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("secret", "reason"),
    [
        ("a" * 32, "文字の種類が少なすぎます（1 種類）"),
        ("ab" * 20, "文字の種類が少なすぎます（2 種類）"),
        ("0123456789abcdef" * 2, "推測されやすい文字列です"),
        ("abcdefghijklmnopqrstuvwxyzABCDEF", "推測されやすい文字列です"),
        ("Xk9#mQ2$" * 4, "文字の種類が少なすぎます（8 種類）"),
        ("Xk9#mQ2$vB" * 4, "推測されやすい文字列です"),
        ("password1234567890password1234567890", "推測されやすい文字列です"),
        ("qwertyuiopasdfghjklzxcvbnm123456", "推測されやすい文字列です"),
    ],
)
def test_a_weak_unsubscribe_secret_is_refused_with_the_reason(secret: str, reason: str):
    with pytest.raises(SettingsError) as err:
        TokenSigner(secret)
    assert reason in err.value.ja and "secrets.token_urlsafe(32)" in err.value.ja
    assert secret not in err.value.line()


def test_random_secrets_pass_and_the_estimate_is_cautious():
    import secrets

    for _ in range(200):
        check_secret(secrets.token_urlsafe(32), "test")  # what the README tells to run
    assert secret_bits("a" * 32) < 40 and secret_bits(secrets.token_urlsafe(32)) > 200


@settings(max_examples=100, deadline=None)
@given(block=st.text(PRINTABLE_ASCII, min_size=1, max_size=16), times=st.integers(2, 40))
def test_a_repeated_block_is_never_strong(block: str, times: int):
    """However random the block, repeating it adds nothing past the block's own bits."""
    assert secret_bits(block * times) <= (len(block) + 3) * 6.6  # log2(95) < 6.6
    if len(block * times) >= 32:
        with pytest.raises(SettingsError):
            check_secret(block * times, "test")
