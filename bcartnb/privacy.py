"""Secrets kept out of every error and log line, in every form a server or library echoes them.

The project holds four secrets: the SMTP password, the IMAP password, the B-Cart access token
and the unsubscribe links' signing secret. None is ever put in a message on purpose, but a
message often quotes what a server or library answered, and a server may quote the request:
a 401 body with the ``Authorization`` header JSON-escaped, an access log line URL-encoded, an
upstream proxy's error lower-casing it, a ``Basic``/``Bearer`` header in base64, a debug dump
cut at 40 characters. Replacing only the exact string lets all of those through.

So :func:`scrub` matches each secret as a pattern rather than a string: each character in any
case and in any of the encodings a web stack writes (itself, ``%XX`` of its UTF-8 bytes in
either case, ``\\uXXXX``, a backslash escape, ``&#NN;``/``&#xHH;``, ``+`` for a space), the
whole secret or any prefix or suffix of at least :data:`MIN_FRAGMENT` characters (an echo cut
short), and its base64 at every byte alignment (alone, after ``Bearer ``, inside a longer
header), standard or URL-safe, whole or cut to :data:`MIN_BASE64` characters or more. What
matches becomes ``***``.

Addresses are the other thing no report, log or face shows whole: :func:`mask_address` and
:func:`mask_text` are that one rule, here at the bottom so the reports, hygiene, the API client
and the faces hide an address without importing the send stage. The shop's *own* addresses
(its From, admin and signature: ``keep``) are the exception a reviewer needs, since the
legally required contact line must be checked as written; a member's stay masked. A member's
personal values (:data:`PERSONAL_COLUMNS`) are masked in a mail shown as one member received
it (:func:`mask_values`).

Ground layer: the standard library only, so settings, the API client, the transports and the
mailbox readers can all call the one rule.
"""

from __future__ import annotations

import base64
import functools
import re
from collections.abc import Iterable
from typing import Final

__all__ = [
    "MASK",
    "MIN_BASE64",
    "MIN_FRAGMENT",
    "PERSONAL_COLUMNS",
    "find_addresses",
    "mask_address",
    "mask_text",
    "mask_values",
    "scrub",
]

#: What a secret (or a piece of one) is replaced with.
MASK: Final = "***"
#: A prefix or suffix of a secret this long is a leak too (an echo cut short); shorter
#: pieces are too common in ordinary text to remove without garbling every message.
MIN_FRAGMENT: Final = 8
#: The same for base64: 12 characters are 9 bytes of the secret.
MIN_BASE64: Final = 12
# HTML's named entities for what html.escape and template engines escape
_ENTITIES: Final = {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&apos;"}
# the characters of base64 (its two alphabets): what they may become in an echo
_BASE64_ESCAPES: Final = {
    "+": r"(?:\+|-|%2b|\\u002b)",
    "/": r"(?:\\{0,3}/|_|%2f|\\u002f)",
}
# JSON's and Python's short escapes of control characters (a password may hold a tab)
_SHORT_ESCAPES: Final = {"\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def mask_address(address: str) -> str:
    """``taro@example.co.jp`` → ``t***@example.co.jp``: reports and logs never show addresses."""
    local, at, domain = str(address).partition("@")
    if not at:
        return "***"
    return f"{local[:1]}***@{domain}"


_ADDRESS = re.compile(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+")

#: A member's columns that name or reach a person (担当者, addresses, phones, where they
#: live): masked wherever a report shows a mail as that member received it. 会社名 and
#: 都道府県 are the shop's business facts and stay, as in every table of the report.
PERSONAL_COLUMNS: Final = (
    "tanto_last_name",
    "tanto_first_name",
    "email",
    "email_cc",
    "tel",
    "mobile_phone",
    "zip",
    "address1",
    "address2",
    "address3",
)


def find_addresses(text: str) -> list[str]:
    """The addresses written in a text (a signature, a From line), in order."""
    return _ADDRESS.findall(text)


def mask_text(text: str, keep: Iterable[str] = ()) -> str:
    """Every address in a text masked (a server's reply, a sample mail, a warning), but
    those in ``keep`` (the shop's own, compared ignoring case), which stay as written."""
    kept = {k.strip().lower() for k in keep if k}
    return _ADDRESS.sub(
        lambda m: m.group(0) if m.group(0).lower() in kept else mask_address(m.group(0)), text
    )


def mask_values(text: str, values: Iterable[object]) -> str:
    """``text`` with each of a member's values (``山田`` → ``山***``) masked, in one pass and
    longest first, so a value inside another is masked once; blanks and non-text skipped."""
    found = {v.strip() for v in values if isinstance(v, str) and v.strip()}
    if not found:
        return text
    pattern = "|".join(re.escape(v) for v in sorted(found, key=len, reverse=True))
    return re.sub(pattern, lambda m: m.group(0)[:1] + MASK if len(m.group(0)) > 1 else MASK, text)


def scrub(text: str, secrets: Iterable[str | None]) -> str:
    """``text`` with every form of each secret replaced by :data:`MASK` (None and "" skipped)."""
    for secret in secrets:
        if secret:
            text = _pattern(secret).sub(MASK, text)
    return text


@functools.lru_cache(maxsize=256)
def _char(ch: str) -> str:
    """One character of a secret as a regex: itself in either case, or any of its escapes."""
    forms: set[str] = set()
    for c in {ch, ch.lower(), ch.upper()}:
        if len(c) != 1:  # "ß".upper() is "SS": the character itself still matches
            continue
        forms.add(re.escape(c))
        utf8 = c.encode("utf-8")
        forms.add("".join(f"%{b:02x}" for b in utf8))  # IGNORECASE: %2F and %2f alike
        for unit in _utf16(c):
            forms.add(rf"\\u{unit:04x}")
        forms.add(f"&#0*{ord(c)};")
        forms.add(f"&#x0*{ord(c):x};")
        if c == " ":
            forms.add(r"\+")
        if c in _SHORT_ESCAPES:
            forms.add(re.escape(_SHORT_ESCAPES[c]))
        if c in _ENTITIES:
            forms.add(_ENTITIES[c])
    alternatives = "|".join(sorted(forms, key=len, reverse=True))
    # a JSON, repr or shell escape puts backslashes before punctuation (\" \/ \\ \')
    escape = r"(?:\\{1,3})?" if not ch.isalnum() else ""
    return f"{escape}(?:{alternatives})"


def _utf16(ch: str) -> list[int]:
    data = ch.encode("utf-16-be")
    return [int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2)]


def _base64_chars(core: str) -> list[str]:
    """A base64 core as regexes: letters and digits as they are (in either case: a case-
    folded echo is no less a leak), ``+`` and ``/`` in either alphabet or escaped."""
    return [_BASE64_ESCAPES.get(c) or re.escape(c) for c in core]


def _base64_form(core: str) -> str:
    """The core whole, or cut short from either end but still :data:`MIN_BASE64` long."""
    chars = _base64_chars(core)
    if len(chars) <= MIN_BASE64:
        return "".join(chars)
    return f"{_prefixes(chars, MIN_BASE64)}|{_suffixes(chars, MIN_BASE64)}"


def _prefixes(chars: list[str], least: int) -> str:
    """The first ``least`` characters, then optionally each next one: any prefix that long."""
    tail = ""
    for part in reversed(chars[least:]):
        tail = f"(?:{part}{tail})?"
    return "".join(chars[:least]) + tail


def _suffixes(chars: list[str], least: int) -> str:
    """Optionally each earlier character, then the last ``least``: any suffix that long."""
    head = ""
    for part in chars[: len(chars) - least]:
        head = f"(?:{head}{part})?"
    return head + "".join(chars[len(chars) - least :])


def _base64_cores(secret: str) -> list[str]:
    """The base64 characters that encode only the secret's bytes, at each byte alignment.

    Base64 packs 3 bytes into 4 characters, so what the secret looks like depends on how
    many bytes came before it (``Bearer `` is 7): the characters whose 6 bits lie wholly
    within the secret are the same wherever it sits in the encoded text.
    """
    data = secret.encode("utf-8")
    cores: list[str] = []
    for lead in range(3):
        encoded = base64.b64encode(b"\0" * lead + data).decode("ascii")
        first = -(-8 * lead // 6)  # the first character with no bit of the lead bytes
        last = 8 * (lead + len(data)) // 6  # one past the last character wholly inside
        core = encoded[first:last]
        if len(core) >= MIN_BASE64:
            cores.append(core)
    return cores


@functools.lru_cache(maxsize=16)
def _pattern(secret: str) -> re.Pattern[str]:
    chars = [_char(c) for c in secret]
    forms = [_base64_form(core) for core in dict.fromkeys(_base64_cores(secret))]
    if len(secret) > MIN_FRAGMENT:
        forms += [_prefixes(chars, MIN_FRAGMENT), _suffixes(chars, MIN_FRAGMENT)]
    else:
        forms.append("".join(chars))
    # base64 first: its core is longer than the secret's own pieces it may contain
    return re.compile("|".join(forms), re.IGNORECASE)
