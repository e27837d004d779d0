"""A text part as it goes on the wire: canonical CRLF line ends, then base64 or 7bit.

``Composer.compose`` writes the bytes itself (that is what makes 10,000 members take seconds),
so the rules of the wire format live here once: ``raw`` is CRLF throughout with no
dot-stuffing (smtplib does that); a text part is encoded in canonical form (CRLF inside base64,
RFC 2045); UTF-8 always goes as base64, ISO-2022-JP as 7bit unless a NUL or a line over 998
octets needs base64 (7bit allows neither, RFC 2045).
"""

from __future__ import annotations

import binascii
from collections.abc import Mapping
from typing import Any

from bcartnb.compose.checks import encoding_error
from bcartnb.compose.headers import CHARSET, encode

__all__ = ["text_part"]


def text_part(
    text: str,
    subtype: str,
    enc: str,
    member_id: Any,
    ctx: Mapping[str, Any],
    with_type: bool = True,
) -> bytes:
    """One text/plain or text/html part (with its headers unless ``with_type`` is off: the
    mail's own Content-Type then says it); a character ``enc`` cannot carry names the member."""
    ctype = f'Content-Type: text/{subtype}; charset="{CHARSET[enc]}"\r\n' if with_type else ""
    if "\r" in text:  # never from the renderers; a lone CR on the wire is SMTP smuggling
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    wire = text.replace("\n", "\r\n")
    try:
        data = encode(wire, enc)
    except UnicodeEncodeError as err:
        part = "body" if subtype == "plain" else "HTML body"
        raise encoding_error(err, member_id, part, ctx, CHARSET[enc]) from err
    if enc == "utf-8" or b"\x00" in data or max(map(len, data.split(b"\r\n"))) > 998:
        return (ctype + "Content-Transfer-Encoding: base64\r\n\r\n").encode() + _b64_body(data)
    return (ctype + "Content-Transfer-Encoding: 7bit\r\n\r\n").encode() + data


def _b64_body(data: bytes) -> bytes:
    """Base64 in lines of 76 characters, each ending in CRLF (RFC 2045)."""
    if not data:
        return b""
    enc = binascii.b2a_base64(data, newline=False)
    return b"\r\n".join([enc[i : i + 76] for i in range(0, len(enc), 76)]) + b"\r\n"
