"""The send loop's K connections opened in the background, and the rate they may send at.

Both are set up before the loop starts (:class:`~bcartnb.delivery.loop.Sender` takes them):
the connections while the mails are composed, the limiter from the delivery settings.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable

from bcartnb.pacing import SlidingWindows
from bcartnb.transports import Connection, Transport

__all__ = ["Connector", "RateLimiter"]


class RateLimiter(SlidingWindows):
    """Spaces sends so neither the per-second nor the per-hour limit is ever exceeded.

    Shared servers throttle or block a burst (the reason B-Cart caps mail at all); the window
    rule is :class:`bcartnb.pacing.SlidingWindows`, the same as the API client's.
    """

    def __init__(
        self,
        per_second: float | None = None,
        per_hour: int | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        limits: list[tuple[int, float]] = []
        if per_second:
            # a fractional rate (0.5/s) is one mail every 2 s
            limits.append((int(per_second), 1.0) if per_second >= 1 else (1, 1.0 / per_second))
        if per_hour:
            limits.append((int(per_hour), 3600.0))
        super().__init__(limits, clock=clock, sleep=sleep)


class Connector:
    """Opens the K connections in parallel, in the background, while the mails are composed.

    Against a real server a TLS handshake and a login take a few hundred milliseconds each;
    one thread opening K of them after composing would hold the first mail back by their
    sum. A connection that fails keeps its error for the send loop: it runs on the others
    (a server may cap connections per client), or stops with it when none opened.
    """

    def __init__(self, transport: Transport, k: int) -> None:
        self.transport = transport
        self.opened: list[Connection | BaseException | None] = [None] * k
        self.threads = [
            threading.Thread(target=self._open, args=(i,), name=f"bcartnb-connect-{i}", daemon=True)
            for i in range(k)
        ]
        for t in self.threads:
            t.start()

    def _open(self, i: int) -> None:
        try:
            self.opened[i] = self.transport.connect()
        except BaseException as err:  # handed to the send loop, which decides
            self.opened[i] = err

    def take(self) -> list[Connection | BaseException | None]:
        """The connections (or their errors), once every attempt has finished; then none."""
        for t in self.threads:
            t.join()
        opened, self.opened = self.opened, []
        return opened

    def close(self) -> None:
        """Close what nobody took (the compose check or the quota stopped the campaign)."""
        for item in self.take():
            if item is not None and not isinstance(item, BaseException):
                with contextlib.suppress(Exception):
                    item.close()
