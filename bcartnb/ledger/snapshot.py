"""One consistent copy of a ledger file that is only looked at, leaving nothing beside it.

Adopting a per-user ledger (``bcartnb init --adopt-ledger``) and counting its suppression
list before then (``bcartnb members``) read a file that is not the shop's to change. A
read-only SQLite connection (``mode=ro``) to a WAL file that no connection has open creates
its ``-wal`` and ``-shm`` companions and, read-only, cannot remove them: two empty files
were left beside the old ledger. Such a file holds all of itself (no WAL beside it), so it
is read as ``immutable=1``, which makes no companion, and checked unchanged afterwards (a
writer that came meanwhile means it is read again). A file in use (its companions there) is
read ``mode=ro`` alongside its writers, through the companions already there: the WAL's
committed pages included, nothing new made.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

__all__ = ["copy_ledger_file"]

_COMPANIONS = ("-wal", "-shm")
#: immutable reads tried before the shared read-only one, each undone by a writer
_ATTEMPTS = 3


def _companions(src: Path) -> bool:
    return any(src.with_name(src.name + s).exists() for s in _COMPANIONS)


def _state(src: Path) -> tuple[int, int, int, int]:
    st = os.stat(src)
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns


def _backup(src: Path, query: str, into: sqlite3.Connection, timeout: float) -> None:
    source = sqlite3.connect(f"{src.absolute().as_uri()}?{query}", uri=True, timeout=timeout)
    try:
        source.backup(into)
    finally:
        source.close()


def copy_ledger_file(src: Path, into: sqlite3.Connection, timeout: float) -> None:
    """Copy the whole of ``src`` into ``into`` (a file's or memory's connection), as of one
    moment, without writing or adding a file beside ``src``."""
    for _ in range(_ATTEMPTS):
        if _companions(src):
            break
        before = _state(src)
        _backup(src, "immutable=1", into, timeout)
        if not _companions(src) and _state(src) == before:
            return
    _backup(src, "mode=ro", into, timeout)
