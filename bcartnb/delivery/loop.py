"""The send loop: K connections driven by one thread, every step journaled.

Each step commits, in one transaction, the results that came back and the hand-over of the
next mails (:meth:`~bcartnb.ledger.Ledger.exchange`): a mail's recipient and data go out
only after its hand-over is committed, and a connection's result is committed before the
data of its next mail (whose ``MAIL FROM`` is written while the commit runs: see
:meth:`Sender._step`). At most K mails are in flight, so after a SIGKILL at most K (one per
connection) are ``uncertain``. What each SMTP outcome becomes:

========================================  ==================================================
2xx after the message data                ``sent``
5xx                                       ``failed`` (refused for good; it counted)
4xx, or the connection lost before the    ``deferred``: retried in later rounds of this run,
message data went out                     with backoff, and by ``bcartnb resume``
connection lost after the data            ``uncertain``: it may have been delivered
a connection that cannot be (re)opened    ``unsent`` (never started, refunded), and the run
(unreachable, TLS, AUTH, 530)             stops at once: the mails picked for other
                                          connections never start either
========================================  ==================================================

A server that stops answering also stops the run, rather than leave every remaining member
deferred or uncertain: every connection lost twice over, in a row, before the data; or a
mail lost after its data with no reply on any connection since. After such a loss nothing
new is handed over until another connection gets a reply, so a server that hangs after the
data costs at most the mails then in flight, one per connection: the ``uncertain`` window
is K per outage, never more (with K = 1 the run stops at the first such loss).

Each hand-over checks the suppression list in its own transaction
(:meth:`~bcartnb.ledger.Ledger.hand_over`); a listed address is ``withheld``, never named to
the server, and the rate limit is waited for before the hand-over, so nothing waits between
the check and the server but the (re)connection of a connection that was lost.
"""

from __future__ import annotations

import contextlib
import math
import select
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from typing import Any, cast

from bcartnb.delivery.connections import Connector, RateLimiter
from bcartnb.delivery.plan import SendPlan
from bcartnb.delivery.slots import Job, Slot
from bcartnb.delivery.spool import Spool
from bcartnb.exceptions import (
    BcartnbError,
    CampaignStateError,
    QuotaExceededError,
    TransportError,
)
from bcartnb.ledger import DeliveryResult, Ledger, Recipient
from bcartnb.ledger.journal import COUNTED_FROM
from bcartnb.mailtokens import VerpSigner
from bcartnb.transports import (
    Connection,
    Outcome,
    PollableConnection,
    SendResult,
    Transport,
)

__all__ = ["MAX_BACKOFF", "Sender"]

#: The longest wait between two retry rounds, whatever ``backoff`` doubles to (seconds).
MAX_BACKOFF = 600.0


class Sender:
    """One run of one campaign: K connections driven by ONE thread, the journal, the bar.

    SMTP connections are polled (:class:`~bcartnb.transports.PollableConnection`): while
    the server answers one, the others are read and written, so K transactions overlap
    without K threads contending for the GIL. Other transports (a Maildir outbox, a dry
    run) finish each mail as it starts. Ctrl-C never lands halfway through a step: the
    handler only notes it while the loop is recording or writing, and the loop acts on it
    when it next waits, so every mail's state is known when it stops.

    ``fatal`` is what stopped the run early (a connection that cannot be opened, a server
    that stopped answering, the ledger refusing the next hand-over); ``counted`` the quota
    units this run took; ``tally`` the results it recorded, by state.
    """

    def __init__(
        self,
        plan: SendPlan,
        ledger: Ledger,
        transport: Transport,
        *,
        connections: int,
        limiter: RateLimiter,
        progress: bool | Callable[[int, int], None],
        sleep: Callable[[float], None],
        spool: Spool | None = None,
        connector: Connector | None = None,
    ) -> None:
        self.plan = plan
        self.spool = spool
        self.connector = connector
        self.cid = plan.campaign_id
        self.ledger = ledger
        self.transport = transport
        self.envelope_from = plan.settings.from_addr
        hygiene = plan.settings.hygiene
        # VERP: each mail's own return path, so its bounce names it (bcartnb.hygiene)
        self.verp_base = (hygiene.bounce_address or self.envelope_from) if hygiene.verp else None
        self.verp = VerpSigner(plan.settings.unsubscribe_secret) if hygiene.verp else None
        self.k = max(1, connections)
        self.limiter = limiter
        self.sleep = sleep
        self.slots = [Slot() for _ in range(self.k)]
        self.idle = list(self.slots)
        self.in_flight = 0
        #: a poll set per set of busy sockets: a poll object holds only fd numbers and
        #: events, so one built for the same fds and events polls the same (reused fds too)
        self._pollers: dict[tuple[tuple[int, int], ...], select.poll] = {}
        self.counted = 0
        self.tally: Counter[str] = Counter()
        self.unrecorded: list[DeliveryResult] = []
        self.finished = 0
        self.total = 0
        self.fatal: BaseException | None = None
        self.lost_in_a_row = 0
        self.suspect = False  # a mail was lost after its data, and no reply has come since
        self.missing: list[int] = []
        self.progress = progress
        self.bar: Any = None
        self.critical = False
        self.interrupts = 0
        self.raised = 0
        self._previous_sigint: Any = None

    def __enter__(self) -> Sender:
        if self.connector is not None:
            for slot, item in zip(self.slots, self.connector.take(), strict=False):
                slot.adopt(item)
            alive = [s for s in self.slots if s.conn is not None]
            if alive:  # run on the connections that opened; stop only when none did
                self.slots = alive
                self.idle = list(alive)
        if (
            threading.current_thread() is threading.main_thread()
            and signal.getsignal(signal.SIGINT) is signal.default_int_handler
        ):
            self._previous_sigint = signal.signal(signal.SIGINT, self._on_sigint)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._previous_sigint is not None:
            signal.signal(signal.SIGINT, self._previous_sigint)
            self._previous_sigint = None
        for slot in self.slots:
            if slot.conn is not None:
                # closing a dead connection must not hide the real outcome
                with contextlib.suppress(Exception):
                    slot.conn.close()
                slot.conn = None
        if self.bar is not None:
            self.bar.close()

    def spare_connection(self) -> Connection | None:
        """An open, idle connection the caller now owns (for the admin copy), if any."""
        for slot in self.slots:
            conn = slot.conn
            if slot.job is None and conn is not None and conn.alive:
                slot.conn = None
                return conn
        return None

    # --- Ctrl-C ------------------------------------------------------------------------

    def _on_sigint(self, signum: int, frame: Any) -> None:
        self.interrupts += 1
        if not self.critical:
            self.raised = self.interrupts
            raise KeyboardInterrupt

    def _checkpoint(self) -> None:
        """Raise the KeyboardInterrupt of a Ctrl-C noted during a step, now that it is safe."""
        if self.interrupts > self.raised:
            self.raised = self.interrupts
            raise KeyboardInterrupt

    @contextlib.contextmanager
    def _guarded(self) -> Iterator[None]:
        self.critical = True
        try:
            yield
        finally:
            self.critical = False

    # --- the loop ----------------------------------------------------------------------

    def _mails(self, todo: Sequence[Recipient]) -> Iterator[tuple[Recipient, str, bytes]]:
        """(row, address, bytes) of each row to send: from the spool, else composed now."""
        spool = self.spool
        if spool is not None:
            self.missing = [r.member_id for r in todo if r.member_id not in spool]
            for r in todo:
                if r.member_id in spool:
                    yield (r, *spool.get(r.member_id))
            return
        sendable = self.plan.audience.sendable
        by_id = sendable.set_index(sendable["id"].astype("int64"), drop=False)
        ids = [r.member_id for r in todo if r.member_id in by_id.index]
        self.missing = [r.member_id for r in todo if r.member_id not in by_id.index]
        rec = {r.member_id: r for r in todo}
        for mail in self.plan.composer.compose_all(by_id.loc[ids]):
            yield rec[int(mail.member_id)], mail.to, mail.raw

    def open_bar(self, total: int) -> None:
        """tqdm.auto (a widget in Jupyter, a bar in a terminal), or the caller's callback."""
        self.total = total
        if callable(self.progress):
            self.progress(0, total)
        elif self.progress and self.bar is None:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, desc="送信中", unit="通")

    def run_round(self, todo: Sequence[Recipient], *, resend: bool = False) -> None:
        """Hand each row over once (unless the run stops); 4xx replies leave them deferred.

        Each step commits, in one transaction, the results that came back and the hand-over
        of the next mails (:meth:`Ledger.hand_over`, which withholds a row whose address was
        listed meanwhile), then starts those mails on the idle connections at once: the
        rate limit is waited for before the hand-over, never between it and the server.
        When the ledger refuses a hand-over (the campaign was reclaimed, the month changed
        and the new one is full) or a connection cannot be opened, ``fatal`` is set: what
        is in flight finishes, nothing more starts.
        """
        mails = self._mails(todo)
        exhausted = False
        with self._guarded():
            while True:
                self._checkpoint()
                if self.in_flight and (
                    self.unrecorded or (self.idle and not exhausted and self.fatal is None)
                ):
                    # about to step: replies that came in meanwhile first, so the server
                    # has their next commands while we commit, and the connections they
                    # free join this step's hand-over rather than need a step of their own
                    self.collect(timeout=0)
                room = self._room()
                batch: list[tuple[Recipient, str, bytes]] = []
                while not exhausted and self.fatal is None and len(batch) < room:
                    item = next(mails, None)
                    if item is None:
                        exhausted = True
                        break
                    batch.append(item)
                if batch and self.limiter.limited:
                    self.limiter.take()  # _room saw the place free; one thread takes it
                if batch or self.unrecorded:
                    self._step(batch, resend)
                # how long to wait for a reply: until one comes, or until the rate limit
                # lets the next mail start on an idle connection
                wait: float | None = None
                more = not exhausted and self.fatal is None and not self.suspect
                if more and self.idle and self.limiter.limited:
                    wait = self.limiter.delay()
                if self.in_flight:
                    self.collect(timeout=wait)
                elif wait:
                    self._pause(wait)
                elif not self.unrecorded and (exhausted or self.fatal is not None):
                    break

    def _room(self) -> int:
        """How many mails may start now: one per idle connection, one at a time under a
        rate limit, none until it allows one.

        While a connection's mail is lost after its data and no reply has come since, none
        (see :meth:`_result`): the server may have stopped answering mid-transaction.
        """
        if self.suspect and not self.in_flight and self.fatal is None:
            self.fatal = TransportError(
                f"SMTP {self.transport.description}: the server stopped answering after the "
                "message data (a mail was lost after its data and no connection got a reply "
                "since); nothing more was handed over",
                ja="SMTPサーバーがメール本文を受け取ったあと応答しなくなったため、送信を止めました。",
            )
        if not self.idle or self.suspect:
            return 0
        if not self.limiter.limited:
            return len(self.idle)
        return 0 if self.limiter.delay() > 0 else 1

    def _step(self, batch: list[tuple[Recipient, str, bytes]], resend: bool) -> None:
        """Begin ``batch``, commit the results and its hand-over in ONE transaction, then let
        each mail go on, or give up one the commit did not hand over.

        The commit is most of what a step costs, so a mail on an open, polled connection is
        begun first with its ``MAIL FROM`` alone (``hold``), which the server reads while we
        commit: a run of 10,000 mails to a local server takes 15% less time. Nothing is read
        from any connection before the commit is done, and the recipient and the data are
        written only after it, so no mail is addressed, let alone delivered, before its
        hand-over is committed (:meth:`_begin_all`, :meth:`_give_up`). A mail that needs its
        connection opened first, and other transports (a Maildir, a dry run: they deliver in
        one call), start after the commit.
        """
        results, self.unrecorded = self.unrecorded, []
        begun = self._begin_all(batch)
        if self.fatal is not None:
            batch = []  # a mail could not be begun: none of these is handed over
        handovers = [(r.member_id, r.state) for r, _, _ in batch]
        withheld: frozenset[int] = frozenset()
        try:
            step = self.ledger.hand_over(self.cid, results, handovers, resend=resend)
        except BcartnbError as err:
            # the results were committed alone (or the ledger is gone); the
            # hand-over was not: those mails stay as they were, untouched
            for slot, res in begun.values():
                self._give_up(slot, res)
            if not _recorded_alone(err):
                self.unrecorded = results + self.unrecorded
                raise
            self._account(results)
            self.fatal = self.fatal or err
            batch = []
        except BaseException:
            for slot, res in begun.values():
                self._give_up(slot, res)
            self.unrecorded = results + self.unrecorded  # rolled back: record later
            raise
        else:
            self.counted += step.counted
            withheld = frozenset(step.withheld)
            self._account(results, withheld=len(withheld))
        for i, (r, to, raw) in enumerate(batch):
            if self.fatal is not None:
                for slot, res in begun.values():
                    self._give_up(slot, res)
                self._unstart([b for b in batch[i:] if b[0].member_id not in withheld])
                break  # a connection failed: these never start
            early = begun.pop(r.member_id, None)
            if r.member_id in withheld:
                if early is not None:
                    self._give_up(*early)
            elif early is not None:
                self._go(*early)
            else:
                self._start(Job(r.member_id, to, raw, r.state))

    def _begin_all(
        self, batch: list[tuple[Recipient, str, bytes]]
    ) -> dict[int, tuple[Slot, SendResult | None]]:
        """Begin what :meth:`_step` may begin before its commit: member id → (slot, the
        result if the transaction ended at once). An error sets ``fatal`` and gives every
        one of them up: then nothing of the batch is handed over."""
        begun: dict[int, tuple[Slot, SendResult | None]] = {}
        for r, to, raw in batch:
            slot = next((s for s in reversed(self.idle) if s.polled and s.open), None)
            if slot is None:
                break  # the rest start after the commit, connecting first
            self.idle.remove(slot)
            job = slot.job = Job(r.member_id, to, raw, r.state)
            conn = cast(PollableConnection, slot.conn)
            try:
                begun[r.member_id] = (slot, conn.begin(self._sender(job), [to], raw, hold=True))
            except Exception as err:  # nothing of it was written: it stays as it was
                self.fatal = self.fatal or err
                self._give_up(slot, None)
                for other, res in begun.values():
                    self._give_up(other, res)
                return {}
        return begun

    def _give_up(self, slot: Slot, res: SendResult | None) -> None:
        """A mail begun but not handed over: only its ``MAIL FROM`` went out, so closing the
        connection (a server ends a transaction without its data and delivers nothing)
        leaves no trace of it; the slot opens a new one when next used."""
        slot.job = None
        self.idle.append(slot)
        if res is None and slot.conn is not None:  # still running (else already ended)
            conn, slot.conn = slot.conn, None
            with contextlib.suppress(Exception):
                conn.close()

    def _go(self, slot: Slot, res: SendResult | None) -> None:
        """A mail begun before its hand-over was committed: on with it now."""
        if res is None:
            try:
                res = cast(PollableConnection, slot.conn).go()
            except Exception as err:  # decided by _result
                self._end(slot, None, err)
                return
            if res is None:
                self.in_flight += 1
                return
        self._end(slot, res, None)

    def _unstart(self, batch: Sequence[tuple[Recipient, str, bytes]]) -> None:
        for r, _, _ in batch:
            self.unrecorded.append(DeliveryResult(r.member_id, "unsent", None, "not started"))
            if r.state in COUNTED_FROM:
                self.counted -= 1

    def _pause(self, seconds: float) -> None:
        """Wait for the rate limit with nothing in flight: a Ctrl-C may cut it short."""
        self.critical = False
        try:
            self._checkpoint()
            self.limiter.pause(seconds)
        finally:
            self.critical = True

    def _start(self, job: Job) -> None:
        """Begin one mail on an idle connection, (re)connecting it first if need be."""
        slot = self.idle.pop()
        slot.job = job
        try:
            if slot.error is not None:
                err, slot.error = slot.error, None
                raise err
            conn = slot.conn
            if conn is None or not conn.alive:
                slot.conn = None
                if conn is not None:
                    with contextlib.suppress(Exception):
                        conn.close()
                conn = slot.conn = self.transport.connect()
                slot.polled = isinstance(conn, PollableConnection)
            if slot.polled:
                res = cast(PollableConnection, conn).begin(self._sender(job), [job.to], job.raw)
                if res is None:
                    self.in_flight += 1
                    return
            else:
                res = conn.send(self._sender(job), [job.to], job.raw)
        except Exception as err:  # decided by _result
            self._end(slot, None, err)
            return
        self._end(slot, res, None)

    def _sender(self, job: Job) -> str:
        """The envelope sender: the shop's address, or with VERP this mail's own."""
        if self.verp_base is None or self.verp is None:
            return self.envelope_from
        return self.verp.address(self.verp_base, self.cid, job.member_id)

    def _end(self, slot: Slot, res: SendResult | None, err: BaseException | None) -> None:
        job = slot.job
        assert job is not None
        slot.job = None
        self.idle.append(slot)
        r = self._result(job, res, err)
        if r is not None:
            self.unrecorded.append(r)

    def collect(self, timeout: float | None = None) -> None:
        """Wait for the next reply (at most ``timeout`` s), then take every one that is ready."""
        now = time.monotonic()
        by_fd: dict[int, tuple[Slot, PollableConnection]] = {}
        first = math.inf  # the nearest deadline
        for s in self.slots:  # one pass: about three waits a mail
            if s.job is not None:
                c = cast(PollableConnection, s.conn)
                by_fd[c.fileno()] = (s, c)
                if c.deadline < first:
                    first = c.deadline
        if not by_fd:
            return
        if first <= now:
            for s, c in by_fd.values():
                if c.deadline <= now:
                    self.in_flight -= 1
                    self._end(s, c.expire(), None)
            return
        wait = first - now if timeout is None else min(first - now, timeout)
        poller = self._poller(tuple([(fd, c.events) for fd, (_, c) in by_fd.items()]))
        self.critical = False  # waiting: the safe moment for a Ctrl-C
        try:
            self._checkpoint()
            ready = poller.poll(max(0, math.ceil(wait * 1000)))
        finally:
            self.critical = True
        for fd, _ in ready:
            s, c = by_fd[fd]
            try:
                res = c.advance()
            except Exception as err:  # decided by _result
                self.in_flight -= 1
                self._end(s, None, err)
                continue
            if res is not None:
                self.in_flight -= 1
                self._end(s, res, None)

    def _poller(self, fds: tuple[tuple[int, int], ...]) -> select.poll:
        """The poll set for these (socket, events) (with k connections, at most 2**k sets
        while every command fits the socket at once: each busy or not)."""
        poller = self._pollers.get(fds)
        if poller is None:
            if len(self._pollers) >= 64:  # reconnections bring new fd numbers: stay small
                self._pollers.clear()
            poller = self._pollers[fds] = select.poll()
            for fd, events in fds:
                poller.register(fd, events)
        return poller

    def flush(self) -> None:
        """Commit the results taken but not yet recorded (after Ctrl-C or a fatal error)."""
        results, self.unrecorded = self.unrecorded, []
        if not results:
            return
        try:
            self.ledger.mark_results(self.cid, results)
        except BcartnbError:
            # an interrupted exchange may have committed some of them after all
            for r in results:
                with contextlib.suppress(BcartnbError):
                    self.ledger.mark_results(self.cid, [r])
        self._account(results)

    def _account(self, results: Sequence[DeliveryResult], *, withheld: int = 0) -> None:
        self.tally.update(r.state for r in results)
        self.tally["withheld"] += withheld
        finished = withheld + sum(1 for r in results if r.state in ("sent", "failed", "uncertain"))
        self.finished += finished
        if self.bar is not None:
            self.bar.update(finished)
        elif callable(self.progress) and finished:
            self.progress(self.finished, self.total)

    def _result(
        self, job: Job, res: SendResult | None, error: BaseException | None
    ) -> DeliveryResult | None:
        if error is not None:
            if self.fatal is None:
                self.fatal = error
            if isinstance(error, TransportError):
                # the connection could not be opened (or AUTH is required): never started
                if job.state in COUNTED_FROM:
                    self.counted -= 1
                return DeliveryResult(job.member_id, "unsent", None, str(error)[:500])
            return None  # unknown: it stays sending, and the run's end makes it uncertain
        assert res is not None
        message = res.message or None
        if res.code is None:  # the connection was lost: a server that stopped answering?
            self.lost_in_a_row += 1
            if self.lost_in_a_row >= 2 * self.k and self.fatal is None:
                self.fatal = TransportError(
                    f"SMTP {self.transport.description}: the server stopped answering "
                    f"({self.lost_in_a_row} connections lost in a row, the last: {res.message})",
                    ja=f"SMTPサーバーが応答しなくなったため（{self.lost_in_a_row}"
                    " 回続けて接続が切れました）、"
                    "送信を止めました。",
                )
        else:
            self.lost_in_a_row = 0
            self.suspect = False  # the server answers: what was lost was that connection's
        if res.outcome is Outcome.UNCERTAIN:
            # Until another connection gets a reply, hand nothing over: a server that stopped
            # answering mid-transaction would leave every next mail uncertain too. So the
            # mails in flight when it stopped (one per connection) are all it can cost.
            self.suspect = True
        if res.outcome is Outcome.SENT:
            return DeliveryResult(job.member_id, "sent", res.code, message)
        if res.outcome is Outcome.PERMANENT:
            return DeliveryResult(job.member_id, "failed", res.code, message)
        if res.outcome is Outcome.TEMPORARY:
            return DeliveryResult(job.member_id, "deferred", res.code, message)
        return DeliveryResult(job.member_id, "uncertain", res.code, message)

    def drain(self, timeout: float = 30.0) -> None:
        """After Ctrl-C or a fatal error: record what the in-flight mails became."""
        deadline = time.monotonic() + timeout
        with self._guarded():
            while self.in_flight > 0 and time.monotonic() < deadline:
                self.collect(timeout=max(0.01, deadline - time.monotonic()))
            self.flush()

    def wait(self, seconds: float) -> None:
        """Backoff between rounds, renewing the lease meanwhile; a Ctrl-C cuts it short."""
        left = seconds
        while left > 0:
            step = min(left, 30.0)
            self.sleep(step)
            left -= step
            self.ledger.heartbeat(self.cid)


def _recorded_alone(err: BcartnbError) -> bool:
    """The ledger refused a hand-over after committing the results alone (see exchange)."""
    return isinstance(err, (CampaignStateError, QuotaExceededError))
