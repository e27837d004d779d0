"""Planning: members → audience → draft → counts and quota, with nothing sent or recorded.

A :class:`CampaignPlan` is what the confirmation screen shows and what
:func:`~bcartnb.campaign.send` sends. The mail is frozen here (:func:`frozen_mail`): its hash
is the mail's identity, and the ledger's ``already_sent`` is read against it, so the plan
already knows who has this mail.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pandas as pd

from bcartnb.audience import Audience, build_audience, hold_back
from bcartnb.campaign.results import check_results_filter, members_with_results
from bcartnb.campaign.spec import CampaignSpec
from bcartnb.compose import Composer, Draft
from bcartnb.exceptions import ComposeError, TemplateError
from bcartnb.filter_hints import value_hints
from bcartnb.ledger import Ledger, fingerprint, legacy_mail_key, mail_key, new_campaign_id
from bcartnb.ledger import reading as ledger_reading
from bcartnb.mailcheck import Finding
from bcartnb.members import TOKYO, read_members
from bcartnb.quota import Plan, QuotaStatus, now_tokyo
from bcartnb.segments import SegmentStore, combine_filters
from bcartnb.settings import Settings, require_plan
from bcartnb.templates import TemplateStore

__all__ = [
    "CampaignPlan",
    "build_draft",
    "frozen_mail",
    "plan_campaign",
    "read_notes",
    "resolve_segment",
    "sent_notes",
]


@dataclass
class CampaignPlan:
    """Everything the confirmation screen shows, computed before anything is sent.

    Built by :func:`plan_campaign`; :func:`bcartnb.delivery.deliver` sends it. Holding the
    audience, the compiled composer and the quota status together is what lets the wizard,
    the papermill notebook and the CLI show the same numbers and send the same mails.
    """

    spec: CampaignSpec
    settings: Settings
    plan: Plan
    audience: Audience
    draft: Draft
    composer: Composer
    quota: QuotaStatus
    campaign_id: str
    warnings: list[str] = field(default_factory=list)
    #: When the member file was pulled from the B-Cart API (a snapshot), else None: shown in
    #: the summary, kept out of the fingerprint (a fresh pull of the same members is the
    #: same campaign).
    members_pulled_at: str | None = None
    #: 送信前の確認 of the first sendable member's mail, as sent (:mod:`bcartnb.mailcheck`)
    checks: tuple[Finding, ...] = ()
    checks_member: int | None = None
    #: the mail as written (:func:`frozen_mail`) and its identities: its own key first,
    #: then what a version-4 ledger called the same mail
    mail: dict[str, Any] = field(default_factory=dict)
    mail_keys: tuple[str, ...] = ()
    #: The campaign's identity: its mail and its recipients, the members held back as
    #: ``suppressed`` or ``already_sent`` included (an unsubscribe or another campaign's
    #: send between an interrupted run and its re-run must not make the re-run a new
    #: campaign); never the member file's path, so a re-exported file is the same campaign.
    fingerprint: str = ""
    #: the unfinished campaign this plan continues (same mail, same members), if any
    continues: str | None = None
    repeat: bool = False
    #: which orders the purchase columns came from (the spec's ``orders``): path, SHA-256,
    #: when written and pulled (:func:`bcartnb.orders.orders_record`); None without orders
    orders_used: dict[str, Any] | None = None

    def ledger_params(self) -> dict[str, Any]:
        """What the ledger records as the campaign's parameters: the spec's keys, and which
        orders snapshot it used (``orders_snapshot``: shown by the report, never read back
        into a spec)."""
        used = {"orders_snapshot": self.orders_used} if self.orders_used else {}
        return {**self.spec.to_params(), **used}

    @property
    def recipients(self) -> list[tuple[int, str]]:
        """(member id, address) of every sendable member, in file order."""
        sendable = self.audience.sendable
        return list(
            zip(
                (int(i) for i in sendable["id"].tolist()),
                (str(a) for a in sendable["email"].tolist()),
                strict=True,
            )
        )

    @property
    def fits(self) -> bool:
        return self.quota.fits(len(self.audience.sendable))

    def with_id(self, campaign_id: str) -> CampaignPlan:
        """The same plan under another campaign id (the one the ledger's claim gave).

        The composer is rebuilt: the id is in every Message-ID, so a continued campaign's
        mails carry the same ids as its first run's.
        """
        if campaign_id == self.campaign_id:
            return self
        return replace(
            self,
            campaign_id=campaign_id,
            composer=Composer(self.draft, self.settings, campaign_id),
        )

    def without(self, skipped: Sequence[tuple[int, str, str]]) -> CampaignPlan:
        """The plan with members another campaign took for this mail since it was planned
        (the claim's :attr:`~bcartnb.ledger.Claim.skipped`) held back as ``already_sent``."""
        if not skipped:
            return self
        audience = hold_back(self.audience, {a.strip().lower(): c for _, a, c in skipped})
        before = set(sent_notes(self.audience))
        kept = [w for w in self.warnings if w not in before]
        return replace(self, audience=audience, warnings=[*kept, *sent_notes(audience)])

    def summary(self) -> dict[str, Any]:
        """The contract's run summary before sending: ``sent``/``failed`` are 0."""
        n = len(self.audience.sendable)
        return {
            "campaign_id": self.campaign_id,
            **self.audience.summary(),
            "sent": 0,
            "failed": 0,
            "quota": {
                "plan": self.plan.name,
                "cap": self.quota.cap,
                "used_before": self.quota.used,
                "used_after": self.quota.used + n,
            },
        }


def resolve_segment(spec: CampaignSpec, settings: Settings, columns: Any) -> CampaignSpec:
    """The spec with its segment's filter ANDed into ``filter`` (and ``segment`` cleared).

    Resolved once, when the campaign is planned: the campaign then records the very filter it
    used, so editing or deleting the segment later changes no started campaign (a resume
    replays the recorded filter). A column in both the segment and ``filter`` is an error.
    """
    if not spec.segment:
        return spec
    saved = SegmentStore(settings.segments).get(spec.segment)
    combined = combine_filters(saved, spec.filter, columns, spec.segment)
    return replace(spec, filter=combined, segment=None)


def build_draft(spec: CampaignSpec, settings: Settings) -> Draft:
    """The template fills subject, body and html; the campaign's own values win."""
    if spec.template:
        template = TemplateStore(settings.templates).get(spec.template)
        return Draft.from_template(
            template,
            subject=spec.subject,
            body=spec.body,
            html=spec.html,
            insert_signature=spec.insert_signature,
            encoding=spec.encoding,
            track=spec.track,
        )
    return Draft(
        subject=spec.subject or "",
        body=spec.body or "",
        html=bool(spec.html),
        insert_signature=spec.insert_signature,
        encoding=spec.encoding,
        track=spec.track,
    )


def frozen_mail(draft: Draft, settings: Settings) -> dict[str, Any]:
    """The mail as the member receives it, before member values are merged in.

    Its hash (:func:`~bcartnb.ledger.mail_key`) is the mail's identity: the same subject,
    body, HTML flag, encoding, signature and From are the same mail whichever template, file
    or filter produced them; an edited template is a new mail. The ledger keeps it with the
    campaign, so a continued or resumed campaign sends what it started with.
    """
    sig = draft.insert_signature
    return {
        "subject": draft.subject,
        "body": draft.body,
        "html": draft.html,
        "encoding": draft.encoding,
        "insert_signature": sig,
        "signature": settings.signature if sig else "",
        "signature_html": (settings.signature_html or "") if sig else "",
        "from": [settings.from_name, settings.from_addr],
    }


def _thawed(
    mail: Mapping[str, Any], spec: CampaignSpec, settings: Settings
) -> tuple[Draft, Settings]:
    """The draft and the settings a frozen mail was composed with (a resume, a report)."""
    draft = Draft(
        subject=str(mail["subject"]),
        body=str(mail["body"]),
        html=bool(mail["html"]),
        insert_signature=bool(mail["insert_signature"]),
        encoding=str(mail["encoding"]),
        template=spec.template,
        track=spec.track,
    )
    name, addr = mail["from"]
    then = settings.replace(from_name=str(name), from_addr=str(addr))
    if draft.insert_signature:
        then = then.replace(
            signature=str(mail["signature"]), signature_html=str(mail["signature_html"]) or None
        )
    return draft, then


def plan_campaign(
    spec: CampaignSpec,
    settings: Settings,
    *,
    members: pd.DataFrame | None = None,
    ledger: Ledger | None = None,
    campaign_id: str | None = None,
    mail: Mapping[str, Any] | None = None,
    repeat: bool = False,
    now: datetime | None = None,
    suppressed: frozenset[str] | None = None,
) -> CampaignPlan:
    """Members → draft → audience → quota: what would be sent, refused nothing yet.

    ``members`` lets the wizard pass the frame it already read; otherwise the spec's file is
    read. ``mail``: a campaign's frozen mail (a resume sends what it started with) instead
    of the template store's. ``campaign_id``: the campaign being resumed, whose own
    addresses are its to send. ``repeat``: only campaigns still under way hold an address
    back as ``already_sent``. The quota is read from the ledger (opened from the settings
    when not given; a file not made yet is read as empty, not created) and is only a
    snapshot: :func:`bcartnb.delivery.deliver` reserves atomically before sending.
    ``suppressed``: the ledger's suppression list as the caller just read it (the wizard
    keeps it per change of the file, :class:`~bcartnb.campaign.SuppressionList`).
    """
    plan = require_plan(settings)
    if settings.hygiene.verp:  # no VERP without its secret: refused in the dry run, not mid-send
        from bcartnb.mailtokens import VerpSigner

        VerpSigner(settings.unsubscribe_secret)
    frame = members if members is not None else read_members(spec.members)
    if spec.orders is not None and not _joined(frame, spec.orders, now):
        frame = members_with_orders(frame, spec.orders, settings, now=now)
    if spec.results is not None:
        frame = members_with_results(
            frame, spec.results, settings, ledger=ledger, follow_up=campaign_id
        )
    spec = resolve_segment(spec, settings, frame.columns)
    check_results_filter(frame, spec.filter)
    if mail is not None:
        draft, settings = _thawed(mail, spec, settings)
    else:
        draft = build_draft(spec, settings)
    frozen = frozen_mail(draft, settings)
    keys = (mail_key(frozen), legacy_mail_key(spec.to_params()))
    with ledger_reading(settings, ledger) as led:
        quota = led.usage(plan, now=now)
        checked = list(spec.checked) or None
        if suppressed is None:
            suppressed = led.suppressed_addresses()
        audience = build_audience(frame, spec.filter or None, checked, spec.opt_in_only, suppressed)
        fp = fingerprint({"mail": keys[0]}, _identity_rows(audience))
        continues = campaign_id or led.open_campaign(fp)
        sent = led.already_sent(keys, exclude=continues, repeat=repeat)
    audience = hold_back(audience, sent)
    cid = campaign_id or new_campaign_id(now)
    composer = Composer(draft, settings, cid, columns=frame.columns)
    checks, checks_member = _checks(composer, audience)
    return CampaignPlan(
        spec=spec,
        settings=settings,
        plan=plan,
        audience=audience,
        draft=draft,
        composer=composer,
        quota=quota,
        campaign_id=cid,
        warnings=[*read_notes(frame, spec.filter), *composer.warnings, *sent_notes(audience)],
        members_pulled_at=frame.attrs.get("pulled_at"),
        checks=checks,
        checks_member=checks_member,
        mail=frozen,
        mail_keys=keys,
        fingerprint=fp,
        continues=continues,
        repeat=repeat,
        orders_used=frame.attrs.get("orders_snapshot") if spec.orders is not None else None,
    )


def members_with_orders(
    members: pd.DataFrame,
    orders: str | os.PathLike[str],
    settings: Settings,
    *,
    now: datetime | None = None,
) -> pd.DataFrame:
    """The members with their purchase columns from the 受注 file ``orders``: the one join
    every face uses (``bcartnb members --orders``, a campaign's ``orders``, a notebook), with
    ``[purchase]``'s thresholds and today's day in Asia/Tokyo (of ``now`` when given).
    Members joined before (on another day, :func:`purchases_stale`) are joined again, the
    orders read again: their purchase columns are replaced, not refused as a clash."""
    from bcartnb.orders import PURCHASE_COLUMNS, read_orders, with_purchases

    if members.attrs.get("purchases_as_of") is not None:  # ours, from an earlier join
        kept = members.attrs
        members = members.drop(columns=[c for c in PURCHASE_COLUMNS if c in members.columns])
        members.attrs = kept
    return with_purchases(members, read_orders(orders), settings.purchase, _day(now))


def purchases_stale(members: pd.DataFrame, *, now: datetime | None = None) -> bool:
    """Whether ``members`` carry purchase columns counted to another day than today (Asia/
    Tokyo, of ``now`` when given): a wizard left open past midnight would plan with
    yesterday's 休眠 and 最終購入からの日数."""
    as_of = members.attrs.get("purchases_as_of")
    return as_of is not None and as_of != _day(now).isoformat()


def _day(now: datetime | None) -> date:
    return (now or now_tokyo()).astimezone(ZoneInfo(TOKYO)).date()


def _joined(
    members: pd.DataFrame, orders: str | os.PathLike[str], now: datetime | None = None
) -> bool:
    """Whether ``members`` already carry today's purchase columns of ``orders`` (the wizard
    joins once when it reads the member file, not on every count; again after midnight)."""
    source = members.attrs.get("orders_source")
    same = source is not None and os.path.abspath(source) == os.path.abspath(orders)
    return same and not purchases_stale(members, now=now)


def read_notes(members: pd.DataFrame, flt: Mapping[str, Any] | None) -> list[str]:
    """What reading the file and the filter found to say: a custom field read under another
    name, a standard column with a near header instead (:mod:`bcartnb.members.hints`), a
    filter value no member holds (:func:`~bcartnb.filter_hints.value_hints`)."""
    return [*members.attrs.get("warnings", []), *value_hints(members, flt or None)]


def _identity_rows(audience: Audience) -> list[tuple[Any, Any]]:
    """(member id, address) of the members a campaign is for: the sendable ones and those
    held back only by the ledger's state (``suppressed``), which may change between runs.
    :func:`~bcartnb.ledger.campaigns.fingerprint` makes them an int and a text."""
    held = audience.unsendable[audience.unsendable["reason"] == "suppressed"]
    return [
        pair
        for frame in (audience.sendable, held)
        for pair in zip(frame["id"].tolist(), frame["email"].tolist(), strict=True)
    ]


def sent_notes(audience: Audience) -> list[str]:
    """One line per campaign that already has some of these members for this mail."""
    return [
        f"{n:,} 件は、同じメールをキャンペーン {cid} で送信済み（または送信中）のため送りません。"
        "もう一度送るときは --repeat（ウィザードでは「同じ内容を再送する」）を使ってください。"
        for cid, n in audience.already_sent_by_campaign().items()
    ]


def _checks(composer: Composer, audience: Audience) -> tuple[tuple[Finding, ...], int | None]:
    """送信前の確認 of one representative mail: the first sendable member's, as sent.

    One mail, not every one: checking 10,000 HTML mails would double a dry run, and what
    is checked is mostly the template's own (the legal items, images, links): member values
    are escaped in HTML and only add text. They can still move a mail's size by a company
    name's length, and a template's ``{% if %}`` can drop a line for some members only: the
    wizard's preview checks each mail it shows. A member whose mail cannot be composed gives
    no checks here; the dry run stops on that member with the exact error.
    """
    first = audience.sendable.head(1)
    if first.empty:
        return (), None
    try:
        mail = next(composer.compose_all(first))
    except (ComposeError, TemplateError):
        return (), None
    return tuple(composer.check(mail)), int(mail.member_id)
