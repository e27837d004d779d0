"""What delivery needs of a planned campaign, and nothing more.

Delivery sends a plan; it never plans and never imports the conductor
(:mod:`bcartnb.campaign`), whose :class:`~bcartnb.campaign.CampaignPlan` satisfies this
protocol. Keeping the dependency one-way is what lets the conductor change how it plans
(a CSV today, the B-Cart API tomorrow) without touching the send loop.
"""

from __future__ import annotations

from typing import Protocol

from bcartnb.audience import Audience
from bcartnb.compose import Composer, Draft
from bcartnb.quota import Plan, QuotaStatus
from bcartnb.settings import Settings

__all__ = ["SendPlan"]


class SendPlan(Protocol):
    """A campaign ready to send: who (the audience's sendable rows), what (the composer)."""

    @property
    def campaign_id(self) -> str: ...

    @property
    def settings(self) -> Settings: ...

    @property
    def plan(self) -> Plan: ...

    @property
    def audience(self) -> Audience: ...

    @property
    def draft(self) -> Draft: ...

    @property
    def composer(self) -> Composer: ...

    @property
    def quota(self) -> QuotaStatus: ...

    @property
    def warnings(self) -> list[str]: ...
