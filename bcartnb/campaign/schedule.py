"""予約配信: a campaign scheduled for a time, and ``due``, which sends each one once.

Scheduling plans the campaign now (the mail is composed and checked, the count projected)
and stores two things in the ledger: the mail frozen as the member will receive it, and the
audience rule (the member file, the filter or segment, the ticked ids). The members are read
again when it is sent: 送信時点の会員に送ります. The quota is projected against the month
of the scheduled time (Asia/Tokyo): a warning, not a refusal, when that month's counted
mails plus those scheduled exceed the cap; at send time the cap is enforced as for any run.

:func:`run_due` is what cron or a systemd timer runs every minute (``bcartnb due``): it
takes each campaign whose time has come through the ledger's claim (one ``due`` gets it
however many run at once) and sends it with :func:`~bcartnb.campaign.send`, the one call
that mails members, so every rule of a run holds (exactly once per address, suppressions,
the quota, the admin copy), then mails the admin a short result (sent, refused, expired,
cancelled). A machine that was off at the time sends late, saying by how
much, up to :data:`LATE_LIMIT` (24 hours by default); later than that the campaign is
``expired``, not sent, and ``due`` exits 2 so the scheduler tells a person.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from bcartnb.campaign.conduct import send
from bcartnb.campaign.plan import plan_campaign
from bcartnb.campaign.spec import CampaignSpec
from bcartnb.compose import Preview, preview
from bcartnb.delivery import DeliverySummary
from bcartnb.delivery.notice import send_admin_notice
from bcartnb.exceptions import BcartnbError, InputError, QuotaExceededError
from bcartnb.filters import describe_filter
from bcartnb.ledger import Ledger, Scheduled
from bcartnb.ledger import reading as ledger_reading
from bcartnb.ledger import using as ledger_using
from bcartnb.ledger.reservations import owner_alive
from bcartnb.quota import TOKYO, QuotaStatus, month_of, now_tokyo
from bcartnb.settings import Settings, require_plan
from bcartnb.transports import Transport

__all__ = [
    "LATE_LIMIT",
    "NOW_INSTEAD",
    "SCHEDULE_LABELS",
    "DueOutcome",
    "ScheduleResult",
    "ScheduledView",
    "audience_words",
    "cancel_scheduled",
    "cancelled_words",
    "check_send_at",
    "due_exit_code",
    "parse_send_at",
    "quota_outlook",
    "run_due",
    "schedule",
    "scheduled_campaign",
    "scheduled_campaigns",
    "scheduled_view",
]

#: A scheduled campaign's status as every face lists it (``bcartnb schedule``, 予約一覧).
SCHEDULE_LABELS = {
    "scheduled": "予約中",
    "sending": "送信中",
    "sent": "送信済み",
    "cancelled": "取消",
    "refused": "送信不可",
    "expired": "期限切れ",
}

#: How late a scheduled campaign may still go out (the machine was off, cron stopped):
#: later than this, a sale announced for 9:00 would arrive the next day or later, so it is
#: ``expired`` and the admin decides.
LATE_LIMIT = timedelta(hours=24)

#: What ``due`` exits with when several campaigns ended differently: the most urgent first
#: (something still to send, then a refusal a person must see, then refused mails).
_URGENCY = (130, 4, 3, 2, 5)


def parse_send_at(text: str, *, now: datetime | None = None) -> datetime:
    """A time given as ``2026-12-10 09:00`` (Tokyo time) or ISO 8601 with a zone, aware.

    A time not after now is refused: scheduling it would send at once, by surprise.
    """
    value = text.strip().replace("/", "-")
    try:
        moment = datetime.fromisoformat(value)
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=TOKYO)
        moment = moment.astimezone(TOKYO)
    except (ValueError, OverflowError) as err:  # overflow: year 1 or 9999 moved to Tokyo
        raise InputError(
            f"--at must be a date and time like 2026-12-10 09:00 (Tokyo time), not {text!r}",
            ja=f"予約日時は 2026-12-10 09:00 のように「年-月-日 時:分」（日本時間）で指定して"
            f"ください（{text!r} ではなく）。",
        ) from err
    return check_send_at(moment, now=now)


#: What the refusal of a past time tells the marketer to do instead, by face.
NOW_INSTEAD = {
    "cli": "今すぐ送るには --at を付けずに --send で実行してください。",
    "wizard": "今すぐ送るには「送信」を押してください。",
}


def check_send_at(moment: datetime, *, now: datetime | None = None, face: str = "cli") -> datetime:
    """``moment`` (aware) in Tokyo time, refused unless it is after now (the one clock).

    Every face schedules through this rule; ``face`` only picks the words of the way out.
    """
    moment = moment.astimezone(TOKYO)
    current = now or now_tokyo()
    if moment <= current:
        what = "--at" if face == "cli" else "the send time"
        raise InputError(
            f"{what} {moment:%Y-%m-%d %H:%M} is not in the future "
            f"(now {current:%Y-%m-%d %H:%M} JST)",
            ja=f"予約日時 {moment:%Y-%m-%d %H:%M} は過ぎています（現在 {current:%Y-%m-%d %H:%M}）。"
            + NOW_INSTEAD.get(face, ""),
        )
    return moment


@dataclass
class ScheduleResult:
    """A campaign just scheduled: its record, the count projected now, and what to heed."""

    scheduled: Scheduled
    sendable: int
    quota: QuotaStatus
    warnings: list[str] = field(default_factory=list)


def schedule(
    spec: CampaignSpec, settings: Settings, at: datetime, *, ledger: Ledger | None = None
) -> ScheduleResult:
    """Plan the campaign now, freeze its mail and store it to be sent at ``at``.

    The segment is kept by name: like the members, it is read when the campaign goes out.
    """
    plan_name = require_plan(settings)
    with ledger_using(settings, ledger) as led:
        plan = plan_campaign(spec, settings, ledger=led)
        n = len(plan.audience.sendable)
        status, over = _outlook(led, settings, at, n)
        record = led.schedule(
            send_at=at, plan=plan_name.key, params=spec.to_params(), mail=plan.mail, projected=n
        )
    return ScheduleResult(record, n, status, [*plan.warnings, *([over] if over else [])])


def quota_outlook(
    settings: Settings, at: datetime, needed: int, *, ledger: Ledger | None = None
) -> tuple[QuotaStatus, str]:
    """The quota of ``at``'s month (Tokyo) with the campaigns scheduled in it, and the warning
    ("" when ``needed`` more fit): what :func:`schedule` says, asked before scheduling."""
    with ledger_reading(settings, ledger) as led:
        return _outlook(led, settings, at, needed)


def _outlook(led: Ledger, settings: Settings, at: datetime, n: int) -> tuple[QuotaStatus, str]:
    plan_name = require_plan(settings)
    month = month_of(at)
    used, ahead = led.month_outlook(month)
    status = QuotaStatus(plan_name, month, used, ahead)
    over = status.over(n)
    if not over:
        return status, ""
    return status, (
        f"{month} の配信済み {used:,}件と予約済み {ahead:,}件に、この予約の {n:,}件を足すと"
        f"メール配信上限数 {status.cap:,}件（{plan_name.name}）を {over:,}件超えます。"
        "送信時点で上限に収まらなければ、何も送らずに止めます（終了コード 3）。"
    )


def audience_words(params: Mapping[str, Any]) -> str:
    """A scheduled campaign's audience rule in one line, as every face lists it: the member
    file, then the segment, the filter in words, or the ticked member ids."""
    parts = [Path(str(params.get("members", ""))).name]
    if params.get("segment"):
        parts.append(f"セグメント「{params['segment']}」")
    if params.get("filter"):
        try:
            parts.append("絞込 " + describe_filter(params["filter"]))
        except BcartnbError:  # not even well formed: shown as stored, for the marketer to see
            parts.append("絞込 " + json.dumps(params["filter"], ensure_ascii=False))
    checked = list(params.get("checked") or ())
    if checked:
        ids = "、".join(str(i) for i in checked[:_IDS_SHOWN])
        more = f" ほか {len(checked) - _IDS_SHOWN:,}件" if len(checked) > _IDS_SHOWN else ""
        parts.append(f"チェックした会員 {len(checked):,}件（会員ID {ids}{more}）")
    elif not params.get("filter") and not params.get("segment"):
        parts.append("検索結果すべて")
    if params.get("opt_in_only"):
        parts.append("メール案内を受け取る会員のみ")
    return " / ".join(parts)


#: How many ticked member ids :func:`audience_words` names before saying how many more.
_IDS_SHOWN = 10


@dataclass
class ScheduledView:
    """内容を確認: a scheduled campaign's frozen mail rendered for one member of the file as it
    is now, and how many members it would go to now; ``error`` when the file cannot be read."""

    scheduled: Scheduled
    previews: list[Preview]
    sendable_now: int | None
    error: str = ""


def scheduled_view(settings: Settings, schedule_id: str) -> ScheduledView:
    """The frozen mail as the member will receive it: planned as ``due`` will plan it (the
    stored rule, the frozen mail, the member file read now), then rendered for the first
    member it would go to (else the first selected: a sent campaign has nobody left)."""
    s = scheduled_campaign(settings, schedule_id)
    try:
        spec = CampaignSpec.from_mapping(s.params, where=f"予約 {schedule_id}")
        plan = plan_campaign(spec, settings, mail=s.mail)
    except BcartnbError as err:
        return ScheduledView(s, [], None, err.line())
    sendable = plan.audience.sendable
    shown = sendable if not sendable.empty else plan.audience.selected
    return ScheduledView(s, preview(plan.composer, shown, n=1), len(sendable))


def scheduled_campaigns(settings: Settings, *, every: bool = False) -> list[Scheduled]:
    """The campaigns still to send (``every``: with those sent, cancelled, refused, expired)."""
    with ledger_reading(settings) as led:
        return led.schedules(every=every)


def scheduled_campaign(settings: Settings, schedule_id: str) -> Scheduled:
    with ledger_reading(settings) as led:
        return led.scheduled(schedule_id)


def cancel_scheduled(settings: Settings, schedule_id: str) -> Scheduled:
    """取消: the campaign is never sent, or, while ``due`` sends it, nothing more of it.

    The ``due`` sending it is stopped as Ctrl-C stops a run (between two mails: each mail's
    state stays known, see :mod:`bcartnb.delivery.loop`); it then ends the campaign's
    remaining mails itself (:func:`_send_one`). A ``due`` on another machine cannot be
    signalled: the campaign is marked, and it finishes what it is sending.
    """
    with ledger_using(settings) as led:
        record, holder = led.cancel_scheduled(schedule_id)
    if holder is not None and owner_alive(holder.pid, holder.host, holder.start):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(holder.pid, signal.SIGINT)
    return record


def cancelled_words(record: Scheduled) -> str:
    """What a 取消 did, as every face says it: nothing will be sent, or, when a ``due`` was
    sending it, that it stops between two mails and the rest is never sent."""
    when = f"{record.send_at.astimezone(TOKYO):%Y-%m-%d %H:%M}"
    what = (
        "送信中でした。送っている途中のメールで止め、残りは送りません"
        if record.finished_at is None
        else "送信しません"
    )
    return f"予約 {record.schedule_id}（{when}「{record.subject}」）を取り消しました（{what}）。"


@dataclass
class DueOutcome:
    """What ``due`` did with one scheduled campaign."""

    scheduled: Scheduled
    exit_code: int
    message: str
    late: timedelta = timedelta(0)
    summary: DeliverySummary | None = None


def due_exit_code(outcomes: list[DueOutcome]) -> int:
    """0 when nothing was due or all finished well; else the most urgent code (see above)."""
    codes = {o.exit_code for o in outcomes}
    return next((c for c in _URGENCY if c in codes), 0)


def run_due(
    settings: Settings,
    *,
    late_limit: timedelta = LATE_LIMIT,
    transport: Transport | None = None,
    progress: Any = False,
    ledger: Ledger | None = None,
) -> list[DueOutcome]:
    """Send every scheduled campaign whose time has come, each exactly once.

    A shop whose ledger file does not exist yet has nothing scheduled: every minute's run
    then reads nothing and creates nothing.
    """
    outcomes: list[DueOutcome] = []
    now_tokyo()  # a bad BCARTNB_NOW is refused every minute, not only once something is due
    with ledger_reading(settings, ledger) as probe:
        if not probe.on_disk:
            return outcomes
    with ledger_using(settings, ledger) as led:
        while (taken := led.take_due()) is not None:
            outcome = _send_one(taken, settings, led, late_limit, transport, progress)
            _tell_the_admin(outcome, settings, led, transport)
            outcomes.append(outcome)
    return outcomes


#: The notice's subject, by what became of the scheduled campaign.
_NOTICE_HEADS = {
    "sent": "送信しました",
    "refused": "送信できませんでした",
    "expired": "期限切れのため送りませんでした",
    "cancelled": "取り消しました",
}


def _tell_the_admin(
    outcome: DueOutcome, settings: Settings, led: Ledger, transport: Transport | None
) -> None:
    """The result mail to the admin (beside a sent campaign's own admin copy)."""
    s = outcome.scheduled
    head = _NOTICE_HEADS.get(s.status, s.status)
    if s.status == "sent" and outcome.exit_code:
        head = f"送信しました（終了コード {outcome.exit_code}）"
    lines = [
        f"予約配信 {s.schedule_id}: {head}。",
        "",
        f"件名: {s.subject}",
        f"予定の送信日時: {s.send_at.astimezone(TOKYO):%Y-%m-%d %H:%M}（日本時間）",
        f"結果: {outcome.message}",
        *([f"キャンペーンID: {s.campaign_id}"] if s.campaign_id else []),
        *(outcome.summary.warnings if outcome.summary else []),
    ]
    why_not = send_admin_notice(
        settings,
        led,
        f"【予約配信】{head}: {s.subject}",
        lines,
        campaign_id=s.campaign_id,
        transport=transport,
    )
    if why_not:
        outcome.message += f"（{why_not}）"


def _cancelled_while_sent(
    taken: Scheduled, summary: DeliverySummary, led: Ledger, late: timedelta
) -> DueOutcome:
    """取消 arrived while this campaign was sent: its remaining mails are ended, never sent."""
    if summary.status not in ("done", "cancelled"):
        with contextlib.suppress(BcartnbError):  # already finished meanwhile: nothing left
            led.cancel(summary.campaign_id)
    record = led.campaign(summary.campaign_id)
    message = (
        f"送信中に取り消しました（送信済み {record.sent:,} 件。残りは送りません）"
        if summary.status != "done"
        else f"取消の前に送信を終えていました（送信済み {record.sent:,} 件）"
    )
    done = led.finish_scheduled(
        taken.schedule_id,
        "cancelled",
        result=message,
        exit_code=0,
        campaign_id=summary.campaign_id,
    )
    return DueOutcome(done, 0, message, late, summary)


def _late_ja(late: timedelta) -> str:
    minutes = int(late.total_seconds() // 60)
    hours, mins = divmod(minutes, 60)
    if not hours:
        return f"{mins}分"
    return f"{hours}時間" + (f"{mins}分" if mins else "")


def _send_one(
    taken: Scheduled,
    settings: Settings,
    led: Ledger,
    late_limit: timedelta,
    transport: Transport | None,
    progress: Any,
) -> DueOutcome:
    sid = taken.schedule_id
    late = now_tokyo() - taken.send_at
    if late > late_limit:
        message = (
            f"予定の {taken.send_at.astimezone(TOKYO):%Y-%m-%d %H:%M} から {_late_ja(late)}過ぎて"
            f"おり、送信できる期限（{_late_ja(late_limit)}）を過ぎたため送りませんでした（期限切れ）。"
            "送るには、内容を確かめてもう一度予約するか --send で実行してください。"
        )
        done = led.finish_scheduled(sid, "expired", result=message, exit_code=2)
        return DueOutcome(done, 2, message, late)
    try:
        spec = CampaignSpec.from_mapping(taken.params, where=f"予約 {sid}")
        plan = plan_campaign(spec, settings, mail=taken.mail, ledger=led)
        summary = send(plan, ledger=led, transport=transport, progress=progress)
    except BcartnbError as err:
        code = 3 if isinstance(err, QuotaExceededError) else err.exit_code
        done = led.finish_scheduled(sid, "refused", result=err.line(), exit_code=code)
        return DueOutcome(done, code, err.line(), late)
    if led.scheduled(sid).status == "cancelled":
        return _cancelled_while_sent(taken, summary, led, late)
    if summary.status == "interrupted":  # a real Ctrl-C: the next due takes it over
        raise KeyboardInterrupt
    if late >= timedelta(minutes=2):  # cron's minute and a slow start are not "late"
        summary.warnings.append(
            f"予定の {taken.send_at.astimezone(TOKYO):%Y-%m-%d %H:%M} より {_late_ja(late)}"
            "遅れて送信しました（その時刻にこの機械が止まっていたか、due が動いていませんでした）。"
        )
    message = f"送信済み {summary.sent:,} 件 / 失敗 {summary.failed:,} 件（{summary.status}）"
    done = led.finish_scheduled(
        sid,
        "sent",
        result=message,
        exit_code=summary.exit_code,
        campaign_id=summary.campaign_id,
    )
    return DueOutcome(done, summary.exit_code, message, late, summary)
