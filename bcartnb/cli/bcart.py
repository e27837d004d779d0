"""``bcartnb bcart``: the B-Cart API. ``pull`` saves every member to a snapshot file usable
wherever a member CSV is; ``push-suppressions`` writes the suppression list back to B-Cart."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from bcartnb.cli.common import JSON, Command, arg, switch
from bcartnb.cli.output import print_json, say

__all__ = ["BCART", "writeback_members"]


def writeback_members(path: str | None) -> Any:
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


def _cmd_bcart_pull(args: argparse.Namespace) -> int:
    from bcartnb.bcart_api import DEFAULT_SNAPSHOT, BcartClient, pull_snapshot
    from bcartnb.settings import load_settings

    settings = load_settings()
    if args.orders:
        return _pull_orders(args, settings)
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
        print_json(info)
    else:
        print(f"Bカートから会員 {len(frame):,} 件を取得しました（{info['pulled_at']}）。")
        print(f"スナップショット: {info['out']}")
        print("会員ファイルとして bcartnb members・キャンペーンファイル・ノートブックで使えます。")
        for warning in pulled.warnings:
            print(f"注意: {warning}")
    return 0


def _pull_orders(args: argparse.Namespace, settings: Any) -> int:
    from bcartnb.bcart_api import BcartClient
    from bcartnb.bcart_api.orders import ORDERS_SNAPSHOT, pull_orders

    out = args.out or ORDERS_SNAPSHOT
    with BcartClient(settings.bcart) as client:
        frame = pull_orders(client, out, full=args.full)
        requests = client.requests
    orders = int(frame["order_id"].nunique())
    info = {
        "out": os.path.abspath(out),
        "orders": orders,
        "lines": len(frame),
        "changed": frame.attrs["changed"],
        "full": frame.attrs["full"],
        "pulled_at": frame.attrs["pulled_at"],
        "requests": requests,
        "warnings": frame.attrs["warnings"],
    }
    if args.json:
        print_json(info)
    else:
        fetched = (
            "すべて取得しました"
            if info["full"]
            else f"前回からの変更 {info['changed']:,} 件を取得して反映しました"
        )
        print(
            f"Bカートの受注 {orders:,} 件（受注商品 {len(frame):,} 行）: {fetched}"
            f"（{info['pulled_at']}）。"
        )
        print(f"スナップショット: {info['out']}")
        print(
            "受注ファイルとして bcartnb members --orders・キャンペーンファイルの"
            " orders で使えます。"
        )
        for warning in info["warnings"]:
            print(f"注意: {warning}")
    return 0


def _cmd_bcart_push(args: argparse.Namespace) -> int:
    from bcartnb import campaign
    from bcartnb.settings import load_settings

    settings = load_settings()
    members = writeback_members(args.members)
    report = campaign.push_suppressions(settings, members, apply=args.apply)
    if args.json:
        print_json(report.as_dict())
    else:
        say(report.message())
    return 0


BCART = Command(
    "bcart",
    help="Bカートの API: 会員を取得し、配信停止をBカートに反映します",
    description="Bカートの API（アクセストークンは BCARTNB_BCART_TOKEN）で会員を取得し、"
    "配信停止リストをBカートの会員情報に反映します。",
    commands=(
        Command(
            "pull",
            help="すべての会員を API から取得し、スナップショット（.parquet）に保存します",
            description="すべての会員を 100 件ずつ取得し（300 秒に 300 回までの制限を守ります）、"
            "会員CSVの代わりに使えるスナップショットファイルに保存します。",
            args=(
                arg(
                    "--out",
                    default=None,
                    help="保存先（既定: ./bcart_members.parquet、"
                    "--orders なら ./bcart_orders.parquet）",
                ),
                switch(
                    "--orders",
                    "会員の代わりに受注（受注商品つき）を取得します"
                    "（2回目からは前回以降に変更された受注だけ）",
                ),
                switch("--full", "--orders で、変更分だけでなくすべての受注を取得し直します"),
                JSON,
            ),
            run=_cmd_bcart_pull,
        ),
        Command(
            "push-suppressions",
            help="配信停止リストをBカートに反映します（--apply がなければ一覧のみ）",
            description="配信停止・苦情・手動はメール案内を「受け取らない」に、不達は"
            "メールアドレス無効にします。--apply がなければ変更の一覧を表示するだけです。"
            "反映した変更は記録し、二度は送りません。会員IDのないアドレスは送信記録と"
            "会員ファイル（--members、なければ最新の bcart pull のスナップショット）で照合し、"
            "照合できないものは理由とともに一覧にします。",
            args=(
                switch("--apply", "実際にBカートを更新します（省略時は一覧のみ）"),
                arg(
                    "--members",
                    default=None,
                    help="会員IDの照合に使う会員ファイル（CSV またはスナップショット。"
                    "既定: ./bcart_members.parquet があればそれ）",
                ),
                JSON,
            ),
            run=_cmd_bcart_push,
        ),
    ),
)
