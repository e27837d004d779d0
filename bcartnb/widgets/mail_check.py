"""Every mail of a large campaign composed on a thread while the confirmation is already shown.

Composing 30,000 mails takes about half a second; 確認画面へ must answer within 100 ms. The
check only tells early what the send would find anyway: :func:`bcartnb.campaign.send`
composes every mail before the first goes out, so 送信 pressed before the check is done is
safe (an error still stops the campaign before member 1). So 送信 stays usable meanwhile;
the check's verdict, or its error naming the member, comes to the screen when it is done.

Only the thread's last step touches the screen, through ``report``, and only while the
check is still the current one: :meth:`MailCheck.cancel` (戻る, 送信, a new 確認画面へ) and
that step take the same lock, so once ``cancel`` returns nothing of this check reaches the
screen any more.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from bcartnb.campaign import CampaignPlan
from bcartnb.exceptions import BcartnbError

__all__ = ["MailCheck"]

log = logging.getLogger(__name__)


class MailCheck:
    """Compose every sendable mail of ``plan`` on a daemon thread; ``report`` gets None
    (all composed) or the error, unless the check was cancelled first."""

    def __init__(self, plan: CampaignPlan, report: Callable[[BaseException | None], None]) -> None:
        self._plan = plan
        self._report = report
        self._lock = threading.Lock()
        self._cancelled = threading.Event()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bcartnb-mail-check", daemon=True)

    def start(self) -> MailCheck:
        self._thread.start()
        return self

    def cancel(self) -> None:
        """Stop at the next mail; after this returns, ``report`` is never called."""
        with self._lock:
            self._cancelled.set()

    def wait(self, timeout: float | None = None) -> bool:
        """Whether the thread ended (reported, cancelled or failed) within ``timeout``."""
        return self._done.wait(timeout)

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    def _run(self) -> None:
        try:
            error: BaseException | None = None
            try:
                for _mail in self._plan.composer.compose_all(self._plan.audience.sendable):
                    if self._cancelled.is_set():
                        return
            except BcartnbError as err:
                error = err
            except Exception as err:  # a bug must reach the screen, not a thread's stderr
                log.exception("composing the campaign's mails failed")
                error = err
            with self._lock:
                if not self._cancelled.is_set():
                    self._report(error)
        finally:
            self._done.set()
