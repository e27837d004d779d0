"""The element names the tree builder treats alike, as the HTML standard lists them.

Which elements are void, raw text, formatting (reopened), special, scope boundaries, table
parts; which start tags close an open ``<p>``; which break out of SVG and MathML. Each list
is the standard's (html5ever's where the two differ), so the model reads like the spec.
"""

from __future__ import annotations

import re

from bcartnb.htmldepth.tokens import WS

__all__ = [
    "BLOCK_ENDS",
    "BREAKOUT",
    "CLOSES_P",
    "FLAGS",
    "FONT_BREAKS_RE",
    "FOREIGN_BOUNDARY",
    "FORMATTING",
    "HEADINGS",
    "HTML",
    "HTML_ANNOTATION_RE",
    "IMPLIED_ENDS",
    "MARKERS",
    "MATH",
    "MATH_TEXT",
    "NOT_TABLE_MODES",
    "NO_REOPEN",
    "RAW",
    "SVG",
    "SVG_POINTS",
    "TABLE_PARTS",
    "TABLE_STARTS",
    "TEMPLATE_KEEPS",
    "TEMPLATE_MODES",
    "VOID",
]

FONT_BREAKS_RE = re.compile(rf"(?:^|[{WS}/])(?:color|face|size)(?:[{WS}/=]|$)", re.IGNORECASE)
HTML_ANNOTATION_RE = re.compile(
    r"encoding\s*=\s*[\"']?\s*(?:text/html|application/xhtml\+xml)", re.IGNORECASE
)

HTML, SVG, MATH = 0, 1, 2


def _names(words: str) -> frozenset[str]:
    return frozenset(words.split())


VOID = _names(
    "area base basefont bgsound br col embed frame hr image img input keygen link meta param "
    "source track wbr"
)
# Raw text: html5ever, inside css-inline, parses with scripting on, so <noscript> is one too
RAW = _names("script style xmp iframe noembed noframes noscript textarea title plaintext")
FORMATTING = _names("a b big code em font i nobr s small strike strong tt u")
HEADINGS = ("h1", "h2", "h3", "h4", "h5", "h6")
CLOSES_P = _names(
    "address article aside blockquote center details dialog dir div dl fieldset figcaption "
    "figure footer header hgroup main menu nav ol p search section summary ul h1 h2 h3 h4 h5 "
    "h6 pre listing form li dd dt plaintext hr xmp"
)
BLOCK_ENDS = _names(
    "address article aside blockquote button center details dialog dir div dl fieldset "
    "figcaption figure footer header hgroup listing main menu nav ol pre search section "
    "summary ul applet marquee object dd dt"
)
NO_REOPEN = CLOSES_P | _names(
    "html head body table caption colgroup col tbody thead tfoot tr td th iframe noembed "
    "noframes textarea title style script base link meta template frameset frame"
)
_SPECIAL = _names(
    "address applet area article aside base basefont bgsound blockquote body br button "
    "caption center col colgroup dd details dir div dl dt embed fieldset figcaption figure "
    "footer form frame frameset h1 h2 h3 h4 h5 h6 head header hgroup hr html iframe img "
    "input keygen li link listing main marquee menu meta nav noembed noframes noscript "
    "object ol p param plaintext pre script search section select source style summary "
    "table tbody td template textarea tfoot th thead title tr track ul wbr xmp"
)
# Scope boundaries, select included: html5ever reads a <select> as the 2025 standard does
# (any element inside it; a <select>, an <input> or </select> closes it)
_SCOPE = _names("applet caption html table td th marquee object template select")
MARKERS = _names("applet caption marquee object template td th")
SVG_POINTS = _names("foreignobject desc title")  # HTML inside SVG
MATH_TEXT = _names("mi mo mn ms mtext")
BREAKOUT = _names(
    "b big blockquote body br center code dd div dl dt em embed h1 h2 h3 h4 h5 h6 head hr i "
    "img li listing menu meta nobr ol p pre ruby s small span strong strike sub sup table tt "
    "u ul var"
)
IMPLIED_ENDS = _names("dd dt li optgroup option p rb rp rt rtc")
TABLE_PARTS = ("table", "tbody", "thead", "tfoot", "tr", "template")
TABLE_STARTS = _names("caption col colgroup tbody thead tfoot tr td th")
NOT_TABLE_MODES = ("td", "th", "caption", "colgroup", "template")
# what a template's first start tag leaves it reading: these as in <head>, table parts as set
# below, anything else as a body
TEMPLATE_KEEPS = _names(
    "base basefont bgsound link meta noframes script style template title caption col "
    "colgroup tbody thead tfoot tr td th"
)
# a template's mode, set by its first table part: where later parts go
TEMPLATE_MODES = {
    **dict.fromkeys(("caption", "colgroup", "tbody", "thead", "tfoot"), "table"),
    "col": "colgroup",
    "tr": "tbody",
    "td": "tr",
    "th": "tr",
}


def _html_flags(name: str) -> tuple[str, ...]:
    """The position lists an HTML element joins: the scopes it bounds, whether it is special."""
    flags = []
    if name in _SCOPE:
        flags.append("scope")
    if name in ("html", "table", "template"):
        flags.append("table")
    if name in _SPECIAL:
        flags.append("special")
        if name not in ("address", "div", "p", "li"):
            flags.append("li_stop")
        if name not in ("address", "div", "p", "dd", "dt"):
            flags.append("dd_stop")
    return tuple(flags)


FLAGS = {name: _html_flags(name) for name in _SPECIAL | _SCOPE}
FOREIGN_BOUNDARY = ("scope", "special", "li_stop", "dd_stop")
