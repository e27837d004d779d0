"""A short notice to the administrator: what became of a scheduled campaign (予約配信).

Nobody watches ``bcartnb due`` run at 9:00 from cron: the admin hears by mail that a
scheduled campaign was sent (beside the campaign's own admin copy), refused (the quota, a
member file gone) or expired. Plain text, never counted, recorded as an admin send. A
notice that cannot go out never changes what happened to the campaign: the caller gets a
warning line instead.
"""

from __future__ import annotations

from email.message import EmailMessage
from email.utils import format_datetime, formataddr, make_msgid

from bcartnb.exceptions import BcartnbError
from bcartnb.ledger import Ledger
from bcartnb.quota import now_tokyo
from bcartnb.settings import Settings
from bcartnb.transports import Outcome, Transport, transport_from_settings

__all__ = ["send_admin_notice"]


def _one_line(text: str) -> str:
    """A header value on one line: nothing a subject carries can add a header."""
    return " ".join(text.split())


def send_admin_notice(
    settings: Settings,
    ledger: Ledger,
    subject: str,
    lines: list[str],
    *,
    campaign_id: str | None = None,
    transport: Transport | None = None,
) -> str | None:
    """Mail ``lines`` to the admin; None when accepted, else why not (a warning line)."""
    admin = settings.admin
    if not admin:
        return "管理者アドレス（admin）が未設定のため、予約配信の結果をメールで知らせていません。"
    msg = EmailMessage()
    msg["From"] = formataddr((settings.from_name or "", settings.from_addr))
    msg["To"] = admin
    msg["Subject"] = _one_line(subject)
    msg["Date"] = format_datetime(now_tokyo())
    domain = settings.from_addr.rpartition("@")[2] or "bcartnb.invalid"
    msg["Message-ID"] = make_msgid("bcartnb.notice", domain=domain)
    msg.set_content("\n".join([*lines, "", "（bcartnb 予約配信のお知らせ）"]) + "\n", cte="base64")
    try:
        tr = transport if transport is not None else transport_from_settings(settings)
        with tr.connect() as conn:
            res = conn.send(settings.from_addr, [admin], msg.as_bytes())
    except BcartnbError as err:
        return f"予約配信の結果を管理者に送れませんでした: {err.line()}"
    if res.outcome is not Outcome.SENT:
        return f"予約配信の結果を管理者に送れませんでした（{res.code}）。"
    ledger.record_send("admin", admin, campaign_id=campaign_id, code=res.code, message=None)
    return None
