"""The wizard: B-Cart's member-mail screens in order, each step calling the package.

絞込オプション → 検索結果すべてに送信 / チェックした会員に送信 → compose → 確認画面 → 送信.
The wizard holds no rule of its own: filtering is :func:`~bcartnb.audience.build_audience`,
the counts and the quota come from :func:`~bcartnb.campaign.plan_campaign` and
:func:`~bcartnb.campaign.dry_run` (through :mod:`.planning`, which also knows who already
has the mail in the form), the previews from :func:`~bcartnb.compose.preview`, and the only
send is :func:`~bcartnb.campaign.send`, after the 送信 click (with ``repeat`` only when
「同じ内容を再送する」 is ticked). So a campaign made here is the same campaign the papermill
notebook and ``bcartnb run`` would make from :attr:`Wizard.spec`. An unfinished campaign is
continued or ended from the done screen with :func:`~bcartnb.campaign.resume` and
:func:`~bcartnb.campaign.cancel`. The wizard builds the screens, wires them and keeps them in
order; the member screen's actions are :mod:`.selecting`'s, the send's :mod:`.sending`'s.

The keyword box is not part of the contract's filter (it looks in several columns at once);
when it is used, 「検索結果すべてに送信」 sends to the ids it found, recorded as ``checked``,
so the spec still names exactly who was mailed and can be replayed from the member file.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import ipywidgets as widgets
import pandas as pd

from bcartnb import campaign
from bcartnb.audience import Audience
from bcartnb.campaign import CampaignPlan, CampaignSpec, DeliverySummary, Transport
from bcartnb.compose import preview
from bcartnb.members import empty_members, read_members
from bcartnb.members.columns import day_words
from bcartnb.quota import QuotaStatus
from bcartnb.segments import SegmentStore
from bcartnb.settings import Settings
from bcartnb.templates import TemplateStore

from ._common import Status, fit, hide, row, show
from .compose_step import ComposeStep
from .confirm_step import ConfirmStep
from .filter_step import FilterStep
from .header import Header
from .mail_check import MailCheck
from .member_source import MemberSource, store_upload
from .member_table import PAGE_SIZE, MemberTable
from .planning import Confirmation, confirm, form_spec
from .purchase_filters import has_purchases
from .results_panel import ResultsPanel
from .schedule_form import Scheduling
from .schedule_screen import ScheduleScreen
from .segment_tools import SegmentTools
from .selecting import Selecting
from .send_step import SendStep
from .sending import Sending
from .templates_screen import template_tools
from .viewport import Viewport

__all__ = ["PREVIEW_CHOICES", "STAGES", "STAGE_VIEW", "Wizard"]

#: The screens, in order; :attr:`Wizard.stage` is one of them.
STAGES = ("select", "compose", "confirm", "sending", "done")
#: What each screen brings into view when it opens (:mod:`.viewport`): the status line atop
#: the new screen (what just happened, then the screen's top), or the progress bar while sending.
STAGE_VIEW = {
    "select": "bcartnb-status",
    "compose": "bcartnb-status",
    "confirm": "bcartnb-status",
    "sending": "bcartnb-progress",
    "done": "bcartnb-status",
}
#: How many sendable members the confirmation screen offers to preview.
PREVIEW_CHOICES = 50


class Wizard:
    """The member-mail wizard. Display it (``wizard`` as a cell's last line, or ``.show()``).

    Tests and scripts drive it like a user: set the controls' ``value`` and call the buttons'
    ``click()``; ``status.value`` holds what the status area says and ``result`` the
    :class:`~bcartnb.campaign.DeliverySummary` once sent.
    """

    def __init__(
        self,
        members: pd.DataFrame | str | os.PathLike[str] | None,
        settings: Settings,
        *,
        transport: Transport | None = None,
        ledger_path: str | os.PathLike[str] | None = None,
        page_size: int = PAGE_SIZE,
        member_folders: list[str | os.PathLike[str]] | None = None,
        upload_dir: str | os.PathLike[str] | None = None,
        orders: str | os.PathLike[str] | None = None,
    ) -> None:
        self.settings = settings if ledger_path is None else settings.replace(db=Path(ledger_path))
        #: the 受注 file joined onto every member file (購入履歴); None: no purchase filters
        self.orders = Path(os.path.abspath(orders)) if orders is not None else None
        if members is None:  # chosen in the wizard (会員ファイル)
            self.members = empty_members()
        elif isinstance(members, pd.DataFrame):
            self.members = self._with_orders(members)
        else:
            self.members = self._read(members)
        self.transport = transport
        self.store = TemplateStore(self.settings.templates)
        self.segments = SegmentStore(self.settings.segments)
        self.status = Status()

        home = settings.source.parent if settings.source else Path.cwd()
        self.upload_dir = Path(upload_dir) if upload_dir is not None else home / "uploads"
        if member_folders is None:
            cwd = Path.cwd()
            member_folders = [cwd, cwd / "data", cwd.parent / "data", home]
        self.source = MemberSource([*member_folders, self.upload_dir])
        self.filter_step = FilterStep(self.members, self.settings.names)
        self.table = MemberTable(page_size)
        self.send_all = widgets.Button(description="検索結果すべてに送信", button_style="primary")
        self.send_all.add_class("bcartnb-send-all")
        self.send_checked = widgets.Button(
            description="チェックした会員に送信", button_style="primary"
        )
        self.send_checked.add_class("bcartnb-send-checked")
        fit(self.send_all, self.send_checked)
        self.select_warning = widgets.HTML("")
        self.select_warning.add_class("bcartnb-select-quota-warning")
        self.compose = ComposeStep(self.store, self.status)
        self.compose.set_fields(self.members.columns)
        self.confirm = ConfirmStep()
        self.sending = SendStep()
        self.templates = template_tools(self)  # テンプレート管理, テンプレートとして保存
        self.results = ResultsPanel(self.settings)  # 配信履歴と結果, 配信結果で絞り込む
        self._select_box = widgets.VBox(
            [
                self.templates.widget,
                self.source,
                self.filter_step,
                self.results,
                self.table,
                self.select_warning,
                row(self.send_all, self.send_checked, css="bcartnb-select-buttons"),
            ]
        )
        self.header = Header(self.settings)  # the title and 配信記録: which ledger, if made yet
        self.viewport = Viewport()  # scrolls the page to what a click changed
        self.schedules = ScheduleScreen(self.settings)  # 予約一覧, from every step
        self.scheduling = Scheduling(
            self, self.confirm.schedule, self.confirm.send, self.schedules
        )  # 予約して送信 on the confirmation
        self.widget = widgets.VBox(
            [
                self.header,
                self.schedules,
                self.status.widget,
                self._select_box,
                self.compose,
                self.confirm,
                self.sending,
                self.viewport.widget,
            ]
        )
        self.widget.add_class("bcartnb-wizard")
        self.widget.add_class(self.viewport.scope)
        # an error is said atop the wizard, maybe screens above the button that caused it
        self.status.widget.observe(lambda _c: self._reveal_error(), names="value")

        self.spec: CampaignSpec | None = None
        self.plan: CampaignPlan | None = None
        self._send_started = False
        #: the confirmation's composing of every mail, when it runs after the screen shows
        self.mail_check: MailCheck | None = None
        #: 注意 lines of the last 確認画面へ (a recount past midnight), kept under its verdict
        self._confirm_notes: list[str] = []
        #: the mail 「同じ内容を再送する」 was ticked for (its identity), and how many it adds
        self._repeat_key: str | None = None
        self._repeatable = 0
        self.segment_tools = SegmentTools(self)  # セグメント: pick, read in words, save
        self.selecting = Selecting(  # 絞込 → the member table → the result or the ticks
            self,
            controls=lambda: self._controls_of(self.stage),
            repeat_key=lambda: self._repeat_key,
            go=self._go,
        )
        self._wire_filter_step()
        self.source.load.on_click(lambda _b: self._load_chosen())
        self.source.upload.observe(lambda _c: self._load_upload(), names="value")
        self.table.observe(lambda _c: self.selecting.warn(), names="checked")
        if self.members.attrs.get("source"):
            self.source.show_current(str(self.members.attrs["source"]), len(self.members))
        self.send_all.on_click(lambda _b: self.selecting.choose(checked_only=False))
        self.send_checked.on_click(lambda _b: self.selecting.choose(checked_only=True))
        self.compose.opt_in.observe(lambda _c: self.selecting.on_opt_in(), names="value")
        self.compose.back.on_click(lambda _b: self.selecting.back_to_select())
        self.compose.to_confirm.on_click(lambda _b: self._from_compose(self._to_confirm))
        self.confirm.on_preview = self._render_preview
        self.confirm.on_repeat = self._on_repeat
        self.confirm.back.on_click(lambda _b: self._back())
        self.confirm.send.on_click(lambda _b: self._send())
        self.confirm.test_send.on_click(lambda _b: self._send_test())
        self.sending.again.on_click(lambda _b: self._new_campaign())
        self.sender = Sending(
            self.sending,
            self.status,
            self.settings,
            transport,
            controls=lambda: self.controls,
            stage=lambda: self.stage,
            go=self._go,
        )
        self.confirm.test_to.value = self.settings.admin or ""
        self.stage = "select"
        self._go("select", reveal=False)
        self.segment_tools.refresh()
        self.results.use.on_click(lambda _b: self.selecting.apply_clicked())
        self.status.run(self.results.refresh, busy="配信履歴を読み込んでいます…")
        self.apply_filter()

    # --- what the report and tests read ---------------------------------------------------

    @property
    def filter(self) -> dict[str, Any]:
        """The contract's filter dict of the last 絞込 (a copy; the keyword is separate)."""
        return dict(self.selecting.filter)

    @property
    def keyword(self) -> str:
        """The keyword of the last 絞込 (company, person, address); "" when none."""
        return self.selecting.keyword

    @property
    def checked(self) -> tuple[int, ...]:
        """The ids the campaign's ``checked`` holds (empty: every search result)."""
        return self.selecting.checked

    @property
    def found(self) -> Audience | None:
        """The last search result, as the table shows it."""
        return self.selecting.found

    @property
    def quota(self) -> QuotaStatus | None:
        """This month's quota as the form shows it (None before the form is opened)."""
        return self.selecting.quota

    @property
    def controls(self) -> list[widgets.Widget]:
        return [*self._controls_of("select"), *self.compose.controls, *self._controls_of("")]

    def _controls_of(self, stage: str) -> list[widgets.Widget]:
        """What an action on ``stage``'s screen freezes: a hidden screen's controls cannot be
        clicked, and each frozen control costs two widget messages on the way to the screen.
        On the member screen only what starts an action (its buttons, the upload): a filter
        input starts nothing and is read when 絞込 starts, and freezing its 14 inputs (more
        with each new filter) was a third of a 絞込's messages."""
        table = self.table
        if stage == "select":
            buttons = [table.check_page, table.prev, table.next, self.send_all, self.send_checked]
            every = [
                *self.source.controls,
                *self.filter_step.controls,
                *self.results.controls,
                *buttons,
            ]
            return [c for c in every if isinstance(c, widgets.Button | widgets.FileUpload)]
        if stage == "compose":
            return list(self.compose.controls)
        return [*self.confirm.controls, *self.sending.controls]

    def show(self) -> None:
        from IPython.display import display

        display(self.widget)  # type: ignore[no-untyped-call]

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(**kwargs)

    # --- step 0: 会員ファイル -------------------------------------------------------------------

    def _wire_filter_step(self) -> None:
        self.filter_step.apply.on_click(lambda _b: self.selecting.apply_clicked())
        self.segment_tools.wire(self.filter_step)

    def save_segment(self) -> None:
        """この絞込条件をセグメントに保存 (:class:`~.segment_tools.SegmentTools`)."""
        self.segment_tools.save()

    def load_members(self, path: str | os.PathLike[str]) -> None:
        """Read another member file; the search, the ticks and the filter choices start over."""
        frame = self.status.run(
            lambda: self._read(path), self._controls_of(self.stage), busy="読み込み中です…"
        )
        if frame is None:
            return
        self.members = frame
        self.selecting.members_changed()
        segment = self.filter_step.segment_choice
        self.filter_step = FilterStep(frame, self.settings.names)
        self._wire_filter_step()
        kids = self._select_box.children  # テンプレート管理, 会員ファイル, 絞込オプション, …
        self._select_box.children = (*kids[:2], self.filter_step, *kids[3:])
        self.segment_tools.refresh(segment)
        self.compose.set_fields(frame.columns)
        self.source.show_current(str(frame.attrs.get("source", path)), len(frame))
        self.apply_filter()
        if self.status.kind != "error":
            notes = frame.attrs.get("warnings", [])  # a custom field renamed, a column misnamed
            self.status.info(
                "\n注意: ".join([f"会員ファイルを読み込みました: {len(frame):,}件", *notes])
            )

    def _read(self, path: str | os.PathLike[str]) -> pd.DataFrame:
        return self._with_orders(read_members(path))

    def _with_orders(self, frame: pd.DataFrame) -> pd.DataFrame:
        """The members with their purchase columns (the one join), when orders were given."""
        if self.orders is None or has_purchases(frame):
            return frame
        return campaign.members_with_orders(frame, self.orders, self.settings)

    def purchases_of_today(self) -> str | None:
        """The purchase columns counted again when Tokyo's day changed since they were (a
        wizard left open past midnight would 絞込 and plan with yesterday's 休眠 and
        最終購入からの日数); the words that say so on screen, None when nothing changed.
        Called where a search or a plan starts, inside its :meth:`Status.run`."""
        if self.orders is None or not campaign.purchases_stale(self.members):
            return None
        self.members = campaign.members_with_orders(self.members, self.orders, self.settings)
        self.selecting.members_changed()
        self.filter_step.purchases.recount(self.members)
        day = str(self.members.attrs["purchases_as_of"])
        return (
            f"日付が変わったため、購入履歴（顧客グループ・最終購入からの日数など）を"
            f"今日（{day_words(*map(int, day.split('-')))}）の日付で計算し直しました。"
        )

    def _load_chosen(self) -> None:
        path = self.source.chosen
        if path is None:
            self.status.error("会員ファイルを一覧から選んでください。")
            return
        self.load_members(path)

    def _load_upload(self) -> None:
        got = self.source.uploaded()
        if got is None:
            return
        name, content = got
        path = self.status.run(
            lambda: store_upload(content, name, self.upload_dir),
            self._controls_of(self.stage),
            busy="アップロードしたファイルを保存しています…",
        )
        if path is None:
            return
        self.source.refresh()
        self.load_members(path)

    # --- steps 1 and 2: 絞込, 検索結果すべて / チェックした会員 (in .selecting) ------------------

    def apply_filter(self) -> None:
        """絞込: the filter (with the segment) and keyword of the controls → the member table."""
        self.selecting.apply_filter()

    # --- step 3 → 4: 確認画面へ --------------------------------------------------------------

    def _spec(self) -> CampaignSpec:
        return form_spec(self.members, self.filter, self.checked, self.compose.values())

    def _from_compose(self, action: Callable[[], None]) -> None:
        """A click of the form's: the controls of a quick action are not frozen, so a second
        click queued behind the one that already left the form does nothing."""
        if self.stage == "compose":
            action()

    def _to_confirm(self) -> None:
        recounted: list[str] = []

        def planned() -> Confirmation:
            recounted.extend(filter(None, [self.purchases_of_today()]))
            return confirm(
                self._spec(),
                self.settings,
                self.members,
                self._repeat_key,
                suppressed=self.selecting.suppressions.addresses(),
            )

        got = self.status.run(
            planned,
            self._controls_of(self.stage),
            busy="メールを作成しています…",
            quick=True,
        )
        # said under what the plan says, and again under the check's verdict, which
        # replaces that line when it comes (a list past CHECK_AT_ONCE_UP_TO)
        self._confirm_notes = recounted
        self._say_confirmed(got)
        if got is None:
            self._add_confirm_notes()

    def _say_confirmed(self, got: Confirmation | None) -> None:
        """The confirmation screen for ``got``, or the form as it was (the error said)."""
        if got is None:
            if self.plan is not None:  # the box as the plan still shown has it
                self._repeat_key = self.plan.mail_keys[0] if self.plan.repeat else None
                self.confirm.offer_repeat(self._repeatable, self.plan.repeat)
            return
        self._stop_check()
        self.plan, self.spec, self._repeatable = got.plan, got.plan.spec, got.repeatable
        if not got.plan.repeat:  # another mail, or nobody to resend to: the tick is spent
            self._repeat_key = None
        self._send_started = False
        self.confirm.test_result.clear()
        self.confirm.show_counts(got.summary, self.filter, self.keyword, got.plan.settings)
        self.confirm.offer_repeat(got.repeatable, got.plan.repeat)
        sendable = got.plan.audience.sendable
        self.confirm.offer_previews(sendable, PREVIEW_CHOICES)
        self._render_preview()
        self.confirm.send.disabled = got.refused is not None or sendable.empty
        self.confirm.back.disabled = False
        self.scheduling.offer(got.plan)
        self._go("confirm")
        if got.refused is not None:
            self.status.error(got.refused)
        elif sendable.empty and got.plan.audience.reasons["already_sent"]:
            self.status.error(
                "送信できる会員がいません: 対象の会員は、同じメールを受け取り済みです。"
                + (
                    "もう一度送るときは「同じ内容を再送する」にチェックしてください。"
                    if got.repeatable
                    else ""
                )
            )
        elif sendable.empty:
            self.status.error("送信できる会員がいません。")
        elif not got.checked:
            self.status.info(
                f"送信件数 {len(sendable):,}件。全員分のメールを作成して確かめています…"
                "（このまま「送信」もできます。送信前にも全員分を確かめます）"
            )
        else:
            self.status.info(
                f"送信件数 {len(sendable):,}件。内容を確認して「送信」を押してください。"
            )
        self._add_confirm_notes()
        if got.refused is None and not sendable.empty and not got.checked:
            self.mail_check = MailCheck(got.plan, self._checked).start()

    def _add_confirm_notes(self) -> None:
        for words in self._confirm_notes:
            self.status.note(words)

    def _checked(self, error: BaseException | None) -> None:
        """The background composing of every mail is done (on its thread, under its lock)."""
        plan = self.plan
        if plan is None or self.stage != "confirm":
            return
        if error is None:
            n = len(plan.audience.sendable)
            self.status.info(
                f"送信件数 {n:,}件。全員分のメールを確かめました。"
                "内容を確認して「送信」を押してください。"
            )
        else:
            self.confirm.send.disabled = True
            self.scheduling.form.button.disabled = True
            self.status.error(
                error, then="送信も予約もできません。「戻る」でメールを直してください。"
            )
        self._add_confirm_notes()

    def _stop_check(self) -> None:
        if self.mail_check is not None:
            self.mail_check.cancel()
            self.mail_check = None

    def _on_repeat(self, ticked: bool) -> None:
        """「同じ内容を再送する」 ticked or unticked: the confirmation planned again, so the
        counts, the quota and 送信 include (or leave out) the members who have this mail."""
        if self.plan is None or self.stage != "confirm":
            return
        self._repeat_key = self.plan.mail_keys[0] if ticked else None
        self._to_confirm()

    def _render_preview(self) -> None:
        plan = self.plan
        if plan is None:
            return
        mid = self.confirm.preview_member.value
        if mid is None:
            self.confirm.show_previews([], plan.warnings)
            return
        got = self.status.run(
            lambda: preview(plan.composer, plan.audience.sendable, ids=[mid]),
            self.confirm.controls,
            busy="プレビューを作成しています…",
            quick=True,
        )
        if got is not None:
            self.confirm.show_previews(got, plan.warnings)

    def _back(self) -> None:
        """戻る: back to the form, everything typed kept (the 再送 box too), nothing sent."""
        self._stop_check()
        self.plan = None
        self._go("compose")
        self.selecting.show_counts()

    def _send_test(self) -> None:
        """テスト送信: the previewed member's mail to one address; not counted, not the send."""
        plan = self.plan
        if plan is None:
            return
        to = self.confirm.test_to.value.strip()
        said = self.confirm.test_result  # under the button: the status line is screens away
        mail = said.run(
            lambda: campaign.send_test(
                plan, to, member_id=self.confirm.preview_member.value, transport=self.transport
            ),
            self.confirm.controls,
            busy="テスト送信しています…",
        )
        if mail is not None:
            said.info(
                f"テスト送信しました: {mail.to}（会員ID {mail.member_id} の内容。"
                "配信数には数えません）"
            )
        self.viewport.reveal("bcartnb-test-result")

    # --- step 5: 送信 (再開 and 取消 in .sending) ------------------------------------------

    def _send(self) -> None:
        plan = self.plan
        if plan is None or self._send_started or self.confirm.send.disabled:
            return  # a second click, or a click without a confirmed plan: never send twice
        self._send_started = True
        self.confirm.send.disabled = True
        self._stop_check()  # the send composes every mail before the first goes out
        self.sender.send(plan)

    @property
    def result(self) -> DeliverySummary | None:
        """The summary on the done screen (:class:`~.sending.Sending`), None before a send."""
        return self.sender.result

    def _new_campaign(self) -> None:
        """新しい配信を作成: the member list again, for the next campaign, without a new cell.

        The search and the form keep what was typed (the next mail is often a variation);
        the ticks and 「同じ内容を再送する」 are cleared, and the campaign just sent stays in
        the history. The table now holds back who has the form's mail (``already_sent``): the
        same mail to the same members is not sent again unless 「同じ内容を再送する」 is ticked.
        """
        if self.stage != "done":
            return
        self.plan = self.spec = self.sender.result = None
        self._send_started = False
        self._repeat_key, self._repeatable = None, 0
        self.confirm.offer_repeat(0, False)
        self.confirm.send.disabled = False
        self.selecting.clear_ticks()
        self._go("select")
        self.status.run(self.results.refresh)  # the campaign just sent, in 配信履歴と結果
        self.apply_filter()
        self.status.info("新しい配信: 送信先を絞り込み、会員を選んでください")

    # --- screens ---------------------------------------------------------------------------

    def _reveal_error(self) -> None:
        if self.status.kind == "error":
            self.viewport.reveal("bcartnb-status")

    def _go(self, stage: str, *, reveal: bool = True) -> None:
        self.stage = stage
        self.header.refresh()
        boxes = {
            "select": [self._select_box],
            "compose": [self.compose],
            "confirm": [self.confirm],
            "sending": [self.confirm, self.sending],
            "done": [self.sending],
        }[stage]
        for box in (self._select_box, self.compose, self.confirm, self.sending):
            (show if box in boxes else hide)(box)
        if reveal:
            self.viewport.reveal(STAGE_VIEW[stage])
