"""Files written whole or not at all.

Templates, segments, the B-Cart export, the API snapshot, the report and an uploaded member
file are all read by someone else later (B-Cart's import, the next campaign, a reviewer's
browser). A crash, a full disk or a second writer at once must never leave half a file where
they would take it, so each is written beside its target and renamed over it.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

__all__ = ["write_atomically"]


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
    """
    target = Path(path)
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
