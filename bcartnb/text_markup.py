"""HTML tags in a text mail: markup pasted into the body with 「HTMLメールで送信」 unticked.

A body copied from B-Cart's HTML template, or from a web page's source, goes out as a text
mail with its tags as literal characters (``<p>``, ``<br>``, ``<a href=…>``), which looks
broken to every member. Only HTML's own element names count as tags, so an address written
``<info@example.co.jp>``, a link ``<https://…>`` or a word in brackets 〈新商品〉 is left alone;
a comment and a doctype count. One :class:`~bcartnb.mailcheck.Finding` (a warning, never a
refusal: a mail about HTML may quote a tag on purpose), from mailcheck for the dry run and the
confirmation, and from :func:`html_tags` for the compose form as it is typed.
"""

from __future__ import annotations

import re
from typing import Final

__all__ = ["HTML_IN_TEXT", "HTML_IN_TEXT_MESSAGE", "html_in_text_detail", "html_tags"]

#: The finding's code (:data:`bcartnb.mailcheck.CODES`).
HTML_IN_TEXT: Final = "html_in_text"
HTML_IN_TEXT_MESSAGE: Final = (
    "テキストメールの本文にHTMLのタグがあります。このままではタグがそのまま文字として届きます。"
    "HTMLメールにするときは「HTMLメールで送信」にチェックを入れてください"
    "（キャンペーンファイルでは html = true）。"
)

_ELEMENTS: Final = (
    "a|abbr|address|area|article|aside|b|big|blockquote|body|br|button|caption|center|cite|"
    "code|col|colgroup|dd|del|details|div|dl|dt|em|figure|font|footer|form|h[1-6]|head|"
    "header|hr|html|i|iframe|img|input|ins|label|li|link|main|meta|nav|ol|p|picture|pre|q|s|"
    "script|section|small|source|span|strike|strong|style|sub|summary|sup|table|tbody|td|"
    "tfoot|th|thead|title|tr|tt|u|ul|video"
)
# a start or end tag of an HTML element (its attributes on the same line, no nested < >),
# a comment's start, or a doctype; linear: each alternative consumes without backtracking
_TAG_RE: Final = re.compile(
    rf"</?(?:{_ELEMENTS})(?=[\s/>])[^<>\n]*>|<!--|<!doctype\b", re.IGNORECASE
)
_SHOWN: Final = 40


def html_tags(text: str) -> list[tuple[int, str]]:
    """(line number, tag) of each HTML tag in ``text``, in order; [] when there is none."""
    out = []
    for number, line in enumerate(text.splitlines(), start=1):
        out += [(number, found.group()) for found in _TAG_RE.finditer(line)]
    return out


def html_in_text_detail(tags: list[tuple[int, str]], part: str = "テキストパート") -> str:
    """Where the first tag is and how many there are (「… 3 行目: <p>（ほか 5 か所）」)."""
    line, tag = tags[0]
    shown = tag if len(tag) <= _SHOWN else tag[: _SHOWN - 1] + "…"
    more = f"（ほか {len(tags) - 1:,} か所）" if len(tags) > 1 else ""
    return f"{part} {line} 行目: {shown}{more}"
