"""`bcartnb bounces scan imaps://…` against a real Dovecot with TLS and a password."""

from __future__ import annotations

import imaplib
import json
import os
import shutil
import ssl
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from imap_server import ImapServer, start_imap_server
from secrets_scan import assert_no_secret
from smtp_servers import TestServer
from test_cli_run import bcartnb
from test_hygiene_scan import SAMPLE_CID, SAMPLE_MEMBERS, send_mails

from bcartnb.hygiene.scan import scan_mailbox
from bcartnb.hygiene.sources import imap_folder_name
from bcartnb.settings import load_settings

DATA = Path(__file__).parent / "data" / "bounces"
SAMPLES = ["postfix-user-unknown.eml", "gmail-mailbox-full.eml", "arf-yahoo.eml"]


@pytest.fixture
def imap() -> Iterator[ImapServer]:
    # not under pytest's tmp folder: that is private to us (0700), and Dovecot's own users
    # (dovenull, dovecot, the mail user) must reach the configuration and the mail
    root = Path(tempfile.mkdtemp(prefix="bcartnb-imap-"))
    try:
        server = start_imap_server(root)
        server.add([(DATA / name).read_bytes() for name in SAMPLES])
        yield server
        server.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def smtp(smtp_server: Callable[..., TestServer]) -> TestServer:
    return smtp_server()


def shop(
    tmp_path: Path, imap: ImapServer, smtp: TestServer, *, password: str | None
) -> dict[str, str]:
    """A shop that has sent the samples' campaign for real, so their bounces are its mails'."""
    (tmp_path / "bcartnb.toml").write_text(
        'plan = "プラン10"\nfrom = "shop@example.co.jp"\ndb = "ledger.sqlite3"\n', encoding="utf-8"
    )
    if not (tmp_path / "ledger.sqlite3").exists():
        settings = load_settings(tmp_path / "bcartnb.toml", env=smtp.env())
        send_mails(settings, SAMPLE_MEMBERS, campaign_id=SAMPLE_CID)
    env = {k: v for k, v in os.environ.items() if not k.startswith("BCARTNB_")}
    env["BCARTNB_CONFIG"] = str(tmp_path / "bcartnb.toml")
    env["SSL_CERT_FILE"] = str(imap.ca_file)
    if password is not None:
        env["BCARTNB_IMAP_PASSWORD"] = password
    return env


def mailbox_state(imap: ImapServer) -> list[tuple[bytes, bytes]]:
    """Each mail's flags and bytes, read with EXAMINE and BODY.PEEK (changing nothing)."""
    ctx = ssl.create_default_context(cafile=str(imap.ca_file))
    conn = imaplib.IMAP4_SSL("127.0.0.1", imap.imaps_port, ssl_context=ctx)
    try:
        conn.login(imap.user, imap.password)
        conn.select("INBOX", readonly=True)
        _, data = conn.fetch("1:*", "(FLAGS BODY.PEEK[])")
    finally:
        conn.logout()
    return [(item[0], item[1]) for item in data if isinstance(item, tuple)]


def test_imaps_scan_reads_without_changing_the_folder_and_twice_is_a_no_op(
    tmp_path: Path, imap: ImapServer, smtp: TestServer
) -> None:
    env = shop(tmp_path, imap, smtp, password=imap.password)
    before = mailbox_state(imap)
    assert len(before) == 3 and all(b"\\Seen" not in flags for flags, _ in before)
    first = bcartnb("bounces", "scan", imap.url(), "--json", env=env, cwd=tmp_path)
    assert first.returncode == 0, first.stderr + imap.log()
    out = json.loads(first.stdout)
    assert (out["scanned"], out["hard"], out["soft"], out["complaints"]) == (3, 1, 1, 1)
    assert out["source"] == imap.url()  # where it read, without the password
    second = json.loads(
        bcartnb("bounces", "scan", imap.url(), "--json", env=env, cwd=tmp_path).stdout
    )
    assert (second["hard"], second["soft"], second["complaints"], second["repeated"]) == (
        0,
        0,
        0,
        3,
    )
    assert mailbox_state(imap) == before  # not a flag changed, nothing moved or deleted
    # stdout, stderr, the ledger and anything else written: no password in any form
    assert_no_secret(first.stdout, first.stderr, tmp_path, secrets={"IMAP password": imap.password})


def test_imap_with_starttls_and_the_password_from_dotenv(
    tmp_path: Path, imap: ImapServer, smtp: TestServer
) -> None:
    env = shop(tmp_path, imap, smtp, password=None)
    (tmp_path / ".env").write_text(f"BCARTNB_IMAP_PASSWORD={imap.password}\n", encoding="utf-8")
    done = bcartnb("bounces", "scan", imap.url(tls=False), "--json", env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr + imap.log()
    assert json.loads(done.stdout)["scanned"] == 3


def test_the_python_api_takes_an_ssl_context(
    tmp_path: Path, imap: ImapServer, smtp: TestServer
) -> None:
    env = shop(tmp_path, imap, smtp, password=imap.password)
    settings = load_settings(tmp_path / "bcartnb.toml", env={})
    ctx = ssl.create_default_context(cafile=str(imap.ca_file))
    result = scan_mailbox(imap.url(), settings, env=env, ssl_context=ctx)
    assert (result.scanned, result.hard) == (3, 1)


@pytest.mark.parametrize("case", ["wrong password", "untrusted certificate", "no folder"])
def test_refusals_are_one_line_and_never_show_the_password(
    tmp_path: Path, imap: ImapServer, smtp: TestServer, case: str
) -> None:
    password = "wrong-Pa55word" if case == "wrong password" else imap.password
    env = shop(tmp_path, imap, smtp, password=password)
    url = imap.url()
    if case == "untrusted certificate":
        env.pop("SSL_CERT_FILE")
    if case == "no folder":
        url = imap.url(folder="Nope")
    done = bcartnb("bounces", "scan", url, env=env, cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.startswith("bcartnb: error: ") and done.stderr.count("\n") == 1
    assert "Traceback" not in done.stderr
    assert_no_secret(done.stdout, done.stderr, tmp_path, secrets={"IMAP password": password})
    expected = {
        "wrong password": "ログインできません",
        "untrusted certificate": "証明書",
        "no folder": "フォルダを開けません",
    }[case]
    assert expected in done.stderr


def test_a_japanese_folder_name(tmp_path: Path, imap: ImapServer, smtp: TestServer) -> None:
    """Folders are named in modified UTF-7 on the wire (RFC 3501): 迷惑メール works."""
    assert imap_folder_name("迷惑メール") == "&j,dg0TDhMPww6w-"
    assert imap_folder_name("A&B/受信箱") == "A&-B/&U9dP4Xux-"
    ctx = ssl.create_default_context(cafile=str(imap.ca_file))
    conn = imaplib.IMAP4_SSL("127.0.0.1", imap.imaps_port, ssl_context=ctx)
    try:
        conn.login(imap.user, imap.password)
        assert conn.create('"&j,dg0TDhMPww6w-"')[0] == "OK"
        raw = (DATA / "exim-failed.eml").read_bytes().replace(b"\n", b"\r\n")
        assert conn.append('"&j,dg0TDhMPww6w-"', None, None, raw)[0] == "OK"
    finally:
        conn.logout()
    env = shop(tmp_path, imap, smtp, password=imap.password)
    done = bcartnb(
        "bounces", "scan", imap.url(folder="迷惑メール"), "--json", env=env, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    assert (json.loads(done.stdout)["scanned"], json.loads(done.stdout)["hard"]) == (1, 1)
