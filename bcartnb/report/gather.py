"""What a campaign's report says, gathered once: from the run just done, or from the ledger.

:func:`from_run` gathers it in the papermill notebook from the plan and the summary the run
returned; :func:`from_ledger` gathers it afterwards (``bcartnb report ID``) from the ledger,
the campaign's notes and, when the member file is still there, the campaign planned again
from its recorded parameters. Both fill one :class:`~bcartnb.report.document.CampaignReport`,
so the document is the same whoever asks. Members' addresses are masked as they are put in;
the shop's own (its From and admin address, read from the settings) are shown as written, so
a reviewer can check them; nothing else from the settings but the plan is read.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict, Unpack

import pandas as pd

from bcartnb.exceptions import BcartnbError, CampaignStateError
from bcartnb.privacy import mask_text
from bcartnb.quota import TOKYO, month_of, resolve_plan
from bcartnb.report.document import CampaignReport
from bcartnb.report.mail import sample_mail
from bcartnb.report.notes import id_time, read_notes
from bcartnb.report.summary import safe_summary
from bcartnb.settings import require_ledger

if TYPE_CHECKING:
    from bcartnb.campaign import (
        CampaignFacts,
        CampaignPlan,
        CampaignRecord,
        DeliverySummary,
    )
    from bcartnb.settings import Settings

__all__ = ["RunContext", "from_ledger", "from_run"]

#: Journal states of a mail that was handed to the server at least once.
_HANDED = ("sent", "failed", "deferred", "uncertain")


class RunContext(TypedDict, total=False):
    """What the notebook knows of a run besides its plan, summary and parameters.

    ``scheduled_at`` is the time the run was planned for (papermill's parameter, shown as
    given); ``ledger_usage`` the month's sends per campaign (``Ledger.usage_by_campaign``),
    read from the plan's ledger when not given.
    """

    scheduled_at: str | None
    ledger_usage: Mapping[str, int] | None


def from_run(
    plan: CampaignPlan,
    summary: DeliverySummary,
    params: Mapping[str, Any],
    **run: Unpack[RunContext],
) -> CampaignReport:
    """The report of the run that just happened (the papermill notebook's)."""
    from bcartnb.campaign import campaign_facts

    data = summary.as_dict()
    quota = data["quota"]
    cid = summary.campaign_id  # a continued campaign keeps its first run's id
    db = require_ledger(plan.settings)
    facts = campaign_facts(
        plan.settings,
        cid,
        month=quota["month"],
        usage=run.get("ledger_usage"),
        recorded=not summary.dry_run,
    )
    scheduled_at = run.get("scheduled_at")
    record = facts.record
    usage = facts.usage
    labels = _usage_labels(facts.records, db)
    admin = _admin_words(
        plan.settings, facts.admin_sent, record.admin_copy if record else None, summary.dry_run
    )
    if summary.dry_run and summary.sendable:
        usage[cid] = usage.get(cid, 0) + summary.sendable
    now = datetime.now(TOKYO)
    subject = mask_text(plan.draft.subject)
    started = record.created_at if record else id_time(cid)
    labels[cid] = f"{(started or now).astimezone(TOKYO):%m/%d %H:%M} {subject}"  # as sent
    sample = sample_mail(plan)
    return CampaignReport(
        summary=safe_summary(data),
        message=summary.message(),
        subject=sample["subject"] if sample else subject,
        subject_member=sample["member_id"] if sample else None,
        sender=_from_shown(plan.settings),
        plan=plan.plan.name,
        user=facts.user,
        host=facts.host,
        started=started,
        finished=(record.finished_at if record else now),
        scheduled_at=None if scheduled_at is None else str(scheduled_at),
        params=dict(params),
        usage=usage,
        usage_labels=labels,
        admin=admin,
        sample=sample,
        sendable=plan.audience.sendable,
        unsendable=plan.audience.unsendable,
        failures=list(summary.failures),
        resume_command=summary.resume_command if summary.left and not summary.dry_run else None,
        results_later=_results_later(plan, summary),
    )


def _results_later(plan: CampaignPlan, summary: DeliverySummary) -> str | None:
    """Where a measured campaign's 開封・クリック will be: said in the report of the run that
    sent it, which cannot have them yet. Measured as the composer measures: the shop's
    ``[tracking] url`` and the campaign's ``track``, with an open image (HTML) or a link."""
    tracker = plan.composer.tracker
    if summary.dry_run or not summary.sent or tracker is None:
        return None
    if not (plan.draft.html or tracker.links):
        return None
    cid = summary.campaign_id
    return f"開封・クリックは bcartnb results {cid} / bcartnb report {cid} で見られます。"


def from_ledger(campaign_id: str, settings: Settings) -> CampaignReport:
    """A campaign's report from the ledger (and its notes), whenever it ran.

    The counts, who and when, every failed member and the admin copy come from the ledger.
    The sample mail and the unsendable members need the member file: the campaign is planned
    again from its recorded parameters when the file is still there (with a note when its
    recipients are no longer the same), and the report says so when it is not.
    """
    from bcartnb.campaign import DeliverySummary

    db = require_ledger(settings)
    facts = _recorded(settings, campaign_id)
    record = facts.record
    assert record is not None  # asked for with its record
    notes = read_notes(db, campaign_id)
    month = month_of(record.created_at)
    usage = facts.usage
    labels = _usage_labels(facts.records, db)
    quota = notes.get("quota") or _quota_from_usage(record.plan, month, usage, campaign_id)
    status = {"done": "done", "cancelled": "cancelled"}.get(record.status, "unfinished")
    summary = DeliverySummary.from_record(
        record,
        status,
        dict(quota),
        [(r.member_id, r.address) for r in facts.uncertain],
        failures=facts.failures,
    )
    admin = _admin_words(settings, facts.admin_sent, record.admin_copy, False)
    data = summary.as_dict()
    data["status"] = record.status
    if record.status in ("sending", "cancelled"):  # no run of it ended with a code
        data["exit_code"] = None
    again = _replanned(record, facts.replanned)
    resume = summary.resume_command if record.status in ("unfinished", "sending") else None
    return CampaignReport(
        summary=safe_summary(data),
        message=_ledger_message(record, summary),
        subject=_ledger_subject(notes, again, record.params),
        subject_member=again.sample["member_id"] if again.sample else None,
        sender=str(notes.get("sender") or _from_shown(settings)),
        plan=record.plan,
        user=record.user,
        host=record.host,
        started=record.created_at,
        finished=record.finished_at,
        scheduled_at=notes.get("scheduled_at"),
        params=dict(record.params),
        usage=dict(usage),
        usage_labels=labels,
        admin=admin,
        sample=again.sample,
        sendable=again.sendable,
        unsendable=again.unsendable,
        failures=list(summary.failures),
        resume_command=resume,
        notes=again.notes,
        results=facts.results,
    )


def _recorded(settings: Settings, campaign_id: str) -> CampaignFacts:
    """Everything the report reads of the ledger, in one look: the record, the month's
    sends, 開封・クリック and the campaign planned again agree with each other."""
    from bcartnb.campaign import campaign_facts

    try:
        return campaign_facts(settings, campaign_id, results=True, replan=True)
    except CampaignStateError as err:
        raise CampaignStateError(
            str(err),
            ja=f"キャンペーン {campaign_id!r} は配信記録にありません（確認のみの実行は"
            "記録されません）。`bcartnb campaigns` で一覧を確かめてください。",
        ) from err


@dataclass
class _Replanned:
    """What only the member file can tell: the sample mail and who is (not) sendable."""

    sample: dict[str, str] | None = None
    sendable: pd.DataFrame | None = None
    unsendable: pd.DataFrame | None = None
    draft_subject: str | None = None
    notes: list[str] = field(default_factory=list)


def _replanned(record: CampaignRecord, planned: CampaignPlan | BcartnbError | None) -> _Replanned:
    """The sample and the audience of the campaign planned again, or a note why it cannot be."""
    try:
        if isinstance(planned, BcartnbError):
            raise planned
        assert planned is not None  # asked for with the record
        sample = sample_mail(planned)
    except BcartnbError as err:
        why = err.ja or str(err)
        return _Replanned(
            notes=[
                f"会員ファイル {record.params.get('members')} またはテンプレートを読めないため、"
                f"メールの例と送信できない会員の一覧は表示できません（{mask_text(why)}）。"
            ]
        )
    out = _Replanned(
        sample, planned.audience.sendable, planned.audience.unsendable, planned.draft.subject
    )
    # the same mail (an older ledger's campaigns had another identity): other recipients
    if record.mail is not None and planned.fingerprint != record.fingerprint:
        out.notes.append(
            "会員ファイルが送信したときから変わっています（送信先が同じではありません）。"
            "メールの例と送信できない会員の一覧は、いまのファイルから作りました。"
        )
    return out


def _ledger_message(record: CampaignRecord, summary: DeliverySummary) -> str:
    """How the campaign ended, in words, as the ledger knows it."""
    if record.status == "sending":
        return "このキャンペーンはいま送信中です（この時点の記録です）。"
    if record.status == "cancelled" and not any(record.journal.get(s) for s in _HANDED):
        return (
            "このキャンペーンは1通も送る前に取り消されました"
            "（メール配信上限数を超えた、メールを作れなかった、または取り消したため）。"
        )
    return summary.message()


def _quota_from_usage(
    plan: str, month: str, usage: Mapping[str, int], campaign_id: str
) -> dict[str, Any]:
    """Before and after, from the month's counts: the campaigns started before this one."""
    before = sum(n for cid, n in usage.items() if cid < campaign_id)
    return {
        "plan": resolve_plan(plan).name,
        "month": month,
        "cap": resolve_plan(plan).monthly_cap,
        "used_before": before,
        "used_after": before + usage.get(campaign_id, 0),
    }


def _usage_labels(records: Mapping[str, CampaignRecord], db: Path) -> dict[str, str]:
    """「11/29 10:05 件名」 for each campaign of the month: the chart's bar labels."""
    labels = {}
    for cid, record in records.items():
        subject = read_notes(db, cid).get("subject") or _subject_of(record.params)
        labels[cid] = f"{record.created_at.astimezone(TOKYO):%m/%d %H:%M} {subject}"
    return labels


def _ledger_subject(notes: Mapping[str, Any], again: _Replanned, params: Mapping[str, Any]) -> str:
    """The subject as a member received it when the mail can be made again, else the one
    the run noted (as received, or the template's from an older run), else the template's."""
    if again.sample is not None:
        return again.sample["subject"]
    noted = notes.get("received_subject") or notes.get("subject")
    return str(noted or mask_text(again.draft_subject or _subject_of(params)))


def _subject_of(params: Mapping[str, Any]) -> str:
    if params.get("subject"):
        return str(params["subject"])
    if params.get("template"):
        return f"（テンプレート「{params['template']}」）"
    return ""


def _from_shown(settings: Settings) -> str:
    """The shop's own From, as written: the sender the law requires is the shop's to check."""
    name = settings.from_name.strip()
    return f"{name} <{settings.from_addr}>" if name else settings.from_addr


def _admin_words(
    settings: Settings, sent: tuple[str, datetime] | None, state: str | None, dry_run: bool
) -> str:
    """Where the administrator's copy went, in words: the shop's own address, in clear."""
    to = settings.admin
    when = None
    if sent is not None and state == "sent":
        to, when = sent
    if state == "sent":
        at = f"、{when:%Y-%m-%d %H:%M}" if when is not None else ""
        return f"{to or '（不明）'} に送信済み（1通{at}）"
    if not to:
        return "管理者のアドレス（設定の admin）がないため、控えは送っていません。"
    if dry_run:
        return f"確認のみのため送っていません（送信すると {to} に1通送ります）。"
    if state == "sending":
        return f"{to} への送信結果が不明です（二重に送らないよう、再送はしません）。"
    return f"まだ送っていません（キャンペーンが終わったときに {to} に1通送ります）。"
