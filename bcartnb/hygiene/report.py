"""The list-hygiene report: what ``notebooks/list_hygiene.ipynb`` shows after a scan.

B-Cart caps each month's mail because bounces hurt every shop's deliverability, and a
refused mail still counts; so the report puts the month's bounce rate per campaign first
(bounced addresses / mails sent, a chart labelled by date and subject) under a header that
names the shop, when the report was made and the period it covers, then the addresses
this scan put on the suppression list (masked, as every report masks them), then where the
B-Cart import file was written. It follows :mod:`bcartnb.report`'s rules and is made of its
public blocks (:mod:`bcartnb.report.blocks`, :mod:`bcartnb.report.charts`): every value is
escaped where it lands, addresses are masked, no setting but the month and the file names
is shown.
"""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from bcartnb.campaign import bounce_rates, export_suppressions, listed_now
from bcartnb.hygiene.scan import ScanResult
from bcartnb.privacy import mask_address
from bcartnb.quota import TOKYO, month_of, now_tokyo, parse_month
from bcartnb.report.blocks import (
    Block,
    block,
    escape,
    heading,
    html_table,
    image,
    paragraph,
    show,
    table,
)
from bcartnb.report.charts import chart_text, japanese, png, text_ticks

if TYPE_CHECKING:
    from bcartnb.settings import Settings

__all__ = [
    "HYGIENE_TITLE",
    "bounce_chart",
    "header",
    "new_suppressions",
    "pending_table",
    "scan_table",
    "show_hygiene_report",
]

#: The report's title (its first heading).
HYGIENE_TITLE = "配信停止・不達のレポート"
_LABEL_CHARS = 19  # of a subject under its bar's date (… where cut)


def _month_start(month: str) -> datetime:
    year, mon = parse_month(month).split("-")
    return datetime(int(year), int(mon), 1, tzinfo=TOKYO)


def bounce_chart(rates: pd.DataFrame, month: str) -> bytes:
    """The bounce rate per campaign, as bars labelled by date and subject (PNG)."""
    from matplotlib.figure import Figure

    with japanese():
        fig = Figure(figsize=(7, 3.4))
        ax = fig.add_subplot()
        if len(rates):
            labels = [
                f"{d}\n{chart_text(s, _LABEL_CHARS)}"
                for d, s in zip(rates["date"], rates["subject"], strict=True)
            ]
            percent = [100.0 * r for r in rates["rate"]]
            ax.bar(range(len(rates)), percent, width=0.6, color="#c0392b")
            for i, (b, n) in enumerate(zip(rates["bounces"], rates["sent"], strict=True)):
                ax.annotate(f"{b:,}/{n:,}", (i, percent[i]), ha="center", va="bottom", fontsize=8)
            text_ticks(ax, labels, fontsize=8)
            ax.set_xlim(-0.75, max(len(rates), 3) - 0.25)
        else:
            ax.text(0.5, 0.5, "この月の配信はまだありません", ha="center", va="center")
            ax.set_xticks([])
        ax.set_title(f"{month} のキャンペーン別 不達率（不達アドレス数 / 送信数）")
        ax.set_ylabel("%")
        ax.set_ylim(bottom=0)
        return png(fig)


def header(month: str, settings: Settings | None, made: datetime | None = None) -> Block:
    """Whose list, when the report was made and which month the rates cover."""
    start = _month_start(month)
    end = (start + pd.offsets.MonthEnd(0)).date()
    rows = []
    if settings is not None:
        rows.append(("ショップ", settings.shop_name or settings.from_addr))
    rows += [
        ("作成日時", f"{(made or now_tokyo()).astimezone(TOKYO):%Y-%m-%d %H:%M}（日本時間）"),
        ("対象期間", f"{start:%Y-%m-%d} 〜 {end:%Y-%m-%d}（{month}、日本時間）"),
    ]
    frame = pd.DataFrame(rows, columns=["項目", "内容"]).set_index("項目")
    body = f"<h1>{escape(HYGIENE_TITLE)}</h1>{html_table(frame)}"
    return block(body, f"{HYGIENE_TITLE}\n{frame.to_string()}")


def scan_table(result: ScanResult) -> pd.DataFrame:
    """The scan's counts, in the shop's words."""
    data = result.as_dict()
    labels = {
        "scanned": "読み込んだメール",
        "hard": "不達（恒久的なエラー）",
        "soft": "不達（一時的なエラー）",
        "unsubscribes": "配信停止の申し出",
        "complaints": "迷惑メールの報告",
        "unmatched": "照合できない通知（無視）",
        "unverified": "確認待ちの通知",
        "suppressed_new": "新しく配信停止にした宛先",
        "repeated": "前回までに記録済み",
    }
    return pd.DataFrame(
        {"項目": list(labels.values()), "件数": [int(data[k]) for k in labels]}
    ).set_index("項目")


def new_suppressions(settings: Settings, result: ScanResult) -> pd.DataFrame:
    """The addresses this scan listed and still listed (not taken off since), masked, with
    why and whose they were."""
    rows = []
    for s in listed_now(settings, result.suppressed_new):
        rows.append(
            {
                "メールアドレス": mask_address(s.address),
                "理由": s.label,
                "会員ID": "" if s.member_id is None else str(s.member_id),
                "キャンペーンID": s.campaign_id or "",
                "詳細": s.detail or "",
            }
        )
    return pd.DataFrame(
        rows, columns=["メールアドレス", "理由", "会員ID", "キャンペーンID", "詳細"]
    )


def pending_table(result: ScanResult) -> pd.DataFrame:
    """The notices of this mailbox still waiting to be confirmed (masked), one row each."""
    rows = [
        {
            "ID": p.id,
            "メールアドレス": p.address,
            "会員ID": "" if p.member_id is None else str(p.member_id),
            "内容": p.label,
            "ステータス": p.status or "",
            "日時": p.at.astimezone(TOKYO).strftime("%Y-%m-%d %H:%M"),
        }
        for p in result.pending
    ]
    columns = ["ID", "メールアドレス", "会員ID", "内容", "ステータス", "日時"]
    return pd.DataFrame(rows, columns=columns)


def _show_pending(result: ScanResult) -> None:
    """Why some notices changed nothing, and the one step that confirms a real one."""
    if result.unmatched:
        show(
            paragraph(
                f"このショップのメールと照合できない通知 {result.unmatched:,} 件は無視しました"
                "（送っていないアドレス・他のメールへの通知・偽造の疑い）。"
            )
        )
    if not result.pending:
        return
    show(heading(2, "確認待ちの通知（伏せ字）"))
    show(
        paragraph(
            "Message-ID も VERP もなく、このショップのメールと照合できない通知です"
            "（一部の携帯キャリアの不達通知など）。配信停止にはしていません。"
            "本物と判断したものは bcartnb bounces confirm ID で確定してください。"
        )
    )
    show(table(pending_table(result), index=False))


def show_hygiene_report(
    settings: Settings,
    result: ScanResult | None,
    *,
    month: str | None = None,
    export: str | os.PathLike[str] | None = None,
    members: pd.DataFrame | None = None,
) -> dict[str, Any]:
    """Show the report in the notebook; write the B-Cart CSV when ``export`` is given.
    ``settings`` find the shop's ledger and name the shop in the header.

    Returns the counts (what a caller or a test reads back).
    """
    month = parse_month(month) if month else month_of(now_tokyo())
    summary: dict[str, Any] = {"month": month}
    show(header(month, settings))
    if result is not None:
        show(heading(2, "不達・配信停止メールの読み込み"))
        show(table(scan_table(result)))
        summary.update(result.as_dict())
    rates = bounce_rates(settings, month)
    show(heading(2, f"{month} のキャンペーン別 不達率"))
    show(image(bounce_chart(rates, month), f"{month} のキャンペーン別 不達率のグラフ"))
    shown = rates.assign(rate=[f"{100 * r:.1f}%" for r in rates["rate"]]).rename(
        columns={
            "campaign_id": "キャンペーンID",
            "date": "配信日",
            "subject": "件名",
            "sent": "送信数",
            "bounces": "不達",
            "complaints": "苦情",
            "rate": "不達率",
        }
    )
    show(table(shown, index=False))
    summary["campaigns"] = [
        {k: (float(v) if k == "rate" else v) for k, v in row.items()}
        for row in rates.to_dict("records")
    ]
    if result is not None:
        show(heading(2, "新しく配信停止にした宛先（伏せ字）"))
        fresh = new_suppressions(settings, result)
        if len(fresh):
            show(table(fresh, index=False))
        else:
            show(paragraph("この読み込みで新しく配信停止にした宛先はありません。"))
        _show_pending(result)
    if export is not None:
        done = export_suppressions(settings, export, members=members)
        show(heading(2, "B-Cart への反映"))
        show(
            paragraph(
                f"会員インポート用のCSVを書き出しました: {Path(done.path).name}"
                f"（配信停止 {len(done.member_ids):,} 件、メール案内 = 受け取らない）。"
                "B-Cart の会員インポートで取り込むと、B-Cart からのメールも止まります。"
                f"不達 {done.bounces:,} 件は確認用の {Path(str(done.bounces_path)).name} に"
                "分けました（取り込まないでください: 不達は会員の希望ではありません）。"
            )
        )
        if done.without_id:
            show(
                paragraph(
                    f"会員IDを決められない配信停止 {len(done.without_id):,} 件は書き出していません"
                    "（members に会員ファイルを指定すると探します）。"
                )
            )
        summary["export"] = {
            "rows": len(done.member_ids),
            "without_id": len(done.without_id),
            "bounces": done.bounces,
        }
    return summary
