"""The administrator's copy: once per campaign, resumes included, never counted.

A plain text mail with the counts, the failures and the mail as the first member got it,
so the shop sees what went out without opening the report. The ledger's
:meth:`~bcartnb.ledger.Ledger.claim_admin_copy` makes it once: a crash while it is out
leaves it claimed, and no resume sends a second one.
"""

from __future__ import annotations

import base64
from datetime import datetime
from email.utils import format_datetime, make_msgid

from bcartnb.compose import ComposedMail, encode_header_words
from bcartnb.delivery.plan import SendPlan
from bcartnb.delivery.summary import DeliverySummary, mask_address, mask_text
from bcartnb.exceptions import BcartnbError, TransportError
from bcartnb.ledger import Ledger
from bcartnb.quota import now_tokyo
from bcartnb.transports import Connection, Outcome, Transport

__all__ = ["admin_copy", "send_admin_copy"]


def admin_copy(
    plan: SendPlan, summary: DeliverySummary, sample: ComposedMail | None, now: datetime
) -> bytes:
    """A plain text mail to the administrator: the counts, then the mail as members got it."""
    settings = plan.settings
    subject_words = encode_header_words(f"【配信控え】{sample.subject if sample else ''}", "utf-8")
    cap = "上限なし" if summary.quota.get("cap") is None else f"{summary.quota['cap']:,}"
    lines = [
        "会員へのメール配信が完了しました。（bcartnb 配信控え）",
        "",
        f"キャンペーンID: {summary.campaign_id}",
        f"送信日時: {now:%Y-%m-%d %H:%M}",
        f"送信件数: {summary.sendable:,}",
        f"送信できない件数: {summary.unsendable:,}",
        f"送信済み: {summary.sent:,}",
        f"失敗: {summary.failed:,}",
        f"今月の配信数: {summary.quota.get('used_after', 0):,}（上限 {cap}）",
    ]
    if summary.failures:
        lines.append("")
        lines.append("送信に失敗した会員:")
        lines += [
            f"  会員ID {mid} {mask_address(addr)} {code or ''} {mask_text(msg)}".rstrip()
            for mid, addr, code, msg in summary.failures[:50]
        ]
    if sample is not None:
        lines += [
            "",
            "----- 配信したメール（1通目の会員への内容） -----",
            "",
            f"件名: {sample.subject}",
            "",
            sample.text,
        ]
    body = "\r\n".join("\r\n".join(lines).splitlines()) + "\r\n"
    domain = settings.from_addr.rpartition("@")[2] or "bcartnb.invalid"
    headers = [
        f"From: {plan.composer.from_header}",
        f"To: {settings.admin}",
        "Subject: " + "\r\n ".join(subject_words),
        f"Date: {format_datetime(now)}",
        f"Message-ID: {make_msgid('bcartnb.admin', domain=domain)}",
        "MIME-Version: 1.0",
        'Content-Type: text/plain; charset="UTF-8"',
        "Content-Transfer-Encoding: base64",
        f"X-Bcartnb-Campaign: {summary.campaign_id}",
    ]
    encoded = base64.encodebytes(body.encode("utf-8")).replace(b"\n", b"\r\n")
    return ("\r\n".join(headers) + "\r\n\r\n").encode("ascii") + encoded


def send_admin_copy(
    plan: SendPlan,
    ledger: Ledger,
    transport: Transport,
    summary: DeliverySummary,
    conn: Connection | None = None,
) -> str | None:
    """The admin copy, once per campaign, over ``conn`` when given (no new TLS login).

    Returns ``sent``, ``uncertain`` (lost after the data: never sent again), ``refused``
    (5xx), ``deferred`` (4xx: the caller may try again after a wait, as for a member's
    mail), or None: the server was unreachable. Not sent and still owed (``deferred``,
    None), the campaign stays unfinished until a resume sends it.
    """
    admin = plan.settings.admin
    if not admin:
        summary.warnings.append("管理者アドレス（admin）が未設定のため、配信控えを送っていません。")
        return None
    if not ledger.claim_admin_copy(plan.campaign_id):
        return "sent"  # an earlier run sent (or was sending) it: never a second copy
    try:  # a sample of the mail; after the campaign went out, never a reason to fail
        composer = plan.composer.untracked()  # the admin's clicks count for no member
        sample = next(iter(composer.compose_all(plan.audience.sendable.head(1))), None)
    except BcartnbError:
        sample = None  # that member's data changed since (a resume composes only the rest)
    raw = admin_copy(plan, summary, sample, now_tokyo())
    try:
        res = None
        if conn is not None and conn.alive:
            res = conn.send(plan.settings.from_addr, [admin], raw)
            if res.outcome is Outcome.TEMPORARY and res.code is None:
                res = None  # the idle session had been closed by the server: a new one
        if res is None:
            with transport.connect() as fresh:
                res = fresh.send(plan.settings.from_addr, [admin], raw)
    except TransportError as err:
        ledger.release_admin_copy(plan.campaign_id)
        summary.warnings.append(f"配信控えを送れませんでした: {mask_text(str(err))}")
        return None
    if res.outcome is Outcome.SENT:
        ledger.mark_admin_copy(plan.campaign_id, admin, code=res.code, message=res.message)
        return "sent"
    if res.outcome is Outcome.UNCERTAIN:
        return "uncertain"
    ledger.release_admin_copy(plan.campaign_id)
    summary.warnings.append(f"配信控えが拒否されました: {res.code} {mask_text(res.message)}")
    # refused for good (5xx): trying again would be refused again; a 4xx is to retry
    return "refused" if res.outcome is Outcome.PERMANENT else "deferred"
