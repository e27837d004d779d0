"""Bounce mailboxes, read and never changed: a Maildir folder, an mbox file, an IMAP folder.

The shop's bounce mailbox is the shop's mail: a scan reads it and leaves it exactly as it
was, so scanning twice (or with a mail client open on it) is safe. A Maildir is listed and
read (nothing moves from ``new`` to ``cur``); an mbox is read without a lock or a rewrite;
an IMAP folder is opened with EXAMINE (``readonly=True``) and fetched with ``BODY.PEEK[]``,
so not even the \\Seen flag changes.

``imap://USER@HOST[:PORT]/FOLDER`` and ``imaps://…``: the password only from
``BCARTNB_IMAP_PASSWORD`` (the environment or ``.env``), never from the URL, and it never
appears in a message. TLS is verified against the system's CAs (``SSL_CERT_FILE`` names
another bundle): ``imaps`` is TLS from the start (port 993), ``imap`` upgrades with STARTTLS
(port 143) and is refused without it unless the host is this machine.
"""

from __future__ import annotations

import base64
import contextlib
import imaplib
import mailbox
import os
import re
import ssl
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast
from urllib.parse import unquote, urlsplit

from bcartnb.closing import Closing
from bcartnb.exceptions import HygieneError
from bcartnb.files import open_regular, read_regular
from bcartnb.privacy import scrub
from bcartnb.settings import check_url, is_local, read_dotenv

__all__ = ["ImapUrl", "Mailbox", "imap_folder_name", "open_mailbox", "parse_imap_url"]

_FETCH_BATCH = 100
_IMAP_TIMEOUT = 60.0
_PASSWORD_ENV = "BCARTNB_IMAP_PASSWORD"


class Mailbox(Closing):
    """A mailbox opened for reading: ``len()`` mails, iterated as raw bytes.

    ``skipped``: entries passed over because they are not mail files (a FIFO or a device in
    a Maildir folder would block or never end).
    """

    label: str
    skipped: int = 0
    #: whether a forked process may read a part of it (:meth:`read`) while this one reads
    #: another: each mail its own file, no connection or file position shared
    forkable: bool = False

    def __len__(self) -> int:
        raise NotImplementedError

    def __iter__(self) -> Iterator[bytes]:
        return self.read()

    def read(self, start: int = 0, stop: int | None = None) -> Iterator[bytes]:
        """The mails from the ``start``-th up to the ``stop``-th (the end), in order."""
        raise NotImplementedError

    def close(self) -> None:
        """Let go of the mailbox (a network connection, a file)."""


class _LocalMailbox(Mailbox):
    def __init__(self, box: mailbox.Mailbox[mailbox.Message], label: str) -> None:
        self.box = box
        self.label = label
        self.forkable = isinstance(box, mailbox.Maildir)
        try:
            self.keys = sorted(box.keys())
        except (OSError, mailbox.Error) as err:
            raise HygieneError(
                f"{label}: cannot list the mailbox: {err}",
                ja="メールボックスを読めません",
            ) from err

    def __len__(self) -> int:
        return len(self.keys)

    def read(self, start: int = 0, stop: int | None = None) -> Iterator[bytes]:
        for key in self.keys[start:stop]:
            try:
                raw = self.box.get_bytes(key)
            except (KeyError, FileNotFoundError):
                continue  # moved or deleted by a mail client since it was listed
            except _NotAMailFile:
                self.skipped += 1
                continue
            except OSError as err:
                raise HygieneError(
                    f"{self.label}: cannot read mail {key}: {err.strerror or err}",
                    ja="メールボックスのメールを読めません（ファイルの権限を確認してください）",
                ) from None
            yield raw

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.box.close()


class _NotAMailFile(HygieneError):
    """A Maildir entry that is not a regular file: skipped, not fatal."""


class _Maildir(mailbox.Maildir):
    """:class:`mailbox.Maildir` that opens a mail only if it is a regular file."""

    def get_bytes(self, key: str) -> bytes:
        path = os.path.join(self._path, cast(Any, self)._lookup(key))
        raw = read_regular(path, "メールボックスの中のメール", _NotAMailFile)
        return raw.replace(os.linesep.encode(), b"\n")


@dataclass(frozen=True)
class ImapUrl:
    """Where an IMAP folder is, without its password."""

    tls: bool
    user: str
    host: str
    port: int
    folder: str

    @property
    def label(self) -> str:
        scheme = "imaps" if self.tls else "imap"
        return f"{scheme}://{self.user}@{self.host}:{self.port}/{self.folder}"


_URL_JA = "IMAP の指定は imaps://ユーザー名@ホスト名:ポート/フォルダ の形で書いてください"


def parse_imap_url(source: str) -> ImapUrl:
    """``imap[s]://USER@HOST[:PORT]/FOLDER``, checked; a password in it is refused.

    The user name and folder go into IMAP commands once percent-decoded, next to the
    password: a control character in any part (``%0d%0a`` too) is refused, naming the part,
    and so is a user name that is not one IMAP atom (imaplib sends it unquoted).
    """
    check_url(source, "IMAP", HygieneError)
    parts = urlsplit(source)
    try:
        port = parts.port
    except ValueError as err:
        raise HygieneError(f"{parts.scheme}://…: bad port", ja=_URL_JA) from err
    if parts.password is not None:
        raise HygieneError(
            "the IMAP URL must not carry a password: set BCARTNB_IMAP_PASSWORD instead",
            ja="IMAP のパスワードは URL に書かず、"
            "環境変数 BCARTNB_IMAP_PASSWORD で指定してください",
        )
    if not parts.username or not parts.hostname:
        raise HygieneError(f"{parts.scheme}://…: needs USER@HOST", ja=_URL_JA)
    if re.search(r'[\s"\\(){}]', unquote(parts.username)):
        raise HygieneError(
            f"{parts.scheme}://…: the user name holds a space, quote, backslash, parenthesis "
            "or brace, which IMAP LOGIN cannot carry",
            ja="IMAP のユーザー名に空白・引用符・括弧などの使えない文字が含まれています",
        )
    tls = parts.scheme == "imaps"
    folder = unquote(parts.path.lstrip("/")) or "INBOX"
    if parts.query or parts.fragment or re.search(r'["\\\r\n]', folder):
        raise HygieneError(
            f"{parts.scheme}://…: bad folder {folder[:80]!r}",
            ja=f"{_URL_JA}（フォルダー {folder[:80]!r}）",
        )
    return ImapUrl(
        tls, unquote(parts.username), parts.hostname, port or (993 if tls else 143), folder
    )


def imap_folder_name(name: str) -> str:
    """A folder name as IMAP writes it: modified UTF-7 (RFC 3501 5.1.3), so 迷惑メール works."""
    out: list[str] = []
    pending: list[str] = []

    def flush() -> None:
        if pending:
            data = base64.b64encode("".join(pending).encode("utf-16-be")).decode()
            out.append("&" + data.rstrip("=").replace("/", ",") + "-")
            pending.clear()

    for ch in name:
        if " " <= ch <= "~":
            flush()
            out.append("&-" if ch == "&" else ch)
        else:
            pending.append(ch)
    flush()
    return "".join(out)


def _password(env: Mapping[str, str] | None) -> str:
    values = dict(os.environ if env is None else env)
    if env is None:
        read_dotenv(values)
    password = values.get(_PASSWORD_ENV)
    if not password:
        raise HygieneError(
            f"{_PASSWORD_ENV} is not set (the environment or .env)",
            ja="IMAP のパスワードを環境変数 BCARTNB_IMAP_PASSWORD（または .env）に設定してください",
        )
    return password


class _ImapMailbox(Mailbox):
    def __init__(self, url: ImapUrl, password: str, context: ssl.SSLContext) -> None:
        self.label = url.label
        where = f"{url.host}:{url.port}"
        try:
            if url.tls:
                self.conn: imaplib.IMAP4 = imaplib.IMAP4_SSL(
                    url.host, url.port, ssl_context=context, timeout=_IMAP_TIMEOUT
                )
            else:
                self.conn = imaplib.IMAP4(url.host, url.port, timeout=_IMAP_TIMEOUT)
                if "STARTTLS" in self.conn.capabilities:
                    self.conn.starttls(ssl_context=context)
                elif not is_local(url.host):
                    self.conn.shutdown()
                    raise HygieneError(
                        f"{where} offers no STARTTLS: the password would cross the network "
                        "unencrypted (use imaps://)",
                        ja="IMAP サーバーが暗号化（STARTTLS）に対応していません。"
                        "imaps:// を使ってください",
                    )
        except ssl.SSLError as err:
            raise HygieneError(
                f"{where}: TLS failed: {err.__class__.__name__}: {getattr(err, 'reason', err)}",
                ja="IMAP サーバーの証明書を確認できません（TLS）",
            ) from None
        except (OSError, imaplib.IMAP4.error) as err:
            raise HygieneError(
                f"{where}: cannot connect: {err}", ja="IMAP サーバーに接続できません"
            ) from None
        self._secrets = (password,)  # a server's reply may quote the LOGIN: never shown
        try:
            self.conn.login(url.user, password)
        except (imaplib.IMAP4.error, OSError, UnicodeEncodeError) as err:
            self.close()
            raise HygieneError(
                f"{where}: login as {url.user!r} refused: "
                + (
                    "the user name or password is not ASCII"
                    if isinstance(err, UnicodeEncodeError)
                    else self._plain(err)
                ),
                ja=f"IMAP サーバーに {url.user!r} としてログインできません"
                "（ユーザー名と BCARTNB_IMAP_PASSWORD を確認してください）",
            ) from None
        failure: str | None = None
        try:
            folder = imap_folder_name(url.folder)
            typ, data = self.conn.select(f'"{folder}"', readonly=True)  # EXAMINE
            if typ == "OK":
                typ, data = self.conn.uid("SEARCH", "ALL")
            if typ != "OK":
                failure = self._plain(data)
        except (imaplib.IMAP4.error, OSError) as err:
            failure = self._plain(err)
        if failure is not None:
            self.close()
            raise HygieneError(
                f"{url.label}: cannot open the folder: {failure}",
                ja="IMAP のフォルダを開けません",
            ) from None
        raw = data[0] if data and isinstance(data[0], bytes) else b""
        self.uids = raw.split()

    def __len__(self) -> int:
        return len(self.uids)

    def read(self, start: int = 0, stop: int | None = None) -> Iterator[bytes]:
        uids = self.uids[start:stop]
        for first in range(0, len(uids), _FETCH_BATCH):
            batch = b",".join(uids[first : first + _FETCH_BATCH]).decode()
            try:
                typ, data = self.conn.uid("FETCH", batch, "(BODY.PEEK[])")
            except (imaplib.IMAP4.error, OSError) as err:
                raise HygieneError(
                    f"{self.label}: reading failed: {self._plain(err)}",
                    ja="IMAP のメールを読み込めませんでした",
                ) from None
            if typ != "OK":
                raise HygieneError(
                    f"{self.label}: reading failed: {self._plain(data)}",
                    ja="IMAP のメールを読み込めませんでした",
                )
            for item in data:
                if isinstance(item, tuple) and len(item) == 2 and isinstance(item[1], bytes):
                    yield item[1]

    def _plain(self, value: object) -> str:
        return scrub(_plain(value), self._secrets)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.conn.logout()


def _plain(value: object) -> str:
    text = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
    return " ".join("".join(c if c.isprintable() else " " for c in text).split())[:300]


def open_mailbox(
    source: str | os.PathLike[str],
    *,
    env: Mapping[str, str] | None = None,
    ssl_context: ssl.SSLContext | None = None,
) -> Mailbox:
    """Open a Maildir folder, an mbox file or an IMAP URL for reading."""
    text = os.fspath(source)
    if re.match(r"imaps?://", text, re.IGNORECASE):
        url = parse_imap_url(text)
        context = ssl_context or ssl.create_default_context()
        return _ImapMailbox(url, _password(env), context)
    if "://" in text:
        raise HygieneError(
            f"{text[:80]!r}: only imap:// and imaps:// are understood",
            ja=f"読み込み元 {text[:80]!r} を読めません。Maildir フォルダ、mbox ファイル、"
            "imap:// または imaps:// で指定してください",
        )
    path = Path(text).expanduser()
    if path.is_dir():
        if not (path / "cur").is_dir() or not (path / "new").is_dir():
            raise HygieneError(
                f"{path}: a folder without cur/ and new/ is not a Maildir",
                ja="Maildir フォルダではありません（cur と new がありません）",
            )
        return _LocalMailbox(_Maildir(path, factory=None, create=False), str(path))
    try:
        with open_regular(path, "メールボックス", HygieneError) as fh:  # not a FIFO, a device
            head = fh.read(5)
    except FileNotFoundError:
        raise HygieneError(f"{path}: not found", ja="メールボックスが見つかりません") from None
    except OSError as err:
        raise HygieneError(
            f"{path}: cannot read the mailbox: {err.strerror or err}",
            ja="メールボックスを読めません（ファイルの権限を確認してください）",
        ) from None
    if head and head != b"From ":
        raise HygieneError(
            f"{path}: not an mbox file (it does not start with 'From ')",
            ja="mbox ファイルではありません",
        )
    return _LocalMailbox(mailbox.mbox(path, factory=None, create=False), str(path))
