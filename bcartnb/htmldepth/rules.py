"""The tree builder's rules, applied to the model: what each start and end tag opens and closes.

As html5ever builds the tree inside css-inline: end tags close only what is in scope,
``<p>``, ``<li>``, ``<td>``, ``<tr>``, ``<option>`` close what the standard closes, a table
gets its implied ``<tbody>`` and ``<tr>``, a template takes the parts its first element
allows, SVG and MathML are left where HTML breaks out of them.
"""

from __future__ import annotations

from bcartnb.htmldepth.elements import (
    BLOCK_ENDS,
    BREAKOUT,
    CLOSES_P,
    FONT_BREAKS_RE,
    FORMATTING,
    HEADINGS,
    HTML,
    HTML_ANNOTATION_RE,
    IMPLIED_ENDS,
    MARKERS,
    MATH,
    MATH_TEXT,
    NO_REOPEN,
    NOT_TABLE_MODES,
    RAW,
    SVG,
    SVG_POINTS,
    TABLE_PARTS,
    TABLE_STARTS,
    TEMPLATE_KEEPS,
    TEMPLATE_MODES,
    VOID,
)
from bcartnb.htmldepth.model import Model
from bcartnb.htmldepth.tokens import self_closing

__all__ = ["end_tag", "start_tag"]


def start_tag(model: Model, name: str, attrs: str) -> str | None:
    """Apply a start tag; the raw-text element it opens (to skip to its end tag), if any."""
    if name in ("frameset", "frame", "noframes"):
        model.frameset(name)
    if model.stack[-1][0] == "colgroup" and name not in ("col", "template"):
        model.pop()  # a column group holds columns only: anything else ends it
    top = len(model.stack) - 1
    if model.stack[top][0] == "template":
        if model.template_modes.get(top) == "colgroup" and name not in ("col", "template"):
            return None  # a template of columns ignores anything else
        if name not in TEMPLATE_KEEPS:
            model.template_modes.setdefault(top, "body")
    _, ns, _, point, _ = model.stack[-1]
    if ns != HTML and not point:
        if name in BREAKOUT or (name == "font" and FONT_BREAKS_RE.search(attrs)):
            while model.stack[-1][1] != HTML and not model.stack[-1][3]:
                model.pop()
        else:
            point = (ns == SVG and name in SVG_POINTS) or (
                ns == MATH
                and (
                    name in MATH_TEXT
                    or (name == "annotation-xml" and bool(HTML_ANNOTATION_RE.search(attrs)))
                )
            )
            model.push(name, ns, point)
            if self_closing(attrs):
                model.pop()
            return None
    if name in TABLE_STARTS:
        _table_start(model, name)
        return None
    if name in ("html", "head", "body", "frameset"):
        return None
    if name == "image":
        name = "img"
    if name in NO_REOPEN:
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
            ends = IMPLIED_ENDS - {"optgroup"} if name == "option" else IMPLIED_ENDS
            while model.stack[-1][0] in ends:
                model.pop()
    elif name in ("option", "optgroup") and model.stack[-1][0] == "option":
        model.pop()
    elif name in ("rb", "rtc", "rp", "rt") and model.in_scope("ruby") >= 0:
        ends = IMPLIED_ENDS - {"rtc"} if name in ("rp", "rt") else IMPLIED_ENDS
        while model.stack[-1][0] in ends:  # the implied end tags a ruby annotation ends
            model.pop()
    if model.formatting and name not in NO_REOPEN:
        model.reopen()
    if name in VOID:
        model.leaf()
        return None
    if name in ("svg", "math"):
        model.push(name, SVG if name == "svg" else MATH)
        if self_closing(attrs):
            model.pop()
        return None
    if name in RAW and name != "plaintext":
        model.leaf()
        return name
    model.push(name)
    if name == "form" and model.last("template") < 0:
        model.form_at = len(model.stack) - 1
    if name in FORMATTING:
        model.remember(name, attrs)
    elif name in MARKERS:
        model.marker()
    return "plaintext" if name == "plaintext" else None


def _close_before(model: Model, name: str) -> bool:
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
    if name in CLOSES_P:
        model.close_p()
    if name == "hr" and model.in_scope("select") >= 0:
        while model.stack[-1][0] in IMPLIED_ENDS:
            model.pop()
    if name in HEADINGS and model.stack[-1][0] in HEADINGS:
        model.pop()
    return True


def _in_table(model: Model) -> bool:
    """Whether the parser is in a table's own modes: the innermost element that sets its
    mode is a table part (not a cell, a caption, a template)."""
    part = max(model.last(name) for name in ("table", "tbody", "thead", "tfoot", "tr"))
    other = max(model.last(name) for name in NOT_TABLE_MODES)
    return part > other


def _table_start(model: Model, name: str) -> None:
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
    context = max(model.last(part) for part in TABLE_PARTS)
    if context < 0 or context < cell:
        return  # not in a table: the parser ignores the tag
    top = model.stack[context][0]
    if top == "template":
        if context != len(model.stack) - 1:
            return
        top = model.template_modes.setdefault(context, TEMPLATE_MODES[name])
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
    if name in MARKERS:
        model.marker()


def end_tag(model: Model, name: str) -> None:
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
    elif name in BLOCK_ENDS:
        if _pop_in_scope(model, name) and name in MARKERS:  # </object>, </applet>…
            model.clear_to_marker()
    elif name in FORMATTING and model.formatting_end(name):
        return
    elif name in HEADINGS:
        found = max(model.last(h) for h in HEADINGS)
        if found > model.last_flag("scope"):
            model.pop_to(found)
    elif name in TABLE_STARTS or name == "table":
        if name == "colgroup":
            if model.stack[-1][0] == "colgroup":
                model.pop()
        else:
            found = model.last(name)
            if found >= 0 and found >= model.last_flag("table"):
                if name in MARKERS or max(model.last(n) for n in MARKERS) > found:
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
        start_tag(model, name, "")
    elif name not in ("html", "head", "body"):  # any other: if no special element is above
        found = model.last(name)
        if found >= 0 and model.last_flag("special") <= found:
            model.pop_to(found)


def _pop_in_scope(model: Model, name: str, *also: str) -> bool:
    found = model.in_scope(name, *also)
    if found >= 0:
        model.pop_to(found)
    return found >= 0
