"""The search result as a paged member table with check boxes (チェックした会員).

The table shows what the package decided (the result and each member's 送信できない理由);
it keeps one thing of its own, the set of ticked ids, published as the ``checked`` trait in
file order so the wizard can hand it to ``build_audience(checked=...)`` unchanged.
Only the current page is drawn, so a list of 100,000 members costs one page. Each widget is
one message to the browser at every change, so the page's cells are ONE HTML widget (the
page's text, escaped), and only the ticks are widgets: a check box a row, made once and
reused, so a page or a search sets their values (a widget a cell was 140 messages a page,
the most of a 絞込's time from click to screen). The cells and the boxes share one CSS grid:
the cells' widget takes no box of its own (``display: contents``), and each box is pinned to
its row's first column, so the cells flow around them into the row they belong to.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable, Mapping
from typing import Any, Final

import ipywidgets as widgets
import pandas as pd
import traitlets

from bcartnb.audience import REASON_LABELS, Audience
from bcartnb.filters import resolve_column

from ._common import fit, row

__all__ = [
    "CELL_CHARS",
    "COLUMNS",
    "PAGE_SIZE",
    "SHOWN_COLUMNS",
    "TABLE_CSS",
    "MemberTable",
    "cell_html",
    "narrowed",
    "page_cells",
    "page_html",
    "table_css",
    "table_rows",
]

PAGE_SIZE: Final = 20
#: The table's columns, in B-Cart's words.
COLUMNS: Final[tuple[str, ...]] = (
    "会員ID",
    "会社名",
    "担当者",
    "メールアドレス",
    "都道府県",
    "メール案内",
    "送信できない理由",
)

#: The member columns :func:`table_rows` reads (a sort for the table needs no other).
SHOWN_COLUMNS: Final[tuple[str, ...]] = (
    "id",
    "comp_name",
    "tanto_last_name",
    "tanto_first_name",
    "email",
    "pref",
    "mm_flag",
)


def narrowed(members: pd.DataFrame, flt: Mapping[str, Any]) -> pd.DataFrame:
    """The members with only the columns a sort for the table reads (the filter's and
    :data:`SHOWN_COLUMNS`): a sort copies every column it keeps, and copying 25 to count or
    show 7 was most of a 絞込. A filter key no column has stays the filter's error."""
    wanted = {
        *SHOWN_COLUMNS,
        *(resolve_column(k, members.columns) for k in flt if isinstance(k, str)),
    }
    return members[[c for c in members.columns if c in wanted]]


#: The most of a value a cell shows: a 会社名 of a megabyte would be sent with every page.
CELL_CHARS: Final = 200
#: The browser drops NUL and shows other control characters as nothing: shown as U+FFFD, the
#: cell says that the member's data holds something, as the file does.
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_CELL = re.compile('<div class="bcartnb-cell[^"]*">([^<]*)</div>')

#: The grid: the page's cells join it as its items (their widget and its content box take no
#: box), the header bold. A cell breaks at spaces only (Japanese would otherwise break after
#: any character and a phone's grid squeeze every column to one), a word longer than 24em at
#: its edge; a grid wider than the screen scrolls sideways inside its own box, as the report's
#: tables do. A box's label is read aloud, not shown (the row beside it shows the member).
#: In the table's own HTML widget, made once, scoped to the table's class.
TABLE_CSS: Final = """
.bcartnb-member-table .bcartnb-rows,
.bcartnb-member-table .bcartnb-rows > .widget-html-content { display: contents; }
.bcartnb-member-table .widget-gridbox { overflow: auto hidden; }
.bcartnb-member-table .bcartnb-cell {
  line-height: var(--jp-widgets-inline-height, 28px);
  font-size: var(--jp-widgets-font-size, 13px);
  max-width: 24em; word-break: keep-all; overflow-wrap: break-word;
}
.bcartnb-member-table .bcartnb-head { font-weight: bold; }
.bcartnb-member-table .widget-checkbox .widget-label-basic > span {
  position: absolute; width: 1px; height: 1px; overflow: hidden; clip-path: inset(50%);
}
"""


def table_css(page_size: int) -> str:
    """:data:`TABLE_CSS` and each row's box pinned to its row's first column (the header is
    row 1), so the cells, placed after them, fill the other columns of each row."""
    pins = "".join(
        f".bcartnb-member-table .bcartnb-box-{n} {{ grid-row: {n + 2}; grid-column: 1; }}\n"
        for n in range(page_size)
    )
    return f"<style>{TABLE_CSS}{pins}</style>"


def cell_html(value: Any) -> str:
    """A member's value as the text of a table cell.

    Not a ``Label``: JupyterLab hands a Label's text to MathJax, so a 会社名 with two ``$``
    was typeset as TeX, whose commands come from whoever typed the member's data. An HTML
    widget is not typeset, but its value is set as innerHTML: escaped, it stays text.
    """
    text = str(value)
    if len(text) > CELL_CHARS:
        text = text[:CELL_CHARS] + "…"
    return html.escape(_CONTROL.sub("\ufffd", text), quote=True)


def page_html(rows: Iterable[Iterable[Any]], *, head: bool = False) -> str:
    """The cells of ``rows`` (each row's :data:`COLUMNS` values) as the grid's items, in order;
    ``head``: bold, with an empty cell over the check boxes' column."""
    css = "bcartnb-cell bcartnb-head" if head else "bcartnb-cell"
    first = f'<div class="{css}"></div>' if head else ""
    return first + "".join(f'<div class="{css}">{cell_html(v)}</div>' for r in rows for v in r)


def page_cells(markup: str) -> list[list[str]]:
    """The rows of cells :func:`page_html` made, each cell as it was written (escaped): what
    the browser shows, read back for tests and the bench."""
    cells = _CELL.findall(markup)
    width = len(COLUMNS)
    return [cells[n : n + width] for n in range(0, len(cells), width)]


def _text(frame: pd.DataFrame, column: str) -> pd.Series:
    if column not in frame.columns:
        return pd.Series("", index=frame.index, dtype=object)
    return frame[column].astype("str").fillna("").astype(object)


def _reasons(audience: Audience, un: pd.DataFrame) -> pd.Series:
    """送信できない理由 of the unsendable members ``un``; ``already_sent`` names the campaign."""
    labels = un["reason"].astype(object).map(lambda r: REASON_LABELS[r])
    held = (un["reason"] == "already_sent").to_numpy(dtype=bool, na_value=False)
    if held.any():
        lowered = un.loc[held, "email"].astype("str").str.strip().str.lower()
        where = lowered.map(lambda a: audience.already_sent_in.get(a)).astype(object)
        named = [
            f"{label}（{cid}）" if cid else label
            for label, cid in zip(labels[held], where, strict=True)
        ]
        labels.loc[held] = named
    return labels


def table_rows(audience: Audience, rows: slice = slice(None)) -> pd.DataFrame:
    """One row a selected member (the ``rows`` of them: a page): the :data:`COLUMNS` as
    display text, ``id`` as int."""
    sel = audience.selected.iloc[rows]
    sel.attrs = {}  # the file's headers and notes: pandas deep-copied them at every step here
    person = (_text(sel, "tanto_last_name") + " " + _text(sel, "tanto_first_name")).str.strip()
    if "mm_flag" in sel.columns:
        mm = sel["mm_flag"].map({True: "受け取る", False: "受け取らない"}).fillna("")
    else:
        mm = pd.Series("", index=sel.index)
    reason = pd.Series("", index=sel.index, dtype=object)
    un = audience.unsendable
    if len(un):  # the page's, and only what _reasons reads: a take of every column is slow
        un = un.loc[un.index.intersection(sel.index), un.columns.intersection(["reason", "email"])]
    if len(un):
        reason.loc[un.index] = _reasons(audience, un)
    return pd.DataFrame(
        {
            "id": sel["id"].astype("int64"),
            "会員ID": sel["id"].astype("int64").astype(str),
            "会社名": _text(sel, "comp_name"),
            "担当者": person,
            "メールアドレス": _text(sel, "email"),
            "都道府県": _text(sel, "pref"),
            "メール案内": mm,
            "送信できない理由": reason,
        },
        index=sel.index,
    )


class MemberTable(widgets.VBox):  # type: ignore[misc]
    """Paged table; ``checked`` (tuple of member ids, file order) is the ticked set."""

    checked = traitlets.Tuple()
    page = traitlets.Int(0)

    def __init__(self, page_size: int = PAGE_SIZE) -> None:
        self.page_size = page_size
        self._audience: Audience | None = None
        self._rows: pd.DataFrame | None = None
        self._ids: list[int] = []
        self._pos: dict[int, int] = {}
        self._ticked: set[int] = set()
        self._boxes: dict[int, widgets.Checkbox] = {}  # the page's, by member id
        self._syncing = False
        #: a check box a row of the page, made the first time a page needs it, then reused
        self.boxes: list[widgets.Checkbox] = []
        self._shown: list[int | None] = []  # the member id each box shows, None off the page
        self._named: list[int | None] = []  # the member id each box's class and label name
        self.result_count = widgets.Label("検索結果: 0件")
        self.result_count.add_class("bcartnb-result-count")
        self.checked_count = widgets.Label("チェックした会員: 0件")
        self.checked_count.add_class("bcartnb-checked-count")
        self.check_page = widgets.Button(description="このページをすべてチェック")
        self.check_page.add_class("bcartnb-check-page")
        self.check_page.on_click(lambda _b: self.check_all_on_page())
        self.prev = widgets.Button(description="前へ", icon="chevron-left")
        self.prev.add_class("bcartnb-page-prev")
        self.prev.on_click(lambda _b: self.go(self.page - 1))
        self.next = widgets.Button(description="次へ", icon="chevron-right")
        self.next.add_class("bcartnb-page-next")
        self.next.on_click(lambda _b: self.go(self.page + 1))
        self.page_label = widgets.Label("")
        self.page_label.add_class("bcartnb-page-label")
        self.header = widgets.HTML(page_html([COLUMNS], head=True))
        self.body = widgets.HTML("")  # the page's cells: one widget, one message a page
        for part in (self.header, self.body):
            part.add_class("bcartnb-rows")
        self.grid = widgets.GridBox(
            [self.header, self.body],
            layout=widgets.Layout(
                grid_template_columns=f"2.5em repeat({len(COLUMNS)}, auto)",
                grid_gap="2px 12px",
            ),
        )
        css = widgets.HTML(table_css(page_size), layout=widgets.Layout(display="none"))
        super().__init__(
            [
                css,
                row(self.result_count, self.checked_count),
                self.grid,
                row(self.check_page, self.prev, self.page_label, self.next),
            ]
        )
        fit(self.check_page, self.prev, self.next)
        self.add_class("bcartnb-member-table")
        self._render()

    # --- data ----------------------------------------------------------------------------

    @property
    def rows(self) -> pd.DataFrame:
        """The whole result as the table shows it (:func:`table_rows`), made when asked:
        the screen needs one page of it."""
        if self._rows is None:
            if self._audience is None:
                return pd.DataFrame(columns=["id", *COLUMNS])
            self._rows = table_rows(self._audience)
        return self._rows

    @property
    def result_ids(self) -> list[int]:
        """Every member id of the search result, in file order."""
        return list(self._ids)

    @property
    def pages(self) -> int:
        return max(1, -(-len(self._ids) // self.page_size))

    def set_result(self, audience: Audience) -> None:
        """Show a new search result; checks start empty, as after a search in B-Cart."""
        self._audience, self._rows = audience, None
        self._ids = audience.selected["id"].astype("int64").tolist()
        self._pos = {i: n for n, i in enumerate(self._ids)}
        self._ticked = set()
        self.result_count.value = f"検索結果: {len(self._ids):,}件"
        self.page = 0
        self._publish()
        self._render()

    def refresh(self, audience: Audience) -> None:
        """The same result sorted again (the mail now known): each member's 送信できない理由
        anew, the ticks and the page kept. Another result is shown afresh."""
        if audience.selected["id"].astype("int64").tolist() != self._ids:
            self.set_result(audience)
            return
        self._audience, self._rows = audience, None
        self._render()

    def check(self, ids: Iterable[int], value: bool = True) -> None:
        """Tick (or untick) members by id, as if clicked; ids outside the result are ignored."""
        wanted = {int(i) for i in ids if int(i) in self._pos}
        if value:
            self._ticked |= wanted
        else:
            self._ticked -= wanted
        self._sync_boxes()
        self._publish()

    def uncheck(self, ids: Iterable[int]) -> None:
        self.check(ids, value=False)

    def shown_cells(self) -> list[list[str]]:
        """The page's rows of cells as the browser is sent them (escaped text)."""
        return page_cells(self.body.value)

    def page_ids(self) -> list[int]:
        start = self.page * self.page_size
        return self._ids[start : start + self.page_size]

    def check_all_on_page(self) -> None:
        """このページをすべてチェック."""
        self.check(self.page_ids())

    def go(self, page: int) -> None:
        self.page = min(max(page, 0), self.pages - 1)
        self._render()

    # --- widgets -------------------------------------------------------------------------

    def _publish(self) -> None:
        self.checked = tuple(sorted(self._ticked, key=self._pos.__getitem__))
        self.checked_count.value = f"チェックした会員: {len(self._ticked):,}件"

    def _sync_boxes(self) -> None:
        self._syncing = True
        try:
            for mid, box in self._boxes.items():
                box.value = mid in self._ticked
        finally:
            self._syncing = False

    def _on_box(self, slot: int, change: dict[str, Any]) -> None:
        mid = self._shown[slot]
        if self._syncing or mid is None:
            return
        if change["new"]:
            self._ticked.add(mid)
        else:
            self._ticked.discard(mid)
        self._publish()

    def _box(self, n: int) -> widgets.Checkbox:
        """The check box of the page's row ``n``, pinned to that row's first column."""
        while len(self.boxes) <= n:
            slot = len(self.boxes)
            box = widgets.Checkbox(value=False, indent=False, layout=widgets.Layout(width="2em"))
            box.add_class(f"bcartnb-box-{slot}")  # its place in the grid (table_css)
            box.observe(lambda ch, slot=slot: self._on_box(slot, ch), names="value")
            self.boxes.append(box)
            self._shown.append(None)
            self._named.append(None)
        return self.boxes[n]

    def _render(self) -> None:
        start = self.page * self.page_size
        shown = slice(start, start + self.page_size)
        rows = self.rows if self._audience is None else table_rows(self._audience, shown)
        page = list(rows.itertuples(index=False))
        self._boxes = {}
        self._syncing = True
        try:
            for n, rec in enumerate(page):
                self._boxes[int(rec[0])] = self._name_box(n, int(rec[0]))
        finally:
            self._syncing = False
        for n in range(len(page), len(self.boxes)):
            self._shown[n] = None  # off the page: a late click on it ticks nobody
        self.body.value = page_html(rec[1:] for rec in page)
        kids = (self.header, self.body, *self.boxes[: len(page)])
        if kids != self.grid.children:
            self.grid.children = kids
        self.page_label.value = f"{self.page + 1} / {self.pages} ページ"
        self.prev.disabled = self.page == 0
        self.next.disabled = self.page >= self.pages - 1
        self.check_page.disabled = not self._ids

    def _name_box(self, n: int, mid: int) -> widgets.Checkbox:
        """Row ``n``'s box, now for member ``mid``: its class (what the browser tests find),
        its label (what a screen reader says; hidden on screen, the row shows it) and its tick."""
        box = self._box(n)
        with box.hold_sync():  # one widget message, not three
            if self._named[n] != mid:
                if self._named[n] is not None:
                    box.remove_class(f"bcartnb-check-{self._named[n]}")
                box.add_class(f"bcartnb-check-{mid}")
                box.description = f"会員ID {mid} をチェック"
                self._named[n] = mid
            box.value = mid in self._ticked
        self._shown[n] = mid
        return box
