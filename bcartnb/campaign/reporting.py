"""What the reports read of the ledger, asked the way the faces ask it.

The campaign report (:mod:`bcartnb.report`) and the list-hygiene report
(:mod:`bcartnb.hygiene.report`) are faces: they get a campaign's record, the month's sends
behind the usage chart, the admin copy, who failed and the month's bounce rates from here
rather than open the ledger, so the layers stay one way (``tests/test_layers.py``). A report
is a look: nothing here reclaims a crashed run or changes a row.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, NamedTuple

from bcartnb.campaign.plan import CampaignPlan, plan_campaign
from bcartnb.campaign.results import CampaignResults, campaign_breakdown
from bcartnb.campaign.spec import CampaignSpec
from bcartnb.exceptions import BcartnbError
from bcartnb.ledger import Ledger
from bcartnb.ledger import using as ledger_using
from bcartnb.ledger.reservations import HOST, os_user
from bcartnb.quota import TOKYO, month_of, now_tokyo, parse_month
from bcartnb.settings import Settings, require_ledger

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    import pandas as pd

    from bcartnb.ledger import CampaignRecord, Recipient, Suppression

__all__ = ["CampaignFacts", "bounce_rates", "campaign_facts", "listed_now"]

_BOUNCES = ("hard_bounce", "soft_bounce")


class CampaignFacts(NamedTuple):
    """One campaign as its report shows it.

    ``record`` is None for a dry run (the ledger records none); ``usage`` is the month's
    counted mails per campaign and ``records`` those of them the ledger knows (the chart's
    labels); ``admin_sent`` where and when the admin copy went, when the ledger says it went;
    ``user`` and ``host`` who ran it (this process for a dry run). Asked for, ``results``
    is its 開封・クリック (None before it delivered a mail) and ``replanned`` the campaign
    planned again from its recorded parameters (or why it cannot be: the member file is
    gone, a template changed), read in the same look at the ledger as the rest.
    """

    record: CampaignRecord | None
    usage: dict[str, int]
    records: dict[str, CampaignRecord]
    admin_sent: tuple[str, datetime] | None
    failures: list[tuple[int, str, int | None, str]]
    uncertain: list[Recipient]
    user: str
    host: str
    results: CampaignResults | None = None
    replanned: CampaignPlan | BcartnbError | None = None


def campaign_facts(
    settings: Settings,
    campaign_id: str,
    *,
    month: str | None = None,
    usage: Mapping[str, int] | None = None,
    recorded: bool = True,
    results: bool = False,
    replan: bool = False,
) -> CampaignFacts:
    """What the ledger holds of ``campaign_id`` for its report, read in one opening and one
    snapshot (:meth:`~bcartnb.ledger.Ledger.snapshot`): a mail another process records
    meanwhile is in none of the figures or in all of them.

    ``month`` (``YYYY-MM``) defaults to the one the campaign started in; ``usage`` given
    (the notebook's, read before the run) is taken as it is; ``recorded`` False (a dry run)
    reads no record; ``results`` and ``replan`` fill those fields of :class:`CampaignFacts`.
    An unknown campaign is a :class:`~bcartnb.exceptions.CampaignStateError`.
    """
    with Ledger.open(require_ledger(settings)) as led, led.snapshot():
        record = led.campaign(campaign_id) if recorded else None
        if month is None:
            month = month_of(record.created_at if record is not None else now_tokyo())
        used = dict(led.usage_by_campaign(month) if usage is None else usage)
        measured = results and record is not None and record.sent
        return CampaignFacts(
            record=record,
            usage=used,
            records=_known(led, used),
            admin_sent=_admin_sent(led, record),
            failures=led.failures(campaign_id) if record is not None else [],
            uncertain=led.uncertain(campaign_id) if record is not None else [],
            user=record.user if record is not None else os_user(),
            host=record.host if record is not None else HOST,
            results=campaign_breakdown(settings, campaign_id, ledger=led) if measured else None,
            replanned=_replanned(record, settings, led) if replan and record else None,
        )


def _replanned(
    record: CampaignRecord, settings: Settings, led: Ledger
) -> CampaignPlan | BcartnbError:
    """The campaign planned again from its recorded parameters and mail, or why not."""
    current = settings if settings.plan else settings.replace(plan=record.plan)
    try:
        spec = CampaignSpec.from_mapping(record.params, where=f"campaign {record.campaign_id}")
        return plan_campaign(
            spec, current, ledger=led, campaign_id=record.campaign_id, mail=record.mail
        )
    except BcartnbError as err:
        return err


def _known(led: Ledger, campaign_ids: Iterable[str]) -> dict[str, CampaignRecord]:
    """The records of those campaigns the ledger knows (a count may outlive its record)."""
    out = {}
    for cid in campaign_ids:
        try:
            out[cid] = led.campaign(cid)
        except BcartnbError:
            continue
    return out


def _admin_sent(led: Ledger, record: CampaignRecord | None) -> tuple[str, datetime] | None:
    """The address and time of the campaign's last admin copy, when the ledger says it went."""
    if record is None or record.admin_copy != "sent":
        return None
    sends = led.sends()
    mine = sends[(sends["kind"] == "admin") & (sends["campaign_id"] == record.campaign_id)]
    if not len(mine):
        return None
    return str(mine["address"].iloc[-1]), mine["at"].iloc[-1]


def bounce_rates(settings: Settings, month: str | None = None) -> pd.DataFrame:
    """Per campaign started in ``month`` (Asia/Tokyo): sent, bounced addresses, complaints, rate.

    ``sent`` counts the mails the receiving servers accepted; ``bounces`` the distinct
    addresses whose bounce (hard or soft) was matched to the campaign; ``rate`` their share.
    """
    import pandas as pd

    month = parse_month(month) if month else month_of(now_tokyo())
    year, mon = month.split("-")
    with ledger_using(settings) as led:
        campaigns = led.campaigns()
        events = led.hygiene_events(since=datetime(int(year), int(mon), 1, tzinfo=TOKYO))
    rows = []
    for _, c in campaigns.iterrows():
        created = c["created_at"]
        if month_of(created) != month:
            continue
        cid = str(c["campaign_id"])
        mine = [e for e in events if e["campaign_id"] == cid]
        bounced = {e["address"] for e in mine if e["kind"] in _BOUNCES}
        complaints = {e["address"] for e in mine if e["kind"] == "complaint"}
        sent = int(c["sent"])
        params = c["params"] or {}
        subject = params.get("subject") or f"（テンプレート {params.get('template') or '-'}）"
        rows.append(
            {
                "campaign_id": cid,
                "date": created.astimezone(TOKYO).strftime("%Y-%m-%d"),
                "subject": str(subject),
                "sent": sent,
                "bounces": len(bounced),
                "complaints": len(complaints),
                "rate": (len(bounced) / sent) if sent else 0.0,
            }
        )
    columns = ["campaign_id", "date", "subject", "sent", "bounces", "complaints", "rate"]
    return pd.DataFrame(rows, columns=columns)


def listed_now(settings: Settings, addresses: Iterable[str]) -> list[Suppression]:
    """The suppression list's rows of ``addresses``, in their order: those taken off since
    (``bcartnb unsuppress``) are left out."""
    with ledger_using(settings) as led:
        rows = [led.suppression(a) for a in addresses]
    return [s for s in rows if s is not None]
