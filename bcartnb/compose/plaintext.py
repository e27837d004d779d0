"""The text/plain part of an HTML mail: html2text told to write plain Japanese text.

HTML mail is multipart/alternative with text/plain first (RFC 2046: the preferred part last).
The text part comes from html2text, chosen over inscriptis because it is already a dependency
and can be told not to wrap lines (wrapping breaks Japanese text and long URLs) and to flatten
layout tables; a subclass (:class:`_PlainText`) makes it write plain Japanese text rather than
Markdown: headings without ``#``, ``リンクの文字（https://…）`` for a link (the target alone when
the text is the target, so every link's target is kept), 「・」 list items, no emphasis marks or
backslash escapes. html2text reads HTML with the standard library's ``HTMLParser``; the fast
path's analysis (:mod:`bcartnb.compose.fastpath`) reads it the same way, so it sees what this
converter sees.
"""

from __future__ import annotations

import re

import html2text

__all__ = ["html_to_text", "tidy_text"]


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
    return tidy_text(_PlainText().handle(html))


_LINE_END_SPACES_RE = re.compile(r"[ \t]+$", re.MULTILINE)
_BLANK_LINES_RE = re.compile(r"\n{3,}")


def tidy_text(text: str) -> str:
    """No Markdown hard-break spaces at line ends, at most one blank line, one final newline."""
    text = _LINE_END_SPACES_RE.sub("", text)
    return _BLANK_LINES_RE.sub("\n\n", text).strip("\n") + "\n"
