"""What the wizard asks the conductor for: the campaign of the form, and who already has its mail.

A member who already got this very mail (from any campaign, any file) is held back as
``already_sent``. Only :func:`~bcartnb.campaign.plan_campaign` knows who that is, and only
once the mail is known, so every step that sorts members asks it with the mail in the form:
the member table, the form's counts and the confirmation then agree with what 送信 does.
Before a mail is written (or while it cannot be composed) the steps sort members without it,
and the confirmation says what is wrong with the mail.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from bcartnb import campaign
from bcartnb.audience import Audience
from bcartnb.campaign import CampaignPlan, CampaignSpec
from bcartnb.exceptions import BcartnbError, QuotaExceededError, SettingsError
from bcartnb.settings import Settings

__all__ = [
    "CHECK_AT_ONCE_UP_TO",
    "Confirmation",
    "confirm",
    "form_spec",
    "has_mail",
    "sorted_for_mail",
]


def has_mail(values: Mapping[str, Any]) -> bool:
    """A template, or a subject and a body: enough to know the mail."""
    return bool(values["template"]) or bool(
        str(values["subject"]).strip() and str(values["body"]).strip()
    )


def form_spec(
    members: pd.DataFrame,
    flt: Mapping[str, Any],
    checked: Sequence[int],
    values: Mapping[str, Any],
) -> CampaignSpec:
    """The campaign the screens describe, as the papermill notebook and ``bcartnb run`` take it."""
    if not has_mail(values):
        raise SettingsError(
            "no template, and the subject or the body is empty",
            ja="メール件名とメール本文を入力するか、テンプレートを選んでください。",
        )
    # absolute: a campaign started here must resume from any folder (bcartnb resume)
    source = members.attrs.get("source")
    source = os.path.abspath(source) if source else "(wizard)"
    # the 受注 file the purchase columns came from: the campaign records it and a resume rejoins
    orders = members.attrs.get("orders_source")
    # 配信結果で絞り込む: the campaign whose 配信・開封・クリック the filter reads
    results = members.attrs.get("results_of")
    return CampaignSpec.from_mapping(
        {
            "members": str(source),
            **({"orders": os.path.abspath(orders)} if orders else {}),
            "filter": dict(flt),
            "checked": list(checked),
            **({"results": results} if results else {}),
            **values,
        },
        where="wizard",
    )


def _plans(
    spec: CampaignSpec,
    settings: Settings,
    members: pd.DataFrame,
    repeat_key: str | None,
    *,
    count: bool = True,
    suppressed: frozenset[str] | None = None,
) -> tuple[CampaignPlan, int]:
    """The plan 送信 would send, and how many members 「同じ内容を再送する」 would add
    (``count=False``: 0 unless the box is ticked, one plan the less on a big list).

    Sent again only when the marketer ticked the box for this very mail (``repeat_key``,
    its identity): a box ticked for one mail never resends another written afterwards.
    Members a campaign still under way holds stay held back either way.
    """
    plain = campaign.plan_campaign(spec, settings, members=members, suppressed=suppressed)
    held = plain.audience.reasons["already_sent"]
    ticked = plain.mail_keys[:1] == (repeat_key,)
    if not held or not (count or ticked):
        return plain, 0
    again = campaign.plan_campaign(
        spec, settings, members=members, repeat=True, suppressed=suppressed
    )
    repeatable = held - again.audience.reasons["already_sent"]
    return (again if ticked and repeatable else plain), repeatable


def sorted_for_mail(
    members: pd.DataFrame,
    settings: Settings,
    flt: Mapping[str, Any],
    checked: Sequence[int],
    values: Mapping[str, Any],
    repeat_key: str | None,
    *,
    suppressed: frozenset[str] | None = None,
) -> Audience | None:
    """The members as 送信 would sort them for the mail in the form, ``already_sent`` included.

    None when the form holds no mail yet, or one that cannot be planned (a missing template,
    no plan set): the caller sorts without the mail, and 確認画面へ names the error.
    """
    if not has_mail(values):
        return None
    try:
        spec = form_spec(members, flt, checked, values)
        plan = _plans(spec, settings, members, repeat_key, count=False, suppressed=suppressed)
        return plan[0].audience
    except BcartnbError:
        return None


#: Up to this many mails, 確認画面へ composes every one before the confirmation shows (about
#: 50 ms); past it the confirmation shows at once and :class:`~.mail_check.MailCheck`
#: composes them meanwhile, so the click stays within the wizard's 100 ms.
CHECK_AT_ONCE_UP_TO = 2_000


@dataclass(frozen=True)
class Confirmation:
    """What the confirmation screen shows: the plan, its dry run, a refusal, the 再送 count."""

    plan: CampaignPlan
    summary: dict[str, Any]
    refused: QuotaExceededError | None
    #: members held back as ``already_sent`` whom 「同じ内容を再送する」 would mail again
    repeatable: int
    #: True when every mail was composed here; False: the caller composes them meanwhile
    checked: bool = True


def confirm(
    spec: CampaignSpec,
    settings: Settings,
    members: pd.DataFrame,
    repeat_key: str | None,
    *,
    suppressed: frozenset[str] | None = None,
) -> Confirmation:
    """Plan the campaign and project the quota; compose every mail here (errors show here)
    unless there are more than :data:`CHECK_AT_ONCE_UP_TO` of them."""
    plan, repeatable = _plans(spec, settings, members, repeat_key, suppressed=suppressed)
    now = len(plan.audience.sendable) <= CHECK_AT_ONCE_UP_TO
    try:
        summary = (campaign.dry_run if now else campaign.projected)(plan).as_dict()
        return Confirmation(plan, summary, None, repeatable, checked=now)
    except QuotaExceededError as err:
        return Confirmation(plan, plan.summary(), err, repeatable)
