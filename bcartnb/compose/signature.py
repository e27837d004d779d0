"""Where the signature goes and what it looks like: text, inline HTML, or a block in the layout.

A template places it with ``{{ signature }}`` or ``{{ 署名 }}`` (inline HTML in an HTML mail,
text in a text mail; empty when it is off). Otherwise a text mail ends with it, and an HTML
mail gets it as a ``<p>`` inside the body's main container, so it inherits the layout's width,
font and colours: the innermost element holding all of the body's text (a layout table's last
text cell when that is a table or row; the nearest block around it when it is a paragraph,
heading or link); no such element (text straight in ``<body>``) means before ``</body>``, or at
the end of a fragment (:func:`_signature_spot`). The HTML form escapes the text, breaks lines
with ``<br>`` and links every http(s) URL and mail address; ``signature_html`` in the settings
replaces it as it is.

The spot is found with the standard library's ``HTMLParser``, not selectolax: the signature is
spliced into the rendered HTML at the source offset of an end tag, so that every other byte of
the body stays as the template wrote it, and selectolax (lexbor) builds a tree without source
positions (an end tag it implied has none at all); serializing its tree instead would rewrite
the whole body.
"""

from __future__ import annotations

import html as html_lib
import re
from dataclasses import dataclass
from html.parser import HTMLParser
from typing import TYPE_CHECKING

from bcartnb.compose.plaintext import html_to_text

if TYPE_CHECKING:
    from bcartnb.compose.mail import Draft
    from bcartnb.settings import Settings

__all__ = ["Signature", "insert_html_signature"]

_BODY_END_RE = re.compile(r"</body\s*>", re.IGNORECASE)

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


def insert_html_signature(html: str, signature: str) -> str:
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


@dataclass(frozen=True)
class Signature:
    """The signature's three forms, all empty when it is off: ``text`` for a text mail,
    ``inline`` HTML for ``{{ signature }}``, and the ``html`` block
    :func:`insert_html_signature` puts in the main container; with the campaign's warnings."""

    text: str = ""
    inline: str = ""
    html: str = ""
    warnings: tuple[str, ...] = ()

    @classmethod
    def of(cls, settings: Settings, draft: Draft) -> Signature:
        """The settings' signature for this draft, and a warning when it is empty or the body
        already holds it (it would be there twice)."""
        if not draft.insert_signature:
            return cls()
        text = settings.signature.strip("\r\n").replace("\r\n", "\n")
        configured = (settings.signature_html or "").strip()
        if not text.strip() and not configured:
            return cls(
                warnings=(
                    "署名が設定されていません (signature is empty): "
                    "「設定している署名を挿入」は何もしません",
                )
            )
        inline = html = ""
        if draft.html:
            inline = configured or _signature_html(text)
            html = configured or f"<p>{inline}</p>"
        body_text = html_to_text(draft.body) if draft.html else draft.body
        dup = bool(text.strip()) and _squash(text) in _squash(body_text)
        if draft.html and _squash(inline) in _squash(draft.body):
            dup = True
        if not dup:
            return cls(text, inline, html)
        return cls(
            text,
            inline,
            html,
            (
                "本文にすでに署名が含まれています: 「設定している署名を挿入」がオンのため署名が"
                "二重になります (the body already contains the signature)",
            ),
        )


def _squash(value: str) -> str:
    return "".join(value.split())
