"""The public server's one writer of clicks and opens: a queue, drained in batches.

A request answers at once (the redirect, the image) and leaves its event here; one thread
hands what has gathered :data:`DELAY` seconds after the first event of a batch came to the
writer process (:mod:`bcartnb.hygiene.track_sink`), which records it in one ledger transaction
(:meth:`~bcartnb.ledger.Ledger.record_tracks`), so a burst of a thousand clicks is a few
transactions instead of a thousand, no request waits for SQLite's lock, and SQLite's work
never holds the event loop's GIL.

What is kept, and what can be lost:

* **idempotent as before**: the batch is applied in arrival order by the ledger's own rules,
  so it counts exactly what the same requests counted one by one (first time and count per
  member, link and kind; people and machines apart);
* **a clean stop** (Ctrl-C, SIGTERM, the server's shutdown) loses nothing: the server stops
  taking requests, then :meth:`TrackWriter.close` writes every queued event before the
  process ends;
* **a SIGKILL** of the server (or a power cut) loses the events still queued: about the
  last :data:`DELAY` seconds of requests (the batch the writer process holds is still
  committed, unless the power went). Those people were redirected all the same; their
  clicks are simply not counted. Never more counted than requested;
* **the ledger failing** (locked past its timeout, removed): the batch stays queued and is
  tried again every :data:`RETRY` seconds; past :data:`MAX_PENDING` queued events the server
  answers 503 (nothing recorded) rather than grow without end.

Retention: at start and then once a day, events older than ``[tracking] retention_days`` are
deleted (:meth:`~bcartnb.ledger.Ledger.purge_tracking`), by the same thread.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Final

from bcartnb.exceptions import BcartnbError
from bcartnb.hygiene.track_sink import Sink
from bcartnb.ledger.tracking import TrackEvent
from bcartnb.quota import now_tokyo

if TYPE_CHECKING:
    from bcartnb.ledger import Ledger

__all__ = ["DELAY", "MAX_PENDING", "PURGE_EVERY", "RETRY", "TrackWriter", "purge_old"]

#: How long a batch gathers after its first event before it is written.
DELAY: Final = 0.1
#: How long after a failed write the batch is tried again.
RETRY: Final = 1.0
#: Queued events past which new ones are refused (the server answers 503).
MAX_PENDING: Final = 100_000
#: Tries of a batch once the server is stopping, before its events are given up.
_LAST_TRIES: Final = 3
#: How often the retention purge runs while the server runs (seconds).
PURGE_EVERY: Final = 24 * 3600.0

log = logging.getLogger("bcartnb.unsubscribe")


class TrackWriter:
    """Queues events from the server's requests; one daemon thread writes them in batches."""

    def __init__(
        self,
        ledger: Ledger,
        *,
        retention_days: int | None = None,
        clock: Callable[[], datetime] | None = None,
        delay: float = DELAY,
        purge_every: float = PURGE_EVERY,
        max_pending: int = MAX_PENDING,
    ) -> None:
        self._ledger = ledger
        self._retention = retention_days
        self._clock = clock or now_tokyo
        self._delay = delay
        self._pending: list[TrackEvent] = []
        self._max_pending = max_pending
        self._busy = 0  # events taken by the thread and not yet written
        self._cond = threading.Condition()
        self._closing = False
        self._thread: threading.Thread | None = None
        self._next_purge = 0.0
        self._purge_every = purge_every
        self._sink: Sink | None = None  # the writer process, started with the first batch

    def start(self) -> None:
        """Start the thread (once); it purges first when a retention is set."""
        with self._cond:
            if self._thread is None and not self._closing:
                self._thread = threading.Thread(
                    target=self._run, name="bcartnb-track-writer", daemon=True
                )
                self._thread.start()

    def put(self, event: TrackEvent) -> bool:
        """Queue one event; False (nothing queued) when the backlog is full."""
        with self._cond:
            if len(self._pending) >= self._max_pending or self._closing:
                return False
            self._pending.append(event)
            if len(self._pending) == 1:
                self._cond.notify_all()
        if self._thread is None:
            self.start()
        return True

    def flush(self, timeout: float = 30.0) -> bool:
        """Wait until every event queued so far is written; False if the time ran out."""
        deadline = time.monotonic() + timeout
        with self._cond:
            self._cond.notify_all()
            while self._pending or self._busy:
                left = deadline - time.monotonic()
                if left <= 0 or self._thread is None or not self._thread.is_alive():
                    return not (self._pending or self._busy)
                self._cond.wait(min(left, 0.05))
        return True

    def close(self, timeout: float = 60.0) -> None:
        """Write what is queued, then stop the thread: the server's clean shutdown."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join(timeout)
        elif self._pending:  # never started: write here
            self._write(self._take())
            self._close_sink()

    def _run(self) -> None:
        failures = 0
        try:  # started now, not with the first click: it is ready when clicks come
            self._sink = Sink(self._ledger.path)
        except BcartnbError as err:
            log.error("開封・クリックを記録できません（あとで再試行します）: %s", err)
        while True:
            self._purge_when_due()
            with self._cond:
                while not self._pending and not self._closing:
                    self._cond.wait(self._until_purge())
                    self._purge_when_due_locked()
                if not self._pending and self._closing:
                    break
                if not self._closing:
                    self._cond.wait(self._delay)  # let the batch gather
                batch = self._take_locked()
            if not self._write(batch):
                with self._cond:
                    self._pending[:0] = batch
                    self._busy = 0
                    failures += 1
                    if self._closing and failures >= _LAST_TRIES:
                        log.error("開封・クリック %d 件を記録できずに終了します", len(batch))
                        self._pending.clear()
                        self._cond.notify_all()
                        break
                time.sleep(RETRY)
            else:
                failures = 0
        self._close_sink()

    def _take(self) -> list[TrackEvent]:
        with self._cond:
            return self._take_locked()

    def _take_locked(self) -> list[TrackEvent]:
        batch, self._pending = self._pending, []
        self._busy = len(batch)
        return batch

    def _write(self, batch: list[TrackEvent]) -> bool:
        rows = [(e.campaign_id, e.member_id, e.link, e.kind, e.machine, e.at) for e in batch]
        try:
            if self._sink is None:
                self._sink = Sink(self._ledger.path)
            why = self._sink.write(rows)
        except BcartnbError as err:
            why = str(err)
        if why is not None:
            log.error("開封・クリックを記録できません（あとで再試行します）: %s", why)
            if self._sink is not None and not self._sink.alive():
                self._close_sink()  # started again for the next try
            return False
        with self._cond:
            self._busy = 0
            self._cond.notify_all()
        return True

    def _close_sink(self) -> None:
        if self._sink is not None:
            self._sink.close()
            self._sink = None

    def _until_purge(self) -> float | None:
        if self._retention is None:
            return None
        return max(0.0, self._next_purge - time.monotonic())

    def _purge_when_due_locked(self) -> None:
        if self._retention is not None and time.monotonic() >= self._next_purge:
            self._cond.release()
            try:
                self._purge_when_due()
            finally:
                self._cond.acquire()

    def _purge_when_due(self) -> None:
        if self._retention is None or time.monotonic() < self._next_purge:
            return
        self._next_purge = time.monotonic() + self._purge_every
        purge_old(self._ledger, self._retention, self._clock())


def purge_old(ledger: Ledger, retention_days: int, now: datetime) -> int:
    """Delete the events older than the retention; a failure is logged and tried next time."""
    try:
        gone = ledger.purge_tracking(now - timedelta(days=retention_days))
    except BcartnbError as err:
        log.error("保存期間を過ぎた開封・クリックを削除できません: %s", err)
        return 0
    if gone:
        log.info(
            "保存期間（%d日）を過ぎた開封・クリックの記録 %d 件を削除しました", retention_days, gone
        )
    return gone
