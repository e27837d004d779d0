"""「予約して送信」 on the confirmation screen: a date and a time (Japan time) beside 送信.

The form holds no rule of its own. The time is checked by
:func:`~bcartnb.campaign.check_send_at` (the one clock, ``BCARTNB_NOW`` included), the chosen
month's quota with the campaigns already scheduled in it by
:func:`~bcartnb.campaign.quota_outlook`, the audience is said by
:func:`~bcartnb.campaign.audience_words`, and the campaign confirmed on the screen is stored by
:func:`~bcartnb.campaign.schedule`, exactly as ``bcartnb run --at`` stores it: the mail frozen
as previewed, the audience kept as a rule and resolved when it is sent (送信時点の会員に送ります).
Nothing is sent here: ``bcartnb due``, run every minute by cron or systemd, sends it.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from datetime import date, datetime, time, timedelta
from typing import Any, Protocol

import ipywidgets as widgets

from bcartnb import campaign
from bcartnb.campaign import CampaignPlan, Scheduled, ScheduleResult
from bcartnb.exceptions import BcartnbError, InputError
from bcartnb.quota import TOKYO, now_tokyo
from bcartnb.settings import Settings

from ._common import Status, fit, row, warning_html
from .header import Header

__all__ = [
    "DUE_HINT",
    "TIMES",
    "ScheduleForm",
    "Scheduling",
    "audience_note_html",
    "scheduled_text",
    "send_at_of",
]

#: The times offered, every 5 minutes: ``due`` runs every minute, a marketer thinks in 9:00.
TIMES = tuple(f"{h:02d}:{m:02d}" for h in range(24) for m in range(0, 60, 5))
#: How a scheduled campaign goes out, said where it is scheduled.
DUE_HINT = (
    "bcartnb due を毎分動かすと送信されます（README の「予約配信」: cron の1行か "
    "examples/systemd のタイマー）。"
)


def send_at_of(day: date | None, hhmm: str | None) -> datetime:
    """The chosen day and HH:MM as an aware Tokyo time; a missing half is a Japanese error."""
    if day is None or not hhmm:
        raise InputError(
            "choose the send date and time",
            ja="予約する送信日と時刻を選んでください。",
        )
    try:
        hours, minutes = (int(part) for part in str(hhmm).split(":"))
        return datetime.combine(day, time(hours, minutes), tzinfo=TOKYO)
    except ValueError as err:
        raise InputError(
            f"the time must be HH:MM, not {hhmm!r}",
            ja=f"時刻は 09:00 のように「時:分」で選んでください（{hhmm!r} ではなく）。",
        ) from err


def audience_note_html(params: dict[str, Any], sendable: int, keyword: str = "") -> str:
    """Who the scheduled campaign goes to, said before 予約して送信 is clicked."""
    lines = [
        f"<b>送信先</b>: {html.escape(campaign.audience_words(params))}",
        f"<b>送信件数の見込み</b>: {sendable:,}件（今の会員で数えた件数）",
        "<b>送信時点の会員に送ります</b>（会員ファイルは送信のときに読み直します。"
        "メールの内容は今の確認画面のとおりです）。",
    ]
    if params.get("checked"):
        found = f"キーワード「{html.escape(keyword)}」の検索結果の" if keyword else "チェックした"
        lines.append(
            f"送信先は{found}会員の会員IDで決まっています: 送信時点の会員ファイルにある、"
            "この会員IDの会員に送ります（メールアドレスは送信時点のものです）。"
        )
    return "<br>".join(lines)


def scheduled_text(result: ScheduleResult) -> str:
    """What the screen says once scheduled: the 予約ID, the time and how it will be sent."""
    s = result.scheduled
    return "\n".join(
        [
            f"予約しました（まだ送信していません）: 予約ID {s.schedule_id}",
            f"送信日時: {s.send_at.astimezone(TOKYO):%Y-%m-%d %H:%M}（日本時間）",
            f"件名: {s.subject}",
            f"送信先: {campaign.audience_words(s.params)}",
            f"送信件数の見込み: {result.sendable:,}件。送信時点の会員に送ります。",
            DUE_HINT,
            "取消と内容の確認は「予約一覧」でできます"
            f"（コマンドなら bcartnb schedule cancel {s.schedule_id}）。",
            *(f"注意: {w}" for w in result.warnings),
        ]
    )


class ScheduleForm(widgets.VBox):  # type: ignore[misc]
    """The date, the time and 「予約して送信」, with what scheduling will do and its result."""

    def __init__(self) -> None:
        self.day = widgets.DatePicker(description="送信日")
        self.day.add_class("bcartnb-schedule-date")
        self.time = widgets.Dropdown(
            options=TIMES, value="09:00", description="時刻", layout={"width": "12em"}
        )
        self.time.add_class("bcartnb-schedule-time")
        self.button = widgets.Button(description="予約して送信", icon="clock-o")
        self.button.add_class("bcartnb-schedule-send")
        fit(self.button)
        self.note = widgets.HTML("")
        self.note.add_class("bcartnb-schedule-note")
        self.outlook = widgets.HTML("")
        self.outlook.add_class("bcartnb-schedule-quota")
        #: the result (or the error) of 予約して送信, right under it
        self.result = Status("bcartnb-schedule-result")
        super().__init__(
            [
                widgets.HTML("<b>予約配信</b>（日時は日本時間）"),
                row(self.day, self.time, self.button),
                self.note,
                self.outlook,
                self.result.widget,
            ]
        )
        self.add_class("bcartnb-schedule-form")

    @property
    def controls(self) -> list[widgets.Widget]:
        return [self.day, self.time, self.button]

    @property
    def send_at(self) -> datetime:
        """The chosen time, not yet checked against the clock."""
        return send_at_of(self.day.value, self.time.value)


class _Wizard(Protocol):
    """What scheduling reads of the wizard: the confirmed plan and where to say things."""

    settings: Settings
    plan: CampaignPlan | None
    status: Status
    header: Header

    @property
    def keyword(self) -> str: ...


class _Screen(Protocol):
    """予約一覧 (:class:`~.schedule_screen.ScheduleScreen`), as scheduling tells it and hears."""

    on_cancel: Callable[[Scheduled], None] | None

    def refresh(self) -> None: ...


class Scheduling:
    """予約して送信 wired to the wizard's confirmed plan and to 予約一覧 (``screen``): the list
    hears of each campaign scheduled, and the form of the one it just scheduled cancelled."""

    def __init__(
        self, wizard: _Wizard, form: ScheduleForm, send: widgets.Button, screen: _Screen
    ) -> None:
        self._w, self.form, self._send, self._screen = wizard, form, send, screen
        self.last: ScheduleResult | None = None
        self._send_was = False
        screen.on_cancel = self.cancelled
        form.button.on_click(lambda _b: self.request())
        form.day.observe(lambda _c: self.project(), names="value")
        form.time.observe(lambda _c: self.project(), names="value")

    def offer(self, plan: CampaignPlan) -> None:
        """A new confirmation: the note for its audience, tomorrow 09:00 unless a day is chosen.

        Usable whenever somebody can be mailed, even when this month's quota refuses 送信:
        a campaign scheduled into next month counts against next month.
        """
        form = self.form
        form.result.clear()
        self.last = None
        if form.day.value is None:
            form.day.value = (now_tokyo() + timedelta(days=1)).date()
        sendable = len(plan.audience.sendable)
        form.note.value = audience_note_html(plan.spec.to_params(), sendable, self._w.keyword)
        form.button.disabled = not sendable
        self.project()

    def project(self) -> None:
        """The chosen month's quota with what is scheduled in it: a warning, not a refusal."""
        plan, form = self._w.plan, self.form
        if plan is None:
            return
        try:
            needed = len(plan.audience.sendable)
            _, over = campaign.quota_outlook(self._w.settings, form.send_at, needed)
        except BcartnbError:  # no day chosen yet: said on 予約して送信, not while choosing
            over = ""
        form.outlook.value = warning_html(over, "bcartnb-schedule-over-quota") if over else ""

    def request(self) -> None:
        """予約して送信: the confirmed campaign stored for its time; no mail is sent."""
        plan, form = self._w.plan, self.form
        if plan is None or form.button.disabled:
            return  # a click without a confirmed plan, or after it was scheduled
        result = form.result.run(
            lambda: self._schedule(plan), [*form.controls, self._send], busy="予約しています…"
        )
        if result is None:
            return
        self.last, self._send_was = result, bool(self._send.disabled)
        form.button.disabled = self._send.disabled = True  # scheduled: not sent now as well
        form.result.info(scheduled_text(result))
        form.outlook.value = ""
        self._w.status.info(f"予約しました: 予約ID {result.scheduled.schedule_id}")
        self._w.header.refresh()  # the first schedule makes the ledger file
        self._screen.refresh()

    def cancelled(self, record: Scheduled) -> None:
        """取消 in 予約一覧 of the campaign this screen just scheduled: said here too. Cancelled
        before its time, the buttons are usable again (another time, or 送信 now); cancelled
        while ``due`` sent it, the counts shown are stale: confirm again to send the rest."""
        last = self.last
        if last is None or last.scheduled.schedule_id != record.schedule_id:
            return
        self.last = None
        words = campaign.cancelled_words(record)
        if record.finished_at is None:  # part of it went out: this plan no longer holds
            then = "残りの会員に送るときは、「戻る」から確認画面へ進み直してください。"
        else:
            then = "別の日時で予約するか、今すぐ「送信」できます。"
            self.form.button.disabled, self._send.disabled = False, self._send_was
        self.form.result.info(f"{words}\n{then}")
        self._w.status.info(words)

    def _schedule(self, plan: CampaignPlan) -> ScheduleResult:
        if plan.repeat:
            raise InputError(
                "a resend (同じ内容を再送する) cannot be scheduled",
                ja="「同じ内容を再送する」は予約できません。チェックを外して予約するか、"
                "今すぐ「送信」してください。",
            )
        if not plan.spec.members.is_file():
            raise InputError(
                f"scheduling needs a member file, not {plan.spec.members}",
                ja="予約するには会員ファイルから読み込んだ会員が必要です（送信時点で会員ファイルを"
                "読み直します）。「会員ファイル」でファイルを読み込んでください。",
            )
        at = campaign.check_send_at(self.form.send_at, face="wizard")
        return campaign.schedule(plan.spec, self._w.settings, at)
