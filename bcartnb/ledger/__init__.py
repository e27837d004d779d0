"""The ledger: one SQLite file holding the quota count, the send history and the mail journal.

B-Cart keeps no history of sent mail, and its monthly cap must hold across processes (a
notebook and a cron job may send at once), so both live here, in the file named by
``BCARTNB_DB`` or ``Settings.db`` (one per user by default: two ledgers would each allow a
full cap). One :class:`Ledger` object, built from one module per concern:

========================================  ==================================================
:mod:`~bcartnb.ledger.database`           the file: open, check, migrate, transactions
:mod:`~bcartnb.ledger.schema`             the tables and their migrations
:mod:`~bcartnb.ledger.lifecycle`          the campaign and mail state machines, drawn once,
                                          and the one way each state changes
:mod:`~bcartnb.ledger.reservations`       who holds a campaign; quota reservations, usage
:mod:`~bcartnb.ledger.journal`            the mail journal and the send loop's step
:mod:`~bcartnb.ledger.campaigns`          claims and the campaign lifecycle, history,
                                          test sends and the admin copy
:mod:`~bcartnb.ledger.claims`             the same mail never twice: one claim per
                                          (mail, address) across campaigns
:mod:`~bcartnb.ledger.finish`             cancel; end stuck mails on the marketer's word
:mod:`~bcartnb.ledger.suppressions`       the suppression list and its rules
:mod:`~bcartnb.ledger.events`             the bounces, complaints and unsubscribes behind
                                          it; unverified notices; unsubscribe requests
:mod:`~bcartnb.ledger.pushes`             the B-Cart write-back's records
:mod:`~bcartnb.ledger.watch`              whether the file changed, without reading it
:mod:`~bcartnb.ledger.snapshot`           a file only looked at, copied whole, nothing
                                          left beside it
:mod:`~bcartnb.ledger.schedules`          予約配信: scheduled campaigns, taken once when due
:mod:`~bcartnb.ledger.tracking`           clicks and opens: the link table, the events
:mod:`~bcartnb.ledger.responses`          who opened and clicked, member by member (reads)
========================================  ==================================================

No two of them import each other, directly or around a circle: lifecycle imports only the
file's helpers and every module that changes a state imports it; events and pushes import
suppressions, never the other way (``tests/test_layers.py`` holds it).

Tables (schema version :data:`SCHEMA_VERSION` in ``PRAGMA user_version``; the file is
marked as ours with ``PRAGMA application_id`` = :data:`APPLICATION_ID`): ``campaigns`` (one
row per campaign: id, who, plan, fingerprint, parameters, counts, status, admin copy),
``deliveries`` (the journal: one row per campaign and member), ``usage`` ((month, campaign)
→ counted mails: the quota is a SUM over a handful of rows, so checking it costs the same
with a million past deliveries), ``reservations`` (the running campaigns' claims and held
units), ``mail_claims`` ((mail, address) → the one campaign that mails it), ``sends``
(test sends and admin copies: recorded, never counted),
``suppressions`` (addresses never to mail again), ``hygiene_events`` (every bounce,
unsubscribe and complaint seen, once), ``bcart_pushes`` (changes B-Cart accepted) and
``scheduled`` (予約配信: campaigns to send at a time, each taken once).

How the conductor (:mod:`bcartnb.campaign`) and the send loop use it::

    led = Ledger.open(settings.db)
    claim = led.claim(fingerprint=fp, plan=plan, params=..., recipients=[(id, address)],
                      campaign_id=new_id)                 # or led.take_over(cid) to resume
    todo = led.to_send(claim.campaign_id)                 # pending and deferred rows
    led.reserve(cid, units, plan)                         # QuotaExceededError: none sent
    counted = led.exchange(cid, results, [(id, state)])   # the loop's step, one commit
    led.claim_admin_copy(cid) ... led.mark_admin_copy(cid, admin)
    led.release(cid)                                      # done | unfinished | cancelled
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING

from bcartnb.ledger.campaigns import (
    CampaignRecord,
    Claim,
    fingerprint,
    new_campaign_id,
)
from bcartnb.ledger.claims import mail_key
from bcartnb.ledger.events import HygieneEvents, RecordOutcome
from bcartnb.ledger.finish import ENDED_BY, Finishing
from bcartnb.ledger.journal import Recipient
from bcartnb.ledger.lifecycle import CAMPAIGN_TRANSITIONS, TRANSITIONS, DeliveryResult
from bcartnb.ledger.pushes import BCART_FIELDS, BcartChange, BcartPushes
from bcartnb.ledger.responses import Responses
from bcartnb.ledger.schedules import Scheduled, Schedules
from bcartnb.ledger.schema import (
    APPLICATION_ID,
    CAMPAIGN_STATUSES,
    DELIVERY_STATES,
    MIGRATIONS,
    SCHEDULE_STATUSES,
    SCHEMA_VERSION,
    SUPPRESSION_REASONS,
    Migration,
    legacy_mail_key,
)
from bcartnb.ledger.suppressions import (
    HygieneEvent,
    Suppression,
    Suppressions,
    normalize_address,
)
from bcartnb.ledger.tracking import LinkResult, Tracking, TrackResults
from bcartnb.ledger.watch import LedgerWatch

__all__ = [
    "APPLICATION_ID",
    "BCART_FIELDS",
    "CAMPAIGN_STATUSES",
    "CAMPAIGN_TRANSITIONS",
    "DELIVERY_STATES",
    "ENDED_BY",
    "MIGRATIONS",
    "SCHEDULE_STATUSES",
    "SCHEMA_VERSION",
    "SUPPRESSION_REASONS",
    "TRANSITIONS",
    "BcartChange",
    "CampaignRecord",
    "Claim",
    "DeliveryResult",
    "HygieneEvent",
    "Ledger",
    "LedgerWatch",
    "LinkResult",
    "Migration",
    "Recipient",
    "RecordOutcome",
    "Scheduled",
    "Suppression",
    "TrackResults",
    "fingerprint",
    "legacy_mail_key",
    "mail_key",
    "new_campaign_id",
    "normalize_address",
    "reading",
    "using",
]


class Ledger(Finishing, Suppressions, HygieneEvents, BcartPushes, Schedules, Tracking, Responses):
    """The quota counter, send history and mail journal in one SQLite file.

    Open with :meth:`Ledger.open`; usable as a context manager; safe to share between the
    threads of one process (calls are serialised; a connection must not cross a fork).
    ``now`` parameters take an aware datetime and default to the ``clock`` given to
    :meth:`open`, so tests inject time.
    """


if TYPE_CHECKING:
    from bcartnb.settings import Settings


@contextlib.contextmanager
def using(settings: Settings, ledger: Ledger | None = None) -> Iterator[Ledger]:
    """The caller's ledger when it passed one (left open for it), else the settings' file,
    opened for this block and closed after: how every stage takes an optional ledger."""
    if ledger is not None:
        yield ledger
        return
    with Ledger.open(settings=settings) as led:
        yield led


@contextlib.contextmanager
def reading(settings: Settings, ledger: Ledger | None = None) -> Iterator[Ledger]:
    """:func:`using` for a stage that only reads (a plan, a dry run): where the shop's ledger
    file does not exist yet, an empty ledger in memory stands in for it (not ``on_disk``), so
    looking never creates the file; the first send does, through :func:`using`."""
    if ledger is None:
        from bcartnb.settings import require_ledger

        if not require_ledger(settings).expanduser().exists():
            with contextlib.closing(Ledger.in_memory()) as led:
                yield led
            return
    with using(settings, ledger) as led:
        yield led
