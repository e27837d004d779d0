"""予約一覧 in the wizard: the scheduled campaigns, 取消 and 内容を確認.

A face on the ledger's ``scheduled`` table through the conductor, the very list
``bcartnb schedule`` prints: time, subject, the audience in words
(:func:`~bcartnb.campaign.audience_words`), the count projected when it was scheduled, and the
status. 取消 asks once more, then calls :func:`~bcartnb.campaign.cancel_scheduled`, the
ledger's rule: never sent when cancelled before its time, and a ``due`` sending it at that
moment stops between two mails and sends nothing more; a campaign already sent cannot be
cancelled, and the ledger's refusal is said as it is. 内容を確認 shows the frozen mail
rendered for a member as ``due`` will render it (:func:`~bcartnb.campaign.scheduled_view`).
"""

from __future__ import annotations

import html
from collections.abc import Callable, Sequence

import ipywidgets as widgets

from bcartnb import campaign
from bcartnb.campaign import SCHEDULE_LABELS, Scheduled, ScheduledView
from bcartnb.quota import TOKYO
from bcartnb.settings import Settings

from ._common import Status, fit, hide, row, show
from .confirm_step import preview_html
from .templates_screen import Ask

__all__ = ["CANCELLABLE", "ScheduleScreen", "schedule_row_cells", "view_html"]

#: The statuses 取消 is offered for (the ledger refuses the others all the same).
CANCELLABLE = ("scheduled", "sending")
#: The list's columns and their widths (one grid, so the rows line up).
_COLUMNS = (("送信日時", "9em"), ("件名", "16em"), ("送信先", "20em"), ("見込み件数", "6em"))
_STATUS_WIDTH = "6em"


def _when(s: Scheduled) -> str:
    return f"{s.send_at.astimezone(TOKYO):%Y-%m-%d %H:%M}"


def schedule_row_cells(s: Scheduled) -> list[str]:
    """One scheduled campaign as the list shows it (text, escaped by the caller)."""
    return [
        _when(s),
        s.subject,
        campaign.audience_words(s.params),
        f"{s.projected:,}件",
        SCHEDULE_LABELS.get(s.status, s.status),
    ]


def _cell(text: str, width: str, css: str = "") -> widgets.HTML:
    cell = widgets.HTML(
        f'<div style="white-space:normal;overflow-wrap:anywhere">{html.escape(text)}</div>',
        layout=widgets.Layout(width=width, min_width=width),
    )
    if css:
        cell.add_class(css)
    return cell


def view_html(view: ScheduledView) -> str:
    """内容を確認: the record, then the mail for one member as it will be sent."""
    s = view.scheduled
    now = "" if view.sendable_now is None else f"／今の会員で数えると {view.sendable_now:,}件"
    lines = [
        f"<b>予約ID</b>: {html.escape(s.schedule_id)}"
        f"（{html.escape(SCHEDULE_LABELS.get(s.status, s.status))}）",
        f"<b>送信日時</b>: {_when(s)}（日本時間）",
        f"<b>送信先</b>: {html.escape(campaign.audience_words(s.params))}"
        "（送信時点の会員に送ります）",
        f"<b>送信件数の見込み</b>: 予約したとき {s.projected:,}件{now}",
        *([f"<b>結果</b>: {html.escape(s.result)}"] if s.result else []),
    ]
    head = "<br>".join(lines)
    if view.error:  # the member file cannot be read now: the mail as frozen, before merging
        return (
            f'{head}<p style="color:#b00020">{html.escape(view.error)}</p>'
            "<p>差し込み前の内容:</p>"
            f"<p><b>メール件名</b>: {html.escape(s.subject)}</p>"
            '<pre class="bcartnb-preview-text" style="white-space:pre-wrap">'
            f"{html.escape(str(s.mail.get('body', '')))}</pre>"
        )
    body = "<hr>".join(preview_html(p) for p in view.previews)
    body = body or "<p>表示できる会員がいません。</p>"
    return f"{head}<hr>{body}"


class ScheduleScreen(widgets.VBox):  # type: ignore[misc]
    """予約一覧; ``open_button`` shows and hides it (the list read again on each opening)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.status = Status("bcartnb-schedule-status")  # not the wizard's status line
        self.open_button = widgets.Button(description="予約一覧", icon="calendar")
        self.open_button.add_class("bcartnb-open-schedules")
        self.every = widgets.Checkbox(
            description="送信済み・取消・期限切れも表示する", indent=False, layout={"width": "auto"}
        )
        self.every.add_class("bcartnb-schedule-every")
        self.reload = widgets.Button(description="一覧を更新", icon="refresh")
        self.reload.add_class("bcartnb-schedule-reload")
        fit(self.open_button, self.reload)
        self.rows = widgets.VBox([])
        self.rows.add_class("bcartnb-schedule-list")
        self.ask = Ask("bcartnb-schedule-confirm-cancel", "取消する", danger=True)
        self.view = widgets.HTML("")
        self.view.add_class("bcartnb-schedule-view")
        #: the records listed, in the order shown
        self.listed: list[Scheduled] = []
        #: told of each 取消 made here (the confirmation that scheduled it says so too)
        self.on_cancel: Callable[[Scheduled], None] | None = None
        self._buttons: list[widgets.Button] = []
        self.open_button.on_click(lambda _b: self.toggle())
        self.reload.on_click(lambda _b: self.refresh())
        self.every.observe(lambda _c: self.refresh(), names="value")
        self.panel = widgets.VBox(
            [
                widgets.HTML(
                    "<b>予約一覧</b>（予約した配信。送信時点の会員に、bcartnb due が送ります）"
                ),
                row(self.every, self.reload),
                self.rows,
                self.ask,
                self.status.widget,
                self.view,
            ]
        )
        self.panel.add_class("bcartnb-schedules")
        hide(self.panel)
        super().__init__([row(self.open_button), self.panel])
        self.add_class("bcartnb-schedule-tools")

    @property
    def controls(self) -> list[widgets.Widget]:
        return [self.every, self.reload, *self._buttons]

    def toggle(self) -> None:
        if self.panel.layout.display == "none":
            show(self.panel)
            self.refresh()
        else:
            hide(self.panel)

    def refresh(self) -> None:
        """Read the list again (a ``due`` may have sent one, the CLI cancelled one)."""
        got = self.status.run(
            lambda: campaign.scheduled_campaigns(self.settings, every=bool(self.every.value)),
            self.controls,
            busy="予約一覧を読み込んでいます…",
        )
        if got is not None:
            self._show(got)

    def _show(self, listed: Sequence[Scheduled]) -> None:
        self.listed = list(listed)
        self._buttons = []
        if not listed:
            empty = widgets.HTML("予約中の配信はありません。")
            empty.add_class("bcartnb-schedule-empty")
            self.rows.children = [empty]
            return
        head = [_cell(name, width) for name, width in _COLUMNS]
        rows: list[widgets.Widget] = [row(*head, _cell("状態", _STATUS_WIDTH))]
        for s in listed:
            rows.append(self._row(s))
        self.rows.children = rows

    def _row(self, s: Scheduled) -> widgets.HBox:
        texts = schedule_row_cells(s)
        cells = [_cell(t, w) for t, (_n, w) in zip(texts[:4], _COLUMNS, strict=True)]
        cells.append(_cell(texts[4], _STATUS_WIDTH, "bcartnb-schedule-state"))
        look = widgets.Button(description="内容を確認", icon="eye")
        look.add_class("bcartnb-schedule-show")
        look.on_click(lambda _b, sid=s.schedule_id: self.look(sid))
        buttons = [look]
        if s.status in CANCELLABLE:
            cancel = widgets.Button(description="取消", button_style="danger", icon="times")
            cancel.add_class("bcartnb-schedule-cancel")
            cancel.on_click(lambda _b, rec=s: self.request_cancel(rec))
            buttons.append(cancel)
        fit(*buttons)
        self._buttons.extend(buttons)
        line = row(*cells, *buttons, css="bcartnb-schedule-row")
        line.add_class(f"bcartnb-schedule-{s.schedule_id}")
        return line

    def look(self, schedule_id: str) -> None:
        """内容を確認: the frozen mail as the member will receive it."""
        got = self.status.run(
            lambda: campaign.scheduled_view(self.settings, schedule_id),
            self.controls,
            busy="予約した内容を表示しています…",
        )
        if got is not None:
            self.view.value = view_html(got)

    def request_cancel(self, s: Scheduled) -> None:
        """取消: only after the question naming the campaign is answered 取消する."""
        self.ask.ask(
            f"予約 {s.schedule_id}（{_when(s)}「{s.subject}」）を取り消しますか？"
            "取り消した予約は送信しません。",
            lambda: self.cancel(s.schedule_id),
        )

    def cancel(self, schedule_id: str) -> None:
        done = self.status.run(
            lambda: campaign.cancel_scheduled(self.settings, schedule_id),
            self.controls,
            busy="取り消しています…",
        )
        if done is None:
            self._refresh_keeping_error()
            return
        self.refresh()
        self.status.info(campaign.cancelled_words(done))
        if self.on_cancel is not None:
            self.on_cancel(done)

    def _refresh_keeping_error(self) -> None:
        """The list read again after a refusal, the refusal still said."""
        said, kind = self.status.value, self.status.kind
        self.refresh()
        if kind == "error":
            self.status.kind = kind
            self.status.widget.value = said
