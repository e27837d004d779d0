"""What goes into the composer and what comes out: the draft, and one member's finished mail."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from bcartnb.exceptions import ComposeError
from bcartnb.templates import Template

__all__ = ["ComposedMail", "Draft"]


@dataclass(frozen=True)
class Draft:
    """What the compose screen holds: subject, body, HTML flag, signature flag, encoding."""

    subject: str
    body: str
    html: bool = False
    insert_signature: bool = True
    encoding: str = "utf-8"
    template: str | None = None
    #: Measure clicks and opens when the shop has ``[tracking] url`` (the campaign's ``track``)
    track: bool = True

    @classmethod
    def from_template(cls, template: Template, **overrides: Any) -> Draft:
        """The template fills subject, body and html; any of them stays editable.

        An override of None means "not given" (a campaign file without ``subject``), so a
        :class:`~bcartnb.campaign.CampaignSpec`'s values can be passed straight through.
        """
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise ComposeError(
                f"draft: unknown key {unknown[0]!r} (known: {', '.join(known)})",
                ja=f"メールの下書きに知らない項目 {unknown[0]!r} があります。",
            )
        values: dict[str, Any] = {
            "subject": template.subject,
            "body": template.body,
            "html": template.html,
            "template": template.name,
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)


@dataclass(frozen=True)
class ComposedMail:
    """One member's mail, rendered and encoded. ``raw`` is what goes to SMTP DATA."""

    member_id: Any
    to: str
    subject: str
    text: str
    html: str | None
    raw: bytes
    message_id: str
    date: str = ""
    list_unsubscribe: str | None = None
