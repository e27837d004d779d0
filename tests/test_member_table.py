"""The member table's page as one HTML widget: what it shows stays text, and ticks stay real.

The page's cells are one widget's markup (one message a page, not one a cell); the check boxes
are widgets of their own, one a row. Here the markup holds any member value as text (a
property over generated values, and hostile ones through the wizard), and a page turn or a
search sends a handful of widget messages, the count that made 絞込 slow from click to screen.
"""

from __future__ import annotations

import html
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import comm
import ipywidgets as widgets
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bcartnb.members import read_members
from bcartnb.settings import Settings
from bcartnb.widgets import Wizard
from bcartnb.widgets.member_table import (
    CELL_CHARS,
    COLUMNS,
    PAGE_SIZE,
    cell_html,
    page_cells,
    page_html,
)

HEADER = "会員ID,会社名,担当者(姓),担当者(名),メールアドレス,都道府県,メール案内\n"

#: What the browser shows of a value: HTML drops NUL and shows other controls as nothing.
CONTROLS = [chr(c) for c in (*range(0, 9), 11, 12, *range(14, 32), 127)]


def shown(value: str) -> str:
    """The text a cell of ``value`` must show once the browser has parsed its markup."""
    text = value if len(value) <= CELL_CHARS else value[:CELL_CHARS] + "…"
    return "".join("\ufffd" if c in CONTROLS else c for c in text)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.lists(st.text(max_size=CELL_CHARS + 20), min_size=len(COLUMNS), max_size=len(COLUMNS)),
        max_size=PAGE_SIZE,
    )
)
def test_every_value_is_one_cell_of_text(rows: list[list[str]]) -> None:
    markup = page_html(rows)
    cells = page_cells(markup)
    assert cells == [[cell_html(v) for v in r] for r in rows]  # one cell a value, in order
    for row, got in zip(rows, cells, strict=True):
        for value, cell in zip(row, got, strict=True):
            assert "<" not in cell and ">" not in cell  # no tag a member typed
            assert not any(c in cell for c in CONTROLS)
            assert html.unescape(cell) == shown(value)


def members(path: Path, count: int) -> Path:
    rows = [
        f"{m},テスト商事{m},山田,太郎,user{m}@example.co.jp,{'東京都' if m % 2 else '大阪府'},"
        "受け取る\n"
        for m in range(1001, 1001 + count)
    ]
    path.write_text(HEADER + "".join(rows), encoding="utf-8")
    return path


HOSTILE = {
    1001: "<script>alert(1)</script>",
    1002: '"><img src=x onerror=alert(1)>',
    1003: "改行\r\n商事\r会社",
    1004: "NUL\x00商事\x07",
    1005: "巨大商事" * 50_000,
    1006: "&lt;b&gt;そのまま&amp;",
}


@pytest.fixture
def hostile(tmp_path: Path) -> Wizard:
    frame = read_members(members(tmp_path / "m.csv", 45))
    for mid, value in HOSTILE.items():  # NUL cannot come from a file; a frame can hold it
        frame.loc[frame["id"] == mid, "comp_name"] = value
    return Wizard(frame, Settings(plan="プラン300", db=tmp_path / "ledger.sqlite3"))


def test_hostile_values_are_shown_as_text_on_their_own_row(hostile: Wizard) -> None:
    table = hostile.table
    rows = table.shown_cells()
    assert [r[0] for r in rows] == [str(m) for m in range(1001, 1021)]
    for mid, value in HOSTILE.items():
        cell = rows[mid - 1001][1]
        assert html.unescape(cell) == shown(value), mid
        assert "<" not in cell and "\x00" not in cell
    assert len(rows[4][1]) < 4 * CELL_CHARS  # a huge value is not sent with every page
    assert [r[3] for r in rows][:2] == ["user1001@example.co.jp", "user1002@example.co.jp"]
    # the box of each row names the member of that row, for a test and a screen reader
    for box, mid in zip(table.boxes, range(1001, 1021), strict=True):
        assert f"bcartnb-check-{mid}" in box._dom_classes
        assert box.description == f"会員ID {mid} をチェック"


def test_ticks_across_pages_and_searches_are_exactly_what_is_sent(hostile: Wizard) -> None:
    table = hostile.table
    table.boxes[2].value = True  # a click on the third row: 1003
    table.next.click()
    table.boxes[0].value = True  # 1021
    table.next.click()  # the last page: 5 rows; the other boxes are off the grid
    assert [b for b in table.grid.children if isinstance(b, widgets.Checkbox)] == table.boxes[:5]
    table.boxes[4].value = True  # 1045
    table.boxes[10].value = True  # a box off the page: nobody
    assert table.checked == (1003, 1021, 1045)
    assert table.checked_count.value == "チェックした会員: 3件"
    table.prev.click()
    assert table.boxes[0].value is True and not any(b.value for b in table.boxes[1:])
    hostile.send_checked.click()
    assert hostile.stage == "compose" and hostile.checked == (1003, 1021, 1045)

    hostile.compose.back.click()
    hostile.filter_step.pref.value = ("東京都",)
    hostile.filter_step.apply.click()  # a new search: the ticks start empty, as in B-Cart
    assert table.checked == () and not any(b.value for b in table.boxes)
    assert [r[0] for r in table.shown_cells()] == [str(m) for m in range(1001, 1041, 2)]
    table.boxes[1].value = True
    hostile.send_checked.click()
    assert hostile.checked == (1003,)


def walk(w: widgets.Widget) -> Iterator[widgets.Widget]:
    yield w
    for child in getattr(w, "children", ()):
        yield from walk(child)


@contextmanager
def sent(wizard: Wizard) -> Iterator[list[str]]:
    """The widget messages sent meanwhile, by the class of the widget sending each."""
    owners = {id(w.comm): type(w).__name__ for w in walk(wizard.widget)}
    got: list[str] = []
    original = comm.DummyComm.publish_msg

    def publish(self: Any, *args: Any, **kwargs: Any) -> None:
        got.append(owners.get(id(self), "?"))
        original(self, *args, **kwargs)

    comm.DummyComm.publish_msg = publish  # type: ignore[method-assign]
    try:
        yield got
    finally:
        comm.DummyComm.publish_msg = original  # type: ignore[method-assign]


def test_a_page_is_one_message_for_its_cells_and_one_a_box(hostile: Wizard) -> None:
    table = hostile.table
    with sent(hostile) as got:
        table.next.click()
    # the cells, each box renamed (class, label and tick at once), the page label, 前へ
    assert got.count("HTML") == 1 and got.count("Checkbox") == PAGE_SIZE, got
    assert len(got) <= PAGE_SIZE + 4, got
    with sent(hostile) as got:
        hostile.filter_step.apply.click()
    assert got.count("HTML") <= 4 and got.count("Checkbox") <= PAGE_SIZE + 2, got
