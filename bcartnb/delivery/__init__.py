"""Delivery: sends a campaign the conductor has planned and claimed; never plans.

B-Cart loses a delivery when the browser closes. Here every mail's state is in the ledger
(:mod:`bcartnb.ledger`) before and after its SMTP transaction, so a campaign survives Ctrl-C,
a dropped connection, a closed notebook, an outage or a SIGKILL. One run of
:func:`deliver`:

1. composes every mail still to send (:mod:`~bcartnb.delivery.spool`; an encoding or
   template error stops the run with nobody mailed) while the connections open;
2. reserves the quota units the run may count (``QuotaExceededError`` otherwise, nothing
   sent);
3. sends (:mod:`~bcartnb.delivery.loop`): the pending and deferred mails, then the deferred
   ones again in retry rounds with backoff (``retries`` rounds; with the defaults, 30 s,
   1, 2, 4, 8 and 10 minutes: about 25 minutes, longer than greylisting asks for);
4. sends the admin copy once the campaign has nothing left (:mod:`~bcartnb.delivery.admin_copy`);
5. releases the campaign: ``done`` only when nothing is left to do, else ``unfinished``
   for ``bcartnb resume``; and tells what happened (:mod:`~bcartnb.delivery.summary`).

Failures after the reservation never raise out of a run: the summary says how many went
out, how many are left and why (``stopped``), and its ``exit_code`` is 4. Only a ledger
deleted under a running campaign raises, since nothing it would say could be recorded.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

import pandas as pd

from bcartnb.compose import ComposedMail, Composer
from bcartnb.delivery.admin_copy import send_admin_copy
from bcartnb.delivery.connections import Connector, RateLimiter
from bcartnb.delivery.loop import MAX_BACKOFF, Sender
from bcartnb.delivery.plan import SendPlan
from bcartnb.delivery.spool import Spool, SpoolHelper, spool_or_check
from bcartnb.delivery.summary import (
    DONE_MESSAGE,
    EXIT_CODES,
    DeliverySummary,
    mask_address,
    mask_text,
    quota_dict,
)
from bcartnb.exceptions import (
    BcartnbError,
    InputError,
    LedgerError,
    QuotaExceededError,
    SelectionError,
    TransportError,
)
from bcartnb.ledger import Ledger, Recipient
from bcartnb.ledger.journal import COUNTED_FROM
from bcartnb.members import check_addresses, normalize_address
from bcartnb.quota import QuotaStatus, quota_refusal_ja
from bcartnb.settings import DeliverySettings, Settings
from bcartnb.transports import Outcome, Transport, transport_from_settings

__all__ = [
    "DONE_MESSAGE",
    "EXIT_CODES",
    "MAX_BACKOFF",
    "TEST_PREFIX",
    "DeliverySummary",
    "RateLimiter",
    "SendPlan",
    "deliver",
    "dry_run",
    "mask_address",
    "mask_text",
    "options",
    "projected",
    "quota_dict",
    "send_test",
]

TEST_PREFIX = "【テスト送信】"


def dry_run(plan: SendPlan) -> DeliverySummary:
    """Compose everything, project the quota, send nothing; refuse (exit 3) if it won't fit.

    Composed as a send composes them, on two cores where it can (the spool's helper), so
    the dry run stops on the very member the send would stop on.
    """
    helper = SpoolHelper.fork(plan)
    try:
        spool = spool_or_check(plan, helper)
    finally:
        if helper is not None:
            helper.close()
    if spool is not None:
        spool.close()
    return projected(plan)


def projected(plan: SendPlan) -> DeliverySummary:
    """The dry run's summary and quota refusal without composing a mail: the wizard's
    confirmation shows it at once and composes every mail meanwhile (a send composes every
    mail before its first goes out all the same)."""
    n = len(plan.audience.sendable)
    summary = DeliverySummary(
        campaign_id=plan.campaign_id,
        status="dry-run",
        dry_run=True,
        sent=0,
        failed=0,
        quota=quota_dict(plan.quota, plan.quota.used + n),
        warnings=list(plan.warnings),
        **plan.audience.summary(),
    )
    if not plan.quota.fits(n):
        raise QuotaExceededError(
            f"campaign of {n} mails does not fit this month's quota: cap {plan.quota.cap}, "
            f"used {plan.quota.used}, reserved {plan.quota.reserved}, "
            f"remaining {plan.quota.remaining}; nothing was sent",
            ja=quota_refusal_ja(plan.quota, n),
        )
    return summary


def options(settings: Settings, **given: Any) -> DeliverySettings:
    """The settings' delivery numbers, with the caller's overrides, checked like the file's.

    The conductor calls it before claiming a campaign, so a bad override is refused before
    anything is recorded; ``deliver`` calls it again (it is cheap and pure).
    """
    changes = {k: v for k, v in given.items() if v is not None}
    return replace(settings.delivery, **changes) if changes else settings.delivery


def deliver(
    plan: SendPlan,
    ledger: Ledger,
    transport: Transport | None = None,
    *,
    resend_uncertain: bool = False,
    first_run: bool = False,
    progress: bool | Callable[[int, int], None] = True,
    sleep: Callable[[float], None] = time.sleep,
    connections: int | None = None,
    retries: int | None = None,
    backoff: float | None = None,
    rate_per_second: float | None = None,
    rate_per_hour: int | None = None,
    composing: SpoolHelper | None = None,
) -> DeliverySummary:
    """Send what is left of a campaign this process has claimed, then release it.

    The claim (:meth:`~bcartnb.ledger.Ledger.claim` / ``take_over``) is the conductor's;
    the release, whatever happens, is ours. Raises before anything is sent:
    :class:`QuotaExceededError` (exit 3), :class:`~bcartnb.exceptions.ComposeError` /
    ``TemplateError`` (exit 2); on its ``first_run`` the campaign is then cancelled (none
    of its mails went out: the user changes something and runs it again), else it stays
    unfinished for a resume. Afterwards it returns: status ``done``, ``unfinished`` (with
    ``stopped``) or ``interrupted`` (Ctrl-C). ``progress``: True for a tqdm.auto bar, False
    for none, or a callable ``(finished, total)`` (the wizard moves its own bar).
    ``composing``: a helper the conductor forked before the claim, already composing the
    plan's mails; used if it composes exactly the mails left to send, else stopped (its
    caller closes it all the same).
    """
    tr = transport if transport is not None else transport_from_settings(plan.settings)
    opts = options(
        plan.settings,
        connections=connections,
        retries=retries,
        backoff=backoff,
        rate_per_second=rate_per_second,
        rate_per_hour=rate_per_hour,
    )
    cid = plan.campaign_id
    sending = False
    try:
        ledger.withhold_suppressed(cid)  # unsubscribed since the campaign began: honoured
        ledger.record_links(cid, plan.composer.tracked_links)  # what /c/ may redirect to
        todo = ledger.to_send(cid, resend_uncertain=resend_uncertain)
        units = sum(1 for r in todo if r.state in COUNTED_FROM)
        sendable = plan.audience.sendable
        wanted = {r.member_id for r in todo}
        rows = sendable[sendable["id"].astype("int64").isin(wanted)]
        fits = plan.quota.fits(units)
        n = len(todo) if fits else 0
        with _prepared(plan, tr, n, opts.connections, rows, composing) as (
            spool,
            connector,
        ):
            status = _reserve(plan, ledger, units)
            sending = True
            return _run(
                plan,
                ledger,
                tr,
                status,
                todo,
                opts,
                resend=resend_uncertain,
                progress=progress,
                sleep=sleep,
                spool=spool,
                connector=connector,
            )
    except BaseException:
        if not sending:
            with contextlib.suppress(BcartnbError):
                ledger.release(cid, cancel=first_run)
        raise


def _reserve(plan: SendPlan, ledger: Ledger, units: int) -> QuotaStatus:
    """The run's quota units; a refusal says what the campaign already sent, and carries
    the summary (``--json`` prints it with exit 3)."""
    cid = plan.campaign_id
    try:
        return ledger.reserve(cid, units, plan.plan)
    except QuotaExceededError as err:
        record = ledger.campaign(cid)
        status = ledger.usage(plan.plan)
        summary = DeliverySummary.from_record(
            record,
            "refused",
            quota_dict(status, status.used),
            [(r.member_id, r.address) for r in ledger.uncertain(cid)],
            warnings=list(plan.warnings),
        )
        started = sum(n for state, n in record.journal.items() if state != "pending")
        if not started:
            refusal = err
        else:
            refusal = QuotaExceededError(
                f"{err}; campaign {cid} had already sent {record.sent} mails, "
                f"{summary.left} are left; this run sent nothing",
                ja=f"このキャンペーンの残り {units:,}件は、{status.month} のメール配信上限数 "
                f"{status.cap or 0:,}件（{status.plan.name}）の残り {status.remaining or 0:,}件"
                f"を超えます。このキャンペーンは既に {record.sent:,}件を送信済みで、"
                f"残りは {summary.left:,}件です。この実行では何も送信していません。"
                f"翌月に `{summary.resume_command}` で続きを送るか、プランを見直してください。",
            )
        summary.stopped, summary.stopped_ja = str(refusal), refusal.ja
        refusal.summary = summary.as_dict()
        if refusal is err:
            raise
        raise refusal from err


@contextlib.contextmanager
def _prepared(
    plan: SendPlan,
    tr: Transport,
    n: int,
    k: int,
    rows: pd.DataFrame,
    composing: SpoolHelper | None = None,
) -> Iterator[tuple[Spool | None, Connector | None]]:
    """Every mail of ``rows`` composed, on two cores where it can, while ``min(k, n)``
    connections open; all of it released when the run ends or stops before sending.

    ``n = 0`` opens none: a campaign the quota will refuse must not knock on the server's door.
    """
    helper = composing
    if helper is not None and not helper.matches(plan.composer, rows):
        helper.close()  # the claim changed the campaign: another id, fewer members
        helper = None
    if helper is None:
        helper = SpoolHelper.fork(plan, rows)  # forks: before the connector starts its threads
    connector: Connector | None = None
    spool: Spool | None = None
    try:
        connector = Connector(tr, min(max(1, k), n)) if n else None
        spool = spool_or_check(plan, helper, rows)
        yield spool, connector
    finally:
        if helper is not None:
            helper.close()
        if connector is not None:
            connector.close()
        if spool is not None:
            spool.close()


def _run(
    plan: SendPlan,
    led: Ledger,
    tr: Transport,
    status: QuotaStatus,
    todo: list[Recipient],
    opts: DeliverySettings,
    *,
    resend: bool,
    progress: bool | Callable[[int, int], None],
    sleep: Callable[[float], None],
    spool: Spool | None,
    connector: Connector | None,
) -> DeliverySummary:
    cid = plan.campaign_id
    sender = Sender(
        plan,
        led,
        tr,
        connections=opts.connections,
        limiter=RateLimiter(opts.rate_per_second, opts.rate_per_hour),
        progress=progress,
        sleep=sleep,
        spool=spool,
        connector=connector,
    )
    interrupted = False
    final = "unfinished"
    failing = True
    admin: str | None = None
    summary_warnings: list[str] = []
    spare = None
    try:
        with sender:
            sender.open_bar(len(todo))
            try:
                if todo:
                    sender.run_round(todo, resend=resend)
                for round_no in range(1, opts.retries + 1):
                    if sender.fatal is not None:
                        break
                    led.withhold_suppressed(cid)
                    deferred = led.deferred(cid)
                    if not deferred:
                        break
                    sender.wait(_backoff(opts, round_no))
                    sender.run_round(deferred)
            except KeyboardInterrupt:
                interrupted = True
                sender.drain()
            except LedgerError:
                raise
            except BcartnbError as err:  # the ledger refused a wait's heartbeat
                sender.fatal = sender.fatal or err
                sender.drain()
            except BaseException:
                with contextlib.suppress(Exception):  # keep what came back; raise the cause
                    sender.drain(timeout=5.0)
                raise
            if sender.fatal is not None:
                sender.drain()
            record = led.campaign(cid)
            if not interrupted and record.left == 0:
                spare = sender.spare_connection()  # the admin copy rides an open session
        if not interrupted and record.left == 0:
            holder = DeliverySummary.from_record(
                record,
                "done",
                quota_dict(status, status.used + sender.counted),
                [],
                failures=led.failures(cid),
            )
            try:
                admin = send_admin_copy(plan, led, tr, holder, spare)
                for round_no in range(1, opts.retries + 1):
                    if admin != "deferred":  # a greylisting server defers it like the rest
                        break
                    sender.wait(_backoff(opts, round_no))  # the members' waits, the same way
                    admin = send_admin_copy(plan, led, tr, holder)
                if admin == "sent":  # the refusals on the way are history, not news
                    holder.warnings = [w for w in holder.warnings if "配信控え" not in w]
            finally:
                if spare is not None:
                    with contextlib.suppress(Exception):
                        spare.close()
            summary_warnings += holder.warnings
        failing = False
    except LedgerError as err:
        raise LedgerError(
            f"{err}; this run had sent {sender.tally['sent']} mails when it stopped",
            ja=f"{err.ja}この実行で {sender.tally['sent']} 件を送信したところで止めました。",
        ) from err
    finally:
        owed = bool(plan.settings.admin) and admin in (None, "deferred") and not interrupted
        try:
            final = led.release(cid, admin_owed=owed)
        except LedgerError:
            if not failing:
                raise
    record = led.campaign(cid)
    summary = DeliverySummary.from_record(
        record,
        "interrupted" if interrupted else ("done" if final == "done" else "unfinished"),
        quota_dict(status, status.used + sender.counted),
        [(r.member_id, r.address) for r in led.uncertain(cid)],
        sent_now=sender.tally["sent"],
        failures=led.failures(cid) if record.failed else [],
    )
    summary.warnings += plan.warnings + summary_warnings
    if sender.missing:
        summary.warnings.append(
            f"会員ファイルに見つからない会員 {len(sender.missing)} 件は未送信のままです: "
            + ", ".join(str(m) for m in sender.missing[:10])
        )
    summary.stopped, summary.stopped_ja = _why_unfinished(summary, sender.fatal, opts, owed)
    return summary


def _backoff(opts: DeliverySettings, round_no: int) -> float:
    """The wait before retry round ``round_no`` (1, 2, …): ``backoff`` doubling, capped."""
    return min(opts.backoff * 2.0 ** (round_no - 1), MAX_BACKOFF)


def _why_unfinished(
    summary: DeliverySummary, fatal: BaseException | None, opts: DeliverySettings, owed: bool
) -> tuple[str | None, str | None]:
    """What kept the campaign from being finished, in English and in Japanese (or None)."""
    if fatal is not None:
        return str(fatal), getattr(fatal, "ja", "") or None
    if summary.status != "unfinished":
        return None, None
    if summary.deferred:
        return (
            f"{summary.deferred} mails were still deferred (4xx) by the server after "
            f"{opts.retries} retry rounds",
            f"受信側が一時的に受け取りを保留したメールが {summary.deferred:,} 件残っています"
            f"（再試行 {opts.retries} 回のあと）。",
        )
    if summary.uncertain:
        return (
            f"{len(summary.uncertain)} mails were lost after their data went out (uncertain)",
            f"送信結果が不明なメールが {len(summary.uncertain):,} 件あります。",
        )
    if owed and not summary.left:
        return "the admin copy could not be sent", "管理者への配信控えを送れませんでした。"
    return None, None


def send_test(
    plan: SendPlan,
    to: str,
    ledger: Ledger,
    *,
    member_id: int | None = None,
    transport: Transport | None = None,
) -> ComposedMail:
    """Send one member's mail, as composed for the campaign, to ``to`` (e.g. the admin).

    What a marketer does before the real send: see the mail in a real mail client. The
    subject starts with 【テスト送信】 and the mail goes to ``to`` only (To: header too); it
    is recorded in the ledger as a test send and, as B-Cart's rule says, never counted in
    the quota. Raises :class:`~bcartnb.exceptions.SelectionError` for a member that is not
    sendable, :class:`TransportError` when the server does not take it.
    """
    address = normalize_address(to)
    if not address:
        raise InputError(
            "the test address is empty",
            ja="テスト送信先のメールアドレスを入力してください。",
        )
    reason = check_addresses(pd.Series([address], dtype="str")).iloc[0]
    if not pd.isna(reason):
        raise InputError(
            f"test address {to!r} cannot be mailed ({reason})",
            ja=f"テスト送信先 {to!r} には送れません（メールアドレスを確かめてください）。",
        )
    sendable = plan.audience.sendable
    if sendable.empty:
        raise SelectionError(
            "no sendable member to compose a test mail for",
            ja="送信できる会員がいないため、テスト送信のメールを作れません。",
        )
    rows = sendable if member_id is None else sendable[sendable["id"] == member_id]
    if rows.empty:
        raise SelectionError(
            f"member {member_id} is not among the sendable members",
            ja=f"会員ID {member_id} は送信できる会員に入っていません。",
        )
    member = {str(k): v for k, v in rows.iloc[0].to_dict().items()}
    member["email"] = address
    # a test mail's links go where they say: its campaign id is in no link table
    draft = replace(plan.draft, subject=TEST_PREFIX + plan.draft.subject, track=False)
    mail = Composer(draft, plan.settings, f"{plan.campaign_id}-test").compose(member)
    tr = transport if transport is not None else transport_from_settings(plan.settings)
    with tr.connect() as conn:
        res = conn.send(plan.settings.from_addr, [address], mail.raw)
    if res.outcome is not Outcome.SENT:
        raise TransportError(
            f"test mail to {address} not accepted: {res.code} {res.message}",
            ja=f"テスト送信のメールを受信側が受け付けませんでした（{res.code}）。",
        )
    ledger.record_send("test", address, code=res.code, message=res.message or None)
    return mail
