"""The member screen's actions: 絞込, each member sorted as 送信 would, the quota said at once,
and the search result or the ticked members taken to the form.

They are one concern with state of its own (the last filter, keyword and result, the members
chosen, the quota and the suppression list read for the warning), apart from what
:mod:`.wizard` does: build the screens, wire them and keep them in order. Kept there, the
wizard grew past the house's ~600 lines. No rule lives here either: the sort is
:func:`~.planning.sorted_for_mail` or :func:`~bcartnb.audience.build_audience`, the quota
:func:`~bcartnb.campaign.quota_status`, the filter's notes :func:`~bcartnb.campaign.read_notes`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import ipywidgets as widgets
import pandas as pd

from bcartnb import campaign
from bcartnb.audience import Audience, build_audience
from bcartnb.exceptions import BcartnbError
from bcartnb.quota import QuotaStatus
from bcartnb.search import KeywordIndex
from bcartnb.settings import Settings

from ._common import Status
from .compose_step import ComposeStep, quota_warning_html
from .filter_step import FilterStep
from .member_table import MemberTable, narrowed
from .planning import sorted_for_mail
from .results_panel import ResultsPanel
from .segment_tools import SegmentTools
from .viewport import Viewport

__all__ = ["Selecting"]


class _Wizard(Protocol):
    """What the actions read of the wizard (the members change with 配信結果で絞り込む and a
    new file; the filter step is rebuilt when a file is loaded)."""

    settings: Settings
    members: pd.DataFrame
    status: Status
    filter_step: FilterStep
    segment_tools: SegmentTools
    results: ResultsPanel
    table: MemberTable
    select_warning: widgets.HTML
    compose: ComposeStep
    viewport: Viewport

    def purchases_of_today(self) -> str | None: ...


class Selecting:
    """絞込オプション → the member table → 検索結果すべてに送信 / チェックした会員に送信.

    ``filter``, ``keyword`` and ``found`` are the last 絞込's; ``checked`` the ids the
    campaign's ``checked`` holds (empty: every search result); ``quota`` what the form shows.
    """

    def __init__(
        self,
        wizard: _Wizard,
        *,
        controls: Callable[[], list[widgets.Widget]],
        repeat_key: Callable[[], str | None],
        go: Callable[[str], None],
    ) -> None:
        self._w = wizard
        self._controls = controls  # what an action on the current screen freezes
        self._repeat_key = repeat_key  # the mail 「同じ内容を再送する」 was ticked for
        self._go = go
        self.filter: dict[str, Any] = {}
        self.keyword = ""
        self.found: Audience | None = None
        self.checked: tuple[int, ...] = ()
        self.quota: QuotaStatus | None = None
        self._index: KeywordIndex | None = None
        self._select_quota: QuotaStatus | None = None
        self._all_sendable: int | None = None
        self._select_listed: frozenset[str] = frozenset()  # the suppression list, per 絞込
        #: read once per change to the ledger, not on every click
        self.suppressions = campaign.SuppressionList(wizard.settings)

    def members_changed(self) -> None:
        """Another member file: the keyword index is built again, for it, when next needed."""
        self._index = None

    def clear_ticks(self) -> None:
        """No member ticked, and none chosen: a new campaign starts from the search result."""
        self._w.table.uncheck(self._w.table.checked)
        self.checked = ()

    # --- 絞込 -------------------------------------------------------------------------------

    def apply_filter(self) -> None:
        """絞込: the filter (with the segment) and keyword of the controls → the member table."""
        w = self._w
        kw = w.filter_step.keyword

        def search() -> tuple[dict[str, Any], Audience, list[str]]:
            recounted = w.purchases_of_today()  # past midnight: today's 休眠, not yesterday's
            # 配信結果で絞り込む: the chosen campaign's 配信・開封・クリック, ANDed in
            w.members, flt = w.results.narrow(w.members, w.segment_tools.current_filter())
            notes = campaign.read_notes(w.members, flt)
            return flt, self._search(flt, kw), [*notes, *filter(None, [recounted])]

        got = w.status.run(search, self._controls(), busy="絞込中です…", quick=True)
        if got is None:
            return
        flt, found, notes = got  # notes: a misnamed column, a value no member holds
        self.filter, self.keyword, self.found = flt, kw, found
        w.table.set_result(found)
        w.status.info("\n注意: ".join([f"検索結果: {len(found.selected):,}件", *notes]))
        self.warn(recount=True)  # the quota read again: a campaign may have gone out

    def apply_clicked(self) -> None:
        """絞込 clicked: the result count (or the error) comes into view."""
        self.apply_filter()
        if self._w.status.kind != "error":  # an error has brought the status line into view
            self._w.viewport.reveal("bcartnb-result-count")

    def _search(self, flt: dict[str, Any], kw: str) -> Audience:
        """The search result, each member sorted as 送信 would (the form's mail, once written)."""
        members = self._w.members
        if kw and self._index is None:
            self._index = KeywordIndex(members)  # once: normalising is the slow part
        base = members[self._index.mask(kw)] if kw and self._index else members
        return self.sort(base, flt, ())

    def sort(
        self,
        frame: pd.DataFrame,
        flt: dict[str, Any],
        checked: tuple[int, ...],
        opt_in: bool = False,
    ) -> Audience:
        """Members sorted into sendable or not: with ``already_sent`` for the mail in the form
        (:func:`~.planning.sorted_for_mail`), else by the address rules and the suppressions."""
        w = self._w
        values = {**w.compose.values(), "opt_in_only": opt_in}
        listed = self.suppressions.addresses()
        found = sorted_for_mail(
            frame, w.settings, flt, checked, values, self._repeat_key(), suppressed=listed
        )
        if found is not None:
            return found
        narrow = narrowed(frame, flt)
        return build_audience(narrow, flt or None, list(checked) or None, opt_in, listed)

    def back_to_select(self) -> None:
        """戻る from the form: the member list, its reasons sorted again for the mail written
        meanwhile (who already has it, from which campaign); the ticks stay."""
        self._go("select")
        if self.found is None:
            return
        w = self._w
        found = w.status.run(
            lambda: self._search(self.filter, self.keyword),
            self._controls(),
            busy="絞込中です…",
            quick=True,
        )
        if found is None:
            return
        self.found = found
        w.table.refresh(found)
        w.status.info(f"検索結果: {len(found.selected):,}件")
        self.warn(recount=True)

    def warn(self, *, recount: bool = False) -> None:
        """Say at once when the search result, or the ticked members, exceed this month's quota.

        Counted as the send would count them (メール案内 as ticked in the form, duplicates and
        bad addresses left out), with the same arithmetic the refusal uses. The result's count
        is kept until the next 絞込 (``recount``); a tick recounts only the ticked members.
        The status line is left alone: it holds what the marketer just did.
        """
        w = self._w
        if self.found is None or not w.table.result_ids or not w.settings.plan:
            w.select_warning.value = ""
            return
        opt_in = bool(w.compose.opt_in.value)
        held = self.found.already_sent_in  # the form's mail: who has it (see sort)

        def sendable(ids: list[int] | None) -> int:
            members = narrowed(w.members, self.filter)
            flt = self.filter or None
            return len(
                build_audience(members, flt, ids, opt_in, self._select_listed, held).sendable
            )

        try:
            if recount or self._select_quota is None or self._all_sendable is None:
                self._select_quota = campaign.quota_status(w.settings)
                self._select_listed = self.suppressions.addresses()
                # the result as sorted, unless メール案内 is asked (the sort does not ask it)
                self._all_sendable = (
                    sendable(w.table.result_ids if self.keyword else None)
                    if opt_in
                    else len(self.found.sendable)
                )
            counts = [("検索結果すべての送信件数", self._all_sendable)]
            if w.table.checked:
                counts.append(("チェックした会員の送信件数", sendable(list(w.table.checked))))
        except BcartnbError as err:
            w.status.error(err)
            return
        quota = self._select_quota
        if quota is None:
            return
        w.select_warning.value = "".join(quota_warning_html(quota, n, what) for what, n in counts)

    # --- 検索結果すべて / チェックした会員 → the form ------------------------------------------

    def choose(self, *, checked_only: bool) -> None:
        w = self._w
        ids = w.table.result_ids
        if checked_only:
            if not w.table.checked:
                w.status.error("送信する会員をチェックしてください。")
                return
            self.checked = tuple(w.table.checked)
        else:
            if not ids:
                w.status.error("検索結果がありません。絞込条件を変えてください。")
                return
            # a keyword result is not expressible as a filter: name its members
            self.checked = tuple(ids) if self.keyword else ()
        w.compose.refresh_templates()
        if self.show_counts():
            self._go("compose")
            w.status.info("メールを作成して「確認画面へ」を押してください。")

    def on_opt_in(self) -> None:
        self.show_counts()
        self.warn(recount=True)

    def show_counts(self) -> bool:
        """メール配信上限数 and this month's remaining; 送信件数 / 送信できない件数."""
        w = self._w
        opt_in = bool(w.compose.opt_in.value)

        def counts() -> tuple[QuotaStatus, Audience]:
            quota = campaign.quota_status(w.settings)
            return quota, self.sort(w.members, self.filter, self.checked, opt_in)

        got = w.status.run(counts, self._controls(), busy="件数を数えています…", quick=True)
        if got is None:
            return False
        self.quota, audience = got
        w.compose.show_quota(self.quota, audience)
        return True
