"""``bcartnb members``: who in a member file can be sent to, and why the others cannot."""

from __future__ import annotations

import argparse
import json
import re
from typing import Any

from bcartnb.cli.common import JSON, Command, arg, switch
from bcartnb.cli.output import print_json, say
from bcartnb.privacy import mask_address

__all__ = ["MEMBERS"]


def _cmd_members(args: argparse.Namespace) -> int:
    from bcartnb.audience import REASON_LABELS, build_audience, format_summary
    from bcartnb.campaign import read_notes, suppressed_addresses
    from bcartnb.members import read_members
    from bcartnb.settings import load_settings

    flt = _filter(args.filter)
    checked = _checked(args.checked)
    members = read_members(args.members)
    # a custom field renamed, a standard column misnamed, a filter value no member holds
    for note in read_notes(members, flt):
        say(f"注意: {note}", err=True)
    settings = load_settings()
    audience = build_audience(
        members, flt, checked, args.opt_in_only, suppressed_addresses(settings)
    )
    if settings.legacy_ledger is not None:  # the list came from there (see suppressed_addresses)
        say(
            f"注意: 以前の配信記録 {settings.legacy_ledger} はまだお店に取り込まれていません"
            "（bcartnb init --adopt-ledger）。配信停止・不達は、取り込む予定のその記録から"
            f"数えました / suppressions read from the per-user ledger {settings.legacy_ledger},"
            " not adopted yet",
            err=True,
        )
    excluded: list[dict[str, Any]] = [
        {
            "id": int(row["id"]),
            "email": mask_address(str(row["email"])) if _present(row["email"]) else "",
            "reason": str(row["reason"]),
        }
        for _, row in audience.unsendable.iterrows()
    ]
    if args.json:
        data = audience.summary()
        if args.list:
            data["excluded"] = excluded
        print_json(data)
        return 0
    say(format_summary(audience))
    if args.list:
        say()
        if not excluded:
            say("送信できない会員はいません。")
        else:
            say("送信できない会員（会員ID / メールアドレス / 理由）:")
            for e in excluded:
                address = e["email"] or "（空欄）"
                say(f"  {e['id']}  {address}  {REASON_LABELS.get(e['reason'], e['reason'])}")
    return 0


def _filter(text: str | None) -> Any:
    """``--filter``: a JSON object, or None."""
    from bcartnb.exceptions import FilterError

    if text is None:
        return None
    try:
        flt = json.loads(text)
    except json.JSONDecodeError as err:
        raise FilterError(
            f"--filter is not valid JSON: {err}",
            ja='--filter の JSON が読めません。{"pref": "東京都"} のように書いてください。',
        ) from err
    if not isinstance(flt, dict):
        raise FilterError(
            f'--filter must be a JSON object such as {{"pref": "東京都"}}, not {text!r}',
            ja='--filter は {"pref": "東京都"} のような { } で囲んだ JSON で指定してください'
            f"（{text!r} ではなく）。",
        )
    return flt


def _checked(text: str | None) -> list[int] | None:
    """``--checked``: member ids separated by commas, or None."""
    from bcartnb.exceptions import SelectionError

    if text is None:
        return None
    items = [item.strip() for item in text.split(",")]
    if not any(items):
        raise SelectionError(
            "--checked is empty: give member ids such as 1001,1002",
            ja="--checked が空です。1001,1002 のように会員IDを指定してください。",
        )
    bad = [item for item in items if not re.fullmatch(r"[0-9]{1,18}", item)]
    if bad:
        raise SelectionError(
            f"--checked: {bad[0]!r} is not a member id (a whole number)",
            ja=f"--checked の「{bad[0]}」は会員ID（整数）ではありません。",
        )
    return [int(item) for item in items]


def _present(value: Any) -> bool:
    import pandas as pd

    return not (value is None or value is pd.NA or (isinstance(value, float) and value != value))


MEMBERS = Command(
    "members",
    help="会員CSVを読み、送信できる会員とできない会員を数えます",
    description="会員CSVを読み、絞込条件で選んだ会員のうち送信できる件数と、"
    "送信できない件数をその理由ごとに表示します。",
    args=(
        arg(
            "members",
            help="Bカートの会員CSV（Shift_JIS・UTF-8）、"
            "または bcart pull のスナップショット（.parquet）",
        ),
        arg(
            "--filter",
            default=None,
            metavar="JSON",
            help='絞込条件（JSON）。例: {"pref": "東京都"}',
        ),
        arg(
            "--checked",
            default=None,
            help="チェックした会員に送信: 会員IDをカンマ区切りで",
        ),
        switch("--opt-in-only", "メール案内「受け取る」の会員のみ"),
        switch("--list", "送信できない会員を一人ずつ理由とともに表示します"),
        JSON,
    ),
    run=_cmd_members,
)
