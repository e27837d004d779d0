"""``bcartnb members``: who in a member file can be sent to, and why the others cannot."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
from typing import Any

from bcartnb.cli.common import JSON, Command, arg, switch
from bcartnb.cli.output import print_json, say
from bcartnb.privacy import mask_address

__all__ = ["MEMBERS"]


def _cmd_members(args: argparse.Namespace) -> int:
    from bcartnb.audience import REASON_LABELS, build_audience, format_summary
    from bcartnb.members import read_members

    flt = _filter(args.filter)
    checked = _checked(args.checked)
    _returning_arrow_pool()
    members = read_members(args.members)
    # imported once the members are read: reading is the process's peak, the ledger's and
    # the settings' modules (12 MB) need not be part of it
    from bcartnb.campaign import (
        check_results_filter,
        members_with_orders,
        members_with_results,
        read_notes,
        suppressed_addresses,
    )
    from bcartnb.settings import load_settings

    settings = load_settings()
    if args.orders:
        members = members_with_orders(members, args.orders, settings)
    if args.results:  # 配信・開封・クリック of a sent campaign, as columns the filter takes
        members = members_with_results(members, args.results, settings)
        check_results_filter(members, flt)
    members = _columns_read(members, flt)  # the rest let go (of a million members, 220 MB)
    # a custom field renamed, a standard column misnamed, a filter value no member holds
    for note in read_notes(members, flt):
        say(f"注意: {note}", err=True)
    audience = build_audience(
        members,
        flt,
        checked,
        args.opt_in_only,
        suppressed_addresses(settings),
    )
    if settings.legacy_ledger is not None:  # the list came from there (see suppressed_addresses)
        say(
            f"注意: 以前の配信記録 {settings.legacy_ledger} はまだお店に取り込まれていません"
            "（bcartnb init --adopt-ledger）。配信停止・不達は、取り込む予定のその記録から"
            "数えました。",
            err=True,
        )
    if args.json:
        data = audience.summary()
        if args.list:
            data["excluded"] = _excluded(audience.unsendable)
        print_json(data)
        return 0
    say(format_summary(audience))
    if args.list:
        excluded = _excluded(audience.unsendable)
        say()
        if not excluded:
            say("送信できない会員はいません。")
        else:
            say("送信できない会員（会員ID / メールアドレス / 理由）:")
            for e in excluded:
                address = e["email"] or "（空欄）"
                say(f"  {e['id']}  {address}  {REASON_LABELS.get(e['reason'], e['reason'])}")
    return 0


def _returning_arrow_pool() -> None:
    """Arrow's jemalloc pool for this process, unless ARROW_DEFAULT_MEMORY_POOL says otherwise.

    Reading a million members parses 300 MB of cells and frees as much again (the file's text,
    Arrow's 32-bit offsets); the default mimalloc pool kept what was freed, and the process
    peaked at 956 MB instead of 818 (issue 24's target is 800). A command is a process of
    its own, so the choice is made here, not in the library a notebook imports.
    """
    import pyarrow as pa  # type: ignore[import-untyped]

    if "ARROW_DEFAULT_MEMORY_POOL" in os.environ:
        return
    with contextlib.suppress(NotImplementedError):  # a build without jemalloc
        pa.set_memory_pool(pa.jemalloc_memory_pool())
        pa.jemalloc_set_decay_ms(0)  # what is freed goes back at once, not ten seconds later


def _columns_read(members: Any, flt: Any) -> Any:
    """The member columns this command reads: ids, addresses, メール案内 and what the filter
    names (a bad filter is refused here as build_audience would refuse it). The audience copies
    every column of the members it sorts, and on a million members the rest was 300 MB and a
    second that nothing here shows; the caller lets the whole frame go for these, so that the
    other columns' text is not held while the audience is sorted."""
    from bcartnb.filters import validate_filter

    read = {"id", "email", "mm_flag", *(cond.column for cond in validate_filter(flt, members))}
    return members[[name for name in members.columns if name in read]]


def _excluded(unsendable: Any) -> list[dict[str, Any]]:
    """``--list``: each unsendable member's id, masked address and reason, built only when
    asked for (a million members can have a hundred thousand unsendable), from three
    columns: ``iterrows`` made a Series per row and deep-copied the frame's ``attrs`` into each."""
    ids = unsendable["id"].tolist()
    emails = unsendable["email"].tolist()
    reasons = unsendable["reason"].tolist()
    return [
        {
            "id": int(member_id),
            "email": mask_address(str(email)) if _present(email) else "",
            "reason": str(reason),
        }
        for member_id, email, reason in zip(ids, emails, reasons, strict=True)
    ]


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
        arg(
            "--orders",
            default=None,
            help="受注CSV（受注一覧のエクスポート）。購入履歴の列（最終購入日・購入商品・"
            "顧客グループなど）で絞り込めます",
        ),
        arg(
            "--results",
            default=None,
            help="送信したキャンペーンのID。その配信結果の列（配信・開封・クリック）で絞り込めます。"
            "例: --results キャンペーンID --filter '{\"開封\": false}'（開封しなかった会員）",
        ),
        switch("--opt-in-only", "メール案内「受け取る」の会員のみ"),
        switch("--list", "送信できない会員を一人ずつ理由とともに表示します"),
        JSON,
    ),
    run=_cmd_members,
)
