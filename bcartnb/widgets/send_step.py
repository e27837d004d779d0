"""Step 5, 送信: the progress bar, then 「メール送信を完了いたしました。」, the counts, the
campaign id, the admin copy and where its opens and clicks will be (配信履歴と結果 and
``bcartnb results ID``, or that they are not measured), 「再開」 (bcartnb-resume) when the
campaign is unfinished, with the finishing choices that apply and 「配信を取り消す」
(:mod:`.finish_choices`), and 「新しい配信を作成」 (bcartnb-new-campaign), back to the member
list for the next campaign.

The send runs in the kernel's main thread; ``deliver`` reports each finished mail to
:meth:`SendStep.update`, which moves ``progress`` (bcartnb-progress) live: widget updates go
out to the browser while the cell runs. Closing the browser does not stop the kernel, so the
send goes on; the saved notebook keeps the final bar and counts.
"""

from __future__ import annotations

import html

import ipywidgets as widgets

from bcartnb.campaign import DeliverySummary

from ._common import fit, hide, row, show
from .finish_choices import FinishChoices

__all__ = ["SendStep", "results_words"]


class SendStep(widgets.VBox):  # type: ignore[misc]
    def __init__(self) -> None:
        self.progress = widgets.IntProgress(value=0, min=0, max=1, description="送信中")
        self.progress.add_class("bcartnb-progress")
        self.output = widgets.Output()
        self.done = widgets.HTML("")
        self.done.add_class("bcartnb-done")
        self.again = widgets.Button(description="新しい配信を作成", button_style="primary")
        self.again.add_class("bcartnb-new-campaign")
        self.again.layout.display = "none"  # shown once a campaign has gone out
        self.resume = widgets.Button(description="再開", button_style="warning")
        self.resume.add_class("bcartnb-resume")
        self.resume.layout.display = "none"  # shown when a campaign is unfinished
        self.choices = FinishChoices()
        fit(self.resume, self.again)
        super().__init__(
            [
                self.progress,
                self.output,
                self.done,
                self.choices,
                row(
                    self.resume,
                    self.choices.cancel,
                    self.choices.cancel_confirm,
                    self.again,
                    css="bcartnb-done-buttons",
                ),
                self.choices.cancel_note,
            ]
        )

    @property
    def controls(self) -> list[widgets.Widget]:
        return [self.resume, *self.choices.controls, self.again]

    def start(self, total: int) -> None:
        self.progress.max = max(total, 1)
        self.progress.value = 0
        self.progress.bar_style = "info"
        self.progress.description = "送信中"
        self.done.value = ""
        hide(self.again, self.resume)
        self.choices.clear()

    def update(self, finished: int, total: int) -> None:
        """``deliver``'s progress callback: mails whose outcome is known, of the campaign."""
        self.progress.max = max(total, 1)
        self.progress.value = finished

    def finish(self, summary: DeliverySummary, measured: tuple[bool, bool] | None = None) -> None:
        """The done screen: the summary's words, the campaign id, the admin copy, and where
        its opens and clicks will be (``measured``: opens, clicks; None leaves that out)."""
        handed = summary.sent + summary.failed
        self.progress.max = max(summary.sendable, handed, 1)
        self.progress.value = handed
        ok = summary.status == "done" and not summary.failed
        self.progress.bar_style = "success" if ok else "warning"
        self.progress.description = {
            "done": "送信完了",
            "unfinished": "未完了",
            "cancelled": "取り消し",
        }.get(summary.status, "中断")
        lines = summary.message().splitlines()
        lines.append(f"キャンペーンID: {summary.campaign_id}")
        lines.append(_admin_copy_words(summary))
        if measured is not None and summary.sendable:
            lines.append(results_words(summary.campaign_id, *measured))
        self.done.value = "<br>".join(html.escape(line) for line in lines)
        show(self.again)
        (show if summary.exit_code == 4 else hide)(self.resume)
        self.choices.offer(summary)

    def failed(self) -> None:
        self.progress.bar_style = "danger"
        self.progress.description = "中断"


def results_words(campaign_id: str, opens: bool, clicks: bool) -> str:
    """Where a sent campaign's opens and clicks will be, or that they are not measured."""
    if not opens and not clicks:
        return (
            "開封・クリック: このキャンペーンは計測していません"
            "（[tracking] url が未設定か、track = false）。"
        )
    what = "開封・クリック" if opens and clicks else "開封" if opens else "クリック"
    why = (
        ""
        if opens and clicks
        else "（テキストメールのため開封は計測できません）"
        if clicks
        else "（計測するリンクがないためクリックはありません）"
    )
    return (
        f"{what}の結果: 最初の画面の「配信履歴と結果」か、コマンド bcartnb results "
        f"{campaign_id} で見られます{why}。"
    )


def _admin_copy_words(summary: DeliverySummary) -> str:
    """Where the administrator's copy stands, in the words the done screen uses."""
    state, status = summary.admin_copy, summary.status
    if state == "sent":
        return "配信控え: 管理者アドレスに送信しました。"
    if state in ("sending", "uncertain"):
        return "配信控え: 送信結果が不明です（二重には送りません）。"
    if status == "cancelled":
        return "配信控え: 取り消した配信には送りません。"
    if status == "done" and not summary.sendable:
        return "配信控え: 送ったメールがないので送っていません。"
    if status == "done":
        return "配信控え: 送っていません（管理者アドレスが未設定か、受信側に拒否されました）。"
    return "配信控え: 送信がすべて終わったときに送ります。"
