"""Draft → one ready-to-send message per member: merge fields, signature, HTML + text, headers.

A :class:`Composer` is built once per campaign and compiles everything that does not depend on
the member: the Jinja templates, the From header, the MIME boundary, the encoded constant
headers, and for HTML mail the CSS inlining and the HTML-to-text conversion. Per member it only
renders the fields that vary and writes the bytes directly (base64 for UTF-8, 7bit for
ISO-2022-JP), which is what makes 10,000 members take seconds rather than minutes
(``bench/bench_compose.py``). :meth:`Composer.to_email_message` builds the same mail with the
standard library's ``EmailMessage``; the tests check that both parse back to the same thing.

Decisions worth knowing:

* ``raw`` is the wire format: CRLF line ends, no dot-stuffing (smtplib does that), ready for
  ``sendmail``. Text parts are encoded in canonical form (CRLF inside base64, RFC 2045).
* Subjects and Japanese display names are written as our own RFC 2047 encoded-words, split on
  character boundaries, one per folded line. Spaces live *inside* the encoded-words, so they
  survive unfolding; the standard library's folder can drop a space when it wraps a Japanese
  subject (CPython gh-144156), which is why we do not use it.
* HTML mail is multipart/alternative with text/plain first (RFC 2046: the preferred part
  last). The text part comes from html2text, chosen over inscriptis because it is already a
  dependency and can be told not to wrap lines (wrapping breaks Japanese text and long URLs)
  and to flatten layout tables; a subclass (:class:`_PlainText`) makes it write plain Japanese
  text rather than Markdown: headings without ``#``, ``リンクの文字（https://…）`` for a link (the
  target alone when the text is the target, so every link's target is kept), 「・」 list items,
  no emphasis marks or backslash escapes.
* The signature: a template places it with ``{{ signature }}`` or ``{{ 署名 }}`` (inline HTML
  in an HTML mail, text in a text mail; empty when it is off). Otherwise a text mail ends with
  it, and an HTML mail gets it as a ``<p>`` inside the body's main container, so it inherits the
  layout's width, font and colours: the innermost element holding all of the body's text (a
  layout table's last text cell when that is a table or row; the nearest block around it when
  it is a paragraph, heading or link); no such element (text straight in ``<body>``) means
  before ``</body>``, or at the end of a fragment (:func:`_signature_spot`). The HTML form
  escapes the text, breaks lines with ``<br>`` and links every http(s) URL and mail address;
  ``signature_html`` in the settings replaces it as it is.
* Fast HTML path: when the body only substitutes values (no ``{% %}`` blocks, no ``|safe``),
  CSS is inlined once on the template *source* (each Jinja tag swapped for an inert
  placeholder first, then restored) and the text part is derived once too, as a text
  template. The per-member pipeline (render → signature → css-inline → html2text,
  :meth:`Composer.render_reference`) stays the reference: the fast path is taken per member,
  only when each of that member's values is one the HTML parser and html2text would leave as
  it is (no CR, LF, NUL or other control, quote, ``<``, ``>``, edge white space, …); any
  other member is composed by the reference pipeline. So every member gets the same bytes
  either way, whatever came first (a test holds the two equal over generated values);
  ``Composer.fast_html`` / ``fast_text`` say whether the template allows the fast path at all.
* Line ends: a lone CR or LF in a value is a line break in a text body, and white space in
  an HTML body (the HTML parser turns CR into LF); every part is written with CRLF only. A
  CR, LF or NUL in a value that lands in a header is a ComposeError naming member and field.
* No attachment can be added: there is no API for one, and the only MIME structures written
  are text/plain and multipart/alternative of text/plain + text/html.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import html as html_lib
import re
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from email import utils as email_utils
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP
from html.parser import HTMLParser
from typing import TYPE_CHECKING, Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

import css_inline
import html2text
import pandas as pd
from markupsafe import Markup

from bcartnb.exceptions import ComposeError, HygieneError, SelectionError, TemplateError
from bcartnb.htmldepth import check_depth
from bcartnb.mailcheck import Finding, check_mail
from bcartnb.mailtokens import TokenSigner
from bcartnb.mailtokens import message_token as _message_token
from bcartnb.templates import (
    SIGNATURE_FIELDS,
    UNSUBSCRIBE_TOKEN_FIELD,
    CompiledTemplate,
    RenderDeclined,
    Template,
    check_fields,
    columns_for,
    compile_template,
    context_builder,
    field_label,
    is_missing,
)

if TYPE_CHECKING:
    from bcartnb.settings import Settings

__all__ = [
    "ENCODINGS",
    "ComposedMail",
    "Composer",
    "Draft",
    "Preview",
    "encode_header_words",
    "html_to_text",
    "preview",
]

ENCODINGS = ("utf-8", "iso-2022-jp")
_CHARSET = {"utf-8": "UTF-8", "iso-2022-jp": "ISO-2022-JP"}
TOKYO = ZoneInfo("Asia/Tokyo")
_CRLF = "\r\n"
_LOCAL_RE = re.compile(r"[A-Za-z0-9!#$%&'*+\-/=?^_{|}~]+(?:\.[A-Za-z0-9!#$%&'*+\-/=?^_{|}~]+)*")
_DOMAIN_RE = re.compile(
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
)
_BODY_END_RE = re.compile(r"</body\s*>", re.IGNORECASE)
_TRIM = " \t\u3000"
_HEADER_BREAKERS = ("\r", "\n", "\x00")
# Every control character but TAB: CR, LF and NUL would end a header (or the message); the
# others (ESC, BEL, DEL, the C1 range) are invisible in a subject and some are acted on by the
# terminals and mail clients that show it.
_HEADER_CONTROL_RE = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f]")
# ISO-2022-JP's own escape and shift characters: Python's codec writes them through, and a
# reader then switches character sets in the middle of a member's name.
_ISO_2022_SHIFTS_RE = re.compile("[\x0e\x0f\x1b]")
# A value the fast HTML path cannot carry as is (see the module docstring): html5ever, the
# parser inside css-inline, turns CR into LF and drops NUL (other controls are parse errors),
# writes quotes bare (autoescape wrote &#34; and &#39;), < and > bare in attributes, U+00A0
# as &nbsp;, and treats white space at a value's ends by where it stands.
_HTML_DECLINE_RE = re.compile(r"[\x00-\x1f\x7f-\x9f\"'<>\u00a0\ud800-\udfff\ufffe\uffff]|^\s|\s$")
# ... nor the fast text path: html2text collapses runs of white space and every space but
# U+0020, backslash-escapes \ [ ] ( ) in link targets, titles and alt texts, and turns its
# own placeholder for &nbsp; back into U+00A0 wherever it finds it.
_TEXT_DECLINE_RE = re.compile(r"[\\\[\]()]|\s\s|[^\S ]|&nbsp_place_holder;")
# Attributes html2text reads and CSS selectors never match on (a class or id would): the only
# ones where a value may sit in the fast HTML template.
_VALUE_ATTRS = frozenset({"href", "src", "alt", "title"})


@dataclass(frozen=True)
class Draft:
    """What the compose screen holds: subject, body, HTML flag, signature flag, encoding."""

    subject: str
    body: str
    html: bool = False
    insert_signature: bool = True
    encoding: str = "utf-8"
    template: str | None = None

    @classmethod
    def from_template(cls, template: Template, **overrides: Any) -> Draft:
        """The template fills subject, body and html; any of them stays editable.

        An override of None means "not given" (a campaign file without ``subject``), so a
        :class:`~bcartnb.campaign.CampaignSpec`'s values can be passed straight through.
        """
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise ComposeError(
                f"draft: unknown key {unknown[0]!r} (known: {', '.join(known)})",
                ja=f"メールの下書きに知らない項目 {unknown[0]!r} があります。",
            )
        values: dict[str, Any] = {
            "subject": template.subject,
            "body": template.body,
            "html": template.html,
            "template": template.name,
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)


@dataclass(frozen=True)
class ComposedMail:
    """One member's mail, rendered and encoded. ``raw`` is what goes to SMTP DATA."""

    member_id: Any
    to: str
    subject: str
    text: str
    html: str | None
    raw: bytes
    message_id: str
    date: str = ""
    list_unsubscribe: str | None = None


@dataclass(frozen=True)
class Preview:
    """A rendered member for the confirmation screen; ``error`` instead of a mail when it fails."""

    member_id: Any
    subject: str = ""
    text: str = ""
    html: str | None = None
    raw: bytes = b""
    warnings: tuple[str, ...] = ()
    error: str | None = None
    checks: tuple[Finding, ...] = ()


# --- headers -----------------------------------------------------------------------------


def encode_header_words(text: str, encoding: str, first_line_room: int = 67) -> list[str]:
    """RFC 2047 B encoded-words for ``text``, split on character boundaries.

    The first word fits in ``first_line_room`` characters (76 minus the header name), the
    others in 75; each becomes one folded line. Decoders join adjacent encoded-words without
    the folding white space, so every space of the text survives. Raises UnicodeEncodeError.
    """
    label = _CHARSET[encoding]
    prefix = f"=?{label}?B?"
    overhead = len(prefix) + 2
    whole = _encode(text, encoding)
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


def _encode(text: str, encoding: str) -> bytes:
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


def _plain_ascii_header(value: str, room: int) -> bool:
    """True when ``value`` can be written as is: short printable ASCII that unfolds to itself."""
    return (
        len(value) <= room
        and value.isascii()
        and value.isprintable()
        and value == value.strip()
        and "  " not in value
        and "=?" not in value
    )


def _fold_words(words: list[str]) -> str:
    return (_CRLF + " ").join(words)


def _system_clock() -> datetime:
    return datetime.now(TOKYO)


def _b64_body(data: bytes) -> bytes:
    """Base64 in lines of 76 characters, each ending in CRLF (RFC 2045)."""
    if not data:
        return b""
    enc = binascii.b2a_base64(data, newline=False)
    return b"\r\n".join([enc[i : i + 76] for i in range(0, len(enc), 76)]) + b"\r\n"


def _check_member_header(
    value: str, member_id: Any, ctx: Mapping[str, Any], what: str, what_ja: str
) -> None:
    """A CR, LF or NUL in a header would end it and start another (or a second message);
    any other control character is refused too (see :data:`_HEADER_CONTROL_RE`)."""
    found = _HEADER_CONTROL_RE.search(value)
    if found is None:
        return  # one scan in C: this runs for every header of every member
    breakers = [c for c in _HEADER_BREAKERS if c in value]
    ch = breakers[0] if breakers else found.group()
    field = _culprit_field(ctx, ch)
    if ch == "\x00":
        kind, kind_ja, why = "a NUL character", "NUL文字", ", which could inject a header"
    elif ch in "\r\n":
        kind, kind_ja, why = "a line break (CR/LF)", "改行", ", which could inject a header"
    else:
        kind, kind_ja, why = f"a control character (U+{ord(ch):04X})", "制御文字", ""
    where = f"field {field_label(field)}" if field else f"the {what} template"
    source = f"「{field}」の値" if field else "テンプレート"
    raise ComposeError(
        f"member {member_id}: the {what} contains {kind} from {where}{why}",
        ja=f"会員 {member_id} の{what_ja}に{kind_ja}が入ります（{source}）。"
        "ヘッダーには使えないので、会員データを直してください。",
    )


def _check_header_value(value: str, what: str) -> None:
    if "\r" in value or "\n" in value:
        raise ComposeError(
            f"{what} contains a line break (CR/LF), which could inject a header",
            ja=f"{what} に改行が入っています。ヘッダーに改行は使えません。",
        )
    if "\x00" in value:
        raise ComposeError(
            f"{what} contains a NUL character", ja=f"{what} に NUL 文字が入っています。"
        )


# --- HTML helpers --------------------------------------------------------------------------


class _PlainText(html2text.HTML2Text):
    """html2text writing plain Japanese text rather than Markdown.

    Headings are their text on a line of their own (no ``#``); a link is its text followed by
    its target in full-width parentheses, ``冬のカタログ（https://…）``, or the target alone when
    the text already is the target (``https://…``, or a mail address for ``mailto:``); list
    items start with 「・」; no emphasis, code or strike marks, no backslash escapes; a rule is a
    line of 「―」. Every link's target is kept (DESIGN: the text part keeps each link's URL).
    """

    RULE = "―" * 20

    def __init__(self) -> None:
        super().__init__(bodywidth=0)
        self.unicode_snob = True
        self.ignore_emphasis = True
        self.images_to_alt = True
        self.ignore_tables = True
        self.ul_item_mark = "・"
        self._links: list[tuple[str | None, list[str]]] = []  # open <a>: (href, text seen)

    def handle_data(self, data: str, entity_char: bool = False) -> None:
        super().handle_data(data, entity_char=True)  # entity_char: no Markdown escapes

    def handle_tag(self, tag: str, attrs: dict[str, str | None], start: bool) -> None:
        if tag != "a":
            super().handle_tag(tag, attrs, start)
        elif start:
            href = attrs.get("href")
            self._links.append((href if href and not href.startswith("#") else None, []))
        elif self._links:
            href, seen = self._links.pop()
            if href:
                self._link_target(href, " ".join("".join(seen).split()))

    def _link_target(self, href: str, label: str) -> None:
        shown = href[7:] if href[:7].lower() == "mailto:" else href
        if label in (shown, href):
            return  # the text is the target: once is enough
        self.o(f"（{shown}）" if label else shown)

    def o(self, data: str, puredata: bool = False, force: bool | str = False) -> None:
        if not puredata:  # html2text's own marks; the page's text always comes as puredata
            if data == self.ul_item_mark + " ":
                data = self.ul_item_mark
            elif data == "* * *":
                data = self.RULE
            elif data in ("`", "~~", " ~~") or (data.endswith("# ") and data.strip("# ") == ""):
                return
        for _, seen in self._links:
            seen.append(data)
        super().o(data, puredata, force)


def html_to_text(html: str) -> str:
    """The text/plain alternative as plain text (see :class:`_PlainText`), never wrapped
    (wrapping breaks Japanese text and long URLs), layout tables flattened."""
    return _tidy_text(_PlainText().handle(html))


_LINE_END_SPACES_RE = re.compile(r"[ \t]+$", re.MULTILINE)
_BLANK_LINES_RE = re.compile(r"\n{3,}")


def _tidy_text(text: str) -> str:
    """No Markdown hard-break spaces at line ends, at most one blank line, one final newline."""
    text = _LINE_END_SPACES_RE.sub("", text)
    return _BLANK_LINES_RE.sub("\n\n", text).strip("\n") + "\n"


# --- the signature in an HTML mail ----------------------------------------------------------

_SIG_LINK_RE = re.compile(
    r"https?://[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]+"
    r"|[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)+"
)


def _trim_url(url: str) -> str:
    """A URL without the punctuation a sentence put after it (``…/stop).`` → ``…/stop``)."""
    while (url and url[-1] in ".,;:!?'\"]") or (
        url.endswith(")") and url.count("(") < url.count(")")
    ):
        url = url[:-1]
    return url


def _signature_html(text: str) -> str:
    """A text signature as inline HTML: escaped, ``<br>`` between lines, each http(s) URL and
    mail address a link (``<a href="mailto:…">``)."""
    out: list[str] = []
    pos = 0
    for found in _SIG_LINK_RE.finditer(text):
        target = found.group()
        if target.startswith(("http://", "https://")):
            target = _trim_url(target)
            href = target
        else:
            target = target.rstrip(".")
            href = "mailto:" + target
        out.append(html_lib.escape(text[pos : found.start()]))
        out.append(f'<a href="{html_lib.escape(href)}">{html_lib.escape(target)}</a>')
        pos = found.start() + len(target)
    out.append(html_lib.escape(text[pos:]))
    return "".join(out).replace("\n", "<br>\n")


# Where the signature goes when the template does not say (no ``{{ signature }}``): inside the
# body's main container, the innermost element holding all of the body's text.
_VOID_TAGS = frozenset(
    [
        "area",
        "base",
        "br",
        "col",
        "embed",
        "hr",
        "img",
        "input",
        "link",
        "meta",
        "param",
        "source",
        "track",
        "wbr",
    ]
)
_NO_TEXT_TAGS = frozenset({"head", "title", "style", "script", "template"})
_TABLE_PARTS = frozenset({"table", "thead", "tbody", "tfoot", "tr"})
_CONTAINERS = frozenset(
    [
        "div",
        "td",
        "th",
        "section",
        "article",
        "main",
        "aside",
        "header",
        "footer",
        "center",
        "blockquote",
        "li",
        "dd",
        "form",
    ]
)


class _Layout(HTMLParser):
    """The elements of an HTML body, and the elements around its text."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self._line_starts = [0] + [m.end() for m in re.finditer("\n", html)]
        self.tags: list[str] = []
        self.parents: list[int | None] = []
        self.ends: list[int | None] = []  # where each element's end tag starts
        self._open: list[int] = []
        self.common: list[int] | None = None  # the elements around every text
        self.last: list[int] = []  # the elements around the last text

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _VOID_TAGS:
            return
        self.tags.append(tag)
        self.parents.append(self._open[-1] if self._open else None)
        self.ends.append(None)
        self._open.append(len(self.tags) - 1)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        pass  # <div/>: nothing inside

    def handle_endtag(self, tag: str) -> None:
        for depth in range(len(self._open) - 1, -1, -1):
            node = self._open[depth]
            if self.tags[node] == tag:
                line, col = self.getpos()
                self.ends[node] = self._line_starts[line - 1] + col
                del self._open[depth:]
                return

    def handle_data(self, data: str) -> None:
        if not data.strip() or any(self.tags[n] in _NO_TEXT_TAGS for n in self._open):
            return
        path = list(self._open)
        if self.common is None:
            self.common = path
        else:
            keep = 0
            for a, b in zip(self.common, path, strict=False):
                if a != b:
                    break
                keep += 1
            del self.common[keep:]
        self.last = path


def _signature_spot(html: str) -> int | None:
    """Where the signature goes in ``html`` when the template does not place it: before the end
    tag of the body's main container. None: before ``</body>`` (or at the end).

    The container is the innermost element that holds all of the body's text (text in
    ``<head>``, ``<style>`` and the like does not count). When that is a table, a table section
    or a row, it is the cell holding the last text (a layout table's content cell); when it is
    not a block that can hold paragraphs (a ``<p>``, a heading, a link, …), or its end tag is
    missing, it is the nearest such element around it. ``<body>``/``<html>`` mean no container.
    A 600 px box (``<div class="wrap">``) or a layout table's content cell is what this finds.
    """
    layout = _Layout(html)
    layout.feed(html)
    layout.close()
    tags, parents, ends = layout.tags, layout.parents, layout.ends
    node = layout.common[-1] if layout.common else None
    while node is not None and tags[node] not in ("body", "html"):
        if tags[node] in _TABLE_PARTS:
            below = layout.last[layout.last.index(node) + 1 :]
            cell = next((n for n in below if tags[n] in ("td", "th")), None)
            if cell is not None and ends[cell] is not None:
                return ends[cell]
            while node is not None and tags[node] in _TABLE_PARTS | {"td", "th"}:
                node = parents[node]  # no usable cell: out of the table
            continue
        end = ends[node]
        if tags[node] in _CONTAINERS and end is not None:
            return end
        node = parents[node]
    return None


def _insert_html_signature(html: str, signature: str) -> str:
    """``html`` with the signature (``<p>`` and inline HTML) inside its main container."""
    if not signature:
        return html
    at = _signature_spot(html)
    if at is not None:
        return html[:at] + signature + "\n" + html[at:]
    ends = list(_BODY_END_RE.finditer(html))
    if ends:
        at = ends[-1].start()
        return html[:at] + signature + "\n" + html[at:]
    return html + ("" if html.endswith("\n") else "\n") + signature + "\n"


def _end_line(text: str) -> str:
    return text if text.endswith("\n") else text + "\n"


def _squash(value: str) -> str:
    return "".join(value.split())


def _html_value(value: Any) -> Any:
    """Jinja's finalize for the fast HTML template: pass only values it carries byte for byte."""
    if type(value) is int:
        return value
    if hasattr(value, "__html__"):  # Markup (|e, a filter's output): the parser may rewrite it
        raise RenderDeclined
    text = value if type(value) is str else str(value)
    if not text or _HTML_DECLINE_RE.search(text):
        raise RenderDeclined
    return value


def _text_value(value: Any) -> str:
    """The fast text template's filter on each value (which already passed :func:`_html_value`)."""
    text = str(value)
    if _TEXT_DECLINE_RE.search(text):
        raise RenderDeclined
    return text


class _PlaceholderSpots(HTMLParser):
    """Where the placeholders landed in the inlined template, and so which fast paths are sound.

    A value is only substituted where its text cannot change what the parser, css-inline or
    html2text do around it: in text outside ``<style>``/``<script>``, or in an href, src, alt
    or title. html2text reads image attributes (alt text, links around an image) and an href
    that starts with a value (a ``#`` skips the link) by their content: no fast text there.
    Nor where a link's text might equal its target for some member but not for another (the
    text part writes the target once then): a value in either, unless their fixed beginnings
    or ends already differ (``こちら`` never equals ``https://x.jp/?m={{ id }}``).
    """

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.html_ok = True
        self.text_ok = True
        self._raw: str | None = None
        self._link_with_value = False
        self._link: tuple[str, list[str]] | None = None  # an open <a href>: (href, its text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._tag(tag, attrs)
        if tag in ("style", "script"):
            self._raw = tag

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._tag(tag, attrs)

    def _tag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        has = _Protected.TOKEN_RE.search
        if has(tag):
            self.html_ok = False
        valued = False
        for name, value in attrs:
            if has(name) or (value is not None and has(value) and name not in _VALUE_ATTRS):
                self.html_ok = False
            elif value is not None and has(value):
                valued = True
                if tag == "img" or (name == "href" and value.startswith("bcnbzq")):
                    self.text_ok = False
        if tag == "a":
            self._link_with_value = valued
            href = dict(attrs).get("href")
            self._link = (href, []) if href and not href.startswith("#") else None
        elif tag == "img":
            if self._link_with_value:
                self.text_ok = False
            if self._link is not None:
                self._link[1].append(dict(attrs).get("alt") or "")

    def handle_endtag(self, tag: str) -> None:
        if tag == self._raw:
            self._raw = None
        if tag == "a":
            self._link_with_value = False
            if self._link is not None:
                href, seen = self._link
                label = " ".join("".join(seen).split())
                shown = href[7:] if href[:7].lower() == "mailto:" else href
                if _may_equal(label, shown) or _may_equal(label, href):
                    self.text_ok = False
                self._link = None

    def handle_data(self, data: str) -> None:
        if self._raw and _Protected.TOKEN_RE.search(data):
            self.html_ok = False
        if self._link is not None:
            self._link[1].append(data)

    def handle_comment(self, data: str) -> None:
        self._not_here(data)

    def handle_decl(self, decl: str) -> None:
        self._not_here(decl)

    def handle_pi(self, data: str) -> None:
        self._not_here(data)

    def unknown_decl(self, data: str) -> None:
        self._not_here(data)

    def _not_here(self, data: str) -> None:
        if _Protected.TOKEN_RE.search(data):
            self.html_ok = False


def _may_equal(a: str, b: str) -> bool:
    """Whether ``a`` and ``b`` can be equal for one member and not for another: each holds a
    placeholder and neither their fixed beginnings nor their fixed ends tell them apart."""
    split = _Protected.TOKEN_RE.split
    pa, pb = split(a), split(b)
    if len(pa) == 1 and len(pb) == 1:
        return False  # no value: the same for every member
    starts = pa[0].startswith(pb[0]) or pb[0].startswith(pa[0])
    ends = pa[-1].endswith(pb[-1]) or pb[-1].endswith(pa[-1])
    return starts and ends


def _jinja_literal(text: str) -> str:
    """Literal text that Jinja must output unchanged (it came out of css-inline or html2text)."""
    if not any(s in text for s in ("{{", "{%", "{#")) and not text.endswith("{"):
        return text
    if "endraw" not in text:
        return "{% raw %}" + text + "{% endraw %}"
    return text.replace("{", '{{ "{" }}')


class _Protected:
    """A template source with each Jinja construct replaced by an inert ``bcnbzq<n>q`` word."""

    TOKEN_RE = re.compile(r"bcnbzq(\d+)q")

    def __init__(self, compiled: CompiledTemplate) -> None:
        self.ok = False
        self.only_values = True
        self.pieces: list[str] = []  # placeholder index → original Jinja source
        self.exprs: list[str | None] = []  # the expression of a {{ }} tag, else None
        self.filled: set[int] = set()  # placeholders replaced by a constant (the signature)
        source = compiled.source
        if "bcnbzq" in source:
            return
        tokens = list(compiled.env.lex(source))
        if "".join(t[2] for t in tokens) != source:
            return  # whitespace control changed the data: keep the reference path
        out: list[str] = []
        current: list[str] = []
        expr: list[str] = []
        kind = None
        for _, ttype, value in tokens:
            if kind is None and ttype == "data":
                out.append(value)
                continue
            if kind is None:
                kind = ttype
                current, expr = [], []
            current.append(value)
            if ttype not in ("variable_begin", "variable_end"):
                expr.append(value)
            if ttype in ("variable_end", "block_end", "comment_end", "raw_end"):
                if kind == "block_begin" or kind == "raw_begin":
                    self.only_values = False
                is_value = kind == "variable_begin"
                text = "".join(current)
                if is_value and (current[0] != "{{" or current[-1] != "}}"):
                    self.only_values = False
                if is_value and re.search(r"\|\s*safe\b", text):
                    self.only_values = False
                self.exprs.append("".join(expr).strip() if is_value else None)
                out.append(f"bcnbzq{len(self.pieces)}q")
                self.pieces.append(text)
                kind = None
        if kind is not None:
            return
        self.text = "".join(out)
        self.ok = True

    def fill_signature(self, value: str) -> str:
        """The text with each ``{{ signature }}``/``{{ 署名 }}`` placeholder replaced by ``value``:
        a constant, so the fast template carries it as literal text."""
        if "bcnbzq" in value:
            return self.text
        self.filled = {i for i, e in enumerate(self.exprs) if e in SIGNATURE_FIELDS}
        return self.TOKEN_RE.sub(
            lambda m: value if int(m.group(1)) in self.filled else m.group(), self.text
        )

    def restore(self, text: str, for_text: bool = False) -> str | None:
        """Put the Jinja source back; None when placeholders were lost, doubled or reordered."""
        parts = self.TOKEN_RE.split(text)
        indexes = [int(i) for i in parts[1::2]]
        wanted = [i for i in range(len(self.pieces)) if i not in self.filled]
        if indexes != wanted and not for_text:
            return None
        if for_text and (
            len(set(indexes)) != len(indexes)
            or indexes != sorted(indexes)
            or self.filled.intersection(indexes)
        ):
            return None
        out = []
        for i, part in enumerate(parts):
            if i % 2 == 0:
                out.append(_jinja_literal(part))
            else:
                idx = int(part)
                expr = self.exprs[idx]
                if for_text:
                    if expr is None:
                        return None
                    out.append("{{ (" + expr + ")|bcnb_text }}")
                else:
                    out.append(self.pieces[idx])
        return "".join(out)


# --- the composer --------------------------------------------------------------------------


class Composer:
    """A draft compiled once for a campaign; :meth:`compose` one member, :meth:`compose_all` many.

    ``clock`` returns the Date header's time (aware); tests inject it. ``warnings`` holds the
    campaign-level warnings (a signature already in the body, a missing signature).
    """

    def __init__(
        self,
        draft: Draft,
        settings: Settings,
        campaign_id: str,
        *,
        clock: Callable[[], datetime] | None = None,
        columns: Iterable[str] | None = None,
    ) -> None:
        if draft.encoding not in ENCODINGS:
            raise ComposeError(
                f"encoding must be one of {', '.join(ENCODINGS)}, not {draft.encoding!r}",
                ja=f"文字コード {draft.encoding!r} は使えません（utf-8 か iso-2022-jp）。",
            )
        self.draft = draft
        self.settings = settings
        self.campaign_id = str(campaign_id)
        self.encoding = draft.encoding
        self.clock = clock or _system_clock
        self.warnings: list[str] = []
        name = draft.template or "draft"
        self.name = name

        subject_src = draft.subject.rstrip("\r\n")
        _check_header_value(subject_src, f"template {name!r} (subject)")
        self.subject_t = self._compile(subject_src, name, "subject", False)
        self.body_t = self._compile(draft.body, name, "body", draft.html)
        if columns is not None:  # the member columns: a field none has is the template's typo
            cols = list(columns)
            check_fields(self.subject_t, cols)
            check_fields(self.body_t, cols)

        self.from_header = self._from_header()
        domain = settings.from_addr.rpartition("@")[2]
        try:
            domain = domain.encode("idna").decode("ascii")
        except UnicodeError:
            domain = "bcartnb.invalid"
        self._mid_prefix = f"<bcartnb.{_message_token(self.campaign_id)}."
        self._mid_suffix = f"@{domain}>"
        self.boundary = "=_bcartnb_" + hashlib.sha256(self.campaign_id.encode()).hexdigest()[:24]

        self.unsub_ts: list[CompiledTemplate] = []
        for key, value in (
            ("unsubscribe_url", settings.unsubscribe_url),
            ("unsubscribe_mailto", settings.unsubscribe_mailto),
        ):
            if value:
                if key == "unsubscribe_mailto" and not value.lower().startswith("mailto:"):
                    value = "mailto:" + value
                self.unsub_ts.append(self._compile(value, key, "List-Unsubscribe", False))
        self.one_click = bool(
            settings.unsubscribe_url and settings.unsubscribe_url.lower().startswith("https://")
        )

        names = set(self.subject_t.names) | set(self.body_t.names)
        for t in self.unsub_ts:
            names |= t.names
        used = columns_for(names)
        self._columns = None if used is None else used | {"id", "email"}

        self._signature()
        self.sig_placed = bool(SIGNATURE_FIELDS & self.body_t.names)
        self._context = self._context_with_token(
            self._context_with_signature(context_builder(names), names), names
        )
        self.fast_html = False
        self.fast_text = False
        #: Mails composed per path: "fast_text" (both parts by the fast templates), "fast_html"
        #: (the HTML only), "reference". Tests read it to know the fast path ran, not only
        #: that its bytes agree with the reference's.
        self.paths: Counter[str] = Counter()
        if draft.html:
            self._inliner = css_inline.CSSInliner(keep_at_rules=True, load_remote_stylesheets=False)
            self._prepare_fast_html()

        self._date_cache: tuple[int, str] = (-1, "")
        self._head_tail = self._constant_tail()

    # -- per campaign --

    def _compile(
        self,
        source: str,
        name: str,
        part: str,
        html: bool,
        filters: Mapping[str, Callable[..., Any]] | None = None,
        finalize: Callable[[Any], Any] | None = None,
    ) -> CompiledTemplate:
        """Every template of the campaign, bounded by the settings' render limits."""
        s = self.settings
        return compile_template(
            source,
            name,
            part,
            html,
            filters,
            finalize,
            timeout=s.render_timeout,
            max_size=s.max_mail_bytes,
        )

    def _from_header(self) -> str:
        s = self.settings
        name = s.from_name
        _check_header_value(name, "settings from_name")
        _check_header_value(s.from_addr, "settings from")
        if not name:
            return s.from_addr
        if name.isascii() and name.isprintable():
            return email_utils.formataddr((name, s.from_addr))
        try:
            words = encode_header_words(name, self.encoding, 76 - len("From: "))
        except UnicodeEncodeError as err:
            ch = err.object[err.start]
            raise ComposeError(
                f"settings from_name has {ch!r} (U+{ord(ch):04X}), which "
                f"{_CHARSET[self.encoding]} cannot encode; use UTF-8 or replace it",
                ja=f"設定の差出人名の文字 {ch!r} は {_CHARSET[self.encoding]} で送れません。"
                "UTF-8 にするか、その文字を置き換えてください。",
            ) from err
        return _fold_words(words) + f" <{s.from_addr}>"

    def _signature(self) -> None:
        """The signature's three forms: text, inline HTML (``{{ signature }}``) and the block
        :func:`_insert_html_signature` puts in the main container; all empty when it is off."""
        s, d = self.settings, self.draft
        self.sig_text = ""
        self.sig_inline = ""
        self.sig_html = ""
        if not d.insert_signature:
            return
        text = s.signature.strip("\r\n").replace("\r\n", "\n")
        if not text.strip() and not (s.signature_html or "").strip():
            self.warnings.append(
                "署名が設定されていません (signature is empty): "
                "「設定している署名を挿入」は何もしません"
            )
            return
        self.sig_text = text
        if d.html:
            configured = (s.signature_html or "").strip()
            self.sig_inline = configured or _signature_html(text)
            self.sig_html = configured or f"<p>{self.sig_inline}</p>"
        body_text = html_to_text(d.body) if d.html else d.body
        dup = bool(text.strip()) and _squash(text) in _squash(body_text)
        if d.html and _squash(self.sig_inline) in _squash(d.body):
            dup = True
        if dup:
            self.warnings.append(
                "本文にすでに署名が含まれています: 「設定している署名を挿入」がオンのため署名が"
                "二重になります (the body already contains the signature)"
            )

    def _context_with_signature(
        self, build: Callable[[Mapping[str, Any]], dict[str, Any]], names: set[str]
    ) -> Callable[[Mapping[str, Any]], dict[str, Any]]:
        """The member's context, plus ``signature``/``署名`` when a template names them."""
        wanted = SIGNATURE_FIELDS & names
        if not wanted:
            return build
        value: str = Markup(self.sig_inline) if self.draft.html else self.sig_text
        extra = dict.fromkeys(wanted, value)

        def with_signature(member: Mapping[str, Any]) -> dict[str, Any]:
            ctx = build(member)
            ctx.update(extra)
            return ctx

        return with_signature

    def _context_with_token(
        self, build: Callable[[Mapping[str, Any]], dict[str, Any]], names: set[str]
    ) -> Callable[[Mapping[str, Any]], dict[str, Any]]:
        """The member's context, plus the signed ``unsubscribe_token`` when a template or the
        unsubscribe settings name it: one member value, so every render path gets the same.

        Without the secret this refuses here, when the campaign is planned (the dry run).
        """
        if UNSUBSCRIBE_TOKEN_FIELD not in names:
            return build
        in_setting = any(UNSUBSCRIBE_TOKEN_FIELD in t.names for t in self.unsub_ts)
        signer = TokenSigner(
            self.settings.unsubscribe_secret,
            "unsubscribe_url" if in_setting else f"template {self.name!r}",
        )
        campaign_id = self.campaign_id

        def with_token(member: Mapping[str, Any]) -> dict[str, Any]:
            ctx = build(member)
            member_id = _member_id(member)
            try:
                token = signer.make(campaign_id, member_id, _recipient(member, member_id))
            except (ValueError, HygieneError) as err:
                raise ComposeError(
                    f"member {member_id}: no unsubscribe token: {err}",
                    ja=f"会員 {member_id} の配信停止リンクを作れません"
                    "（メールアドレスを確認してください）。",
                ) from err
            ctx[UNSUBSCRIBE_TOKEN_FIELD] = token
            return ctx

        return with_token

    def _prepare_fast_html(self) -> None:
        """Settle, from the template alone, whether the fast paths can be sound at all.

        Blocks are left to the reference path: a branch or a loop can open or close an
        element in one member's mail and not in another's, which the HTML parser mends
        differently from the one parse of the template the fast path rests on.
        """
        prot = _Protected(self.body_t)
        if not prot.ok or not prot.only_values:
            return
        try:
            inlined = self._inline(prot.fill_signature(self.sig_inline))
        except (ValueError, css_inline.InlineError):
            return
        spots = _PlaceholderSpots()
        spots.feed(inlined)
        spots.close()
        source = prot.restore(inlined)
        if source is None or not spots.html_ok:
            return
        self.fast_html_t = self._compile(source, self.name, "body", True, finalize=_html_value)
        self.fast_html = True
        text_source = prot.restore(html_to_text(inlined), for_text=True)
        if text_source is not None and spots.text_ok:
            self.fast_text_t = self._compile(
                text_source, self.name, "body", False, {"bcnb_text": _text_value}
            )
            self.fast_text = True

    def _constant_tail(self) -> bytes:
        lines = ["MIME-Version: 1.0"]
        self._unsub_value: str | None = None
        if all(t.constant for t in self.unsub_ts):
            self._unsub_constant = True
            unsub = self._unsub_lines(None, {})
            self._unsub_value = unsub[0] if unsub else None
            lines += unsub
        else:
            self._unsub_constant = False
        return (_CRLF.join(lines) + _CRLF).encode("ascii")

    def _content_head(self) -> str:
        charset = _CHARSET[self.encoding]
        if self.draft.html:
            return f'Content-Type: multipart/alternative; boundary="{self.boundary}"{_CRLF}{_CRLF}'
        return f'Content-Type: text/plain; charset="{charset}"{_CRLF}'

    def _unsub_lines(self, member_id: Any, ctx: Mapping[str, Any]) -> list[str]:
        if not self.unsub_ts:
            return []
        uris = []
        for t in self.unsub_ts:
            value = t.render(ctx, member_id)
            if member_id is None:
                _check_header_value(value, f"{t.name} (List-Unsubscribe)")
            else:
                _check_member_header(
                    value, member_id, ctx, f"{t.name} (List-Unsubscribe)", "配信停止ヘッダー"
                )
            uri = quote(value.strip(), safe=":/?#[]@!$&'()*+,;=%-._~")
            if len(uri) > 900:
                raise ComposeError(
                    f"{_who(member_id, t.name)} is longer than 900 characters",
                    ja=f"会員 {member_id} の配信停止用 URL が長すぎます（900文字まで）。",
                )
            uris.append(f"<{uri}>")
        lines = ["List-Unsubscribe: " + ("," + _CRLF + " ").join(uris)]
        if self.one_click:
            lines.append("List-Unsubscribe-Post: List-Unsubscribe=One-Click")
        return lines

    # -- per member --

    def date_header(self) -> str:
        """The Date header for a mail going out now, formatted once a second (10,000 mails
        share a handful); the spool renews its mails' Date with it as they go out."""
        if self.clock is _system_clock:  # then time.time() says when the second changes
            key = int(time.time())
            if self._date_cache[0] != key:
                now = self.clock()
                self._date_cache = (int(now.timestamp()), email_utils.format_datetime(now))
            return self._date_cache[1]
        now = self.clock()
        key = int(now.timestamp())
        if self._date_cache[0] != key:
            self._date_cache = (key, email_utils.format_datetime(now))
        return self._date_cache[1]

    def message_id(self, member_id: Any) -> str:
        """Deterministic per campaign and member: a resent uncertain mail keeps its id."""
        return self._mid_prefix + _message_token(str(member_id)) + self._mid_suffix

    def render_reference(self, member: Mapping[str, Any]) -> tuple[str, str, str | None]:
        """(subject, text, html) by the straightforward per-member pipeline, no shortcuts."""
        member_id = _member_id(member)
        ctx = self._context(member)
        return (self.subject_t.render(ctx, member_id), *self._reference_body(ctx, member_id))

    def _reference_body(self, ctx: Mapping[str, Any], member_id: Any) -> tuple[str, str | None]:
        body = self.body_t.render(ctx, member_id)
        if not self.draft.html:
            return self._finish_text(body), None
        html = _end_line(self._inline(body, member_id))
        return html_to_text(html), html

    def _inline(self, body: str, member_id: Any = None) -> str:
        """The signature placed and the CSS inlined, each only on HTML that cannot stall or
        crash it: checked as rendered, and again as css-inline gets it (signature included)."""
        self._check_depth(body, member_id)
        html = self._place_signature(body)
        if html is not body:
            self._check_depth(html, member_id)
        return self._inliner.inline(html)

    def _check_depth(self, html: str, member_id: Any = None) -> None:
        where, where_ja = self.body_t.where(None), self.body_t.where_ja(None)
        if member_id is not None:
            where = f"{where} for member {member_id}"
            where_ja = f"{where_ja}から作った会員 {member_id} のメール"
        check_depth(html, where, where_ja)

    def _place_signature(self, html: str) -> str:
        return html if self.sig_placed else _insert_html_signature(html, self.sig_html)

    def _finish_text(self, body: str) -> str:
        if "\r" in body:
            body = body.replace("\r\n", "\n").replace("\r", "\n")
        if self.sig_text and not self.sig_placed:
            return body.rstrip("\n") + "\n\n" + self.sig_text + "\n"
        return body if not body or body.endswith("\n") else body + "\n"

    def _render(self, member_id: Any, ctx: Mapping[str, Any]) -> tuple[str, str, str | None]:
        """What :meth:`render_reference` gives, by the fast path when this member allows it."""
        subject = self.subject_t.render(ctx, member_id)
        if self.fast_html:
            try:
                html = _end_line(self.fast_html_t.render(ctx, member_id))
            except (RenderDeclined, TemplateError):
                pass  # the reference path renders it (and words an error with its lines)
            else:
                text = self._fast_text(ctx, member_id) if self.fast_text else None
                self.paths["fast_html" if text is None else "fast_text"] += 1
                return subject, html_to_text(html) if text is None else text, html
        self.paths["reference"] += 1
        return (subject, *self._reference_body(ctx, member_id))

    def _fast_text(self, ctx: Mapping[str, Any], member_id: Any) -> str | None:
        try:
            return _tidy_text(self.fast_text_t.render(ctx, member_id))
        except RenderDeclined:
            return None  # html_to_text of the (same) HTML, as the reference does

    def compose(self, member: Mapping[str, Any]) -> ComposedMail:
        """Render and encode one member's mail; a problem is a ComposeError or TemplateError."""
        member_id = _member_id(member)
        to = _recipient(member, member_id)
        ctx = self._context(member)
        subject, text, html = self._render(member_id, ctx)
        _check_member_header(subject, member_id, ctx, "subject", "件名")
        # Every character is at least a byte on the wire: refuse before encoding a giant.
        self._check_size(len(text) + len(html or ""), member_id)
        enc = self.encoding
        try:
            if _plain_ascii_header(subject, 78 - len("Subject: ")):
                subj = subject
            else:
                subj = _fold_words(encode_header_words(subject, enc, 76 - len("Subject: ")))
        except UnicodeEncodeError as err:
            raise _encoding_error(err, member_id, "subject", ctx, enc) from err
        date = self.date_header()
        message_id = self.message_id(member_id)
        head = (
            f"From: {self.from_header}{_CRLF}To: {to}{_CRLF}Subject: {subj}{_CRLF}"
            f"Date: {date}{_CRLF}Message-ID: {message_id}{_CRLF}"
        )
        parts = [head.encode("ascii"), self._head_tail]
        unsub = self._unsub_value
        if not self._unsub_constant:
            lines = self._unsub_lines(member_id, ctx)
            unsub = lines[0]
            parts.append((_CRLF.join(lines) + _CRLF).encode("ascii"))
        parts.append(self._content_head().encode("ascii"))
        if html is None:
            parts.append(self._text_part(text, "plain", member_id, ctx, with_type=False))
        else:
            b = self.boundary.encode("ascii")
            text_part = self._text_part(text, "plain", member_id, ctx)
            html_part = self._text_part(html, "html", member_id, ctx)
            if b in text_part or b in html_part:
                raise ComposeError(
                    f"member {member_id}: the mail contains the MIME boundary",
                    ja=f"会員 {member_id} のメールに MIME の区切り文字列が含まれています。",
                )
            # The CRLF before a delimiter belongs to the delimiter (RFC 2046), hence the extra one.
            parts += [
                b"--" + b + b"\r\n",
                text_part,
                b"\r\n--" + b + b"\r\n",
                html_part,
                b"\r\n--" + b + b"--\r\n",
            ]
        raw = b"".join(parts)
        self._check_size(len(raw), member_id)
        return ComposedMail(
            member_id=member_id,
            to=to,
            subject=subject,
            text=text,
            html=html,
            raw=raw,
            message_id=message_id,
            date=date,
            list_unsubscribe=unsub.split(": ", 1)[1].replace(_CRLF + " ", " ") if unsub else None,
        )

    def _check_size(self, size: int, member_id: Any) -> None:
        limit = self.settings.max_mail_bytes
        if size > limit:
            where = "the draft" if self.name == "draft" else f"template {self.name!r}"
            where_ja = "入力した本文" if self.name == "draft" else f"テンプレート「{self.name}」"
            raise ComposeError(
                f"member {member_id}: the mail from {where} is over max_mail_bytes "
                f"({size:,} > {limit:,} bytes)",
                ja=f"会員 {member_id} のメール（{where_ja}）が大きすぎます"
                f"（{size:,} バイト、上限 {limit:,} バイト）。",
            )

    def _text_part(
        self,
        text: str,
        subtype: str,
        member_id: Any,
        ctx: Mapping[str, Any],
        with_type: bool = True,
    ) -> bytes:
        enc = self.encoding
        ctype = f'Content-Type: text/{subtype}; charset="{_CHARSET[enc]}"\r\n' if with_type else ""
        if "\r" in text:  # never from the renderers; a lone CR on the wire is SMTP smuggling
            text = text.replace("\r\n", "\n").replace("\r", "\n")
        wire = text.replace("\n", "\r\n")
        try:
            data = _encode(wire, enc)
        except UnicodeEncodeError as err:
            part = "body" if subtype == "plain" else "HTML body"
            raise _encoding_error(err, member_id, part, ctx, enc) from err
        if enc == "utf-8" or b"\x00" in data or max(map(len, data.split(b"\r\n"))) > 998:
            return (ctype + "Content-Transfer-Encoding: base64\r\n\r\n").encode() + _b64_body(data)
        return (ctype + "Content-Transfer-Encoding: 7bit\r\n\r\n").encode() + data

    def compose_all(
        self, members: pd.DataFrame | Iterable[Mapping[str, Any]]
    ) -> Iterator[ComposedMail]:
        """Compose every member in order, streaming (one chunk of rows in memory at a time)."""
        if isinstance(members, pd.DataFrame):
            read = self._columns
            keep = [c for c in members.columns if read is None or str(c) in read]
            columns = [str(c) for c in keep]
            n = len(members)
            for start in range(0, n, 1000):
                chunk = members.iloc[start : start + 1000]
                values = [chunk[c].tolist() for c in keep]
                for row in zip(*values, strict=True):
                    yield self.compose(dict(zip(columns, row, strict=True)))
        else:
            for member in members:
                yield self.compose(member)

    def check(self, mail: ComposedMail) -> list[Finding]:
        """送信前の確認 of one of this campaign's mails (:mod:`bcartnb.mailcheck`): the
        settings' sender name and the draft's charset are the composer's to give."""
        return check_mail(mail, sender_name=self.settings.from_name, charset=self.encoding)

    def to_email_message(self, mail: ComposedMail) -> EmailMessage:
        """The same mail built with the standard library, for comparison and for smtplib users."""
        msg = EmailMessage(policy=SMTP)
        msg["From"] = Address(
            display_name=self.settings.from_name, addr_spec=self.settings.from_addr
        )
        msg["To"] = mail.to
        msg["Subject"] = mail.subject
        msg["Date"] = mail.date
        msg["Message-ID"] = mail.message_id
        if mail.list_unsubscribe:
            msg["List-Unsubscribe"] = mail.list_unsubscribe
            if self.one_click:
                msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
        charset = self.encoding
        if mail.html is None:
            msg.set_content(mail.text, charset=charset)
        else:
            msg.set_content(mail.text, charset=charset)
            msg.add_alternative(mail.html, subtype="html", charset=charset)
        return msg


def _who(member_id: Any, what: str) -> str:
    return f"member {member_id}: {what}" if member_id is not None else what


def _member_id(member: Mapping[str, Any]) -> Any:
    value = member.get("id")
    if is_missing(value):
        raise ComposeError(
            f"a member has no id (email {member.get('email')!r})",
            ja="会員IDのない会員がいます。会員ファイルを確かめてください。",
        )
    return _plain(value)


def _plain(value: Any) -> Any:
    """numpy scalars → Python values, so ids compare and print like the ones users typed."""
    item = getattr(value, "item", None)
    return item() if callable(item) else value


def _recipient(member: Mapping[str, Any], member_id: Any) -> str:
    value = member.get("email")
    if is_missing(value):
        raise ComposeError(
            f"member {member_id}: email is empty",
            ja=f"会員 {member_id} のメールアドレスが空欄です。",
        )
    to = str(value).strip(_TRIM)
    if "\r" in to or "\n" in to:
        raise ComposeError(
            f"member {member_id}: email contains a line break (CR/LF)",
            ja=f"会員 {member_id} のメールアドレスに改行が入っています。",
        )
    local, at, domain = to.rpartition("@")
    if not at or not _LOCAL_RE.fullmatch(local) or not _DOMAIN_RE.fullmatch(domain):
        raise ComposeError(
            f"member {member_id}: email {to!r} is not an address we can send to",
            ja=f"会員 {member_id} のメールアドレス {to!r} には送れません。",
        )
    return to


def _culprit_field(ctx: Mapping[str, Any], ch: str) -> str | None:
    """The field whose value brought ``ch`` into the mail, if one did (else the template)."""
    for name, value in ctx.items():
        if isinstance(value, Mapping):
            continue
        if ch in str(value) or (ch == "\n" and "\r" in str(value)):
            return name
    return None


def _culprit(ctx: Mapping[str, Any], ch: str, default: str) -> str:
    name = _culprit_field(ctx, ch)
    return default if name is None else f"field {field_label(name)}"


def _encoding_error(
    err: UnicodeEncodeError, member_id: Any, part: str, ctx: Mapping[str, Any], enc: str
) -> ComposeError:
    ch = err.object[err.start]
    where = _culprit(ctx, ch, f"the {part} template")
    field = _culprit_field(ctx, ch)
    part_ja = {"subject": "件名", "body": "本文", "HTML body": "HTML本文"}.get(part, part)
    source = f"「{field}」の値" if field else "テンプレート"
    return ComposeError(
        f"member {member_id}: {where} has {ch!r} (U+{ord(ch):04X}) in the {part}, which "
        f"{_CHARSET[enc]} cannot encode; send in UTF-8 or replace the character",
        ja=f"会員 {member_id} の{part_ja}に、{_CHARSET[enc]} では送れない文字「{ch}」が"
        f"{source}にあります。文字コードを UTF-8 にするか、その文字を置き換えてください。",
    )


# --- preview ------------------------------------------------------------------------------


def preview(
    composer: Composer,
    members: pd.DataFrame,
    n: int = 3,
    ids: Sequence[Any] | None = None,
) -> list[Preview]:
    """Render the first ``n`` members (or the given ``ids``) as they will be sent, checked.

    A member that cannot be composed gives a Preview with ``error`` set: the confirmation
    screen shows it instead of failing for the whole list.
    """
    if ids is not None:
        wanted = [str(i) for i in ids]
        have = members["id"].astype(str)
        missing = [i for i in wanted if i not in set(have)]
        if missing:
            raise SelectionError(
                f"preview: member id {', '.join(missing)} not in the members",
                ja=f"会員ID {'、'.join(missing)} は会員ファイルにありません。",
            )
        rows = [
            {str(k): v for k, v in members[have == i].iloc[0].to_dict().items()} for i in wanted
        ]
    else:
        rows = [{str(k): v for k, v in r.items()} for r in members.head(n).to_dict("records")]
    out = []
    for row in rows:
        member_id = _plain(row.get("id"))
        try:
            mail = composer.compose(row)
        except (ComposeError, TemplateError) as err:
            out.append(Preview(member_id=member_id, error=str(err)))
            continue
        out.append(
            Preview(
                member_id=mail.member_id,
                subject=mail.subject,
                text=mail.text,
                html=mail.html,
                raw=mail.raw,
                warnings=tuple(composer.warnings),
                checks=tuple(composer.check(mail)),
            )
        )
    return out
