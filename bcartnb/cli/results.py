"""``bcartnb results ID``: did the mail work? 配信数, 開封数・開封率, クリック数・クリック率.

People only; what machines fetched (mail gateways, scanners, HEAD requests) is shown apart,
never added in (:mod:`bcartnb.hygiene.tracking_server` says how a machine is told apart).
"""

from __future__ import annotations

import argparse

from bcartnb.cli.common import JSON, Command, arg
from bcartnb.cli.output import jst, print_json, say

__all__ = ["RESULTS"]

#: What the numbers cannot see, said wherever they are shown.
LIMITS_JA = (
    "※ 開封は、メールの画像が表示されたときだけ数えられます（画像を表示しない設定の人、"
    "テキストメールは数えられません）。Apple メールのプライバシー保護は届いたメールの画像を"
    "すべて読み込むため、開かれていなくても開封に数えられることがあります。"
    "リンクをクリックした人は開封にも数えます。"
)


def _pct(rate: float) -> str:
    return f"{rate * 100:.1f}%"


def _cmd_results(args: argparse.Namespace) -> int:
    from bcartnb import campaign
    from bcartnb.settings import load_settings

    settings = load_settings()
    found = campaign.campaign_results(settings, args.campaign_id)
    if args.json:
        print_json(found.to_dict())
        return 0
    lines = [
        f"キャンペーン: {found.campaign_id}",
        f"配信数: {found.delivered:,}件",
        f"開封数: {found.opened:,}人（開封率 {_pct(found.open_rate)}）",
        f"クリック数: {found.clicked:,}人（クリック率 {_pct(found.click_rate)}、"
        f"のべ {found.clicks:,}回）",
        f"機械によるアクセス（人数に含めません）: 開封 {found.machine_opens:,}回、"
        f"クリック {found.machine_clicks:,}回",
    ]
    if found.links:
        lines.append("リンク別のクリック（番号 / 人数 / のべ回数 / 機械 / URL）:")
        for link in found.links:
            lines.append(
                f"  {link.number:>3}  {link.people:>6,}人  {link.clicks:>6,}回  "
                f"{link.machine:>5,}回  {link.url}"
            )
    else:
        lines.append("リンクの計測はありません（[tracking] url が未設定か、track = false）。")
    if found.last_at is not None and found.first_at is not None:
        lines.append(f"最初の記録: {jst(found.first_at.isoformat())}")
        lines.append(f"最後の記録: {jst(found.last_at.isoformat())}")
    lines.append(LIMITS_JA)
    say("\n".join(lines))
    return 0


RESULTS = Command(
    "results",
    help="キャンペーンの開封数・クリック数を表示します",
    description="キャンペーンの配信数、開封数・開封率、クリック数・クリック率（人数。"
    "メールゲートウェイなど機械によるアクセスは別に数えます）と、リンク別のクリックを表示します。",
    args=(arg("campaign_id", help="キャンペーンID（bcartnb campaigns で表示されます）"), JSON),
    run=_cmd_results,
)
