"""Active content in a mail's HTML: what mail clients strip and spam filters score as hostile.

The half of 送信前の確認 (:mod:`bcartnb.mailcheck`) that reads markup as an attacker writes it:
``<script>`` (in SVG too), ``on…`` event attributes, ``<meta http-equiv="refresh">``,
``<base>``, ``<form>``, frames and plug-ins, CSS that loads from another host (``url()``,
``@import``, ``<link rel="stylesheet">``) and ``javascript:``-like schemes on any link,
SVG and MathML ones included. It reads the one Lexbor tree the check parsed, as a lenient
mail client would: a scheme past case, white space, controls and invisible characters
(:func:`url_scheme`), CSS with its escapes decoded. Each hit names the element as written and,
when the source shows it unambiguously, its line; mailcheck makes them findings.
"""

from __future__ import annotations

import bisect
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Iterator
from typing import NamedTuple

from selectolax.lexbor import LexborHTMLParser, LexborNode

__all__ = [
    "ACTIVE_MESSAGES",
    "MAX_PER_CODE",
    "SCHEME_RE",
    "SCRIPT_SCHEMES",
    "UNSAFE_SCHEMES",
    "Hit",
    "active_content",
    "url_scheme",
]

SCRIPT_SCHEMES = frozenset({"javascript", "vbscript", "livescript", "mocha"})
UNSAFE_SCHEMES = SCRIPT_SCHEMES | {"data", "file"}
# What a lenient reader may skip inside a scheme: white space, controls (NUL is U+FFFD by
# then), soft hyphen, zero-width and direction marks, the BOM.
_SCHEME_NOISE_RE = re.compile(
    "[\\s\x00-\x1f\x7f-\x9f\u00ad\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2064\ufeff\ufffd]+"
)
SCHEME_RE = re.compile(r"[a-z][a-z0-9+.\-]*")
_COLON_RE = re.compile("[:\uff1a\ufe55]")  # and the full-width and small colons NFKC folds


def url_scheme(value: str) -> str | None:
    """A URL's scheme as the most lenient mail client reads it: lower case, with white space,
    controls and invisible characters anywhere before the colon dropped (``JaVa\\tScRiPt:``,
    ``\\x01javascript:``, ``java\\u200bscript:`` are all ``javascript``); None when none.

    Stricter than a browser on purpose: a finding only asks a person to look.
    """
    colon = _COLON_RE.search(value)
    if colon is None:
        return None
    head = _SCHEME_NOISE_RE.sub("", unicodedata.normalize("NFKC", value[: colon.start()]))
    head = head.lower()
    return head if SCHEME_RE.fullmatch(head) else None


#: each code's message: what it is and what the recipient's side does with it
ACTIVE_MESSAGES = {
    "link_scheme": "メールでは使えないリンク先（javascript: など）があります。受信側で消されるか、"
    "迷惑メールと判定されます。",
    "script": "スクリプト（<script>）があります。メールソフトは実行せずに取り除き、"
    "迷惑メールと判定される原因になります。",
    "event_handler": "イベント属性（onclick などの on… 属性）があります。メールソフトは実行せずに"
    "取り除き、迷惑メールと判定される原因になります。",
    "meta_refresh": '自動で別のページへ移る指定（<meta http-equiv="refresh">）があります。'
    "メールでは動かず、フィッシングの手口として迷惑メールと判定されます。",
    "base": "<base> 要素があります。メールソフトは取り除くか無視し、相対URLのリンクや画像が"
    "壊れます。",
    "form": "フォーム（<form>）があります。多くのメールソフトは送信できないか警告を出します。"
    "入力はWebページで受け付けてください。",
    "embed": "埋め込み（<iframe>・<object>・<embed> など）があります。メールソフトは表示せずに"
    "取り除き、迷惑メールと判定される原因になります。",
    "css_remote": "CSSが外部のファイルを読み込んでいます（url()・@import・<link>）。多くの"
    "メールソフトは読み込まないため、表示が崩れます。",
}
_EMBEDS = frozenset({"iframe", "frame", "frameset", "object", "embed", "applet"})
# SVG elements whose href is an image or a shape, where a data: URL is just a picture
_SVG_PICTURES = frozenset({"image", "use", "feimage"})
MAX_PER_CODE = 10  # findings of one code; the last says how many more
_LINE_END_RE = re.compile(r"\r\n?|\n")
_CSS_ESCAPE_RE = re.compile(r"\\(?:([0-9a-fA-F]{1,6})[ \t\n\r\f]?|(.))", re.DOTALL)
_CSS_URL_RE = re.compile(
    r"(?<![\w\-])url\(\s*+(?:\"([^\"]*+)|'([^']*+)|([^)\s]*+))|@import\s*+(?:\"([^\"]*+)|'([^']*+))",
    re.IGNORECASE,
)


def _css_char(m: re.Match[str]) -> str:
    if m.group(1) is None:
        return m.group(2)
    code = int(m.group(1), 16)
    return chr(code) if 0 < code <= 0x10FFFF and not 0xD800 <= code <= 0xDFFF else "\ufffd"


def _css_remote(css: str) -> Iterator[str]:
    """The URLs ``css`` loads from another host (``url()``, ``@import``), escapes decoded.

    Comments are not removed: ``u/**/rl(`` is no ``url(`` to a browser either, and a comment
    that only looks like one (``content: "/*"``) must not hide what follows it.
    """
    for m in _CSS_URL_RE.finditer(_CSS_ESCAPE_RE.sub(_css_char, css)):
        url = next(g for g in m.groups() if g is not None)
        if _remote(url):
            yield url


def _remote(url: str) -> bool:
    """Whether a CSS or stylesheet URL is fetched from a host (not data:, cid:, #id, relative)."""
    url = url.strip(" \t\n\r\f")
    if url[:2].replace("\\", "/") == "//":
        return True
    scheme = url_scheme(url)
    return scheme is not None and scheme not in ("data", "cid", "mid", "about")


def _tag_text(tag: str, attrs: dict[str, str | None], names: Iterable[str]) -> str:
    shown = "".join(f' {n}="{attrs[n] or ""}"' for n in names if n in attrs)
    return f"<{tag}{shown}>"


def _node_hits(
    tag: str, attrs: dict[str, str | None], node: LexborNode
) -> Iterator[tuple[str, str]]:
    """(code, what) for each active thing one element carries."""
    low = {name.lower(): value or "" for name, value in attrs.items()}
    if tag == "script":
        yield "script", _tag_text(tag, attrs, ("src", "type"))
    elif tag in _EMBEDS:
        yield "embed", _tag_text(tag, attrs, ("src", "data", "code"))
    elif tag == "form":
        yield "form", _tag_text(tag, attrs, ("action",))
    elif tag == "base":
        yield "base", _tag_text(tag, attrs, ("href", "target"))
    elif tag == "meta" and low.get("http-equiv", "").strip().lower() == "refresh":
        yield "meta_refresh", _tag_text(tag, attrs, ("http-equiv", "content"))
    elif tag == "link" and "stylesheet" in low.get("rel", "").lower().split():
        if _remote(low.get("href", "")):
            yield "css_remote", _tag_text(tag, attrs, ("rel", "href"))
    elif tag == "style":
        for url in _css_remote(node.text(deep=True)):
            yield "css_remote", f"<style> の {url}"
    handlers = [name for name in attrs if name.lower().startswith("on") and len(name) > 2]
    if handlers:
        yield "event_handler", _tag_text(tag, attrs, handlers)
    for url in _css_remote(low.get("style", "")):
        yield "css_remote", f"<{tag} style> の {url}"
    unsafe = SCRIPT_SCHEMES if tag in _SVG_PICTURES else UNSAFE_SCHEMES
    for name in ("href", "xlink:href"):
        if name in low and tag not in ("link", "base") and url_scheme(low[name]) in unsafe:
            yield "link_scheme", _tag_text(tag, attrs, [n for n in attrs if n.lower() == name])
    if tag in ("animate", "set") and low.get("attributename", "").lower() in (
        "href",
        "xlink:href",
    ):  # SVG animation that writes a link's target
        values = [low.get(n, "") for n in ("to", "from", "by")] + low.get("values", "").split(";")
        if any(url_scheme(v) in SCRIPT_SCHEMES for v in values):
            yield "link_scheme", _tag_text(tag, attrs, list(attrs))


class _SourceLines:
    """The line of the n-th ``<tag`` in the source, when the source has exactly as many
    ``<tag`` as the tree has such elements (so the n-th is that element); else nothing.

    A parser builds some elements without a tag in the source (a link reopened across a
    paragraph) and drops others (a ``<form>`` inside a form): then the line is left out
    rather than guessed.
    """

    def __init__(self, html: str, counts: Counter[str]) -> None:
        self.html = html
        self.counts = counts
        self._offsets: dict[str, list[int]] = {}
        self._starts: list[int] | None = None

    def at(self, tag: str, index: int) -> str:
        offsets = self._offsets.get(tag)
        if offsets is None:
            pattern = re.compile(rf"<{re.escape(tag)}(?=[\t\n\f\r />]|\Z)", re.IGNORECASE)
            offsets = self._offsets[tag] = [m.start() for m in pattern.finditer(self.html)]
        if len(offsets) != self.counts[tag]:
            return ""
        if self._starts is None:
            self._starts = [0] + [m.end() for m in _LINE_END_RE.finditer(self.html)]
        return f" {bisect.bisect_right(self._starts, offsets[index])}行目"


class Hit(NamedTuple):
    """One active thing: its finding's code, `` N行目`` (or "" when the source does not say),
    the element as written (``<div onclick="…">``) and, on the last of a capped code, how
    many more there are."""

    code: str
    line: str
    what: str
    more: str = ""


def active_content(tree: LexborHTMLParser, html: str) -> list[Hit]:
    """Scripts, handlers, refreshes, frames, forms, ``<base>``, remote CSS and unsafe link
    schemes in ``tree`` (parsed from ``html``), on every element (hidden ones too: hiding
    does not make them safe), at most :data:`MAX_PER_CODE` of each code."""
    hits: dict[str, list[tuple[str, int, str]]] = {}
    more: Counter[str] = Counter()
    counts: Counter[str] = Counter()
    shown_urls: set[str] = set()
    root = tree.root
    for node in root.traverse() if root is not None else ():
        if not node.is_element_node:
            continue
        tag = (node.tag or "").lower()
        counts[tag] += 1
        for code, what in _node_hits(tag, node.attributes, node):
            if code == "css_remote":  # one finding a URL, however many elements use it
                if what.rsplit(" の ", 1)[-1] in shown_urls:
                    continue
                shown_urls.add(what.rsplit(" の ", 1)[-1])
            same = hits.setdefault(code, [])
            if len(same) < MAX_PER_CODE:
                same.append((tag, counts[tag] - 1, what))
            else:
                more[code] += 1
    lines = _SourceLines(html, counts)
    out = []
    for code, same in hits.items():
        for i, (tag, index, what) in enumerate(same):
            extra = f"（ほかに {more[code]:,} 件）" if more[code] and i == len(same) - 1 else ""
            out.append(Hit(code, lines.at(tag, index), what, extra))
    return out
