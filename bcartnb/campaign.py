"""The conductor: a campaign from its keys to its summary, the same for every face.

A campaign file (TOML) and the papermill notebook take the same keys: ``members``, ``filter``,
``checked``, ``template``, ``subject``, ``body``, ``html``, ``insert_signature``,
``opt_in_only``, ``encoding``, ``send``. Each face (the command line, the wizard, the
notebook) builds one frozen :class:`CampaignSpec` and calls the functions here, and nothing
below them: :func:`run` (plan, then a dry run or a send), :func:`send` (a confirmed plan),
:func:`resume`, :func:`send_test` and :func:`quota_status`. So the three faces cannot drift
apart. The stages (members, audience, compose, quota, the ledger, delivery) never import
this module; it imports them, in the flow's order::

    spec → plan_campaign (members → audience → draft → quota snapshot)
         → dry run                                     (send=False: compose all, project)
         → ledger.claim(fingerprint)  → delivery.deliver → summary     (send=True)

The claim is what makes a campaign exactly once: taken atomically before anything is
composed or sent, it refuses a second run of the same campaign while the first is running,
continues an unfinished one (same id, nobody mailed twice) and starts a finished one again
only with ``repeat``.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any, NamedTuple

import pandas as pd

from bcartnb import delivery
from bcartnb.audience import Audience, build_audience
from bcartnb.compose import ComposedMail, Composer, Draft
from bcartnb.delivery import DeliverySummary, dry_run, quota_dict
from bcartnb.exceptions import BcartnbError, ComposeError, SettingsError, TemplateError
from bcartnb.ledger import Ledger, fingerprint, new_campaign_id
from bcartnb.ledger import using as ledger_using
from bcartnb.mailcheck import Finding
from bcartnb.members import read_members
from bcartnb.quota import Plan, QuotaStatus
from bcartnb.segments import SegmentStore, check_segment_name, combine_filters
from bcartnb.settings import Settings, check_keys, check_type, read_toml, require_plan
from bcartnb.templates import TemplateStore
from bcartnb.transports import Transport

__all__ = [
    "CAMPAIGN_KEYS",
    "ENCODINGS",
    "CampaignPlan",
    "CampaignRun",
    "CampaignSpec",
    "DeliverySummary",
    "build_draft",
    "dry_run",
    "load_campaign",
    "plan_campaign",
    "quota_status",
    "resolve_segment",
    "resume",
    "run",
    "send",
    "send_test",
    "suppressed_addresses",
]

CAMPAIGN_KEYS = (
    "members",
    "segment",
    "filter",
    "checked",
    "template",
    "subject",
    "body",
    "html",
    "insert_signature",
    "opt_in_only",
    "encoding",
    "send",
)
ENCODINGS = ("utf-8", "iso-2022-jp")


@dataclass(frozen=True)
class CampaignSpec:
    """What to send to whom. ``send`` is False unless somebody asked for it explicitly."""

    members: Path
    filter: dict[str, Any] = field(default_factory=dict)
    #: a saved filter's name (セグメント); :func:`plan_campaign` ANDs it into ``filter``
    segment: str | None = None
    checked: tuple[int, ...] = ()
    template: str | None = None
    subject: str | None = None
    body: str | None = None
    html: bool | None = None
    insert_signature: bool = True
    opt_in_only: bool = False
    encoding: str = "utf-8"
    send: bool = False

    @classmethod
    def from_mapping(
        cls, data: Mapping[str, Any], base: Path | None = None, where: str = "campaign"
    ) -> CampaignSpec:
        """Check every key and type once; a relative ``members`` path is relative to ``base``."""
        check_keys(data, CAMPAIGN_KEYS, where)
        if not data.get("members"):
            raise SettingsError(
                f"{where}: key 'members' is required (the member CSV)",
                ja=f"キャンペーンファイル {where} に members（会員CSVのパス）がありません。",
            )
        members = check_type(data, "members", (str, os.PathLike), where)
        path = Path(members).expanduser()
        if base is not None and not path.is_absolute():
            path = base / path
        # absolute in the ledger: a campaign must resume from any folder
        path = Path(os.path.abspath(path))
        kw: dict[str, Any] = {"members": path}

        flt = data.get("filter")
        if isinstance(flt, str):
            try:
                flt = json.loads(flt) if flt.strip() else {}
            except json.JSONDecodeError as err:
                raise SettingsError(
                    f"{where}: filter is not valid JSON: {err}",
                    ja=f"{where} の filter（絞込条件）の JSON が読めません。",
                ) from err
        if flt is None:
            flt = {}
        if not isinstance(flt, Mapping):
            raise SettingsError(
                f"{where}: filter must be a table/dict, not {flt!r}",
                ja=f"{where} の filter（絞込条件）は表（[filter]）か辞書で書いてください。",
            )
        kw["filter"] = dict(flt)
        if data.get("segment") is not None and data.get("segment") != "":
            kw["segment"] = check_segment_name(check_type(data, "segment", str, where))

        kw["checked"] = _checked(data.get("checked"), where)
        for key in ("template", "subject", "body"):
            if data.get(key) is not None:
                kw[key] = check_type(data, key, str, where)
        if kw.get("template") == "":
            kw["template"] = None
        if data.get("html") is not None:
            kw["html"] = check_type(data, "html", bool, where)
        for key in ("insert_signature", "opt_in_only", "send"):
            if data.get(key) is not None:
                kw[key] = check_type(data, key, bool, where)
        if data.get("encoding") is not None:
            enc = check_type(data, "encoding", str, where).lower().replace("_", "-")
            if enc == "utf8":
                enc = "utf-8"
            if enc not in ENCODINGS:
                raise SettingsError(
                    f"{where}: encoding must be one of {', '.join(ENCODINGS)}, not {enc!r}",
                    ja=f"{where} の encoding は utf-8 か iso-2022-jp にしてください"
                    f"（{enc!r} は使えません）。",
                )
            kw["encoding"] = enc
        if kw.get("template") is None and (kw.get("subject") is None or kw.get("body") is None):
            raise SettingsError(
                f"{where}: give a template, or both subject and body",
                ja=f"{where} にテンプレート（template）か、"
                "件名（subject）と本文（body）の両方を書いてください。",
            )
        return cls(**kw)

    def to_params(self) -> dict[str, Any]:
        """JSON-ready keys for the ledger, the fingerprint and the report (``send`` left out).

        ``segment`` appears only while unresolved: a planned campaign records the segment's
        filter itself (see :func:`resolve_segment`), so its fingerprint and its resume do not
        depend on the segments file, and campaigns without one keep their old fingerprints.
        """
        return {
            "members": str(self.members),
            **({"segment": self.segment} if self.segment else {}),
            "filter": self.filter,
            "checked": list(self.checked),
            "template": self.template,
            "subject": self.subject,
            "body": self.body,
            "html": self.html,
            "insert_signature": self.insert_signature,
            "opt_in_only": self.opt_in_only,
            "encoding": self.encoding,
        }


def load_campaign(path: str | os.PathLike[str]) -> CampaignSpec:
    """Read a campaign TOML file; paths inside it are relative to the file."""
    p = Path(path)
    data = read_toml(p, "campaign file")
    return CampaignSpec.from_mapping(data, base=p.resolve().parent, where=str(p))


def _checked(value: Any, where: str) -> tuple[int, ...]:
    if value is None or value == "" or value == []:
        return ()
    items: Sequence[Any]
    if isinstance(value, str):
        items = [v.strip() for v in value.split(",") if v.strip()]
    elif isinstance(value, Sequence):
        items = value
    else:
        raise SettingsError(
            f"{where}: checked must be a list of member ids, not {value!r}",
            ja=f"{where} の checked（チェックした会員）は会員IDのリストで書いてください。",
        )
    out: list[int] = []
    for item in items:
        if isinstance(item, bool) or (isinstance(item, float) and not item.is_integer()):
            raise SettingsError(
                f"{where}: checked holds a non-id value {item!r}",
                ja=f"{where} の checked に会員IDでない値 {item!r} があります。",
            )
        try:
            out.append(int(item))
        except (TypeError, ValueError) as err:
            raise SettingsError(
                f"{where}: checked holds a non-id value {item!r}",
                ja=f"{where} の checked に会員IDでない値 {item!r} があります。",
            ) from err
    return tuple(dict.fromkeys(out))


# --- planning: members → audience → draft → counts and quota -----------------------------


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

    @property
    def fingerprint(self) -> str:
        """The campaign's identity: its parameters and its recipients.

        Members held back as ``suppressed`` count as recipients here: an unsubscribe that
        arrives between an interrupted run and its re-run must not turn the re-run into a
        new campaign that mails everyone again. The continued campaign withholds them
        instead (:meth:`~bcartnb.ledger.Ledger.withhold_suppressed`).
        """
        held = self.audience.unsendable
        held = held[held["reason"] == "suppressed"]
        extra = zip(
            (int(i) for i in held["id"].tolist()),
            (str(a) for a in held["email"].tolist()),
            strict=True,
        )
        return fingerprint(self.spec.to_params(), [*self.recipients, *extra])

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
        )
    return Draft(
        subject=spec.subject or "",
        body=spec.body or "",
        html=bool(spec.html),
        insert_signature=spec.insert_signature,
        encoding=spec.encoding,
    )


def plan_campaign(
    spec: CampaignSpec,
    settings: Settings,
    *,
    members: pd.DataFrame | None = None,
    ledger: Ledger | None = None,
    campaign_id: str | None = None,
    now: datetime | None = None,
) -> CampaignPlan:
    """Members → audience → draft → quota: what would be sent, refused nothing yet.

    ``members`` lets the wizard pass the frame it already read; otherwise the spec's file is
    read. The quota is read from the ledger (opened from the settings when not given) and is
    only a snapshot: :func:`bcartnb.delivery.deliver` reserves atomically before sending.
    """
    plan = require_plan(settings)
    frame = members if members is not None else read_members(spec.members)
    spec = resolve_segment(spec, settings, frame.columns)
    with ledger_using(settings, ledger) as led:
        quota = led.usage(plan, now=now)
        suppressed = led.suppressed_addresses()
    audience = build_audience(
        frame, spec.filter or None, list(spec.checked) or None, spec.opt_in_only, suppressed
    )
    draft = build_draft(spec, settings)
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
        warnings=list(composer.warnings),
        members_pulled_at=frame.attrs.get("pulled_at"),
        checks=checks,
        checks_member=checks_member,
    )


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


# --- the conductor ------------------------------------------------------------------------


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
    with ledger_using(settings, ledger) as led:
        plan = plan_campaign(spec, settings, members=members, ledger=led)
        if not do_send:
            summary = _sourced(plan, dry_run(plan))
            summary.warnings += _history_notes(led, plan)
            return CampaignRun(plan, summary)
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
    """What a dry run should know of earlier attempts at the very same campaign."""
    notes = []
    for r in led.find_by_fingerprint(plan.fingerprint):
        if r.status in ("sending", "unfinished"):
            state = "送信中" if r.status == "sending" else "送信途中"
            notes.append(
                f"同じ内容のキャンペーン {r.campaign_id} が{state}です（送信済み {r.sent:,} 件）。"
                "--send で実行すると、その続きを送ります（同じ会員に二度は送りません）。"
            )
        elif r.status == "done":
            notes.append(
                f"同じ内容のメールはキャンペーン {r.campaign_id} で送信済みです"
                f"（送信済み {r.sent:,} 件）。もう一度送るには --repeat が必要です。"
            )
    return notes


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
    id; a finished one only with ``repeat``. Then :func:`bcartnb.delivery.deliver`.
    """
    delivery.options(plan.settings, **options)  # a bad number: refused before the claim
    with ledger_using(plan.settings, ledger) as led:
        claim = led.claim(
            fingerprint=plan.fingerprint,
            plan=plan.plan,
            params=plan.spec.to_params(),
            recipients=plan.recipients,
            campaign_id=plan.campaign_id,
            repeat=repeat,
            **plan.audience.summary(),
        )
        try:
            claimed = plan.with_id(claim.campaign_id)
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
            **options,
        )
        if claim.continued:
            summary.warnings.append(
                f"同じ内容のキャンペーン {claim.campaign_id} の続きとして送りました"
                "（送信済みの会員には送っていません）。"
            )
        return _sourced(plan, summary)


_send = send  # for run(), whose ``send`` argument hides the function


def resume(
    campaign_id: str,
    settings: Settings,
    *,
    resend_uncertain: bool = False,
    transport: Transport | None = None,
    progress: bool | Callable[[int, int], None] = True,
    ledger: Ledger | None = None,
    sleep: Callable[[float], None] = time.sleep,
    **options: Any,
) -> CampaignRun:
    """Continue an unfinished campaign: pending and deferred mails go out, sent ones never again.

    Mails lost after their data went out are ``uncertain``: listed, and resent only with
    ``resend_uncertain=True``. The members file is read again (member data may have changed;
    a member gone since is reported and left pending). Refused while the campaign is being
    sent by a live process, or if it was cancelled; a finished campaign changes nothing.
    """
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
            plan = plan_campaign(spec, current, ledger=led, campaign_id=campaign_id)
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
        return CampaignRun(plan, _sourced(plan, summary))


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


def quota_status(settings: Settings, *, ledger: Ledger | None = None) -> QuotaStatus:
    """This month's メール配信上限数, usage and live reservations for the shop's plan."""
    plan = require_plan(settings)
    with ledger_using(settings, ledger) as led:
        return led.usage(plan)


def suppressed_addresses(settings: Settings, *, ledger: Ledger | None = None) -> frozenset[str]:
    """The suppression list, for the faces that sort members themselves (the wizard's
    search, ``bcartnb members``), so every face holds back the same members.

    A ledger file that does not exist yet means an empty list: looking never creates one.
    """
    if ledger is None and (settings.db is None or not settings.db.expanduser().exists()):
        return frozenset()
    with ledger_using(settings, ledger) as led:
        return led.suppressed_addresses()
