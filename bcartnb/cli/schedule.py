"""予約配信 on the command line: ``run --at`` schedules, ``schedule`` lists, shows and cancels,
``due`` sends what is due (run every minute by cron or a systemd timer: ``examples/``).

``due`` exits with the contract's codes so the scheduler can act: 0 nothing due, or every
campaign it sent finished with every mail accepted; otherwise the most urgent of its
campaigns' codes (130, 4 unfinished, 3 the quota refused, 2 refused or expired, 5 refused
mails). Each campaign is one line on stdout (the JSON list with ``--json``).
"""

from __future__ import annotations

import argparse
from typing import Any

from bcartnb.cli.common import JSON, Command, arg, importing
from bcartnb.cli.output import print_json, say

__all__ = ["COMMANDS", "schedule_at"]


def _audience(params: dict[str, Any]) -> str:
    from bcartnb.campaign import audience_words

    return audience_words(params)


def _as_dict(s: Any) -> dict[str, Any]:
    return {
        "schedule_id": s.schedule_id,
        "send_at": s.send_at.isoformat(),
        "status": s.status,
        "subject": s.subject,
        "audience": s.params,
        "projected": s.projected,
        "month": s.month,
        "campaign_id": s.campaign_id,
        "exit_code": s.exit_code,
        "result": s.result,
    }


def _when(s: Any) -> str:
    from bcartnb.quota import TOKYO

    return f"{s.send_at.astimezone(TOKYO):%Y-%m-%d %H:%M}"


def schedule_at(spec: Any, settings: Any, at_text: str, as_json: bool) -> int:
    """``run CAMPAIGN --at TIME``: the campaign is stored, not sent (see the module)."""
    from bcartnb import campaign

    at = campaign.parse_send_at(at_text)
    result = campaign.schedule(spec, settings, at)
    s = result.scheduled
    if as_json:
        print_json({**_as_dict(s), "sendable": result.sendable, "warnings": result.warnings})
        return 0
    say(
        "\n".join(
            [
                f"予約しました: {s.schedule_id}",
                f"  送信日時: {_when(s)}（日本時間）",
                f"  件名: {s.subject}",
                f"  送信先: {_audience(s.params)}",
                f"  送信件数（今の会員で数えた見込み）: {result.sendable:,} 件",
                "  送信時点の会員に送ります（会員ファイルは送信のときに読み直します）。",
                *(f"注意: {w}" for w in result.warnings),
                f"取り消すには: bcartnb schedule cancel {s.schedule_id}",
            ]
        )
    )
    return 0


def _cmd_schedule(args: argparse.Namespace) -> int:
    from bcartnb import campaign
    from bcartnb.campaign import SCHEDULE_LABELS
    from bcartnb.settings import load_settings

    settings = load_settings()
    if args.action is not None and args.schedule_id is None:
        from bcartnb.exceptions import UsageError

        raise UsageError(
            f"schedule {args.action} needs a schedule id",
            ja=f"bcartnb schedule {args.action} には予約ID を指定してください。",
        )
    if args.action == "cancel":
        s = campaign.cancel_scheduled(settings, args.schedule_id)
        if args.json:
            print_json(_as_dict(s))
        else:
            say(campaign.cancelled_words(s))
        return 0
    if args.action == "show":
        s = campaign.scheduled_campaign(settings, args.schedule_id)
        if args.json:
            print_json({**_as_dict(s), "mail": s.mail})
            return 0
        lines = [
            f"予約ID: {s.schedule_id}",
            f"状態: {SCHEDULE_LABELS.get(s.status, s.status)}",
            f"送信日時: {_when(s)}（日本時間）",
            f"件名: {s.subject}",
            f"送信先: {_audience(s.params)}（送信時点の会員に送ります）",
            f"送信件数の見込み（予約したとき）: {s.projected:,} 件",
            *([f"結果: {s.result}"] if s.result else []),
            *([f"キャンペーンID: {s.campaign_id}"] if s.campaign_id else []),
            "本文:",
            *(f"  | {line}" for line in str(s.mail.get("body", "")).splitlines()),
        ]
        say("\n".join(lines))
        return 0
    rows = campaign.scheduled_campaigns(settings, every=args.all)
    if args.json:
        print_json([_as_dict(s) for s in rows])
        return 0
    if not rows:
        say("予約中の配信はありません。")
        return 0
    say("予約ID               送信日時          状態      見込み件数  件名 / 送信先")
    for s in rows:
        label = SCHEDULE_LABELS.get(s.status, s.status)
        say(
            f"{s.schedule_id:<20} {_when(s):<17} {label:<8} {s.projected:>9,}  "
            f"{s.subject} / {_audience(s.params)}"
        )
    return 0


def _cmd_due(args: argparse.Namespace) -> int:
    from datetime import timedelta

    with importing(args):
        from bcartnb import campaign
        from bcartnb.settings import load_settings

    limit = timedelta(hours=args.late_limit_hours)
    outcomes = campaign.run_due(load_settings(), late_limit=limit)
    if args.json:
        print_json(
            [
                {
                    **_as_dict(o.scheduled),
                    "late_seconds": int(o.late.total_seconds()),
                    "summary": o.summary.as_dict() if o.summary else None,
                }
                for o in outcomes
            ]
        )
    for o in outcomes:
        s = o.scheduled
        line = f"予約 {s.schedule_id}（{_when(s)}「{s.subject}」）: {o.message}"
        if o.summary is not None:
            line += f" キャンペーンID: {o.summary.campaign_id}"
        say(line, err=args.json)
        for warning in o.summary.warnings if o.summary else []:
            say(f"注意: {warning}", err=args.json)
    return campaign.due_exit_code(outcomes)


def _hours(text: str) -> float:
    value = float(text)
    if not 0 < value <= 24 * 31:
        raise argparse.ArgumentTypeError(f"{text} (0 < hours <= 744)")
    return value


COMMANDS = (
    Command(
        "schedule",
        help="予約配信の一覧・内容の確認・取消",
        description="予約した配信（bcartnb run キャンペーンファイル --at 日時）を一覧します。"
        "show 予約ID で内容を、cancel 予約ID で取り消します（送信が始まる前まで）。",
        args=(
            arg("action", nargs="?", choices=("show", "cancel"), default=None, help="show|cancel"),
            arg("schedule_id", nargs="?", default=None, metavar="予約ID", help="予約ID"),
            arg("--all", action="store_true", help="送信済み・取消・期限切れも表示します"),
            JSON,
        ),
        run=_cmd_schedule,
    ),
    Command(
        "due",
        help="送信日時が来た予約配信を送ります（cron や systemd で毎分実行）",
        description="送信日時が来た予約配信をそれぞれ一度だけ送ります。同時に2つ動いても"
        "同じ予約は1つだけが送ります。止まっていた機械では遅れて送り（遅れを表示）、"
        "予定から --late-limit-hours（既定 24 時間）を過ぎたものは送らず期限切れにします。",
        args=(
            arg(
                "--late-limit-hours",
                type=_hours,
                default=24.0,
                metavar="時間",
                help="予定からこれ以上遅れたら送らない（既定 24）",
            ),
            JSON,
        ),
        exit_codes=True,
        run=_cmd_due,
    ),
)
