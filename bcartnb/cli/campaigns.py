"""The campaign commands: ``run`` (a dry run unless ``--send``), ``resume``, ``cancel``, and the
send history (``campaigns``, ``report``).

``run``, ``resume`` and ``cancel`` print the campaign's summary and exit with its code: 0
finished and every mail accepted, 4 unfinished (the resume command is said), 5 finished with
mails refused for good, 130 interrupted; a refusal by the quota is exit 3 from
:func:`bcartnb.cli.main`, its summary still on stdout with ``--json``.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bcartnb.cli.common import JSON, Command, arg, importing, switch
from bcartnb.cli.output import (
    jst,
    ledger_line,
    print_json,
    say,
    silence_stdout,
    subject_of,
)
from bcartnb.exceptions import QuotaExceededError
from bcartnb.privacy import mask_address, mask_text

__all__ = ["COMMANDS", "SAMPLE_LINES", "STATUS_LABELS"]


def _print_summary(summary: Any, as_json: bool, sample: Any = None) -> int:
    """The summary, then the exit code a scheduler acts on (0, 4, 5 or 130; see DESIGN).

    The campaign is recorded before a word is printed, so a reader that closed the pipe
    (``| head``) changes nothing but what is shown: the exit code stays the campaign's.
    """
    code: int = summary.exit_code
    try:
        if as_json:
            data = summary.as_dict()
            if summary.dry_run:
                data["sample"] = sample
            print_json(data)
        else:
            say(summary.message())
            if not summary.dry_run:
                say(f"キャンペーンID: {summary.campaign_id}")
            elif sample is None:
                say("送信できる会員がいないため、見本のメールはありません。")
            else:
                say(_format_sample(sample))
            for warning in summary.warnings:
                say(f"注意: {warning}")
            if summary.checks:  # 送信前の確認: warnings about the mail itself, never a refusal
                from bcartnb.mailcheck import format_findings

                who = (
                    f"会員ID {summary.checks_member} のメール"
                    if summary.checks_member
                    else "メール"
                )
                say("\n".join(format_findings(summary.checks, f"送信前の確認（{who}）")))
        sys.stdout.flush()
    except BrokenPipeError:
        silence_stdout()
    if code == 130:
        say(
            f"bcartnb: 中断しました。続きは `{summary.resume_command}` で送れます / interrupted",
            err=True,
        )
    elif code == 4:
        why = summary.stopped_ja or summary.stopped
        say(
            f"bcartnb: 送信はまだ終わっていません（送信済み {summary.sent:,} 件、"
            f"残り {summary.left:,} 件）。続きは `{summary.resume_command}` で送れます"
            + (f"（止まった理由: {' '.join(str(why).split())}）" if why else "")
            + f" / unfinished ({summary.sent} sent, {summary.left} left)",
            err=True,
        )
    elif code == 5:
        say(
            f"bcartnb: 送信は終わりましたが、{summary.failed:,} 件は受信側に拒否されました"
            f"（`bcartnb campaigns {summary.campaign_id}` で一覧を表示します）"
            f" / finished, {summary.failed} mails refused for good",
            err=True,
        )
    return code


#: How many lines of a sample mail's text part a dry run shows.
SAMPLE_LINES = 12


def _format_sample(sample: dict[str, str]) -> str:
    """The dry run's look at one real mail: masked address, subject, the text's first lines."""
    text = sample["text"].splitlines()
    lines = [
        f"見本のメール（会員ID {sample['member_id']}）:",
        f"  宛先: {sample['to']}",
        f"  件名: {sample['subject']}",
        *(f"  | {line}".rstrip() for line in text[:SAMPLE_LINES]),
    ]
    if len(text) > SAMPLE_LINES:
        lines.append(f"  | …（残り {len(text) - SAMPLE_LINES} 行）")
    return "\n".join(lines)


def _cmd_run(args: argparse.Namespace) -> int:
    with importing(args):
        from bcartnb import campaign
        from bcartnb.settings import load_settings

    spec = campaign.load_campaign(args.campaign)
    if args.orders:  # the command line's file wins over the campaign file's ``orders``
        spec = dataclasses.replace(spec, orders=Path(os.path.abspath(args.orders)))
    settings = load_settings()
    if args.at is not None:  # 予約配信: stored now, sent by `bcartnb due`
        from bcartnb.cli.schedule import schedule_at

        return schedule_at(spec, settings, args.at, args.json)
    if args.test_to is not None:
        plan = campaign.plan_campaign(spec, settings)
        mail = campaign.send_test(plan, args.test_to)
        if args.json:
            print_json(
                {
                    "test_to": mail.to,
                    "member_id": int(mail.member_id),
                    "subject": mail.subject,
                    "counted": False,
                }
            )
        else:
            say(
                f"テスト送信しました: {mail.to}"
                f"（会員ID {mail.member_id} の内容。配信数には数えません）"
            )
        return 0
    if not args.send:
        from bcartnb.report import sample_mail

        # the contract: a dry run unless --send, whatever the file says
        result = campaign.run(spec, settings, send=False, repeat=args.repeat)
        summary = result.summary
        if spec.send:
            summary.warnings.append(
                "キャンペーンファイルの send = true は無視しました"
                "（送信するには --send を付けてください）"
            )
        sample = sample_mail(result.plan) if result.plan is not None else None
        return _print_summary(summary, args.json, sample)
    with _summary_on_refusal(args.json):
        summary = campaign.run(
            spec, settings, send=True, repeat=args.repeat, progress=sys.stderr.isatty()
        ).summary
    return _print_summary(summary, args.json)


def _cmd_resume(args: argparse.Namespace) -> int:
    with importing(args):
        from bcartnb import campaign
        from bcartnb.settings import load_settings

    with _summary_on_refusal(args.json):
        summary = campaign.resume(
            args.campaign_id,
            load_settings(),
            resend_uncertain=args.resend_uncertain,
            give_up_deferred=args.give_up_deferred,
            mark_uncertain_sent=args.mark_uncertain_sent,
            drop_uncertain=args.drop_uncertain,
            skip_missing=args.skip_missing,
            progress=sys.stderr.isatty(),
        ).summary
    return _print_summary(summary, args.json)


@contextlib.contextmanager
def _summary_on_refusal(as_json: bool) -> Iterator[None]:
    """A campaign the quota refused still has its summary on stdout with ``--json``; the
    one-line error and exit 3 follow from :func:`main`."""
    try:
        yield
    except QuotaExceededError as err:
        if as_json and err.summary is not None:
            print_json(err.summary)
        raise


def _cmd_cancel(args: argparse.Namespace) -> int:
    from bcartnb import campaign
    from bcartnb.settings import load_settings

    return _print_summary(campaign.cancel(args.campaign_id, load_settings()), args.json)


#: A campaign's status as the send history says it.
STATUS_LABELS = {"sending": "送信中", "unfinished": "送信途中", "done": "完了", "cancelled": "取消"}


def _cmd_campaigns(args: argparse.Namespace) -> int:
    from bcartnb import campaign
    from bcartnb.settings import load_settings, require_ledger

    settings = load_settings()
    db = require_ledger(settings)
    if args.campaign_id is not None:
        return _show_campaign(args.campaign_id, settings, db, args.json)
    frame = campaign.campaign_history(settings)
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
            "withheld": int(r["withheld"]),
            "cancelled": int(r["cancelled"]),
            **campaign.history_results(r),
            "ledger": str(db),
        }
        for _, r in frame.iterrows()
    ]
    if args.json:
        print_json(rows)
        return 0
    if not rows:
        print(f"配信履歴はまだありません（{ledger_line(db)}）。")
        return 0
    print(
        "キャンペーンID               登録日時            状態         送信済み  失敗  残り"
        "  開封率  クリック率"
    )
    for r, (_, full) in zip(rows, frame.iterrows(), strict=True):
        left = sum(int(full[s]) for s in campaign.LEFT_STATES)
        status = STATUS_LABELS.get(r["status"], r["status"])
        opened = campaign.history_rate_text(full["open_rate"])
        clicked = campaign.history_rate_text(full["click_rate"])
        print(
            f"{r['campaign_id']:<28} {r['created_at'][:16].replace('T', ' '):<19} "
            f"{status:<10} {r['sent']:>8,} {r['failed']:>5,} {left:>5,} {opened:>7} {clicked:>10}"
        )
    print("開封率・クリック率は人数で数え、機械のアクセスは含めません（— は計測していません）。")
    print(
        "1件の詳細は bcartnb campaigns キャンペーンID、"
        "開封・クリックは bcartnb results キャンペーンID で表示します。"
    )
    print(ledger_line(db))
    return 0


def _show_campaign(campaign_id: str, settings: Any, db: Any, as_json: bool) -> int:
    """One campaign: its counts, who was refused and why, what is left, how to continue."""
    from bcartnb.audience import REASON_LABELS
    from bcartnb.campaign import DeliverySummary, campaign_outcome

    record, failures, deferred, uncertain, journal = campaign_outcome(settings, campaign_id)
    ended = journal[journal["state"].isin(["cancelled", "withheld"])]
    resume = None
    if record.status == "unfinished":  # not while a live process sends it: resume waits
        pairs = [(r.member_id, r.address) for r in uncertain]
        resume = DeliverySummary.from_record(record, "unfinished", {}, pairs).resume_command
    data: dict[str, Any] = {
        "campaign_id": record.campaign_id,
        "created_at": record.created_at.isoformat(),
        "finished_at": record.finished_at.isoformat() if record.finished_at else None,
        "status": record.status,
        "plan": record.plan,
        "subject": subject_of(record.params),
        "selected": record.selected,
        "sendable": record.sendable,
        "unsendable": record.unsendable,
        "reasons": dict(record.reasons),
        "sent": record.sent,
        "failed": record.failed,
        "pending": record.journal.get("pending", 0) + record.journal.get("sending", 0),
        "deferred": len(deferred),
        "uncertain": len(uncertain),
        "withheld": record.journal.get("withheld", 0),
        "cancelled": record.journal.get("cancelled", 0),
        "admin_copy": mask_address(record.admin_copy) if record.admin_copy else None,
        "failures": [
            {"id": m, "email": mask_address(a), "code": code, "reply": mask_text(reply)}
            for m, a, code, reply in failures
        ],
        "deferred_list": [{"id": r.member_id, "email": mask_address(r.address)} for r in deferred],
        "uncertain_list": [
            {"id": r.member_id, "email": mask_address(r.address)} for r in uncertain
        ],
        "ended_list": [
            {
                "id": int(m),
                "email": mask_address(str(a)),
                "state": str(st),
                "why": "配信停止リストに載ったため送りませんでした" if st == "withheld" else str(w),
            }
            for m, a, st, w in zip(
                ended["member_id"], ended["address"], ended["state"], ended["message"], strict=True
            )
        ],
        "resume_command": resume,
        "ledger": str(db),
    }
    if as_json:
        print_json(data)
        return 0
    lines = [
        f"キャンペーンID: {record.campaign_id}",
        f"登録日時: {jst(data['created_at'])}",
        f"状態: {STATUS_LABELS.get(record.status, record.status)}",
        f"件名: {data['subject'] or '（不明）'}",
        f"対象会員数 {record.selected:,} 件 / 送信件数 {record.sendable:,} 件 / "
        f"送信できない件数 {record.unsendable:,} 件",
        f"送信済み {record.sent:,} 件 / 失敗 {record.failed:,} 件 / 未送信 {data['pending']:,} 件"
        f" / 再試行待ち {len(deferred):,} 件 / 結果不明 {len(uncertain):,} 件"
        + (f" / 配信停止で送らず {data['withheld']:,} 件" if data["withheld"] else "")
        + (f" / 取り消し {data['cancelled']:,} 件" if data["cancelled"] else ""),
    ]
    reasons = [f"{REASON_LABELS.get(k, k)} {n:,}" for k, n in record.reasons.items() if n]
    if reasons:
        lines.append("送信できない理由: " + " / ".join(reasons))
    if data["admin_copy"]:
        lines.append(f"管理者への控え: {data['admin_copy']} に送信済み")
    if failures:
        lines.append("受信側に拒否されたメール（会員ID / メールアドレス / サーバーの返答）:")
        lines += [
            f"  {f['id']}  {f['email']}  {f['code'] or ''} {' '.join(f['reply'].split())}"
            for f in data["failures"]
        ]
    for title, items in (
        ("再試行待ちのメール", data["deferred_list"]),
        ("送信結果が不明なメール（届いている可能性があります）", data["uncertain_list"]),
        ("送らずに終えたメール（理由）", data["ended_list"]),
    ):
        if items:
            lines.append(f"{title}:")
            lines += [
                f"  {i['id']}  {i['email']}" + (f"  {i['why']}" if "why" in i else "")
                for i in items
            ]
    lines.append(ledger_line(db))
    if resume:  # last: what to do next
        lines.append(f"続きを送るには: {resume}")
    say("\n".join(lines))
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from pathlib import Path

    from bcartnb.report import report_target, write_report
    from bcartnb.settings import load_settings

    settings = load_settings()
    # by default in the shop folder's reports/ (made here when missing; git-ignored there and
    # in a checkout), where the notebook writes its page too; with no shop folder, here
    if not args.out and settings.source is not None:
        with contextlib.suppress(OSError):  # if it cannot be made, the write says so
            (settings.source.parent / "reports").mkdir(parents=True, exist_ok=True)
    target = Path(args.out) if args.out else report_target(None, settings, args.campaign_id)
    path = write_report(
        args.campaign_id, settings, target or Path(f"campaign-{args.campaign_id}.html")
    )
    print(f"レポートを書き出しました: {path}")
    return 0


_CAMPAIGN_ID = arg("campaign_id")

COMMANDS = (
    Command(
        "run",
        help="キャンペーンファイルを実行します（--send がなければ確認のみ）",
        description="キャンペーンファイルを実行します。--send を付けない限り確認のみで、"
        "すべてのメールを作成して件数と配信数を確かめ、見本のメールを表示します。"
        "送信途中の同じキャンペーンはその続きを送ります。同じメールを送信済みの会員には、"
        "どのキャンペーン・会員ファイルからでも二度と送りません（もう一度送るには --repeat）。",
        args=(
            arg("campaign", help="キャンペーンの TOML ファイル"),
            switch("--send", "実際に送信します（省略時は確認のみ）", exclusive="how"),
            switch(
                "--repeat",
                "同じメールを送信済みの会員にも、もう一度送ります（送信途中のものがあるときは断ります）",
            ),
            arg(
                "--test-to",
                default=None,
                help="最初の会員のメールを1通だけこのアドレスにテスト送信します（配信数に数えません）",
                exclusive="how",
            ),
            arg(
                "--at",
                default=None,
                metavar="日時",
                help='この日時（日本時間、例: "2026-12-10 09:00"）に送るよう予約します。'
                "送信は bcartnb due（cron や systemd で毎分実行）が行います",
                exclusive="how",
            ),
            arg(
                "--orders",
                default=None,
                help="受注CSV（キャンペーンファイルの orders の代わりに）。"
                "絞込条件で購入履歴の列（最終購入日・顧客グループなど）を使えます",
            ),
            JSON,
        ),
        exit_codes=True,
        run=_cmd_run,
    ),
    Command(
        "resume",
        help="送信途中のキャンペーンの続きを送ります",
        description="送信途中のキャンペーンの続きを送ります。未送信と再試行待ちのメールを送り、"
        "送信済みの会員には二度と送りません。結果不明のメールは --resend-uncertain のときだけ"
        "再送します。",
        args=(
            _CAMPAIGN_ID,
            switch(
                "--resend-uncertain",
                "前回止まったときに送信中だった（結果不明の）メールも再送します",
            ),
            switch(
                "--mark-uncertain-sent",
                "結果不明のメールを、届いたと確かめたものとして送信済みにします（再送しません）",
            ),
            switch("--drop-uncertain", "結果不明のメールを再送しないことにします（取り消し）"),
            switch(
                "--give-up-deferred", "受信側が保留し続けているメールの再送をあきらめ、失敗にします"
            ),
            switch(
                "--skip-missing",
                "会員ファイルにいなくなった（送信できなくなった）会員には送らないことにします",
            ),
            JSON,
        ),
        exit_codes=True,
        run=_cmd_resume,
    ),
    Command(
        "cancel",
        help="送信途中のキャンペーンを取り消します（これ以上は送りません）",
        description="送信途中のキャンペーンの配信を取り消します。未送信と再試行待ちのメールは"
        "送らずに終え、送信済みのメールはそのまま今月の配信数に数えます。",
        args=(_CAMPAIGN_ID, JSON),
        exit_codes=True,
        run=_cmd_cancel,
    ),
    Command(
        "campaigns",
        help="配信履歴、または1件のキャンペーンの詳細を表示します",
        description="配信履歴を表示します。キャンペーンIDを指定すると、その件数、"
        "受信側に拒否されたメール（サーバーの返答つき）、再試行待ちと結果不明のメール、"
        "送信途中なら続きを送るコマンドを表示します。",
        args=(
            arg(
                "campaign_id",
                nargs="?",
                default=None,
                help="詳細を見るキャンペーン",
            ),
            JSON,
        ),
        run=_cmd_campaigns,
    ),
    Command(
        "report",
        help="キャンペーンのレポートをHTMLに書き出す（配信記録から）",
        description="配信記録（ledger）にあるキャンペーンのレポートを、ブラウザで開ける1つのHTML"
        "ファイルに書き出します。メールの例と送信できない会員の一覧は、会員ファイルが残っていれば"
        "記録したパラメータから作り直します。",
        args=(
            arg("campaign_id", help="キャンペーンID（bcartnb campaigns で確認）"),
            arg(
                "--out",
                default=None,
                help="書き出し先（既定: お店のフォルダーの reports/campaign-キャンペーンID.html。"
                "お店のフォルダーの外では今のフォルダー）",
            ),
        ),
        run=_cmd_report,
    ),
)
