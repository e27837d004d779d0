"""The mail's header lines: RFC 2047 words, the From line, List-Unsubscribe, the Message-ID token.

Subjects and Japanese display names are written as our own RFC 2047 encoded-words, split on
character boundaries, one per folded line. Spaces live *inside* the encoded-words, so they
survive unfolding; the standard library's folder can drop a space when it wraps a Japanese
subject (CPython gh-144156), which is why we do not use it. A value that cannot be encoded is a
``UnicodeEncodeError`` here; :mod:`bcartnb.compose.checks` words it for the member.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping, Sequence
from email import utils as email_utils
from typing import Any
from urllib.parse import quote

from bcartnb.compose.checks import check_header_value, check_member_header, who
from bcartnb.exceptions import ComposeError
from bcartnb.mailtokens.verp import message_token
from bcartnb.templates import CompiledTemplate

__all__ = [
    "CHARSET",
    "CRLF",
    "ENCODINGS",
    "encode",
    "encode_header_words",
    "fold_words",
    "from_header",
    "message_id_affixes",
    "plain_ascii_header",
    "unsubscribe_lines",
    "unsubscribe_uri",
]

ENCODINGS = ("utf-8", "iso-2022-jp")
CHARSET = {"utf-8": "UTF-8", "iso-2022-jp": "ISO-2022-JP"}
CRLF = "\r\n"
# ISO-2022-JP's own escape and shift characters: Python's codec writes them through, and a
# reader then switches character sets in the middle of a member's name.
_ISO_2022_SHIFTS_RE = re.compile("[\x0e\x0f\x1b]")


def encode_header_words(text: str, encoding: str, first_line_room: int = 67) -> list[str]:
    """RFC 2047 B encoded-words for ``text``, split on character boundaries.

    The first word fits in ``first_line_room`` characters (76 minus the header name), the
    others in 75; each becomes one folded line. Decoders join adjacent encoded-words without
    the folding white space, so every space of the text survives. Raises UnicodeEncodeError.
    """
    label = CHARSET[encoding]
    prefix = f"=?{label}?B?"
    overhead = len(prefix) + 2
    whole = encode(text, encoding)
    if len(whole) <= (first_line_room - overhead) // 4 * 3:
        return [prefix + base64.b64encode(whole).decode("ascii") + "?="]
    if encoding == "utf-8":
        return _utf8_words(whole, prefix, first_line_room, overhead)
    words: list[str] = []
    room = first_line_room
    start, n = 0, len(text)
    while start < n:
        max_bytes = (room - overhead) // 4 * 3
        end = start
        chunk = b""
        # Grow one character at a time; ISO-2022-JP sizes are not additive (escapes).
        while end < n:
            candidate = text[start : end + 1].encode(encoding)
            if len(candidate) > max_bytes and end > start:
                break
            chunk, end = candidate, end + 1
        words.append(prefix + base64.b64encode(chunk).decode("ascii") + "?=")
        start, room = end, 75
    return words


def encode(text: str, encoding: str) -> bytes:
    """``text.encode(encoding)``, and an ESC, SO or SI in ISO-2022-JP is unencodable too."""
    if encoding == "iso-2022-jp" and ("\x1b" in text or "\x0e" in text or "\x0f" in text):
        at = _ISO_2022_SHIFTS_RE.search(text).start()  # type: ignore[union-attr]
        raise UnicodeEncodeError(encoding, text, at, at + 1, "a shift or escape character")
    return text.encode(encoding)


def _utf8_words(whole: bytes, prefix: str, room: int, overhead: int) -> list[str]:
    """:func:`encode_header_words` for UTF-8, where a character's bytes never depend on its
    neighbours: cut the encoded bytes at the last character start that fits."""
    words: list[str] = []
    start, n = 0, len(whole)
    while start < n:
        end = start + (room - overhead) // 4 * 3
        if end >= n:
            end = n
        else:
            while whole[end] & 0xC0 == 0x80:  # a continuation byte: back to the start
                end -= 1
        words.append(prefix + base64.b64encode(whole[start:end]).decode("ascii") + "?=")
        start, room = end, 75
    return words


def plain_ascii_header(value: str, room: int) -> bool:
    """True when ``value`` can be written as is: short printable ASCII that unfolds to itself."""
    return (
        len(value) <= room
        and value.isascii()
        and value.isprintable()
        and value == value.strip()
        and "  " not in value
        and "=?" not in value
    )


def fold_words(words: list[str]) -> str:
    return (CRLF + " ").join(words)


def message_id_affixes(campaign_id: str, from_addr: str) -> tuple[str, str]:
    """What comes before and after the member's token in the campaign's Message-IDs:
    ``<bcartnb.{campaign}.`` and ``@{the sender's domain}>`` (IDNA; a placeholder when the
    domain has none)."""
    domain = from_addr.rpartition("@")[2]
    try:
        domain = domain.encode("idna").decode("ascii")
    except UnicodeError:
        domain = "bcartnb.invalid"
    return f"<bcartnb.{message_token(campaign_id)}.", f"@{domain}>"


def from_header(name: str, addr: str, encoding: str) -> str:
    """The From header's value: the settings' sender name (encoded when it is not plain
    ASCII) and address; a name the charset cannot carry is the settings' error."""
    check_header_value(name, "settings from_name")
    check_header_value(addr, "settings from")
    if not name:
        return addr
    if name.isascii() and name.isprintable():
        return email_utils.formataddr((name, addr))
    try:
        words = encode_header_words(name, encoding, 76 - len("From: "))
    except UnicodeEncodeError as err:
        ch = err.object[err.start]
        raise ComposeError(
            f"settings from_name has {ch!r} (U+{ord(ch):04X}), which "
            f"{CHARSET[encoding]} cannot encode; use UTF-8 or replace it",
            ja=f"設定の差出人名の文字 {ch!r} は {CHARSET[encoding]} で送れません。"
            "UTF-8 にするか、その文字を置き換えてください。",
        ) from err
    return fold_words(words) + f" <{addr}>"


def unsubscribe_uri(value: str) -> str:
    """A rendered unsubscribe URL or mailto as the header and the visible link both carry it:
    trimmed, anything outside a URI's characters percent-encoded."""
    return quote(value.strip(), safe=":/?#[]@!$&'()*+,;=%-._~")


def unsubscribe_lines(
    templates: Sequence[CompiledTemplate], one_click: bool, member_id: Any, ctx: Mapping[str, Any]
) -> list[str]:
    """The List-Unsubscribe (and -Post) lines; ``member_id`` None renders them once for the
    campaign, when no template uses a member's value."""
    if not templates:
        return []
    uris = []
    for t in templates:
        value = t.render(ctx, member_id)
        if member_id is None:
            check_header_value(value, f"{t.name} (List-Unsubscribe)")
        else:
            check_member_header(
                value, member_id, ctx, f"{t.name} (List-Unsubscribe)", "配信停止ヘッダー"
            )
        uri = unsubscribe_uri(value)
        if len(uri) > 900:
            raise ComposeError(
                f"{who(member_id, t.name)} is longer than 900 characters",
                ja=f"会員 {member_id} の配信停止用 URL が長すぎます（900文字まで）。",
            )
        uris.append(f"<{uri}>")
    lines = ["List-Unsubscribe: " + ("," + CRLF + " ").join(uris)]
    if one_click:
        lines.append("List-Unsubscribe-Post: List-Unsubscribe=One-Click")
    return lines
