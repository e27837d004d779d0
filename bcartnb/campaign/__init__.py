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
is what makes it exactly once: taken atomically before anything is sent, it
refuses a second run of the same campaign while the first is running, continues an
unfinished one (same id, nobody mailed twice), and holds each address for this mail, so a
member who already got it from any campaign (another file, a snapshot, a grown list) is held
back as ``already_sent``; ``repeat`` sends it again on purpose.

It is laid out by concern: :mod:`~bcartnb.campaign.spec` (the keys, checked once),
:mod:`~bcartnb.campaign.plan` (what would be sent, and the frozen mail),
:mod:`~bcartnb.campaign.conduct` (run, send, resume, cancel),
:mod:`~bcartnb.campaign.schedule` (予約配信: schedule, and ``due`` sending each once), and
the faces' questions to the ledger: :mod:`~bcartnb.campaign.history` (the send history,
one campaign's outcome, the quota), :mod:`~bcartnb.campaign.results` (開封・クリック, their
breakdowns and the segments made from them), :mod:`~bcartnb.campaign.suppressions` (the
suppression list shown, changed, exported and pushed to B-Cart) and
:mod:`~bcartnb.campaign.reporting` (what the campaign and list-hygiene reports read).
Import from here; the names below are the conductor's whole face, and a face needs nothing
below them: the summary, :data:`LEFT_STATES`, the :class:`CampaignRecord` a face is handed
and the :class:`Transport` a wizard or a script may pass in are named here too.
"""

from __future__ import annotations

from bcartnb.campaign.conduct import (
    CampaignRun,
    cancel,
    resume,
    run,
    send,
    send_test,
)
from bcartnb.campaign.history import (
    CampaignOutcome,
    CampaignUsage,
    MonthUsage,
    campaign_history,
    campaign_outcome,
    campaign_results,
    month_usage,
    quota_status,
)
from bcartnb.campaign.plan import (
    CampaignPlan,
    build_draft,
    frozen_mail,
    members_with_orders,
    plan_campaign,
    purchases_stale,
    read_notes,
    resolve_segment,
)
from bcartnb.campaign.reporting import CampaignFacts, bounce_rates, campaign_facts, listed_now
from bcartnb.campaign.results import (
    LIMITS_JA,
    RESULT_COLUMNS,
    CampaignResults,
    campaign_breakdown,
    check_results_filter,
    history_rate_text,
    history_results,
    members_with_results,
    members_without_results,
    rate_text,
    results_history,
    tracking_measured,
)
from bcartnb.campaign.schedule import (
    LATE_LIMIT,
    SCHEDULE_LABELS,
    DueOutcome,
    ScheduledView,
    ScheduleResult,
    audience_words,
    cancel_scheduled,
    cancelled_words,
    check_send_at,
    due_exit_code,
    parse_send_at,
    quota_outlook,
    run_due,
    schedule,
    scheduled_campaign,
    scheduled_campaigns,
    scheduled_view,
)
from bcartnb.campaign.spec import CAMPAIGN_KEYS, ENCODINGS, CampaignSpec, load_campaign
from bcartnb.campaign.suppressions import (
    SuppressionList,
    export_suppressions,
    push_suppressions,
    suppress,
    suppressed_addresses,
    suppression_list,
    unsuppress,
)
from bcartnb.delivery import DeliverySummary, dry_run, projected
from bcartnb.ledger import CampaignRecord, Scheduled
from bcartnb.ledger.lifecycle import LEFT_STATES
from bcartnb.transports import Transport

__all__ = [
    "CAMPAIGN_KEYS",
    "ENCODINGS",
    "LATE_LIMIT",
    "LEFT_STATES",
    "LIMITS_JA",
    "RESULT_COLUMNS",
    "SCHEDULE_LABELS",
    "CampaignFacts",
    "CampaignOutcome",
    "CampaignPlan",
    "CampaignRecord",
    "CampaignResults",
    "CampaignRun",
    "CampaignSpec",
    "CampaignUsage",
    "DeliverySummary",
    "DueOutcome",
    "MonthUsage",
    "ScheduleResult",
    "Scheduled",
    "ScheduledView",
    "SuppressionList",
    "Transport",
    "audience_words",
    "bounce_rates",
    "build_draft",
    "campaign_breakdown",
    "campaign_facts",
    "campaign_history",
    "campaign_outcome",
    "campaign_results",
    "cancel",
    "cancel_scheduled",
    "cancelled_words",
    "check_results_filter",
    "check_send_at",
    "dry_run",
    "due_exit_code",
    "export_suppressions",
    "frozen_mail",
    "history_rate_text",
    "history_results",
    "listed_now",
    "load_campaign",
    "members_with_orders",
    "members_with_results",
    "members_without_results",
    "month_usage",
    "parse_send_at",
    "plan_campaign",
    "projected",
    "purchases_stale",
    "push_suppressions",
    "quota_outlook",
    "quota_status",
    "rate_text",
    "read_notes",
    "resolve_segment",
    "results_history",
    "resume",
    "run",
    "run_due",
    "schedule",
    "scheduled_campaign",
    "scheduled_campaigns",
    "scheduled_view",
    "send",
    "send_test",
    "suppress",
    "suppressed_addresses",
    "suppression_list",
    "tracking_measured",
    "unsuppress",
]
