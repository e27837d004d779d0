"""The commands that serve until Ctrl-C: ``sink`` (a test SMTP server keeping mail in a Maildir)
and ``unsubscribe-server`` (RFC 8058 one-click unsubscribes)."""

from __future__ import annotations

import argparse

from bcartnb.cli.common import Command, arg
from bcartnb.cli.output import say

__all__ = ["SINK", "UNSUBSCRIBE_SERVER"]

#: The last line of a server's start-up banner.
_STOP_HINT = "Ctrl-C で停止します"


def _cmd_sink(args: argparse.Namespace) -> int:
    from pathlib import Path

    from bcartnb.sink import Sink, StoredMail

    def on_message(mail: StoredMail) -> None:
        name = mail.path.name if mail.path else "?"
        say(
            f"受信しました: {mail.envelope_from} → {', '.join(mail.recipients)}（{name}）",
            flush=True,
        )

    def ready(sink: Sink) -> None:
        print(f"試験用SMTPサーバーを起動しました: {sink.address}")
        print(f"メールの保存先（Maildir）: {sink.maildir.resolve()}")
        print(_STOP_HINT, flush=True)

    sink = Sink(Path(args.maildir), host=args.host, port=args.port, on_message=on_message)
    sink.serve_forever(ready=ready)
    print(f"試験用SMTPサーバーを停止しました（受信 {sink.received} 通）")
    return 0


def _cmd_unsubscribe_server(args: argparse.Namespace) -> int:
    from bcartnb.hygiene.unsubscribe import serve
    from bcartnb.settings import load_settings

    settings = load_settings()
    h = settings.hygiene

    def ready(address: str, prefix: str) -> None:
        print(f"配信停止サーバーを起動しました: http://{address}{prefix}<トークン>")
        print(
            f"ヘッダー {h.server_header_timeout:g} 秒・本文 {h.server_body_timeout:g} 秒まで待ち、"
            f"同時に {h.server_connections} 接続まで読みます（[hygiene] server_*）"
        )
        if settings.tracking.base is not None:
            path = settings.tracking.path
            print(
                f"開封・クリックの計測: http://{address}{path}/c/<トークン> と "
                f"{path}/o/<トークン>（[tracking] url）"
            )
        print(_STOP_HINT, flush=True)

    serve(settings, host=args.host, port=args.port, prefix=args.prefix, ready=ready)
    print("配信停止サーバーを停止しました")
    return 0


UNSUBSCRIBE_SERVER = Command(
    "unsubscribe-server",
    help="ワンクリック配信停止（RFC 8058）を受け付けるサーバーを起動する",
    description="メールの配信停止リンク（List-Unsubscribe, RFC 8058 のワンクリック）を"
    "受け付けます。お店の HTTPS（リバースプロキシ）の後ろで動かします。"
    "BCARTNB_UNSUBSCRIBE_SECRET が必要です。",
    args=(
        arg("--host", default="127.0.0.1", help="待ち受けるアドレス（既定: 127.0.0.1）"),
        arg("--port", type=int, default=None, help="ポート番号（既定: 8026）"),
        arg(
            "--prefix",
            default=None,
            help="トークンの前のパス（既定: 設定の unsubscribe_url から。例: /mail/stop/）",
        ),
    ),
    run=_cmd_unsubscribe_server,
)

SINK = Command(
    "sink",
    help="受け取ったメールを Maildir に保存する SMTP サーバーを起動します（試験用）",
    description="試験用の SMTP サーバーを起動します。誰にもメールを届けず、"
    "受け取ったメールを Maildir に保存します。",
    args=(
        arg("--port", type=int, default=8025, help="待ち受けるポート（既定 8025）"),
        arg("--host", default="127.0.0.1", help="待ち受けるアドレス（既定 127.0.0.1）"),
        arg("--maildir", default="maildir", help="メールの保存先（既定 ./maildir）"),
    ),
    run=_cmd_sink,
)
