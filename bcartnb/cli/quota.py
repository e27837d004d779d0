"""``bcartnb quota``: the plan's メール配信上限数, a month's sends by campaign, what is left."""

from __future__ import annotations

import argparse
from typing import Any

from bcartnb.cli.common import JSON, Command, arg
from bcartnb.cli.output import jst, ledger_line, print_json, say, subject_of

__all__ = ["QUOTA"]


def _cmd_quota(args: argparse.Namespace) -> int:
    from bcartnb import campaign
    from bcartnb.quota import month_of, now_tokyo, parse_month
    from bcartnb.settings import load_settings, require_ledger, require_plan

    settings = load_settings()
    plan = require_plan(settings)
    this_month = month_of(now_tokyo())
    month = parse_month(args.month) if args.month else this_month
    db = require_ledger(settings)
    status, used = campaign.month_usage(settings, month)
    campaigns: list[dict[str, Any]] = [
        {
            "campaign_id": c.campaign_id,
            "used": c.used,
            "created_at": c.record.created_at.isoformat() if c.record else None,
            "subject": (subject_of(c.record.params) or None) if c.record else None,
        }
        for c in used
    ]
    if args.json:
        print_json(
            {
                **status.as_dict(),
                "reserved": status.reserved,
                "campaigns": campaigns,
                "ledger": str(db),
            }
        )
        return 0

    def count(n: int | None) -> str:
        return "上限なし" if n is None else f"{n:,}件"

    used_label = "今月の送信数" if month == this_month else f"{month}の送信数"
    lines = [
        f"プラン: {plan.name}",
        f"対象月: {month}",
        f"メール配信上限数: {count(status.cap)}",
        f"{used_label}: {count(status.used)}",
    ]
    if status.reserved:
        lines.append(f"送信中のキャンペーンの予約: {count(status.reserved)}")
    lines.append(f"残り: {count(status.remaining)}")
    if campaigns:
        lines.append("キャンペーン別の送信数（登録日時 / 件名 / キャンペーンID）:")
        for c in campaigns:
            when = jst(c["created_at"]) if c["created_at"] else "----------------"
            lines.append(
                f"  {when}  {count(c['used']):>9}  {c['subject'] or '（件名不明）'}"
                f"  {c['campaign_id']}"
            )
    lines.append(ledger_line(db))
    say("\n".join(lines))
    return 0


QUOTA = Command(
    "quota",
    help="メール配信上限数と今月の送信数、残りを表示します",
    description="プランのメール配信上限数、その月の送信数（キャンペーン別）と残りを表示します。",
    args=(
        arg("--month", default=None, metavar="YYYY-MM", help="対象月（省略時は日本時間の今月）"),
        JSON,
    ),
    run=_cmd_quota,
)
