"""Step 4, 確認画面: the final counts, From and the admin copy's address, 注意, 「同じ内容を
再送する」, real rendered mails (the HTML part first), 送信前の確認, 戻る and 送信 with its count,
and under 送信 「予約して送信」 with a date and a time (:mod:`.schedule_form`).

Everything shown comes from the plan and the dry run the wizard made; the previews are the
mails exactly as :func:`bcartnb.compose.preview` renders them. HTML mail is shown in a
sandboxed iframe (no scripts, no same-origin access) so a template cannot touch the notebook.
The plan's warnings (who already has this mail, from which campaign) sit under the counts,
where they are read before 送信, with the box that sends the mail to them again.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Sequence
from typing import Any

import ipywidgets as widgets
import pandas as pd

from bcartnb.audience import REASON_LABELS, REASONS
from bcartnb.compose import Preview
from bcartnb.filters import describe_filter
from bcartnb.mailcheck import HEADING, Finding
from bcartnb.settings import Settings

from ._common import Status, fit, row, warning_html
from .schedule_form import ScheduleForm

__all__ = [
    "ConfirmStep",
    "checks_html",
    "confirm_counts_html",
    "preview_html",
    "repeat_label",
    "send_count_html",
    "sender_html",
    "warnings_html",
]


def confirm_counts_html(summary: dict[str, Any], description: str, keyword: str = "") -> str:
    """The final numbers: 送信件数, 送信できない件数 with reasons, the quota before → after."""
    q = summary["quota"]
    cap = "上限なし" if q.get("cap") is None else f"{q['cap']:,}件"
    reasons = [
        f"{REASON_LABELS[r]} {summary['reasons'][r]:,}件" for r in REASONS if summary["reasons"][r]
    ]
    lines = [
        f"<b>送信件数</b>: {summary['sendable']:,}件",
        f"<b>送信できない件数</b>: {summary['unsendable']:,}件"
        + (f"（{html.escape('、'.join(reasons))}）" if reasons else ""),
        f"<b>今月の配信数</b>: {q['used_before']:,}件 → {q['used_after']:,}件（上限 {cap}）",
        f"<b>絞込条件</b>: {html.escape(description)}"
        + (f"／キーワード「{html.escape(keyword)}」" if keyword else ""),
    ]
    return "<br>".join(lines)


#: The HTML preview's frame: as tall as a mail's first screen on a laptop, never taller
#: than the window (a sandboxed frame cannot be measured from outside, so no auto height).
_HTML_FRAME = "width:100%;height:600px;max-height:85vh;border:1px solid #ccc;background:#fff"


def sender_html(settings: Settings) -> str:
    """差出人 (From) and where the admin copy (配信控え) goes: the shop's own addresses."""
    name = settings.from_name
    sender = f"{name} <{settings.from_addr}>" if name else settings.from_addr
    admin = (
        html.escape(settings.admin)
        if settings.admin
        else "未設定（配信控えは送られません。bcartnb.toml の admin に書いてください）"
    )
    return f"<b>差出人（From）</b>: {html.escape(sender)}<br><b>配信控えの送り先</b>: {admin}"


def send_count_html(sendable: int) -> str:
    """The count beside 送信, so the number is read where the click is made."""
    if not sendable:
        return '<span class="bcartnb-send-count-text">送信できる会員がいません</span>'
    return f'<span class="bcartnb-send-count-text"><b>{sendable:,}件</b>に送信します</span>'


def preview_html(p: Preview) -> str:
    """One rendered mail: subject, the text part in <pre>, the HTML part in a sandboxed iframe."""
    if p.error is not None:
        return (
            f"<p><b>会員ID {html.escape(str(p.member_id))}</b>: "
            f'<span style="color:#b00020">{html.escape(p.error)}</span></p>'
        )
    out = [f"<p><b>メール件名</b>: {html.escape(p.subject)}</p>"]
    if p.html is not None:  # what most members see, first and at a readable height
        out += [
            "<p><b>HTML</b>（HTMLメールを表示できるメールソフトでの見え方）</p>",
            f'<iframe sandbox="" class="bcartnb-preview-html" style="{_HTML_FRAME}" '
            f'srcdoc="{html.escape(p.html, quote=True)}"></iframe>',
            "<p><b>テキスト</b>（HTMLを表示しないメールソフトでの見え方）</p>",
        ]
    else:
        out.append("<p><b>テキスト</b></p>")
    out.append(
        '<pre class="bcartnb-preview-text" '
        'style="white-space:pre-wrap;border:1px solid #ccc;padding:8px">'
        f"{html.escape(p.text)}</pre>"
    )
    return "".join(out)


def warnings_html(warnings: Sequence[str]) -> str:
    """注意: the plan's warnings (a misnamed column, a value no member holds, who already
    has this mail), styled as every warning is."""
    if not warnings:
        return ""
    items = "".join(f"<li>{html.escape(w)}</li>" for w in dict.fromkeys(warnings))
    return warning_html(f"<b>注意</b><ul>{items}</ul>", "bcartnb-warning-notes", escaped=True)


def repeat_label(count: int) -> str:
    """The 再送 box's words, with how many members it adds."""
    return f"同じ内容を再送する（送信済みの {count:,} 件にも、もう一度送ります）"


def checks_html(checks: Sequence[Finding]) -> str:
    """送信前の確認 of the previewed mail: each finding's message, then its exact detail."""
    if not checks:
        return ""
    items = "".join(
        f'<li data-code="{html.escape(f.code)}">{html.escape(f.message)}'
        f'<br><small style="font-weight:normal">{html.escape(f.detail)}</small></li>'
        for f in dict.fromkeys(checks)
    )
    return warning_html(f"<b>{HEADING}</b><ul>{items}</ul>", "bcartnb-checks", escaped=True)


class ConfirmStep(widgets.VBox):  # type: ignore[misc]
    """The confirmation screen; ``back`` and ``send`` are wired by the wizard."""

    def __init__(self) -> None:
        self.counts = widgets.HTML("")
        self.counts.add_class("bcartnb-confirm-counts")
        self.sender = widgets.HTML("")
        self.sender.add_class("bcartnb-confirm-sender")
        self.send_count = widgets.HTML("")
        self.send_count.add_class("bcartnb-send-count")
        self.preview_member = widgets.Dropdown(options=[], description="プレビュー")
        self.preview_member.add_class("bcartnb-preview-member")
        self.preview_member.observe(self._on_preview_member, names="value")
        #: called when the marketer picks another member to preview
        self.on_preview: Callable[[], None] | None = None
        self.preview = widgets.HTML("")
        self.preview.add_class("bcartnb-preview")
        self.warnings = widgets.HTML("")
        self.warnings.add_class("bcartnb-warnings")
        # shown only when members already have this mail; unticked unless the marketer ticks
        self.repeat = widgets.Checkbox(
            value=False, description=repeat_label(0), indent=False, layout={"width": "auto"}
        )
        self.repeat.add_class("bcartnb-repeat")
        self.repeat.layout.display = "none"
        self.repeat.observe(self._on_repeat, names="value")
        #: called with the box's new value when the marketer ticks or unticks it
        self.on_repeat: Callable[[bool], None] | None = None
        self._offering = False
        self.back = widgets.Button(description="戻る", icon="arrow-left")
        self.back.add_class("bcartnb-back")
        self.send = widgets.Button(description="送信", button_style="danger", icon="paper-plane")
        self.send.add_class("bcartnb-send")
        self.test_to = widgets.Text(description="テスト送信先", placeholder="admin@example.co.jp")
        self.test_to.add_class("bcartnb-test-to")
        self.test_send = widgets.Button(description="テスト送信", icon="envelope")
        self.test_send.add_class("bcartnb-test-send")
        #: テスト送信's result (or error), right under its button (bcartnb-test-result)
        self.test_result = Status("bcartnb-test-result")
        #: 予約して送信: a date and a time (JST) right under 送信 (:mod:`.schedule_form`)
        self.schedule = ScheduleForm()
        super().__init__(
            [
                widgets.HTML("<b>送信内容の確認</b>"),
                self.counts,
                self.warnings,
                self.repeat,
                self.sender,
                self.preview_member,
                self.preview,
                row(self.test_to, self.test_send),
                self.test_result.widget,
                row(self.back, self.send, self.send_count),
                self.schedule,
            ]
        )
        fit(self.test_send, self.back, self.send)

    @property
    def controls(self) -> list[widgets.Widget]:
        return [
            self.repeat,
            self.preview_member,
            self.test_to,
            self.test_send,
            self.back,
            self.send,
            *self.schedule.controls,
        ]

    def show_counts(
        self,
        summary: dict[str, Any],
        flt: dict[str, Any],
        keyword: str,
        settings: Settings | None = None,
    ) -> None:
        """The numbers, the count beside 送信 and, given the plan's ``settings``, who the mail
        is from and where its admin copy goes."""
        self.counts.value = confirm_counts_html(summary, describe_filter(flt), keyword)
        self.send_count.value = send_count_html(int(summary["sendable"]))
        self.sender.value = "" if settings is None else sender_html(settings)

    def offer_repeat(self, count: int, ticked: bool) -> None:
        """「同じ内容を再送する」 for ``count`` members (hidden, and unticked, when none)."""
        self._offering = True
        try:
            self.repeat.value = ticked and count > 0
        finally:
            self._offering = False
        self.repeat.description = repeat_label(count)
        self.repeat.layout.display = None if count else "none"

    def offer_previews(self, sendable: pd.DataFrame, limit: int) -> None:
        """The first ``limit`` sendable members to preview (会員ID and 会社名), the first picked."""
        head = sendable.head(limit)
        names = (
            head["comp_name"].astype("str").fillna("").tolist()
            if "comp_name" in head.columns
            else [""] * len(head)
        )
        choices = [
            (f"{int(mid)} {name}", int(mid))
            for mid, name in zip(head["id"].tolist(), names, strict=True)
        ]
        self._offering = True
        try:
            self.preview_member.options = choices
            self.preview_member.value = choices[0][1] if choices else None
        finally:
            self._offering = False

    def _on_preview_member(self, _change: dict[str, Any]) -> None:
        if not self._offering and self.on_preview is not None:
            self.on_preview()

    def _on_repeat(self, change: dict[str, Any]) -> None:
        if not self._offering and self.on_repeat is not None:
            self.on_repeat(bool(change["new"]))

    def show_previews(self, previews: Sequence[Preview], warnings: Sequence[str]) -> None:
        self.preview.value = "<hr>".join(preview_html(p) for p in previews)
        self.warnings.value = warnings_html(
            [*warnings, *(w for p in previews for w in p.warnings)]
        ) + checks_html([c for p in previews for c in p.checks])
