"""What one mail in the bounce mailbox says: a bounce, a complaint, an unsubscribe, or nothing.

Bounces are read by flufl.bounce (GNU Mailman's detectors: RFC 3464 DSNs and the common
non-standard forms of Postfix, Exim, qmail, Exchange, Yahoo …). It reports failed and
``delayed`` recipients apart but cannot tell a 4.x.x ``failed`` from a 5.x.x one, so the
status code is read here from the DSN's per-recipient block (or the notice's own text):
5.x.x is a hard bounce, 4.x.x and ``delayed`` are soft. What it misses is added here: the
notices of Japanese carriers and providers (docomo, au/KDDI, SoftBank, in English or
Japanese: "550 Unknown user", 「宛先のメールアドレスは存在しません」), ARF complaint reports
(RFC 5965: Yahoo's CFL, Microsoft's JMRP, …) and mail to the shop's ``unsubscribe_mailto``.

Nothing here trusts the mail: a recipient is kept only if it looks like one mail address (no
control character, no white space, one ``@``, at most 254 characters); a message that cannot
be parsed is reported as nothing found, never as an exception; a huge one is read up to
:data:`MAX_MESSAGE_BYTES`.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.message import Message
from email.utils import getaddresses, parseaddr, parsedate_to_datetime

from flufl.bounce import all_failures

from bcartnb.hygiene.mailparse import parse_bytes
from bcartnb.hygiene.notice import Notice, all_values, flat, header
from bcartnb.mailtokens import MailRef, is_ours, parse_message_id, parse_verp

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

# flufl.bounce logs each detector it runs at INFO and re-raises a detector's exception after
# logging it; the exception is handled here, so its log line must not reach a terminal.
logging.getLogger("flufl.bounce").addHandler(logging.NullHandler())


@dataclass(frozen=True)
class Finding:
    """One thing a mail says about one address (``None`` when it names none we can use)."""

    kind: str  # hard_bounce, soft_bounce, complaint, unsubscribed
    address: str | None
    status: str | None = None
    detail: str | None = None


@dataclass(frozen=True)
class Parsed:
    """A mail, read: its findings, what it says it answers, and what it is about.

    ``content`` hashes what the notice says (its text, not its headers), so the same notice
    re-read after a mail client added ``Status: RO``, or copied under a new Message-ID, is
    the same notice. ``foreign_ids`` is true when it quotes a Message-ID that is not one of
    ours (a notice about some other mail); ``tokens`` are the strings of an unsubscribe
    request that may be our signed token.
    """

    content: str
    at: datetime
    findings: tuple[Finding, ...]
    refs: tuple[MailRef, ...] = ()
    named: frozenset[str] = field(default_factory=frozenset)
    foreign_ids: bool = False
    tokens: tuple[str, ...] = ()

    def content_key(self, finding: Finding) -> str:
        """What one finding of this notice says, as a key that no copy or flag changes."""
        text = f"{self.content}\0{finding.kind}\0{finding.address or '-'}\0{finding.status}"
        return hashlib.sha256(text.encode()).hexdigest()[:40]


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
        msg = parse_bytes(raw)  # email.message_from_bytes(raw, policy=compat32), sooner
    except Exception:  # the parser is lenient; anything it still trips on is not a bounce
        return Parsed(_digest(raw.decode("latin-1")), now, ())
    notice = Notice(msg)
    at = _date(notice, now)
    try:
        findings, named = _classify(notice, unsubscribe_to)
        refs, foreign = _refs(notice, raw)
        content = _content(notice)
        unsubscribing = any(f.kind == "unsubscribed" for f in findings)
        tokens = _token_candidates(notice) if unsubscribing else ()
    except Exception:  # a broken structure deep inside: report nothing rather than crash
        return Parsed(_digest(raw.decode("latin-1")), at, ())
    return Parsed(content, at, tuple(findings), tuple(refs), frozenset(named), foreign, tokens)


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


_MBOX_QUOTE = re.compile(r"^>+(?=From )", re.MULTILINE)


def _content(notice: Notice) -> str:
    """The notice's text, as no mail client or mbox changes it: ``>From`` unquoted, white
    space collapsed; plus its Subject and From (a mail client adds headers, never edits
    these)."""
    text = notice.text
    if ">From " in text:  # what the pattern needs to change anything
        text = _MBOX_QUOTE.sub("", text)
    head = f"{notice.decoded('subject')}\0{notice.header('from')}"
    return _digest(head + "\0" + " ".join(text.split()))


_TOKEN_CANDIDATE = re.compile(r"[A-Za-z0-9_-]{24,400}")
_TOKEN_PLACES = ("to", "delivered-to", "x-original-to")
_MAX_TOKENS = 16


def _token_candidates(notice: Notice) -> tuple[str, ...]:
    """Strings of an unsubscribe request that may be our signed token: in its Subject, its
    recipient's local part (``unsubscribe+TOKEN@…``) or the start of its text."""
    places = [notice.decoded("subject")]
    for _, address in getaddresses(all_values(notice.msg, _TOKEN_PLACES)):
        places.append(address.partition("@")[0])
    places.append(notice.text[:4000])
    out: list[str] = []
    for place in places:
        for m in _TOKEN_CANDIDATE.finditer(place):
            if m.group(0) not in out and len(out) < _MAX_TOKENS:
                out.append(m.group(0))
    return tuple(out)


def _date(notice: Notice, now: datetime) -> datetime:
    """When the report was written (its Date), unless that is missing or not plausible."""
    try:
        at = parsedate_to_datetime(notice.header("date"))
    except (TypeError, ValueError, IndexError, OverflowError):
        return now
    if at.tzinfo is None or not (now - timedelta(days=3650) <= at <= now + timedelta(days=1)):
        return now
    return at


def _classify(
    notice: Notice, unsubscribe_to: re.Pattern[str] | None
) -> tuple[list[Finding], set[str]]:
    named: set[str] = set()
    complaint = _complaint(notice, named)
    if complaint is not None:
        return [complaint], named
    daemon = _DAEMON_RE.search(notice.header("from")) is not None
    if unsubscribe_to is not None and not daemon and _auto_submitted(notice) is False:
        targets = [a for _, a in getaddresses(all_values(notice.msg, _UNSUBSCRIBE_PLACES))]
        if any(unsubscribe_to.fullmatch(t.strip().lower()) for t in targets if t):
            from_addr = clean_address(parseaddr(notice.header("from"))[1])
            if from_addr:
                named.add(from_addr)
                return [Finding("unsubscribed", from_addr, None, "mailto")], named
    statuses = _dsn_blocks(notice, named)
    try:
        temporary, permanent = all_failures(notice.msg)
    except Exception:  # a detector tripping on an odd header (8-bit From); ours still read it
        temporary = permanent = frozenset()
    found: list[Finding] = []
    text = notice.text
    for value, soft in [*((a, False) for a in permanent), *((a, True) for a in temporary)]:
        address = clean_address(value)
        if address is None or any(f.address == address for f in found):
            continue
        named.add(address)
        status = statuses.get(address) or _status_near(text, address)
        found.append(Finding(_kind(status, soft=soft), address, status, None))
    if not found:
        found = _carrier_notice(notice, text, named)
    if not found and (statuses or _is_report(notice, "delivery-status")):
        # a DSN whose recipient we cannot read: the scan may still place it (VERP)
        status = next(iter(statuses.values()), None) or _status_near(text, "")
        found = [Finding(_kind(status, soft=False), None, status, "no recipient")]
    return found, named


_UNSUBSCRIBE_PLACES = ("to", "cc", "delivered-to", "x-original-to")


def _kind(status: str | None, *, soft: bool) -> str:
    if status and status.startswith("4"):
        return "soft_bounce"
    if status and status.startswith("5"):
        return "hard_bounce"
    return "soft_bounce" if soft else "hard_bounce"


def _auto_submitted(notice: Notice) -> bool:
    """An auto-reply (vacation notice) to the unsubscribe address is no one's request."""
    value = notice.header("auto-submitted").lower()
    return bool(value) and value != "no"


def _is_report(notice: Notice, report_type: str) -> bool:
    return (
        notice.content_type == "multipart/report"
        and str(notice.msg.get_param("report-type", "")).lower() == report_type
    )


def _dsn_blocks(notice: Notice, named: set[str]) -> dict[str, str]:
    """Recipient → status code from every message/delivery-status part's recipient blocks."""
    out: dict[str, str] = {}
    for part, ctype in notice.parts:
        if ctype != "message/delivery-status" or not part.is_multipart():
            continue
        payload = part.get_payload()
        if not isinstance(payload, list):
            continue
        for block in payload:
            if not isinstance(block, Message):
                continue
            recipients = [
                clean_address(flat(value).partition(";")[2] or flat(value))
                for value in (block.get(h) for h in _RECIPIENT_FIELDS)
                if value
            ]
            m = _ENHANCED_RE.search(flat(block.get("status", "")))
            action = flat(block.get("action", "")).lower()
            status = m.group(0) if m else ("4.0.0" if action.startswith("delayed") else None)
            for address in recipients:
                if address is not None:
                    named.add(address)
                    if status is not None:
                        out.setdefault(address, status)
            if not recipients and status is not None:
                out.setdefault("", status)
    return out


_RECIPIENT_FIELDS = ("final-recipient", "original-recipient", "x-actual-recipient")


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


def _carrier_notice(notice: Notice, text: str, named: set[str]) -> list[Finding]:
    """A non-standard notice flufl.bounce does not read: Japanese carriers' and the like.

    It must look like one (from a mailer daemon, or automatic with a bounce subject) and say why per
    address: a recipient phrase ("550 Unknown user", 「存在しません」) on its line or the
    next ones. The address must be on a line of the notice, not only in the quoted original.
    """
    daemon = _DAEMON_RE.search(notice.header("from")) is not None
    automatic = _auto_submitted(notice) or notice.header("return-path") == "<>"
    if not daemon and not (automatic and _BOUNCE_SUBJECT_RE.search(notice.decoded("subject"))):
        return []  # a member's reply saying 「エラー」 is not a bounce
    lines = _before_original(text.splitlines())
    own = {a.lower() for _, a in getaddresses(all_values(notice.msg, _OWN_PLACES))}
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


_OWN_PLACES = ("to", "from", "delivered-to", "x-original-to")
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


def _complaint(notice: Notice, named: set[str]) -> Finding | None:
    """An ARF report (RFC 5965): the complained-of recipient, from the report or the original."""
    report = next((p for p, ctype in notice.parts if ctype == "message/feedback-report"), None)
    if report is None:
        return None
    fields = _report_fields(report)
    kind = fields.get("feedback-type", "").lower()
    if kind not in _COMPLAINT_TYPES:
        return None  # not-spam and the like are no complaint
    candidates = [fields.get("original-rcpt-to", "")]
    original = notice.original
    if original is not None:
        # Microsoft's JMRP redacts To: but keeps the recipient in its own header
        candidates += [a for _, a in getaddresses(all_values(original, _COMPLAINED_PLACES))]
    for value in candidates:
        address = clean_address(value)
        if address is not None:
            named.add(address)
            return Finding("complaint", address, None, f"feedback-type {kind or 'abuse'}")
    return Finding("complaint", None, None, "no recipient")


_COMPLAINED_PLACES = ("x-hmxmroriginalrecipient", "to")


def _report_fields(part: Message) -> dict[str, str]:
    """The feedback-report's fields, whether the parser made blocks of them or left text."""
    out: dict[str, str] = {}
    payload = part.get_payload()
    blocks = payload if isinstance(payload, list) else []
    if blocks:
        for block in blocks:
            if isinstance(block, Message):
                for k, v in block.items():
                    out.setdefault(k.lower(), flat(v))
        return out
    data = part.get_payload(decode=True)
    text = data.decode("utf-8", "replace") if isinstance(data, bytes) else str(payload)
    for line in text.splitlines():
        k, sep, v = line.partition(":")
        if sep:
            out.setdefault(k.strip().lower(), flat(v))
    return out


_QUOTED_ID = re.compile(
    r"^[ \t>]*message-id:[ \t]*(<[^<>\s]{1,500}>)", re.IGNORECASE | re.MULTILINE
)
_ANY_ID = re.compile(r"<[^<>\s]{1,500}>")
_RETURN_PLACES = ("delivered-to", "x-original-to", "envelope-to", "x-envelope-to", "to")


def _refs(notice: Notice, raw: bytes) -> tuple[list[MailRef], bool]:
    """Where the mail says which mail it answers: VERP first, then Message-IDs; and whether
    it quotes a Message-ID that is not one of ours."""
    refs: list[MailRef] = []
    original = notice.original
    paths = all_values(notice.msg, _RETURN_PLACES)
    if original is not None:  # a complaint report keeps the original's Return-Path
        paths += all_values(original, ("return-path",))
    for value in paths:
        if "+" not in value:  # a VERP has one (and parsing an address list is slow)
            continue
        for _, address in getaddresses([value]):
            ref = parse_verp(address)
            if ref is not None and ref not in refs:
                refs.append(ref)
    seen: list[str] = []
    if original is not None:
        seen.append(header(original, "message-id"))
    seen += [notice.header("in-reply-to"), notice.header("references")]
    body = raw[:MAX_MESSAGE_BYTES].decode("latin-1")
    # notices that quote the original as text (Exim, qmail, carriers) still carry its id
    quoted = _QUOTED_ID.findall(body.replace("\r\n", "\n").partition("\n\n")[2])
    for value in [*seen, body]:
        for ref in parse_message_id(value):
            if ref not in refs:
                refs.append(ref)
    ids = [i for v in seen for i in _ANY_ID.findall(v)] + quoted
    foreign = any(not is_ours(i) for i in ids)
    return refs, foreign
