"""How deep an HTML mail nests, measured before css-inline builds it, in one linear pass.

css-inline parses with html5ever and walks the tree recursively: about 15,000 nested
``<div>`` (or 4,000 nested layout tables, 16,000 levels) overflow the process's stack and
kill it with SIGSEGV (exit 139), no message, no traceback, the Jupyter kernel with it. Before
that, parsing itself slows with the square of the depth (each start tag's scope check walks
the open elements: Lexbor takes 0.03 s at 4,000 levels, 0.07 s at 8,000), and so do the
composer's own HTML readers (the signature's place, the text part).

:data:`MAX_DEPTH` is 200 levels. Real newsletters nest 30 to 60 deep: a layout table is four
levels (``table``, ``tbody``, ``tr``, ``td``), and three layouts inside one another with
their inline elements stay under 60 (``tests/test_compose.py`` builds one). 200 leaves more
than three times that, and stays 50 times below the crash.

The measure is a tokenizer as the HTML standard splits a document (tags with their quoted
attributes, comments, raw text in ``<script>``, ``<style>``, ``<textarea>``…; none in
SVG/MathML) driving a model of the tree builder's stack of open elements, as html5ever
builds it inside css-inline: end tags close only what is in scope, ``<p>``, ``<li>``,
``<td>``, ``<tr>``, ``<option>`` close what the standard closes, a table gets its implied
``<tbody>`` and ``<tr>``, unclosed formatting elements (``<b>``, ``<font>``…) are reopened
where the parser reopens them, three alike at most; and where parsers differ it follows
html5ever: ``<noscript>`` is raw text (scripting on), ``<select>`` holds any element (the
2025 standard), the doctype decides quirks mode (whether ``<table>`` closes a ``<p>``), a
frameset that may replace the body is counted apart. Where the standard moves nodes around
the model keeps at least the levels the parser keeps (the adoption agency takes out the
misnested ``<font>`` of ``<font><p>…</font>``, not the inline elements it may also move; a
``</form>`` with open children keeps the form). Any level it missed would be missed on every
repetition of the same markup, and that is how a crash is built, so the tests hold it to
html5ever's own tree (read back from css-inline's output) on hostile markup and on a
property over repeated pieces: never less, and exact on the demo and a deep real newsletter.
It never recurses, a tag costs a bounded number of steps (about 2 µs: 3 ms for a 28 KB
newsletter), and it stops at the first element past the limit. Elements a parser would keep
reopening (``<b>`` left open across thousands of paragraphs) are bounded too: more than
:data:`_WORK_PER_CHAR` per character of input is refused as the same kind of error.

The parts: :mod:`~bcartnb.htmldepth.tokens` (the tokenizer's regular expressions),
:mod:`~bcartnb.htmldepth.doctype` (quirks mode), :mod:`~bcartnb.htmldepth.elements` (the
standard's lists of element names), :mod:`~bcartnb.htmldepth.model` (the parser's stack and
formatting list), :mod:`~bcartnb.htmldepth.rules` (what each tag does to them); here, the pass
over the tokens and the finding it makes.
"""

from __future__ import annotations

from dataclasses import dataclass

from bcartnb.exceptions import TemplateError
from bcartnb.htmldepth.doctype import quirks
from bcartnb.htmldepth.model import Model, Over
from bcartnb.htmldepth.rules import end_tag, start_tag
from bcartnb.htmldepth.tokens import TOKEN_RE, skip_other, skip_raw_text

__all__ = ["MAX_DEPTH", "Depth", "check_depth", "measure_depth"]

MAX_DEPTH = 200
_WORK_PER_CHAR = 1  # elements the model may open per character of input, reopened included


@dataclass(frozen=True)
class Depth:
    """What :func:`measure_depth` found: ``depth`` levels (counted up to ``limit + 1``);
    ``line`` where the limit was crossed, None when it was not; ``reason`` ``"depth"`` or
    ``"elements"`` (more reopened elements than the input can account for)."""

    depth: int
    line: int | None = None
    reason: str = "depth"


def measure_depth(html: str, limit: int = MAX_DEPTH) -> Depth:
    """The nesting depth of ``html`` as an HTML5 parser builds it (``html`` and ``body``
    included), counted up to ``limit + 1``: the first element past the limit ends the pass."""
    model = Model(limit, _WORK_PER_CHAR * len(html) + 4 * limit + 8)
    model.quirks = quirks(html)
    try:
        _scan(html, model)
    except Over as over:
        line = html.count("\n", 0, over.offset) + 1
        return Depth(model.deepest + (over.reason == "depth"), line, over.reason)
    return Depth(model.deepest)


def _scan(html: str, model: Model) -> None:
    """Every token of ``html`` into the model; a limit crossed is raised with its offset."""
    pos, size, search = 0, len(html), TOKEN_RE.search
    at = 0  # where the token being applied starts
    try:
        while pos < size:
            token = search(html, pos)
            lt = size if token is None else token.start()
            if lt > pos and model.formatting:  # text: formatting elements reopen for it
                at = pos
                model.reopen()
            if token is None:
                return
            at = lt
            slash, name, attrs = token.group(1, 2, 3)
            if name is None:
                pos = skip_other(html, token)
            elif slash:
                end_tag(model, name.lower())
                pos = token.end()
            else:
                raw = start_tag(model, name.lower(), attrs)
                pos = token.end() if raw is None else skip_raw_text(html, token, raw)
                if raw is not None and raw != "noframes" and model.framesets_seen:
                    _framesets_in(html, token.end(), pos, model)
    except Over as over:
        over.offset = at
        raise


def _framesets_in(html: str, start: int, end: int, model: Model) -> None:
    """The framesets in a raw-text element's text: where the frameset is the body, the parser
    ignores ``<title>``, ``<script>``… and reads their text as tags."""
    pos = start
    while pos < end:
        token = TOKEN_RE.search(html, pos, end)
        if token is None:
            return
        slash, name, _ = token.group(1, 2, 3)
        name = (name or "").lower()
        if name in ("frameset", "frame", "noframes") and not slash:
            model.frameset(name)
        elif name == "frameset":
            model.framesets = max(0, model.framesets - 1)
        if name == "noframes" and not slash:  # raw text there too
            pos = skip_raw_text(html, token, "noframes")
        else:
            pos = token.end() if name else skip_other(html, token)


def check_depth(html: str, where: str, where_ja: str, limit: int = MAX_DEPTH) -> None:
    """Refuse HTML that nests deeper than ``limit`` (css-inline would crash on it).

    ``where``/``where_ja`` name the HTML in the error (the template, or a member's mail);
    the line is the HTML's own.
    """
    found = measure_depth(html, limit)
    if found.line is None:
        return
    if found.reason == "depth":
        detail = f"nests deeper than {limit} levels at line {found.line}"
        ja = f"HTMLの入れ子が深すぎます（{found.line}行目で {limit} 段を超えます）"
    else:
        detail = f"reopens too many unclosed formatting elements by line {found.line}"
        ja = f"閉じていない書式タグ（<b>・<font> など）が多すぎます（{found.line}行目）"
    raise TemplateError(
        f"{where}: HTML {detail}; simplify the nesting",
        ja=f"{where_ja}: {ja}。入れ子を減らしてください。",
    )
