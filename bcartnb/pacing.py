"""One rule for "at most N in any T seconds": a sliding window of start times.

Both ends of bcartnb that talk to someone else's server are limited this way: the send loop
(``[delivery] rate_per_second`` / ``rate_per_hour``, so a shared mail server neither throttles
nor blocks a burst) and the B-Cart API client (300 requests per 300 s). A sliding window per
limit is exact where a token bucket would allow a double burst at a window's edge, and it is
a dozen lines over a deque: the rate-limit libraries on PyPI bring buckets, backends and
async APIs for what is one list of timestamps here. Clock and sleep are injected so tests
never sleep.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence

__all__ = ["SlidingWindows"]


class SlidingWindows:
    """Spaces starts so that no ``(count, span)`` limit is ever exceeded. Thread-safe."""

    def __init__(
        self,
        limits: Sequence[tuple[int, float]],
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._windows: list[tuple[int, float, deque[float]]] = [
            (int(count), float(span), deque()) for count, span in limits
        ]
        self.clock = clock
        self.sleep = sleep
        self._lock = threading.RLock()
        #: Seconds :meth:`acquire` has slept, in all.
        self.waited = 0.0

    @property
    def limited(self) -> bool:
        """Whether any limit is set (else :meth:`acquire` never waits)."""
        return bool(self._windows)

    def acquire(self) -> None:
        """Block until one more start fits in every window, then record it."""
        while not self.take():
            self.pause(self.delay())

    def delay(self) -> float:
        """Seconds until one more start fits in every window (0: now)."""
        with self._lock:
            now = self.clock()
            wait = 0.0
            for limit, span, times in self._windows:
                while times and times[0] <= now - span:
                    times.popleft()
                if len(times) >= limit:
                    wait = max(wait, times[0] + span - now)
            return wait

    def take(self) -> bool:
        """Record one start if it fits now; False (recording nothing) if it must wait."""
        with self._lock:
            if self.delay() > 0:
                return False
            now = self.clock()
            for _, _, times in self._windows:
                times.append(now)
            return True

    def pause(self, seconds: float) -> None:
        """Wait (with the injected sleep) for a place in the windows."""
        self.waited += seconds
        self.sleep(seconds)

    @contextlib.contextmanager
    def slot(self) -> Iterator[None]:
        """One request: waits for a place, and counts the request from when its answer came.

        The server counts a request when it arrives, somewhere between our send and its
        answer; stamping the answer's time keeps our window behind the server's, so network
        jitter can only make us slower, never over the limit.
        """
        self.acquire()
        try:
            yield
        finally:
            with self._lock:
                now = self.clock()
                for _, _, times in self._windows:
                    if times:
                        times[-1] = max(times[-1], now)
