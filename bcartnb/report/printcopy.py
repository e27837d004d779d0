"""The sample HTML mail for paper: a static copy the print CSS shows in place of the frame.

On screen the HTML part is shown in a sandboxed iframe (:func:`~bcartnb.report.mail.mail_frame`),
whose height is fixed: a browser prints only what the frame shows, so a printed report (a PDF
a reviewer signs) would lose the mail's lower half. No script may size the frame (the report
runs none), so the report carries a second, static copy of the mail that only print shows.

That copy is rebuilt here rather than pasted: the mail is read into a Lexbor tree (the parser
:mod:`bcartnb.mailcheck` uses) and written out again from an allowlist, every text and
attribute value escaped by us. What cannot be static or would reach out is left out: scripts,
styles sheets (they would restyle the report), SVG and MathML, frames, forms, event
attributes, links other than http(s) and mailto, images other than ``data:`` ones (a tracking
pixel would tell the sender who printed the report), and inline CSS that loads (``url(``) or
moves out of its box (``position``). Since the output is made of our own tags with escaped
values, no parser quirk of the input (mutation XSS) survives into it.
"""

from __future__ import annotations

import re
from typing import Final

from selectolax.lexbor import LexborHTMLParser, LexborNode

from bcartnb.active_content import url_scheme
from bcartnb.report.blocks import escape

__all__ = ["PRINT_CLASS", "print_copy"]

#: The class of the copy: hidden on screen (inline), shown by the report's print CSS.
PRINT_CLASS: Final = "bcartnb-mail-print"

_KEPT: Final = frozenset(
    [
        "a",
        "abbr",
        "b",
        "big",
        "blockquote",
        "br",
        "caption",
        "center",
        "code",
        "dd",
        "div",
        "dl",
        "dt",
        "em",
        "font",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "hr",
        "i",
        "img",
        "li",
        "ol",
        "p",
        "pre",
        "s",
        "small",
        "span",
        "strike",
        "strong",
        "sub",
        "sup",
        "table",
        "tbody",
        "td",
        "tfoot",
        "th",
        "thead",
        "tr",
        "tt",
        "u",
        "ul",
    ]
)
#: Dropped with everything inside them: never text a reader should see on paper.
_DROPPED: Final = frozenset(
    [
        "script",
        "style",
        "svg",
        "math",
        "noscript",
        "template",
        "iframe",
        "frame",
        "frameset",
        "object",
        "embed",
        "applet",
        "head",
        "title",
        "textarea",
        "select",
        "option",
        "button",
        "input",
        "form",
        "link",
        "meta",
        "base",
        "audio",
        "video",
        "canvas",
        "-comment",
    ]
)
_VOID: Final = frozenset({"br", "hr", "img"})
_ATTRIBUTES: Final = frozenset(
    [
        "align",
        "alt",
        "bgcolor",
        "border",
        "cellpadding",
        "cellspacing",
        "color",
        "colspan",
        "dir",
        "face",
        "height",
        "href",
        "lang",
        "rowspan",
        "size",
        "src",
        "style",
        "title",
        "valign",
        "width",
    ]
)
_LINK_SCHEMES: Final = frozenset({"http", "https", "mailto"})
#: Inline CSS that loads something, runs something, or leaves its box.
_BAD_STYLE: Final = re.compile(r"url\(|expression|@import|behavio|position|\\|javascript", re.I)


def print_copy(mail_html: str) -> str:
    """The mail's HTML as a static ``<div>`` hidden on screen, for the report's print CSS."""
    tree = LexborHTMLParser(mail_html)
    root = tree.body or tree.root
    inner = "".join(_node(child) for child in _children(root)) if root is not None else ""
    return f'<div class="{PRINT_CLASS}" style="display:none">{inner}</div>'


def _children(node: LexborNode) -> list[LexborNode]:
    return list(node.iter(include_text=True))


def _node(node: LexborNode) -> str:
    tag = node.tag or ""
    if tag == "-text":
        return escape(node.text_content or "")
    if tag in _DROPPED:
        return ""
    inner = "".join(_node(child) for child in _children(node))
    if tag not in _KEPT:
        return inner  # an unknown wrapper: its content stays, the element goes
    if tag == "img":
        return _image(node)
    attrs = "".join(_attribute(tag, k, v) for k, v in node.attributes.items())
    if tag in _VOID:
        return f"<{tag}{attrs}>"
    return f"<{tag}{attrs}>{inner}</{tag}>"


def _image(node: LexborNode) -> str:
    src = (node.attributes.get("src") or "").strip()
    if not src.lower().startswith("data:image/"):
        alt = (node.attributes.get("alt") or "").strip()
        return f"［画像{': ' + escape(alt) if alt else ''}］"
    attrs = "".join(_attribute("img", k, v) for k, v in node.attributes.items())
    return f"<img{attrs}>"


def _attribute(tag: str, name: str, value: str | None) -> str:
    name = name.lower()
    if name not in _ATTRIBUTES or value is None:
        return ""
    if name == "href" and (tag != "a" or url_scheme(value) not in _LINK_SCHEMES):
        return ""
    if name == "src" and tag != "img":
        return ""
    if name == "style" and _BAD_STYLE.search(value):
        return ""
    return f' {name}="{escape(value)}"'
