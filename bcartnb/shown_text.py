"""What a recipient reads of a mail: each part's shown text, line by line, with the links
on each line.

:mod:`bcartnb.mailcheck` looks for what the law asks (a sender, an address, a contact, a way
to refuse) in the text a recipient sees, and "next to" means within a few of these lines.
Making those lines out of HTML (block elements break a line, table cells do not, hidden
elements are not shown, a link's target is kept with its line) is a concern of its own;
held apart from the checks, it also keeps mailcheck under the house's ~600 lines.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass

from selectolax.lexbor import LexborHTMLParser, LexborNode

__all__ = ["Part", "clean", "html_part", "text_part"]


@dataclass(frozen=True)
class Part:
    """One part a recipient may read (テキストパート or HTMLパート), as lines to look near."""

    name: str
    lines: tuple[str, ...]  # visible text, NFKC, one entry a non-blank line
    targets: tuple[tuple[str, ...], ...]  # link targets (href) on each line


def clean(value: str) -> str:
    """Text as compared: NFKC (全角 digits and letters read as the checks' patterns), no NUL."""
    return unicodedata.normalize("NFKC", value.replace("\x00", ""))


def text_part(text: str) -> Part:
    """A text part's non-blank lines (a text mail has no link targets but its text)."""
    lines = [clean(line).strip() for line in text.replace("\r", "\n").split("\n")]
    kept = tuple(line for line in lines if line)
    return Part("テキストパート", kept, tuple(() for _ in kept))


_BLOCKS = frozenset(
    {
        *("address", "article", "aside", "blockquote", "body", "br", "center", "dd", "details"),
        *("div", "dl", "dt", "fieldset", "figcaption", "figure", "footer", "form", "header"),
        *("h1", "h2", "h3", "h4", "h5", "h6", "hr", "html", "li", "main", "nav", "ol", "p"),
        *("pre", "section", "summary", "table", "tbody", "tfoot", "thead", "tr", "ul"),
    }
)
_CELLS = frozenset({"td", "th"})
_UNSHOWN = frozenset({"head", "script", "style", "template", "noscript", "title", "-comment"})
_HIDDEN_STYLE_RE = re.compile(
    r"display\s*:\s*none|visibility\s*:\s*hidden|mso-hide\s*:\s*all", re.IGNORECASE
)
_SPACE_RE = re.compile(r"\s+")


def _hidden(node: LexborNode) -> bool:
    if node.tag in _UNSHOWN:
        return True
    attrs = node.attributes
    if "hidden" in attrs:
        return True
    style = attrs.get("style")
    return bool(style and _HIDDEN_STYLE_RE.search(style))


def _walk(root: LexborNode) -> Iterator[tuple[str, LexborNode]]:
    """("open" | "close" | "text", node) in document order, hidden subtrees skipped.

    An explicit stack, not recursion: a mail may nest elements thousands deep.
    """
    stack: list[tuple[bool, LexborNode]] = [(False, root)]
    while stack:
        closing, node = stack.pop()
        if closing:
            yield "close", node
            continue
        if node.is_text_node:
            yield "text", node
            continue
        if not node.is_element_node and not node.is_document_node:
            continue
        if node.is_element_node and _hidden(node):
            continue
        yield "open", node
        stack.append((True, node))
        children = list(node.iter(include_text=True))
        stack.extend((False, child) for child in reversed(children))


def html_part(tree: LexborHTMLParser) -> Part:
    """An HTML part's shown lines, as a client lays them out, each with its links' targets."""
    lines: list[str] = []
    targets: list[list[str]] = []
    current: list[str] = []
    current_targets: list[str] = []

    def newline() -> None:
        line = _SPACE_RE.sub(" ", clean("".join(current))).strip()
        if line:
            lines.append(line)
            targets.append(list(current_targets))
        elif current_targets and targets:
            targets[-1] += current_targets
        current.clear()
        current_targets.clear()

    root = tree.root
    for event, node in _walk(root) if root is not None else ():
        if event == "text":
            current.append(node.text_content or "")
        elif node.tag in _BLOCKS:
            newline()
        elif node.tag in _CELLS:
            current.append(" ")
        if event == "open" and node.tag == "a":
            href = node.attributes.get("href")
            if href:
                current_targets.append(href)
    newline()
    return Part("HTMLパート", tuple(lines), tuple(tuple(t) for t in targets))
