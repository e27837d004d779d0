"""``bcartnb results ID``: did the mail work? 配信数, 開封数・開封率, クリック数・クリック率.

People only; what machines fetched (mail gateways, scanners, HEAD requests) is shown apart,
never added in (:mod:`bcartnb.hygiene.tracking_server` says how a machine is told apart).
The figures and their breakdowns are :func:`bcartnb.campaign.campaign_breakdown`'s; this
module only words them, as text, JSON or CSV.
"""

from __future__ import annotations

import argparse
import csv
import io
import sys
from typing import TYPE_CHECKING

from bcartnb.cli.common import JSON, Command, arg, switch
from bcartnb.cli.output import jst, print_json, say

if TYPE_CHECKING:
    import pandas as pd

    from bcartnb.campaign import CampaignResults

__all__ = ["RESULTS"]


def _cmd_results(args: argparse.Namespace) -> int:
    from bcartnb import campaign
    from bcartnb.settings import load_settings

    settings = load_settings()
    found = campaign.campaign_breakdown(settings, args.campaign_id)
    if args.csv:
        _write_csv(found.members_frame() if args.by == "member" else found.links_frame())
        return 0
    if args.json:
        print_json(found.to_dict())
        return 0
    say("\n".join(_lines(found)))
    return 0


def _write_csv(frame: pd.DataFrame) -> None:
    """UTF-8 with a BOM (Excel reads it as UTF-8 only then), CRLF rows, to standard output;
    a text cell a spreadsheet would run (a company name ``=…``) is written as text."""
    from bcartnb.spreadsheet import BOM, text_cell

    cells = frame.map(lambda v: text_cell(v) if isinstance(v, str) else v)
    buf = io.StringIO()
    cells.to_csv(buf, index=False, lineterminator="\r\n", quoting=csv.QUOTE_MINIMAL)
    sys.stdout.buffer.write((BOM + buf.getvalue()).encode("utf-8"))
    sys.stdout.buffer.flush()


def _lines(found: CampaignResults) -> list[str]:
    from bcartnb.campaign import LIMITS_JA, rate_text

    t = found.totals
    lines = [
        f"キャンペーン: {t.campaign_id}",
        f"配信数: {t.delivered:,}件",
        f"開封数: {t.opened:,}人（開封率 {rate_text(t.open_rate)}）",
        f"クリック数: {t.clicked:,}人（クリック率 {rate_text(t.click_rate)}、のべ {t.clicks:,}回）",
        f"機械によるアクセス（人数に含めません）: 開封 {t.machine_opens:,}回、"
        f"クリック {t.machine_clicks:,}回",
        *(f"注意: {note}" for note in found.notes),
    ]
    if t.links:
        lines.append("リンク別のクリック（番号 / 人数 / クリック率 / のべ回数 / 機械 / URL）:")
        for link in t.links:
            rate = rate_text(link.people / t.delivered if t.delivered else 0.0)
            lines.append(
                f"  {link.number:>3}  {link.people:>6,}人  {rate:>6}  {link.clicks:>6,}回  "
                f"{link.machine:>5,}回  {link.url}"
            )
    else:
        lines.append("リンクの計測はありません（[tracking] url が未設定か、track = false）。")
    for title, column in (("都道府県", "pref"), ("価格グループ", "price_group_id")):
        lines += _group_lines(title, found.by(column))
    lines += _time_lines(found.over_time())
    if t.last_at is not None and t.first_at is not None:
        lines.append(f"最初の記録: {jst(t.first_at.isoformat())}")
        lines.append(f"最後の記録: {jst(t.last_at.isoformat())}")
    lines.append(LIMITS_JA)
    return lines


def _group_lines(title: str, frame: pd.DataFrame) -> list[str]:
    from bcartnb.campaign import rate_text

    if frame.empty:
        return []
    out = [f"{title}別（配信数 / 開封率 / クリック率）:"]
    for row in frame.to_dict("records"):
        out.append(
            f"  {row['group']}: {row['delivered']:,}件  開封率 {rate_text(row['open_rate'])}"
            f"  クリック率 {rate_text(row['click_rate'])}"
        )
    return out


def _time_lines(frame: pd.DataFrame) -> list[str]:
    if frame.empty:
        return []
    out = ["送信からの経過（はじめて開封した人 / はじめてクリックした人）:"]
    for row in frame.itertuples(index=False):
        if row.opened or row.clicked:
            out.append(f"  {row.label}: 開封 {row.opened:,}人  クリック {row.clicked:,}人")
    return out


RESULTS = Command(
    "results",
    help="キャンペーンの開封数・クリック数を表示します",
    description="キャンペーンの配信数、開封数・開封率、クリック数・クリック率（人数。"
    "メールゲートウェイなど機械によるアクセスは別に数えます）と、リンク別・都道府県別・"
    "価格グループ別のクリック率、送信からの経過を表示します。--csv は Excel で開ける"
    "CSV（UTF-8、BOM付き）を出力します: リンクごとに1行（リンク番号, URL, クリック人数, "
    "クリック率, のべクリック数, 機械のクリック数）、--by member なら会員ごとに1行"
    "（会員ID, 会社名, 都道府県, 価格グループ, メールアドレス, 配信, 開封, クリック, 開封回数, "
    "クリック回数, 機械の開封回数, 機械のクリック回数, 最初の開封, 最初のクリック）。",
    args=(
        arg("campaign_id", help="キャンペーンID（bcartnb campaigns で表示されます）"),
        JSON,
        switch("--csv", "CSV（UTF-8、BOM付き）で出力します。例: --csv > results.csv"),
        arg(
            "--by",
            choices=("link", "member"),
            default="link",
            help="--csv の行: link（リンクごと、既定）か member（会員ごと）",
        ),
    ),
    run=_cmd_results,
)
