"""The 再開 screen's choices for a campaign that cannot finish by itself: ``bcartnb resume``'s
finishing flags and ``bcartnb cancel``, in the marketer's words.

A mail a server defers forever, an uncertain mail checked by hand, or a member gone from
the file keeps a campaign unfinished for good unless the marketer decides. Only the choices
that apply to what is left are shown (:meth:`FinishChoices.offer`), each unticked or left
as it is by default, so 「再開」 alone does what ``bcartnb resume ID`` does. 「配信を取り消す」
asks once more (「本当に取り消す」) before anything is ended. The choices are words only:
:meth:`FinishChoices.options` gives them as :func:`bcartnb.campaign.resume`'s keywords.
"""

from __future__ import annotations

from typing import Final, TypedDict

import ipywidgets as widgets

from bcartnb.campaign import DeliverySummary

from ._common import fit, hide, show

__all__ = ["MISSING_WARNING", "UNCERTAIN_CHOICES", "FinishChoices", "ResumeOptions"]

#: What to do with the mails whose outcome is unknown; the first (the default) changes nothing.
UNCERTAIN_CHOICES: Final[tuple[tuple[str, str], ...]] = (
    ("このままにする（結果不明のまま残す）", "keep"),
    ("再送する", "resend_uncertain"),
    ("届いたことを確認したので送信済みにする", "mark_uncertain_sent"),
    ("再送しない", "drop_uncertain"),
)
#: How a run's summary begins its warning about members gone from the file since.
MISSING_WARNING: Final = "会員ファイルに見つからない会員"
CANCEL_NOTE: Final = (
    "取り消すと、残りのメールはもう送りません。送信済みのメールはそのまま今月の配信数に"
    "数えます。よければ「本当に取り消す」を押してください。"
)


class ResumeOptions(TypedDict):
    """:func:`~bcartnb.campaign.resume`'s finishing keywords (``bcartnb resume``'s flags)."""

    give_up_deferred: bool
    skip_missing: bool
    resend_uncertain: bool
    mark_uncertain_sent: bool
    drop_uncertain: bool


class FinishChoices(widgets.VBox):  # type: ignore[misc]
    """The finishing choices; ``cancel`` and ``cancel_confirm`` are placed by the send step."""

    def __init__(self) -> None:
        self.give_up = widgets.Checkbox(
            value=False,
            description="再試行待ちのメールをあきらめる（失敗にする）",
            indent=False,
            layout={"width": "auto"},
        )
        self.give_up.add_class("bcartnb-give-up-deferred")
        self.uncertain = widgets.RadioButtons(
            options=list(UNCERTAIN_CHOICES),
            value="keep",
            layout={"width": "auto"},
        )
        self.uncertain.add_class("bcartnb-uncertain")
        self.uncertain_words = widgets.HTML("")
        self.uncertain_box = widgets.VBox([self.uncertain_words, self.uncertain])
        self.skip_missing = widgets.Checkbox(
            value=False,
            description="会員ファイルにいない会員には送らない",
            indent=False,
            layout={"width": "auto"},
        )
        self.skip_missing.add_class("bcartnb-skip-missing")
        self.cancel = widgets.Button(description="配信を取り消す", icon="ban")
        self.cancel.add_class("bcartnb-cancel")
        self.cancel_confirm = widgets.Button(description="本当に取り消す", button_style="danger")
        self.cancel_confirm.add_class("bcartnb-cancel-confirm")
        self.cancel_note = widgets.HTML(f'<div style="color:#b00020">{CANCEL_NOTE}</div>')
        self.cancel_note.add_class("bcartnb-cancel-note")
        fit(self.cancel, self.cancel_confirm)
        super().__init__([self.give_up, self.uncertain_box, self.skip_missing])
        self.add_class("bcartnb-finish-choices")
        self.clear()

    @property
    def controls(self) -> list[widgets.Widget]:
        return [self.give_up, self.uncertain, self.skip_missing, self.cancel, self.cancel_confirm]

    def offer(self, summary: DeliverySummary) -> None:
        """The choices that apply to what ``summary`` left, each at its default."""
        self.clear()
        if summary.exit_code != 4:
            return
        if summary.deferred:
            show(self.give_up)
        if summary.uncertain:
            self.uncertain_words.value = (
                f"<b>送信結果が不明なメール {len(summary.uncertain):,} 件</b>"
                "（送った直後に接続が切れました。届いているかもしれません）"
            )
            show(self.uncertain_box)
        if any(w.startswith(MISSING_WARNING) for w in summary.warnings):
            show(self.skip_missing)
        show(self, self.cancel)

    def clear(self) -> None:
        """Every choice hidden and back at its default (nothing ended)."""
        self.give_up.value = False
        self.uncertain.value = "keep"
        self.skip_missing.value = False
        hide(self, self.give_up, self.uncertain_box, self.skip_missing)
        hide(self.cancel, self.cancel_confirm, self.cancel_note)

    def ask_cancel(self) -> None:
        """「配信を取り消す」: say what it does and offer 「本当に取り消す」."""
        show(self.cancel_confirm, self.cancel_note)

    @property
    def asked_cancel(self) -> bool:
        return _shown(self.cancel_confirm)

    def options(self) -> ResumeOptions:
        """The ticked choices as :func:`~bcartnb.campaign.resume`'s keywords (shown ones only)."""
        uncertain = str(self.uncertain.value) if _shown(self.uncertain_box) else "keep"
        return ResumeOptions(
            give_up_deferred=_shown(self.give_up) and bool(self.give_up.value),
            skip_missing=_shown(self.skip_missing) and bool(self.skip_missing.value),
            resend_uncertain=uncertain == "resend_uncertain",
            mark_uncertain_sent=uncertain == "mark_uncertain_sent",
            drop_uncertain=uncertain == "drop_uncertain",
        )


def _shown(w: widgets.Widget) -> bool:
    return bool(w.layout.display != "none")
