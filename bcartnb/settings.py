"""Shop settings: checked once into frozen dataclasses, secrets only from the environment.

Where they come from, the later winning:

1. built-in defaults;
2. the shop's ``bcartnb.toml``: the file named by ``BCARTNB_CONFIG``, else the first one found
   looking upward from the working directory, as git finds a repository (:func:`find_shop`);
3. a ``.env`` file in the current directory, then the one beside ``bcartnb.toml`` (neither
   overrides a variable already set);
4. the environment: ``BCARTNB_SMTP_HOST``, ``_PORT``, ``_SECURITY``, ``_USER``, ``_PASSWORD``,
   ``BCARTNB_PLAN``, ``BCARTNB_DB``, ``BCARTNB_BCART_TOKEN``.

The ledger belongs to the shop: ``ledger`` in ``bcartnb.toml`` (``ledger.sqlite3`` beside it by
default), ``BCARTNB_DB`` overriding. With neither a shop nor ``BCARTNB_DB`` there is no ledger
(``Settings.db`` is None) and :func:`require_ledger` says to run ``bcartnb init``: a ledger made
silently somewhere else would split the quota, "never twice" and the suppression list.

The SMTP password, the B-Cart access token and the unsubscribe links' signing secret
(``BCARTNB_UNSUBSCRIBE_SECRET``) are read from the environment only: a TOML file or a
papermill parameter would end up in a repository or an executed notebook. Relative paths
in the file are relative to the file, so a campaign folder can be moved as a whole.
"""

from __future__ import annotations

import email.errors
import io
import ipaddress
import math
import os
import re
import tomllib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from email.headerregistry import Address, AddressHeader, HeaderRegistry
from email.utils import parseaddr
from pathlib import Path
from typing import Any, cast
from urllib.parse import quote, unquote, urlsplit

from bcartnb.exceptions import InputError, SettingsError
from bcartnb.files import open_regular, read_regular
from bcartnb.plans import Plan, resolve_plan

__all__ = [
    "BCART_API_URL",
    "DEFAULT_LEDGER",
    "MAX_MAIL_BYTES",
    "RENDER_TIMEOUT",
    "SETTINGS_SOURCES_JA",
    "SHOP_FILE",
    "UNSUBSCRIBE_SECRET_ENV",
    "BcartSettings",
    "DeliverySettings",
    "HygieneSettings",
    "Settings",
    "SmtpSettings",
    "check_keys",
    "check_type",
    "check_url",
    "control_in_url",
    "find_shop",
    "legacy_ledger_path",
    "load_settings",
    "missing_plan_error",
    "parse_mailbox",
    "read_toml",
    "require_ledger",
    "require_plan",
    "settings_from_text",
]

SECURITY_MODES = ("none", "starttls", "ssl")
#: Where the unsubscribe links' signing secret comes from (bcartnb.hygiene.tokens).
UNSUBSCRIBE_SECRET_ENV = "BCARTNB_UNSUBSCRIBE_SECRET"
#: Where settings come from, in the shop's words: told whenever a needed one is missing (a
#: papermill run in a folder without bcartnb.toml otherwise only learns that a plan is unset).
SETTINGS_SOURCES_JA = (
    "設定は、環境変数 BCARTNB_CONFIG が指すファイル、なければ今のフォルダから上にたどって"
    "最初に見つかった bcartnb.toml（お店のフォルダー）から読み込みます"
    "（.env と環境変数 BCARTNB_PLAN・BCARTNB_DB・BCARTNB_SMTP_HOST などが優先します）。"
)
#: The shop folder's settings file, looked for upward from the working directory.
SHOP_FILE = "bcartnb.toml"
#: The ledger's file name in the shop folder when ``ledger`` is not set.
DEFAULT_LEDGER = "ledger.sqlite3"
#: Seconds one template render may take: the demo newsletter renders in a tenth of a
#: millisecond and a loop over a thousand products in milliseconds, so five seconds leaves
#: room for any real template and still ends a runaway one before a wizard user gives up.
RENDER_TIMEOUT = 5.0
_RENDER_TIMEOUT_RANGE = (0.1, 600.0)
#: Bytes one composed mail may have: Postfix's default message_size_limit, so a mail this
#: size would be refused by the most common MTA anyway; a newsletter is tens of kilobytes
#: (Gmail clips HTML over 102 KB).
MAX_MAIL_BYTES = 10_240_000
_MAX_MAIL_BYTES_RANGE = (10_000, 100_000_000)
_HEADERS = HeaderRegistry()
_TOP_KEYS = {
    "plan",
    "from",
    "from_name",
    "admin",
    "signature",
    "signature_html",
    "db",
    "ledger",
    "templates",
    "segments",
    "unsubscribe_url",
    "unsubscribe_mailto",
    "smtp",
    "delivery",
    "bcart",
    "hygiene",
    "render_timeout",
    "max_mail_bytes",
}
_SMTP_KEYS = {"host", "port", "security", "user", "timeout", "allow_plaintext_auth"}
_DELIVERY_KEYS = {"connections", "rate_per_second", "rate_per_hour", "retries", "backoff"}
_BCART_KEYS = {"api_url"}
#: B-Cart's public REST API (https://api.bcart.jp/api/v1); ``[bcart] api_url`` points elsewhere.
BCART_API_URL = "https://api.bcart.jp/api/v1"
_HYGIENE_KEYS = {"soft_threshold", "soft_window_days", "verp", "bounce_address"} | {
    "server_header_timeout",
    "server_body_timeout",
    "server_connections",
}


@dataclass(frozen=True)
class SmtpSettings:
    """Where mail goes. AUTH is used only when ``user`` is set: a password alone logs in nobody."""

    host: str = "127.0.0.1"
    port: int = 8025
    security: str = "none"
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    timeout: float = 30.0
    allow_plaintext_auth: bool = False

    def __post_init__(self) -> None:
        if not self.host or any(ch.isspace() or ch == "\0" for ch in self.host):
            raise SettingsError(
                f"[smtp] host must be a host name, not {self.host!r}",
                ja=f"設定 [smtp] host がホスト名になっていません（{self.host!r}）。",
            )
        _in_range("[smtp] port", self.port, 1, 65535, integer=True)
        if self.security not in SECURITY_MODES:
            raise SettingsError(
                f"[smtp] security must be one of {', '.join(SECURITY_MODES)}, "
                f"not {self.security!r}",
                ja="設定 [smtp] security は none・starttls・ssl のどれかにしてください"
                f"（{self.security!r} は使えません）。",
            )
        _in_range("[smtp] timeout", self.timeout, 0.1, 3600, unit=" seconds")
        if (
            self.user
            and self.security == "none"
            and not self.allow_plaintext_auth
            and not _is_local(self.host)
        ):
            # AUTH PLAIN over a plain connection hands the password to anyone on the path
            raise SettingsError(
                f"[smtp] user {self.user!r} would log in to {self.host} without encryption: "
                'set security = "starttls" (port 587) or "ssl" (port 465); '
                "allow_plaintext_auth = true only for a trusted network",
                ja="暗号化なしの接続でSMTPのパスワードを送ることになります。"
                'security を "starttls"（ポート587）か "ssl"（ポート465）にしてください。',
            )

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True)
class DeliverySettings:
    """How hard we push the SMTP server; the defaults suit a shared host."""

    connections: int = 4
    rate_per_second: float | None = None
    rate_per_hour: int | None = None
    retries: int = 6
    backoff: float = 30.0

    def __post_init__(self) -> None:
        # checked here, so a bad number is refused wherever it comes from (the file, a
        # papermill parameter, a keyword argument) before anything is reserved or marked
        _in_range("[delivery] connections", self.connections, 1, 64, integer=True)
        if self.rate_per_second is not None:
            _in_range("[delivery] rate_per_second", self.rate_per_second, 0.01, 10000)
        if self.rate_per_hour is not None:
            _in_range("[delivery] rate_per_hour", self.rate_per_hour, 1, 10_000_000, integer=True)
        _in_range("[delivery] retries", self.retries, 0, 20, integer=True)
        _in_range("[delivery] backoff", self.backoff, 0, 3600, unit=" seconds")


@dataclass(frozen=True)
class BcartSettings:
    """Where the B-Cart API is, and the access token (プライベートアプリ管理) to call it with.

    The token comes only from ``BCARTNB_BCART_TOKEN`` (environment or ``.env``): it is never
    shown (``repr=False``), and it goes over https only, except to this machine (tests).
    """

    api_url: str = BCART_API_URL
    token: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if isinstance(self.api_url, str):
            check_url(self.api_url, "[bcart] api_url", SettingsError)
        parts = urlsplit(self.api_url) if isinstance(self.api_url, str) else None
        bad = (
            parts is None
            or parts.scheme not in ("https", "http")
            or not parts.hostname
            or parts.username is not None
            or parts.password is not None
            or bool(parts.query or parts.fragment)
            or _CONTROL.search(self.api_url) is not None
            or any(ch.isspace() for ch in self.api_url)
        )
        if bad:
            raise SettingsError(
                f"[bcart] api_url must be an http(s) URL such as {BCART_API_URL} "
                f"(no user, query or fragment), not {self.api_url!r}",
                ja=f"設定 [bcart] api_url は {BCART_API_URL} のようなURLにしてください。",
            )
        assert parts is not None and parts.hostname is not None
        if parts.scheme == "http" and not _is_local(parts.hostname):
            # the Bearer token would cross the network in clear text
            raise SettingsError(
                f"[bcart] api_url {self.api_url!r} is plain http to another host: use https",
                ja="設定 [bcart] api_url が暗号化なし（http）です。https のURLにしてください。",
            )
        if self.token is not None and (
            not self.token
            or not self.token.isascii()
            or _CONTROL.search(self.token)
            or any(c.isspace() for c in self.token)
        ):
            # the value itself is never repeated: it is a secret. A placeholder such as "…"
            # (not ASCII) would otherwise only fail deep inside the HTTP client.
            raise SettingsError(
                "BCARTNB_BCART_TOKEN holds white space, a control character or a character "
                "outside ASCII (copy the access token again, on one line)",
                ja="BCARTNB_BCART_TOKEN のアクセストークンに空白・改行・全角などの文字が"
                "含まれています。プライベートアプリ管理でコピーし直してください。",
            )


@dataclass(frozen=True)
class HygieneSettings:
    """How bounces list an address, and where they come back to.

    Soft bounces (a full mailbox, a greylisting server) list an address only once
    ``soft_threshold`` of them fall within ``soft_window_days`` (listmonk's defaults, 3 within
    30 days). With ``verp`` each campaign mail's envelope sender (Return-Path) is
    ``local+<campaign>.<member>@domain`` of ``bounce_address`` (the from address unless set),
    so a bounce names the mail it answers even when it quotes nothing of it.

    The public server (``bcartnb unsubscribe-server``) cannot be held by slow or idle
    clients: a request's head must arrive whole within ``server_header_timeout`` seconds of
    the connection being ready for it, its body within ``server_body_timeout`` after that,
    and at most ``server_connections`` connections are read at once; more wait, unread, in
    arrival order (queued, never refused).
    """

    soft_threshold: int = 3
    soft_window_days: float = 30.0
    verp: bool = False
    bounce_address: str | None = None
    server_header_timeout: float = 10.0
    server_body_timeout: float = 10.0
    server_connections: int = 256

    def __post_init__(self) -> None:
        _in_range("[hygiene] soft_threshold", self.soft_threshold, 1, 1000, integer=True)
        _in_range("[hygiene] soft_window_days", self.soft_window_days, 1, 3660, unit=" days")
        for key in ("server_header_timeout", "server_body_timeout"):
            _in_range(f"[hygiene] {key}", getattr(self, key), 1, 300, unit=" seconds")
        _in_range("[hygiene] server_connections", self.server_connections, 8, 10_000, integer=True)
        if self.bounce_address is not None and "+" in self.bounce_address.partition("@")[0]:
            raise SettingsError(
                f"[hygiene] bounce_address must not contain '+' before the @ (VERP adds it): "
                f"{self.bounce_address!r}",
                ja="[hygiene] bounce_address の @ の前に + は使えません（VERP が付けます）。",
            )


def _is_local(host: str) -> bool:
    """This machine: a plain connection to it never leaves it."""
    if host.lower() in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _in_range(
    key: str, value: object, low: float, high: float, *, integer: bool = False, unit: str = ""
) -> None:
    """One wording for a number out of its range (NaN, infinities and booleans included)."""
    kinds = (int,) if integer else (int, float)
    ok = (
        isinstance(value, kinds)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and low <= value <= high
    )
    if not ok:
        what = "a whole number" if integer else "a number"
        span = f"{low:,} to {high:,}" if integer else f"{low:g} to {high:g}"
        span_ja = f"{low:,}〜{high:,}" if integer else f"{low:g}〜{high:g}"
        raise SettingsError(
            f"{key} must be {what} from {span}{unit}, not {value!r}",
            ja=f"設定 {key} の値 {value!r} は使えません（{span_ja}{unit}）。",
        )


@dataclass(frozen=True)
class Settings:
    plan: str | None = None
    from_addr: str = "shop@example.com"
    from_name: str = ""
    admin: str | None = None
    signature: str = ""
    signature_html: str | None = None
    #: The ledger file; None when no shop was found and BCARTNB_DB is unset (require_ledger).
    db: Path | None = None
    templates: Path = Path("templates")
    segments: Path = Path("segments.toml")
    unsubscribe_url: str | None = None
    unsubscribe_mailto: str | None = None
    #: Signs the unsubscribe links (bcartnb.hygiene.tokens): from the environment only.
    unsubscribe_secret: str | None = field(default=None, repr=False)
    smtp: SmtpSettings = field(default_factory=SmtpSettings)
    delivery: DeliverySettings = field(default_factory=DeliverySettings)
    bcart: BcartSettings = field(default_factory=BcartSettings)
    hygiene: HygieneSettings = field(default_factory=HygieneSettings)
    source: Path | None = None
    #: The per-user ledger of earlier versions, when it exists and the shop's own ledger does
    #: not yet: require_ledger says how to adopt it rather than start an empty one beside it.
    legacy_ledger: Path | None = None
    #: True when ``db`` is the shop folder's default file, named by neither the settings file
    #: nor BCARTNB_DB: the one ledger that could appear without anyone having named it.
    ledger_by_default: bool = False
    render_timeout: float = RENDER_TIMEOUT
    max_mail_bytes: int = MAX_MAIL_BYTES

    def __post_init__(self) -> None:
        for key in ("unsubscribe_url", "unsubscribe_mailto"):
            value = getattr(self, key)
            if isinstance(value, str):
                check_url(value, key, SettingsError)
        bad = _SIGNATURE_CONTROL.search(self.signature)
        if bad:
            # line breaks are the signature's own (LF; a file's CRLF reads as LF); a NUL or a
            # bare CR would reach every mail's body, where SMTP forbids them
            raise SettingsError(
                f"signature contains a control character ({bad.group()!r})",
                ja="署名に改行以外の制御文字（NUL・CR など）が含まれています。",
            )
        _in_range("render_timeout", self.render_timeout, *_RENDER_TIMEOUT_RANGE, unit=" seconds")
        _in_range("max_mail_bytes", self.max_mail_bytes, *_MAX_MAIL_BYTES_RANGE, integer=True)

    def replace(self, **changes: Any) -> Settings:
        """A copy with some fields changed; settings stay immutable once checked."""
        return replace(self, **changes)


def legacy_ledger_path(env: Mapping[str, str] | None = None) -> Path:
    """Where earlier versions kept one ledger per user when no ``BCARTNB_DB`` was set."""
    envd = os.environ if env is None else env
    base = envd.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "bcartnb" / "ledger.sqlite3"


def find_shop(start: str | os.PathLike[str] | None = None) -> Path | None:
    """The ``bcartnb.toml`` in ``start`` (the working directory) or the nearest folder above
    it, as git finds a repository: every face, in any subfolder, reads the same shop."""
    here = Path(start if start is not None else Path.cwd()).absolute()
    for folder in (here, *here.parents):
        candidate = folder / SHOP_FILE
        if candidate.is_file():
            return candidate
    return None


# C0 controls (NUL, CR, LF, tab …), DEL, C1 controls and the Unicode line separators: none
# belongs in a mail header, and Python's address parsers stop or split at some of them.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_URL_PARTS_JA = {
    "scheme": "スキーム",
    "user": "ユーザー名",
    "password": "パスワード",
    "host": "ホスト名",
    "port": "ポート番号",
    "path": "パス",
    "query": "クエリ（? の後）",
    "fragment": "フラグメント（# の後）",
}


def control_in_url(url: str) -> tuple[str, str] | None:
    """The part of ``url`` (its English and Japanese names) holding a control character,
    raw or percent-encoded (``%0d%0a``), or None when there is none.

    A URL part is decoded before it reaches a protocol (an IMAP user name goes into LOGIN,
    a folder into EXAMINE), so a CR LF written as ``%0d%0a`` injects a command as surely as
    a raw one. Anything not printable counts: C0 and C1 controls, DEL, the Unicode line
    separators and invisible format characters.
    """
    # a raw control character is percent-encoded first, so urlsplit (which drops tabs and
    # line breaks silently) cannot hide it, and it is found in the part it was written in
    escaped = "".join(ch if ch.isprintable() else quote(ch, safe="") for ch in url)
    parts = urlsplit(escaped)
    userinfo, _, hostport = parts.netloc.rpartition("@")
    user, _, password = userinfo.partition(":")
    host, port = hostport, ""
    if hostport.startswith("["):
        host, _, port = hostport.partition("]")
    elif ":" in hostport:
        host, _, port = hostport.rpartition(":")
    pieces = {
        "scheme": parts.scheme,
        "user": user,
        "password": password,
        "host": host,
        "port": port,
        "path": parts.path,
        "query": parts.query,
        "fragment": parts.fragment,
    }
    for name, text in pieces.items():
        if not unquote(text).isprintable():
            return name, _URL_PARTS_JA[name]
    return None


def check_url(url: str, key: str, error: type[InputError]) -> None:
    """Refuse a URL with a control character in any part (:func:`control_in_url`), naming
    the part, never repeating the value (it may carry anything)."""
    found = control_in_url(url)
    if found is not None:
        raise error(
            f"{key}: the {found[0]} of the URL holds a control character (CR, LF, NUL, ...), "
            "written as is or percent-encoded",
            ja=f"{key} のURLの{found[1]}に制御文字（改行など。%0d%0a のような書き方も含む）が"
            "含まれています。URLを確かめてください。",
        )


#: What a signature may not hold: the controls above but the line feed and the tab.
_SIGNATURE_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029]")
_MAILBOX_JA = (
    "{key} にはメールアドレスを1つだけ書いてください（例: 見本商事 <shop@example.co.jp>）。"
)


def parse_mailbox(value: str, key: str) -> tuple[str, str]:
    """Split ``'Shop 名 <a@b.jp>'`` into (display name, address): exactly one mailbox.

    ``parseaddr`` alone quietly keeps the first of ``"Shop <a@x>, evil@x.jp"`` and reads up
    to a NUL; the header parser of :mod:`email.headerregistry` sees the whole value, so a
    second address, a group, trailing junk or a control character is refused instead.
    """
    label = key.rpartition(": ")[2] or key
    ja = _MAILBOX_JA.format(key=label)
    bad = _CONTROL.search(value)
    if bad:
        what = "a line break" if bad.group() in "\r\n\u2028\u2029" else "a control character"
        raise SettingsError(
            f"settings: {key} contains {what} ({bad.group()!r}): {value!r}",
            ja=f"{label} に改行や制御文字が含まれています。メールアドレスを1つだけ書いてください。",
        )
    name, addr = parseaddr(value)
    if not addr or "@" not in addr:
        raise SettingsError(f"settings: {key} is not a mail address: {value!r}", ja=ja)
    try:
        parsed = _HEADERS("From", value)
        Address(addr_spec=addr)
    except (ValueError, IndexError, email.errors.HeaderParseError) as err:
        raise SettingsError(f"settings: {key} is not a mail address: {value!r}", ja=ja) from err
    header = cast(AddressHeader, parsed)
    found = [a.addr_spec for a in header.addresses]
    invalid = [d for d in parsed.defects if isinstance(d, email.errors.InvalidHeaderDefect)]
    grouped = any(g.display_name is not None for g in header.groups)
    if found != [addr] or invalid or grouped:
        raise SettingsError(
            f"settings: {key} must be exactly one mail address, not {value!r}", ja=ja
        )
    return name, addr


def _read_dotenv(env: dict[str, str], path: str | os.PathLike[str] | None = None) -> None:
    """``.env`` in the working directory, then the one in the shop folder (beside the settings
    file ``path``, else the one found as :func:`load_settings` finds it), so the secrets are
    found from any subfolder; neither overrides a variable already set."""
    _read_env_file(env, Path.cwd() / ".env")
    config = _config_path(env, path)
    if config is not None:
        _read_env_file(env, config.parent / ".env")


def _read_env_file(env: dict[str, str], path: Path) -> None:
    try:
        raw = read_regular(path, ".env ファイル", SettingsError)  # a FIFO would block
    except (FileNotFoundError, IsADirectoryError):
        return
    except OSError as err:
        raise SettingsError(
            f"{path}: cannot read .env: {err.strerror or err}",
            ja=f".env ファイル（{path}）を読めません（{err.strerror or err}）。",
        ) from err
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise SettingsError(
            f"{path}: line {line}: .env is not UTF-8 text",
            ja=f".env ファイル（{path}）の {line} 行目が UTF-8 の文字ではありません。",
        ) from None
    from dotenv import dotenv_values

    for key, value in dotenv_values(stream=io.StringIO(text)).items():
        if value is not None and key not in env:
            env[key] = value


def _config_path(env: Mapping[str, str], path: str | os.PathLike[str] | None) -> Path | None:
    if path is not None:
        return Path(path)
    if env.get("BCARTNB_CONFIG"):
        return Path(env["BCARTNB_CONFIG"])
    return find_shop()


_FILE_NAMES_JA = {"settings file": "設定ファイル", "campaign file": "キャンペーンファイル"}
#: No shop writes a settings or campaign file this large; past it, something else was named.
MAX_TOML_BYTES = 1 << 20


def read_toml(path: Path, what: str) -> dict[str, Any]:
    """A settings or campaign file (``what``), refusing what is not a small regular file.

    A directory, ``/dev/zero`` or a FIFO named by mistake would otherwise raise a traceback or
    be read forever; bytes that are not UTF-8 are named, not a UnicodeDecodeError.
    """
    name = _FILE_NAMES_JA.get(what, what)
    try:
        with open_regular(path, name, SettingsError) as fh:  # not a FIFO, not /dev/zero
            raw = fh.read(MAX_TOML_BYTES + 1)
    except FileNotFoundError as err:
        raise SettingsError(
            f"{path}: {what} not found", ja=f"{name}が見つかりません: {path}"
        ) from err
    except IsADirectoryError as err:
        raise SettingsError(
            f"{path}: the {what} is a directory, not a file",
            ja=f"{path} はフォルダです（{name}のパスを確認してください）。",
        ) from err
    except OSError as err:
        raise SettingsError(
            f"{path}: cannot read the {what}: {err.strerror}",
            ja=f"{path} を読めません（{err.strerror}）。",
        ) from err
    if len(raw) > MAX_TOML_BYTES:
        raise SettingsError(
            f"{path}: the {what} is larger than {MAX_TOML_BYTES:,} bytes",
            ja=f"{path} が大きすぎます（{MAX_TOML_BYTES:,} バイトまで）。",
        )
    try:
        return tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise SettingsError(
            f"{path}: line {line}: the {what} is not UTF-8 text",
            ja=f"{name}（{path}）の {line} 行目が UTF-8 の文字ではありません。",
        ) from None
    except tomllib.TOMLDecodeError as err:
        raise SettingsError(
            f"{path}: not valid TOML: {err}",
            ja=f"{name}（{path}）の書き方が TOML として正しくありません。",
        ) from err


def check_keys(data: Mapping[str, Any], allowed: Iterable[str], where: str) -> None:
    """One wording for an unknown key in any TOML the shop writes (settings, campaigns)."""
    allowed = set(allowed)
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise SettingsError(
            f"{where}: unknown key {unknown[0]!r} (known: {', '.join(sorted(allowed))})",
            ja=f"{where} に知らない項目 {unknown[0]!r} があります"
            f"（使える項目: {', '.join(sorted(allowed))}）。",
        )


def check_type(data: Mapping[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    """``data[key]`` if it is a ``kind`` (a bool is not an int here), else a SettingsError."""
    value = data[key]
    if isinstance(value, bool) and kind is not bool:
        raise SettingsError(
            f"{where}: {key} must be {_kind_name(kind)}, not {value!r}",
            ja=f"{where} の {key} の値 {value!r} の型が違います"
            f"（{_kind_name(kind)} で書いてください）。",
        )
    if not isinstance(value, kind):
        raise SettingsError(
            f"{where}: {key} must be {_kind_name(kind)}, not {value!r}",
            ja=f"{where} の {key} の値 {value!r} の型が違います"
            f"（{_kind_name(kind)} で書いてください）。",
        )
    return value


def _kind_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(
        {"str": "a string", "int": "an integer", "float": "a number", "bool": "true or false"}.get(
            k.__name__, k.__name__
        )
        for k in kinds
    )


def _port(value: str, where: str) -> int:
    try:
        port = int(value)
    except ValueError as err:
        raise SettingsError(
            f"{where}: port must be an integer, not {value!r}",
            ja=f"{where} のポート番号 {value!r} が整数ではありません。",
        ) from err
    if not 0 < port < 65536:
        raise SettingsError(
            f"{where}: port {port} is out of range",
            ja=f"{where} のポート番号 {port} は範囲外です（1〜65535）。",
        )
    return port


def _check_plan(name: str, where: str, envd: Mapping[str, str], *, dotenv: bool) -> None:
    """An unknown plan refused here, where it is known whether the file, the environment
    or ``.env`` named it: later, ``resolve_plan`` sees only the name."""
    if not envd.get("BCARTNB_PLAN"):
        source, source_ja = f"{where}: plan", f"設定ファイル {where} の plan "
    elif dotenv and not os.environ.get("BCARTNB_PLAN"):
        source, source_ja = "BCARTNB_PLAN in .env", ".env の BCARTNB_PLAN "
    else:
        source, source_ja = "BCARTNB_PLAN", "環境変数 BCARTNB_PLAN "
    try:
        resolve_plan(name)
    except SettingsError as err:
        raise SettingsError(f"{source}: {err}", ja=f"{source_ja}に指定された{err.ja}") from err


def _table(data: Mapping[str, Any], name: str, keys: set[str], where: str) -> dict[str, Any]:
    """The ``[name]`` table of the settings file (empty when absent), its keys checked."""
    table = data.get(name, {})
    if not isinstance(table, dict):
        raise SettingsError(
            f"{where}: [{name}] must be a table", ja=f"{where} の [{name}] は表で書いてください。"
        )
    check_keys(table, keys, f"{where} [{name}]")
    return table


def _hygiene(data: Mapping[str, Any], where: str) -> dict[str, Any]:
    """The ``[hygiene]`` table's keys, typed; ranges are checked by HygieneSettings."""
    table = _table(data, "hygiene", _HYGIENE_KEYS, where)
    here = f"{where} [hygiene]"
    out: dict[str, Any] = {}
    if "soft_threshold" in table:
        out["soft_threshold"] = check_type(table, "soft_threshold", int, here)
    if "soft_window_days" in table:
        out["soft_window_days"] = float(check_type(table, "soft_window_days", (int, float), here))
    if "verp" in table:
        out["verp"] = check_type(table, "verp", bool, here)
    if "bounce_address" in table:
        value = check_type(table, "bounce_address", str, here)
        out["bounce_address"] = parse_mailbox(value, f"{here}: bounce_address")[1]
    for key in ("server_header_timeout", "server_body_timeout"):
        if key in table:
            out[key] = float(check_type(table, key, (int, float), here))
    if "server_connections" in table:
        out["server_connections"] = check_type(table, "server_connections", int, here)
    return out


def _ledger(
    data: Mapping[str, Any], where: str, rel: Callable[[str], Path], shop: Path | None
) -> Path | None:
    """The ``ledger`` key (``db``, its old name, still read), relative to the settings file;
    by default ``ledger.sqlite3`` in the shop folder; None with no shop at all."""
    if "ledger" in data and "db" in data:
        raise SettingsError(
            f"{where}: ledger and db name the same file: keep ledger only",
            ja=f"{where} に ledger と db の両方があります（同じ配信記録ファイルの設定です）。"
            "ledger だけを残してください。",
        )
    for key in ("ledger", "db"):
        if key in data:
            value = check_type(data, key, str, where)
            if not value.strip() or _CONTROL.search(value):
                raise SettingsError(
                    f"{where}: {key} must be a file path, not {value!r}",
                    ja=f"{where} の {key} には配信記録ファイルのパスを書いてください。",
                )
            return rel(value)
    return shop / DEFAULT_LEDGER if shop is not None else None


def _unadopted(ledger: Path | None, legacy: Path) -> Path | None:
    """The per-user ledger of earlier versions, if it holds records the shop has not taken
    over: the shop's own ledger does not exist yet and the old one does."""
    if ledger is None or ledger.exists() or not legacy.is_file():
        return None
    return None if legacy.resolve() == ledger.resolve() else legacy


def require_ledger(settings: Settings) -> Path:
    """The shop's ledger file, or the error that says how to get one: ``bcartnb init`` when
    no shop was found, adopting the per-user ledger of earlier versions when one is there.

    Every stage that opens the ledger comes through here, so no ledger is ever created
    silently outside the shop (a second ledger would allow a second monthly cap and forget
    who unsubscribed).
    """
    if settings.db is None:
        raise _no_shop_error()
    legacy = settings.legacy_ledger
    if legacy is not None and legacy.is_file() and not settings.db.exists():
        raise SettingsError(
            f"the shop's ledger {settings.db} does not exist yet, but an earlier per-user "
            f"ledger {legacy} does: adopt it (bcartnb init --adopt-ledger), keep using it "
            f'(ledger = "{legacy}"), or start a new one (ledger = "{DEFAULT_LEDGER}")',
            ja=f"以前の配信記録 {legacy} があります（今月の送信数・配信履歴・配信停止リスト）。"
            "お店のフォルダーで bcartnb init --adopt-ledger を実行して取り込むか、"
            f'bcartnb.toml に ledger = "{legacy}" と書いてそのまま使うか、'
            f'新しく始めるなら ledger = "{DEFAULT_LEDGER}" と書いてください。',
        )
    return settings.db


def _no_shop_error() -> SettingsError:
    here = Path.cwd()
    legacy = legacy_ledger_path()
    hint, hint_ja = "", ""
    if legacy.is_file():
        hint = f"; an earlier per-user ledger is at {legacy}: bcartnb init --adopt-ledger takes it"
        hint_ja = (
            f"以前の配信記録 {legacy} は、作ったフォルダーで bcartnb init --adopt-ledger を"
            "実行すると取り込めます。"
        )
    return SettingsError(
        f"no shop folder: no {SHOP_FILE} in {here} or any folder above it, BCARTNB_CONFIG "
        f"and BCARTNB_DB unset; run `bcartnb init FOLDER` and work inside it{hint}",
        ja=f"お店のフォルダーが見つかりません（{here} とその上のフォルダーに {SHOP_FILE} がなく、"
        "BCARTNB_CONFIG・BCARTNB_DB も未設定です）。bcartnb init でお店のフォルダーを作り、"
        f"その中で実行してください。{hint_ja}",
    )


def load_settings(
    path: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
) -> Settings:
    """Read and check the shop's settings once; every later stage takes the result."""
    envd = dict(os.environ if env is None else env)
    if env is None:
        _read_dotenv(envd, path)
    cfg_path = _config_path(envd, path)
    data: dict[str, Any] = read_toml(cfg_path, "settings file") if cfg_path else {}
    return _settings_from(data, cfg_path, envd, dotenv=env is None)


def settings_from_text(text: str, path: Path) -> Settings:
    """The settings ``text`` would give as the file ``path``, with no environment: how
    ``bcartnb init`` checks what it writes by the very rules that will read it."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise SettingsError(
            f"{path}: not valid TOML: {err}",
            ja=f"設定ファイル（{path}）の書き方が TOML として正しくありません。",
        ) from err
    return _settings_from(data, path, {}, dotenv=False)


def _settings_from(
    data: dict[str, Any], cfg_path: Path | None, envd: Mapping[str, str], *, dotenv: bool
) -> Settings:
    where = str(cfg_path) if cfg_path else "settings"
    check_keys(data, _TOP_KEYS, where)
    base = cfg_path.parent if cfg_path else Path.cwd()

    def rel(value: str) -> Path:
        p = Path(value).expanduser()
        return p if p.is_absolute() else base / p

    kw: dict[str, Any] = {"source": cfg_path}
    for key in (
        "plan",
        "admin",
        "signature",
        "signature_html",
        "unsubscribe_url",
        "unsubscribe_mailto",
        "from_name",
    ):
        if key in data:
            kw[key] = check_type(data, key, str, where)
    if "from" in data:
        name, addr = parse_mailbox(check_type(data, "from", str, where), f"{where}: from")
        kw["from_addr"] = addr
        if name and "from_name" not in data:
            kw["from_name"] = name
    if "admin" in kw:
        kw["admin"] = parse_mailbox(kw["admin"], f"{where}: admin")[1]
    kw["db"] = _ledger(data, where, rel, base if cfg_path else None)
    kw["templates"] = (
        rel(check_type(data, "templates", str, where))
        if "templates" in data
        else (base / "templates")
    )
    # saved filters (セグメント) live beside the settings, not in the ledger: a shop edits them
    kw["segments"] = (
        rel(check_type(data, "segments", str, where))
        if "segments" in data
        else (base / "segments.toml")
    )
    if "render_timeout" in data:  # ranges checked by Settings itself, like every number
        kw["render_timeout"] = float(check_type(data, "render_timeout", (int, float), where))
    if "max_mail_bytes" in data:
        kw["max_mail_bytes"] = check_type(data, "max_mail_bytes", int, where)

    smtp_data = _table(data, "smtp", _SMTP_KEYS, where)
    smtp_kw: dict[str, Any] = {}
    if "host" in smtp_data:
        smtp_kw["host"] = check_type(smtp_data, "host", str, f"{where} [smtp]")
    if "port" in smtp_data:
        smtp_kw["port"] = _port(str(check_type(smtp_data, "port", int, f"{where} [smtp]")), where)
    if "security" in smtp_data:
        smtp_kw["security"] = check_type(smtp_data, "security", str, f"{where} [smtp]")
    if "user" in smtp_data:
        smtp_kw["user"] = check_type(smtp_data, "user", str, f"{where} [smtp]") or None
    if "allow_plaintext_auth" in smtp_data:
        smtp_kw["allow_plaintext_auth"] = check_type(
            smtp_data, "allow_plaintext_auth", bool, f"{where} [smtp]"
        )
    if "timeout" in smtp_data:
        smtp_kw["timeout"] = float(
            check_type(smtp_data, "timeout", (int, float), f"{where} [smtp]")
        )

    delivery_data = _table(data, "delivery", _DELIVERY_KEYS, where)
    dkw: dict[str, Any] = {}
    for key in ("connections", "rate_per_hour", "retries"):
        if key in delivery_data:
            dkw[key] = check_type(delivery_data, key, int, f"{where} [delivery]")
    for key in ("rate_per_second", "backoff"):
        if key in delivery_data:
            dkw[key] = float(check_type(delivery_data, key, (int, float), f"{where} [delivery]"))

    bcart_data = _table(data, "bcart", _BCART_KEYS, where)
    bkw: dict[str, Any] = {}
    if "api_url" in bcart_data:
        bkw["api_url"] = check_type(bcart_data, "api_url", str, f"{where} [bcart]")
    if envd.get("BCARTNB_BCART_TOKEN"):
        bkw["token"] = envd["BCARTNB_BCART_TOKEN"].strip()
    hygiene_kw = _hygiene(data, where)

    # The environment wins over the file.
    if envd.get("BCARTNB_PLAN"):
        kw["plan"] = envd["BCARTNB_PLAN"]
    if envd.get("BCARTNB_DB"):
        kw["db"] = Path(envd["BCARTNB_DB"]).expanduser()
    elif cfg_path is not None and not ({"ledger", "db"} & set(data)):
        kw["legacy_ledger"] = _unadopted(kw["db"], legacy_ledger_path(envd))
        kw["ledger_by_default"] = True
    if envd.get("BCARTNB_SMTP_HOST"):
        smtp_kw["host"] = envd["BCARTNB_SMTP_HOST"]
    if envd.get("BCARTNB_SMTP_PORT"):
        smtp_kw["port"] = _port(envd["BCARTNB_SMTP_PORT"], "BCARTNB_SMTP_PORT")
    if envd.get("BCARTNB_SMTP_SECURITY"):
        smtp_kw["security"] = envd["BCARTNB_SMTP_SECURITY"]
    if "BCARTNB_SMTP_USER" in envd:
        smtp_kw["user"] = envd["BCARTNB_SMTP_USER"] or None
    if envd.get("BCARTNB_SMTP_PASSWORD"):
        smtp_kw["password"] = envd["BCARTNB_SMTP_PASSWORD"]
    if envd.get(UNSUBSCRIBE_SECRET_ENV):
        kw["unsubscribe_secret"] = envd[UNSUBSCRIBE_SECRET_ENV]

    if kw.get("plan"):
        _check_plan(kw["plan"], where, envd, dotenv=dotenv)

    # the modes themselves are checked once, by SmtpSettings (with the file named below)
    security = smtp_kw.get("security", "none").lower()
    smtp_kw["security"] = security
    if "port" not in smtp_kw and security in ("starttls", "ssl") and smtp_kw.get("host"):
        smtp_kw["port"] = 465 if security == "ssl" else 587

    try:
        return Settings(
            **kw,
            smtp=SmtpSettings(**smtp_kw),
            delivery=DeliverySettings(**dkw),
            bcart=BcartSettings(**bkw),
            hygiene=HygieneSettings(**hygiene_kw),
        )
    except SettingsError as err:
        raise SettingsError(f"{where}: {err}", ja=err.ja) from None


def require_plan(settings: Settings) -> Plan:
    """The shop's plan; none set is a setting to fix, not a default to guess (a guessed plan
    would guess the monthly cap), so every face refuses the same way, saying where settings
    are found."""
    if not settings.plan:
        raise missing_plan_error(settings)
    return resolve_plan(settings.plan)


def missing_plan_error(settings: Settings) -> SettingsError:
    """No plan in the settings: say which file was read (if any) and where settings are found;
    with no shop at all, that is the thing to fix first."""
    if settings.source is None and settings.db is None:
        return _no_shop_error()
    if settings.source is None:
        read, read_ja = (
            f"no settings file (BCARTNB_CONFIG unset, no {SHOP_FILE} here or above)",
            "設定ファイルなし",
        )
    else:
        read = f"settings file {settings.source}"
        read_ja = f"設定ファイル {settings.source}"
    return SettingsError(
        'no plan set: put plan = "プラン10" (or light, plan10 … own-smtp) in bcartnb.toml or set '
        f"BCARTNB_PLAN; read: {read}, in {Path.cwd()}",
        ja=f"プランが設定されていません（{read_ja}）。{SETTINGS_SOURCES_JA}"
        'bcartnb.toml に plan = "プラン10" のように書くか、BCARTNB_PLAN を設定してください。',
    )
