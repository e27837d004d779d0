"""The wizard's header: its title, and the ledger (配信記録) it counts and records in.

That file holds this month's count, who already has a mail and the suppression list: it
decides whom the wizard holds back and what 送信 may use. A marketer with two shop folders,
or a notebook started from the wrong one, must see which file it is before sending, and
whether it exists yet (the first send makes it; a dry run never does).
"""

from __future__ import annotations

import html

import ipywidgets as widgets

from bcartnb.settings import Settings

__all__ = ["Header", "ledger_text"]


def ledger_text(settings: Settings) -> str:
    """配信記録: the file, and what it is waiting for when it does not exist yet."""
    db = settings.db
    if db is None:
        return "配信記録: なし（お店のフォルダーが見つかりません。bcartnb init で作ってください）"
    if db.expanduser().exists():
        return f"配信記録: {db}"
    legacy = settings.legacy_ledger
    if legacy is not None and legacy.is_file():
        return (
            f"配信記録: {db}（まだありません。以前の配信記録 {legacy} を"
            " bcartnb init --adopt-ledger で取り込んでから送ってください）"
        )
    return f"配信記録: {db}（まだありません。最初の送信のときに作ります）"


class Header(widgets.VBox):  # type: ignore[misc]
    """The title and the ledger line (``bcartnb-ledger``), said again at each step."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.ledger = widgets.HTML("")
        self.ledger.add_class("bcartnb-ledger")
        super().__init__([widgets.HTML("<h3>会員へのメール配信</h3>"), self.ledger])
        self.refresh()

    def refresh(self) -> None:
        """Say the ledger as it is now: a send may have made it since."""
        text = html.escape(ledger_text(self.settings), quote=False)
        self.ledger.value = f'<div style="color:#555;font-size:90%">{text}</div>'
