"""The building blocks every report is made of: escaped HTML with a plain-text twin.

The campaign report and the list-hygiene report are both a row of notebook outputs, and both
must show a member's 会社名 ``<script>...</script>株式会社`` as text in a browser. So every
value goes through :func:`escape` where it lands, the HTML is built here rather than from
Markdown (whose own syntax would turn ``[x](javascript:...)`` into a link) or from pandas'
``_repr_html_`` (whose escaping hangs on a display option), and each block carries the same
words as ``text/plain`` for readers of the .ipynb that show text only (papermill's log,
``nbval``). IPython is untyped: :func:`display` is the one typed doorway to it.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Callable, Iterable
from typing import Any

import pandas as pd

__all__ = [
    "Block",
    "block",
    "bullets",
    "display",
    "escape",
    "heading",
    "html_table",
    "image",
    "is_blank",
    "paragraph",
    "show",
    "table",
    "text_html",
]

#: One output of a report: a mime bundle (``text/html`` + ``text/plain``, or ``image/png``).
Block = dict[str, str]

# MathJax (JupyterLab, nbconvert's template) skips elements with these classes: a `$…$` in a
# member's value stays text instead of being typeset (and \href in TeX becoming a link).
_NO_MATH = "tex2jax_ignore mathjax_ignore"
_TD = '<td style="text-align:left;white-space:pre-wrap">'


def escape(value: Any) -> str:
    """Text for an HTML element or attribute: ``&<>"'`` escaped, so it can never be markup."""
    return html.escape(str(value), quote=True)


def text_html(text: str) -> str:
    """Lines of text as HTML, line breaks kept."""
    return "<br>".join(escape(line) for line in text.splitlines())


def is_blank(value: Any) -> bool:
    """None or a missing value (NaN, NA, NaT): a cell shown empty."""
    return value is None or (not isinstance(value, list | tuple | dict) and bool(pd.isna(value)))


def html_table(frame: pd.DataFrame, index: bool = True) -> str:
    """A table as HTML with every header and cell escaped; ``index=False`` leaves out a
    frame's row numbers (pandas' 0, 1, 2 mean nothing to a reader).

    Built here rather than by pandas' ``_repr_html_`` so that escaping does not hang on a
    display option, and long values (a body) are not cut to ``display.max_colwidth``.
    """
    head_cells = [*([frame.index.name or ""] if index else []), *frame.columns]
    head = "".join(f'<th style="text-align:left">{escape(c)}</th>' for c in head_cells)
    rows = []
    for label, values in zip(frame.index, frame.itertuples(index=False), strict=True):
        cells = "".join(f"{_TD}{'' if is_blank(v) else escape(v)}</td>" for v in values)
        first = f'<th style="text-align:left">{escape(label)}</th>' if index else ""
        rows.append(f"<tr>{first}{cells}</tr>")
    return (
        f'<table class="bcartnb-table"><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def display(*objs: Any, **kwargs: Any) -> None:
    """IPython's ``display``, typed."""
    from IPython import display as ipd

    show_: Callable[..., None] = ipd.display
    show_(*objs, **kwargs)


def show(*blocks: Block) -> None:
    """Each block as one output of the running notebook cell."""
    for one in blocks:
        display(one, raw=True)


def block(body_html: str, plain: str) -> Block:
    """One block of a report: HTML built with escaped values, and the same as plain text."""
    return {
        "text/html": f'<div class="bcartnb-report {_NO_MATH}">{body_html}</div>',
        "text/plain": plain,
    }


def heading(level: int, text: str) -> Block:
    return block(f"<h{level}>{escape(text)}</h{level}>", text)


def paragraph(text: str) -> Block:
    return block(f"<p>{text_html(text)}</p>", text)


def bullets(css_class: str, items: Iterable[str]) -> Block:
    """A bulleted list (``- item`` lines in the text twin)."""
    lines = list(items)
    return block(
        f'<ul class="{escape(css_class)}">'
        + "".join(f"<li>{text_html(line)}</li>" for line in lines)
        + "</ul>",
        "\n".join(f"- {line}" for line in lines),
    )


def table(frame: pd.DataFrame, index: bool = True) -> Block:
    return block(html_table(frame, index), frame.to_string(index=index))


def image(png: bytes, alt: str) -> Block:
    """A PNG (a chart), with its alt text as the plain-text twin."""
    return {"image/png": base64.b64encode(png).decode("ascii"), "text/plain": alt}
