"""Step 3, the mail form: quota, counts, テンプレート, メール件名, メール本文 and the check boxes.

The form holds what the marketer typed; :meth:`ComposeStep.values` gives it as the campaign
contract's keys. Picking a template fills the subject, body and HTML box from the template
store, and they stay editable (B-Cart's メールテンプレート behaviour).
"""

from __future__ import annotations

import html
from typing import Any, Final

import ipywidgets as widgets

from bcartnb.audience import REASON_LABELS, REASONS, Audience
from bcartnb.quota import QuotaStatus, quota_warning_ja
from bcartnb.templates import TemplateStore, merge_fields
from bcartnb.text_markup import HTML_IN_TEXT_MESSAGE, html_in_text_detail, html_tags

from ._common import Status, fit, row, warning_html

__all__ = ["NO_TEMPLATE", "ComposeStep", "counts_html", "quota_html", "quota_warning_html"]

#: The picker's first entry: write the mail by hand.
NO_TEMPLATE: Final = "（テンプレートを使わない）"


def quota_html(quota: QuotaStatus) -> str:
    """メール配信上限数 and this month's remaining, as the compose screen shows them."""
    if quota.cap is None:
        return (
            f"<b>メール配信上限数</b>: 上限なし（{html.escape(quota.plan.name)}）"
            f" ／ 今月の配信数: {quota.used:,}件"
        )
    return (
        f"<b>メール配信上限数</b>: {quota.cap:,}件／月（{html.escape(quota.plan.name)}）"
        f" ／ 今月の配信数: {quota.used:,}件 ／ 今月の残り: {quota.remaining:,}件"
    )


def quota_warning_html(quota: QuotaStatus, needed: int, what: str = "送信件数") -> str:
    """The over-quota warning in red, or "" when the mails fit (the rule is in quota.py)."""
    text = quota_warning_ja(quota, needed, what)
    return warning_html(text, "bcartnb-over-quota") if text else ""


def counts_html(audience: Audience) -> str:
    """送信件数 and 送信できない件数 with each reason that occurred."""
    s = audience.summary()
    parts = [
        f"<b>送信件数</b>: {s['sendable']:,}件",
        f"<b>送信できない件数</b>: {s['unsendable']:,}件",
    ]
    reasons = [f"{REASON_LABELS[r]} {s['reasons'][r]:,}件" for r in REASONS if s["reasons"][r]]
    if reasons:
        parts.append("（" + "、".join(html.escape(r) for r in reasons) + "）")
    return " ／ ".join(parts[:2]) + (" " + parts[2] if len(parts) > 2 else "")


class ComposeStep(widgets.VBox):  # type: ignore[misc]
    """The compose form; ``to_confirm`` (確認画面へ) is wired by the wizard."""

    def __init__(self, store: TemplateStore, status: Status) -> None:
        self.store = store
        self.status = status
        self.quota = widgets.HTML("")
        self.quota.add_class("bcartnb-quota")
        self.counts = widgets.HTML("")
        self.counts.add_class("bcartnb-counts")
        self.quota_warning = widgets.HTML("")
        self.quota_warning.add_class("bcartnb-compose-quota-warning")
        self.template = widgets.Dropdown(
            options=[NO_TEMPLATE], value=NO_TEMPLATE, description="テンプレート"
        )
        self.template.add_class("bcartnb-template")
        self.subject = widgets.Text(description="メール件名", layout=widgets.Layout(width="48em"))
        self.subject.add_class("bcartnb-subject")
        self.body = widgets.Textarea(
            description="メール本文", layout=widgets.Layout(width="48em", height="16em")
        )
        self.body.add_class("bcartnb-body")
        # 差し込み項目: every field the members have, inserted at the end of subject or body
        # (a Textarea tells the kernel no cursor position, so the end is the honest place)
        self.field = widgets.Dropdown(
            options=[],
            description="差し込み項目",
            style={"description_width": "initial"},
            layout=widgets.Layout(width="26em"),
        )
        self.field.add_class("bcartnb-field")
        self.insert_subject = widgets.Button(description="件名に挿入", icon="plus")
        self.insert_subject.add_class("bcartnb-insert-subject")
        self.insert_body = widgets.Button(description="本文に挿入", icon="plus")
        self.insert_body.add_class("bcartnb-insert-body")
        self.insert_subject.on_click(lambda _b: self.insert(self.subject))
        self.insert_body.on_click(lambda _b: self.insert(self.body))
        self.html = widgets.Checkbox(value=False, description="HTMLメールで送信", indent=False)
        self.html.add_class("bcartnb-html")
        self.signature = widgets.Checkbox(
            value=True, description="設定している署名を挿入", indent=False
        )
        self.signature.add_class("bcartnb-signature")
        # ticked by default: advertising mail goes to those who agreed to it (特定電子メール法)
        self.opt_in = widgets.Checkbox(
            value=True, description="メール案内「受け取る」の会員にのみ送信", indent=False
        )
        self.opt_in.add_class("bcartnb-opt-in")
        self.opt_in_notice = widgets.HTML(
            '<div style="color:#b00020">メール案内を「受け取らない」会員にも送ります。'
            "広告・宣伝のメールは、受け取ることに同意した会員にだけ送るのが原則です"
            "（特定電子メール法）。</div>"
        )
        self.opt_in_notice.add_class("bcartnb-opt-in-notice")
        self.opt_in_notice.layout.display = "none"
        self.opt_in.observe(self._on_opt_in, names="value")
        # HTML pasted into a text mail, said while it is typed (and again on the confirmation)
        self.markup_notice = widgets.HTML("")
        self.markup_notice.add_class("bcartnb-html-in-text")
        self.body.observe(lambda _c: self._check_markup(), names="value")
        self.html.observe(lambda _c: self._check_markup(), names="value")
        self.back = widgets.Button(description="戻る", icon="arrow-left")
        self.back.add_class("bcartnb-compose-back")
        self.to_confirm = widgets.Button(description="確認画面へ", button_style="primary")
        self.to_confirm.add_class("bcartnb-to-confirm")
        self.template.observe(self._on_template, names="value")
        for box in (self.html, self.signature, self.opt_in):
            box.layout.width = "auto"
        fit(self.insert_subject, self.insert_body, self.back, self.to_confirm)
        super().__init__(
            [
                self.quota,
                self.counts,
                self.quota_warning,
                self.template,
                self.subject,
                self.body,
                row(self.field, self.insert_subject, self.insert_body, css="bcartnb-fields"),
                row(self.html, self.signature, self.opt_in),
                self.opt_in_notice,
                self.markup_notice,
                row(self.back, self.to_confirm),
            ]
        )

    @property
    def controls(self) -> list[widgets.Widget]:
        return [
            self.template,
            self.subject,
            self.body,
            self.field,
            self.insert_subject,
            self.insert_body,
            self.html,
            self.signature,
            self.opt_in,
            self.back,
            self.to_confirm,
        ]

    def set_fields(self, columns: Any) -> None:
        """The 差し込み項目 list for these member columns (aliases, canonical, custom)."""
        self.field.options = [
            (f"{{{{ {name} }}}}  {what}" if what != name else f"{{{{ {name} }}}}", name)
            for name, what in merge_fields(columns)
        ]
        self.field.value = self.field.options[0][1] if self.field.options else None

    def insert(self, target: widgets.Text | widgets.Textarea) -> None:
        """Put ``{{ field }}`` at the end of the subject or body."""
        name = self.field.value
        if not name:
            return
        target.value = f"{target.value}{{{{ {name} }}}}"

    def show_quota(self, quota: QuotaStatus, audience: Audience) -> None:
        """メール配信上限数, 送信件数, and the warning as soon as it does not fit."""
        self.quota.value = quota_html(quota)
        self.counts.value = counts_html(audience)
        self.quota_warning.value = quota_warning_html(quota, len(audience.sendable))

    def _check_markup(self) -> None:
        """The text mail's body holds HTML tags (:mod:`bcartnb.text_markup`): say so at once."""
        tags = [] if self.html.value else html_tags(str(self.body.value))
        self.markup_notice.value = (
            warning_html(
                f"{HTML_IN_TEXT_MESSAGE}（{html_in_text_detail(tags, 'メール本文')}）",
                "bcartnb-html-in-text-warning",
            )
            if tags
            else ""
        )

    def _on_opt_in(self, change: dict[str, Any]) -> None:
        self.opt_in_notice.layout.display = "none" if change["new"] else None

    def refresh_templates(self) -> None:
        """Re-read the template names (another notebook may have saved one meanwhile)."""
        names = self.store.list()
        current = self.template.value
        self.template.unobserve(self._on_template, names="value")
        try:
            self.template.options = [NO_TEMPLATE, *names]
            self.template.value = current if current in names else NO_TEMPLATE
        finally:
            self.template.observe(self._on_template, names="value")

    def _on_template(self, change: dict[str, Any]) -> None:
        name = change["new"]
        if not name or name == NO_TEMPLATE:
            return
        template = self.status.run(lambda: self.store.get(name), self.controls, quick=True)
        if template is None:
            return
        self.subject.value = template.subject
        self.body.value = template.body
        self.html.value = bool(template.html)
        self.status.info(f"テンプレート「{name}」を読み込みました。件名と本文は編集できます。")

    def values(self) -> dict[str, Any]:
        """The campaign keys this form decides (template, subject, body, html, …)."""
        name = self.template.value
        return {
            "template": None if name == NO_TEMPLATE else name,
            "subject": str(self.subject.value),
            "body": str(self.body.value),
            "html": bool(self.html.value),
            "insert_signature": bool(self.signature.value),
            "opt_in_only": bool(self.opt_in.value),
        }
