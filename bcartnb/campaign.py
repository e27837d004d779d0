"""A campaign: the contract's keys, checked once, the same from TOML, papermill and the wizard.

A campaign file (TOML) and the papermill notebook take the same keys: ``members``, ``filter``,
``checked``, ``template``, ``subject``, ``body``, ``html``, ``insert_signature``,
``opt_in_only``, ``encoding``, ``send``. Keeping them in one frozen object means the three
ways of driving a campaign cannot drift apart: each builds a :class:`CampaignSpec` and hands
it to the same functions.
"""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd

from bcartnb.audience import Audience, build_audience
from bcartnb.compose import Composer, Draft
from bcartnb.exceptions import SettingsError
from bcartnb.ledger import Ledger, new_campaign_id
from bcartnb.members import read_members
from bcartnb.quota import Plan, QuotaStatus, resolve_plan
from bcartnb.settings import Settings, check_keys, check_type
from bcartnb.templates import TemplateStore

__all__ = [
    "CAMPAIGN_KEYS",
    "ENCODINGS",
    "CampaignPlan",
    "CampaignSpec",
    "build_draft",
    "load_campaign",
    "plan_campaign",
]

CAMPAIGN_KEYS = (
    "members",
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
            raise SettingsError(f"{where}: key 'members' is required (the member CSV)")
        members = check_type(data, "members", (str, os.PathLike), where)
        path = Path(members).expanduser()
        if base is not None and not path.is_absolute():
            path = base / path
        kw: dict[str, Any] = {"members": path}

        flt = data.get("filter")
        if isinstance(flt, str):
            try:
                flt = json.loads(flt) if flt.strip() else {}
            except json.JSONDecodeError as err:
                raise SettingsError(f"{where}: filter is not valid JSON: {err}") from err
        if flt is None:
            flt = {}
        if not isinstance(flt, Mapping):
            raise SettingsError(f"{where}: filter must be a table/dict, not {flt!r}")
        kw["filter"] = dict(flt)

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
                    f"{where}: encoding must be one of {', '.join(ENCODINGS)}, not {enc!r}"
                )
            kw["encoding"] = enc
        if kw.get("template") is None and (kw.get("subject") is None or kw.get("body") is None):
            raise SettingsError(f"{where}: give a template, or both subject and body")
        return cls(**kw)

    def to_params(self) -> dict[str, Any]:
        """JSON-ready keys for the ledger, the fingerprint and the report (``send`` left out)."""
        return {
            "members": str(self.members),
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
    try:
        with p.open("rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError as err:
        raise SettingsError(f"{p}: campaign file not found") from err
    except tomllib.TOMLDecodeError as err:
        raise SettingsError(f"{p}: not valid TOML: {err}") from err
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
        raise SettingsError(f"{where}: checked must be a list of member ids, not {value!r}")
    out: list[int] = []
    for item in items:
        if isinstance(item, bool) or (isinstance(item, float) and not item.is_integer()):
            raise SettingsError(f"{where}: checked holds a non-id value {item!r}")
        try:
            out.append(int(item))
        except (TypeError, ValueError) as err:
            raise SettingsError(f"{where}: checked holds a non-id value {item!r}") from err
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
    if not settings.plan:
        raise SettingsError(
            'no plan set: put plan = "プラン10" (or light, plan10 … own-smtp) in bcartnb.toml '
            "or set BCARTNB_PLAN"
        )
    plan = resolve_plan(settings.plan)
    frame = members if members is not None else read_members(spec.members)
    audience = build_audience(
        frame, spec.filter or None, list(spec.checked) or None, spec.opt_in_only
    )
    draft = build_draft(spec, settings)
    cid = campaign_id or new_campaign_id(now)
    composer = Composer(draft, settings, cid)
    own = ledger is None
    led = ledger if ledger is not None else Ledger.open(settings.db)
    try:
        quota = led.usage(plan, now=now)
    finally:
        if own:
            led.close()
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
    )
