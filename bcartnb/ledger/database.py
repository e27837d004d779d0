"""The SQLite file under the ledger: opening, checking, migrating, transactions.

WAL mode, every write one ``BEGIN IMMEDIATE`` transaction, so concurrent writers queue on
the file lock instead of reading stale numbers. Bad files are never repaired, recreated or
overwritten: random bytes, another program's SQLite database, a file locked past the busy
timeout, or a ledger from a newer bcartnb each raise :class:`LedgerError` naming the file.
Only a missing or empty file is initialised.

Durability. ``synchronous=NORMAL``: a commit survives the process being killed (SIGKILL
included), which is the failure delivery must survive. A power cut may lose the last
commits; ``durable=True`` (``synchronous=FULL``) closes that window for an fsync per commit.

The file is watched: SQLite keeps writing to a ledger deleted or replaced under it (the
unlinked file), and the history and the quota would vanish with the process. Every write
checks that the path still names the file we opened and refuses with
:class:`LedgerError` otherwise, so a campaign stops and says so.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Self

from bcartnb.exceptions import CampaignStateError, LedgerError
from bcartnb.ledger.schema import APPLICATION_ID, MIGRATIONS, Migration
from bcartnb.ledger.snapshot import copy_ledger_file
from bcartnb.quota import TOKYO, now_tokyo

if TYPE_CHECKING:
    from bcartnb.settings import Settings

__all__ = ["Database"]


def ts(dt: datetime) -> str:
    """How the ledger writes a time: Asia/Tokyo ISO 8601 with milliseconds.

    The send loop's step writes the same moment three times: the last one is kept.
    """
    global _last_ts
    last = _last_ts
    if last[0] is dt:  # datetimes are immutable: the same object, the same text
        return last[1]
    text = dt.astimezone(TOKYO).isoformat(timespec="milliseconds")
    _last_ts = (dt, text)
    return text


_last_ts: tuple[datetime | None, str] = (None, "")


def dt(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


class Database:
    """The connection, its lock and the transactions every part of the ledger writes through."""

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
        self._identity = _identity(path)
        #: False for :meth:`in_memory`: no file behind it, nothing it records outlives it
        self.on_disk = True
        self._held = False  # inside :meth:`snapshot`: every read shares its transaction

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
    ) -> Self:
        """Open (creating if missing or empty) and validate the ledger; migrate if older.

        ``path`` defaults to ``settings.db`` (``BCARTNB_DB`` or the settings file), loading
        the settings when none are given. ``timeout`` is how long to wait for another
        process's write lock before giving up with :class:`LedgerError`. ``migrations`` is
        for tests and future versions only.
        """
        if path is None:
            from bcartnb.settings import load_settings, require_ledger

            path = require_ledger(settings or load_settings())
        p = Path(path).expanduser()
        if p.is_dir():
            raise LedgerError(
                f"{p}: ledger path is a directory",
                ja=f"配信記録ファイルのパス {p} はフォルダーです。"
                "ファイルのパスを指定してください（BCARTNB_DB / db）。",
            )
        try:
            p.parent.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise LedgerError(
                f"{p}: cannot create the ledger's folder: {err}",
                ja=f"配信記録ファイルのフォルダー {p.parent} を作れません。"
                "書き込めるか確かめてください。",
            ) from err
        try:
            conn = sqlite3.connect(
                p, timeout=timeout, isolation_level=None, check_same_thread=False
            )
        except sqlite3.Error as err:
            raise wrap(err, p, timeout) from err
        try:
            _validate_and_migrate(conn, p, timeout, migrations)
            conn.execute("PRAGMA foreign_keys = ON")
            conn.execute(f"PRAGMA synchronous = {'FULL' if durable else 'NORMAL'}")
            mode = _switch_to_wal(conn, timeout)
            if str(mode).lower() != "wal":
                raise LedgerError(
                    f"{p}: cannot switch the ledger to WAL mode (got {mode})",
                    ja=f"配信記録ファイル {p} を使えません（WAL モードにできません）"
                    "。ネットワークドライブでないか確かめてください。",
                )
        except BaseException as exc:
            conn.close()
            if isinstance(exc, sqlite3.Error):
                raise wrap(exc, p, timeout) from exc
            raise
        return cls(conn, p, timeout=timeout, lease=lease, clock=clock)

    @classmethod
    def in_memory(
        cls,
        copy_of: str | os.PathLike[str] | None = None,
        *,
        timeout: float = 5.0,
        clock: Callable[[], datetime] = now_tokyo,
    ) -> Self:
        """A ledger in memory, gone when closed: empty, or a snapshot of the ledger file
        ``copy_of``, read without a change or a file left beside it (migrated in memory if
        older; :func:`~bcartnb.ledger.snapshot.copy_ledger_file`, as for adopting).

        For a look that must leave the files alone: a dry run in a shop whose ledger file
        does not exist yet (creating it is the first send's), and the suppression list of
        a per-user ledger the shop has not adopted yet (adopting is the marketer's call).
        """
        where = Path(":memory:") if copy_of is None else Path(copy_of).expanduser()
        conn = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
        try:
            if copy_of is not None:
                copy_ledger_file(where, conn, timeout)
            _validate_and_migrate(conn, where, timeout, MIGRATIONS)
            conn.execute("PRAGMA foreign_keys = ON")
        except BaseException as exc:
            conn.close()
            if isinstance(exc, sqlite3.Error):
                raise wrap(exc, where, timeout) from exc
            raise
        ledger = cls(conn, where, timeout=timeout, lease=timedelta(minutes=10), clock=clock)
        ledger.on_disk = False
        return ledger

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Ledger({str(self.path)!r})"

    # --- transactions ------------------------------------------------------------------------

    def _write(self) -> _Transaction:
        """One ``BEGIN IMMEDIATE`` transaction: all or nothing, and no stale reads."""
        return _Transaction(self, "BEGIN IMMEDIATE", write=True)

    @contextlib.contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        """A read transaction: one consistent snapshot for several statements (inside
        :meth:`snapshot`, that one's)."""
        with self._lock:
            if self._held:
                yield self._conn
                return
            with self._transaction("BEGIN") as c:
                yield c

    @contextlib.contextmanager
    def snapshot(self) -> Iterator[Self]:
        """Every read inside sees the ledger as of the first one, whatever another process
        commits meanwhile: a report's counts, failures and 開封・クリック agree with each
        other. Only for looking: a write inside is refused (a LedgerError). The calls of
        other threads on this ledger wait until it ends."""
        with self._lock:
            if self._held:  # already inside one: the outer snapshot stands
                yield self
                return
            with self._transaction("BEGIN"):
                self._held = True
                try:
                    yield self
                finally:
                    self._held = False

    def _transaction(self, begin: str) -> _Transaction:
        return _Transaction(self, begin)

    def _writable(self) -> None:
        """What a write checks first, under the lock."""
        if self._held:  # its ROLLBACK would end the snapshot under the reader's feet
            raise LedgerError(
                f"{self.path}: a write inside a snapshot (a look) of the ledger",
                ja="配信記録を読み取り専用で開いている間は書き込めません（内部の誤りです）。",
            )
        self.check_file()

    def check_file(self) -> None:
        """Refuse to write into a ledger file that was deleted or replaced since it was opened."""
        if _identity(self.path) != self._identity:
            raise LedgerError(
                f"{self.path}: the ledger file was deleted or replaced while bcartnb was using "
                "it; what was recorded since is lost with it, and the quota and the send "
                "history are no longer protected: restore the file from a backup",
                ja=f"記録ファイル（{self.path}）が使用中に削除または置き換えられました。"
                "配信履歴と配信数の記録が失われたため、送信を止めました。"
                "バックアップから戻してください。",
            )

    def _now(self, now: datetime | None) -> datetime:
        moment = self._clock() if now is None else now
        if moment.tzinfo is None or moment.utcoffset() is None:
            raise ValueError(f"now must be an aware datetime, got naive {moment.isoformat()}")
        return moment.astimezone(TOKYO)

    def _status(self, c: sqlite3.Connection, campaign_id: str) -> str:
        row = c.execute(
            "SELECT status FROM campaigns WHERE campaign_id = ?", (campaign_id,)
        ).fetchone()
        if row is None:
            raise unknown_campaign(campaign_id, self.path)
        return str(row[0])


class _Transaction:
    """``begin`` ... ``COMMIT``; on any exception ``ROLLBACK``, an sqlite3 error raised as a
    :class:`LedgerError` naming the file. A write (``write=True``) holds the ledger's lock
    and checks the file first (:meth:`Database._writable`).

    A class rather than a generator context manager: the send loop enters one at every step,
    and the generator's machinery cost more than the rest of the Python around the step's
    statements."""

    __slots__ = ("_begin", "_db", "_write")

    def __init__(self, db: Database, begin: str, *, write: bool = False) -> None:
        self._db = db
        self._begin = begin
        self._write = write

    def __enter__(self) -> sqlite3.Connection:
        db = self._db
        if self._write:
            db._lock.acquire()
            try:
                db._writable()
            except BaseException:
                db._lock.release()
                raise
        try:
            db._conn.execute(self._begin)
        except BaseException as exc:
            self._end(exc)  # raises the wrapped error for an sqlite3 one
            raise
        return db._conn

    def __exit__(self, kind: object, exc: BaseException | None, tb: object) -> None:
        if exc is None:
            try:
                self._db._conn.execute("COMMIT")
            except BaseException as err:
                self._end(err)
                raise
            if self._write:
                self._db._lock.release()
            return
        self._end(exc)

    def _end(self, exc: BaseException) -> None:
        """Roll back, release the lock; raise the wrapped error for an sqlite3 one."""
        db = self._db
        try:
            c = db._conn
            if c.in_transaction:
                with contextlib.suppress(sqlite3.Error):  # a corrupt file may refuse even this
                    c.execute("ROLLBACK")
        finally:
            if self._write:
                db._lock.release()
        if isinstance(exc, sqlite3.Error):
            raise wrap(exc, db.path, db.timeout) from exc


def unknown_campaign(campaign_id: str, path: Path) -> CampaignStateError:
    """An id that is not in this ledger: often a typo, or another BCARTNB_DB."""
    return CampaignStateError(
        f"unknown campaign id {campaign_id!r} in {path}",
        ja=f"キャンペーンID「{campaign_id}」は配信記録にありません。"
        "bcartnb campaigns で一覧を確かめてください（配信記録ファイルが違うこともあります）。",
    )


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


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


def wrap(err: sqlite3.Error, path: Path, timeout: float) -> LedgerError:
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
                "the file was left untouched: set BCARTNB_DB to another path",
                ja=f"{path} は bcartnb の配信記録ファイルではありません"
                "（別のプログラムの SQLite ファイルです）。"
                "ファイルには触れていません。BCARTNB_DB に別のパスを指定してください。",
            )
        if version > target:
            raise LedgerError(
                f"{path}: the ledger was written by a newer bcartnb (schema version "
                f"{version}, this one knows up to {target}); upgrade bcartnb; "
                "the file was left untouched",
                ja=f"配信記録ファイル {path} は新しい版の bcartnb で書かれています。"
                "bcartnb を更新してください（ファイルには触れていません）。",
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
                "nothing was changed",
                ja=f"配信記録ファイル {path} を新しい形式に更新できませんでした"
                "（何も変えていません）。",
            ) from exc
        raise
