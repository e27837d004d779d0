"""The fast HTML path: settle once, from the template, which members' values can skip the pipeline.

When the body only substitutes values (no ``{% %}`` blocks, no ``|safe``), CSS is inlined once
on the template *source* (each Jinja tag swapped for an inert placeholder first, then
restored: :class:`Protected`) and the text part is derived once too, as a text template. The
per-member pipeline (render → signature → css-inline → html2text,
:meth:`~bcartnb.compose.Composer.render_reference`) stays the reference: the fast path is
taken per member, only when each of that member's values is one the HTML parser and html2text
would leave as it is (no CR, LF, NUL or other control, quote, ``<``, ``>``, edge white space,
…: :func:`html_value`, :func:`text_value`); any other member is composed by the reference
pipeline. So every member gets the same bytes either way, whatever came first (a test holds
the two equal over generated values); ``Composer.fast_html`` / ``fast_text`` say whether the
template allows the fast path at all.

:class:`PlaceholderSpots` reads the inlined template with the standard library's
``HTMLParser``, not selectolax: what it must predict is what html2text does, and html2text is
an ``HTMLParser``. Its events are not an HTML5 tree's: it knows only ``<script>`` and
``<style>`` as raw text, so ``<a href>`` inside ``<xmp>``, ``<noembed>`` or ``<iframe>`` (which
css-inline writes back unescaped) is a link to html2text and text to lexbor; comments,
declarations and processing instructions come as their own events. A tree from another
parser would judge a different document than the one the text part is made from.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser
from typing import Any

from bcartnb.templates import SIGNATURE_FIELDS, CompiledTemplate, RenderDeclined

__all__ = ["PlaceholderSpots", "Protected", "html_value", "text_value"]

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


def html_value(value: Any) -> Any:
    """Jinja's finalize for the fast HTML template: pass only values it carries byte for byte."""
    if type(value) is int:
        return value
    if hasattr(value, "__html__"):  # Markup (|e, a filter's output): the parser may rewrite it
        raise RenderDeclined
    text = value if type(value) is str else str(value)
    if not text or _HTML_DECLINE_RE.search(text):
        raise RenderDeclined
    return value


def text_value(value: Any) -> str:
    """The fast text template's filter on each value (which already passed :func:`html_value`)."""
    text = str(value)
    if _TEXT_DECLINE_RE.search(text):
        raise RenderDeclined
    return text


class PlaceholderSpots(HTMLParser):
    """Where the placeholders landed in the inlined template, and so which fast paths are sound.

    A value is only substituted where its text cannot change what the parser, css-inline or
    html2text do around it: in text outside ``<style>``/``<script>``, or in an href, src, alt
    or title. html2text reads image attributes (alt text, links around an image) and an href
    that starts with a value (a ``#`` skips the link) by their content: no fast text there.
    Nor where a link's text might equal its target for some member but not for another (the
    text part writes the target once then): a value in either, unless their fixed beginnings
    or ends already differ (``こちら`` never equals ``https://x.jp/?m={{ id }}``).
    """

    @classmethod
    def of(cls, html: str) -> PlaceholderSpots:
        """The spots of ``html``, the inlined template (placeholders in place of Jinja)."""
        spots = cls()
        spots.feed(html)
        spots.close()
        return spots

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
        has = Protected.TOKEN_RE.search
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
        if self._raw and Protected.TOKEN_RE.search(data):
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
        if Protected.TOKEN_RE.search(data):
            self.html_ok = False


def _may_equal(a: str, b: str) -> bool:
    """Whether ``a`` and ``b`` can be equal for one member and not for another: each holds a
    placeholder and neither their fixed beginnings nor their fixed ends tell them apart."""
    split = Protected.TOKEN_RE.split
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


class Protected:
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
