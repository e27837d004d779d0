"""``bcartnb segments``: the saved filters (セグメント) the wizard, campaign files and
papermill use by name."""

from __future__ import annotations

import argparse
import json

from bcartnb.cli.common import JSON, Command, arg, switch
from bcartnb.cli.output import print_json

__all__ = ["SEGMENTS"]


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
        print_json(
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


SEGMENTS = Command(
    "segments",
    help="保存した絞込条件（セグメント）を一覧・保存・削除します",
    description="絞込条件に名前を付けて segments.toml に保存し、ウィザード・"
    'キャンペーンファイル（segment = "名前"）・papermill で使えるようにします。',
    args=(
        arg("--save", default=None, help="--filter の条件をこの名前で保存します"),
        arg(
            "--filter",
            default=None,
            metavar="JSON",
            help='--save と使う絞込条件。例: {"pref": "東京都"}',
        ),
        switch("--overwrite", "--save で同じ名前を上書きします"),
        arg("--delete", default=None, help="この名前のセグメントを削除します"),
        JSON,
    ),
    run=_cmd_segments,
)
