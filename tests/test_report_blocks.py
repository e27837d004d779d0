"""The blocks every report is made of: a value is text wherever it lands, with its plain twin.

The campaign report and the list-hygiene report share these pieces; each block must keep a
member's ``<script>`` as text whatever it holds, and the hygiene report must build on the
public module rather than borrow the campaign report's private helpers.
"""

from __future__ import annotations

import ast
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from bcartnb.report import blocks

PACKAGE = Path(__file__).resolve().parent.parent / "bcartnb"
#: The reports: every module of the report package, and the list-hygiene report.
REPORTS = [*sorted((PACKAGE / "report").glob("*.py")), PACKAGE / "hygiene" / "report.py"]

# markup's own characters often, and any other character (but NUL and CR, which HTML parsers
# rewrite, and lone surrogates) now and then
TEXT = st.text(
    alphabet=st.sampled_from("<>&\"'/=;#!-[]()$\\ab1\n")
    | st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00\r"),
    max_size=80,
)


class _Parsed(HTMLParser):
    """The elements a browser would build from a block's HTML, and its text."""

    def __init__(self, source: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.attrs: list[dict[str, str | None]] = []
        self.text: list[str] = []
        self.feed(source)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.attrs.append(dict(attrs))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def _html(block: blocks.Block) -> _Parsed:
    assert set(block) == {"text/html", "text/plain"}
    parsed = _Parsed(block["text/html"])
    assert parsed.tags[0] == "div" and "bcartnb-report" in (parsed.attrs[0]["class"] or "")
    assert all(set(a) <= {"class", "style"} for a in parsed.attrs)
    return parsed


@given(TEXT, st.integers(min_value=1, max_value=3))
def test_a_heading_is_its_text(text: str, level: int) -> None:
    block = blocks.heading(level, text)
    parsed = _html(block)
    assert parsed.tags == ["div", f"h{level}"]
    assert "".join(parsed.text) == text == block["text/plain"]


@given(TEXT)
def test_a_paragraph_is_its_text_line_by_line(text: str) -> None:
    block = blocks.paragraph(text)
    parsed = _html(block)
    assert set(parsed.tags) <= {"div", "p", "br"}
    assert parsed.tags.count("br") == max(len(text.splitlines()) - 1, 0)
    assert "".join(parsed.text) == "".join(text.splitlines())
    assert block["text/plain"] == text


@given(st.lists(TEXT.filter(lambda t: not t.splitlines()[1:]), max_size=5))
def test_bullets_are_one_item_each(items: list[str]) -> None:
    block = blocks.bullets("bcartnb-checks", items)
    parsed = _html(block)
    assert parsed.tags == ["div", "ul", *["li"] * len(items)]
    assert parsed.attrs[1]["class"] == "bcartnb-checks"
    assert "".join(parsed.text) == "".join("".join(item.splitlines()) for item in items)
    assert block["text/plain"] == "\n".join(f"- {item}" for item in items)


@given(TEXT, TEXT)
def test_a_table_shows_its_headers_and_cells_as_text(label: str, value: str) -> None:
    frame = pd.DataFrame({"値": [value]}, index=pd.Index([label], name="項目"))
    block = blocks.table(frame)
    parsed = _html(block)
    assert set(parsed.tags) <= {"div", "table", "thead", "tbody", "tr", "th", "td"}
    assert "".join(parsed.text) == f"項目値{label}{value}"
    assert block["text/plain"] == frame.to_string()


@pytest.mark.parametrize("value", [None, float("nan"), pd.NA, pd.NaT])
def test_a_missing_value_is_a_blank_cell(value: object) -> None:
    assert blocks.is_blank(value)
    parsed = _Parsed(blocks.html_table(pd.DataFrame({"値": [value]}, index=["a"])))
    assert "".join(parsed.text) == "値a"


def test_an_image_is_the_png_with_its_alt_text() -> None:
    block = blocks.image(b"\x89PNG\r\n\x1a\n<script>", "<b>グラフ</b>")
    assert block == {"image/png": "iVBORw0KGgo8c2NyaXB0Pg==", "text/plain": "<b>グラフ</b>"}


def test_the_reports_borrow_no_private_name() -> None:
    """What two reports share is public (:mod:`bcartnb.report.blocks`), never a ``_name``
    taken from another module; and no report imports the send stage to mask an address."""
    for path in REPORTS:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("bcartnb"):
                private = [a.name for a in node.names if a.name.startswith("_")]
                assert not private, f"{path.name} imports {private} from {node.module}"
                assert not node.module.startswith(("bcartnb.delivery", "bcartnb.transports"))
