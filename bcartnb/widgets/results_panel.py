"""配信履歴と結果 on the first step: past campaigns with 開封率 and クリック率, and the next step.

The table is :func:`~bcartnb.campaign.results_history`'s (the rates ``bcartnb results``
counts: people, over the mails sent, machines never in them). Below it, 配信結果で絞り込む
picks a sent campaign and who of its members to mail now: 開封しなかった会員, 開封した会員 or
リンクをクリックした会員. That is the campaign key ``results`` with a filter on its columns
(:mod:`bcartnb.campaign.results`): the member frame gains 配信・開封・クリック and the
filter ``{"開封": false}`` (…) is ANDed with the 絞込 controls by
:func:`~bcartnb.segments.combine_filters`, so the campaign the wizard makes is the one a
campaign file with ``results = "ID"`` makes, and a follow-up is a new mail to them.
"""

from __future__ import annotations

import html
from typing import Any, Final

import ipywidgets as widgets
import pandas as pd

from bcartnb import campaign
from bcartnb.quota import TOKYO
from bcartnb.segments import combine_filters
from bcartnb.settings import Settings

from ._common import fit, row

__all__ = ["WHO", "ResultsPanel", "history_html"]

#: The choices of 配信結果で絞り込む: label → the filter on the results columns.
WHO: Final[dict[str, dict[str, Any]]] = {
    "開封しなかった会員": {"開封": False},
    "開封した会員": {"開封": True},
    "リンクをクリックした会員": {"クリック": True},
}
#: Campaigns shown in the table, newest first.
SHOWN: Final = 10
_NONE: Final = "使わない"


def history_html(history: pd.DataFrame) -> str:
    """The newest :data:`SHOWN` campaigns that sent mail: 送信日時, キャンペーンID, 配信数,
    開封率, クリック率 (— where a campaign measured nothing)."""
    sent = history[history["sent"] > 0].iloc[::-1].head(SHOWN)
    if sent.empty:
        return "<i>送信したキャンペーンはまだありません。</i>"
    head = "".join(
        f'<th style="text-align:left;padding:0 8px">{h}</th>'
        for h in ("送信日時", "キャンペーンID", "配信数", "開封率", "クリック率")
    )
    rows = []
    for r in sent.to_dict("records"):
        cells = (
            f"{r['created_at'].astimezone(TOKYO):%Y-%m-%d %H:%M}",
            str(r["campaign_id"]),
            f"{int(r['sent']):,}件",
            campaign.history_rate_text(r["open_rate"]),
            campaign.history_rate_text(r["click_rate"]),
        )
        rows.append(
            "<tr>"
            + "".join(f'<td style="padding:0 8px">{html.escape(c)}</td>' for c in cells)
            + "</tr>"
        )
    note = html.escape(
        "開封率・クリック率は人数で、機械（メールゲートウェイなど）のアクセスは含めません。"
        "— は計測していないキャンペーンです。"
    )
    return (
        f'<table class="bcartnb-history"><thead><tr>{head}</tr></thead>'
        f'<tbody>{"".join(rows)}</tbody></table><div style="color:#555;font-size:90%">{note}</div>'
    )


class ResultsPanel(widgets.VBox):  # type: ignore[misc]
    """配信履歴と結果: the history table, and 配信結果で絞り込む (campaign, who)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.table = widgets.HTML("")
        self.campaign = widgets.Dropdown(options=[(_NONE, None)], description="キャンペーン")
        self.who = widgets.Dropdown(options=list(WHO), description="送る相手")
        self.campaign.add_class("bcartnb-results-campaign")
        self.who.add_class("bcartnb-results-who")
        self.use = widgets.Button(description="配信結果で絞り込む")
        self.use.add_class("bcartnb-results-use")
        fit(self.use)
        #: a click reads the results again (people keep opening); a 絞込 reuses them
        self._fresh = False
        self.use.on_click(lambda _b: setattr(self, "_fresh", True))
        self.add_class("bcartnb-results")
        super().__init__(
            [
                widgets.HTML("<b>配信履歴と結果</b>"),
                self.table,
                row(self.campaign, self.who, self.use),
            ]
        )

    @property
    def controls(self) -> list[widgets.Widget]:
        return [self.campaign, self.who, self.use]

    def refresh(self) -> None:
        """Read the history again (a campaign may have been sent since); keep the choice."""
        history = campaign.results_history(self.settings)
        self.table.value = history_html(history)
        sent = history[history["sent"] > 0].iloc[::-1]
        chosen = self.campaign.value
        options = [(_NONE, None)] + [
            (
                f"{r['created_at'].astimezone(TOKYO):%m/%d %H:%M}  {r['campaign_id']}",
                r["campaign_id"],
            )
            for r in sent.to_dict("records")
        ]
        self.campaign.options = options
        self.campaign.value = chosen if chosen in {v for _, v in options} else None

    def narrow(
        self, members: pd.DataFrame, flt: dict[str, Any]
    ) -> tuple[pd.DataFrame, dict[str, Any]]:
        """The members with the chosen campaign's results columns, and ``flt`` ANDed with the
        chosen 送る相手 (a column in both is an error); unchanged when none is chosen, the
        columns of an earlier choice taken off."""
        cid = self.campaign.value
        keep = None if self._fresh else cid
        self._fresh = False
        if cid is None:
            return campaign.members_without_results(members), flt
        joined = campaign.members_with_results(
            campaign.members_without_results(members, keep=keep), cid, self.settings
        )
        combined = combine_filters(WHO[self.who.value], flt, joined.columns, "配信結果")
        campaign.check_results_filter(joined, combined)
        return joined, combined
