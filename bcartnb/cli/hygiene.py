"""The list of addresses never mailed again: ``suppressions`` (shown, or written out for
B-Cart's member import), ``suppress``, ``unsuppress``, and ``bounces`` (reading the bounces,
complaints and unsubscribe mails that fill it)."""

from __future__ import annotations

import argparse
import sys

from bcartnb.cli.bcart import writeback_members
from bcartnb.cli.common import Command, arg, switch
from bcartnb.cli.output import print_json, say
from bcartnb.ledger.schema import SUPPRESSION_REASONS
from bcartnb.privacy import mask_address

__all__ = ["COMMANDS"]


def _export_bcart(args: argparse.Namespace) -> int:
    from bcartnb import campaign
    from bcartnb.hygiene.writeback import members_note, unresolved_counts
    from bcartnb.settings import load_settings

    members = writeback_members(args.members)
    done = campaign.export_suppressions(load_settings(), args.export_bcart, members=members)
    say(
        f"B-Cart 用の会員CSVを書き出しました: {done.path}"
        f"（{len(done.member_ids):,} 件、メール案内 = 受け取らない）\n"
        "  配信停止の申し出・迷惑メールの報告・手動で停止した会員です。"
        "Bカートの会員インポートで取り込むと、Bカートからのメールも止まります。"
    )
    say(
        f"不達の一覧を書き出しました: {done.bounces_path}（{done.bounces:,} 件）\n"
        "  確認用です。Bカートに取り込まないでください: 不達は会員の希望ではないため、"
        "メール案内は変えません（bcartnb bcart push-suppressions で「メールアドレス無効」に"
        "できます）。"
    )
    attrs = members.attrs if members is not None else {}
    say(members_note(attrs.get("source"), attrs.get("pulled_at")))
    if done.unresolved:
        n, counts = unresolved_counts(done.unresolved)
        say(
            f"注意: 会員IDを決められない配信停止 {n:,} 件は書き出していません（{counts}）。",
            err=True,
        )
        for item in done.unresolved:
            say(f"  {item.describe()}", err=True)
    return 0


def _cmd_suppressions(args: argparse.Namespace) -> int:
    from bcartnb import campaign
    from bcartnb.settings import load_settings

    if args.export_bcart is not None:
        return _export_bcart(args)
    listed = campaign.suppression_list(load_settings())
    if args.json:
        print_json([s.to_dict() for s in listed])
        return 0
    if not listed:
        print("配信停止リストは空です。")
        return 0
    print(f"配信停止リスト: {len(listed):,} 件")
    for s in listed:
        who = f" 会員ID {s.member_id}" if s.member_id is not None else ""
        print(f"  {mask_address(s.address)}  {s.label}  {s.since:%Y-%m-%d}から {s.count:,} 回{who}")
    return 0


def _cmd_suppress(args: argparse.Namespace) -> int:
    from bcartnb import campaign
    from bcartnb.settings import load_settings

    new, row = campaign.suppress(
        load_settings(), args.address, args.reason, source="cli", member_id=args.member_id
    )
    assert row is not None
    if new:
        print(f"配信停止リストに追加しました: {row.address}（{row.label}）")
    else:
        print(f"すでに配信停止リストにあります: {row.address}（{row.label}、{row.count:,} 回）")
    return 0


def _cmd_unsuppress(args: argparse.Namespace) -> int:
    from bcartnb import campaign
    from bcartnb.address_key import normalize_address
    from bcartnb.settings import load_settings

    gone, pushed = campaign.unsuppress(load_settings(), args.address)
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
        print_json(result.as_dict())
    else:
        print(result.message())
    return 0


def _cmd_bounces_unverified(args: argparse.Namespace) -> int:
    from bcartnb.hygiene.scan import unverified_notices
    from bcartnb.settings import load_settings

    notices = unverified_notices(load_settings())
    if args.json:
        print_json([n.as_dict() for n in notices])
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
        print_json(result.as_dict())
    else:
        print(result.message())
    return 0


#: The hygiene commands' own wording of ``--json``.
_JSON = switch("--json", "JSON で出力")
_ADDRESS = arg("address", help="対象のメールアドレス")

COMMANDS = (
    Command(
        "suppressions",
        help="配信停止リスト（不達・配信停止・苦情）を表示、または B-Cart 用CSVに書き出す",
        args=(
            _JSON,
            arg(
                "--export-bcart",
                default=None,
                help="B-Cart の会員インポート用CSV"
                "（配信停止の会員ID, メール案内 = 受け取らない）と、"
                "確認用の不達の一覧（同じ名前に -bounces を付けた .csv）を書き出す",
            ),
            arg(
                "--members",
                default=None,
                help="会員IDのわからないアドレスを、この会員ファイルで探す（--export-bcart と使う。"
                "既定: ./bcart_members.parquet があればそれ）",
            ),
        ),
        run=_cmd_suppressions,
    ),
    Command(
        "suppress",
        help="アドレスを配信停止リストに追加する",
        args=(
            _ADDRESS,
            arg(
                "--reason",
                default="manual",
                choices=SUPPRESSION_REASONS,
                help="理由（既定: manual）",
            ),
            arg("--member-id", type=int, default=None, help="会員ID（わかれば）"),
        ),
        run=_cmd_suppress,
    ),
    Command(
        "unsuppress",
        help="アドレスを配信停止リストから外す",
        args=(_ADDRESS,),
        run=_cmd_unsuppress,
    ),
    Command(
        "bounces",
        help="不達・苦情・配信停止のメールを読み、配信停止リストを更新する",
        commands=(
            Command(
                "scan",
                help="メールボックス（Maildir、mbox、imap[s]://）を読む（メールは変更しません）",
                description="不達・苦情・配信停止のメールが届くメールボックスを読み"
                "（メールは変更しません）、配信停止リストを更新します。恒久的な不達と苦情はすぐに、"
                "一時的な不達は回数がしきい値に達したときに停止します。"
                "同じメールボックスを何度読んでも結果は同じです。",
                args=(
                    arg(
                        "source",
                        help="Maildir フォルダ、mbox ファイル、または "
                        "imaps://USER@HOST[:PORT]/FOLDER（パスワードは BCARTNB_IMAP_PASSWORD）",
                    ),
                    _JSON,
                    arg(
                        "--soft-threshold",
                        type=int,
                        default=None,
                        help="一時的な不達が N 回で配信停止"
                        "（既定: 設定の [hygiene] soft_threshold、3）",
                    ),
                    arg(
                        "--soft-window-days",
                        type=float,
                        default=None,
                        help="その回数を数える日数（既定: [hygiene] soft_window_days、30）",
                    ),
                ),
                run=_cmd_bounces_scan,
            ),
            Command(
                "unverified",
                help="確認待ちの通知（このショップのメールと照合できない不達・苦情）を一覧する",
                description="Message-ID も VERP もなく、このショップのメールと照合できない通知"
                "（一部の携帯キャリアの不達通知など）の一覧です。配信停止にはしていません。"
                "アドレスは伏せ字で表示します。",
                args=(_JSON,),
                run=_cmd_bounces_unverified,
            ),
            Command(
                "confirm",
                help="確認待ちの通知を本物として確定する（ID またはメールアドレス）",
                description="確認待ちの通知を本物と認め、ほかの不達・苦情と同じように数えます"
                "（恒久的な不達・苦情・配信停止の申し出はすぐに配信停止、一時的な不達は回数で判断）。"
                "ID は bounces scan・bounces unverified の表示（先頭 8 文字以上）、"
                "メールアドレスならそのアドレスの確認待ちの通知すべてです。",
                args=(
                    arg("which", nargs="+", help="通知の ID かメールアドレス"),
                    _JSON,
                ),
                run=_cmd_bounces_confirm,
            ),
        ),
    ),
)
