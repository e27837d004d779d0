"""The reading of one bounce mail exactly as it was before it parsed each mail once (kept
verbatim from bcartnb/hygiene/bounces.py at 1f7cf57, only its imports changed): the reference
tests/test_hygiene_read_once.py holds the one-parse reading to, finding for finding, hash for
hash. Not a second truth: nothing in the package imports it, and it is never to be edited
except to follow a name that moved.
"""

# ruff: noqa
# mypy: ignore-errors

from __future__ import annotations

import email
import hashlib
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.errors import HeaderParseError
from email.header import Header, decode_header
from email.message import Message
from email.policy import compat32
from email.utils import getaddresses, parseaddr, parsedate_to_datetime

from flufl.bounce import all_failures

from bcartnb.hygiene import bounces as _package

MailRef = getattr(_package, "MailRef")
is_ours = getattr(_package, "is_ours")
parse_message_id = getattr(_package, "parse_message_id")
parse_verp = getattr(_package, "parse_verp")
Finding = _package.Finding
Parsed = _package.Parsed

__all__ = [
    "MAX_MESSAGE_BYTES",
    "Finding",
    "Parsed",
    "clean_address",
    "parse_message",
    "unsubscribe_pattern",
]

#: Bounces and reports are small; past this a mail is read only this far (the original
#: message's tail, if any, is what gets cut).
MAX_MESSAGE_BYTES = 4_000_000
_MAX_TEXT = 200_000  # characters of a notice's text searched for addresses and codes
_ADDRESS_RE = re.compile(
    r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9.-]{0,252})"
)
_ENHANCED_RE = re.compile(r"(?<![\d.])([245])\.(\d{1,3})\.(\d{1,3})(?![\d.])")
_BASIC_RE = re.compile(r"(?<!\d)([45])\d\d(?=[ -])")
_DAEMON_RE = re.compile(r"mailer-daemon|postmaster|mail delivery|mdaemon", re.IGNORECASE)
_BOUNCE_SUBJECT_RE = re.compile(
    r"returned mail|undeliver|undelivered|delivery (?:status|failure|failed)|mail system error"
    r"|failure notice|could not be delivered|配信不能|不達|エラー|送信できません|届きませんでした",
    re.IGNORECASE,
)
# What a carrier's or provider's notice says about one recipient (English and Japanese).
_HARD_PHRASES = re.compile(
    r"user unknown|unknown user|no such user|mailbox unavailable|does not exist|account is disabled"
    r"|recipient address rejected|could not be delivered to|address rejected|invalid recipient"
    r"|宛先不明|存在しません|見つかりません|存在しない|宛先.{0,10}誤り|受信拒否|受け付けられません",
    re.IGNORECASE,
)
_SOFT_PHRASES = re.compile(
    r"over quota|mailbox (?:is )?full|temporarily|try again|容量|いっぱい|一時的",
    re.IGNORECASE,
)
_COMPLAINT_TYPES = {"abuse", "fraud", "virus", "other", ""}


def unsubscribe_pattern(mailto: str | None) -> re.Pattern[str] | None:
    """The addresses mail to the List-Unsubscribe ``mailto:`` goes to, as one pattern.

    The setting may be a template (``unsubscribe+{{ id }}@shop.example.jp``): each ``{{ … }}``
    matches any run of address characters. The query (``?subject=…``) is not part of it.
    """
    if not mailto:
        return None
    value = mailto.strip()
    if value.lower().startswith("mailto:"):
        value = value[7:]
    value = value.split("?", 1)[0].strip().lower()
    pieces = re.split(r"\{\{.*?\}\}", value)
    return re.compile("[^@\\s]+?".join(re.escape(p) for p in pieces))


def clean_address(value: str | bytes | None) -> str | None:
    """``value`` as one plain mail address, or None when it is anything else."""
    if value is None:
        return None
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    text = value.strip().strip("<>").strip()
    if text.lower().startswith("rfc822;"):
        text = text[7:].strip().strip("<>")
    if (
        not text
        or len(text) > 254
        or text.count("@") != 1
        or any(not ch.isprintable() or ch.isspace() or ch in '<>,;"()[]\\' for ch in text)
    ):
        return None
    local, _, domain = text.partition("@")
    if not local or "." not in domain or domain.startswith(".") or domain.endswith("."):
        return None
    return text.lower()


def parse_message(
    raw: bytes,
    *,
    unsubscribe_to: re.Pattern[str] | None = None,
    now: datetime,
) -> Parsed:
    """Read one mail; never raises for what the mail holds."""
    raw = raw[:MAX_MESSAGE_BYTES]
    try:
        msg = email.message_from_bytes(raw, policy=compat32)
    except Exception:  # the parser is lenient; anything it still trips on is not a bounce
        return Parsed(_digest(raw.decode("latin-1")), now, ())
    at = _date(msg, now)
    try:
        findings, named = _classify(msg, unsubscribe_to)
        refs, foreign = _refs(msg, raw)
        content = _content(msg)
        unsubscribing = any(f.kind == "unsubscribed" for f in findings)
        tokens = _token_candidates(msg) if unsubscribing else ()
    except Exception:  # a broken structure deep inside: report nothing rather than crash
        return Parsed(_digest(raw.decode("latin-1")), at, ())
    return Parsed(content, at, tuple(findings), tuple(refs), frozenset(named), foreign, tokens)


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


_MBOX_QUOTE = re.compile(r"^>+(?=From )", re.MULTILINE)


def _content(msg: Message) -> str:
    """The notice's text, as no mail client or mbox changes it: ``>From`` unquoted, white
    space collapsed; plus its Subject and From (a mail client adds headers, never edits
    these)."""
    text = _MBOX_QUOTE.sub("", _notice_text(msg))
    head = f"{_decoded(msg, 'subject')}\0{_header(msg, 'from')}"
    return _digest(head + "\0" + " ".join(text.split()))


_TOKEN_CANDIDATE = re.compile(r"[A-Za-z0-9_-]{24,400}")
_MAX_TOKENS = 16


def _token_candidates(msg: Message) -> tuple[str, ...]:
    """Strings of an unsubscribe request that may be our signed token: in its Subject, its
    recipient's local part (``unsubscribe+TOKEN@…``) or the start of its text."""
    places = [_decoded(msg, "subject")]
    for _, address in getaddresses(_all(msg, ("to", "delivered-to", "x-original-to"))):
        places.append(address.partition("@")[0])
    places.append(_notice_text(msg)[:4000])
    out: list[str] = []
    for place in places:
        for m in _TOKEN_CANDIDATE.finditer(place):
            if m.group(0) not in out and len(out) < _MAX_TOKENS:
                out.append(m.group(0))
    return tuple(out)


def _header(msg: Message, name: str) -> str:
    value = msg.get(name)
    if value is None:
        return ""
    text = str(value)
    return " ".join("".join(c if c.isprintable() else " " for c in text).split())


def _decoded(msg: Message, name: str) -> str:
    """A header as text: encoded words (=?ISO-2022-JP?B?…?=) and raw UTF-8 decoded."""
    value = msg.get(name)
    if value is None:
        return ""
    try:
        parts = decode_header(value if isinstance(value, Header) else str(value))
    except (HeaderParseError, ValueError, LookupError):
        return _header(msg, name)
    out = []
    for chunk, charset in parts:
        if isinstance(chunk, bytes):
            try:
                chunk = chunk.decode(charset or "utf-8", "replace")
            except LookupError:  # unknown-8bit and the like
                chunk = chunk.decode("utf-8", "replace")
        out.append(chunk)
    return _flat("".join(out))


def _date(msg: Message, now: datetime) -> datetime:
    """When the report was written (its Date), unless that is missing or not plausible."""
    try:
        at = parsedate_to_datetime(_header(msg, "date"))
    except (TypeError, ValueError, IndexError, OverflowError):
        return now
    if at.tzinfo is None or not (now - timedelta(days=3650) <= at <= now + timedelta(days=1)):
        return now
    return at


def _classify(
    msg: Message, unsubscribe_to: re.Pattern[str] | None
) -> tuple[list[Finding], set[str]]:
    named: set[str] = set()
    complaint = _complaint(msg, named)
    if complaint is not None:
        return [complaint], named
    from_addr = clean_address(parseaddr(_header(msg, "from"))[1])
    daemon = _DAEMON_RE.search(_header(msg, "from")) is not None
    if unsubscribe_to is not None and not daemon and _auto_submitted(msg) is False:
        targets = [
            a for _, a in getaddresses(_all(msg, ("to", "cc", "delivered-to", "x-original-to")))
        ]
        if from_addr and any(unsubscribe_to.fullmatch(t.strip().lower()) for t in targets if t):
            named.add(from_addr)
            return [Finding("unsubscribed", from_addr, None, "mailto")], named
    statuses = _dsn_blocks(msg, named)
    try:
        temporary, permanent = all_failures(msg)
    except Exception:  # a detector tripping on an odd header (8-bit From); ours still read it
        temporary = permanent = frozenset()
    found: list[Finding] = []
    text = _notice_text(msg)
    for value, soft in [*((a, False) for a in permanent), *((a, True) for a in temporary)]:
        address = clean_address(value)
        if address is None or any(f.address == address for f in found):
            continue
        named.add(address)
        status = statuses.get(address) or _status_near(text, address)
        found.append(Finding(_kind(status, soft=soft), address, status, None))
    if not found:
        found = _carrier_notice(msg, text, named)
    if not found and (statuses or _is_report(msg, "delivery-status")):
        # a DSN whose recipient we cannot read: the scan may still place it (VERP)
        status = next(iter(statuses.values()), None) or _status_near(text, "")
        found = [Finding(_kind(status, soft=False), None, status, "no recipient")]
    return found, named


def _kind(status: str | None, *, soft: bool) -> str:
    if status and status.startswith("4"):
        return "soft_bounce"
    if status and status.startswith("5"):
        return "hard_bounce"
    return "soft_bounce" if soft else "hard_bounce"


def _auto_submitted(msg: Message) -> bool:
    """An auto-reply (vacation notice) to the unsubscribe address is no one's request."""
    value = _header(msg, "auto-submitted").lower()
    return bool(value) and value != "no"


def _all(msg: Message, names: tuple[str, ...]) -> list[str]:
    out: list[str] = []
    for name in names:
        out += [_flat(v) for v in msg.get_all(name) or []]
    return out


def _flat(value: object) -> str:
    return " ".join("".join(c if c.isprintable() else " " for c in str(value)).split())


def _is_report(msg: Message, report_type: str) -> bool:
    return (
        msg.get_content_type() == "multipart/report"
        and str(msg.get_param("report-type", "")).lower() == report_type
    )


def _parts(msg: Message) -> Iterator[Message]:
    """Every part, except what is inside an attached original message (it is not the notice)."""
    yield msg
    if msg.is_multipart() and msg.get_content_type() != "message/rfc822":
        payload = msg.get_payload()
        if isinstance(payload, list):
            for part in payload:
                if isinstance(part, Message):
                    yield from _parts(part)


def _dsn_blocks(msg: Message, named: set[str]) -> dict[str, str]:
    """Recipient → status code from every message/delivery-status part's recipient blocks."""
    out: dict[str, str] = {}
    for part in _parts(msg):
        if part.get_content_type() != "message/delivery-status" or not part.is_multipart():
            continue
        payload = part.get_payload()
        if not isinstance(payload, list):
            continue
        for block in payload:
            if not isinstance(block, Message):
                continue
            recipients = [
                clean_address(_flat(block.get(h, "")).partition(";")[2] or _flat(block.get(h, "")))
                for h in ("final-recipient", "original-recipient", "x-actual-recipient")
                if block.get(h)
            ]
            m = _ENHANCED_RE.search(_flat(block.get("status", "")))
            action = _flat(block.get("action", "")).lower()
            status = m.group(0) if m else ("4.0.0" if action.startswith("delayed") else None)
            for address in recipients:
                if address is not None:
                    named.add(address)
                    if status is not None:
                        out.setdefault(address, status)
            if not recipients and status is not None:
                out.setdefault("", status)
    return out


def _notice_text(msg: Message) -> str:
    """The notice's own text parts, decoded (ISO-2022-JP included), cut at :data:`_MAX_TEXT`."""
    chunks: list[str] = []
    size = 0
    for part in _parts(msg):
        if part.is_multipart() or part.get_content_maintype() != "text":
            continue
        if part.get_content_type() == "text/rfc822-headers":
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
        if size > _MAX_TEXT:
            break
    return "\n".join(chunks)[:_MAX_TEXT]


def _status_near(text: str, address: str) -> str | None:
    """The enhanced status code on the address's lines, else the notice's first one."""
    lines = text.splitlines()
    if address:
        for i, line in enumerate(lines):
            if address in line.lower():
                window = " ".join(lines[i : i + 4])
                m = _ENHANCED_RE.search(window)
                if m and m.group(1) != "2":
                    return m.group(0)
                b = _BASIC_RE.search(window)
                if b:
                    return f"{b.group(1)}.0.0"
    m = next((m for m in _ENHANCED_RE.finditer(text) if m.group(1) != "2"), None)
    return m.group(0) if m else None


def _carrier_notice(msg: Message, text: str, named: set[str]) -> list[Finding]:
    """A non-standard notice flufl.bounce does not read: Japanese carriers' and the like.

    It must look like one (from a mailer daemon, or automatic with a bounce subject) and say why per
    address: a recipient phrase ("550 Unknown user", 「存在しません」) on its line or the
    next ones. The address must be on a line of the notice, not only in the quoted original.
    """
    daemon = _DAEMON_RE.search(_header(msg, "from")) is not None
    automatic = _auto_submitted(msg) or _header(msg, "return-path") == "<>"
    if not daemon and not (automatic and _BOUNCE_SUBJECT_RE.search(_decoded(msg, "subject"))):
        return []  # a member's reply saying 「エラー」 is not a bounce
    lines = _before_original(text.splitlines())
    own = {
        a.lower()
        for _, a in getaddresses(_all(msg, ("to", "from", "delivered-to", "x-original-to")))
    }
    found: list[Finding] = []
    for i, line in enumerate(lines):
        for m in _ADDRESS_RE.finditer(line):
            address = clean_address(m.group(0).rstrip("."))
            if address is None or address in own or any(f.address == address for f in found):
                continue
            window = " ".join(lines[max(0, i - 2) : i + 3])
            if not _HARD_PHRASES.search(window) and not _SOFT_PHRASES.search(window):
                continue
            status = _status_near(window, address)
            soft = status is None and _SOFT_PHRASES.search(window) is not None
            if status is None and not soft:
                status = "5.1.1"
            named.add(address)
            found.append(Finding(_kind(status, soft=soft), address, status, "notice"))
    return found


_ORIGINAL_START = re.compile(
    r"^\s*-{2,}.*(original|copy of the message|returned message|元の|送信されたメール)"
    r"|^(return-path|received|message-id|from|to|subject|date):",
    re.IGNORECASE,
)


def _before_original(lines: list[str]) -> list[str]:
    """A notice's own lines: up to where it starts quoting the original mail."""
    for i, line in enumerate(lines):
        if _ORIGINAL_START.search(line):
            return lines[:i]
    return lines


def _complaint(msg: Message, named: set[str]) -> Finding | None:
    """An ARF report (RFC 5965): the complained-of recipient, from the report or the original."""
    report = next(
        (p for p in _parts(msg) if p.get_content_type() == "message/feedback-report"), None
    )
    if report is None:
        return None
    fields = _report_fields(report)
    kind = fields.get("feedback-type", "").lower()
    if kind not in _COMPLAINT_TYPES:
        return None  # not-spam and the like are no complaint
    candidates = [fields.get("original-rcpt-to", "")]
    original = _original_headers(msg)
    if original is not None:
        # Microsoft's JMRP redacts To: but keeps the recipient in its own header
        candidates += [
            a for _, a in getaddresses(_all(original, ("x-hmxmroriginalrecipient", "to")))
        ]
    for value in candidates:
        address = clean_address(value)
        if address is not None:
            named.add(address)
            return Finding("complaint", address, None, f"feedback-type {kind or 'abuse'}")
    return Finding("complaint", None, None, "no recipient")


def _report_fields(part: Message) -> dict[str, str]:
    """The feedback-report's fields, whether the parser made blocks of them or left text."""
    out: dict[str, str] = {}
    payload = part.get_payload()
    blocks = payload if isinstance(payload, list) else []
    if blocks:
        for block in blocks:
            if isinstance(block, Message):
                for k, v in block.items():
                    out.setdefault(k.lower(), _flat(v))
        return out
    data = part.get_payload(decode=True)
    text = data.decode("utf-8", "replace") if isinstance(data, bytes) else str(payload)
    for line in text.splitlines():
        k, sep, v = line.partition(":")
        if sep:
            out.setdefault(k.strip().lower(), _flat(v))
    return out


def _original_headers(msg: Message) -> Message | None:
    """The attached original mail (message/rfc822) or its headers (text/rfc822-headers)."""
    for part in msg.walk() if msg.is_multipart() else []:
        ctype = part.get_content_type()
        if ctype == "message/rfc822":
            payload = part.get_payload()
            if isinstance(payload, list) and payload and isinstance(payload[0], Message):
                return payload[0]
        elif ctype == "text/rfc822-headers":
            data = part.get_payload(decode=True)
            if isinstance(data, bytes):
                return email.message_from_bytes(data, policy=compat32)
    return None


_QUOTED_ID = re.compile(
    r"^[ \t>]*message-id:[ \t]*(<[^<>\s]{1,500}>)", re.IGNORECASE | re.MULTILINE
)


def _refs(msg: Message, raw: bytes) -> tuple[list[MailRef], bool]:
    """Where the mail says which mail it answers: VERP first, then Message-IDs; and whether
    it quotes a Message-ID that is not one of ours."""
    refs: list[MailRef] = []
    original = _original_headers(msg)
    paths = _all(msg, ("delivered-to", "x-original-to", "envelope-to", "x-envelope-to", "to"))
    if original is not None:  # a complaint report keeps the original's Return-Path
        paths += _all(original, ("return-path",))
    for value in paths:
        for _, address in getaddresses([value]):
            ref = parse_verp(address)
            if ref is not None and ref not in refs:
                refs.append(ref)
    seen: list[str] = []
    if original is not None:
        seen.append(_header(original, "message-id"))
    seen += [_header(msg, "in-reply-to"), _header(msg, "references")]
    body = raw[:MAX_MESSAGE_BYTES].decode("latin-1")
    # notices that quote the original as text (Exim, qmail, carriers) still carry its id
    quoted = _QUOTED_ID.findall(body.replace("\r\n", "\n").partition("\n\n")[2])
    for value in [*seen, body]:
        for ref in parse_message_id(value):
            if ref not in refs:
                refs.append(ref)
    ids = [i for v in seen for i in re.findall(r"<[^<>\s]{1,500}>", v)] + quoted
    foreign = any(not is_ours(i) for i in ids)
    return refs, foreign
