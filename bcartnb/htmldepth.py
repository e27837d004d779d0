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
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass

from bcartnb.exceptions import TemplateError

__all__ = ["MAX_DEPTH", "Depth", "check_depth", "measure_depth"]

MAX_DEPTH = 200
_WORK_PER_CHAR = 1  # elements the model may open per character of input, reopened included

_WS = "\t\n\f\r "
_ATTR = (
    rf"[^{_WS}/>][^{_WS}/>=]*+"
    rf"(?:[{_WS}]*+=[{_WS}]*+(?:\"[^\"]*+\"|'[^']*+'|[^{_WS}>\"'][^{_WS}>]*+|(?=>))|(?![{_WS}]*+=))"
)
# The next token: a whole tag as the tokenizer reads it (1: "/" for an end tag, 2: its name,
# 3: its attributes), else (4) a comment, CDATA, a bogus comment or a "</" that starts no
# tag, else a tag that runs to the end of the input (the tokenizer drops it). The grammar is
# deterministic, so possessive quantifiers read it as the standard does, in linear time; a
# "<" that matches none of these is text.
_TAG = rf"<(/?)([A-Za-z][^{_WS}/>]*+)((?:[{_WS}/]++|{_ATTR})*+)>"
_TOKEN_RE = re.compile(rf"{_TAG}|<(!--|!\[CDATA\[|[!?/])|<[A-Za-z]")
_TAG_RE = re.compile(_TAG)
_ATTR_TOKENS_RE = re.compile(rf"[{_WS}/]++|{_ATTR}")
_COMMENT_END_RE = re.compile(r"--!?>")
_FONT_BREAKS_RE = re.compile(rf"(?:^|[{_WS}/])(?:color|face|size)(?:[{_WS}/=]|$)", re.IGNORECASE)
_HTML_ANNOTATION_RE = re.compile(
    r"encoding\s*=\s*[\"']?\s*(?:text/html|application/xhtml\+xml)", re.IGNORECASE
)

# Quirks mode (no doctype, or an old one) decides whether a <table> closes an open <p>; the
# doctype's public and system identifiers as the standard's initial insertion mode reads them
_DOCTYPE_RE = re.compile(
    rf"<!doctype(?:[{_WS}]+([^{_WS}>]+))?[{_WS}]*"
    rf"(?:public[{_WS}]*(?:\"([^\"]*)\"|'([^']*)')[{_WS}]*(?:\"([^\"]*)\"|'([^']*)')?"
    rf"|system[{_WS}]*(?:\"([^\"]*)\"|'([^']*)'))?[{_WS}]*>",
    re.IGNORECASE,
)
_BEFORE_DOCTYPE_RE = re.compile(rf"(?:[{_WS}\ufeff]++|<!--.*?-->|<\?[^>]*+>)*+", re.DOTALL)
_QUIRKS_IDS = (
    "html",
    "-//w3o//dtd w3 html strict 3.0//en//",
    "-/w3c/dtd html 4.0 transitional/en",
)
_QUIRKS_PREFIXES = (
    "+//silmaril//dtd html pro v0r11 19970101//",
    "-//advasoft ltd//dtd html 3.0 aswedit + extensions//",
    "-//as//dtd html 3.0 aswedit + extensions//",
    "-//ietf//dtd html 2.0 level 1//",
    "-//ietf//dtd html 2.0 level 2//",
    "-//ietf//dtd html 2.0 strict level 1//",
    "-//ietf//dtd html 2.0 strict level 2//",
    "-//ietf//dtd html 2.0 strict//",
    "-//ietf//dtd html 2.0//",
    "-//ietf//dtd html 2.1e//",
    "-//ietf//dtd html 3.0//",
    "-//ietf//dtd html 3.2 final//",
    "-//ietf//dtd html 3.2//",
    "-//ietf//dtd html 3//",
    "-//ietf//dtd html level 0//",
    "-//ietf//dtd html level 1//",
    "-//ietf//dtd html level 2//",
    "-//ietf//dtd html level 3//",
    "-//ietf//dtd html strict level 0//",
    "-//ietf//dtd html strict level 1//",
    "-//ietf//dtd html strict level 2//",
    "-//ietf//dtd html strict level 3//",
    "-//ietf//dtd html strict//",
    "-//ietf//dtd html//",
    "-//metrius//dtd metrius presentational//",
    "-//microsoft//dtd internet explorer 2.0 html strict//",
    "-//microsoft//dtd internet explorer 2.0 html//",
    "-//microsoft//dtd internet explorer 2.0 tables//",
    "-//microsoft//dtd internet explorer 3.0 html strict//",
    "-//microsoft//dtd internet explorer 3.0 html//",
    "-//microsoft//dtd internet explorer 3.0 tables//",
    "-//netscape comm. corp.//dtd html//",
    "-//netscape comm. corp.//dtd strict html//",
    "-//o'reilly and associates//dtd html 2.0//",
    "-//o'reilly and associates//dtd html extended 1.0//",
    "-//o'reilly and associates//dtd html extended relaxed 1.0//",
    "-//softquad software//dtd hotmetal pro 6.0::19990601::extensions to html 4.0//",
    "-//softquad//dtd hotmetal pro 4.0::19971010::extensions to html 4.0//",
    "-//spyglass//dtd html 2.0 extended//",
    "-//sq//dtd html 2.0 hotmetal + extensions//",
    "-//sun microsystems corp.//dtd hotjava html//",
    "-//sun microsystems corp.//dtd hotjava strict html//",
    "-//w3c//dtd html 3 1995-03-24//",
    "-//w3c//dtd html 3.2 draft//",
    "-//w3c//dtd html 3.2 final//",
    "-//w3c//dtd html 3.2//",
    "-//w3c//dtd html 3.2s draft//",
    "-//w3c//dtd html 4.0 frameset//",
    "-//w3c//dtd html 4.0 transitional//",
    "-//w3c//dtd html experimental 19960712//",
    "-//w3c//dtd html experimental 970421//",
    "-//w3c//dtd w3 html//",
    "-//w3o//dtd w3 html 3.0//",
    "-//webtechs//dtd mozilla html 2.0//",
    "-//webtechs//dtd mozilla html//",
)


def _quirks(html: str) -> bool:
    """Whether a parser reads ``html`` in quirks mode: no doctype first, a malformed one, or
    one of the old ones the standard lists."""
    start = _BEFORE_DOCTYPE_RE.match(html)
    found = _DOCTYPE_RE.match(html, start.end() if start else 0)
    if found is None or (found.group(1) or "").lower() != "html":
        return True
    public = next((g for g in found.group(2, 3) if g is not None), None)
    system = next((g for g in found.group(4, 5, 6, 7) if g is not None), None)
    public = (public or "").lower()
    return (
        public.startswith(_QUIRKS_PREFIXES)
        or public in _QUIRKS_IDS
        or (
            system is None
            and public.startswith(
                ("-//w3c//dtd html 4.01 frameset//", "-//w3c//dtd html 4.01 transitional//")
            )
        )
        or (system or "").lower() == "http://www.ibm.com/data/dtd/v11/ibmxhtml1-transitional.dtd"
    )


HTML, SVG, MATH = 0, 1, 2


def _names(words: str) -> frozenset[str]:
    return frozenset(words.split())


_VOID = _names(
    "area base basefont bgsound br col embed frame hr image img input keygen link meta param "
    "source track wbr"
)
# Raw text: html5ever, inside css-inline, parses with scripting on, so <noscript> is one too
_RAW = _names("script style xmp iframe noembed noframes noscript textarea title plaintext")
_FORMATTING = _names("a b big code em font i nobr s small strike strong tt u")
_HEADINGS = ("h1", "h2", "h3", "h4", "h5", "h6")
_CLOSES_P = _names(
    "address article aside blockquote center details dialog dir div dl fieldset figcaption "
    "figure footer header hgroup main menu nav ol p search section summary ul h1 h2 h3 h4 h5 "
    "h6 pre listing form li dd dt plaintext hr xmp"
)
_BLOCK_ENDS = _names(
    "address article aside blockquote button center details dialog dir div dl fieldset "
    "figcaption figure footer header hgroup listing main menu nav ol pre search section "
    "summary ul applet marquee object dd dt"
)
_NO_REOPEN = _CLOSES_P | _names(
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
_MARKERS = _names("applet caption marquee object template td th")
_SVG_POINTS = _names("foreignobject desc title")  # HTML inside SVG
_MATH_TEXT = _names("mi mo mn ms mtext")
_BREAKOUT = _names(
    "b big blockquote body br center code dd div dl dt em embed h1 h2 h3 h4 h5 h6 head hr i "
    "img li listing menu meta nobr ol p pre ruby s small span strong strike sub sup table tt "
    "u ul var"
)
_IMPLIED_ENDS = _names("dd dt li optgroup option p rb rp rt rtc")
_TABLE_PARTS = ("table", "tbody", "thead", "tfoot", "tr", "template")
_TABLE_STARTS = _names("caption col colgroup tbody thead tfoot tr td th")
_NOT_TABLE_MODES = ("td", "th", "caption", "colgroup", "template")
# what a template's first start tag leaves it reading: these as in <head>, table parts as set
# below, anything else as a body
_TEMPLATE_KEEPS = _names(
    "base basefont bgsound link meta noframes script style template title caption col "
    "colgroup tbody thead tfoot tr td th"
)
# a template's mode, set by its first table part: where later parts go
_TEMPLATE_MODES = {
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


_FLAGS = {name: _html_flags(name) for name in _SPECIAL | _SCOPE}
_FOREIGN_BOUNDARY = ("scope", "special", "li_stop", "dd_stop")


@dataclass(frozen=True)
class Depth:
    """What :func:`measure_depth` found: ``depth`` levels (counted up to ``limit + 1``);
    ``line`` where the limit was crossed, None when it was not; ``reason`` ``"depth"`` or
    ``"elements"`` (more reopened elements than the input can account for)."""

    depth: int
    line: int | None = None
    reason: str = "depth"


class _Entry:
    """An unclosed formatting element the parser will reopen (identity matters)."""

    __slots__ = ("alike", "at", "name", "named")

    def __init__(self, name: str, at: int, alike: list[_Entry], named: list[_Entry]) -> None:
        self.name, self.at, self.alike, self.named = name, at, alike, named


class _Over(Exception):
    def __init__(self, reason: str) -> None:
        self.reason = reason
        self.offset = 0


class _Model:
    """The stack of open elements and the list of active formatting elements, kept as
    positions, so that every question ("is a ``<p>`` in button scope?") compares two ints."""

    def __init__(self, limit: int, budget: int) -> None:
        self.limit, self.budget = limit, budget
        # each open element: name ("1:g" for SVG), namespace, flags, integration point, and
        # the position of the nearest HTML element at or below it
        self.stack: list[tuple[str, int, tuple[str, ...], bool, int]] = []
        self.at: dict[str, list[int]] = {}
        self.flagged: dict[str, list[int]] = {f: [] for f in ("scope", "table", "special")}
        self.flagged.update(li_stop=[], dd_stop=[])
        self.formatting: list[_Entry | None] = []  # None: a marker
        # per marker: entries by name and attributes (Noah's ark), and by name
        self.alike: list[dict[str, list[_Entry]]] = [{}]
        self.named: list[dict[str, list[_Entry]]] = [{}]
        self.of_element: dict[int, _Entry] = {}
        self.form_open = False  # the parser's form element pointer is set
        self.form_at = -1  # where the form it points at is on the stack, if it still is
        self.quirks = True
        # what each open template's first element made it: a body, a table, rows, cells, columns
        self.template_modes: dict[int, str] = {}
        self.framesets = 0  # open in the reading where the frameset is the body
        self.framesets_seen = False
        self.deepest = 0
        self.push("html")
        self.push("body")

    # -- the stack --

    def last(self, name: str) -> int:
        found = self.at.get(name)
        return found[-1] if found else -1

    def last_flag(self, flag: str) -> int:
        found = self.flagged[flag]
        return found[-1] if found else -1

    def push(self, name: str, ns: int = HTML, point: bool = False) -> None:
        index = len(self.stack)
        if index >= self.limit:
            raise _Over("depth")
        self.budget -= 1
        if self.budget < 0:
            raise _Over("elements")
        if ns == HTML:
            flags = _FLAGS.get(name, ())
            below_html = index
        else:
            flags = _FOREIGN_BOUNDARY if point or name == "annotation-xml" else ()
            name = f"{ns}:{name}"
            below_html = self.stack[-1][4]
        self.stack.append((name, ns, flags, point, below_html))
        found = self.at.get(name)
        if found is None:
            self.at[name] = [index]
        else:
            found.append(index)
        for flag in flags:
            self.flagged[flag].append(index)
        if index >= self.deepest:
            self.deepest = index + 1

    def frameset(self, name: str) -> None:
        """A parser that takes a frameset for the body (if nothing before it rules that out)
        drops the body and reads nothing but framesets from there: counted apart, every
        ``<frameset>`` in, every ``</frameset>`` out, the depth the larger of the two ways."""
        self.framesets_seen = self.framesets_seen or name == "frameset"
        self.framesets += name == "frameset"
        levels = 1 + self.framesets + (name != "frameset")  # html, framesets, a frame
        if levels > self.limit:
            raise _Over("depth")
        self.deepest = max(self.deepest, levels)

    def leaf(self) -> None:
        """An element with nothing inside (``<br>``, ``<script>``): one level, never open."""
        if len(self.stack) >= self.limit:
            raise _Over("depth")
        self.deepest = max(self.deepest, len(self.stack) + 1)

    def pop(self) -> None:
        name, _, flags, _, _ = self.stack.pop()
        if len(self.stack) == self.form_at:
            self.form_at = -1
        if name == "template":
            self.template_modes.pop(len(self.stack), None)
        self.at[name].pop()
        for flag in flags:
            self.flagged[flag].pop()
        if self.of_element:
            entry = self.of_element.pop(len(self.stack), None)
            if entry is not None:
                entry.at = -1

    def pop_to(self, index: int) -> None:
        """Pop until the element at ``index`` is popped (never ``<html>``)."""
        while len(self.stack) > max(index, 1):
            self.pop()

    def in_scope(self, name: str, *also: str) -> int:
        """The element's position if it is in scope (``also``: more boundaries), else -1."""
        index = self.last(name)
        if index < 0:
            return -1
        bound = self.last_flag("scope")
        for more in also:
            bound = max(bound, self.last(more))
        return index if index >= bound else -1  # itself a boundary (<applet>) is in scope

    def close_p(self) -> None:
        if self.at.get("p"):
            index = self.in_scope("p", "button")
            if index >= 0:
                self.pop_to(index)

    # -- the list of active formatting elements --

    def marker(self) -> None:
        self.formatting.append(None)
        self.alike.append({})
        self.named.append({})

    def clear_to_marker(self) -> None:
        while self.formatting:
            entry = self.formatting.pop()
            if entry is None:
                self.alike.pop()
                self.named.pop()
                return
            self.of_element.pop(entry.at, None)
        self.alike[0].clear()
        self.named[0].clear()

    def remember(self, name: str, attrs: str) -> None:
        """Add the element just pushed; a fourth alike one pushes out the earliest (Noah's ark:
        alike is the same name and attributes, spelled the same: never fewer than the parser's)."""
        alike = self.alike[-1].setdefault(name + attrs, [])
        if len(alike) >= 3:
            self.forget(alike[0])
        entry = _Entry(name, len(self.stack) - 1, alike, self.named[-1].setdefault(name, []))
        alike.append(entry)
        entry.named.append(entry)
        self.formatting.append(entry)
        self.of_element[entry.at] = entry

    def forget(self, entry: _Entry) -> None:
        self.formatting.remove(entry)
        entry.alike.remove(entry)
        entry.named.remove(entry)
        if entry.at >= 0:
            self.of_element.pop(entry.at, None)

    def latest(self, name: str) -> _Entry | None:
        """The last formatting element of this name since the last marker."""
        found = self.named[-1].get(name)
        return found[-1] if found else None

    def reopen(self) -> None:
        """Reconstruct the active formatting elements: each one closed since is opened again."""
        formatting = self.formatting
        start = len(formatting)
        while start > 0:
            entry = formatting[start - 1]
            if entry is None or entry.at >= 0:
                break
            start -= 1
        for entry in formatting[start:]:
            assert entry is not None
            self.push(entry.name)
            entry.at = len(self.stack) - 1
            self.of_element[entry.at] = entry

    def formatting_end(self, name: str) -> bool:
        """The adoption agency; False: treat as any other end tag.

        With blocks opened inside the element (``<font><p>…</font>``) the parser moves it
        inside them and, within its eight rounds, closes it there: the element leaves the
        stack, what was opened inside it stays (the parser may take out more: never fewer
        levels are kept). With more blocks than rounds a copy stays: nothing is taken out.
        """
        entry = self.latest(name)
        if entry is None:
            return False
        if entry.at < 0:
            self.forget(entry)
        elif entry.at > self.last_flag("scope"):
            at, specials = entry.at, self.flagged["special"]
            above = len(specials) - bisect.bisect_right(specials, at)
            if above <= 7:
                self.forget(entry)
                if above:
                    self.remove(at)
                else:
                    self.pop_to(at)
        return True

    def remove(self, index: int) -> None:
        """Take the element at ``index`` out of the stack; the ones above move down a place.

        Rebuilding the positions costs the depth, charged to the budget like opening one.
        """
        self.budget -= len(self.stack)
        if self.budget < 0:
            raise _Over("elements")
        stack = self.stack
        del stack[index]
        self.at, self.flagged = {}, {flag: [] for flag in self.flagged}
        for i, (name, ns, flags, point, below_html) in enumerate(stack):
            self.at.setdefault(name, []).append(i)
            for flag in flags:
                self.flagged[flag].append(i)
            if i >= index:
                below_html = i if ns == HTML else stack[i - 1][4]
                stack[i] = (name, ns, flags, point, below_html)
        moved = {}
        for at, entry in self.of_element.items():
            entry.at = at - 1 if at > index else at
            moved[entry.at] = entry
        self.of_element = moved
        self.form_at -= self.form_at > index
        self.template_modes = {
            i - (i > index): mode for i, mode in self.template_modes.items() if i != index
        }


def _start(model: _Model, name: str, attrs: str) -> str | None:
    """Apply a start tag; the raw-text element it opens (to skip to its end tag), if any."""
    if name in ("frameset", "frame", "noframes"):
        model.frameset(name)
    if model.stack[-1][0] == "colgroup" and name not in ("col", "template"):
        model.pop()  # a column group holds columns only: anything else ends it
    top = len(model.stack) - 1
    if model.stack[top][0] == "template":
        if model.template_modes.get(top) == "colgroup" and name not in ("col", "template"):
            return None  # a template of columns ignores anything else
        if name not in _TEMPLATE_KEEPS:
            model.template_modes.setdefault(top, "body")
    _, ns, _, point, _ = model.stack[-1]
    if ns != HTML and not point:
        if name in _BREAKOUT or (name == "font" and _FONT_BREAKS_RE.search(attrs)):
            while model.stack[-1][1] != HTML and not model.stack[-1][3]:
                model.pop()
        else:
            point = (ns == SVG and name in _SVG_POINTS) or (
                ns == MATH
                and (
                    name in _MATH_TEXT
                    or (name == "annotation-xml" and bool(_HTML_ANNOTATION_RE.search(attrs)))
                )
            )
            model.push(name, ns, point)
            if _self_closing(attrs):
                model.pop()
            return None
    if name in _TABLE_STARTS:
        _table_start(model, name)
        return None
    if name in ("html", "head", "body", "frameset"):
        return None
    if name == "image":
        name = "img"
    if name in _NO_REOPEN:
        if not _close_before(model, name):
            return None
    elif name in ("a", "nobr") and model.latest(name) is not None:
        model.formatting_end(name)
    elif name == "button" and model.in_scope("button") >= 0:
        model.pop_to(model.in_scope("button"))
    elif name in ("select", "input", "option", "optgroup") and model.in_scope("select") >= 0:
        if name in ("select", "input"):  # closes the open one (a second is not opened)
            model.pop_to(model.in_scope("select"))
            if name == "select":
                return None
        else:
            ends = _IMPLIED_ENDS - {"optgroup"} if name == "option" else _IMPLIED_ENDS
            while model.stack[-1][0] in ends:
                model.pop()
    elif name in ("option", "optgroup") and model.stack[-1][0] == "option":
        model.pop()
    elif name in ("rb", "rtc", "rp", "rt") and model.in_scope("ruby") >= 0:
        ends = _IMPLIED_ENDS - {"rtc"} if name in ("rp", "rt") else _IMPLIED_ENDS
        while model.stack[-1][0] in ends:  # the implied end tags a ruby annotation ends
            model.pop()
    if model.formatting and name not in _NO_REOPEN:
        model.reopen()
    if name in _VOID:
        model.leaf()
        return None
    if name in ("svg", "math"):
        model.push(name, SVG if name == "svg" else MATH)
        if _self_closing(attrs):
            model.pop()
        return None
    if name in _RAW and name != "plaintext":
        model.leaf()
        return name
    model.push(name)
    if name == "form" and model.last("template") < 0:
        model.form_at = len(model.stack) - 1
    if name in _FORMATTING:
        model.remember(name, attrs)
    elif name in _MARKERS:
        model.marker()
    return "plaintext" if name == "plaintext" else None


def _close_before(model: _Model, name: str) -> bool:
    """What a block's start tag closes first (an open ``<p>``, ``<li>``, heading…); False:
    the parser ignores the tag."""
    if name == "form":
        if model.form_open and model.last("template") < 0:
            return False  # a form inside a form
        model.form_open = True
    elif name == "table" and _in_table(model):  # a table directly in a table ends that one
        found = model.last("table")
        if found < 0 or found < model.last_flag("table"):
            return False  # no table in table scope (a template's rows): ignored
        model.pop_to(found)
        if not model.quirks:
            model.close_p()
    elif name == "table" and not model.quirks:  # with a doctype, a table closes a <p>
        model.close_p()
    elif name == "li":
        found = model.last("li")
        if found > model.last_flag("li_stop"):
            model.pop_to(found)
    elif name in ("dd", "dt"):
        found = max(model.last("dd"), model.last("dt"))
        if found > model.last_flag("dd_stop"):
            model.pop_to(found)
    if name in _CLOSES_P:
        model.close_p()
    if name == "hr" and model.in_scope("select") >= 0:
        while model.stack[-1][0] in _IMPLIED_ENDS:
            model.pop()
    if name in _HEADINGS and model.stack[-1][0] in _HEADINGS:
        model.pop()
    return True


def _in_table(model: _Model) -> bool:
    """Whether the parser is in a table's own modes: the innermost element that sets its
    mode is a table part (not a cell, a caption, a template)."""
    part = max(model.last(name) for name in ("table", "tbody", "thead", "tfoot", "tr"))
    other = max(model.last(name) for name in _NOT_TABLE_MODES)
    return part > other


def _self_closing(attrs: str) -> bool:
    """Whether a tag ends in ``/>`` (which only SVG and MathML elements obey): the slash must
    stand alone, not end an unquoted value (``<g a=b/>`` is not self-closing)."""
    if not attrs.endswith("/"):
        return False
    tokens = [m.group() for m in _ATTR_TOKENS_RE.finditer(attrs)]
    return bool(tokens) and tokens[-1][0] in _WS + "/"


def _table_start(model: _Model, name: str) -> None:
    """Table parts: close the open cell or row, add the implied ``<tbody>``/``<tr>``; in a
    ``<template>``, any part goes straight in."""
    if name == "col" and model.stack[-1][0] == "colgroup":
        model.leaf()
        return
    cell = max(model.last("td"), model.last("th"), model.last("caption"))
    if cell >= 0 and cell > model.last_flag("table"):  # close the cell (or caption)
        model.pop_to(cell)
        model.clear_to_marker()
        cell = max(model.last("td"), model.last("th"))
    context = max(model.last(part) for part in _TABLE_PARTS)
    if context < 0 or context < cell:
        return  # not in a table: the parser ignores the tag
    top = model.stack[context][0]
    if top == "template":
        if context != len(model.stack) - 1:
            return
        top = model.template_modes.setdefault(context, _TEMPLATE_MODES[name])
        if top == "body" or (top == "colgroup") != (name == "col"):
            return  # what the template's first element made it does not take this part
        if (top == "tbody" and name not in ("tr", "td", "th")) or (
            top == "tr" and name not in ("td", "th")
        ):
            return
    elif name == "col":  # in a column group, the implied one if need be
        model.pop_to(max(model.last("table"), model.last("template")) + 1)
        if model.stack[-1][0] != "colgroup":
            model.push("colgroup")
    elif name == "tr" and top == "tr":
        model.pop_to(context)
        top = model.stack[-1][0]
    elif name in ("td", "th", "tr"):
        model.pop_to(context + 1)
    else:  # a section, a caption, a column group: straight in the table (or template)
        model.pop_to(max(model.last("table"), model.last("template")) + 1)
        top = "section"
    if name == "col":
        if top == "table":
            model.push("colgroup")
        model.leaf()
        return
    if top == "table" and name in ("tr", "td", "th"):
        model.push("tbody")
    if name in ("td", "th") and top in ("table", "tbody", "thead", "tfoot"):
        model.push("tr")
    model.push(name)
    if name in _MARKERS:
        model.marker()


def _end(model: _Model, name: str) -> None:
    if name == "frameset":
        model.framesets = max(0, model.framesets - 1)
    top = len(model.stack) - 1
    if (
        model.stack[top][0] == "template"
        and model.template_modes.get(top, "colgroup") == "colgroup"
        and name != "template"
    ):
        return  # a template not started, or of columns, ignores end tags
    if model.stack[-1][0] == "colgroup" and name not in ("colgroup", "col", "template"):
        model.pop()
    _, ns, _, point, below_html = model.stack[-1]
    if ns != HTML and name in ("br", "p") and not point:  # leaves SVG/MathML first
        while model.stack[-1][1] != HTML and not model.stack[-1][3]:
            model.pop()
        _, ns, _, point, below_html = model.stack[-1]
    if ns != HTML:  # SVG or MathML, integration points too: the nearest such element
        found = model.last(f"{ns}:{name}")
        if found > below_html:
            model.pop_to(found)
            return
    if name == "p":
        if model.in_scope("p", "button") < 0:
            model.push("p")  # an empty paragraph
        model.close_p()
    elif name == "li":
        _pop_in_scope(model, name, "ol", "ul")
    elif name in _BLOCK_ENDS:
        if _pop_in_scope(model, name) and name in _MARKERS:  # </object>, </applet>…
            model.clear_to_marker()
    elif name in _FORMATTING and model.formatting_end(name):
        return
    elif name in _HEADINGS:
        found = max(model.last(h) for h in _HEADINGS)
        if found > model.last_flag("scope"):
            model.pop_to(found)
    elif name in _TABLE_STARTS or name == "table":
        if name == "colgroup":
            if model.stack[-1][0] == "colgroup":
                model.pop()
        else:
            found = model.last(name)
            if found >= 0 and found >= model.last_flag("table"):
                if name in _MARKERS or max(model.last(n) for n in _MARKERS) > found:
                    model.clear_to_marker()  # a cell (or caption) closed on the way
                model.pop_to(found)
    elif name == "form" and model.last("template") >= 0:
        _pop_in_scope(model, name)
    elif name == "form":  # only the form the pointer names, and only if nothing is open in it
        at, model.form_open, model.form_at = model.form_at, False, -1
        if at >= 0 and at == len(model.stack) - 1:  # (else it stays their ancestor)
            model.pop()
    elif name == "select":
        _pop_in_scope(model, name)
    elif name == "template":  # closes whatever is open inside it
        found = model.last(name)
        if found >= 0:
            model.pop_to(found)
            model.clear_to_marker()
    elif name == "br":  # read as <br>
        _start(model, name, "")
    elif name not in ("html", "head", "body"):  # any other: if no special element is above
        found = model.last(name)
        if found >= 0 and model.last_flag("special") <= found:
            model.pop_to(found)


def _pop_in_scope(model: _Model, name: str, *also: str) -> bool:
    found = model.in_scope(name, *also)
    if found >= 0:
        model.pop_to(found)
    return found >= 0


def measure_depth(html: str, limit: int = MAX_DEPTH) -> Depth:
    """The nesting depth of ``html`` as an HTML5 parser builds it (``html`` and ``body``
    included), counted up to ``limit + 1``: the first element past the limit ends the pass."""
    model = _Model(limit, _WORK_PER_CHAR * len(html) + 4 * limit + 8)
    model.quirks = _quirks(html)
    try:
        _scan(html, model)
    except _Over as over:
        line = html.count("\n", 0, over.offset) + 1
        return Depth(model.deepest + (over.reason == "depth"), line, over.reason)
    return Depth(model.deepest)


def _scan(html: str, model: _Model) -> None:
    """Every token of ``html`` into the model; a limit crossed is raised with its offset."""
    pos, size, search = 0, len(html), _TOKEN_RE.search
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
                pos = _other(html, token)
            elif slash:
                _end(model, name.lower())
                pos = token.end()
            else:
                raw = _start(model, name.lower(), attrs)
                pos = token.end() if raw is None else _skip(html, token, raw)
                if raw is not None and raw != "noframes" and model.framesets_seen:
                    _framesets_in(html, token.end(), pos, model)
    except _Over as over:
        over.offset = at
        raise


def _skip(html: str, token: re.Match[str], raw: str) -> int:
    """Past the text of a raw-text element and its end tag."""
    if raw == "plaintext":  # the rest is text
        return len(html)
    stop = re.compile(rf"</{raw}(?=[{_WS}/>])", re.IGNORECASE).search(html, token.end())
    if stop is None:
        return len(html)
    close = _TAG_RE.match(html, stop.start())
    return len(html) if close is None else close.end()


def _framesets_in(html: str, start: int, end: int, model: _Model) -> None:
    """The framesets in a raw-text element's text: where the frameset is the body, the parser
    ignores ``<title>``, ``<script>``… and reads their text as tags."""
    pos = start
    while pos < end:
        token = _TOKEN_RE.search(html, pos, end)
        if token is None:
            return
        slash, name, _ = token.group(1, 2, 3)
        name = (name or "").lower()
        if name in ("frameset", "frame", "noframes") and not slash:
            model.frameset(name)
        elif name == "frameset":
            model.framesets = max(0, model.framesets - 1)
        if name == "noframes" and not slash:  # raw text there too
            pos = _skip(html, token, "noframes")
        else:
            pos = token.end() if name else _other(html, token)


def _other(html: str, token: re.Match[str]) -> int:
    """Past a comment, CDATA, a bogus comment or a tag that never ends."""
    kind, lt = token.group(4), token.start()
    if kind is None:
        return len(html)  # a tag that never ends
    if kind == "!--":
        if html.startswith((">", "->"), lt + 4):
            return html.index(">", lt + 4) + 1
        found = _COMMENT_END_RE.search(html, lt + 4)
        return len(html) if found is None else found.end()
    # CDATA (in SVG to "]]>", elsewhere a bogus comment to ">"): to the first ">" either way,
    # which never skips a tag the parser reads
    if html.startswith("</>", lt):
        return lt + 3
    end = html.find(">", lt + 2)
    return len(html) if end < 0 else end + 1


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
