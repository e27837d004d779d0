"""The conductor: a campaign from its keys to its summary, the same for every face.

A campaign file (TOML) and the papermill notebook take the same keys: ``members``, ``filter``,
``checked``, ``template``, ``subject``, ``body``, ``html``, ``insert_signature``,
``opt_in_only``, ``encoding``, ``send``. Each face (the command line, the wizard, the
notebook) builds one frozen :class:`CampaignSpec` and calls the functions here, and nothing
below them: :func:`run` (plan, then a dry run or a send), :func:`send` (a confirmed plan),
:func:`resume`, :func:`send_test` and :func:`quota_status`. So the three faces cannot drift
apart. The stages (members, audience, compose, quota, the ledger, delivery) never import
this module; it imports them, in the flow's order::

    spec → plan_campaign (members → draft → audience → quota snapshot)
         → dry run                                     (send=False: compose all, project)
         → ledger.claim(fingerprint)  → delivery.deliver → summary     (send=True)

A campaign's mail is frozen when it is planned (:func:`frozen_mail`: what the member
receives, before member values are merged in); its hash is the mail's identity. The claim
is what makes it exactly once: taken atomically before anything is composed or sent, it
refuses a second run of the same campaign while the first is running, continues an
unfinished one (same id, nobody mailed twice), and holds each address for this mail, so a
member who already got it from any campaign (another file, a snapshot, a grown list) is held
back as ``already_sent``; ``repeat`` sends it again on purpose.
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
from bcartnb.filters import apply_filter
from bcartnb.ledger import Ledger, fingerprint, legacy_mail_key, mail_key, new_campaign_id
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
    "cancel",
    "dry_run",
    "frozen_mail",
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
        held = {**self.audience.already_sent_in, **{a.strip().lower(): c for _, a, c in skipped}}
        audience = build_audience(
            self.audience.selected,
            opt_in_only=self.audience.opt_in_only,
            suppressed=_suppressed_in(self.audience),
            already_sent=held,
        )
        audience = replace(
            audience,
            filter=self.audience.filter,
            checked=self.audience.checked,
            source=self.audience.source,
        )
        before = set(_sent_notes(self.audience))
        kept = [w for w in self.warnings if w not in before]
        return replace(self, audience=audience, warnings=[*kept, *_sent_notes(audience)])

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
) -> CampaignPlan:
    """Members → draft → audience → quota: what would be sent, refused nothing yet.

    ``members`` lets the wizard pass the frame it already read; otherwise the spec's file is
    read. ``mail``: a campaign's frozen mail (a resume sends what it started with) instead
    of the template store's. ``campaign_id``: the campaign being resumed, whose own
    addresses are its to send. ``repeat``: only campaigns still under way hold an address
    back as ``already_sent``. The quota is read from the ledger (opened from the settings
    when not given) and is only a snapshot: :func:`bcartnb.delivery.deliver` reserves
    atomically before sending.
    """
    plan = require_plan(settings)
    if settings.hygiene.verp:  # no VERP without its secret: refused in the dry run, not mid-send
        from bcartnb.hygiene.matching import VerpSigner

        VerpSigner(settings.unsubscribe_secret)
    frame = members if members is not None else read_members(spec.members)
    spec = resolve_segment(spec, settings, frame.columns)
    if mail is not None:
        draft, settings = _thawed(mail, spec, settings)
    else:
        draft = build_draft(spec, settings)
    frozen = frozen_mail(draft, settings)
    keys = (mail_key(frozen), legacy_mail_key(spec.to_params()))
    with ledger_using(settings, ledger) as led:
        quota = led.usage(plan, now=now)
        suppressed = led.suppressed_addresses()
        chosen = (frame, spec.filter or None, list(spec.checked) or None, spec.opt_in_only)
        audience = build_audience(*chosen, suppressed)
        fp = fingerprint({"mail": keys[0]}, _identity_rows(audience))
        continues = campaign_id or led.open_campaign(fp)
        sent = led.already_sent(keys, exclude=continues, repeat=repeat)
    if sent:
        audience = build_audience(*chosen, suppressed, already_sent=sent)
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
        warnings=[*composer.warnings, *_sent_notes(audience)],
        members_pulled_at=frame.attrs.get("pulled_at"),
        checks=checks,
        checks_member=checks_member,
        mail=frozen,
        mail_keys=keys,
        fingerprint=fp,
        continues=continues,
        repeat=repeat,
    )


def _identity_rows(audience: Audience) -> list[tuple[int, str]]:
    """(member id, address) of the members a campaign is for: the sendable ones and those
    held back only by the ledger's state (``suppressed``), which may change between runs."""
    held = audience.unsendable[audience.unsendable["reason"] == "suppressed"]
    return [
        (int(i), str(a))
        for frame in (audience.sendable, held)
        for i, a in zip(frame["id"].tolist(), frame["email"].tolist(), strict=True)
    ]


def _suppressed_in(audience: Audience) -> frozenset[str]:
    held = audience.unsendable[audience.unsendable["reason"] == "suppressed"]
    return frozenset(str(a).strip().lower() for a in held["email"].tolist())


def _sent_notes(audience: Audience) -> list[str]:
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
        plan = plan_campaign(spec, settings, members=members, ledger=led, repeat=repeat)
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
    """What a dry run should know of an earlier attempt at the very same campaign (those
    of the same mail to other members are in the plan's ``already_sent`` lines)."""
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
    with ledger_using(plan.settings, ledger) as led:
        claim = led.claim(
            fingerprint=plan.fingerprint,
            plan=plan.plan,
            params=plan.spec.to_params(),
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
            **options,
        )
        if claim.continued:
            summary.warnings.append(
                f"同じ内容のキャンペーン {claim.campaign_id} の続きとして送りました"
                "（送信済みの会員には送っていません）。"
            )
        summary.warnings += _sent_notes(claimed.audience)
        return _sourced(claimed, summary)


_send = send  # for run(), whose ``send`` argument hides the function


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
