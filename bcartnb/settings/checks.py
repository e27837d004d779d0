"""One wording for every value a shop can write wrong in its settings or campaign TOML.

A number out of its range, a key nobody reads, a value of the wrong type, a URL or a mail
address with a line break in it: each is refused here with the same one line, Japanese
first, whichever file or section it was written in, so the settings sections, the loader
and the campaign file (:mod:`bcartnb.campaign.spec`) cannot word the same mistake twice.
"""

from __future__ import annotations

import email.errors
import ipaddress
import math
import re
from collections.abc import Callable, Iterable, Mapping
from email.headerregistry import Address, AddressHeader, HeaderRegistry
from email.utils import parseaddr
from typing import Any, cast
from urllib.parse import quote, unquote, urlsplit

from bcartnb.exceptions import InputError, SettingsError

__all__ = [
    "CONTROL",
    "check_keys",
    "check_type",
    "check_url",
    "control_in_url",
    "in_range",
    "is_local",
    "parse_mailbox",
    "port_number",
    "read_section",
]

_HEADERS = HeaderRegistry()


def is_local(host: str) -> bool:
    """This machine: a plain connection to it never leaves it."""
    if host.lower() in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def in_range(
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


# C0 controls (NUL, CR, LF, tab …), DEL, C1 controls and the Unicode line separators: none
# belongs in a mail header, and Python's address parsers stop or split at some of them.
CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
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


def _mailbox_ja(key: str, value: str) -> str:
    return (
        f"{key} にはメールアドレスを1つだけ書いてください"
        f"（例: 見本商事 <shop@example.co.jp>。{value!r} ではなく）。"
    )


def parse_mailbox(value: str, key: str) -> tuple[str, str]:
    """Split ``'Shop 名 <a@b.jp>'`` into (display name, address): exactly one mailbox.

    ``parseaddr`` alone quietly keeps the first of ``"Shop <a@x>, evil@x.jp"`` and reads up
    to a NUL; the header parser of :mod:`email.headerregistry` sees the whole value, so a
    second address, a group, trailing junk or a control character is refused instead.
    """
    label = key.rpartition(": ")[2] or key
    bad = CONTROL.search(value)
    if bad:
        what = "a line break" if bad.group() in "\r\n\u2028\u2029" else "a control character"
        raise SettingsError(
            f"settings: {key} contains {what} ({bad.group()!r}): {value!r}",
            ja=f"{label} に改行や制御文字（{bad.group()!r}）が含まれています: {value!r}。"
            "メールアドレスを1つだけ書いてください。",
        )
    name, addr = parseaddr(value)
    if not addr or "@" not in addr:
        raise SettingsError(
            f"settings: {key} is not a mail address: {value!r}", ja=_mailbox_ja(label, value)
        )
    try:
        parsed = _HEADERS("From", value)
        Address(addr_spec=addr)
    except (ValueError, IndexError, email.errors.HeaderParseError) as err:
        raise SettingsError(
            f"settings: {key} is not a mail address: {value!r}", ja=_mailbox_ja(label, value)
        ) from err
    header = cast(AddressHeader, parsed)
    found = [a.addr_spec for a in header.addresses]
    invalid = [d for d in parsed.defects if isinstance(d, email.errors.InvalidHeaderDefect)]
    grouped = any(g.display_name is not None for g in header.groups)
    if found != [addr] or invalid or grouped:
        raise SettingsError(
            f"settings: {key} must be exactly one mail address, not {value!r}",
            ja=_mailbox_ja(label, value),
        )
    return name, addr


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
    if (isinstance(value, bool) and kind is not bool) or not isinstance(value, kind):
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


def port_number(value: str, where: str) -> int:
    """A TCP port from the file or the environment (``BCARTNB_SMTP_PORT``), as an int."""
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


def read_section(
    data: Mapping[str, Any],
    name: str,
    kinds: Mapping[str, type],
    where: str,
    convert: Mapping[str, Callable[[Any], Any]] | None = None,
) -> dict[str, Any]:
    """The ``[name]`` table of the settings file (empty when absent): only the keys of
    ``kinds``, each of its kind (``float`` takes an integer too), then ``convert``ed; checked
    in the order of ``kinds``, so the first mistake in the file is the one named."""
    table = data.get(name, {})
    if not isinstance(table, dict):
        raise SettingsError(
            f"{where}: [{name}] must be a table", ja=f"{where} の [{name}] は表で書いてください。"
        )
    here = f"{where} [{name}]"
    check_keys(table, kinds, here)
    out: dict[str, Any] = {}
    for key, kind in kinds.items():
        if key in table:
            value = check_type(table, key, (int, float) if kind is float else kind, here)
            value = float(value) if kind is float else value
            out[key] = convert[key](value) if convert and key in convert else value
    return out
