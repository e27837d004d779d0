"""The campaign report's document: its sections, in the order a reviewer reads them.

One :class:`CampaignReport` holds what the document says, gathered either from the run that
just happened or afterwards from the ledger (:mod:`bcartnb.report.gather`);
:func:`report_blocks` turns it into the same outputs both ways. Each section is a short
function of the report and nothing else: it reads no file and no ledger, so what a section
shows is what the gathered report holds, masked when it was put in.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

import pandas as pd

from bcartnb.privacy import mask_text
from bcartnb.quota import TOKYO
from bcartnb.report.blocks import (
    Block,
    block,
    bullets,
    escape,
    heading,
    html_table,
    image,
    paragraph,
    table,
    text_html,
)
from bcartnb.report.charts import breakdown_chart, usage_chart
from bcartnb.report.mail import sample_block
from bcartnb.report.results import results_blocks
from bcartnb.report.tables import (
    MEMBERS_SHOWN,
    counts_table,
    failures_table,
    members_table,
    parameters_table,
    quota_table,
    reasons_table,
)

if TYPE_CHECKING:
    from bcartnb.campaign import CampaignResults

__all__ = [
    "DRY_RUN_BANNER",
    "CampaignReport",
    "outcome_words",
    "report_blocks",
    "report_title",
]


@dataclass
class CampaignReport:
    """Everything the report document shows, gathered once: from a run in the notebook
    (:func:`~bcartnb.report.gather.from_run`) or from the ledger afterwards
    (:func:`~bcartnb.report.gather.from_ledger`), so both give the same document.
    Addresses are masked when they are put in here."""

    summary: dict[str, Any]
    message: str
    subject: str
    sender: str
    plan: str
    user: str
    host: str
    started: datetime | None
    finished: datetime | None
    scheduled_at: str | None
    params: dict[str, Any]
    usage: dict[str, int]
    usage_labels: dict[str, str]
    admin: str
    sample: dict[str, str] | None
    sendable: pd.DataFrame | None
    unsendable: pd.DataFrame | None
    failures: list[tuple[int, str, int | None, str]]
    resume_command: str | None
    notes: list[str] = field(default_factory=list)
    #: The member whose mail ``subject`` is (as received, personal values masked); None
    #: when no mail could be made again and ``subject`` is the template's.
    subject_member: str | None = None
    #: 開封・クリック (:func:`bcartnb.campaign.campaign_breakdown`), gathered from the
    #: ledger; None for a dry run and a run just done (nobody has opened it yet)
    results: CampaignResults | None = None
    #: Where 開封・クリック will be, for a run that just sent measured mail (its report has
    #: no numbers yet); None otherwise
    results_later: str | None = None

    @property
    def campaign_id(self) -> str:
        return str(self.summary["campaign_id"])

    @property
    def title(self) -> str:
        return report_title(self.campaign_id)


def report_title(campaign_id: str) -> str:
    """The document's title (its ``<title>`` and first heading)."""
    return f"メール配信レポート {campaign_id}"


def report_blocks(doc: CampaignReport) -> list[Block]:
    """The document, block by block, in the order a reviewer reads it."""
    return [
        *_dry_run_banner(doc),
        _header(doc),
        paragraph(doc.message),
        *_notes(doc),
        *_counts(doc.summary),
        *_usage(doc),
        *_breakdown(doc.sendable),
        *results_blocks(doc.results, later=doc.results_later),
        *_sample(doc),
        *_unsendable(doc.unsendable),
        *_failures(doc.failures),
        heading(2, "管理者への配信控え"),
        paragraph(doc.admin),
        *_campaign_id(doc),
        heading(2, "パラメータ"),
        table(parameters_table(doc.params)),
    ]


#: The dry run's banner: a report that sent nothing must not pass for one that did.
DRY_RUN_BANNER = "確認用（未送信）"
_BANNER_STYLE = (
    "border:3px solid #c0392b;background:#fdecea;color:#8e1b10;padding:8px 12px;margin:0 0 0.5em"
)


def _dry_run_banner(doc: CampaignReport) -> list[Block]:
    if not doc.summary.get("dry_run"):
        return []
    words = "確認のみの実行のレポートです。メールは1通も送信していません。"
    return [
        block(
            f'<p class="bcartnb-banner" style="{_BANNER_STYLE}">'
            f'<b style="font-size:1.4em">{escape(DRY_RUN_BANNER)}</b><br>{escape(words)}</p>',
            f"【{DRY_RUN_BANNER}】{words}",
        )
    ]


def _notes(doc: CampaignReport) -> list[Block]:
    """What the reader must know first: the gathering's notes, warnings, the mail's checks."""
    s = doc.summary
    out = [block(f'<p class="bcartnb-note">{text_html(note)}</p>', note) for note in doc.notes]
    if s.get("warnings"):
        warnings = [mask_text(str(w)) for w in s["warnings"]]
        out += [heading(2, "注意"), bullets("bcartnb-warnings", warnings)]
    if s.get("checks"):  # 送信前の確認 (bcartnb.mailcheck): warnings about the mail itself
        lines = [
            f"{c.get('message', '')}" + (f"（{c['detail']}）" if c.get("detail") else "")
            for c in s["checks"]
        ]
        who = f"会員ID {s['checks_member']} のメール" if s.get("checks_member") else "メール"
        out += [heading(2, f"送信前の確認（{who}）"), bullets("bcartnb-checks", lines)]
    return out


def _counts(s: dict[str, Any]) -> list[Block]:
    return [
        heading(2, "送信件数"),
        table(counts_table(s)),
        heading(3, "送信できない理由"),
        table(reasons_table(s["reasons"])),
    ]


def _usage(doc: CampaignReport) -> list[Block]:
    """The month against B-Cart's cap: the table, then the chart of every campaign."""
    s = doc.summary
    quota = s["quota"]
    note = "（確認のみ: 今回分は見込み）" if s.get("dry_run") else ""
    chart = usage_chart(
        doc.usage, quota.get("cap"), str(quota.get("month", "")), doc.campaign_id, doc.usage_labels
    )
    return [
        heading(2, "メール配信上限数"),
        table(quota_table(quota)),
        paragraph(f"{quota.get('month', '')} の配信数{note}"),
        image(chart, "今月の配信数のグラフ"),
    ]


def _breakdown(sendable: pd.DataFrame | None) -> list[Block]:
    if sendable is None:
        return []
    return [
        heading(2, "送信対象の内訳"),
        image(breakdown_chart(sendable, "pref"), "都道府県別の送信件数"),
        image(breakdown_chart(sendable, "price_group_id"), "価格グループ別の送信件数"),
    ]


def _sample(doc: CampaignReport) -> list[Block]:
    dry_run = doc.summary.get("dry_run")
    out = [heading(2, "会員に届くメール" if not dry_run else "送信されるメールの例")]
    if doc.sample is not None:
        out.append(sample_block(doc.sample))
    elif doc.summary.get("sendable") == 0:
        out.append(paragraph("送信できる会員がいません。"))
    else:
        out.append(paragraph("メールの例は表示できません（上の注記を参照）。"))
    return out


def _unsendable(unsendable: pd.DataFrame | None) -> list[Block]:
    out = [heading(2, "送信できない会員")]
    if unsendable is None:
        out.append(paragraph("一覧は表示できません（上の注記を参照）。"))
    elif unsendable.empty:
        out.append(paragraph("ありません。"))
    else:
        out.append(table(members_table(unsendable)))
        if len(unsendable) > MEMBERS_SHOWN:
            out.append(paragraph(f"ほか {len(unsendable) - MEMBERS_SHOWN:,} 件"))
    return out


def _failures(failures: list[tuple[int, str, int | None, str]]) -> list[Block]:
    shown = table(failures_table(failures)) if failures else paragraph("ありません。")
    return [heading(2, "送信に失敗した会員"), shown]


def _campaign_id(doc: CampaignReport) -> list[Block]:
    """The id to quote, and the command that sends the rest when some is left."""
    lines = [("キャンペーンID", doc.campaign_id)]
    if doc.resume_command:
        lines.append(("残りを送る再開コマンド", doc.resume_command))
    body = "<br>".join(f"{label}: <code>{escape(value)}</code>" for label, value in lines)
    plain = "\n".join(f"{label}: {value}" for label, value in lines)
    return [heading(2, "キャンペーンIDと再開"), block(f"<p>{body}</p>", plain)]


def _header(doc: CampaignReport) -> Block:
    s = doc.summary
    rows = [
        ("キャンペーンID", doc.campaign_id),
        (
            "件名" if doc.subject_member is None else f"件名（会員ID {doc.subject_member} 宛）",
            doc.subject,
        ),
        ("差出人（From）", doc.sender),
        ("プラン", doc.plan),
        ("実行したユーザー", f"{doc.user}（マシン: {doc.host}）"),
    ]
    if doc.scheduled_at:
        rows.append(("予定時刻", doc.scheduled_at))
    rows += [
        ("開始", _jst(doc.started)),
        ("終了", _jst(doc.finished) if doc.finished else "（まだ終わっていません）"),
        ("種別", "確認のみ（未送信）" if s.get("dry_run") else "送信"),
        (
            "結果",
            outcome_words(
                str(s.get("status")),
                dry_run=bool(s.get("dry_run")),
                failed=int(s.get("failed") or 0),
                exit_code=s.get("exit_code"),
                sent=int(s.get("sent") or 0),
            ),
        ),
    ]
    frame = pd.DataFrame(rows, columns=["項目", "内容"]).set_index("項目")
    body = f"<h1>{escape(doc.title)}</h1>{html_table(frame)}"
    return block(body, f"{doc.title}\n{frame.to_string()}")


def outcome_words(
    status: str, *, dry_run: bool, failed: int, exit_code: int | None, sent: int = 0
) -> str:
    """The run's result and exit code in Japanese words (the header's 結果)."""
    if dry_run:
        words = "確認のみ: 1通も送信していません"
    elif status == "done" and not failed:
        words = "完了: すべてのメールが受け付けられました"
    elif status == "done":
        words = f"完了: ただし {failed:,} 件は受信側に拒否されました"
    elif status == "interrupted":
        words = "中断: 残りは再開コマンドで送れます"
    elif status == "sending":
        words = "送信中: いま別の処理が送信しています"
    elif status == "cancelled" and sent:
        words = f"取り消し: 送信済み {sent:,} 件のあと、残りは送らずに止めました"
    elif status == "cancelled":
        words = "取り消し: 1通も送らずに止めました"
    else:
        words = "未完了: 残りは再開コマンドで送れます"
    return words if exit_code is None else f"{words}（終了コード {exit_code}）"


def _jst(when: datetime | None) -> str:
    if when is None:
        return "—"
    return f"{when.astimezone(TOKYO):%Y-%m-%d %H:%M:%S}（日本時間）"
