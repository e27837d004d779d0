"""Knowing the ledger changed without reading it: ``PRAGMA data_version`` on one idle connection.

A face that sorts members on every click (the wizard) needs the suppression list each time,
and reading 30,000 addresses out of SQLite cost more than the rest of a click. SQLite changes
a connection's ``data_version`` whenever another connection, in any process, commits to the
file; so a list read once stays good until the version moves. The connection is read-only
and holds no transaction between calls: it never blocks a writer. A file replaced under it
is opened afresh, told by its inode and its ctime (a filesystem reuses a freed inode at
once), and each opening is numbered, so a version of one connection never equals another's.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
from pathlib import Path
from urllib.parse import quote

__all__ = ["LedgerWatch"]


class LedgerWatch:
    """``version()`` differs from its last value whenever the ledger file changed since."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path).expanduser()
        self._conn: sqlite3.Connection | None = None
        self._file: tuple[int, int, int] | None = None
        self._opened = 0
        self._lock = threading.Lock()

    def version(self) -> tuple[int, int] | None:
        """(opening, data_version) of the ledger file; None when there is none (or it cannot
        be read now): a caller then reads afresh, never trusts an old copy."""
        with self._lock:
            try:
                stat = os.stat(self.path)
            except OSError:
                self._close()
                return None
            file = (stat.st_dev, stat.st_ino, stat.st_ctime_ns)
            try:
                if self._conn is None or file != self._file:
                    self._close()
                    self._conn = sqlite3.connect(
                        f"file:{quote(str(self.path))}?mode=ro",
                        uri=True,
                        isolation_level=None,
                        check_same_thread=False,
                    )
                    self._file = file
                    self._opened += 1
                (value,) = self._conn.execute("PRAGMA data_version").fetchone()
            except sqlite3.Error:
                self._close()
                return None
            return self._opened, int(value)

    def close(self) -> None:
        with self._lock:
            self._close()

    def _close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(sqlite3.Error):
                self._conn.close()
        self._conn, self._file = None, None
