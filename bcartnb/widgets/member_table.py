"""The search result as a paged member table with check boxes (チェックした会員).

The table shows what the package decided (the result and each member's 送信できない理由);
it keeps one thing of its own, the set of ticked ids, published as the ``checked`` trait in
file order so the wizard can hand it to ``build_audience(checked=...)`` unchanged.
Only the current page has widgets, so a list of 100,000 members costs 20 rows of widgets, and
they are made once: a page, a search or a tick only sets their values (making a page of
widgets anew cost a quarter of a second).
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Mapping
from typing import Any, Final

import ipywidgets as widgets
import pandas as pd
import traitlets

from bcartnb.audience import REASON_LABELS, Audience
from bcartnb.filters import resolve_column

from ._common import fit, row

__all__ = [
    "COLUMNS",
    "PAGE_SIZE",
    "SHOWN_COLUMNS",
    "MemberTable",
    "cell_html",
    "narrowed",
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


def cell_html(value: Any) -> str:
    """A member's value as the text of a table cell.

    Not a ``Label``: JupyterLab hands a Label's text to MathJax, so a 会社名 with two ``$``
    was typeset as TeX, whose commands come from whoever typed the member's data. An HTML
    widget is not typeset, but its value is set as innerHTML: escaped, it stays text.
    """
    return html.escape(str(value), quote=True)


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
        self._boxes: dict[int, widgets.Checkbox] = {}
        self._syncing = False
        self._slots: list[tuple[widgets.Checkbox, list[widgets.HTML]]] = []
        self._shown: list[int | None] = []  # the member id each slot shows, None off the page
        self._named: list[int | None] = []  # the member id each slot's class names
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
        self.grid = widgets.GridBox(
            [],
            layout=widgets.Layout(
                grid_template_columns=f"2.5em repeat({len(COLUMNS)}, auto)",
                grid_gap="2px 12px",
            ),
        )
        super().__init__(
            [
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

    def _slot(self, n: int) -> tuple[widgets.Checkbox, list[widgets.HTML]]:
        """The widgets of the page's row ``n``, made the first time a page needs them."""
        while len(self._slots) <= n:
            slot = len(self._slots)
            box = widgets.Checkbox(value=False, indent=False, layout=widgets.Layout(width="2em"))
            box.observe(lambda ch, slot=slot: self._on_box(slot, ch), names="value")
            self._slots.append((box, [widgets.HTML("") for _ in COLUMNS]))
            self._shown.append(None)
            self._named.append(None)
        return self._slots[n]

    def _render(self) -> None:
        if not self.grid.children:
            self.grid.children = [widgets.HTML("")] + [
                widgets.HTML(f"<b>{html.escape(c)}</b>") for c in COLUMNS
            ]
        start = self.page * self.page_size
        shown = slice(start, start + self.page_size)
        rows = self.rows if self._audience is None else table_rows(self._audience, shown)
        page = list(rows.itertuples(index=False))
        self._boxes = {}
        cells: list[widgets.Widget] = list(self.grid.children[: 1 + len(COLUMNS)])
        self._syncing = True
        try:
            for n, rec in enumerate(page):
                mid = int(rec[0])
                box, texts = self._slot(n)
                with box.hold_sync():  # its class and its tick: one widget message, not three
                    if self._named[n] != mid:  # the class names the member (the browser test's)
                        if self._named[n] is not None:
                            box.remove_class(f"bcartnb-check-{self._named[n]}")
                        box.add_class(f"bcartnb-check-{mid}")
                        self._named[n] = mid
                    box.value = mid in self._ticked
                self._shown[n] = mid
                for cell, value in zip(texts, rec[1:], strict=True):
                    cell.value = cell_html(value)
                self._boxes[mid] = box
                cells += [box, *texts]
        finally:
            self._syncing = False
        for n in range(len(page), len(self._slots)):
            self._shown[n] = None  # off the page: a late click on it ticks nobody
        if len(cells) != len(self.grid.children):
            self.grid.children = cells
        self.page_label.value = f"{self.page + 1} / {self.pages} ページ"
        self.prev.disabled = self.page == 0
        self.next.disabled = self.page >= self.pages - 1
        self.check_page.disabled = not self._ids
