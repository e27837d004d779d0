"""送信, 再開 and 配信を取り消す: the wizard's calls that change a campaign, and the done screen.

The only calls here are :func:`~bcartnb.campaign.send` (after the 送信 click, with ``repeat``
only when the confirmed plan was made with 「同じ内容を再送する」), :func:`~bcartnb.campaign.resume`
with the finishing choices the marketer ticked (:mod:`.finish_choices`) and
:func:`~bcartnb.campaign.cancel` after 「本当に取り消す」, exactly what ``bcartnb run --send``,
``bcartnb resume ID --give-up-deferred …`` and ``bcartnb cancel ID`` do. Each runs with every
control frozen (:meth:`~._common.Status.run`) and ends on the done screen with the summary's
words, or leaves the screen as it was when refused.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TypeVar

import ipywidgets as widgets

from bcartnb import campaign
from bcartnb.campaign import CampaignPlan, DeliverySummary, Transport
from bcartnb.exceptions import BcartnbError
from bcartnb.settings import Settings

from ._common import Status
from .send_step import SendStep

__all__ = ["Sending", "inside"]

T = TypeVar("T")
log = logging.getLogger(__name__)


def inside(output: widgets.Output, action: Callable[[], T]) -> T:
    """``action`` with what it prints in ``output``, and what it raises raised.

    In a kernel an Output widget shows an exception raised inside it as a traceback and
    swallows it: the send's error would be an English traceback, the status line empty and
    the screen 中断 with no reason. Caught inside and raised outside, it reaches
    :meth:`~._common.Status.run`, which says it in Japanese.
    """
    failed: BaseException | None = None
    with output:
        try:
            return action()
        except BaseException as err:  # KeyboardInterrupt too: raised again below
            failed = err
    assert failed is not None
    raise failed


class Sending:
    """Step 5's actions; ``result`` is the summary on the done screen (None before a send)."""

    def __init__(
        self,
        step: SendStep,
        status: Status,
        settings: Settings,
        transport: Transport | None,
        *,
        controls: Callable[[], list[widgets.Widget]],
        stage: Callable[[], str],
        go: Callable[[str], None],
    ) -> None:
        self.step = step
        self.status = status
        self.settings = settings
        self.transport = transport
        self._controls = controls
        self._stage = stage
        self._go = go
        self.result: DeliverySummary | None = None
        #: (opens, clicks) measured for the campaign on the done screen; None: unknown
        self.measured: tuple[bool, bool] | None = None
        step.resume.on_click(lambda _b: self.resume())
        step.choices.cancel.on_click(lambda _b: self.ask_cancel())
        step.choices.cancel_confirm.on_click(lambda _b: self.cancel())

    def send(self, plan: CampaignPlan) -> None:
        """送信 of a confirmed plan (the caller makes sure it is clicked once)."""
        self.step.start(len(plan.audience.sendable))
        self._go("sending")

        def send() -> DeliverySummary:
            return inside(
                self.step.output,
                lambda: campaign.send(
                    plan, repeat=plan.repeat, transport=self.transport, progress=self.step.update
                ),
            )

        self.show(self.status.run(send, self._controls(), busy="送信中です…"))

    def unfinished(self) -> DeliverySummary | None:
        """The campaign on the done screen, when it is unfinished (what 再開 and 取消 act on)."""
        result = self.result
        if result is None or result.exit_code != 4 or self._stage() != "done":
            return None
        return result

    def resume(self) -> None:
        """再開: continue the unfinished campaign just shown, from the wizard itself.

        The very call ``bcartnb resume`` makes, with the finishing choices ticked on the
        screen: pending and deferred mails go out (or deferred ones are given up), sent ones
        never again, uncertain ones as chosen (left as they are unless the marketer says).
        """
        result = self.unfinished()
        if result is None:
            return
        chosen = self.step.choices.options()
        self.step.start(result.left)
        self._go("sending")

        def resume() -> DeliverySummary:
            return inside(
                self.step.output,
                lambda: (
                    campaign.resume(
                        result.campaign_id,
                        self.settings,
                        transport=self.transport,
                        progress=self.step.update,
                        **chosen,
                    ).summary
                ),
            )

        summary = self.status.run(resume, self._controls(), busy="再開しています…")
        if summary is None:  # refused (the error is in the status): the 再開 screen again
            self.step.finish(result, self.measured)
            self._go("done")
            return
        self.show(summary)

    def ask_cancel(self) -> None:
        """配信を取り消す: nothing ended yet; 「本当に取り消す」 is offered beside it."""
        if self.unfinished() is not None:
            self.step.choices.ask_cancel()

    def cancel(self) -> None:
        """本当に取り消す: ``bcartnb cancel``; nothing more of the campaign is sent."""
        result = self.unfinished()
        if result is None or not self.step.choices.asked_cancel:
            return
        summary = self.status.run(
            lambda: campaign.cancel(result.campaign_id, self.settings),
            self._controls(),
            busy="配信を取り消しています…",
        )
        if summary is not None:  # refused (being sent elsewhere right now): the screen stays
            self.show(summary)

    def _measured(self, campaign_id: str) -> tuple[bool, bool] | None:
        """Whether the campaign measures opens and clicks (the results' own rule), for the
        done screen's line on where they will be; None when the ledger cannot say (the
        campaign went out all the same: the screen leaves the line out, nothing more)."""
        try:
            return campaign.tracking_measured(self.settings, campaign_id)
        except BcartnbError:
            log.exception("tracking_measured failed for %s", campaign_id)
            return None

    def show(self, summary: DeliverySummary | None) -> None:
        """The done screen for ``summary``; None (the run failed, said in the status): 中断."""
        if summary is None:
            self.step.failed()
            return
        self.result = summary
        self.measured = self._measured(summary.campaign_id)
        self.step.finish(summary, self.measured)
        self._go("done")
        if summary.exit_code == 4:  # unfinished: why, what is left, how to continue
            head = summary.message().splitlines()[0]
            why = summary.stopped_ja or ""
            detail = f"\n（詳細: {summary.stopped}）" if summary.stopped else ""
            self.status.error(f"送信エラー: {why}{head}{detail}")
        elif summary.status == "cancelled":
            self.status.info(f"キャンペーン {summary.campaign_id} の配信を取り消しました。")
        elif not summary.sendable:  # every member had the mail by then: the reason is below
            self.status.info("送ったメールはありません。")
        else:  # the words themselves are on the done screen, once
            self.status.info(f"キャンペーン {summary.campaign_id} の送信が終わりました。")
