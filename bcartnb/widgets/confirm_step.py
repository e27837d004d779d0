"""Step 4, 確認画面: the final counts, real rendered mails, 送信前の確認, 戻る and 送信.

Everything shown comes from the plan and the dry run the wizard made; the previews are the
mails exactly as :func:`bcartnb.compose.preview` renders them. HTML mail is shown in a
sandboxed iframe (no scripts, no same-origin access) so a template cannot touch the notebook.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any

import ipywidgets as widgets

from bcartnb.audience import REASON_LABELS, REASONS
from bcartnb.compose import Preview
from bcartnb.filters import describe_filter
from bcartnb.mailcheck import HEADING, Finding

from ._common import fit, row

__all__ = ["ConfirmStep", "checks_html", "confirm_counts_html", "preview_html", "warnings_html"]


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


def preview_html(p: Preview) -> str:
    """One rendered mail: subject, the text part in <pre>, the HTML part in a sandboxed iframe."""
    if p.error is not None:
        return (
            f"<p><b>会員ID {html.escape(str(p.member_id))}</b>: "
            f'<span style="color:#b00020">{html.escape(p.error)}</span></p>'
        )
    out = [
        f"<p><b>メール件名</b>: {html.escape(p.subject)}</p>",
        "<p><b>テキスト</b></p>",
        '<pre style="white-space:pre-wrap;border:1px solid #ccc;padding:8px">'
        f"{html.escape(p.text)}</pre>",
    ]
    if p.html is not None:
        out += [
            "<p><b>HTML</b></p>",
            '<iframe sandbox="" style="width:100%;height:28em;border:1px solid #ccc" '
            f'srcdoc="{html.escape(p.html, quote=True)}"></iframe>',
        ]
    return "".join(out)


def warnings_html(warnings: Sequence[str]) -> str:
    if not warnings:
        return ""
    items = "".join(f"<li>{html.escape(w)}</li>" for w in dict.fromkeys(warnings))
    return f"<b>注意</b><ul>{items}</ul>"


def checks_html(checks: Sequence[Finding]) -> str:
    """送信前の確認 of the previewed mail: each finding's message, then its exact detail."""
    if not checks:
        return ""
    items = "".join(
        f'<li data-code="{html.escape(f.code)}">{html.escape(f.message)}'
        f"<br><small>{html.escape(f.detail)}</small></li>"
        for f in dict.fromkeys(checks)
    )
    return f"<b>{HEADING}</b><ul>{items}</ul>"


class ConfirmStep(widgets.VBox):  # type: ignore[misc]
    """The confirmation screen; ``back`` and ``send`` are wired by the wizard."""

    def __init__(self) -> None:
        self.counts = widgets.HTML("")
        self.counts.add_class("bcartnb-confirm-counts")
        self.preview_member = widgets.Dropdown(options=[], description="プレビュー")
        self.preview_member.add_class("bcartnb-preview-member")
        self.preview = widgets.HTML("")
        self.preview.add_class("bcartnb-preview")
        self.warnings = widgets.HTML("")
        self.warnings.add_class("bcartnb-warnings")
        self.back = widgets.Button(description="戻る", icon="arrow-left")
        self.back.add_class("bcartnb-back")
        self.send = widgets.Button(description="送信", button_style="danger", icon="paper-plane")
        self.send.add_class("bcartnb-send")
        self.test_to = widgets.Text(description="テスト送信先", placeholder="admin@example.co.jp")
        self.test_to.add_class("bcartnb-test-to")
        self.test_send = widgets.Button(description="テスト送信", icon="envelope")
        self.test_send.add_class("bcartnb-test-send")
        super().__init__(
            [
                widgets.HTML("<b>送信内容の確認</b>"),
                self.counts,
                self.preview_member,
                self.preview,
                self.warnings,
                row(self.test_to, self.test_send),
                row(self.back, self.send),
            ]
        )
        fit(self.test_send, self.back, self.send)

    @property
    def controls(self) -> list[widgets.Widget]:
        return [self.preview_member, self.test_to, self.test_send, self.back, self.send]

    def show_counts(self, summary: dict[str, Any], flt: dict[str, Any], keyword: str) -> None:
        self.counts.value = confirm_counts_html(summary, describe_filter(flt), keyword)

    def show_previews(self, previews: Sequence[Preview], warnings: Sequence[str]) -> None:
        self.preview.value = "<hr>".join(preview_html(p) for p in previews)
        self.warnings.value = warnings_html(
            [*warnings, *(w for p in previews for w in p.warnings)]
        ) + checks_html([c for p in previews for c in p.checks])
