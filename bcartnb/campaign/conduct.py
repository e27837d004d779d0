"""The conductor's calls: a planned campaign sent, resumed, cancelled and tested (what the
faces ask of the ledger without opening it is :mod:`~bcartnb.campaign.history`).

:func:`send` is the only call that mails members; it claims the campaign's fingerprint in
the ledger before :func:`bcartnb.delivery.deliver` sends anything, which is what makes a
campaign exactly once however many faces, shells or crons start it (a helper process may
compose the planned mails meanwhile; they are used only if the claim changed nothing).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any, NamedTuple

import pandas as pd

from bcartnb import delivery
from bcartnb.campaign.plan import CampaignPlan, plan_campaign, sent_notes
from bcartnb.campaign.spec import CampaignSpec
from bcartnb.compose import ComposedMail
from bcartnb.delivery import DeliverySummary, dry_run, quota_dict
from bcartnb.delivery.spool import SpoolHelper
from bcartnb.exceptions import BcartnbError, SettingsError
from bcartnb.filters import apply_filter
from bcartnb.ledger import Ledger
from bcartnb.ledger import reading as ledger_reading
from bcartnb.ledger import using as ledger_using
from bcartnb.members import read_members
from bcartnb.settings import Settings
from bcartnb.transports import Transport

__all__ = [
    "CampaignRun",
    "cancel",
    "resume",
    "run",
    "send",
    "send_test",
]


class CampaignRun(NamedTuple):
    """What :func:`run` and :func:`resume` give back: the plan and what became of it.

    ``plan`` is None only when a resume found the campaign finished (nothing to plan).
    """

    plan: CampaignPlan | None
    summary: DeliverySummary


def run(
    spec: CampaignSpec,
    settings: Settings,
    *,
    send: bool | None = None,
    members: pd.DataFrame | None = None,
    repeat: bool = False,
    transport: Transport | None = None,
    progress: bool | Callable[[int, int], None] = True,
    ledger: Ledger | None = None,
    **options: Any,
) -> CampaignRun:
    """Plan the campaign, then a dry run, or (``send=True``, else ``spec.send``) the send.

    The one call behind ``bcartnb run`` and the papermill notebook. A dry run composes every
    mail and projects the quota (:class:`~bcartnb.exceptions.QuotaExceededError` if it would
    not fit); it also says when the same campaign is running, unfinished or already sent.
    """
    do_send = spec.send if send is None else send
    if not do_send:  # writes nothing: a ledger file not made yet is read as empty
        with ledger_reading(settings, ledger) as led:
            plan = plan_campaign(spec, settings, members=members, ledger=led, repeat=repeat)
            summary = _sourced(plan, dry_run(plan))
            summary.warnings += _history_notes(led, plan)
            return CampaignRun(plan, summary)
    with ledger_using(settings, ledger) as led:
        plan = plan_campaign(spec, settings, members=members, ledger=led, repeat=repeat)
        summary = _send(
            plan, repeat=repeat, transport=transport, progress=progress, ledger=led, **options
        )
        return CampaignRun(plan, summary)


def _sourced(plan: CampaignPlan, summary: DeliverySummary) -> DeliverySummary:
    """The summary says which snapshot of the members the campaign used (its pulled-at),
    and carries the plan's 送信前の確認 (the JSON ``checks``, the CLI's lines)."""
    summary.members_pulled_at = plan.members_pulled_at
    summary.checks = list(plan.checks)
    summary.checks_member = plan.checks_member
    return summary


def _history_notes(led: Ledger, plan: CampaignPlan) -> list[str]:
    """What a dry run should know of an earlier attempt at the very same campaign (those
    of the same mail to other members are in the plan's ``already_sent`` lines), or that
    there is none yet: the shop's ledger file is made by the first send."""
    if not led.on_disk:
        return [
            f"配信記録ファイル {plan.settings.db} はまだありません。今月の送信数・送信済みの会員・"
            "配信停止リストは記録なしとして数えました（ファイルは最初の送信のときに作ります）。"
        ]
    if plan.continues is None:
        return []
    r = led.campaign(plan.continues)
    state = "送信中" if r.status == "sending" else "送信途中"
    return [
        f"同じ内容のキャンペーン {r.campaign_id} が{state}です（送信済み {r.sent:,} 件）。"
        "--send で実行すると、その続きを送ります（同じ会員に二度は送りません）。"
    ]


def send(
    plan: CampaignPlan,
    *,
    repeat: bool = False,
    transport: Transport | None = None,
    progress: bool | Callable[[int, int], None] = True,
    ledger: Ledger | None = None,
    sleep: Callable[[float], None] = time.sleep,
    **options: Any,
) -> DeliverySummary:
    """Send a planned (and, in the wizard, confirmed) campaign: the only call that mails members.

    Claims the campaign's fingerprint first, atomically: refused at once (exit 2) while the
    same campaign runs elsewhere; an unfinished earlier attempt is continued under its own
    id; otherwise a new campaign holds each address no other campaign holds for this mail
    (``repeat``: also those finished ones hold). Then :func:`bcartnb.delivery.deliver`.
    Nobody left to mail because every member already has this mail: nothing is recorded
    and nothing sent (status ``done``, exit 0), the summary naming who has them.
    """
    delivery.options(plan.settings, **options)  # a bad number: refused before the claim
    repeat = repeat or plan.repeat
    if repeat and not plan.repeat:  # planned without it: the already_sent ones go out too
        plan = plan_campaign(
            plan.spec,
            plan.settings,
            members=plan.audience.selected,
            ledger=ledger,
            campaign_id=plan.continues,
            mail=plan.mail,
            repeat=True,
        ).with_id(plan.campaign_id)
    if plan.continues is None and plan.audience.already_sent_in and not plan.recipients:
        return _nothing_left(plan)
    with ledger_using(plan.settings, ledger) as led, _composing_ahead(plan) as ahead:
        claim = led.claim(
            fingerprint=plan.fingerprint,
            plan=plan.plan,
            params=plan.ledger_params(),
            recipients=plan.recipients,
            campaign_id=plan.campaign_id,
            repeat=repeat,
            mail=plan.mail,
            also_known_as=plan.mail_keys[1:],
            **plan.audience.summary(),
        )
        if not claim.created:  # others took every one of them since the plan
            return _nothing_left(plan.without(claim.skipped))
        try:
            claimed = plan.without(claim.skipped).with_id(claim.campaign_id)
        except BaseException:
            led.release(claim.campaign_id, cancel=True)
            raise
        summary = delivery.deliver(
            claimed,
            led,
            transport,
            first_run=not claim.continued,
            progress=progress,
            sleep=sleep,
            composing=ahead,
            **options,
        )
        if claim.continued:
            summary.warnings.append(
                f"同じ内容のキャンペーン {claim.campaign_id} の続きとして送りました"
                "（送信済みの会員には送っていません）。"
            )
        summary.warnings += sent_notes(claimed.audience)
        return _sourced(claimed, summary)


_send = send  # for run(), whose ``send`` argument hides the function


@contextlib.contextmanager
def _composing_ahead(plan: CampaignPlan) -> Iterator[SpoolHelper | None]:
    """A helper process composing the plan's mails while we claim the campaign (the second
    core is idle until the first mail goes out). It only composes: nothing is sent before
    the claim commits, and ``deliver`` uses its mails only if the claim changed nothing (a
    campaign continued under its own id, members taken by another campaign since the plan).
    """
    ahead = SpoolHelper.fork(plan) if plan.continues is None else None
    try:
        yield ahead
    finally:
        if ahead is not None:
            ahead.close()


def _nothing_left(plan: CampaignPlan) -> DeliverySummary:
    """Every member already has this mail: a summary of that, with nothing recorded or sent.

    No campaign is created (an empty one would only add a line to the history and an
    administrator's copy saying nothing); the summary carries the id of the campaign that
    mailed most of them, so ``bcartnb campaigns ID`` shows where they went.
    """
    summary = _sourced(plan, dry_run(plan))
    summary.status = "done"
    summary.dry_run = False
    summary.campaign_id = next(iter(plan.audience.already_sent_by_campaign()))
    return summary


def resume(
    campaign_id: str,
    settings: Settings,
    *,
    resend_uncertain: bool = False,
    give_up_deferred: bool = False,
    mark_uncertain_sent: bool = False,
    drop_uncertain: bool = False,
    skip_missing: bool = False,
    transport: Transport | None = None,
    progress: bool | Callable[[int, int], None] = True,
    ledger: Ledger | None = None,
    sleep: Callable[[float], None] = time.sleep,
    **options: Any,
) -> CampaignRun:
    """Continue an unfinished campaign: pending and deferred mails go out, sent ones never again.

    Mails lost after their data went out are ``uncertain``: listed, and resent only with
    ``resend_uncertain=True``, or ended on the marketer's word: ``mark_uncertain_sent``
    (they arrived) or ``drop_uncertain`` (not resent). ``give_up_deferred``: the mails a
    server keeps deferring become failed. The members file is read again (member data may
    have changed); a member gone since is reported and left pending, or, with
    ``skip_missing``, not sent (:mod:`bcartnb.ledger.finish`). Refused while the campaign is
    being sent by a live process, or if it was cancelled; a finished campaign changes nothing.
    """
    chosen = [resend_uncertain, mark_uncertain_sent, drop_uncertain]
    if sum(chosen) > 1:
        raise SettingsError(
            "choose one of --resend-uncertain, --mark-uncertain-sent and --drop-uncertain",
            ja="結果不明のメールの扱いは --resend-uncertain・--mark-uncertain-sent・"
            "--drop-uncertain のどれか1つにしてください。",
        )
    uncertain = "sent" if mark_uncertain_sent else "drop" if drop_uncertain else None
    delivery.options(settings, **options)  # a bad number: refused before the take-over
    with ledger_using(settings, ledger) as led:
        if not led.take_over(campaign_id):
            record = led.campaign(campaign_id)
            now = led.usage(settings.plan or record.plan)
            summary = DeliverySummary.from_record(
                record,
                "done",
                quota_dict(now, now.used),
                [(r.member_id, r.address) for r in led.uncertain(campaign_id)],
                failures=led.failures(campaign_id),
            )
            summary.warnings.append("再開して送るメールは残っていません（nothing left to send）")
            return CampaignRun(None, summary)
        try:
            record = led.campaign(campaign_id)
            spec = CampaignSpec.from_mapping(record.params, where=f"campaign {campaign_id}")
            # the shop's plan now (it may have changed since); the campaign's own if none is set
            current = settings if settings.plan else settings.replace(plan=record.plan)
            frame, spec = _still_checked(read_members(spec.members), spec)
            plan = plan_campaign(
                spec,
                current,
                members=frame,
                ledger=led,
                campaign_id=campaign_id,
                mail=record.mail,
            )
            missing: list[int] = []
            if skip_missing:
                here = set(plan.audience.sendable["id"].astype("int64").tolist())
                missing = [r.member_id for r in led.to_send(campaign_id) if r.member_id not in here]
            ended = led.end_mails(
                campaign_id, give_up_deferred=give_up_deferred, uncertain=uncertain, skip=missing
            )
        except BaseException:
            with contextlib.suppress(BcartnbError):
                led.release(campaign_id)
            raise
        summary = delivery.deliver(
            plan,
            led,
            transport,
            resend_uncertain=resend_uncertain,
            progress=progress,
            sleep=sleep,
            **options,
        )
        summary.ended = ended
        return CampaignRun(plan, _sourced(plan, summary))


def _still_checked(frame: pd.DataFrame, spec: CampaignSpec) -> tuple[pd.DataFrame, CampaignSpec]:
    """A resume's members and spec when some ticked members are gone from the file since.

    チェックした会員 must lie in the filter's result (else a run is refused), but a member
    deleted or changed since the campaign began must not make it impossible to resume: the
    ticked ids still there are kept, the others become the journal's missing members
    (reported, or skipped with ``skip_missing``). The frame is cut to those ids, so a
    selection left empty can never widen to every member.
    """
    if not spec.checked:
        return frame, spec
    found = set(apply_filter(frame, spec.filter or None)["id"].astype("int64").tolist())
    keep = tuple(i for i in spec.checked if i in found)
    if len(keep) == len(spec.checked):
        return frame, spec
    return frame[frame["id"].isin(keep)], replace(spec, checked=keep)


def cancel(
    campaign_id: str, settings: Settings, *, ledger: Ledger | None = None
) -> DeliverySummary:
    """``bcartnb cancel``: nothing more of an unfinished campaign is sent.

    What went out stays sent and counted; pending and deferred mails become ``cancelled``;
    uncertain ones stay uncertain (nobody knows whether they arrived). Refused while a live
    process sends it, and for a finished campaign.
    """
    with ledger_using(settings, ledger) as led:
        record = led.cancel(campaign_id)
        now = led.usage(settings.plan or record.plan)
        return DeliverySummary.from_record(
            record,
            "cancelled",
            quota_dict(now, now.used),
            [(r.member_id, r.address) for r in led.uncertain(campaign_id)],
            failures=led.failures(campaign_id),
        )


def send_test(
    plan: CampaignPlan,
    to: str,
    *,
    member_id: int | None = None,
    transport: Transport | None = None,
    ledger: Ledger | None = None,
) -> ComposedMail:
    """One member's mail, as composed for the campaign, to ``to``; recorded, never counted."""
    with ledger_using(plan.settings, ledger) as led:
        return delivery.send_test(plan, to, led, member_id=member_id, transport=transport)
