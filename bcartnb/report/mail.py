"""The mail a member receives, as a report shows it: one sample, masked and framed.

A reviewer should see the campaign's mail as it went out, not the template: the first
sendable member's composed mail (:func:`sample_mail`), members' addresses masked and the
shop's own (From, admin, the signature's) in clear, so the legally required contact line can
be checked; its subject reads as received, that member's personal values masked. Its HTML part is
the one place in a report where markup is meant, so it is shown in a sandboxed iframe
(:func:`mail_frame`) with no scripts and no requests to other hosts; everything around it is
text. The templates notebook's preview (:func:`show_mail`) shows a mail the same way.
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from typing import TYPE_CHECKING

from bcartnb.privacy import PERSONAL_COLUMNS, mask_address, mask_text, mask_values
from bcartnb.report.blocks import Block, block, escape, show
from bcartnb.report.printcopy import print_copy

if TYPE_CHECKING:
    from bcartnb.campaign import CampaignPlan

__all__ = ["mail_frame", "sample_block", "sample_mail", "sample_mail_html", "show_mail"]

# The sample mail's HTML is rendered with nothing that reaches out: no scripts (the iframe
# sandbox), and no images, fonts or styles from other hosts (a tracking pixel would tell the
# sender who reads the report, and when).
_MAIL_CSP = (
    "default-src 'none'; img-src data:; style-src 'unsafe-inline'; font-src data:; "
    "form-action 'none'; base-uri 'none'"
)


def mail_frame(mail_html: str) -> str:
    """An HTML mail shown inside a sandboxed ``<iframe srcdoc>``.

    The mail is the member's own mail: its template escaped the member's values, but the
    report must not depend on that. ``sandbox=""`` gives no scripts, no forms, no top
    navigation and a unique origin (no access to the report or its cookies); the CSP in
    front of the mail blocks every request to another host. The srcdoc attribute is
    escaped for a double-quoted attribute, so the mail cannot close it.
    """
    doc = f'<meta http-equiv="Content-Security-Policy" content="{_MAIL_CSP}">{mail_html}'
    return (
        '<iframe class="bcartnb-mail-html" sandbox="" referrerpolicy="no-referrer" '
        'style="width:100%;height:28em;border:1px solid #ccc" '
        f'srcdoc="{html.escape(doc, quote=True)}"></iframe>'
    )


def sample_mail(plan: CampaignPlan) -> dict[str, str] | None:
    """The first sendable member's mail as sent (To, subject, text, and html for an HTML
    mail): the member's addresses masked, the shop's own kept; the subject as that member
    received it, their personal values (:data:`~bcartnb.privacy.PERSONAL_COLUMNS`) masked.
    The values are raw text: whoever shows them escapes them."""
    sendable = plan.audience.sendable
    if sendable.empty:
        return None
    member = {str(k): v for k, v in sendable.iloc[0].to_dict().items()}
    mail = plan.composer.untracked().compose(member)  # a reviewer's click counts for nobody
    keep = plan.settings.own_addresses
    personal = [member.get(c) for c in PERSONAL_COLUMNS]
    sample = {
        "member_id": str(mail.member_id),
        "to": mask_address(mail.to),
        "subject": mask_text(mask_values(mail.subject, personal), keep),
        "text": mask_text(mail.text, keep),
    }
    if mail.html is not None:
        sample["html"] = mask_text(mail.html, keep)
    return sample


def sample_mail_html(sample: Mapping[str, str]) -> str:
    """The sample mail as the report shows it: every value escaped, the HTML part framed."""
    return (
        f"<p>会員ID {escape(sample['member_id'])} 宛（{escape(sample['to'])}）<br>"
        f"<b>件名:</b> {escape(sample['subject'])}</p>"
    ) + _mail_parts(sample["text"], sample.get("html"))


def sample_block(sample: Mapping[str, str]) -> Block:
    """The sample mail as one block of the report, its text part the plain-text twin."""
    plain = f"会員ID {sample['member_id']} 宛（{sample['to']}）\n件名: {sample['subject']}\n\n"
    return block(sample_mail_html(sample), plain + sample["text"])


def _mail_parts(text: str, mail_html: str | None) -> str:
    # a <div> that keeps line breaks, not a <pre>: the text part is prose, not code
    parts = []
    if mail_html is not None:
        parts += [
            "<p><b>HTMLメール</b>（会員に見える表示。スクリプトと外部の画像は表示しません）</p>",
            mail_frame(mail_html),
            print_copy(mail_html),  # the frame prints cut: paper gets a static copy instead
            "<p><b>テキストパート</b>（HTMLを表示できないメールソフトでの表示）</p>",
        ]
    parts.append(
        '<div class="bcartnb-mail-text" style="white-space:pre-wrap;border:1px solid #ccc;'
        f'padding:8px;overflow-wrap:anywhere">{escape(text)}</div>'
    )
    return "".join(parts)


def show_mail(text: str, mail_html: str | None = None) -> None:
    """A rendered mail in a notebook (the templates notebook's preview), addresses masked:
    the text part as text, the HTML part in the sandboxed frame of :func:`mail_frame`.

    A Markdown code fence is not enough for the text: a member's value holding a line of
    three backticks closes it, and whatever follows is Markdown again.
    """
    masked = mask_text(text)
    show(block(_mail_parts(masked, None if mail_html is None else mask_text(mail_html)), masked))
