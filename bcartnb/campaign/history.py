"""What the ledger remembers of the campaigns, asked the way the faces ask it.

The command line's ``campaigns`` and ``quota``, the wizard and the notebooks show the send
history, one campaign's outcome and a month's メール配信上限数 by campaign. They ask here
rather than open the ledger, so every face reads the same counts the same way: a crashed run
is reclaimed first (it shows as unfinished, with its resume command, not as sending for
ever). The suppression list has its own module, :mod:`~bcartnb.campaign.suppressions`.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, NamedTuple

from bcartnb.campaign.results import with_rates
from bcartnb.exceptions import CampaignStateError
from bcartnb.ledger import Ledger
from bcartnb.ledger import reading as ledger_reading
from bcartnb.ledger import using as ledger_using
from bcartnb.quota import QuotaStatus
from bcartnb.settings import Settings, require_plan

if TYPE_CHECKING:
    import pandas as pd

    from bcartnb.ledger import CampaignRecord, Recipient, TrackResults

__all__ = [
    "CampaignOutcome",
    "CampaignUsage",
    "MonthUsage",
    "campaign_history",
    "campaign_outcome",
    "campaign_results",
    "month_usage",
    "quota_status",
]


class CampaignOutcome(NamedTuple):
    """One campaign as the ledger holds it: its record, who failed (member, address, SMTP
    code, reply), who is deferred or uncertain, and its whole journal."""

    record: CampaignRecord
    failures: list[tuple[int, str, int | None, str]]
    deferred: list[Recipient]
    uncertain: list[Recipient]
    journal: pd.DataFrame


class CampaignUsage(NamedTuple):
    """One campaign's sends in a month; ``record`` is None when the campaign is not known."""

    campaign_id: str
    used: int
    record: CampaignRecord | None


class MonthUsage(NamedTuple):
    """A month's quota for the shop's plan and the sends behind it, campaign by campaign."""

    status: QuotaStatus
    campaigns: list[CampaignUsage]


def campaign_history(settings: Settings, *, ledger: Ledger | None = None) -> pd.DataFrame:
    """Every campaign with its counts (:meth:`bcartnb.ledger.Ledger.campaigns`), newest last,
    and its results: ``opened``, ``open_rate``, ``clicked``, ``click_rate`` (people, over the
    mails sent, as ``bcartnb results`` counts them; NaN for a campaign not measured)."""
    with ledger_using(settings, ledger) as led:
        led.reclaim()  # a crashed run shows as interrupted, not as sending forever
        return with_rates(led.campaigns(), led.response_counts())


def campaign_outcome(
    settings: Settings, campaign_id: str, *, ledger: Ledger | None = None
) -> CampaignOutcome:
    """One campaign's counts, who was refused and why, and what is left."""
    with ledger_using(settings, ledger) as led:
        led.reclaim()  # a crashed run's campaign is unfinished, with its resume command
        return CampaignOutcome(
            led.campaign(campaign_id),
            led.failures(campaign_id),
            led.deferred(campaign_id),
            led.uncertain(campaign_id),
            led.deliveries(campaign_id),
        )


def campaign_results(
    settings: Settings, campaign_id: str, *, ledger: Ledger | None = None
) -> TrackResults:
    """One campaign's 配信数, 開封・クリック (people, machines apart) and clicks by link."""
    with ledger_using(settings, ledger) as led:
        return led.track_results(campaign_id)


def month_usage(settings: Settings, month: str, *, ledger: Ledger | None = None) -> MonthUsage:
    """The plan's cap, ``month``'s sends and live reservations, and each campaign's part."""
    plan = require_plan(settings)
    with ledger_using(settings, ledger) as led:
        status = led.usage(plan, month)
        campaigns = []
        for cid, used in led.usage_by_campaign(month).items():
            record = None
            with contextlib.suppress(CampaignStateError):
                record = led.campaign(cid)
            campaigns.append(CampaignUsage(cid, used, record))
    return MonthUsage(status, campaigns)


def quota_status(settings: Settings, *, ledger: Ledger | None = None) -> QuotaStatus:
    """This month's メール配信上限数, usage and live reservations for the shop's plan (a look:
    a ledger file not made yet counts nothing and is not created)."""
    plan = require_plan(settings)
    with ledger_reading(settings, ledger) as led:
        return led.usage(plan)
