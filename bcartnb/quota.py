"""B-Cart's monthly send limit (メール配信上限数): the plans and the rules, no storage.

The rule, from the source document: a site may send, per calendar month, twice its plan's
member cap in campaign mail (mail from the member-list screen). Only campaign mail counts;
test sends and the administrator's copy do not; a mail the receiving server refuses or
bounces still counts as one. A shop on its own SMTP server (自社SMTP) has no cap, but its
usage is still counted so the history stays complete.

Months are calendar months in Asia/Tokyo, because that is the shop's (and B-Cart's) month:
2026-11-30 23:59:59 JST is November, 2026-12-01 00:00 JST is December, whatever the
machine's time zone.

This module is pure: it knows the plans and does the arithmetic. Counting and reserving,
which must be atomic across processes, live in :mod:`bcartnb.ledger`, which calls
:func:`check_quota` inside its write transaction.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from bcartnb.exceptions import InputError, QuotaExceededError
from bcartnb.plans import PLANS, Plan, resolve_plan

__all__ = [
    "NOW_ENV",
    "PLANS",
    "TOKYO",
    "Plan",
    "QuotaStatus",
    "check_quota",
    "month_of",
    "now_tokyo",
    "parse_month",
    "quota_refusal_ja",
    "quota_warning_ja",
    "resolve_plan",
]

TOKYO = ZoneInfo("Asia/Tokyo")


#: The environment variable that sets "now" for every part of bcartnb at once (the ledger's
#: stamps and leases, the quota month, ``bcartnb due``): tests and drills of 予約配信 run a
#: whole process as if at another time. An ISO 8601 time; without a zone it is Tokyo time.
NOW_ENV = "BCARTNB_NOW"


def now_tokyo() -> datetime:
    """The one clock: aware, in Asia/Tokyo, so stored timestamps read as the shop's time.

    ``BCARTNB_NOW`` (see :data:`NOW_ENV`) overrides it, read at each call, so a test can
    run ``bcartnb due`` as if the machine woke up a day late without touching the system
    clock; a bad value is refused rather than silently ignored.
    """
    fixed = os.environ.get(NOW_ENV, "").strip()
    if not fixed:
        return datetime.now(TOKYO)
    try:
        moment = datetime.fromisoformat(fixed)
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=TOKYO)
        return moment.astimezone(TOKYO)
    except (ValueError, OverflowError) as err:
        raise InputError(
            f"{NOW_ENV} must be an ISO 8601 time (e.g. 2026-12-10T09:00+09:00), not {fixed!r}",
            ja=f"{NOW_ENV} は 2026-12-10T09:00+09:00 のような日時にしてください"
            f"（{fixed!r} ではなく）。",
        ) from err


def month_of(dt: datetime) -> str:
    """The quota month ("YYYY-MM") of an instant, in Asia/Tokyo.

    A naive datetime is refused: it would silently mean the machine's zone, and a batch
    server in UTC would then count the first nine hours of each month in the wrong one.
    """
    global _last_month
    last = _last_month
    if last[0] is dt:  # the send loop's step asks twice about the same moment
        return last[2]
    if dt.tzinfo is None or dt.utcoffset() is None:
        raise ValueError(f"month_of needs an aware datetime, got naive {dt.isoformat()}")
    local = dt.astimezone(TOKYO)
    ym = (local.year, local.month)  # and every step of a run asks about the same month
    month = last[2] if ym == last[1] else local.strftime("%Y-%m")
    _last_month = (dt, ym, month)
    return month


_last_month: tuple[datetime | None, tuple[int, int], str] = (None, (0, 0), "")


_MONTH_RE = re.compile(r"^(\d{4})-(\d{2})$")


def parse_month(value: str) -> str:
    """Check a "YYYY-MM" month given by a user (``--month``) and return it normalised."""
    m = _MONTH_RE.match(value.strip())
    if not m or not 1 <= int(m.group(2)) <= 12 or int(m.group(1)) < 1:
        raise InputError(
            f"month must be YYYY-MM (e.g. 2026-11), not {value!r}",
            ja=f"対象月は 2026-11 のように「年-月」で指定してください（{value!r} ではなく）。",
        )
    return f"{m.group(1)}-{m.group(2)}"


@dataclass(frozen=True)
class QuotaStatus:
    """One month's quota as the ledger sees it.

    ``used`` counts SMTP transactions of campaign mail in the month; ``reserved`` is what
    running campaigns hold but have not handed to the server yet. ``remaining`` is what a new
    campaign could still reserve (cap - used - reserved, never below 0); None when uncapped.
    """

    plan: Plan
    month: str
    used: int
    reserved: int = 0

    @property
    def cap(self) -> int | None:
        return self.plan.monthly_cap

    @property
    def remaining(self) -> int | None:
        if self.cap is None:
            return None
        return max(self.cap - self.used - self.reserved, 0)

    def fits(self, needed: int) -> bool:
        """Whether ``needed`` more mails fit beside what is used and reserved."""
        return self.cap is None or self.used + self.reserved + needed <= self.cap

    def over(self, needed: int) -> int:
        """How many of ``needed`` mails do not fit (0 when they all do, or uncapped)."""
        if self.cap is None:
            return 0
        return max(self.used + self.reserved + needed - self.cap, 0)

    def after(self, sent: int) -> QuotaStatus:
        """The projection once ``sent`` more mails count (the dry run's ``used_after``)."""
        return replace(self, used=self.used + sent)

    def as_dict(self) -> dict[str, Any]:
        """The contract's keys: plan (Japanese name), month, cap, used, remaining."""
        return {
            "plan": self.plan.name,
            "month": self.month,
            "cap": self.cap,
            "used": self.used,
            "remaining": self.remaining,
        }


def quota_refusal_ja(status: QuotaStatus, needed: int) -> str:
    """The refusal as the wizard says it: the numbers of メール配信上限数, and what to do."""
    held = f"（うち送信中の配信の予約 {status.reserved:,}件）" if status.reserved else ""
    return (
        f"送信件数 {needed:,}件は、{status.month} のメール配信上限数 {status.cap:,}件"
        f"（{status.plan.name}）の残り {status.remaining:,}件を超えます。"
        f"今月の配信済み・予約 {status.used + status.reserved:,}件{held}。何も送信していません。"
        "送信先を絞り込むか、翌月に送るか、プランを見直してください。"
    )


def quota_warning_ja(status: QuotaStatus, needed: int, what: str = "送信件数") -> str:
    """The early warning, before 確認画面へ: "" when ``needed`` fits, else the numbers.

    The same arithmetic as the refusal (:meth:`QuotaStatus.over`), said while the marketer
    can still narrow the list; ``what`` names the count (送信件数, チェックした会員の送信件数).
    """
    over = status.over(needed)
    if not over:
        return ""
    return (
        f"{what} {needed:,}件は、今月の残り {status.remaining:,}件を {over:,}件超えています"
        f"（メール配信上限数 {status.cap:,}件／月、{status.plan.name}）。"
        "このままでは送信できません。絞り込むか、送る会員をチェックして減らしてください。"
    )


def check_quota(status: QuotaStatus, needed: int) -> QuotaStatus:
    """Refuse a campaign that does not fit; return the status with ``needed`` reserved.

    The ledger calls this inside its ``BEGIN IMMEDIATE`` transaction, so the numbers it is
    given cannot change before the reservation is written.
    """
    if needed < 0:
        raise ValueError(f"needed must be >= 0, not {needed}")
    if not status.fits(needed):
        left = status.remaining
        raise QuotaExceededError(
            f"quota exceeded for {status.month} ({status.plan.name}): cap {status.cap}, "
            f"used {status.used}, reserved {status.reserved}, needed {needed}, "
            f"remaining {left}; nothing was sent",
            ja=quota_refusal_ja(status, needed),
        )
    return replace(status, reserved=status.reserved + needed)
