"""The ledger: one SQLite file holding the quota count, the send history and the delivery journal.

B-Cart keeps no history of sent mail, and its monthly cap must hold across processes (a
notebook and a cron job may send at once), so both live here, in the file named by
``BCARTNB_DB`` or ``Settings.db`` (one per user by default: two ledgers would each allow a
full cap). SQLite in WAL mode; every write is one ``BEGIN IMMEDIATE`` transaction, so
concurrent writers queue on the file lock instead of reading stale numbers.

Tables (schema version :data:`SCHEMA_VERSION`, kept in ``PRAGMA user_version``; the file is
marked as ours with ``PRAGMA application_id`` = :data:`APPLICATION_ID`):

``campaigns``
    One row per campaign: id (``20261127-143000-1a2b3c``, Asia/Tokyo time + random), when,
    who (OS user and host), plan (Japanese name), ``fingerprint`` (hash of the parameters and
    the recipient set, see :func:`fingerprint`), ``params`` (the campaign keys as JSON, filter
    included), the counts selected / sendable / unsendable with ``reasons``, ``status``
    (``planned`` → ``sending`` → ``done`` | ``failed`` | ``interrupted``), and the admin copy's
    state (``admin_copy``: NULL → ``sending`` → ``sent``, with ``admin_copy_at``).
``deliveries`` (the journal)
    One row per (campaign, member): address, ``state``, ``attempts``, the last SMTP ``code``
    and ``message``, ``sending_at`` / ``result_at``, and ``counted_month``.
``usage``
    (month, campaign) → number of counted SMTP transactions. The month total is a SUM over a
    handful of rows, so checking the quota costs the same with a million past deliveries.
``reservations``
    What running campaigns hold but have not yet handed to the server, with the owner.
``sends``
    Test sends and admin copies: recorded for the history, never counted.

Journal states and who moves them::

    pending ──mark_sending──► sending ──mark_results──► sent | failed
       ▲                        │  │                    (or back to pending: retry later)
       └─────── retry ──────────┘  └─ owner died / finish() with mail in flight ─► uncertain
    uncertain ──mark_sending(resend=True)──► sending     (a deliberate resend)

A row is ``sending`` only while its SMTP transaction may be under way, and the ``sent`` mark
is committed before :meth:`Ledger.mark_results` returns, so after a SIGKILL a resume sends
the ``pending`` rows and nobody twice; only the rows that were in flight are ``uncertain``,
and resending them is the caller's explicit choice.

Counting. A campaign mail counts when it is handed to the SMTP server, i.e. in
:meth:`Ledger.mark_sending`, in the same transaction that marks the row and takes one unit
from the campaign's reservation. Counting at hand-over rather than at the result means a
crash can never leave a transaction uncounted: the in-flight rows are counted already, and
a resent uncertain mail counts again, as the rule says. Delivered, refused (5xx) and
temporarily failed (4xx, retried) transactions all count once each. The one refund is a
transaction that provably never started (no connection, TLS or AUTH failure):
``mark_results(..., counted=False)`` gives the unit back. The month is the Asia/Tokyo
calendar month of the hand-over. Test sends and admin copies go to ``sends`` and never count.

Reservation, lease and reclaim. Before sending, a campaign calls :meth:`Ledger.reserve`,
which, inside ``BEGIN IMMEDIATE``, reads the month's used and reserved totals and refuses
with :class:`~bcartnb.exceptions.QuotaExceededError` (cap, used, reserved, needed) if the
campaign does not fit; otherwise it records the reservation. Two processes racing for the
last slots are serialised by the write lock, so they never exceed the cap together.
A reservation carries its owner: pid, host, the process's start time (from ``/proc``, to
see through pid reuse) and a lease (default 10 minutes) renewed by every ``mark_sending``,
``mark_results`` and :meth:`Ledger.heartbeat`. A reservation is *stale*, and reclaimed by
the next ``reserve`` (or :meth:`Ledger.reclaim`), when its owner process is gone (same
host: no such pid, a zombie, or a different start time) or its lease has expired (any
host; this also frees a live but abandoned notebook kernel). Reclaiming deletes the
reservation, turns the campaign's ``sending`` rows into ``uncertain`` (they were already
counted) and the campaign's status into ``interrupted``. A process whose reservation was
reclaimed gets :class:`~bcartnb.exceptions.CampaignStateError` from its next
``mark_sending``, so it cannot overrun a cap that others now share. :meth:`Ledger.finish`
releases what is left unused.

A campaign crossing midnight at the end of a month: its reservation was made for the old
month; the first ``mark_sending`` in the new month moves it there, checking the new month's
cap (and refusing if others have filled it).

Durability. WAL with ``synchronous=NORMAL``: a commit survives the process being killed
(SIGKILL included), which is the failure delivery must survive, at a cost of some tens of
microseconds per transaction. A power cut or OS crash may lose the last commits; a lost
``sending`` mark could then mean a mail sent again. ``Ledger.open(..., durable=True)``
(``synchronous=FULL``) closes that window for an fsync per commit.

How delivery uses it (one ``Ledger`` per process: a connection must not cross a fork)::

    led = Ledger.open(settings.db)                      # BCARTNB_DB or the settings' db
    fp = fingerprint(spec.to_params(), recipients)      # recipients: [(member_id, address)]
    if led.find_by_fingerprint(fp): ...                 # the same campaign ran before: ask
    cid = led.create_campaign(plan=plan, params=spec.to_params(), fingerprint=fp,
                              selected=..., sendable=..., unsendable=..., reasons=...)
    led.add_recipients(cid, recipients)                 # one transaction, 60,000 rows ~0.3 s
    led.reserve(cid, len(recipients), plan)             # QuotaExceededError: exit 3, none sent
    try:
        while batch := led.pending(cid, limit=100):
            led.mark_sending(cid, [r.member_id for r in batch])   # counted, committed
            results = [...]                             # SMTP: DeliveryResult per member
            led.mark_results(cid, results)              # committed before we call it sent
        if led.claim_admin_copy(cid):                   # True once per campaign, ever
            ...                                         # send it, then mark_admin_copy(),
                                                        # or release_admin_copy() on failure
        led.finish(cid, "done")
    except BaseException:
        led.finish(cid, "interrupted")                  # in-flight rows become uncertain
        raise

    # resume: led.reclaim(); todo = led.pending(cid); maybe = led.uncertain(cid)
    #         led.reserve(cid, len(todo) + len(maybe_to_resend), plan)
    #         led.mark_sending(cid, ids_of_maybe, resend=True)  # only if the user asked

Bad files are never repaired, recreated or overwritten: random bytes, another program's
SQLite database, a file locked past the busy timeout, or a ledger from a newer bcartnb each
raise :class:`~bcartnb.exceptions.LedgerError` naming the file. Only a missing or empty
file is initialised. Upgrades run :data:`MIGRATIONS` in one transaction: all or nothing.
"""

from __future__ import annotations

import contextlib
import getpass
import hashlib
import json
import os
import secrets
import socket
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from bcartnb.exceptions import CampaignStateError, LedgerError, QuotaExceededError
from bcartnb.quota import (
    TOKYO,
    Plan,
    QuotaStatus,
    check_quota,
    month_of,
    now_tokyo,
    resolve_plan,
)

if TYPE_CHECKING:
    import pandas as pd

    from bcartnb.settings import Settings

__all__ = [
    "APPLICATION_ID",
    "CAMPAIGN_STATUSES",
    "DELIVERY_STATES",
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "CampaignRecord",
    "DeliveryResult",
    "Ledger",
    "Migration",
    "Recipient",
    "fingerprint",
    "new_campaign_id",
]

#: ``PRAGMA application_id`` of a bcartnb ledger ("bcnb"): tells our file from any other SQLite.
APPLICATION_ID = 0x62636E62
CAMPAIGN_STATUSES = ("planned", "sending", "interrupted", "done", "failed")
DELIVERY_STATES = ("pending", "sending", "sent", "failed", "uncertain")
_FINAL_STATUSES = ("done", "failed", "interrupted")
_RESULT_STATES = ("sent", "failed", "pending")

#: One migration step: called inside the upgrade transaction with the connection.
Migration = Callable[[sqlite3.Connection], None]

_V1 = (
    f"""CREATE TABLE campaigns (
        campaign_id TEXT PRIMARY KEY,
        created_at TEXT NOT NULL,
        user TEXT NOT NULL,
        host TEXT NOT NULL,
        plan TEXT NOT NULL,
        fingerprint TEXT NOT NULL,
        params TEXT NOT NULL,
        selected INTEGER NOT NULL DEFAULT 0,
        sendable INTEGER NOT NULL DEFAULT 0,
        unsendable INTEGER NOT NULL DEFAULT 0,
        reasons TEXT NOT NULL DEFAULT '{{}}',
        status TEXT NOT NULL DEFAULT 'planned' CHECK (status IN {CAMPAIGN_STATUSES!r}),
        admin_copy TEXT CHECK (admin_copy IN ('sending', 'sent')),
        admin_copy_at TEXT,
        updated_at TEXT NOT NULL,
        finished_at TEXT
    )""",
    "CREATE INDEX campaigns_fingerprint ON campaigns (fingerprint)",
    f"""CREATE TABLE deliveries (
        campaign_id TEXT NOT NULL REFERENCES campaigns (campaign_id),
        member_id INTEGER NOT NULL,
        address TEXT NOT NULL,
        state TEXT NOT NULL DEFAULT 'pending' CHECK (state IN {DELIVERY_STATES!r}),
        attempts INTEGER NOT NULL DEFAULT 0,
        counted_month TEXT,
        code INTEGER,
        message TEXT,
        sending_at TEXT,
        result_at TEXT,
        PRIMARY KEY (campaign_id, member_id)
    ) WITHOUT ROWID""",
    "CREATE INDEX deliveries_state ON deliveries (campaign_id, state)",
    """CREATE TABLE usage (
        month TEXT NOT NULL,
        campaign_id TEXT NOT NULL,
        sends INTEGER NOT NULL,
        PRIMARY KEY (month, campaign_id)
    ) WITHOUT ROWID""",
    """CREATE TABLE reservations (
        campaign_id TEXT PRIMARY KEY REFERENCES campaigns (campaign_id),
        month TEXT NOT NULL,
        plan TEXT NOT NULL,
        held INTEGER NOT NULL CHECK (held >= 0),
        pid INTEGER NOT NULL,
        host TEXT NOT NULL,
        proc_start TEXT NOT NULL,
        lease_until REAL NOT NULL,
        heartbeat_at TEXT NOT NULL
    )""",
    """CREATE TABLE sends (
        id INTEGER PRIMARY KEY,
        kind TEXT NOT NULL CHECK (kind IN ('test', 'admin')),
        campaign_id TEXT REFERENCES campaigns (campaign_id),
        address TEXT NOT NULL,
        at TEXT NOT NULL,
        code INTEGER,
        message TEXT
    )""",
)


def _migrate_0_to_1(conn: sqlite3.Connection) -> None:
    """The first schema (see the module docstring)."""
    for stmt in _V1:
        conn.execute(stmt)


def _migrate_1_to_2(conn: sqlite3.Connection) -> None:
    """Drop the (campaign_id, state) index: the send loop's commits write a third fewer pages.

    Every hand-over and every result moves a row between states, and the index moved with
    it, three more pages in each commit. The reads it served scan one campaign's rows by the
    primary key instead (a few milliseconds for 50,000); only listing every campaign's counts
    over a million deliveries got slower (0.07 s to 0.4 s).
    """
    conn.execute("DROP INDEX IF EXISTS deliveries_state")


#: ``MIGRATIONS[i]`` upgrades a ledger from version ``i`` to ``i + 1``; append, never edit.
MIGRATIONS: tuple[Migration, ...] = (_migrate_0_to_1, _migrate_1_to_2)
SCHEMA_VERSION = len(MIGRATIONS)

_HOST = socket.gethostname()


# --- small value types -----------------------------------------------------------------------


class Recipient(NamedTuple):
    """A journal row to (re)send: ``attempts`` counts previous hand-overs to the server."""

    member_id: int
    address: str
    attempts: int


class DeliveryResult(NamedTuple):
    """The outcome of one SMTP transaction, for :meth:`Ledger.mark_results`.

    ``state``: ``sent`` (accepted), ``failed`` (refused for good, or retries exhausted) or
    ``pending`` (a temporary failure to retry later). ``counted=False`` only when the
    transaction provably never started (connect, TLS or AUTH failed): the unit is refunded.
    """

    member_id: int
    state: str
    code: int | None = None
    message: str | None = None
    counted: bool = True


@dataclass(frozen=True)
class CampaignRecord:
    """A campaign's row plus its journal counts (``journal``: state → number of rows)."""

    campaign_id: str
    created_at: datetime
    user: str
    host: str
    plan: str
    fingerprint: str
    params: dict[str, Any]
    selected: int
    sendable: int
    unsendable: int
    reasons: dict[str, int]
    status: str
    admin_copy: str | None
    admin_copy_at: datetime | None
    finished_at: datetime | None
    journal: dict[str, int] = field(default_factory=dict)

    @property
    def sent(self) -> int:
        return self.journal.get("sent", 0)

    @property
    def failed(self) -> int:
        return self.journal.get("failed", 0)


@dataclass(frozen=True)
class _Owner:
    pid: int
    host: str
    start: str

    @classmethod
    def current(cls) -> _Owner:
        pid = os.getpid()  # at call time: a forked child is a different owner
        if pid not in _MY_START:
            _MY_START[pid] = _proc_start(pid) or ""
        return cls(pid, _HOST, _MY_START[pid])


_MY_START: dict[int, str] = {}


def _proc_stat(pid: int) -> tuple[str, str] | None:
    """(state, start time) of a pid from /proc, or None when /proc has no such process."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
            data = fh.read()
    except OSError:
        return None
    rest = data[data.rfind(")") + 2 :].split()  # the command name may hold spaces and ')'
    return (rest[0], rest[19]) if len(rest) > 19 else None


def _proc_start(pid: int) -> str | None:
    stat = _proc_stat(pid)
    return stat[1] if stat else None


def _owner_alive(pid: int, host: str, start: str) -> bool | None:
    """True/False for a process on this host; None when it runs elsewhere (only the lease tells)."""
    if host != _HOST:
        return None
    if os.path.isdir("/proc/self"):
        stat = _proc_stat(pid)
        if stat is None or stat[0] in ("Z", "X"):
            return False
        return not start or stat[1] == start
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _os_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # a container user without a passwd entry
        return str(os.getuid()) if hasattr(os, "getuid") else "unknown"


def _switch_to_wal(conn: sqlite3.Connection, timeout: float) -> str:
    """``PRAGMA journal_mode = WAL``, retried while another process holds the file.

    Switching needs the file to itself, and SQLite answers "database is locked" at once,
    without its busy wait, when processes racing to open a new ledger hold it for a moment.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            return str(conn.execute("PRAGMA journal_mode = WAL").fetchone()[0])
        except sqlite3.OperationalError as err:
            if "locked" not in str(err) or time.monotonic() >= deadline:
                raise
            time.sleep(0.005)


def _ts(dt: datetime) -> str:
    return dt.astimezone(TOKYO).isoformat(timespec="milliseconds")


def _dt(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


def new_campaign_id(now: datetime | None = None) -> str:
    """``YYYYMMDD-HHMMSS-xxxxxx`` in Asia/Tokyo: sorts by time, reads as the shop's clock."""
    now = (now or now_tokyo()).astimezone(TOKYO)
    return f"{now:%Y%m%d-%H%M%S}-{secrets.token_hex(3)}"


def fingerprint(params: Mapping[str, Any], recipients: Iterable[tuple[int, str]]) -> str:
    """A hash of the campaign's parameters and its recipient set (order and case ignored).

    Running the same campaign twice gives the same fingerprint, so the caller can ask
    :meth:`Ledger.find_by_fingerprint` before mailing everybody a second time.
    """
    h = hashlib.sha256()
    h.update(json.dumps(params, sort_keys=True, ensure_ascii=False, default=str).encode())
    for member_id, address in sorted((int(m), a.strip().lower()) for m, a in recipients):
        h.update(f"\n{member_id}\t{address}".encode())
    return h.hexdigest()


# --- the ledger ------------------------------------------------------------------------------


class Ledger:
    """The quota counter, send history and delivery journal in one SQLite file.

    Open with :meth:`Ledger.open`; usable as a context manager; safe to share between the
    threads of one process (calls are serialised). ``now`` parameters take an aware datetime
    and default to the ``clock`` given to :meth:`open`, so tests inject time.
    """

    def __init__(
        self,
        conn: sqlite3.Connection,
        path: Path,
        *,
        timeout: float,
        lease: timedelta,
        clock: Callable[[], datetime],
    ) -> None:
        self._conn = conn
        self.path = path
        self.timeout = timeout
        self.lease = lease
        self._clock = clock
        self._lock = threading.RLock()

    # --- opening -----------------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str] | None = None,
        *,
        settings: Settings | None = None,
        timeout: float = 5.0,
        lease: timedelta = timedelta(minutes=10),
        clock: Callable[[], datetime] = now_tokyo,
        durable: bool = False,
        migrations: Sequence[Migration] = MIGRATIONS,
    ) -> Ledger:
        """Open (creating if missing or empty) and validate the ledger; migrate if older.

        ``path`` defaults to ``settings.db`` (``BCARTNB_DB`` or the settings file), loading
        the settings when none are given. ``timeout`` is how long to wait for another
        process's write lock before giving up with :class:`LedgerError`. ``migrations`` is
        for tests and future versions only.
        """
        if path is None:
            if settings is None:
                from bcartnb.settings import load_settings

                settings = load_settings()
            path = settings.db
        p = Path(path).expanduser()
        if p.is_dir():
            raise LedgerError(f"{p}: ledger path is a directory")
        try:
            p.parent.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise LedgerError(f"{p}: cannot create the ledger's folder: {err}") from err
        try:
            conn = sqlite3.connect(
                p, timeout=timeout, isolation_level=None, check_same_thread=False
            )
        except sqlite3.Error as err:
            raise _wrap(err, p, timeout) from err
        try:
            _validate_and_migrate(conn, p, timeout, migrations)
            conn.execute("PRAGMA foreign_keys = ON")
            conn.execute(f"PRAGMA synchronous = {'FULL' if durable else 'NORMAL'}")
            mode = _switch_to_wal(conn, timeout)
            if str(mode).lower() != "wal":
                raise LedgerError(f"{p}: cannot switch the ledger to WAL mode (got {mode})")
        except BaseException as exc:
            conn.close()
            if isinstance(exc, sqlite3.Error):
                raise _wrap(exc, p, timeout) from exc
            raise
        return cls(conn, p, timeout=timeout, lease=lease, clock=clock)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Ledger({str(self.path)!r})"

    # --- transactions ------------------------------------------------------------------------

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One ``BEGIN IMMEDIATE`` transaction: all or nothing, and no stale reads."""
        with self._lock, self._transaction("BEGIN IMMEDIATE") as c:
            yield c

    @contextlib.contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        """A read transaction: one consistent snapshot for several statements."""
        with self._lock, self._transaction("BEGIN") as c:
            yield c

    @contextlib.contextmanager
    def _transaction(self, begin: str) -> Iterator[sqlite3.Connection]:
        c = self._conn
        try:
            c.execute(begin)
            yield c
            c.execute("COMMIT")
        except BaseException as exc:
            if c.in_transaction:
                with contextlib.suppress(sqlite3.Error):  # a corrupt file may refuse even this
                    c.execute("ROLLBACK")
            if isinstance(exc, sqlite3.Error):
                raise _wrap(exc, self.path, self.timeout) from exc
            raise

    def _now(self, now: datetime | None) -> datetime:
        dt = self._clock() if now is None else now
        if dt.tzinfo is None or dt.utcoffset() is None:
            raise ValueError(f"now must be an aware datetime, got naive {dt.isoformat()}")
        return dt.astimezone(TOKYO)

    # --- campaigns ---------------------------------------------------------------------------

    def create_campaign(
        self,
        *,
        plan: str | Plan,
        params: Mapping[str, Any],
        fingerprint: str,
        selected: int = 0,
        sendable: int = 0,
        unsendable: int = 0,
        reasons: Mapping[str, int] | None = None,
        campaign_id: str | None = None,
        user: str | None = None,
        now: datetime | None = None,
    ) -> str:
        """Record a new campaign (status ``planned``) and return its id.

        ``params`` are the campaign keys (``CampaignSpec.to_params()``), filter included;
        ``fingerprint`` comes from :func:`fingerprint`; ``user`` defaults to the OS user.
        """
        now = self._now(now)
        cid = campaign_id or new_campaign_id(now)
        plan_name = resolve_plan(plan).name
        try:
            params_json = json.dumps(dict(params), ensure_ascii=False, sort_keys=True)
        except (TypeError, ValueError) as err:
            raise CampaignStateError(f"campaign params are not JSON-serialisable: {err}") from err
        with self._write() as c:
            try:
                c.execute(
                    "INSERT INTO campaigns (campaign_id, created_at, user, host, plan, "
                    "fingerprint, params, selected, sendable, unsendable, reasons, status, "
                    "updated_at) VALUES (?,?,?,?,?,?,?,?,?,?,?, 'planned', ?)",
                    (
                        cid,
                        _ts(now),
                        user or _os_user(),
                        _HOST,
                        plan_name,
                        fingerprint,
                        params_json,
                        selected,
                        sendable,
                        unsendable,
                        json.dumps(dict(reasons or {}), ensure_ascii=False, sort_keys=True),
                        _ts(now),
                    ),
                )
            except sqlite3.IntegrityError as err:
                raise CampaignStateError(f"campaign {cid} already exists") from err
        return cid

    def add_recipients(self, campaign_id: str, rows: Iterable[tuple[int, str]]) -> int:
        """Add the campaign's sendable recipients as ``pending`` journal rows, in one transaction.

        ``rows`` are (member id, address). Only a ``planned`` campaign takes recipients: once
        sending started, the recipient set is what the fingerprint and the journal say.
        """
        data = [(campaign_id, int(m), str(a)) for m, a in rows]
        with self._write() as c:
            status = self._status(c, campaign_id)
            if status != "planned":
                raise CampaignStateError(
                    f"campaign {campaign_id} is {status}: recipients can only be added "
                    "before it starts sending"
                )
            c.execute("SAVEPOINT add_recipients")
            try:
                c.executemany(
                    "INSERT INTO deliveries (campaign_id, member_id, address) VALUES (?,?,?)",
                    data,
                )
            except sqlite3.IntegrityError as err:
                c.execute("ROLLBACK TO add_recipients")  # look at the rows as they were
                dup = _first_duplicate([m for _, m, _ in data]) or next(
                    (
                        m
                        for _, m, _ in data
                        if c.execute(
                            "SELECT 1 FROM deliveries WHERE campaign_id=? AND member_id=?",
                            (campaign_id, m),
                        ).fetchone()
                    ),
                    None,
                )
                raise CampaignStateError(
                    f"campaign {campaign_id}: member {dup} is a recipient twice"
                ) from err
        return len(data)

    def campaign(self, campaign_id: str) -> CampaignRecord:
        """One campaign with its journal counts; :class:`CampaignStateError` if unknown."""
        with self._read() as c:
            row = c.execute(_CAMPAIGN_SELECT + " WHERE campaign_id = ?", (campaign_id,)).fetchone()
            if row is None:
                raise CampaignStateError(f"unknown campaign id {campaign_id!r} in {self.path}")
            return _record(row, self._journal_counts(c, campaign_id))

    def find_by_fingerprint(self, fp: str) -> list[CampaignRecord]:
        """Campaigns with this fingerprint, newest first: the same mail to the same people."""
        with self._read() as c:
            rows = c.execute(
                _CAMPAIGN_SELECT + " WHERE fingerprint = ? ORDER BY created_at DESC", (fp,)
            ).fetchall()
            return [_record(r, self._journal_counts(c, r[0])) for r in rows]

    def campaigns(self) -> pd.DataFrame:
        """The send history B-Cart does not keep, oldest first, one row per campaign.

        Columns: campaign_id, created_at, user, host, plan, status, selected, sendable,
        unsendable, pending, sending, sent, failed, uncertain, admin_copy, admin_copy_at,
        finished_at, fingerprint, filter (dict), params (dict), reasons (dict).
        """
        import pandas as pd

        with self._read() as c:
            rows = c.execute(_CAMPAIGN_SELECT + " ORDER BY created_at, campaign_id").fetchall()
            counts: dict[str, dict[str, int]] = {}
            for cid, state, n in c.execute(
                "SELECT campaign_id, state, count(*) FROM deliveries GROUP BY campaign_id, state"
            ):
                counts.setdefault(cid, {})[state] = n
        records = [_record(r, counts.get(r[0], {})) for r in rows]
        columns = [
            "campaign_id",
            "created_at",
            "user",
            "host",
            "plan",
            "status",
            "selected",
            "sendable",
            "unsendable",
            *DELIVERY_STATES,
            "admin_copy",
            "admin_copy_at",
            "finished_at",
            "fingerprint",
            "filter",
            "params",
            "reasons",
        ]
        data = [
            {
                "campaign_id": r.campaign_id,
                "created_at": r.created_at,
                "user": r.user,
                "host": r.host,
                "plan": r.plan,
                "status": r.status,
                "selected": r.selected,
                "sendable": r.sendable,
                "unsendable": r.unsendable,
                **{s: r.journal.get(s, 0) for s in DELIVERY_STATES},
                "admin_copy": r.admin_copy,
                "admin_copy_at": r.admin_copy_at,
                "finished_at": r.finished_at,
                "fingerprint": r.fingerprint,
                "filter": r.params.get("filter", {}),
                "params": r.params,
                "reasons": r.reasons,
            }
            for r in records
        ]
        frame = pd.DataFrame(data, columns=columns)
        for col in ("created_at", "admin_copy_at", "finished_at"):
            frame[col] = pd.to_datetime(frame[col], utc=True).dt.tz_convert(TOKYO)
        for col in ("selected", "sendable", "unsendable", *DELIVERY_STATES):
            frame[col] = frame[col].astype("int64")
        return frame

    def deliveries(self, campaign_id: str) -> pd.DataFrame:
        """The campaign's journal as a DataFrame (for the report), in member id order."""
        import pandas as pd

        cols = [
            "member_id",
            "address",
            "state",
            "attempts",
            "code",
            "message",
            "counted_month",
            "sending_at",
            "result_at",
        ]
        with self._read() as c:
            self._status(c, campaign_id)
            rows = c.execute(
                f"SELECT {', '.join(cols)} FROM deliveries WHERE campaign_id = ? "
                "ORDER BY member_id",
                (campaign_id,),
            ).fetchall()
        frame = pd.DataFrame(rows, columns=cols)
        for col in ("sending_at", "result_at"):
            frame[col] = pd.to_datetime(frame[col], utc=True).dt.tz_convert(TOKYO)
        return frame

    def failures(self, campaign_id: str) -> list[tuple[int, str, int | None, str]]:
        """(member id, address, SMTP code, reply) of each failed mail, in member id order."""
        with self._read() as c:
            self._status(c, campaign_id)
            rows = c.execute(
                "SELECT member_id, address, code, message FROM deliveries "
                "WHERE campaign_id = ? AND state = 'failed' ORDER BY member_id",
                (campaign_id,),
            ).fetchall()
        return [
            (int(m), str(a), None if c is None else int(c), str(t or "")) for m, a, c, t in rows
        ]

    # --- quota: reserve, usage ---------------------------------------------------------------

    def reserve(
        self, campaign_id: str, n: int, plan: str | Plan, *, now: datetime | None = None
    ) -> QuotaStatus:
        """Start (or resume) sending: hold ``n`` mails of this month's quota for the campaign.

        Atomic across processes. First reclaims stale reservations (see the module
        docstring). Then refuses with :class:`QuotaExceededError` when used + others'
        reservations + ``n`` exceed the cap, before any mail goes out. Otherwise the campaign
        holds exactly ``n`` units (replacing what it held), its owner is this process, its
        status becomes ``sending``, and any of its rows still ``sending`` from an earlier run
        become ``uncertain`` (nothing else can be sending them now). Call it once per run,
        with the number of mails the run will hand over (pending, plus uncertain ones to
        resend, plus planned retries). Returns the month's status with ``n`` reserved.

        To resume after a crash: :meth:`reclaim` first (so the dead run's in-flight rows
        show in :meth:`uncertain`), then :meth:`pending` and :meth:`uncertain`, then
        ``reserve`` for what you will send. ``reserve(cid, 0)`` merely takes the campaign over.

        :class:`CampaignStateError` if the campaign is unknown, ``done`` (unless it has
        ``uncertain`` rows to resend on purpose), or held by another
        live process.
        """
        if n < 0:
            raise ValueError(f"cannot reserve {n} mails")
        plan = resolve_plan(plan)
        now = self._now(now)
        month = month_of(now)
        me = _Owner.current()
        with self._write() as c:
            status = self._status(c, campaign_id)
            if (
                status == "done"
                and not c.execute(
                    "SELECT 1 FROM deliveries "
                    "WHERE campaign_id = ? AND state = 'uncertain' LIMIT 1",
                    (campaign_id,),
                ).fetchone()
            ):
                # a done campaign reopens only to resend its uncertain mails on purpose
                raise CampaignStateError(f"campaign {campaign_id} is done; nothing to resume")
            self._reclaim(c, now)
            row = c.execute(
                "SELECT pid, host, proc_start, lease_until FROM reservations WHERE campaign_id = ?",
                (campaign_id,),
            ).fetchone()
            if row is not None and _Owner(row[0], row[1], row[2]) != me:
                until = datetime.fromtimestamp(row[3], TOKYO)
                raise CampaignStateError(
                    f"campaign {campaign_id} is being sent by pid {row[0]} on {row[1]} "
                    f"(lease until {_ts(until)})"
                )
            used = self._used(c, month)
            others = self._reserved(c, month, exclude=campaign_id)
            after = check_quota(QuotaStatus(plan, month, used, others), n)
            c.execute(
                "INSERT OR REPLACE INTO reservations (campaign_id, month, plan, held, pid, "
                "host, proc_start, lease_until, heartbeat_at) VALUES (?,?,?,?,?,?,?,?,?)",
                (
                    campaign_id,
                    month,
                    plan.key,
                    n,
                    me.pid,
                    me.host,
                    me.start,
                    (now + self.lease).timestamp(),
                    _ts(now),
                ),
            )
            c.execute(
                "UPDATE deliveries SET state = 'uncertain' "
                "WHERE campaign_id = ? AND state = 'sending'",
                (campaign_id,),
            )
            c.execute(
                "UPDATE campaigns SET status = 'sending', finished_at = NULL, updated_at = ? "
                "WHERE campaign_id = ?",
                (_ts(now), campaign_id),
            )
        return after

    def usage(
        self, plan: str | Plan, month: str | None = None, *, now: datetime | None = None
    ) -> QuotaStatus:
        """The month's cap, used and reserved (live reservations only); month defaults to now's."""
        plan = resolve_plan(plan)
        now = self._now(now)
        month = month or month_of(now)
        with self._read() as c:
            used = self._used(c, month)
            reserved = sum(
                held
                for held, pid, host, start, until in c.execute(
                    "SELECT held, pid, host, proc_start, lease_until FROM reservations "
                    "WHERE month = ?",
                    (month,),
                )
                if not _stale(pid, host, start, until, now)
            )
        return QuotaStatus(plan, month, used, reserved)

    def usage_by_campaign(self, month: str) -> dict[str, int]:
        """Counted SMTP transactions per campaign in a month, in campaign id (= time) order."""
        with self._read() as c:
            return dict(
                c.execute(
                    "SELECT campaign_id, sends FROM usage WHERE month = ? AND sends > 0 "
                    "ORDER BY campaign_id",
                    (month,),
                ).fetchall()
            )

    def heartbeat(self, campaign_id: str, *, now: datetime | None = None) -> None:
        """Renew this process's lease on the campaign; call it during long waits (backoff).

        :class:`CampaignStateError` if the reservation is no longer ours (reclaimed).
        """
        now = self._now(now)
        with self._write() as c:
            self._own_reservation(c, campaign_id, now)

    def reclaim(self, *, now: datetime | None = None) -> list[str]:
        """Reclaim every stale reservation now; returns the campaign ids (now ``interrupted``).

        ``reserve`` does this by itself; ``bcartnb campaigns`` can call it so a crashed
        campaign shows as interrupted rather than sending.
        """
        now = self._now(now)
        with self._write() as c:
            return self._reclaim(c, now)

    # --- the journal -------------------------------------------------------------------------

    def mark_sending(
        self,
        campaign_id: str,
        member_ids: Iterable[int],
        *,
        resend: bool = False,
        now: datetime | None = None,
    ) -> int:
        """Hand rows over to the SMTP server: ``pending`` → ``sending``, counted, in one commit.

        Call it right before the SMTP transactions of these rows (a batch for one connection
        is fine; keep it to what is really about to go out, since a crash makes every
        ``sending`` row ``uncertain``). Each row: attempts + 1, one unit taken from the
        campaign's reservation, one count in this month's quota. ``resend=True`` also
        accepts ``uncertain`` rows (a deliberate resend, which counts again).

        Refuses, changing nothing: :class:`CampaignStateError` if this process holds no
        reservation for the campaign (never reserved, finished, or reclaimed) or a row is
        unknown or in another state; :class:`QuotaExceededError` if the reservation has fewer
        units left than rows, or the month changed and the new month has no room.
        Returns the number of rows marked.
        """
        ids = [int(m) for m in member_ids]
        now = self._now(now)
        with self._refusing(campaign_id), self._write() as c:
            return self._hand_over(c, campaign_id, ids, resend, now)

    def _hand_over(
        self, c: sqlite3.Connection, campaign_id: str, ids: list[int], resend: bool, now: datetime
    ) -> int:
        month = month_of(now)
        allowed = ("pending", "uncertain") if resend else ("pending",)
        res_month, plan_key, held = self._own_reservation(c, campaign_id, now)
        if res_month != month:
            plan = resolve_plan(plan_key)
            check_quota(
                QuotaStatus(
                    plan,
                    month,
                    self._used(c, month),
                    self._reserved(c, month, exclude=campaign_id),
                ),
                held,
            )
            c.execute(
                "UPDATE reservations SET month = ? WHERE campaign_id = ?",
                (month, campaign_id),
            )
        if len(ids) > held:
            raise QuotaExceededError(
                f"campaign {campaign_id} has {held} reserved mails left, {len(ids)} "
                "needed; reserve() more before sending"
            )
        if not ids:
            return 0
        before = c.total_changes
        c.executemany(
            "UPDATE deliveries SET state = 'sending', attempts = attempts + 1, "
            "counted_month = ?, sending_at = ?, result_at = NULL "
            "WHERE campaign_id = ? AND member_id = ? "
            f"AND state IN ({', '.join('?' * len(allowed))})",
            ((month, _ts(now), campaign_id, m, *allowed) for m in ids),
        )
        if c.total_changes - before != len(ids):
            raise _RowsRefused(ids, allowed, "mark sending")
        self._count(c, month, campaign_id, len(ids))
        c.execute(
            "UPDATE reservations SET held = held - ? WHERE campaign_id = ?",
            (len(ids), campaign_id),
        )
        return len(ids)

    def mark_result(
        self,
        campaign_id: str,
        member_id: int,
        state: str,
        code: int | None = None,
        message: str | None = None,
        *,
        counted: bool = True,
        now: datetime | None = None,
    ) -> None:
        """Record one SMTP outcome; see :meth:`mark_results` (one transaction per call)."""
        self.mark_results(
            campaign_id, [DeliveryResult(member_id, state, code, message, counted)], now=now
        )

    def mark_results(
        self,
        campaign_id: str,
        results: Iterable[DeliveryResult | tuple[Any, ...]],
        *,
        now: datetime | None = None,
    ) -> int:
        """Record SMTP outcomes of ``sending`` rows in ONE transaction, committed on return.

        ``state`` is ``sent``, ``failed`` or ``pending`` (retry later; the next
        ``mark_sending`` counts again). A result for an ``uncertain`` row is accepted too:
        late news (e.g. from a process whose lease ran out) is still the truth. The quota
        was counted at hand-over; ``counted=False`` (the transaction never started) refunds
        that unit to the month and to the campaign's reservation. Recording never refuses
        because of the quota: the mail is already out. Renews the lease if the campaign is
        ours. Returns the number of rows recorded.
        """
        items = _results(results)
        if not items:
            return 0
        now = self._now(now)
        with self._refusing(campaign_id), self._write() as c:
            return self._record(c, campaign_id, items, now)

    def exchange(
        self,
        campaign_id: str,
        results: Iterable[DeliveryResult | tuple[Any, ...]],
        member_ids: Iterable[int],
        *,
        resend: bool = False,
        now: datetime | None = None,
    ) -> int:
        """:meth:`mark_results` then :meth:`mark_sending`, in ONE commit: the send loop's step.

        A sender records what its connections reported and hands the next mails over in
        the same transaction, halving the commits per mail. The results are committed even
        when the hand-over is refused (a savepoint keeps them): the mails they describe are
        out, whatever happens to the next ones. Returns the number of rows marked sending;
        refuses like :meth:`mark_sending`, after committing the results.
        """
        items = _results(results)
        ids = [int(m) for m in member_ids]
        now = self._now(now)
        if ids and all(r.counted for r in items):
            with contextlib.suppress(_NotPlain):
                return self._plain_exchange(campaign_id, items, ids, resend, now)
        refused: BaseException | None = None
        marked = 0
        with self._refusing(campaign_id), self._write() as c:
            if items:
                self._record(c, campaign_id, items, now)
            if ids:
                c.execute("SAVEPOINT bcartnb_hand_over")
                try:
                    marked = self._hand_over(c, campaign_id, ids, resend, now)
                except (CampaignStateError, QuotaExceededError, _RowsRefused) as err:
                    c.execute("ROLLBACK TO bcartnb_hand_over")
                    refused = err
                c.execute("RELEASE bcartnb_hand_over")
        if isinstance(refused, _RowsRefused):
            raise self._bad_rows(campaign_id, refused) from None
        if refused is not None:
            raise refused
        return marked

    def _plain_exchange(
        self,
        campaign_id: str,
        items: list[DeliveryResult],
        ids: list[int],
        resend: bool,
        now: datetime,
    ) -> int:
        """The send loop's usual step in the fewest statements (one commit, no savepoint).

        Usual: our reservation, this month, room for ``ids``, no refund, every row in the
        expected state. Anything else raises :class:`_NotPlain` inside the transaction, which
        rolls it back whole, and :meth:`exchange` takes the general path, which refuses or
        records with the right words.
        """
        month = month_of(now)
        stamp = _ts(now)
        allowed = ("pending", "uncertain") if resend else ("pending",)
        with self._write() as c:
            row = c.execute(
                "SELECT month, held, pid, host, proc_start FROM reservations WHERE campaign_id = ?",
                (campaign_id,),
            ).fetchone()
            if (
                row is None
                or row[0] != month
                or row[1] < len(ids)
                or _Owner(row[2], row[3], row[4]) != _Owner.current()
            ):
                raise _NotPlain
            before = c.total_changes
            if items:
                c.executemany(
                    "UPDATE deliveries SET state = ?, code = ?, message = ?, result_at = ? "
                    "WHERE campaign_id = ? AND member_id = ? "
                    "AND state IN ('sending', 'uncertain')",
                    (
                        (r.state, r.code, r.message, stamp, campaign_id, int(r.member_id))
                        for r in items
                    ),
                )
            c.executemany(
                "UPDATE deliveries SET state = 'sending', attempts = attempts + 1, "
                "counted_month = ?, sending_at = ?, result_at = NULL "
                "WHERE campaign_id = ? AND member_id = ? "
                f"AND state IN ({', '.join('?' * len(allowed))})",
                ((month, stamp, campaign_id, m, *allowed) for m in ids),
            )
            if c.total_changes - before != len(items) + len(ids):
                raise _NotPlain
            self._count(c, month, campaign_id, len(ids))
            c.execute(
                "UPDATE reservations SET held = held - ?, lease_until = ?, heartbeat_at = ? "
                "WHERE campaign_id = ?",
                (len(ids), (now + self.lease).timestamp(), stamp, campaign_id),
            )
        return len(ids)

    def _record(
        self, c: sqlite3.Connection, campaign_id: str, items: list[DeliveryResult], now: datetime
    ) -> int:
        stamp = _ts(now)
        me = _Owner.current()
        refunds: dict[str, int] = {}
        for r in items:
            if not r.counted:
                got = c.execute(
                    "SELECT counted_month FROM deliveries WHERE campaign_id = ? "
                    "AND member_id = ? AND state IN ('sending', 'uncertain')",
                    (campaign_id, int(r.member_id)),
                ).fetchone()
                if got and got[0]:
                    refunds[got[0]] = refunds.get(got[0], 0) + 1
        before = c.total_changes
        c.executemany(
            "UPDATE deliveries SET state = ?, code = ?, message = ?, result_at = ? "
            "WHERE campaign_id = ? AND member_id = ? AND state IN ('sending', 'uncertain')",
            ((r.state, r.code, r.message, stamp, campaign_id, int(r.member_id)) for r in items),
        )
        if c.total_changes - before != len(items):
            raise _RowsRefused(
                [int(r.member_id) for r in items], ("sending", "uncertain"), "record results"
            )
        row = c.execute(
            "SELECT pid, host, proc_start FROM reservations WHERE campaign_id = ?",
            (campaign_id,),
        ).fetchone()
        ours = row is not None and _Owner(*row) == me
        for month, k in refunds.items():
            self._count(c, month, campaign_id, -k)
        if ours:
            c.execute(
                "UPDATE reservations SET held = held + ?, lease_until = ?, heartbeat_at = ? "
                "WHERE campaign_id = ?",
                (sum(refunds.values()), (now + self.lease).timestamp(), stamp, campaign_id),
            )
        return len(items)

    def pending(self, campaign_id: str, limit: int | None = None) -> list[Recipient]:
        """Rows still to send, in member id order (``limit`` for batches)."""
        return self._rows(campaign_id, "pending", limit)

    def uncertain(self, campaign_id: str) -> list[Recipient]:
        """Rows that were in flight when their sender died: maybe delivered, maybe not."""
        return self._rows(campaign_id, "uncertain", None)

    def finish(self, campaign_id: str, status: str = "done", *, now: datetime | None = None) -> int:
        """End a run: release the unused reservation and set the final status.

        ``status``: ``done``, ``failed`` or ``interrupted``. Rows still ``sending`` become
        ``uncertain``. Call it in a ``finally``. Returns the number of units released.
        :class:`CampaignStateError` if another live process holds the campaign.
        """
        if status not in _FINAL_STATUSES:
            raise ValueError(f"final status must be one of {', '.join(_FINAL_STATUSES)}")
        now = self._now(now)
        me = _Owner.current()
        with self._write() as c:
            self._status(c, campaign_id)
            row = c.execute(
                "SELECT held, pid, host, proc_start, lease_until FROM reservations "
                "WHERE campaign_id = ?",
                (campaign_id,),
            ).fetchone()
            released = 0
            if row is not None:
                held, pid, host, start, until = row
                if _Owner(pid, host, start) != me and not _stale(pid, host, start, until, now):
                    raise CampaignStateError(
                        f"campaign {campaign_id} is being sent by pid {pid} on {host}"
                    )
                released = held
                c.execute("DELETE FROM reservations WHERE campaign_id = ?", (campaign_id,))
            c.execute(
                "UPDATE deliveries SET state = 'uncertain' "
                "WHERE campaign_id = ? AND state = 'sending'",
                (campaign_id,),
            )
            c.execute(
                "UPDATE campaigns SET status = ?, finished_at = ?, updated_at = ? "
                "WHERE campaign_id = ?",
                (status, _ts(now), _ts(now), campaign_id),
            )
        return int(released)

    # --- uncounted sends and the admin copy --------------------------------------------------

    def record_send(
        self,
        kind: str,
        address: str,
        *,
        campaign_id: str | None = None,
        code: int | None = None,
        message: str | None = None,
        now: datetime | None = None,
    ) -> int:
        """Record a test send (``kind="test"``) or an admin copy (``"admin"``): never counted."""
        if kind not in ("test", "admin"):
            raise ValueError(f"kind must be 'test' or 'admin', not {kind!r}")
        now = self._now(now)
        with self._write() as c:
            if campaign_id is not None:
                self._status(c, campaign_id)
            cur = c.execute(
                "INSERT INTO sends (kind, campaign_id, address, at, code, message) "
                "VALUES (?,?,?,?,?,?)",
                (kind, campaign_id, address, _ts(now), code, message),
            )
            return int(cur.lastrowid or 0)

    def sends(self) -> pd.DataFrame:
        """Test sends and admin copies, oldest first."""
        import pandas as pd

        cols = ["id", "kind", "campaign_id", "address", "at", "code", "message"]
        with self._read() as c:
            rows = c.execute(f"SELECT {', '.join(cols)} FROM sends ORDER BY id").fetchall()
        frame = pd.DataFrame(rows, columns=cols)
        frame["at"] = pd.to_datetime(frame["at"], utc=True).dt.tz_convert(TOKYO)
        return frame

    def claim_admin_copy(self, campaign_id: str, *, now: datetime | None = None) -> bool:
        """True exactly once per campaign: the caller must then send the admin copy.

        Claimed before sending, so a crash between the claim and :meth:`mark_admin_copy`
        leaves ``admin_copy='sending'`` and no resume sends a second copy (an uncertain copy
        is the lesser harm than two). After a definite failure, :meth:`release_admin_copy`.
        """
        now = self._now(now)
        with self._write() as c:
            self._status(c, campaign_id)
            cur = c.execute(
                "UPDATE campaigns SET admin_copy = 'sending', admin_copy_at = ?, updated_at = ? "
                "WHERE campaign_id = ? AND admin_copy IS NULL",
                (_ts(now), _ts(now), campaign_id),
            )
            return cur.rowcount == 1

    def mark_admin_copy(
        self,
        campaign_id: str,
        address: str,
        *,
        code: int | None = None,
        message: str | None = None,
        now: datetime | None = None,
    ) -> None:
        """The admin copy was accepted: ``admin_copy='sent'``, recorded in ``sends`` (uncounted)."""
        now = self._now(now)
        with self._write() as c:
            self._status(c, campaign_id)
            c.execute(
                "UPDATE campaigns SET admin_copy = 'sent', admin_copy_at = ?, updated_at = ? "
                "WHERE campaign_id = ?",
                (_ts(now), _ts(now), campaign_id),
            )
            c.execute(
                "INSERT INTO sends (kind, campaign_id, address, at, code, message) "
                "VALUES ('admin', ?, ?, ?, ?, ?)",
                (campaign_id, address, _ts(now), code, message),
            )

    def release_admin_copy(self, campaign_id: str) -> None:
        """The claimed admin copy definitely failed: let a later run (resume) send it."""
        with self._write() as c:
            c.execute(
                "UPDATE campaigns SET admin_copy = NULL, admin_copy_at = NULL "
                "WHERE campaign_id = ? AND admin_copy = 'sending'",
                (campaign_id,),
            )

    # --- internals ---------------------------------------------------------------------------

    def _status(self, c: sqlite3.Connection, campaign_id: str) -> str:
        row = c.execute(
            "SELECT status FROM campaigns WHERE campaign_id = ?", (campaign_id,)
        ).fetchone()
        if row is None:
            raise CampaignStateError(f"unknown campaign id {campaign_id!r} in {self.path}")
        return str(row[0])

    @staticmethod
    def _used(c: sqlite3.Connection, month: str) -> int:
        return int(
            c.execute(
                "SELECT COALESCE(SUM(sends), 0) FROM usage WHERE month = ?", (month,)
            ).fetchone()[0]
        )

    @staticmethod
    def _reserved(c: sqlite3.Connection, month: str, exclude: str) -> int:
        return int(
            c.execute(
                "SELECT COALESCE(SUM(held), 0) FROM reservations "
                "WHERE month = ? AND campaign_id != ?",
                (month, exclude),
            ).fetchone()[0]
        )

    @staticmethod
    def _count(c: sqlite3.Connection, month: str, campaign_id: str, k: int) -> None:
        c.execute(
            "INSERT INTO usage (month, campaign_id, sends) VALUES (?, ?, ?) "
            "ON CONFLICT (month, campaign_id) DO UPDATE SET sends = sends + excluded.sends",
            (month, campaign_id, k),
        )

    def _own_reservation(
        self, c: sqlite3.Connection, campaign_id: str, now: datetime
    ) -> tuple[str, str, int]:
        """(month, plan key, held) of our reservation, its lease renewed; else refuse."""
        row = c.execute(
            "SELECT month, plan, held, pid, host, proc_start FROM reservations "
            "WHERE campaign_id = ?",
            (campaign_id,),
        ).fetchone()
        if row is None or _Owner(row[3], row[4], row[5]) != _Owner.current():
            self._status(c, campaign_id)
            raise CampaignStateError(
                f"campaign {campaign_id} holds no reservation in this process (not reserved, "
                "finished, or reclaimed after its lease expired); call reserve() first"
            )
        c.execute(
            "UPDATE reservations SET lease_until = ?, heartbeat_at = ? WHERE campaign_id = ?",
            ((now + self.lease).timestamp(), _ts(now), campaign_id),
        )
        return str(row[0]), str(row[1]), int(row[2])

    @staticmethod
    def _reclaim(c: sqlite3.Connection, now: datetime) -> list[str]:
        stale = [
            cid
            for cid, pid, host, start, until in c.execute(
                "SELECT campaign_id, pid, host, proc_start, lease_until FROM reservations"
            ).fetchall()
            if _stale(pid, host, start, until, now)
        ]
        for cid in stale:
            c.execute("DELETE FROM reservations WHERE campaign_id = ?", (cid,))
            c.execute(
                "UPDATE deliveries SET state = 'uncertain' "
                "WHERE campaign_id = ? AND state = 'sending'",
                (cid,),
            )
            c.execute(
                "UPDATE campaigns SET status = 'interrupted', updated_at = ? "
                "WHERE campaign_id = ? AND status = 'sending'",
                (_ts(now), cid),
            )
        return stale

    @contextlib.contextmanager
    def _refusing(self, campaign_id: str) -> Iterator[None]:
        """Turn a refused batch into a CampaignStateError naming the rows, read after rollback."""
        try:
            yield
        except _RowsRefused as refused:
            raise self._bad_rows(campaign_id, refused) from None

    def _bad_rows(self, campaign_id: str, refused: _RowsRefused) -> CampaignStateError:
        seen: set[int] = set()
        bad: list[str] = []
        with self._read() as c:
            self._status(c, campaign_id)
            for m in refused.ids:
                row = c.execute(
                    "SELECT state FROM deliveries WHERE campaign_id = ? AND member_id = ?",
                    (campaign_id, m),
                ).fetchone()
                if m in seen:
                    bad.append(f"{m} (twice in the batch)")
                elif row is None:
                    bad.append(f"{m} (not a recipient)")
                elif row[0] not in refused.allowed:
                    bad.append(f"{m} ({row[0]})")
                seen.add(m)
                if len(bad) == 5:
                    break
        return CampaignStateError(
            f"campaign {campaign_id}: cannot {refused.action} for member "
            f"{', '.join(bad) or '?'}; expected state {' or '.join(refused.allowed)}; "
            "nothing was changed"
        )

    def _rows(self, campaign_id: str, state: str, limit: int | None) -> list[Recipient]:
        with self._read() as c:
            self._status(c, campaign_id)
            sql = (
                "SELECT member_id, address, attempts FROM deliveries "
                "WHERE campaign_id = ? AND state = ? ORDER BY member_id"
            )
            args: tuple[Any, ...] = (campaign_id, state)
            if limit is not None:
                sql += " LIMIT ?"
                args += (limit,)
            return [Recipient(*r) for r in c.execute(sql, args)]

    @staticmethod
    def _journal_counts(c: sqlite3.Connection, campaign_id: str) -> dict[str, int]:
        return dict(
            c.execute(
                "SELECT state, count(*) FROM deliveries WHERE campaign_id = ? GROUP BY state",
                (campaign_id,),
            ).fetchall()
        )


def _results(results: Iterable[DeliveryResult | tuple[Any, ...]]) -> list[DeliveryResult]:
    items = [r if isinstance(r, DeliveryResult) else DeliveryResult(*r) for r in results]
    for r in items:
        if r.state not in _RESULT_STATES:
            raise ValueError(
                f"member {r.member_id}: result state must be one of "
                f"{', '.join(_RESULT_STATES)}, not {r.state!r}"
            )
    return items


class _NotPlain(Exception):
    """Not the send loop's usual step: roll back and take the general path."""


class _RowsRefused(Exception):
    """Raised inside a write transaction so it rolls back before the rows are inspected."""

    def __init__(self, ids: list[int], allowed: tuple[str, ...], action: str) -> None:
        super().__init__(action)
        self.ids = ids
        self.allowed = allowed
        self.action = action


_CAMPAIGN_SELECT = (
    "SELECT campaign_id, created_at, user, host, plan, fingerprint, params, selected, "
    "sendable, unsendable, reasons, status, admin_copy, admin_copy_at, finished_at "
    "FROM campaigns"
)


def _record(row: Sequence[Any], journal: dict[str, int]) -> CampaignRecord:
    created = _dt(row[1])
    assert created is not None
    return CampaignRecord(
        campaign_id=row[0],
        created_at=created,
        user=row[2],
        host=row[3],
        plan=row[4],
        fingerprint=row[5],
        params=json.loads(row[6]),
        selected=row[7],
        sendable=row[8],
        unsendable=row[9],
        reasons=json.loads(row[10]),
        status=row[11],
        admin_copy=row[12],
        admin_copy_at=_dt(row[13]),
        finished_at=_dt(row[14]),
        journal=journal,
    )


def _stale(pid: int, host: str, start: str, lease_until: float, now: datetime) -> bool:
    return lease_until < now.timestamp() or _owner_alive(pid, host, start) is False


def _first_duplicate(ids: list[int]) -> int | None:
    seen: set[int] = set()
    for m in ids:
        if m in seen:
            return m
        seen.add(m)
    return None


def _wrap(err: sqlite3.Error, path: Path, timeout: float) -> LedgerError:
    """A one-line LedgerError naming the file for an sqlite3 error."""
    msg = str(err)
    low = msg.lower()
    if "locked" in low or "busy" in low:
        return LedgerError(
            f"{path}: the ledger is locked by another process (waited {timeout:g}s); "
            "try again when it has finished"
        )
    if "not a database" in low:
        return LedgerError(
            f"{path}: not a bcartnb ledger (not an SQLite database, or corrupt); "
            "the file was left untouched"
        )
    if "malformed" in low or "corrupt" in low:
        return LedgerError(
            f"{path}: the ledger is corrupt ({msg}); the file was left untouched: "
            "restore it from a backup"
        )
    if "unable to open" in low or "readonly" in low:
        return LedgerError(f"{path}: cannot open the ledger ({msg})")
    return LedgerError(f"{path}: ledger error: {msg}")


def _validate_and_migrate(
    conn: sqlite3.Connection, path: Path, timeout: float, migrations: Sequence[Migration]
) -> None:
    """Refuse anything that is not our ledger before writing a byte; then upgrade if older."""
    target = len(migrations)

    def check() -> int:
        app_id = conn.execute("PRAGMA application_id").fetchone()[0]
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        objects = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
        if app_id == 0 and version == 0 and objects == 0:
            return 0  # a new or empty file: ours to initialise
        if app_id != APPLICATION_ID:
            raise LedgerError(
                f"{path}: not a bcartnb ledger (an SQLite database of another program); "
                "the file was left untouched: set BCARTNB_DB to another path"
            )
        if version > target:
            raise LedgerError(
                f"{path}: the ledger was written by a newer bcartnb (schema version "
                f"{version}, this one knows up to {target}); upgrade bcartnb; "
                "the file was left untouched"
            )
        return int(version)

    conn.execute("BEGIN")  # one snapshot: a file being created by another process is
    try:  # either still empty or complete, never half-seen
        current = check()
    finally:
        if conn.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("COMMIT")
    if current == target:
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        version = check()  # again under the lock: another process may have migrated it
        for step in migrations[version:]:
            step(conn)
        conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        conn.execute(f"PRAGMA user_version = {target}")
        conn.execute("COMMIT")
    except BaseException as exc:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        if isinstance(exc, sqlite3.Error) and "locked" not in str(exc).lower():
            raise LedgerError(
                f"{path}: cannot migrate the ledger to schema version {target} ({exc}); "
                "nothing was changed"
            ) from exc
        raise
