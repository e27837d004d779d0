"""The ``bcartnb`` command: parse, call the package, print. No business logic lives here.

Every :class:`~bcartnb.exceptions.BcartnbError` becomes one line on stderr (its Japanese
explanation first, when it has one, then the exact detail) and its exit code: 2 bad input or
settings, 3 quota refused, both before anything was sent. ``run`` and ``resume`` exit with
their summary's code once something may have gone out: 0 finished and every mail accepted,
4 unfinished (the resume command is printed), 5 finished with mails refused for good, 130
interrupted. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from bcartnb import __version__
from bcartnb.exceptions import BcartnbError
from bcartnb.ledger.schema import SUPPRESSION_REASONS

__all__ = ["main"]


def _print_json(data: Any) -> None:
    print(json.dumps(data, ensure_ascii=False, indent=2, default=str))


# --- subcommands -------------------------------------------------------------------------
# Each handler takes the parsed arguments and returns the exit code.


def _cmd_members(args: argparse.Namespace) -> int:
    import re

    from bcartnb.audience import build_audience, format_summary
    from bcartnb.exceptions import FilterError, SelectionError
    from bcartnb.members import read_members

    flt = None
    if args.filter is not None:
        try:
            flt = json.loads(args.filter)
        except json.JSONDecodeError as err:
            raise FilterError(f"--filter is not valid JSON: {err}") from err
        if not isinstance(flt, dict):
            raise FilterError(
                f'--filter must be a JSON object such as {{"pref": "東京都"}}, not {args.filter!r}'
            )
    checked = None
    if args.checked is not None:
        items = [item.strip() for item in args.checked.split(",")]
        if not any(items):
            raise SelectionError("--checked is empty: give member ids such as 1001,1002")
        bad = [item for item in items if not re.fullmatch(r"[0-9]{1,18}", item)]
        if bad:
            raise SelectionError(f"--checked: {bad[0]!r} is not a member id (a whole number)")
        checked = [int(item) for item in items]
    from bcartnb.campaign import suppressed_addresses
    from bcartnb.settings import load_settings

    audience = build_audience(
        read_members(args.members),
        flt,
        checked,
        args.opt_in_only,
        suppressed_addresses(load_settings()),
    )
    if args.json:
        _print_json(audience.summary())
    else:
        print(format_summary(audience))
    return 0


def _cmd_quota(args: argparse.Namespace) -> int:
    from bcartnb.exceptions import SettingsError
    from bcartnb.ledger import Ledger
    from bcartnb.quota import PLANS, month_of, now_tokyo, parse_month, resolve_plan
    from bcartnb.settings import load_settings

    settings = load_settings()
    if not settings.plan:
        names = ", ".join(p.name for p in PLANS)
        raise SettingsError(
            f'no plan set: put plan = "プラン10" in bcartnb.toml or set BCARTNB_PLAN ({names})'
        )
    plan = resolve_plan(settings.plan)
    this_month = month_of(now_tokyo())
    month = parse_month(args.month) if args.month else this_month
    with Ledger.open(settings.db) as ledger:
        status = ledger.usage(plan, month)
        per_campaign = ledger.usage_by_campaign(month)
    if args.json:
        campaigns = [{"campaign_id": cid, "used": n} for cid, n in per_campaign.items()]
        _print_json({**status.as_dict(), "reserved": status.reserved, "campaigns": campaigns})
        return 0

    def count(n: int | None) -> str:
        return "上限なし" if n is None else f"{n:,}通"

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
    if per_campaign:
        lines.append("キャンペーン別の送信数:")
        lines += [f"  {cid}: {count(n)}" for cid, n in per_campaign.items()]
    print("\n".join(lines))
    return 0


def _print_summary(summary: Any, as_json: bool) -> int:
    """The summary, then the exit code a scheduler acts on (0, 4, 5 or 130; see DESIGN).

    The campaign is recorded before a word is printed, so a reader that closed the pipe
    (``| head``) changes nothing but what is shown: the exit code stays the campaign's.
    """
    code: int = summary.exit_code
    try:
        if as_json:
            _print_json(summary.as_dict())
        else:
            print(summary.message())
            for warning in summary.warnings:
                print(f"注意: {warning}")
        sys.stdout.flush()
    except BrokenPipeError:
        _silence_stdout()
    if code == 130:
        print(f"bcartnb: interrupted: `{summary.resume_command}` continues", file=sys.stderr)
    elif code == 4:
        why = f": {summary.stopped}" if summary.stopped else ""
        print(
            f"bcartnb: unfinished ({summary.sent} sent, {summary.left} left){why}; "
            f"`{summary.resume_command}` continues",
            file=sys.stderr,
        )
    elif code == 5:
        print(
            f"bcartnb: finished, but {summary.failed} mails were refused for good "
            "(listed in the summary)",
            file=sys.stderr,
        )
    return code


def _cmd_run(args: argparse.Namespace) -> int:
    from bcartnb import campaign
    from bcartnb.settings import load_settings

    spec = campaign.load_campaign(args.campaign)
    settings = load_settings()
    if args.test_to is not None:
        plan = campaign.plan_campaign(spec, settings)
        mail = campaign.send_test(plan, args.test_to)
        if args.json:
            _print_json(
                {
                    "test_to": mail.to,
                    "member_id": int(mail.member_id),
                    "subject": mail.subject,
                    "counted": False,
                }
            )
        else:
            print(
                f"テスト送信しました: {mail.to}"
                f"（会員ID {mail.member_id} の内容。配信数には数えません）"
            )
        return 0
    if not args.send:
        # the contract: a dry run unless --send, whatever the file says
        summary = campaign.run(spec, settings, send=False).summary
        if spec.send:
            summary.warnings.append(
                "キャンペーンファイルの send = true は無視しました"
                "（送信するには --send を付けてください）"
            )
        return _print_summary(summary, args.json)
    summary = campaign.run(
        spec, settings, send=True, repeat=args.repeat, progress=sys.stderr.isatty()
    ).summary
    return _print_summary(summary, args.json)


def _cmd_resume(args: argparse.Namespace) -> int:
    from bcartnb import campaign
    from bcartnb.settings import load_settings

    summary = campaign.resume(
        args.campaign_id,
        load_settings(),
        resend_uncertain=args.resend_uncertain,
        progress=sys.stderr.isatty(),
    ).summary
    return _print_summary(summary, args.json)


def _cmd_campaigns(args: argparse.Namespace) -> int:
    from bcartnb.ledger import Ledger
    from bcartnb.ledger.campaigns import LEFT_STATES
    from bcartnb.settings import load_settings

    settings = load_settings()
    with Ledger.open(settings.db) as ledger:
        ledger.reclaim()  # a crashed run shows as interrupted, not as sending forever
        frame = ledger.campaigns()
    rows = [
        {
            "campaign_id": str(r["campaign_id"]),
            "created_at": r["created_at"].isoformat(),
            "status": str(r["status"]),
            "sent": int(r["sent"]),
            "failed": int(r["failed"]),
            "deferred": int(r["deferred"]),
            "uncertain": int(r["uncertain"]),
            "pending": int(r["pending"]),
        }
        for _, r in frame.iterrows()
    ]
    if args.json:
        _print_json(rows)
        return 0
    if not rows:
        print("配信履歴はまだありません。")
        return 0
    labels = {"sending": "送信中", "unfinished": "送信途中", "done": "完了", "cancelled": "取消"}
    print("キャンペーンID               登録日時            状態         送信済み  失敗  残り")
    for r, (_, full) in zip(rows, frame.iterrows(), strict=True):
        left = sum(int(full[s]) for s in LEFT_STATES)
        status = labels.get(r["status"], r["status"])
        print(
            f"{r['campaign_id']:<28} {r['created_at'][:16].replace('T', ' '):<19} "
            f"{status:<10} {r['sent']:>8,} {r['failed']:>5,} {left:>5,}"
        )
    return 0


def _cmd_segments(args: argparse.Namespace) -> int:
    """セグメント: list the saved filters; ``--save NAME --filter JSON`` and ``--delete NAME``."""
    from bcartnb.exceptions import FilterError
    from bcartnb.filters import describe_filter
    from bcartnb.segments import SegmentStore
    from bcartnb.settings import load_settings

    store = SegmentStore(load_settings().segments)
    if args.save is not None:
        try:
            flt = json.loads(args.filter or "")
        except json.JSONDecodeError as err:
            raise FilterError(
                f"--filter is not valid JSON: {err}",
                ja='--filter には JSON の絞込条件を指定してください（例: {"pref": "東京都"}）。',
            ) from err
        name = store.save(args.save, flt, overwrite=args.overwrite)
        print(f"セグメント「{name}」を保存しました: {store.path}")
        return 0
    if args.delete is not None:
        store.delete(args.delete)
        print(f"セグメント「{args.delete}」を削除しました: {store.path}")
        return 0
    segments = store.all()
    if args.json:
        _print_json(
            [
                {"name": n, "filter": e["filter"], "saved_at": e["saved_at"]}
                for n, e in segments.items()
            ]
        )
    elif not segments:
        print(f"保存したセグメントはまだありません（{store.path}）。")
    else:
        for name, entry in segments.items():
            print(f"{name}: {describe_filter(entry['filter'])}")
    return 0


def _cmd_sink(args: argparse.Namespace) -> int:
    from pathlib import Path

    from bcartnb.sink import Sink
    from bcartnb.transports import StoredMail

    def on_message(mail: StoredMail) -> None:
        name = mail.path.name if mail.path else "?"
        print(
            f"受信 received: {mail.envelope_from} → {', '.join(mail.recipients)} ({name})",
            flush=True,
        )

    def ready(sink: Sink) -> None:
        print(f"SMTPサーバーを起動しました listening on {sink.address}")
        print(f"メールの保存先 Maildir: {sink.maildir.resolve()}")
        print("Ctrl-C で停止します / press Ctrl-C to stop", flush=True)

    sink = Sink(Path(args.maildir), host=args.host, port=args.port, on_message=on_message)
    sink.serve_forever(ready=ready)
    print(f"停止しました stopped ({sink.received} 通受信 received)")
    return 0


def _cmd_suppressions(args: argparse.Namespace) -> int:
    from bcartnb.hygiene.export import export_bcart_csv
    from bcartnb.ledger import Ledger
    from bcartnb.members import read_members

    with Ledger.open() as ledger:
        listed = ledger.suppressions()
    if args.export_bcart is not None:
        members = read_members(args.members) if args.members else None
        done = export_bcart_csv(listed, args.export_bcart, members=members)
        print(
            f"B-Cart 用の会員CSVを書き出しました: {done.path}"
            f"（{len(done.member_ids):,} 件、メール案内 = 受け取らない）"
        )
        if done.without_id:
            print(
                f"注意: 会員IDがわからないアドレス {len(done.without_id):,} 件は書き出していません"
                "（--members で会員ファイルを指定すると探します）",
                file=sys.stderr,
            )
        return 0
    if args.json:
        _print_json([s.to_dict() for s in listed])
        return 0
    if not listed:
        print("配信停止リストは空です。")
        return 0
    from bcartnb.delivery.summary import mask_address

    print(f"配信停止リスト: {len(listed):,} 件")
    for s in listed:
        who = f" 会員ID {s.member_id}" if s.member_id is not None else ""
        print(f"  {mask_address(s.address)}  {s.label}  {s.since:%Y-%m-%d}から {s.count:,} 回{who}")
    return 0


def _cmd_suppress(args: argparse.Namespace) -> int:
    from bcartnb.ledger import Ledger

    with Ledger.open() as ledger:
        new = ledger.suppress(args.address, args.reason, source="cli", member_id=args.member_id)
        row = ledger.suppression(args.address)
    assert row is not None
    if new:
        print(f"配信停止リストに追加しました: {row.address}（{row.label}）")
    else:
        print(f"すでに配信停止リストにあります: {row.address}（{row.label}、{row.count:,} 回）")
    return 0


def _cmd_unsuppress(args: argparse.Namespace) -> int:
    from bcartnb.ledger import Ledger, normalize_address

    with Ledger.open() as ledger:
        gone = ledger.unsuppress(args.address)
    address = normalize_address(args.address)
    if gone:
        print(f"配信停止リストから外しました: {address}")
    else:
        print(f"配信停止リストにありません（変更なし）: {address}")
    return 0


# --- parser ------------------------------------------------------------------------------


EXIT_CODES_HELP = (
    "exit codes: 0 finished, every mail accepted; 2 bad input or settings (nothing sent); "
    "3 refused by the quota (nothing sent); 4 unfinished (resume it); 5 finished, some mails "
    "refused for good; 130 interrupted"
)


class _Parser(argparse.ArgumentParser):
    """argparse exits 2 on bad usage already; keep its message to one line."""

    def error(self, message: str) -> Any:
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="bcartnb", description="B-Cart member mail: filter, compose, send.")
    parser.add_argument("--version", action="version", version=f"bcartnb {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("members", help="read a member CSV and show who can be mailed")
    p.add_argument("members", help="B-Cart member CSV (CP932, UTF-8 or UTF-8 with BOM)")
    p.add_argument("--filter", default=None, help='filter as JSON, e.g. {"pref": "東京都"}')
    p.add_argument("--checked", default=None, help="comma-separated member ids (チェックした会員)")
    p.add_argument("--opt-in-only", action="store_true", help="only メール案内=受け取る")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_cmd_members)

    p = sub.add_parser("quota", help="this month's cap, usage and what is left")
    p.add_argument("--month", default=None, help="YYYY-MM (default: this month in Asia/Tokyo)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_quota)

    p = sub.add_parser(
        "run",
        help="run a campaign file (a dry run unless --send)",
        description="Run a campaign file: a dry run unless --send. Sending the same campaign "
        "again continues it while it is unfinished and is refused once it is finished "
        "(--repeat sends it again on purpose).",
        epilog=EXIT_CODES_HELP,
    )
    p.add_argument("campaign", help="campaign TOML file")
    how = p.add_mutually_exclusive_group()
    how.add_argument("--send", action="store_true", help="really send (default: dry run)")
    p.add_argument(
        "--repeat",
        action="store_true",
        help="send again a campaign that already went out (only once it is finished)",
    )
    how.add_argument(
        "--test-to",
        metavar="ADDRESS",
        default=None,
        help="send one test mail (the first member's) to ADDRESS; not counted in the quota",
    )
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_run)

    p = sub.add_parser(
        "resume",
        help="continue an unfinished campaign",
        description="Continue an unfinished campaign: pending and deferred mails go out, sent "
        "ones never again; uncertain ones only with --resend-uncertain.",
        epilog=EXIT_CODES_HELP,
    )
    p.add_argument("campaign_id")
    p.add_argument(
        "--resend-uncertain",
        action="store_true",
        help="also resend the mails that were in flight when the last run stopped",
    )
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_resume)

    p = sub.add_parser("campaigns", help="the send history")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_campaigns)

    p = sub.add_parser("segments", help="saved filters (セグメント): list, --save, --delete")
    p.add_argument("--save", metavar="NAME", default=None, help="save --filter under NAME")
    p.add_argument("--filter", default=None, help='with --save: JSON, e.g. {"pref": "東京都"}')
    p.add_argument("--overwrite", action="store_true", help="with --save: replace NAME")
    p.add_argument("--delete", metavar="NAME", default=None, help="delete the segment NAME")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_segments)

    p = sub.add_parser(
        "suppressions",
        help="配信停止リスト（不達・配信停止・苦情）を表示、または B-Cart 用CSVに書き出す",
    )
    p.add_argument("--json", action="store_true", help="JSON で出力")
    p.add_argument(
        "--export-bcart",
        metavar="FILE.csv",
        default=None,
        help="B-Cart の会員インポート用CSV（会員ID, メール案内 = 受け取らない）を書き出す",
    )
    p.add_argument(
        "--members",
        metavar="MEMBERS.csv",
        default=None,
        help="会員IDのわからないアドレスを、この会員ファイルで探す（--export-bcart と使う）",
    )
    p.set_defaults(func=_cmd_suppressions)

    p = sub.add_parser("suppress", help="アドレスを配信停止リストに追加する")
    p.add_argument("address", help="メールアドレス")
    p.add_argument(
        "--reason",
        default="manual",
        choices=SUPPRESSION_REASONS,
        help="理由（既定: manual）",
    )
    p.add_argument("--member-id", type=int, default=None, help="会員ID（わかれば）")
    p.set_defaults(func=_cmd_suppress)

    p = sub.add_parser("unsuppress", help="アドレスを配信停止リストから外す")
    p.add_argument("address", help="メールアドレス")
    p.set_defaults(func=_cmd_unsuppress)

    p = sub.add_parser("sink", help="run the embedded SMTP sink that stores mail in a Maildir")
    p.add_argument("--port", type=int, default=8025)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--maildir", default="maildir")
    p.set_defaults(func=_cmd_sink)
    return parser


def _silence_stdout() -> None:
    """The reader closed the pipe: drop the rest of our output instead of a traceback."""
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args.func(args)
        sys.stdout.flush()
    except BrokenPipeError:
        _silence_stdout()
        return 0
    except BcartnbError as err:
        # Japanese first (what the shop's staff read), then the exact detail, on one line
        ja = f"{err.heading}: {err.ja}" if err.ja else err.heading
        line = " ".join(f"{ja} / {err}".split())
        print(f"bcartnb: error: {line}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("bcartnb: interrupted", file=sys.stderr)
        return 130
    return code


def entry() -> NoReturn:
    """The ``bcartnb`` command: :func:`main`, then leave without tearing Python down.

    By then everything we opened is closed (ledger, spool, connections) and we flush the
    output here; the interpreter's own shutdown, freeing pandas, NumPy and Arrow module by
    module, would only add a tenth of a second to every command.
    """
    code = main()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):  # a closed pipe must not change the exit code
            stream.flush()
    os._exit(code)


if __name__ == "__main__":  # pragma: no cover
    entry()
