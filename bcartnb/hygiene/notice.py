"""One mail of the bounce mailbox, parsed once, each view of it taken once.

Reading a notice asks the same things of it again and again: which parts it has and of
which type, its own text, the original mail it attaches, its From and Subject. Each answer
is worked out the first time it is asked and kept for the rest of that mail's reading
(:mod:`bcartnb.hygiene.bounces`): the attached headers of a DSN are parsed once, not once
per question, and the text once, not three times. What each answer is stays the rule it was;
only how often it is computed changed (``tests/test_hygiene_read_once.py`` holds the reading
to the one before it, finding for finding).

Nothing here trusts the mail: a header is flattened to one line of printable characters,
a charset Python does not know is read as UTF-8 with replacement.
"""

from __future__ import annotations

from email.errors import HeaderParseError
from email.header import Header, decode_header
from email.message import Message
from email.parser import BytesHeaderParser
from email.policy import compat32
from functools import cached_property

__all__ = ["MAX_TEXT", "Notice", "all_values", "flat", "header"]

MAX_TEXT = 200_000  # characters of a notice's text searched for addresses and codes
_HEADERS_ONLY = BytesHeaderParser(policy=compat32)


class Notice:
    """A parsed mail and what has been read of it so far."""

    def __init__(self, msg: Message) -> None:
        self.msg = msg
        self._headers: dict[str, str] = {}
        self._decoded: dict[str, str] = {}

    @cached_property
    def parts(self) -> list[tuple[Message, str]]:
        """Every part with its content type, the mail itself first, in order; nothing from
        inside an attached original message (it is not the notice)."""
        out: list[tuple[Message, str]] = []
        _collect(self.msg, out)
        return out

    @property
    def content_type(self) -> str:
        return self.parts[0][1]

    def header(self, name: str) -> str:
        """The header as one line of printable text ("" when missing)."""
        value = self._headers.get(name)
        if value is None:
            value = self._headers[name] = header(self.msg, name)
        return value

    def decoded(self, name: str) -> str:
        """A header as text: encoded words (=?ISO-2022-JP?B?…?=) and raw UTF-8 decoded."""
        value = self._decoded.get(name)
        if value is None:
            value = self._decoded[name] = _decode(self.msg, name)
        return value

    @cached_property
    def text(self) -> str:
        """The notice's own text parts, decoded (ISO-2022-JP included), cut at :data:`MAX_TEXT`."""
        chunks: list[str] = []
        size = 0
        for part, ctype in self.parts:
            if part.is_multipart() or ctype.split("/")[0] != "text":
                continue
            if ctype == "text/rfc822-headers":
                continue
            data = part.get_payload(decode=True)
            if not isinstance(data, bytes):
                continue
            charset = part.get_content_charset() or "us-ascii"
            try:
                text = data.decode(charset, "replace")
            except LookupError:
                text = data.decode("utf-8", "replace")
            chunks.append(text)
            size += len(text)
            if size > MAX_TEXT:
                break
        return "\n".join(chunks)[:MAX_TEXT]

    @cached_property
    def original(self) -> Message | None:
        """The attached original mail (message/rfc822) or its headers (text/rfc822-headers)."""
        # the parts in msg.walk()'s order, as far as it gets: it stops at the first of these
        for part, ctype in self.parts if self.msg.is_multipart() else []:
            if ctype == "message/rfc822":
                payload = part.get_payload()
                if isinstance(payload, list) and payload and isinstance(payload[0], Message):
                    return payload[0]
            elif ctype == "text/rfc822-headers":
                data = part.get_payload(decode=True)
                if isinstance(data, bytes):
                    # only its headers are read: parsing its body too would change none
                    return _HEADERS_ONLY.parsebytes(data)
        return None


def _collect(msg: Message, out: list[tuple[Message, str]]) -> None:
    ctype = msg.get_content_type()
    out.append((msg, ctype))
    if msg.is_multipart() and ctype != "message/rfc822":
        payload = msg.get_payload()
        if isinstance(payload, list):
            for part in payload:
                if isinstance(part, Message):
                    _collect(part, out)


def flat(value: object) -> str:
    """``value`` as one line: every character that is not printable a space, runs of white
    space one space."""
    text = str(value)
    if not text.isprintable():
        text = "".join(c if c.isprintable() else " " for c in text)
    return " ".join(text.split())


def header(msg: Message, name: str) -> str:
    """``msg``'s header as one line of printable text ("" when missing)."""
    value = msg.get(name)
    return "" if value is None else flat(value)


def all_values(msg: Message, names: tuple[str, ...]) -> list[str]:
    """Every value of these headers, each flattened, in the order of ``names``."""
    out: list[str] = []
    for name in names:
        out += [flat(v) for v in msg.get_all(name) or []]
    return out


def _decode(msg: Message, name: str) -> str:
    value = msg.get(name)
    if value is None:
        return ""
    try:
        parts = decode_header(value if isinstance(value, Header) else str(value))
    except (HeaderParseError, ValueError, LookupError):
        return header(msg, name)
    out = []
    for chunk, charset in parts:
        if isinstance(chunk, bytes):
            try:
                chunk = chunk.decode(charset or "utf-8", "replace")
            except LookupError:  # unknown-8bit and the like
                chunk = chunk.decode("utf-8", "replace")
        out.append(chunk)
    return flat("".join(out))
