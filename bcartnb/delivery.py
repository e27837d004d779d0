"""The send loop: journaled, parallel, rate-limited, retried, resumable, never twice.

B-Cart loses a delivery when the browser closes. Here every mail's state is in the ledger
(:mod:`bcartnb.ledger`) before and after its SMTP transaction, so a campaign survives Ctrl-C,
a dropped connection, a closed notebook or a SIGKILL:

* Before anything goes out, every mail is composed once (an encoding or template error stops
  the campaign with nobody mailed), the campaign is recorded and its size reserved in the
  quota (:class:`~bcartnb.exceptions.QuotaExceededError` otherwise).
* K reused SMTP connections (opened in parallel while the mails are composed) are driven
  by ONE thread that polls their sockets. Each step commits, in one transaction, the
  results that came back and the ``sending`` mark (counted) of the next mails
  (:meth:`~bcartnb.ledger.Ledger.exchange`), then starts those mails. At most K mails are
  in flight, so after a SIGKILL at most K (4 by default) are ``uncertain``; ``resume``
  lists them and resends them only when asked.
* 4xx replies and connections dropped before the message data went out are retried in
  rounds with exponential backoff (each try is an SMTP transaction, so each counts); 5xx
  marks the member failed (counted too: B-Cart counts a refused mail). A drop after the data
  leaves the mail ``uncertain``: it may have been delivered.
* A connection that cannot be (re)opened (unreachable, TLS, AUTH) stops the campaign with a
  :class:`~bcartnb.exceptions.TransportError`; the mails it had not started are refunded
  and stay pending for ``bcartnb resume``.
* The admin copy goes out once per campaign, when it is done, resumes included; it is not
  counted in the quota.
* Running the same campaign (same parameters, same recipients) again is refused unless
  ``repeat=True``: the answer to "did it go out?" is ``bcartnb resume``, not a second send.
"""

from __future__ import annotations

import base64
import contextlib
import math
import os
import pickle
import select
import signal
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from email.utils import format_datetime, make_msgid
from typing import IO, Any, NamedTuple, cast

import pandas as pd

from bcartnb.audience import REASON_LABELS
from bcartnb.campaign import CampaignPlan, CampaignSpec, plan_campaign
from bcartnb.compose import ComposedMail, Composer, encode_header_words
from bcartnb.exceptions import (
    BcartnbError,
    CampaignStateError,
    ComposeError,
    InputError,
    QuotaExceededError,
    SelectionError,
    TransportError,
)
from bcartnb.ledger import DeliveryResult, Ledger, Recipient, fingerprint
from bcartnb.members import check_addresses, normalize_address
from bcartnb.quota import QuotaStatus, now_tokyo, quota_refusal_ja
from bcartnb.settings import Settings
from bcartnb.transports import (
    Connection,
    Outcome,
    PollableConnection,
    SendResult,
    Transport,
    transport_from_settings,
)

__all__ = [
    "DONE_MESSAGE",
    "TEST_PREFIX",
    "DeliverySummary",
    "RateLimiter",
    "deliver",
    "dry_run",
    "mask_address",
    "resume",
    "run_campaign",
    "send_test",
]

DONE_MESSAGE = "メール送信を完了いたしました。"


def mask_address(address: str) -> str:
    """``taro@example.co.jp`` → ``t***@example.co.jp``: reports and logs never show addresses."""
    local, at, domain = str(address).partition("@")
    if not at:
        return "***"
    return f"{local[:1]}***@{domain}"


# --- rate limiting -----------------------------------------------------------------------


class RateLimiter:
    """Spaces sends so neither the per-second nor the per-hour limit is ever exceeded.

    Shared servers throttle or block a burst (the reason B-Cart caps mail at all); a sliding
    window per limit is exact where a token bucket would allow a double burst at a window's
    edge. Thread-safe; clock and sleep are injected so tests never sleep.
    """

    def __init__(
        self,
        per_second: float | None = None,
        per_hour: int | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._windows: list[tuple[int, float, deque[float]]] = []
        if per_second:
            # a fractional rate (0.5/s) is one mail every 2 s
            count, span = (int(per_second), 1.0) if per_second >= 1 else (1, 1.0 / per_second)
            self._windows.append((count, span, deque()))
        if per_hour:
            self._windows.append((int(per_hour), 3600.0, deque()))
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()

    @property
    def limited(self) -> bool:
        """Whether any limit is set (else :meth:`acquire` never waits)."""
        return bool(self._windows)

    def acquire(self) -> None:
        """Block until one more send fits in every window, then record it."""
        if not self._windows:
            return
        while True:
            with self._lock:
                now = self._clock()
                wait = 0.0
                for limit, span, times in self._windows:
                    while times and times[0] <= now - span:
                        times.popleft()
                    if len(times) >= limit:
                        wait = max(wait, times[0] + span - now)
                if wait <= 0:
                    for _, _, times in self._windows:
                        times.append(now)
                    return
            self._sleep(wait)


# --- the summary -------------------------------------------------------------------------


@dataclass
class DeliverySummary:
    """What a run did; :meth:`as_dict` holds the contract's JSON keys and a few more."""

    campaign_id: str
    status: str
    selected: int
    sendable: int
    unsendable: int
    reasons: dict[str, int]
    sent: int
    failed: int
    quota: dict[str, Any]
    dry_run: bool = False
    uncertain: list[tuple[int, str]] = field(default_factory=list)
    pending: int = 0
    admin_copy: str | None = None
    failures: list[tuple[int, str, int | None, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "campaign_id": self.campaign_id,
            "status": self.status,
            "dry_run": self.dry_run,
            "selected": self.selected,
            "sendable": self.sendable,
            "unsendable": self.unsendable,
            "reasons": dict(self.reasons),
            "sent": self.sent,
            "failed": self.failed,
            "uncertain": len(self.uncertain),
            "pending": self.pending,
            "admin_copy": self.admin_copy,
            "quota": dict(self.quota),
            "warnings": list(self.warnings),
        }

    @property
    def resume_command(self) -> str:
        return f"bcartnb resume {self.campaign_id}"

    def message(self) -> str:
        """The closing words, in the wizard's and the command line's language."""
        q = self.quota
        cap = "上限なし" if q.get("cap") is None else f"{q['cap']:,}"
        counts = (
            f"送信件数 {self.sendable:,} / 送信できない件数 {self.unsendable:,} / "
            f"送信済み {self.sent:,} / 失敗 {self.failed:,}"
        )
        quota = (
            f"今月の配信数 {q.get('used_before', 0):,} → {q.get('used_after', 0):,}（上限 {cap}）"
        )
        if self.dry_run:
            head = (
                "確認のみ（送信していません）。送信するには --send / send=True を指定してください。"
            )
        elif self.status == "done" and self.failed and not self.sent:
            head = "メールを送信できませんでした（すべて失敗しました）。"
        elif self.status == "done":
            head = DONE_MESSAGE
        else:
            head = (
                f"送信を中断しました（{self.status}）。"
                f"続きは `{self.resume_command}` で再開できます。"
            )
        lines = [head, counts]
        reasons = [
            f"{REASON_LABELS.get(code, code)} {n:,}" for code, n in self.reasons.items() if n
        ]
        if reasons:
            lines.append("送信できない理由: " + " / ".join(reasons))
        lines.append(quota)
        if self.uncertain:
            lines.append(
                f"送信結果が不明なメール {len(self.uncertain)} 件（接続が途中で切れました）: "
                + ", ".join(f"{mid} {mask_address(a)}" for mid, a in self.uncertain[:10])
                + "。再送するには `bcartnb resume --resend-uncertain "
                + f"{self.campaign_id}` を実行してください。"
            )
        if self.pending and not self.dry_run and self.status == "done":
            lines.append(f"未送信のまま残ったメール {self.pending} 件があります。")
        return "\n".join(lines)


# --- dry run -----------------------------------------------------------------------------


def compose_check(plan: CampaignPlan, rows: pd.DataFrame | None = None) -> None:
    """Compose every sendable member (or ``rows``) once: no error can appear halfway through."""
    deque(plan.composer.compose_all(plan.audience.sendable if rows is None else rows), maxlen=0)


class _Spool:
    """Every mail of a campaign composed once, before the first goes out, kept on disk.

    The compose check has to compose every mail anyway (an error in member 5,000 must stop
    us before member 1); keeping its bytes spares composing them all a second time while
    sending. They go to anonymous temporary files, not to memory, so a campaign of any
    size needs a few bytes of index per member; the files have no name and vanish when
    closed or when the process dies. The Date header is renewed as each mail goes out,
    as if it had been composed then (a rate-limited campaign can take hours). With a
    :class:`_SpoolHelper`, the second half is composed by a forked process meanwhile.
    """

    def __init__(
        self,
        plan: CampaignPlan,
        helper: _SpoolHelper | None = None,
        rows: pd.DataFrame | None = None,
    ) -> None:
        self._files: list[IO[bytes]] = []
        self._index: dict[int, tuple[str, int, int, int, bytes]] = {}
        self._composer = plan.composer
        sendable = plan.audience.sendable if rows is None else rows
        try:
            mine = sendable if helper is None else sendable.iloc[: helper.first_row]
            self._files.append(_spool_file())
            offset = 0
            write = self._files[0].write
            index = self._index
            for mail in plan.composer.compose_all(mine):
                raw = mail.raw
                write(raw)
                index[int(mail.member_id)] = (mail.to, 0, offset, len(raw), mail.date.encode())
                offset += len(raw)
            self._files[0].flush()
            if helper is not None:
                file, entries = helper.result(plan)
                self._files.append(file)
                for member_id, to, off, size, date in entries:
                    index[member_id] = (to, 1, off, size, date)
        except BaseException:
            self.close()
            raise

    def __contains__(self, member_id: int) -> bool:
        return member_id in self._index

    def get(self, member_id: int) -> tuple[str, bytes]:
        """(address, bytes as they go out now) of one member's mail."""
        to, file, offset, size, date = self._index[member_id]
        raw = os.pread(self._files[file].fileno(), size, offset)
        now = self._composer.date_header().encode()
        if date != now:
            raw = raw.replace(b"\r\nDate: " + date + b"\r\n", b"\r\nDate: " + now + b"\r\n", 1)
        return to, raw

    def close(self) -> None:
        for file in self._files:
            file.close()
        self._files = []


def _spool_file() -> IO[bytes]:
    # closed by _Spool.close(); a large buffer makes a few big writes, not one per mail or two
    return tempfile.TemporaryFile(prefix="bcartnb-spool-", buffering=1 << 20)


class _SpoolHelper:
    """A forked process that composes the second half of the spool while we compose the first.

    Composing is pure CPU and the campaign waits for all of it before the first mail goes
    out, so a second core halves that wait. Only where ``fork`` is cheap and safe: Linux, a
    single Python thread (the command line; never inside a Jupyter kernel, whose threads a
    fork would leave in an unknown state; Arrow's own pools re-create themselves after a
    fork), and enough mails to be worth a process. The child writes the bytes to a
    temporary file inherited from us and sends back the index; on an error it says which
    row failed, and we compose that row here to raise the real error.
    """

    MIN_MAILS = 4000

    @classmethod
    def fork(cls, plan: CampaignPlan, rows: pd.DataFrame | None = None) -> _SpoolHelper | None:
        """Start the helper on the second half of ``rows`` (all sendable), or None if unfit."""
        rows = plan.audience.sendable if rows is None else rows
        n = len(rows)
        if (
            n < cls.MIN_MAILS
            or not sys.platform.startswith("linux")
            or threading.active_count() != 1
        ):
            return None
        # The first mail settles the composer's one-time choices (the HTML fast path)
        # before they are copied into the child.
        deque(plan.composer.compose_all(rows.iloc[:1]), maxlen=0)
        return cls(plan, n // 2, rows)

    def __init__(
        self, plan: CampaignPlan, first_row: int, rows: pd.DataFrame | None = None
    ) -> None:
        self.rows = plan.audience.sendable if rows is None else rows
        self.first_row = first_row  # the child composes from this row on
        self.file: IO[bytes] | None = _spool_file()
        self._read, write = os.pipe()
        self.pid = os.fork()
        if self.pid == 0:  # the child: compose, report, leave without running any cleanup
            os.close(self._read)
            code = 0
            try:
                _compose_child(plan, self.rows.iloc[first_row:], self.file, write)
            except BaseException:
                code = 1
            finally:
                os._exit(code)
        os.close(write)

    def result(
        self, plan: CampaignPlan
    ) -> tuple[IO[bytes], list[tuple[int, str, int, int, bytes]]]:
        """The child's file and index; its first error raised here as if composed here."""
        chunks = []
        while chunk := os.read(self._read, 1 << 16):
            chunks.append(chunk)
        self._reap()
        try:
            kind, payload = pickle.loads(b"".join(chunks))
        except Exception as err:
            raise ComposeError("the compose helper process ended without a result") from err
        if kind == "error":
            row, message = payload
            at = self.first_row + row
            member = self.rows.iloc[at : at + 1]
            deque(plan.composer.compose_all(member), maxlen=0)  # raises the real error
            raise ComposeError(message)
        file, self.file = self.file, None
        assert file is not None
        return file, payload

    def _reap(self) -> None:
        if self.pid:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(self.pid, 0)
            self.pid = 0
        if self._read >= 0:
            os.close(self._read)
            self._read = -1

    def close(self) -> None:
        """Stop the child if it still runs (our half failed, or Ctrl-C) and free its file."""
        if self.pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
        self._reap()
        if self.file is not None:
            self.file.close()
            self.file = None


def _compose_child(plan: CampaignPlan, rows: pd.DataFrame, file: IO[bytes], pipe: int) -> None:
    entries: list[tuple[int, str, int, int, bytes]] = []
    try:
        offset = 0
        for mail in plan.composer.compose_all(rows):
            raw = mail.raw
            file.write(raw)
            entries.append((int(mail.member_id), mail.to, offset, len(raw), mail.date.encode()))
            offset += len(raw)
        file.flush()
        payload = pickle.dumps(("ok", entries))
    except Exception as err:
        payload = pickle.dumps(("error", (len(entries), f"{type(err).__name__}: {err}")))
    view = memoryview(payload)
    while view:
        view = view[os.write(pipe, view) :]
    os.close(pipe)


def _spool_or_check(
    plan: CampaignPlan, helper: _SpoolHelper | None = None, rows: pd.DataFrame | None = None
) -> _Spool | None:
    """Compose every mail (of ``rows``) before the first goes out; spool them if there is room."""
    try:
        return _Spool(plan, helper, rows)
    except OSError:
        if helper is not None:
            helper.close()
        compose_check(plan, rows)  # no room for the spool: check now, compose again to send
        return None


def dry_run(plan: CampaignPlan) -> DeliverySummary:
    """Compose everything, project the quota, send nothing; refuse (exit 3) if it won't fit."""
    compose_check(plan)
    n = len(plan.audience.sendable)
    summary = DeliverySummary(
        campaign_id=plan.campaign_id,
        status="dry-run",
        dry_run=True,
        sent=0,
        failed=0,
        quota=_quota_dict(plan.quota, plan.quota.used + n),
        warnings=list(plan.warnings),
        **plan.audience.summary(),
    )
    if not plan.quota.fits(n):
        raise QuotaExceededError(
            f"campaign of {n} mails does not fit this month's quota: cap {plan.quota.cap}, "
            f"used {plan.quota.used}, reserved {plan.quota.reserved}, "
            f"remaining {plan.quota.remaining}; nothing was sent",
            ja=quota_refusal_ja(plan.quota, n),
        )
    return summary


def _quota_dict(status: QuotaStatus, used_after: int) -> dict[str, Any]:
    return {
        "plan": status.plan.name,
        "month": status.month,
        "cap": status.cap,
        "used_before": status.used,
        "used_after": used_after,
    }


# --- the send loop -----------------------------------------------------------------------


class _Connector:
    """Opens the K connections in parallel, in the background, while the mails are composed.

    Against a real server a TLS handshake and a login take a few hundred milliseconds each;
    one thread opening K of them after composing would hold the first mail back by their
    sum. A connection that fails keeps its error for the send loop, which stops the
    campaign with it as if it had failed there.
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


class _Job(NamedTuple):
    member_id: int
    to: str
    raw: bytes
    attempts: int  # including this one


class _Slot:
    """One of the K connections, and the mail it is sending (None when idle)."""

    __slots__ = ("conn", "error", "job", "polled")

    def __init__(self) -> None:
        self.conn: Connection | None = None
        self.error: BaseException | None = None  # opening it in the background failed
        self.job: _Job | None = None
        self.polled = False  # the connection is driven by poll (begin / advance)

    def adopt(self, item: Connection | BaseException | None) -> None:
        if isinstance(item, BaseException):
            self.error = item
        elif item is not None:
            self.conn = item
            self.polled = isinstance(item, PollableConnection)


class _Sender:
    """One run of one campaign: K connections driven by ONE thread, the journal, the bar.

    SMTP connections are polled (:class:`~bcartnb.transports.PollableConnection`): while
    the server answers one, the others are read and written, so K transactions overlap
    without K threads contending for the GIL. Other transports (a Maildir outbox, a dry
    run) finish each mail as it starts. Ctrl-C never lands halfway through a step: the
    handler only notes it while the loop is recording or writing, and the loop acts on it
    when it next waits, so every mail's state is known when it stops.
    """

    def __init__(
        self,
        plan: CampaignPlan,
        ledger: Ledger,
        transport: Transport,
        *,
        connections: int,
        retries: int,
        backoff: float,
        limiter: RateLimiter,
        progress: bool | Callable[[int, int], None],
        sleep: Callable[[float], None],
        spool: _Spool | None = None,
        connector: _Connector | None = None,
    ) -> None:
        self.plan = plan
        self.spool = spool
        self.connector = connector
        self.cid = plan.campaign_id
        self.ledger = ledger
        self.transport = transport
        self.envelope_from = plan.settings.from_addr
        self.k = max(1, connections)
        self.retries = max(0, retries)
        self.backoff = backoff
        self.limiter = limiter
        self.sleep = sleep
        self.slots = [_Slot() for _ in range(self.k)]
        self.idle = list(self.slots)
        self.in_flight = 0
        self.counted = 0
        self.unrecorded: list[DeliveryResult] = []
        self.finished = 0
        self.total = 0
        self.fatal: BaseException | None = None
        self.missing: list[int] = []
        self.progress = progress
        self.bar: Any = None
        self.critical = False
        self.interrupts = 0
        self.raised = 0
        self._previous_sigint: Any = None

    def __enter__(self) -> _Sender:
        if self.connector is not None:
            for slot, item in zip(self.slots, self.connector.take(), strict=False):
                slot.adopt(item)
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
        """Send each row once; temporary failures go back to pending for the next round.

        Each step commits, in one transaction, the results that came back and the hand-over
        of the next mails (:meth:`Ledger.exchange`), then starts those mails on the idle
        connections: a result is committed before anything else is sent, and at most K are
        in flight.
        """
        mails = self._mails(todo)
        exhausted = False
        with self._guarded():
            while True:
                self._checkpoint()
                batch: list[tuple[Recipient, str, bytes]] = []
                while not exhausted and self.fatal is None and len(batch) < len(self.idle):
                    item = next(mails, None)
                    if item is None:
                        exhausted = True
                        break
                    batch.append(item)
                if batch or self.unrecorded:
                    if self.in_flight:
                        # replies that came in meanwhile: step those connections on first,
                        # so the server has their next commands while we commit
                        self.collect(timeout=0)
                    results, self.unrecorded = self.unrecorded, []
                    try:
                        self.counted += self.ledger.exchange(
                            self.cid, results, [r.member_id for r, _, _ in batch], resend=resend
                        )
                    except (CampaignStateError, QuotaExceededError):
                        self._account(results)  # the results were committed; the hand-over not
                        raise
                    except BaseException:
                        self.unrecorded = results + self.unrecorded  # rolled back: record later
                        raise
                    self._account(results)
                    for i, (r, to, raw) in enumerate(batch):
                        try:
                            self._pace()
                        except KeyboardInterrupt:
                            # marked sending but never started: back to pending, refunded
                            self.unrecorded += [
                                DeliveryResult(m.member_id, "pending", None, "stopped", False)
                                for m, _, _ in batch[i:]
                            ]
                            raise
                        self._start(_Job(r.member_id, to, raw, r.attempts + 1))
                if self.in_flight:
                    self.collect()
                elif not self.unrecorded and (exhausted or self.fatal is not None):
                    break
        if self.fatal is not None:
            raise self.fatal

    def _pace(self) -> None:
        """Wait for the rate limit, the one wait a Ctrl-C may cut short before a mail starts."""
        if not self.limiter.limited:
            return
        self.critical = False
        try:
            self._checkpoint()
            self.limiter.acquire()
        finally:
            self.critical = True

    def _start(self, job: _Job) -> None:
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
                res = cast(PollableConnection, conn).begin(self.envelope_from, [job.to], job.raw)
                if res is None:
                    self.in_flight += 1
                    return
            else:
                res = conn.send(self.envelope_from, [job.to], job.raw)
        except Exception as err:  # decided by _result
            self._end(slot, None, err)
            return
        self._end(slot, res, None)

    def _end(self, slot: _Slot, res: SendResult | None, err: BaseException | None) -> None:
        job = slot.job
        assert job is not None
        slot.job = None
        self.idle.append(slot)
        r = self._result(job, res, err)
        if r is not None:
            self.unrecorded.append(r)

    def collect(self, timeout: float | None = None) -> None:
        """Wait for the next reply (at most ``timeout`` s), then take every one that is ready."""
        busy = [s for s in self.slots if s.job is not None]
        if not busy:
            return
        now = time.monotonic()
        conns = [(s, cast(PollableConnection, s.conn)) for s in busy]
        overdue = [(s, c) for s, c in conns if c.deadline <= now]
        if not overdue:
            wait = min(c.deadline for _, c in conns) - now
            if timeout is not None:
                wait = min(wait, timeout)
            poller = select.poll()
            by_fd: dict[int, tuple[_Slot, PollableConnection]] = {}
            for s, c in conns:
                fd = c.fileno()
                poller.register(fd, select.POLLIN)
                by_fd[fd] = (s, c)
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
            return
        for s, c in overdue:
            self.in_flight -= 1
            self._end(s, c.expire(), None)

    def flush(self) -> None:
        """Commit the results taken but not yet recorded (after Ctrl-C or a fatal error)."""
        results, self.unrecorded = self.unrecorded, []
        if not results:
            return
        try:
            self.ledger.mark_results(self.cid, results)
        except CampaignStateError:
            # an interrupted exchange may have committed some of them after all
            for r in results:
                with contextlib.suppress(CampaignStateError):
                    self.ledger.mark_results(self.cid, [r])
        self._account(results)

    def _account(self, results: Sequence[DeliveryResult]) -> None:
        self.counted -= sum(1 for r in results if not r.counted)
        finished = sum(1 for r in results if r.state != "pending")
        self.finished += finished
        if self.bar is not None:
            self.bar.update(finished)
        elif callable(self.progress) and finished:
            self.progress(self.finished, self.total)

    def _result(
        self, job: _Job, res: SendResult | None, error: BaseException | None
    ) -> DeliveryResult | None:
        if error is not None:
            if isinstance(error, TransportError):
                # the connection could not be opened: this transaction never started
                if self.fatal is None:
                    self.fatal = error
                return DeliveryResult(job.member_id, "pending", None, str(error), False)
            if self.fatal is None:
                self.fatal = error
            return None  # unknown: leave it sending, finish() makes it uncertain
        assert res is not None
        if res.outcome is Outcome.SENT:
            return DeliveryResult(job.member_id, "sent", res.code, res.message or None)
        if res.outcome is Outcome.PERMANENT:
            return DeliveryResult(job.member_id, "failed", res.code, res.message or None)
        if res.outcome is Outcome.TEMPORARY:
            state = "pending" if job.attempts <= self.retries else "failed"
            return DeliveryResult(job.member_id, state, res.code, res.message or None)
        return None  # UNCERTAIN: it stays sending; finish()/reserve() mark it uncertain

    def drain(self, timeout: float = 30.0) -> None:
        """After Ctrl-C or a fatal error: record what the in-flight mails became."""
        deadline = time.monotonic() + timeout
        with self._guarded():
            while self.in_flight > 0 and time.monotonic() < deadline:
                self.collect(timeout=max(0.01, deadline - time.monotonic()))
            self.flush()

    def wait(self, seconds: float) -> None:
        """Backoff between rounds, renewing the reservation's lease meanwhile."""
        left = seconds
        while left > 0:
            step = min(left, 30.0)
            self.sleep(step)
            left -= step
            self.ledger.heartbeat(self.cid)


# --- admin copy --------------------------------------------------------------------------


def _admin_copy(
    plan: CampaignPlan, summary: DeliverySummary, sample: ComposedMail | None, now: datetime
) -> bytes:
    """A plain text mail to the administrator: the counts, then the mail as members got it."""
    settings = plan.settings
    subject_words = encode_header_words(f"【配信控え】{sample.subject if sample else ''}", "utf-8")
    cap = "上限なし" if summary.quota.get("cap") is None else f"{summary.quota['cap']:,}"
    lines = [
        "会員へのメール配信が完了しました。（bcartnb 配信控え）",
        "",
        f"キャンペーンID: {summary.campaign_id}",
        f"送信日時: {now:%Y-%m-%d %H:%M}",
        f"送信件数: {summary.sendable:,}",
        f"送信できない件数: {summary.unsendable:,}",
        f"送信済み: {summary.sent:,}",
        f"失敗: {summary.failed:,}",
        f"今月の配信数: {summary.quota.get('used_after', 0):,}（上限 {cap}）",
    ]
    if summary.failures:
        lines.append("")
        lines.append("送信に失敗した会員:")
        lines += [
            f"  会員ID {mid} {mask_address(addr)} {code or ''} {msg}".rstrip()
            for mid, addr, code, msg in summary.failures[:50]
        ]
    if sample is not None:
        lines += [
            "",
            "----- 配信したメール（1通目の会員への内容） -----",
            "",
            f"件名: {sample.subject}",
            "",
            sample.text,
        ]
    body = "\r\n".join("\r\n".join(lines).splitlines()) + "\r\n"
    domain = settings.from_addr.rpartition("@")[2] or "bcartnb.invalid"
    headers = [
        f"From: {plan.composer.from_header}",
        f"To: {settings.admin}",
        "Subject: " + "\r\n ".join(subject_words),
        f"Date: {format_datetime(now)}",
        f"Message-ID: {make_msgid('bcartnb.admin', domain=domain)}",
        "MIME-Version: 1.0",
        'Content-Type: text/plain; charset="UTF-8"',
        "Content-Transfer-Encoding: base64",
        f"X-Bcartnb-Campaign: {summary.campaign_id}",
    ]
    encoded = base64.encodebytes(body.encode("utf-8")).replace(b"\n", b"\r\n")
    return ("\r\n".join(headers) + "\r\n\r\n").encode("ascii") + encoded


def _send_admin_copy(
    plan: CampaignPlan,
    ledger: Ledger,
    transport: Transport,
    summary: DeliverySummary,
    conn: Connection | None = None,
) -> str | None:
    """The admin copy, once per campaign, over ``conn`` when given (no new TLS login)."""
    admin = plan.settings.admin
    if not admin:
        summary.warnings.append("管理者アドレス（admin）が未設定のため、配信控えを送っていません。")
        return None
    if not ledger.claim_admin_copy(plan.campaign_id):
        return "sent"  # an earlier run sent (or was sending) it: never a second copy
    try:  # a sample of the mail; after the campaign went out, never a reason to fail
        sample = next(iter(plan.composer.compose_all(plan.audience.sendable.head(1))), None)
    except BcartnbError:
        sample = None  # that member's data changed since (a resume composes only the rest)
    raw = _admin_copy(plan, summary, sample, now_tokyo())
    try:
        res = None
        if conn is not None and conn.alive:
            res = conn.send(plan.settings.from_addr, [admin], raw)
            if res.outcome is Outcome.TEMPORARY and res.code is None:
                res = None  # the idle session had been closed by the server: a new one
        if res is None:
            with transport.connect() as fresh:
                res = fresh.send(plan.settings.from_addr, [admin], raw)
    except TransportError as err:
        ledger.release_admin_copy(plan.campaign_id)
        summary.warnings.append(f"配信控えを送れませんでした: {err}")
        return None
    if res.outcome is Outcome.SENT:
        ledger.mark_admin_copy(plan.campaign_id, admin, code=res.code, message=res.message)
        return "sent"
    if res.outcome is Outcome.UNCERTAIN:
        return "uncertain"
    ledger.release_admin_copy(plan.campaign_id)
    summary.warnings.append(f"配信控えが拒否されました: {res.code} {res.message}")
    return None


# --- the public entry points -------------------------------------------------------------


def _options(settings: Settings, **given: Any) -> dict[str, Any]:
    d = settings.delivery
    defaults = {
        "connections": d.connections,
        "retries": d.retries,
        "backoff": d.backoff,
        "rate_per_second": d.rate_per_second,
        "rate_per_hour": d.rate_per_hour,
    }
    return {k: (given[k] if given.get(k) is not None else v) for k, v in defaults.items()}


def _already_sent(ledger: Ledger, fp: str) -> list[Any]:
    return [
        r
        for r in ledger.find_by_fingerprint(fp)
        if r.sent or r.failed or r.journal.get("uncertain") or r.journal.get("sending")
    ]


def deliver(
    plan: CampaignPlan,
    transport: Transport | None = None,
    *,
    ledger: Ledger | None = None,
    repeat: bool = False,
    connections: int | None = None,
    retries: int | None = None,
    backoff: float | None = None,
    rate_per_second: float | None = None,
    rate_per_hour: int | None = None,
    progress: bool | Callable[[int, int], None] = True,
    sleep: Callable[[float], None] = time.sleep,
) -> DeliverySummary:
    """Send a planned campaign for real: the only function that mails members.

    Raises :class:`QuotaExceededError` (nothing sent), :class:`CampaignStateError` (the same
    campaign already went out; see ``repeat``), :class:`ComposeError` /
    :class:`~bcartnb.exceptions.TemplateError` (nothing sent) and :class:`TransportError`
    (the server failed; the rest is pending for :func:`resume`). Ctrl-C stops cleanly and
    returns a summary with status ``interrupted``. ``progress``: True for a tqdm.auto bar,
    False for none, or a callable ``(finished, total)`` (the wizard moves its own bar).
    """
    own = ledger is None
    led = ledger if ledger is not None else Ledger.open(plan.settings.db)
    tr = transport if transport is not None else transport_from_settings(plan.settings)
    options = _options(
        plan.settings,
        connections=connections,
        retries=retries,
        backoff=backoff,
        rate_per_second=rate_per_second,
        rate_per_hour=rate_per_hour,
    )
    try:
        recipients = plan.recipients
        fp = fingerprint(plan.spec.to_params(), recipients)
        if not repeat:
            before = _already_sent(led, fp)
            if before:
                b = before[0]
                raise CampaignStateError(
                    f"this campaign already went out as {b.campaign_id} ({b.status}, "
                    f"{b.sent} sent): nobody is mailed twice; `bcartnb resume {b.campaign_id}` "
                    "continues it, or pass --repeat (repeat=True) to send it again on purpose"
                )
        with _prepared(plan, tr, len(recipients), options["connections"]) as (spool, connector):
            cid = led.create_campaign(
                plan=plan.plan,
                params=plan.spec.to_params(),
                fingerprint=fp,
                campaign_id=plan.campaign_id,
                **plan.audience.summary(),
            )
            led.add_recipients(cid, recipients)
            try:
                status = led.reserve(cid, len(recipients), plan.plan)
            except QuotaExceededError:
                led.finish(cid, "failed")
                raise
            return _run(
                plan,
                led,
                tr,
                status,
                resend_uncertain=False,
                progress=progress,
                sleep=sleep,
                spool=spool,
                connector=connector,
                **options,
            )
    finally:
        if own:
            led.close()


@contextlib.contextmanager
def _prepared(
    plan: CampaignPlan, tr: Transport, n: int, k: int, rows: pd.DataFrame | None = None
) -> Iterator[tuple[_Spool | None, _Connector | None]]:
    """Every mail (of ``rows``) composed, on two cores where it can, while the connections
    open; all of it released when the run ends or stops before sending.

    An error in member 5,000 stops the campaign here, before member 1 is mailed.
    """
    helper = _SpoolHelper.fork(plan, rows)  # forks: before the connector starts its threads
    connector: _Connector | None = None
    spool: _Spool | None = None
    try:
        connector = _connect_early(tr, plan, n, k)
        spool = _spool_or_check(plan, helper, rows)
        yield spool, connector
    finally:
        if helper is not None:
            helper.close()
        if connector is not None:
            connector.close()
        if spool is not None:
            spool.close()


def _connect_early(tr: Transport, plan: CampaignPlan, n: int, k: int) -> _Connector | None:
    """Open the connections while composing, unless the quota already says no.

    A campaign the quota will refuse must not even knock on the server's door.
    """
    if n == 0 or not plan.quota.fits(n):
        return None
    return _Connector(tr, min(max(1, k), n))


def _summary(led: Ledger, cid: str, final: str, quota: dict[str, Any]) -> DeliverySummary:
    record = led.campaign(cid)
    return DeliverySummary(
        campaign_id=cid,
        status=final,
        selected=record.selected,
        sendable=record.sendable,
        unsendable=record.unsendable,
        reasons=dict(record.reasons),
        sent=record.sent,
        failed=record.failed,
        pending=record.journal.get("pending", 0),
        uncertain=[(r.member_id, r.address) for r in led.uncertain(cid)],
        quota=quota,
        admin_copy=record.admin_copy,
    )


def _run(
    plan: CampaignPlan,
    led: Ledger,
    tr: Transport,
    status: QuotaStatus,
    *,
    resend_uncertain: bool,
    progress: bool | Callable[[int, int], None],
    sleep: Callable[[float], None],
    connections: int,
    retries: int,
    backoff: float,
    rate_per_second: float | None,
    rate_per_hour: int | None,
    spool: _Spool | None = None,
    connector: _Connector | None = None,
) -> DeliverySummary:
    cid = plan.campaign_id
    limiter = RateLimiter(rate_per_second, rate_per_hour)
    spare: Connection | None = None
    final = "interrupted"
    error: BaseException | None = None
    sender = _Sender(
        plan,
        led,
        tr,
        connections=connections,
        retries=retries,
        backoff=backoff,
        limiter=limiter,
        progress=progress,
        sleep=sleep,
        spool=spool,
        connector=connector,
    )
    try:
        with sender:
            todo = led.pending(cid)
            maybe = led.uncertain(cid) if resend_uncertain else []
            sender.open_bar(len(todo) + len(maybe))
            try:
                if maybe:
                    sender.run_round(maybe, resend=True)
                for round_no in range(retries + 1):
                    todo = led.pending(cid)
                    if not todo:
                        break
                    if round_no:
                        sender.wait(backoff * 2 ** (round_no - 1))
                        led.reserve(cid, len(todo), plan.plan)
                    sender.run_round(todo)
                final = "done"
                spare = sender.spare_connection()  # the admin copy rides an open session
            except KeyboardInterrupt:
                sender.drain()
            except TransportError as err:
                sender.drain()
                error = err
            except BaseException:
                with contextlib.suppress(Exception):  # keep what came back; raise the cause
                    sender.drain(timeout=5.0)
                raise
    finally:
        record = led.campaign(cid)
        if final != "done" and not (record.sent or record.failed):
            final = "failed" if error is not None else final
        led.finish(cid, final)
    summary = _summary(led, cid, final, _quota_dict(status, status.used + sender.counted))
    summary.warnings += plan.warnings
    if sender.missing:
        summary.warnings.append(
            f"会員ファイルに見つからない会員 {len(sender.missing)} 件は未送信のままです: "
            + ", ".join(str(m) for m in sender.missing[:10])
        )
    if error is not None:
        ja = getattr(error, "ja", "") or "SMTPサーバーへの送信が止まりました。"
        raise TransportError(
            f"{error}; nothing more was sent: `bcartnb resume {cid}` continues",
            ja=f"{ja}ここまでの送信は記録済みです。直したあと `bcartnb resume {cid}` で"
            "残りを送れます（同じ会員に二度は送りません）。",
        )
    if final == "done":
        summary.failures = led.failures(cid)
        try:
            summary.admin_copy = _send_admin_copy(plan, led, tr, summary, spare)
        finally:
            if spare is not None:
                with contextlib.suppress(Exception):
                    spare.close()
    return summary


def resume(
    campaign_id: str,
    settings: Settings,
    transport: Transport | None = None,
    *,
    resend_uncertain: bool = False,
    ledger: Ledger | None = None,
    progress: bool | Callable[[int, int], None] = True,
    sleep: Callable[[float], None] = time.sleep,
    **options: Any,
) -> DeliverySummary:
    """Continue an interrupted campaign: pending mails go out, sent ones never again.

    Mails that were in flight when the last run died are ``uncertain``: listed in the
    summary and resent only with ``resend_uncertain=True``. The members file is read again,
    so a member deleted since is reported and left pending.
    """
    own = ledger is None
    led = ledger if ledger is not None else Ledger.open(settings.db)
    tr = transport if transport is not None else transport_from_settings(settings)
    try:
        led.reclaim()
        record = led.campaign(campaign_id)
        again = [  # a later run of the same campaign (a deliberate repeat is an earlier one's)
            r
            for r in _already_sent(led, record.fingerprint)
            if r.campaign_id != campaign_id and r.created_at >= record.created_at
        ]
        if again:
            raise CampaignStateError(
                f"campaign {campaign_id} went out again as {again[0].campaign_id}: resuming it "
                "would mail its members twice"
            )
        spec = CampaignSpec.from_mapping(record.params, where=f"campaign {campaign_id}")
        # the shop's plan now (it may have changed since); the campaign's own if none is set
        current = settings if settings.plan else settings.replace(plan=record.plan)
        plan = plan_campaign(spec, current, ledger=led, campaign_id=campaign_id)
        todo = led.pending(campaign_id)
        maybe = led.uncertain(campaign_id) if resend_uncertain else []
        if record.status == "done" and not todo and not maybe and record.admin_copy:
            # nothing left to send: say so, with the uncertain ones, and change nothing
            now = led.usage(plan.plan)
            summary = _summary(led, campaign_id, "done", _quota_dict(now, now.used))
            summary.warnings.append("再開して送るメールは残っていません（nothing left to send）")
            return summary
        opts = _options(settings, **options)
        n = len(todo) + len(maybe)
        # only the mails still to send: those already out are not composed again
        wanted = {r.member_id for r in todo} | {r.member_id for r in maybe}
        sendable = plan.audience.sendable
        rows = sendable[sendable["id"].astype("int64").isin(wanted)]
        # composed before sending, as a first run is: member data may have changed since
        with _prepared(plan, tr, n, opts["connections"], rows) as (spool, connector):
            status = led.reserve(campaign_id, n, plan.plan)
            return _run(
                plan,
                led,
                tr,
                status,
                resend_uncertain=resend_uncertain,
                progress=progress,
                sleep=sleep,
                spool=spool,
                connector=connector,
                **opts,
            )
    finally:
        if own:
            led.close()


TEST_PREFIX = "【テスト送信】"


def send_test(
    plan: CampaignPlan,
    to: str,
    *,
    member_id: int | None = None,
    transport: Transport | None = None,
    ledger: Ledger | None = None,
) -> ComposedMail:
    """Send one member's mail, as composed for the campaign, to ``to`` (e.g. the admin).

    What a marketer does before the real send: see the mail in a real mail client. The
    subject starts with 【テスト送信】 and the mail goes to ``to`` only (To: header too); it
    is recorded in the ledger as a test send and, as B-Cart's rule says, never counted in
    the quota. Raises :class:`~bcartnb.exceptions.SelectionError` for a member that is not
    sendable, :class:`TransportError` when the server does not take it.
    """
    address = normalize_address(to)
    reason = check_addresses(pd.Series([address], dtype="str")).iloc[0]
    if not pd.isna(reason):
        raise InputError(f"test address {to!r} cannot be mailed ({reason})")
    sendable = plan.audience.sendable
    if sendable.empty:
        raise SelectionError("no sendable member to compose a test mail for")
    rows = sendable if member_id is None else sendable[sendable["id"] == member_id]
    if rows.empty:
        raise SelectionError(f"member {member_id} is not among the sendable members")
    member = {str(k): v for k, v in rows.iloc[0].to_dict().items()}
    member["email"] = address
    draft = replace(plan.draft, subject=TEST_PREFIX + plan.draft.subject)
    mail = Composer(draft, plan.settings, f"{plan.campaign_id}-test").compose(member)
    tr = transport if transport is not None else transport_from_settings(plan.settings)
    with tr.connect() as conn:
        res = conn.send(plan.settings.from_addr, [address], mail.raw)
    if res.outcome is not Outcome.SENT:
        raise TransportError(f"test mail to {address} not accepted: {res.code} {res.message}")
    own = ledger is None
    led = ledger if ledger is not None else Ledger.open(plan.settings.db)
    try:
        led.record_send("test", address, code=res.code, message=res.message or None)
    finally:
        if own:
            led.close()
    return mail


def run_campaign(
    spec: CampaignSpec,
    settings: Settings,
    transport: Transport | None = None,
    *,
    send: bool | None = None,
    **kwargs: Any,
) -> DeliverySummary:
    """Plan, then dry-run or send: the one call behind ``bcartnb run`` and the notebook."""
    do_send = spec.send if send is None else send
    plan = plan_campaign(spec, settings)
    if not do_send:
        return dry_run(plan)
    return deliver(plan, transport, **kwargs)
