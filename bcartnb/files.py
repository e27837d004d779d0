"""Files written whole or not at all, and files read only when they are files.

Templates, segments, the B-Cart export, the API snapshot, the report and an uploaded member
file are all read by someone else later (B-Cart's import, the next campaign, a reviewer's
browser). A crash, a full disk or a second writer at once must never leave half a file where
they would take it, so each is written beside its target and renamed over it.

Every path a user gives us to read (member CSV and snapshot, campaign and settings TOML,
``.env``, templates, segments, a bounce mailbox) is opened by :func:`open_regular`: a FIFO
would block the open or the read until someone writes to it, ``/dev/zero`` reads forever, a
socket cannot be read at all. Anything but a regular file is refused with one line naming
the path, before a byte is read.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from bcartnb.exceptions import BcartnbError, InputError

__all__ = ["check_regular", "open_regular", "read_regular", "write_atomically"]

#: What a path is when it is not a file or a folder: (test, English, Japanese).
_KINDS = (
    (stat.S_ISFIFO, "a named pipe (FIFO)", "名前付きパイプ（FIFO）"),
    (stat.S_ISCHR, "a character device", "デバイス"),
    (stat.S_ISBLK, "a block device", "デバイス"),
    (stat.S_ISSOCK, "a socket", "ソケット"),
)
# O_NONBLOCK: opening a FIFO for reading must not wait for a writer; O_NOCTTY: a terminal
# must not become ours.
_READ_FLAGS = (
    os.O_RDONLY
    | getattr(os, "O_NONBLOCK", 0)
    | getattr(os, "O_NOCTTY", 0)
    | getattr(os, "O_BINARY", 0)
    | getattr(os, "O_CLOEXEC", 0)
)


def write_atomically(
    path: str | os.PathLike[str],
    data: bytes | str | Callable[[BinaryIO], object],
    *,
    mode: int = 0o666,
) -> Path:
    """Write ``data`` (bytes, text as UTF-8 with its line ends kept, or a callable writing to
    the open file) to a new file beside ``path``, flush it to disk, then rename it over
    ``path``. Returns the path.

    ``mode`` is the new file's permissions before the umask (``0o600`` keeps it private).
    Raises ``OSError`` with nothing left behind; the caller says in Japanese what failed.
    A ``path`` that names a FIFO, a device or a socket is refused (:class:`InputError`):
    renaming over it would replace ``/dev/null`` itself for a user allowed to.
    """
    target = Path(path)
    with contextlib.suppress(FileNotFoundError):
        _check_mode(os.stat(target).st_mode, target, "書き込み先", InputError, "written")
    tmp = target.with_name(f".{target.name}.{secrets.token_hex(6)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb") as fh:
            if callable(data):
                data(fh)
            else:
                fh.write(data.encode("utf-8") if isinstance(data, str) else data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return target


def open_regular(
    path: str | os.PathLike[str], what: str, error: type[BcartnbError] = InputError
) -> BinaryIO:
    """Open ``path`` for reading in binary if it is a regular file.

    Anything else is refused with ``error`` (a :class:`BcartnbError` subclass: the caller's
    kind of failure), its message naming ``what`` (``会員ファイル``, ``テンプレート`` …), the
    path and what it is. The type is checked before the open (a device is never opened) and
    again on the open descriptor, so nothing swapped in between gets read. A folder raises
    :class:`IsADirectoryError` and a missing file :class:`FileNotFoundError`, as ``open``
    would, so a caller's own words for those stay.
    """
    _check_mode(os.stat(path).st_mode, path, what, error)
    try:
        fd = os.open(path, _READ_FLAGS)
    except OSError as err:
        if err.errno == errno.ENXIO:  # a socket (or a FIFO with no writer, on some systems)
            _check_mode(os.stat(path).st_mode, path, what, error)
        raise
    try:
        _check_mode(os.fstat(fd).st_mode, path, what, error)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_regular(
    path: str | os.PathLike[str], what: str, error: type[BcartnbError] = InputError
) -> bytes:
    """The bytes of ``path``, a regular file (:func:`open_regular`)."""
    with open_regular(path, what, error) as fh:
        return fh.read()


def check_regular(
    path: str | os.PathLike[str], what: str, error: type[BcartnbError] = InputError
) -> None:
    """Refuse ``path`` unless it is a regular file, for a library that opens the path itself
    (:mod:`mailbox`, python-dotenv): checked by :func:`open_regular`, then closed."""
    open_regular(path, what, error).close()


def _check_mode(
    mode: int,
    path: str | os.PathLike[str],
    what: str,
    error: type[BcartnbError],
    done: str = "read",
) -> None:
    if stat.S_ISREG(mode):
        return
    if stat.S_ISDIR(mode):
        raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), os.fspath(path))
    kind, kind_ja = next(
        ((en, ja) for test, en, ja in _KINDS if test(mode)), ("not a file", "ファイル以外")
    )
    raise error(
        f"{os.fspath(path)}: is not a regular file but {kind}; nothing was {done}",
        ja=f"{what} {os.fspath(path)} は通常のファイルではありません（{kind_ja}）。"
        "ファイルのパスを指定してください。",
    )
