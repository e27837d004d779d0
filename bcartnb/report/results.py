"""The report's 開封・クリック section: did the mail work, in the marketer's words.

配信数, 開封数・開封率 and クリック数・クリック率 (people; machines apart and never in a rate),
each link's clicks, the rates by 都道府県 and 価格グループ, and a chart of who responded when,
with the limits of the numbers written beside them (:data:`bcartnb.campaign.LIMITS_JA`).
The figures are :func:`bcartnb.campaign.campaign_breakdown`'s, gathered with the report; this
module reads nothing. A link's URL is the template's text: shown escaped in the tables, and
drawn in the chart with mathtext parsing off (``$…$`` in a URL is text, not a formula).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final
from urllib.parse import quote

import pandas as pd

from bcartnb.report.blocks import Block, heading, image, paragraph, table
from bcartnb.report.charts import japanese, png

if TYPE_CHECKING:
    from bcartnb.campaign import CampaignResults

__all__ = ["results_blocks", "results_chart", "results_table"]

#: The section's heading (tests and readers look for it).
HEADING: Final = "開封・クリック"
_URL_SHOWN: Final = 48
_URL_SAFE: Final = ":/?#[]@!$&'()*+,;=%-._~ "


def results_table(found: CampaignResults) -> pd.DataFrame:
    """配信数, 開封数・開封率, クリック数・クリック率, and the machines' requests apart."""
    from bcartnb.campaign import rate_text

    t = found.totals
    opened = f"{t.opened:,}人（{rate_text(t.open_rate)}）"
    if not found.opens_measured:
        opened += "　※計測なし（クリックした人のみ）"
    rows = [
        ("配信数", f"{t.delivered:,}件"),
        ("開封数・開封率", opened),
        ("クリック数・クリック率", f"{t.clicked:,}人（{rate_text(t.click_rate)}）"),
        ("のべクリック数", f"{t.clicks:,}回"),
        (
            "機械によるアクセス（人数・率に含めません）",
            f"開封 {t.machine_opens:,}回、クリック {t.machine_clicks:,}回",
        ),
    ]
    return pd.DataFrame(rows, columns=["項目", "結果"]).set_index("項目")


def _links_table(found: CampaignResults) -> pd.DataFrame:
    from bcartnb.campaign import rate_text

    d = found.totals.delivered
    rows = [
        (
            x.number,
            x.url,
            f"{x.people:,}人",
            rate_text(x.people / d if d else 0.0),
            x.clicks,
            x.machine,
        )
        for x in found.totals.links
    ]
    columns = ["番号", "URL", "クリック数", "クリック率", "のべ回数", "機械"]
    return pd.DataFrame(rows, columns=columns).set_index("番号")


def _groups_table(frame: pd.DataFrame, label: str) -> pd.DataFrame:
    from bcartnb.campaign import rate_text

    out = pd.DataFrame(
        {
            label: frame["group"],
            "配信数": frame["delivered"],
            "開封数": frame["opened"],
            "開封率": [rate_text(r) for r in frame["open_rate"]],
            "クリック数": frame["clicked"],
            "クリック率": [rate_text(r) for r in frame["click_rate"]],
        }
    )
    return out.set_index(label)


def results_blocks(found: CampaignResults | None, *, later: str | None = None) -> list[Block]:
    """The section; for a run just done, ``later``: where its numbers will be (nobody has
    opened the mail yet); nothing when neither (a dry run, a campaign not measured)."""
    from bcartnb.campaign import LIMITS_JA

    if found is None:
        return [heading(2, HEADING), paragraph(later)] if later else []
    out = [heading(2, HEADING), table(results_table(found))]
    out += [paragraph(note) for note in found.notes]
    out.append(paragraph(LIMITS_JA))
    if found.totals.links:
        out += [heading(3, "リンク別のクリック"), table(_links_table(found))]
    for title, column in (("都道府県", "pref"), ("価格グループ", "price_group_id")):
        groups = found.by(column)
        if not groups.empty:
            out += [heading(3, f"{title}別"), table(_groups_table(groups, title))]
    if found.totals.opened or found.totals.clicked:
        out.append(image(results_chart(found), "送信からの経過とリンク別のクリックのグラフ"))
    return out


def results_chart(found: CampaignResults) -> bytes:
    """Left: people who first opened and first clicked, by time since sending (an hour a
    bar for two days, then a day a bar). Right: each link's clickers, its URL as the label."""
    from matplotlib.figure import Figure

    times = found.over_time()
    links = found.totals.links
    with japanese():
        fig = Figure(figsize=(9, 3.4))
        left, right = fig.subplots(1, 2, width_ratios=[3, 2])
        x = list(range(len(times)))
        left.bar(
            [i - 0.2 for i in x], times["opened"].tolist(), width=0.4, label="開封", color="#1a4d8f"
        )
        left.bar(
            [i + 0.2 for i in x],
            times["clicked"].tolist(),
            width=0.4,
            label="クリック",
            color="#e8710a",
        )
        step = max(1, len(x) // 8)
        left.set_xticks(
            x[::step], times["label"].tolist()[::step], rotation=30, ha="right", fontsize=7
        )
        left.set_title("送信からの経過（はじめて開封・クリックした人）")
        left.set_ylabel("人")
        left.legend(fontsize=8)
        names = [_short(f"{x.number}: {x.url}") for x in links][::-1]
        right.barh(range(len(links)), [x.people for x in links][::-1], color="#e8710a")
        right.set_yticks(range(len(links)), names, fontsize=7)
        for tick in right.get_yticklabels():
            tick.set_parse_math(False)  # a URL is text: `$…$` in it is no formula
        right.set_title("リンク別のクリック（人）")
        if not links:
            right.text(0.5, 0.5, "計測したリンクはありません", ha="center", va="center")
        return png(fig)


def _short(label: str) -> str:
    """ASCII (percent-encoded as a browser would send it), so every character is in the
    chart's font, and short enough not to squeeze the bars."""
    label = quote(label, safe=_URL_SAFE)
    return label if len(label) <= _URL_SHOWN else label[: _URL_SHOWN - 1] + "…"
