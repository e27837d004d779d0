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
import re
import sys
from collections.abc import Iterator, Sequence
from typing import Any, NoReturn

from bcartnb import __version__
from bcartnb.exceptions import BcartnbError, QuotaExceededError, UsageError
from bcartnb.ledger.schema import SUPPRESSION_REASONS

__all__ = ["main"]


def _print_json(data: Any) -> None:
    print(json.dumps(data, ensure_ascii=False, indent=2, default=str))


#: Control characters other than line breaks and tabs (C0, DEL, C1): a member's 会社名, a
#: subject or a server's reply holding ESC [ 2 J must not clear or restyle the terminal.
_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def _shown(text: str) -> str:
    """Text from members, templates and servers, fit for a terminal: controls as ``\\x1b``."""
    return _CONTROLS.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def _say(text: str = "", *, err: bool = False, flush: bool = False) -> None:
    print(_shown(text), file=sys.stderr if err else sys.stdout, flush=flush)


# --- subcommands -------------------------------------------------------------------------
# Each handler takes the parsed arguments and returns the exit code.


def _cmd_members(args: argparse.Namespace) -> int:
    from bcartnb.audience import REASON_LABELS, build_audience, format_summary
    from bcartnb.delivery import mask_address
    from bcartnb.exceptions import FilterError, SelectionError
    from bcartnb.members import read_members

    flt = None
    if args.filter is not None:
        try:
            flt = json.loads(args.filter)
        except json.JSONDecodeError as err:
            raise FilterError(
                f"--filter is not valid JSON: {err}",
                ja='--filter の JSON が読めません。{"pref": "東京都"} のように書いてください。',
            ) from err
        if not isinstance(flt, dict):
            raise FilterError(
                f'--filter must be a JSON object such as {{"pref": "東京都"}}, not {args.filter!r}',
                ja='--filter は {"pref": "東京都"} のような { } で囲んだ JSON で指定してください。',
            )
    checked = None
    if args.checked is not None:
        items = [item.strip() for item in args.checked.split(",")]
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
        checked = [int(item) for item in items]
    from bcartnb.campaign import suppressed_addresses
    from bcartnb.settings import load_settings

    members = read_members(args.members)
    for note in members.attrs.get("warnings", []):  # a custom field read under a new name
        print(f"注意: {note}", file=sys.stderr)
    audience = build_audience(
        members,
        flt,
        checked,
        args.opt_in_only,
        suppressed_addresses(load_settings()),
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
        _print_json(data)
        return 0
    _say(format_summary(audience))
    if args.list:
        _say()
        if not excluded:
            _say("送信できない会員はいません。")
        else:
            _say("送信できない会員（会員ID / メールアドレス / 理由）:")
            for e in excluded:
                address = e["email"] or "（空欄）"
                _say(f"  {e['id']}  {address}  {REASON_LABELS.get(e['reason'], e['reason'])}")
    return 0


def _present(value: Any) -> bool:
    import pandas as pd

    return not (value is None or value is pd.NA or (isinstance(value, float) and value != value))


def _cmd_quota(args: argparse.Namespace) -> int:
    from bcartnb.exceptions import CampaignStateError
    from bcartnb.ledger import Ledger
    from bcartnb.quota import month_of, now_tokyo, parse_month
    from bcartnb.settings import load_settings, require_ledger, require_plan

    settings = load_settings()
    plan = require_plan(settings)
    this_month = month_of(now_tokyo())
    month = parse_month(args.month) if args.month else this_month
    campaigns: list[dict[str, Any]] = []
    db = require_ledger(settings)
    with Ledger.open(db) as ledger:
        status = ledger.usage(plan, month)
        for cid, n in ledger.usage_by_campaign(month).items():
            entry: dict[str, Any] = {"campaign_id": cid, "used": n, "created_at": None}
            entry["subject"] = None
            with contextlib.suppress(CampaignStateError):
                record = ledger.campaign(cid)
                entry["created_at"] = record.created_at.isoformat()
                entry["subject"] = _subject_of(record.params) or None
            campaigns.append(entry)
    if args.json:
        _print_json(
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
            when = _jst(c["created_at"]) if c["created_at"] else "----------------"
            lines.append(
                f"  {when}  {count(c['used']):>9}  {c['subject'] or '（件名不明）'}"
                f"  {c['campaign_id']}"
            )
    lines.append(_ledger_line(db))
    _say("\n".join(lines))
    return 0


def _ledger_line(db: Any) -> str:
    """Where the shop's records are, said by the commands that read them."""
    return f"配信記録ファイル: {db}"


def _subject_of(params: dict[str, Any]) -> str:
    """A campaign's subject as written (merge fields unrendered), else its template's name."""
    if params.get("subject"):
        return " ".join(str(params["subject"]).split())
    if params.get("template"):
        return f"テンプレート「{params['template']}」"
    return ""


def _jst(iso: str) -> str:
    """``2026-11-20T10:00:00+09:00`` → ``2026-11-20 10:00`` in Asia/Tokyo."""
    from datetime import datetime

    from bcartnb.quota import TOKYO

    return datetime.fromisoformat(iso).astimezone(TOKYO).strftime("%Y-%m-%d %H:%M")


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
            _print_json(data)
        else:
            _say(summary.message())
            if not summary.dry_run:
                _say(f"キャンペーンID: {summary.campaign_id}")
            elif sample is None:
                _say("送信できる会員がいないため、見本のメールはありません。")
            else:
                _say(_format_sample(sample))
            for warning in summary.warnings:
                _say(f"注意: {warning}")
            if summary.checks:  # 送信前の確認: warnings about the mail itself, never a refusal
                from bcartnb.mailcheck import format_findings

                who = (
                    f"会員ID {summary.checks_member} のメール"
                    if summary.checks_member
                    else "メール"
                )
                _say("\n".join(format_findings(summary.checks, f"送信前の確認（{who}）")))
        sys.stdout.flush()
    except BrokenPipeError:
        _silence_stdout()
    if code == 130:
        _say(
            f"bcartnb: 中断しました。続きは `{summary.resume_command}` で送れます / interrupted",
            err=True,
        )
    elif code == 4:
        why = summary.stopped_ja or summary.stopped
        _say(
            f"bcartnb: 送信はまだ終わっていません（送信済み {summary.sent:,} 件、"
            f"残り {summary.left:,} 件）。続きは `{summary.resume_command}` で送れます"
            + (f"（止まった理由: {' '.join(str(why).split())}）" if why else "")
            + f" / unfinished ({summary.sent} sent, {summary.left} left)",
            err=True,
        )
    elif code == 5:
        _say(
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
            _say(
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
            _print_json(err.summary)
        raise


def _cmd_cancel(args: argparse.Namespace) -> int:
    from bcartnb import campaign
    from bcartnb.settings import load_settings

    return _print_summary(campaign.cancel(args.campaign_id, load_settings()), args.json)


#: A campaign's status as the send history says it.
STATUS_LABELS = {"sending": "送信中", "unfinished": "送信途中", "done": "完了", "cancelled": "取消"}


def _cmd_campaigns(args: argparse.Namespace) -> int:
    from bcartnb.ledger import Ledger
    from bcartnb.ledger.campaigns import LEFT_STATES
    from bcartnb.settings import load_settings, require_ledger

    db = require_ledger(load_settings())
    if args.campaign_id is not None:
        return _show_campaign(args.campaign_id, db, args.json)
    with Ledger.open(db) as ledger:
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
            "withheld": int(r["withheld"]),
            "cancelled": int(r["cancelled"]),
            "ledger": str(db),
        }
        for _, r in frame.iterrows()
    ]
    if args.json:
        _print_json(rows)
        return 0
    if not rows:
        print(f"配信履歴はまだありません（{_ledger_line(db)}）。")
        return 0
    print("キャンペーンID               登録日時            状態         送信済み  失敗  残り")
    for r, (_, full) in zip(rows, frame.iterrows(), strict=True):
        left = sum(int(full[s]) for s in LEFT_STATES)
        status = STATUS_LABELS.get(r["status"], r["status"])
        print(
            f"{r['campaign_id']:<28} {r['created_at'][:16].replace('T', ' '):<19} "
            f"{status:<10} {r['sent']:>8,} {r['failed']:>5,} {left:>5,}"
        )
    print("1件の詳細は bcartnb campaigns キャンペーンID で表示します。")
    print(_ledger_line(db))
    return 0


def _show_campaign(campaign_id: str, db: Any, as_json: bool) -> int:
    """One campaign: its counts, who was refused and why, what is left, how to continue."""
    from bcartnb.audience import REASON_LABELS
    from bcartnb.delivery import DeliverySummary, mask_address, mask_text
    from bcartnb.ledger import Ledger

    with Ledger.open(db) as ledger:
        ledger.reclaim()  # a crashed run's campaign is unfinished, with its resume command
        record = ledger.campaign(campaign_id)
        failures = ledger.failures(campaign_id)
        deferred = ledger.deferred(campaign_id)
        uncertain = ledger.uncertain(campaign_id)
        journal = ledger.deliveries(campaign_id)
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
        "subject": _subject_of(record.params),
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
        _print_json(data)
        return 0
    lines = [
        f"キャンペーンID: {record.campaign_id}",
        f"登録日時: {_jst(data['created_at'])}",
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
    lines.append(_ledger_line(db))
    if resume:  # last: what to do next
        lines.append(f"続きを送るには: {resume}")
    _say("\n".join(lines))
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from pathlib import Path

    from bcartnb.report import write_report
    from bcartnb.settings import load_settings

    target = Path(args.out) if args.out else Path(f"campaign-{args.campaign_id}.html")
    path = write_report(args.campaign_id, load_settings(), target)
    print(f"レポートを書き出しました: {path}")
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
        _say(
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


def _writeback_members(path: str | None) -> Any:
    """The member file the B-Cart write-back resolves addresses with: ``--members``, else the
    newest ``bcart pull`` snapshot in the working folder or beside bcartnb.toml, else None
    (the ledger's journal alone)."""
    from bcartnb.bcart_api import latest_snapshot
    from bcartnb.members import read_members
    from bcartnb.settings import load_settings

    if path:
        return read_members(path)
    source = load_settings().source
    found = latest_snapshot([os.getcwd(), *([source.parent] if source else [])])
    return None if found is None else read_members(found)


def _export_bcart(args: argparse.Namespace) -> int:
    from bcartnb.hygiene.export import export_bcart_csv
    from bcartnb.hygiene.writeback import members_note, unresolved_counts
    from bcartnb.ledger import Ledger

    members = _writeback_members(args.members)
    with Ledger.open() as ledger:
        listed, journal = ledger.suppressions(), ledger.journal_members()
    done = export_bcart_csv(listed, args.export_bcart, members=members, journal=journal)
    _say(
        f"B-Cart 用の会員CSVを書き出しました: {done.path}"
        f"（{len(done.member_ids):,} 件、メール案内 = 受け取らない）\n"
        "  配信停止の申し出・迷惑メールの報告・手動で停止した会員です。"
        "Bカートの会員インポートで取り込むと、Bカートからのメールも止まります。"
    )
    _say(
        f"不達の一覧を書き出しました: {done.bounces_path}（{done.bounces:,} 件）\n"
        "  確認用です。Bカートに取り込まないでください: 不達は会員の希望ではないため、"
        "メール案内は変えません（bcartnb bcart push-suppressions で「メールアドレス無効」に"
        "できます）。"
    )
    attrs = members.attrs if members is not None else {}
    _say(members_note(attrs.get("source"), attrs.get("pulled_at")))
    if done.unresolved:
        n, counts = unresolved_counts(done.unresolved)
        _say(
            f"注意: 会員IDを決められない配信停止 {n:,} 件は書き出していません（{counts}）。",
            err=True,
        )
        for item in done.unresolved:
            _say(f"  {item.describe()}", err=True)
    return 0


def _cmd_suppressions(args: argparse.Namespace) -> int:
    from bcartnb.ledger import Ledger

    if args.export_bcart is not None:
        return _export_bcart(args)
    with Ledger.open() as ledger:
        listed = ledger.suppressions()
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
        pushed = ledger.bcart_pushes(args.address)
        gone = ledger.unsuppress(args.address)
    address = normalize_address(args.address)
    if gone:
        print(f"配信停止リストから外しました: {address}")
    else:
        print(f"配信停止リストにありません（変更なし）: {address}")
    # B-Cart is not changed back: only the member can opt in again (特定電子メール法), and a
    # fixed address is the shop's to confirm; a new listing is pushed again
    for member_id, field, value, at in pushed:
        print(
            f"Bカートの会員情報は戻していません: 会員ID {member_id} の {field} = {value}"
            f"（{at:%Y-%m-%d} に反映）。会員本人の希望を確かめてから、"
            "Bカートの管理画面で変更してください。再び配信停止にすると、改めて反映します。"
        )
    return 0


# --- init: the shop folder (bcartnb.shop) -------------------------------------------------

#: What ``bcartnb init`` asks on a terminal, in the order asked.
INIT_QUESTIONS = {
    "plan": "プラン（ライトプラン・プラン10・プラン30・プラン50・プラン100・プラン300・自社SMTP）",
    "from": "送信元 From（例: 見本商事 <shop@example.co.jp>）",
    "admin": "管理者のアドレス（キャンペーンの控えの送り先。空欄で省略）",
    "signature": "署名（複数行。空の行で終わります。空欄で省略）",
}
#: What each file and folder of a new shop is for, as ``init`` tells it.
INIT_FILES = {
    "bcartnb.toml": "設定（プラン・送信元・管理者・署名・SMTP）",
    ".env": "パスワードなど秘密の値（名前だけ。値は空、本人だけが読めます）",
    ".gitignore": ".env・配信記録・uploads/・reports/ を git に入れません",
    "templates/": "メールテンプレート",
    "reports/": "キャンペーンのレポート",
    "uploads/": "ウィザードでアップロードした会員CSV",
}


def _cmd_init(args: argparse.Namespace) -> int:
    from pathlib import Path

    from bcartnb import shop
    from bcartnb.settings import SHOP_FILE

    folder = Path(args.folder)
    if args.adopt_ledger and (folder / SHOP_FILE).is_file():
        ledger = shop.adopt_into_shop(folder / SHOP_FILE)
        print(_adopted(ledger))
        return 0
    shop.check_free(folder)  # before any question is asked
    answers = shop.ShopAnswers(
        **{key.replace("from", "from_"): _init_answer(args, key) for key in INIT_QUESTIONS}
    )
    _tell_init(shop.init_shop(folder, answers, adopt=args.adopt_ledger))
    return 0


def _tell_init(done: Any) -> None:
    """What ``init`` made, what is left to do, and what to watch for."""
    import shlex

    from bcartnb.settings import find_shop

    print(f"お店のフォルダーを作りました: {done.folder}")
    for name, what in INIT_FILES.items():
        kept = "（もとからあるものを残しました）" if name in done.kept else ""
        print(f"  {name:<13} {what}{kept}")
    if done.adopted is not None:
        print(_adopted(done.adopted))
    elif done.legacy is None:
        print(f"配信記録ファイルを作りました: {done.ledger}")
    if done.missing:
        print(
            f"まだ書いていない設定: {'・'.join(done.missing)}（{done.settings} に書いてください）"
        )
    where = shlex.quote(str(done.folder))
    print(f"これからは、このフォルダーかその中で bcartnb を実行します: cd {where}")
    outer = find_shop(done.folder.absolute().parent)
    if outer is not None:  # a shop inside a shop: a second ledger, a second monthly cap
        _say(
            f"注意: このフォルダーはお店のフォルダー {outer.parent} の中です。"
            f"中で実行した bcartnb は {done.settings} を使い、配信記録も別になります。",
            err=True,
        )
    if done.legacy is not None:
        _say(
            f"注意: 以前の配信記録 {done.legacy} があります。このお店で使うには、{where} で "
            "bcartnb init --adopt-ledger を実行して取り込んでください。",
            err=True,
        )


def _adopted(ledger: Any) -> str:
    return f"以前の配信記録を取り込みました: {ledger}（元のファイルはそのまま残してあります）"


def _init_answer(args: argparse.Namespace, key: str) -> str | None:
    """A flag's value, checked; else, on a terminal without --yes, the question's answer."""
    from bcartnb import shop
    from bcartnb.exceptions import SettingsError

    given = getattr(args, key.replace("from", "from_"))
    if given is not None:
        try:
            return shop.check_answer(key, given)
        except SettingsError as err:
            raise SettingsError(f"--{key}: {err}", ja=f"--{key}: {err.ja}") from err
    if args.yes or not sys.stdin.isatty():
        return None
    while True:
        text = _ask(INIT_QUESTIONS[key], multiline=key == "signature")
        if not text.strip():
            return None
        try:
            return shop.check_answer(key, text)
        except SettingsError as err:
            _say(f"  {err.ja or err}", err=True)


def _ask(question: str, *, multiline: bool) -> str:
    try:
        if not multiline:
            return input(f"{question}: ")
        print(f"{question}:")
        lines: list[str] = []
        while line := input():
            lines.append(line)
        return "\n".join(lines)
    except EOFError:
        return ""


# --- bcart: the B-Cart API (bcartnb.bcart_api) -----------------------------------------


def _cmd_bcart_pull(args: argparse.Namespace) -> int:
    from bcartnb.bcart_api import DEFAULT_SNAPSHOT, BcartClient, pull_snapshot
    from bcartnb.settings import load_settings

    settings = load_settings()
    out = args.out or DEFAULT_SNAPSHOT
    with BcartClient(settings.bcart) as client:
        pulled, frame = pull_snapshot(client, out, progress=sys.stderr.isatty())
    info = {
        "out": os.path.abspath(out),
        "members": len(frame),
        "pulled_at": pulled.pulled_at.isoformat(timespec="seconds"),
        "api_url": pulled.api_url,
        "requests": pulled.requests,
        "retries": pulled.retries,
        "warnings": pulled.warnings,
    }
    if args.json:
        _print_json(info)
    else:
        print(f"Bカートから会員 {len(frame):,} 件を取得しました（{info['pulled_at']}）。")
        print(f"スナップショット: {info['out']}")
        print("会員ファイルとして bcartnb members・キャンペーンファイル・ノートブックで使えます。")
        for warning in pulled.warnings:
            print(f"注意: {warning}")
    return 0


def _cmd_bcart_push(args: argparse.Namespace) -> int:
    from bcartnb.bcart_api import BcartClient, plan_push, push_suppressions
    from bcartnb.ledger import Ledger
    from bcartnb.settings import load_settings

    settings = load_settings()
    members = _writeback_members(args.members)
    with Ledger.open(settings.db) as ledger, BcartClient(settings.bcart) as client:

        def record(batch: Any) -> None:  # each batch B-Cart accepted: never pushed again
            for change in batch:
                ledger.record_bcart_push(change)

        report = push_suppressions(
            plan_push(ledger, members), client, apply=args.apply, on_applied=record
        )
    if args.json:
        _print_json(report.as_dict())
    else:
        _say(report.message())
    return 0


def _add_bcart(sub: Any) -> None:
    p = sub.add_parser(
        "bcart",
        help="Bカートの API: 会員を取得し、配信停止をBカートに反映します",
        description="Bカートの API（アクセストークンは BCARTNB_BCART_TOKEN）で会員を取得し、"
        "配信停止リストをBカートの会員情報に反映します。",
    )
    bcart = p.add_subparsers(dest="bcart_command", required=True, parser_class=_Parser)
    q = bcart.add_parser(
        "pull",
        help="すべての会員を API から取得し、スナップショット（.parquet）に保存します",
        description="すべての会員を 100 件ずつ取得し（300 秒に 300 回までの制限を守ります）、"
        "会員CSVの代わりに使えるスナップショットファイルに保存します。",
    )
    q.add_argument(
        "--out",
        default=None,
        metavar="FILE.parquet",
        help="保存先（既定: ./bcart_members.parquet）",
    )
    q.add_argument("--json", action="store_true", help="JSON で出力します")
    q.set_defaults(func=_cmd_bcart_pull)
    q = bcart.add_parser(
        "push-suppressions",
        help="配信停止リストをBカートに反映します（--apply がなければ一覧のみ）",
        description="配信停止・苦情・手動はメール案内を「受け取らない」に、不達は"
        "メールアドレス無効にします。--apply がなければ変更の一覧を表示するだけです。"
        "反映した変更は記録し、二度は送りません。会員IDのないアドレスは送信記録と"
        "会員ファイル（--members、なければ最新の bcart pull のスナップショット）で照合し、"
        "照合できないものは理由とともに一覧にします。",
    )
    q.add_argument(
        "--apply", action="store_true", help="実際にBカートを更新します（省略時は一覧のみ）"
    )
    q.add_argument(
        "--members",
        metavar="FILE",
        default=None,
        help="会員IDの照合に使う会員ファイル（CSV またはスナップショット。"
        "既定: ./bcart_members.parquet があればそれ）",
    )
    q.add_argument("--json", action="store_true", help="JSON で出力します")
    q.set_defaults(func=_cmd_bcart_push)


def _cmd_bounces_scan(args: argparse.Namespace) -> int:
    from bcartnb.hygiene.scan import scan_mailbox, with_thresholds
    from bcartnb.settings import load_settings

    settings = with_thresholds(
        load_settings(),
        soft_threshold=args.soft_threshold,
        soft_window_days=args.soft_window_days,
    )
    result = scan_mailbox(args.source, settings, progress=sys.stderr.isatty())
    if args.json:
        _print_json(result.as_dict())
    else:
        print(result.message())
    return 0


def _cmd_bounces_unverified(args: argparse.Namespace) -> int:
    from bcartnb.hygiene.scan import unverified_notices
    from bcartnb.settings import load_settings

    notices = unverified_notices(load_settings())
    if args.json:
        _print_json([n.as_dict() for n in notices])
    elif not notices:
        print("確認待ちの通知はありません。")
    else:
        print(f"確認待ちの通知 {len(notices):,} 件（bcartnb bounces confirm ID で確定）:")
        print("\n".join(n.line() for n in notices))
    return 0


def _cmd_bounces_confirm(args: argparse.Namespace) -> int:
    from bcartnb.hygiene.scan import confirm_notices
    from bcartnb.settings import load_settings

    result = confirm_notices(args.which, load_settings())
    if args.json:
        _print_json(result.as_dict())
    else:
        print(result.message())
    return 0


def _cmd_unsubscribe_server(args: argparse.Namespace) -> int:
    from bcartnb.hygiene.unsubscribe import serve
    from bcartnb.settings import load_settings

    settings = load_settings()
    h = settings.hygiene

    def ready(address: str, prefix: str) -> None:
        print(f"配信停止サーバーを起動しました listening on http://{address}{prefix}<token>")
        print(
            f"ヘッダー {h.server_header_timeout:g} 秒・本文 {h.server_body_timeout:g} 秒まで待ち、"
            f"同時に {h.server_connections} 接続まで読みます（[hygiene] server_*）"
        )
        print("Ctrl-C で停止します / press Ctrl-C to stop", flush=True)

    serve(settings, host=args.host, port=args.port, prefix=args.prefix, ready=ready)
    print("配信停止サーバーを停止しました stopped")
    return 0


# --- parser ------------------------------------------------------------------------------

#: argparse's own words (Python 3.11) in Japanese. argparse looks every one of them up through
#: gettext at the moment it uses it, via its module-level ``_`` and ``ngettext``;
#: :func:`_japanese_argparse` points those at this table while our parser is built and used.
ARGPARSE_JA: dict[str, str] = {
    "usage: ": "使い方: ",
    "positional arguments": "引数",
    "options": "オプション",
    "subcommands": "コマンド",
    "show this help message and exit": "この説明を表示して終了します",
    "show program's version number and exit": "バージョンを表示して終了します",
    "argument %(argument_name)s: %(message)s": "引数 %(argument_name)s: %(message)s",
    "unrecognized arguments: %s": "知らない引数です: %s",
    "not allowed with argument %s": "引数 %s と一緒には使えません",
    "ignored explicit argument %r": "値 %r は受け付けません",
    "the following arguments are required: %s": "次の引数が必要です: %s",
    "one of the arguments %s is required": "引数 %s のどれかひとつが必要です",
    "expected one argument": "値をひとつ指定してください",
    "expected at most one argument": "値はひとつまでです",
    "expected at least one argument": "値をひとつ以上指定してください",
    "expected %s argument": "値を %s 個指定してください",
    "expected %s arguments": "値を %s 個指定してください",
    "ambiguous option: %(option)s could match %(matches)s": (
        "オプション %(option)s はあいまいです（候補: %(matches)s）"
    ),
    "unexpected option string: %s": "思いがけないオプションです: %s",
    "invalid %(type)s value: %(value)r": "%(value)r は %(type)s の値として正しくありません",
    "invalid choice: %(value)r (choose from %(choices)s)": (
        "%(value)r は選べません（選べるもの: %(choices)s）"
    ),
    "unknown parser %(parser_name)r (choices: %(choices)s)": (
        "%(parser_name)r というコマンドはありません（あるもの: %(choices)s）"
    ),
    "can't open '%(filename)s': %(error)s": "'%(filename)s' を開けません: %(error)s",
}


def _ja_gettext(message: str) -> str:
    return ARGPARSE_JA.get(message, message)


def _ja_ngettext(singular: str, plural: str, n: int) -> str:
    return _ja_gettext(singular if n == 1 else plural)


@contextlib.contextmanager
def _japanese_argparse() -> Iterator[None]:
    """argparse speaks Japanese inside this block, and only there (its module globals are
    put back afterwards, so another parser in the same process keeps its own language)."""
    saved = argparse._, argparse.ngettext  # type: ignore[attr-defined]
    argparse._, argparse.ngettext = _ja_gettext, _ja_ngettext  # type: ignore[attr-defined]
    try:
        yield
    finally:
        argparse._, argparse.ngettext = saved  # type: ignore[attr-defined]


EXIT_CODES_HELP = (
    "終了コード: 0 完了（すべて受信側が受け付けた） / 2 入力か設定のエラー（何も送っていない） / "
    "3 メール配信上限数を超える（何も送っていない） / 4 送信途中（bcartnb resume で続きを送る） / "
    "5 完了したが受信側に拒否されたメールがある / 130 中断（bcartnb resume で続きを送る）"
)


class _Parser(argparse.ArgumentParser):
    """A usage mistake is an error like any other: one line, Japanese first, exit 2."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"`{self.prog} --help` で使い方を表示します", ja=message)


def build_parser() -> argparse.ArgumentParser:
    """The whole command line. Build it inside :func:`_japanese_argparse` (as :func:`main`
    does) for argparse's own words in Japanese too."""
    parser = _Parser(
        prog="bcartnb",
        description="Bカートの会員にメールを配信します（絞込・メール作成・確認・送信）。",
    )
    parser.add_argument(
        "--version",
        action="version",
        version=f"bcartnb {__version__}",
        help="バージョンを表示して終了します",
    )
    sub = parser.add_subparsers(
        dest="command", required=True, parser_class=_Parser, metavar="コマンド"
    )
    _add_init(sub)
    _add_members(sub)
    _add_quota(sub)
    _add_run(sub)
    _add_resume(sub)
    _add_cancel(sub)
    _add_campaigns(sub)
    _add_report(sub)
    _add_suppressions(sub)
    _add_bcart(sub)
    _add_unsubscribe_server(sub)
    _add_segments(sub)
    _add_sink(sub)
    return parser


_Sub = Any  # argparse's _SubParsersAction, private in typeshed's eyes


def _add_init(sub: _Sub) -> None:
    p = sub.add_parser(
        "init",
        help="お店のフォルダー（設定・秘密の値・テンプレート・配信記録の置き場）を作ります",
        description="お店のフォルダーを作り、説明つきの bcartnb.toml、秘密の値の .env（値は空）、"
        "templates/・reports/・uploads/ と .gitignore を書きます。端末ではプラン・送信元・"
        "管理者・署名を尋ねます（--yes なら尋ねません）。bcartnb.toml があるフォルダーには"
        "書きません。このフォルダーとその中で実行した bcartnb は、このお店の設定と配信記録を"
        "使います。",
    )
    p.add_argument(
        "folder", nargs="?", default=".", metavar="フォルダー", help="既定: 今のフォルダー"
    )
    p.add_argument("--plan", default=None, help="プラン（例: プラン10、plan10）")
    p.add_argument(
        "--from",
        dest="from_",
        default=None,
        metavar="FROM",
        help="送信元（例: 見本商事 <shop@example.co.jp>）",
    )
    p.add_argument("--admin", default=None, help="管理者のアドレス（キャンペーンの控えの送り先）")
    p.add_argument("--signature", default=None, help="署名（改行を含めてかまいません）")
    p.add_argument(
        "--yes", action="store_true", help="尋ねずに作ります（指定しなかった設定は後で書きます）"
    )
    p.add_argument(
        "--adopt-ledger",
        action="store_true",
        help="以前の版がユーザーごとに作った配信記録（~/.local/share/bcartnb/ledger.sqlite3）を"
        "このお店にコピーして使います（既にあるお店のフォルダーでも使えます）",
    )
    p.set_defaults(func=_cmd_init)


def _add_members(sub: _Sub) -> None:
    p = sub.add_parser(
        "members",
        help="会員CSVを読み、送信できる会員とできない会員を数えます",
        description="会員CSVを読み、絞込条件で選んだ会員のうち送信できる件数と、"
        "送信できない件数をその理由ごとに表示します。",
    )
    p.add_argument(
        "members",
        metavar="会員CSV",
        help="Bカートの会員CSV（Shift_JIS・UTF-8）、"
        "または bcart pull のスナップショット（.parquet）",
    )
    p.add_argument(
        "--filter", default=None, metavar="JSON", help='絞込条件（JSON）。例: {"pref": "東京都"}'
    )
    p.add_argument(
        "--checked",
        default=None,
        metavar="ID,ID,…",
        help="チェックした会員に送信: 会員IDをカンマ区切りで",
    )
    p.add_argument("--opt-in-only", action="store_true", help="メール案内「受け取る」の会員のみ")
    p.add_argument(
        "--list", action="store_true", help="送信できない会員を一人ずつ理由とともに表示します"
    )
    p.add_argument("--json", action="store_true", help="JSON で出力します")
    p.set_defaults(func=_cmd_members)


def _add_quota(sub: _Sub) -> None:
    p = sub.add_parser(
        "quota",
        help="メール配信上限数と今月の送信数、残りを表示します",
        description="プランのメール配信上限数、その月の送信数（キャンペーン別）と残りを表示します。",
    )
    p.add_argument(
        "--month", default=None, metavar="YYYY-MM", help="対象月（省略時は日本時間の今月）"
    )
    p.add_argument("--json", action="store_true", help="JSON で出力します")
    p.set_defaults(func=_cmd_quota)


def _add_run(sub: _Sub) -> None:
    p = sub.add_parser(
        "run",
        help="キャンペーンファイルを実行します（--send がなければ確認のみ）",
        description="キャンペーンファイルを実行します。--send を付けない限り確認のみで、"
        "すべてのメールを作成して件数と配信数を確かめ、見本のメールを表示します。"
        "送信途中の同じキャンペーンはその続きを送ります。同じメールを送信済みの会員には、"
        "どのキャンペーン・会員ファイルからでも二度と送りません（もう一度送るには --repeat）。",
        epilog=EXIT_CODES_HELP,
    )
    p.add_argument("campaign", metavar="キャンペーンファイル", help="キャンペーンの TOML ファイル")
    how = p.add_mutually_exclusive_group()
    how.add_argument("--send", action="store_true", help="実際に送信します（省略時は確認のみ）")
    p.add_argument(
        "--repeat",
        action="store_true",
        help="同じメールを送信済みの会員にも、もう一度送ります（送信途中のものがあるときは断ります）",
    )
    how.add_argument(
        "--test-to",
        metavar="アドレス",
        default=None,
        help="最初の会員のメールを1通だけこのアドレスにテスト送信します（配信数に数えません）",
    )
    p.add_argument("--json", action="store_true", help="JSON で出力します")
    p.set_defaults(func=_cmd_run)


def _add_resume(sub: _Sub) -> None:
    p = sub.add_parser(
        "resume",
        help="送信途中のキャンペーンの続きを送ります",
        description="送信途中のキャンペーンの続きを送ります。未送信と再試行待ちのメールを送り、"
        "送信済みの会員には二度と送りません。結果不明のメールは --resend-uncertain のときだけ"
        "再送します。",
        epilog=EXIT_CODES_HELP,
    )
    p.add_argument("campaign_id", metavar="キャンペーンID")
    p.add_argument(
        "--resend-uncertain",
        action="store_true",
        help="前回止まったときに送信中だった（結果不明の）メールも再送します",
    )
    p.add_argument(
        "--mark-uncertain-sent",
        action="store_true",
        help="結果不明のメールを、届いたと確かめたものとして送信済みにします（再送しません）",
    )
    p.add_argument(
        "--drop-uncertain",
        action="store_true",
        help="結果不明のメールを再送しないことにします（取り消し）",
    )
    p.add_argument(
        "--give-up-deferred",
        action="store_true",
        help="受信側が保留し続けているメールの再送をあきらめ、失敗にします",
    )
    p.add_argument(
        "--skip-missing",
        action="store_true",
        help="会員ファイルにいなくなった（送信できなくなった）会員には送らないことにします",
    )
    p.add_argument("--json", action="store_true", help="JSON で出力します")
    p.set_defaults(func=_cmd_resume)


def _add_cancel(sub: _Sub) -> None:
    p = sub.add_parser(
        "cancel",
        help="送信途中のキャンペーンを取り消します（これ以上は送りません）",
        description="送信途中のキャンペーンの配信を取り消します。未送信と再試行待ちのメールは"
        "送らずに終え、送信済みのメールはそのまま今月の配信数に数えます。",
        epilog=EXIT_CODES_HELP,
    )
    p.add_argument("campaign_id", metavar="キャンペーンID")
    p.add_argument("--json", action="store_true", help="JSON で出力します")
    p.set_defaults(func=_cmd_cancel)


def _add_campaigns(sub: _Sub) -> None:
    p = sub.add_parser(
        "campaigns",
        help="配信履歴、または1件のキャンペーンの詳細を表示します",
        description="配信履歴を表示します。キャンペーンIDを指定すると、その件数、"
        "受信側に拒否されたメール（サーバーの返答つき）、再試行待ちと結果不明のメール、"
        "送信途中なら続きを送るコマンドを表示します。",
    )
    p.add_argument(
        "campaign_id",
        nargs="?",
        default=None,
        metavar="キャンペーンID",
        help="詳細を見るキャンペーン",
    )
    p.add_argument("--json", action="store_true", help="JSON で出力します")
    p.set_defaults(func=_cmd_campaigns)


def _add_suppressions(sub: _Sub) -> None:
    p = sub.add_parser(
        "suppressions",
        help="配信停止リスト（不達・配信停止・苦情）を表示、または B-Cart 用CSVに書き出す",
    )
    p.add_argument("--json", action="store_true", help="JSON で出力")
    p.add_argument(
        "--export-bcart",
        metavar="FILE.csv",
        default=None,
        help="B-Cart の会員インポート用CSV（配信停止の会員ID, メール案内 = 受け取らない）と、"
        "確認用の不達の一覧（FILE-bounces.csv）を書き出す",
    )
    p.add_argument(
        "--members",
        metavar="MEMBERS.csv",
        default=None,
        help="会員IDのわからないアドレスを、この会員ファイルで探す（--export-bcart と使う。"
        "既定: ./bcart_members.parquet があればそれ）",
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

    p = sub.add_parser(
        "bounces", help="不達・苦情・配信停止のメールを読み、配信停止リストを更新する"
    )
    bounces = p.add_subparsers(dest="bounces_command", required=True, parser_class=_Parser)
    p = bounces.add_parser(
        "scan",
        help="メールボックス（Maildir、mbox、imap[s]://）を読む（メールは変更しません）",
        description="不達・苦情・配信停止のメールが届くメールボックスを読み（メールは変更しません）、"
        "配信停止リストを更新します。恒久的な不達と苦情はすぐに、一時的な不達は回数が"
        "しきい値に達したときに停止します。同じメールボックスを何度読んでも結果は同じです。",
    )
    p.add_argument(
        "source",
        help="Maildir フォルダ、mbox ファイル、または imaps://USER@HOST[:PORT]/FOLDER"
        "（パスワードは BCARTNB_IMAP_PASSWORD）",
    )
    p.add_argument("--json", action="store_true", help="JSON で出力")
    p.add_argument(
        "--soft-threshold",
        type=int,
        default=None,
        metavar="N",
        help="一時的な不達が N 回で配信停止（既定: 設定の [hygiene] soft_threshold、3）",
    )
    p.add_argument(
        "--soft-window-days",
        type=float,
        default=None,
        metavar="D",
        help="その回数を数える日数（既定: [hygiene] soft_window_days、30）",
    )
    p.set_defaults(func=_cmd_bounces_scan)
    p = bounces.add_parser(
        "unverified",
        help="確認待ちの通知（このショップのメールと照合できない不達・苦情）を一覧する",
        description="Message-ID も VERP もなく、このショップのメールと照合できない通知"
        "（一部の携帯キャリアの不達通知など）の一覧です。配信停止にはしていません。"
        "アドレスは伏せ字で表示します。",
    )
    p.add_argument("--json", action="store_true", help="JSON で出力")
    p.set_defaults(func=_cmd_bounces_unverified)
    p = bounces.add_parser(
        "confirm",
        help="確認待ちの通知を本物として確定する（ID またはメールアドレス）",
        description="確認待ちの通知を本物と認め、ほかの不達・苦情と同じように数えます"
        "（恒久的な不達・苦情・配信停止の申し出はすぐに配信停止、一時的な不達は回数で判断）。"
        "ID は bounces scan・bounces unverified の表示（先頭 8 文字以上）、"
        "メールアドレスならそのアドレスの確認待ちの通知すべてです。",
    )
    p.add_argument("which", nargs="+", metavar="ID|ADDRESS", help="通知の ID かメールアドレス")
    p.add_argument("--json", action="store_true", help="JSON で出力")
    p.set_defaults(func=_cmd_bounces_confirm)


def _add_report(sub: _Sub) -> None:
    p = sub.add_parser(
        "report",
        help="キャンペーンのレポートをHTMLに書き出す（配信記録から）",
        description="配信記録（ledger）にあるキャンペーンのレポートを、ブラウザで開ける1つのHTML"
        "ファイルに書き出します。メールの例と送信できない会員の一覧は、会員ファイルが残っていれば"
        "記録したパラメータから作り直します。",
    )
    p.add_argument("campaign_id", help="キャンペーンID（bcartnb campaigns で確認）")
    p.add_argument(
        "--out", metavar="FILE.html", default=None, help="書き出し先（既定: campaign-ID.html）"
    )
    p.set_defaults(func=_cmd_report)


def _add_unsubscribe_server(sub: _Sub) -> None:
    p = sub.add_parser(
        "unsubscribe-server",
        help="ワンクリック配信停止（RFC 8058）を受け付けるサーバーを起動する",
        description="メールの配信停止リンク（List-Unsubscribe, RFC 8058 のワンクリック）を"
        "受け付けます。お店の HTTPS（リバースプロキシ）の後ろで動かします。"
        "BCARTNB_UNSUBSCRIBE_SECRET が必要です。",
    )
    p.add_argument("--host", default="127.0.0.1", help="待ち受けるアドレス（既定: 127.0.0.1）")
    p.add_argument("--port", type=int, default=None, help="ポート番号（既定: 8026）")
    p.add_argument(
        "--prefix",
        default=None,
        help="トークンの前のパス（既定: 設定の unsubscribe_url から。例: /mail/stop/）",
    )
    p.set_defaults(func=_cmd_unsubscribe_server)


def _add_segments(sub: _Sub) -> None:
    p = sub.add_parser(
        "segments",
        help="保存した絞込条件（セグメント）を一覧・保存・削除します",
        description="絞込条件に名前を付けて segments.toml に保存し、ウィザード・"
        'キャンペーンファイル（segment = "名前"）・papermill で使えるようにします。',
    )
    p.add_argument(
        "--save", metavar="名前", default=None, help="--filter の条件をこの名前で保存します"
    )
    p.add_argument(
        "--filter",
        default=None,
        metavar="JSON",
        help='--save と使う絞込条件。例: {"pref": "東京都"}',
    )
    p.add_argument("--overwrite", action="store_true", help="--save で同じ名前を上書きします")
    p.add_argument(
        "--delete", metavar="名前", default=None, help="この名前のセグメントを削除します"
    )
    p.add_argument("--json", action="store_true", help="JSON で出力します")
    p.set_defaults(func=_cmd_segments)


def _add_sink(sub: _Sub) -> None:
    p = sub.add_parser(
        "sink",
        help="受け取ったメールを Maildir に保存する SMTP サーバーを起動します（試験用）",
        description="試験用の SMTP サーバーを起動します。誰にもメールを届けず、"
        "受け取ったメールを Maildir に保存します。",
    )
    p.add_argument("--port", type=int, default=8025, help="待ち受けるポート（既定 8025）")
    p.add_argument("--host", default="127.0.0.1", help="待ち受けるアドレス（既定 127.0.0.1）")
    p.add_argument("--maildir", default="maildir", help="メールの保存先（既定 ./maildir）")
    p.set_defaults(func=_cmd_sink)


def _silence_stdout() -> None:
    """The reader closed the pipe: drop the rest of our output instead of a traceback."""
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


@contextlib.contextmanager
def _telling_a_new_ledger(command: str) -> Iterator[None]:
    """Say once, on stderr, where the shop's ledger was created if this command created it
    where nobody named it (``bcartnb init`` makes and says it; a ``ledger`` key or
    ``BCARTNB_DB`` names it): a ledger never appears unannounced."""
    from pathlib import Path

    from bcartnb.settings import load_settings

    watch: Path | None = None
    if command != "init":
        with contextlib.suppress(BcartnbError):
            settings = load_settings()
            if settings.ledger_by_default and settings.db and not settings.db.exists():
                watch = settings.db
    try:
        yield
    finally:
        if watch is not None and watch.exists():
            _say(f"bcartnb: 配信記録ファイルを作りました: {watch}", err=True)


def main(argv: Sequence[str] | None = None) -> int:
    try:
        with _japanese_argparse():
            args = build_parser().parse_args(argv)
        with _telling_a_new_ledger(args.command):
            code: int = args.func(args)
        sys.stdout.flush()
    except BrokenPipeError:
        _silence_stdout()
        return 0
    except BcartnbError as err:
        _say(f"bcartnb: error: {err.line()}", err=True)
        return err.exit_code
    except KeyboardInterrupt:
        print("bcartnb: 中断しました / interrupted", file=sys.stderr)
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
