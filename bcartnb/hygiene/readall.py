"""Every mail of a bounce mailbox read, on both cores when there are many.

Reading the notices is pure CPU (the parser of Python's ``email`` package, flufl.bounce's
detectors) and the scan records nothing until all are read, so a second core halves that
wait. Only where ``fork`` is cheap and safe (Linux, a single Python thread: the command
line, never a Jupyter kernel), with more than one core to run on, enough mails to be worth a
process, and a mailbox whose mails the child can read by itself (a Maildir: each mail its own
file; not an mbox, whose file position parent and child would share, nor an IMAP
connection). The child reads and parses the second half and sends the results back; the
list is the one a single process makes, in the same order. If the child fails for any
reason, its half is read here, so an error is raised as if one process had read it all.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import signal
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

from bcartnb.hygiene.sources import Mailbox

__all__ = ["MIN_MAILS", "read_all"]

#: Fewer mails than this are read by one process (a fork costs more than it saves).
MIN_MAILS = 2000
_T = TypeVar("_T")


def read_all(
    box: Mailbox,
    parse: Callable[[bytes], _T],
    shown: Callable[[Iterator[bytes], int], Iterable[bytes]] = lambda mails, n: mails,
) -> list[_T]:
    """``parse`` of every mail of ``box``, in order; ``shown`` wraps what this process reads
    and how many (a progress bar)."""
    n = len(box)
    if not _worth_a_fork(box, n):
        return [parse(raw) for raw in shown(box.read(), n)]
    half = n // 2
    helper = _Helper(box, parse, half)
    try:
        first = [parse(raw) for raw in shown(box.read(0, half), half)]
        second = helper.result()
    finally:
        helper.close()
    if second is None:  # the child failed: read its half here (an error is raised here)
        return first + [parse(raw) for raw in box.read(half)]
    parsed, skipped = second
    box.skipped += skipped
    return first + parsed


def _worth_a_fork(box: Mailbox, n: int) -> bool:
    return (
        box.forkable
        and n >= MIN_MAILS
        and sys.platform.startswith("linux")
        and threading.active_count() == 1
        and len(os.sched_getaffinity(0)) > 1
    )


class _Helper:
    """The forked child reading mails ``start`` to the end; its result comes back pickled."""

    def __init__(self, box: Mailbox, parse: Callable[[bytes], object], start: int) -> None:
        self._read, write = os.pipe()
        self.pid = os.fork()
        if self.pid == 0:  # the child: read, report, leave without running any cleanup
            os.close(self._read)
            code = 0
            try:
                before = box.skipped
                parsed = [parse(raw) for raw in box.read(start)]
                payload = pickle.dumps((parsed, box.skipped - before), pickle.HIGHEST_PROTOCOL)
                with os.fdopen(write, "wb") as pipe:
                    pipe.write(payload)
            except BaseException:
                code = 1
            finally:
                os._exit(code)
        os.close(write)

    def result(self) -> tuple[list[Any], int] | None:
        """The child's mails and how many entries it skipped, or None if it failed."""
        chunks = []
        while chunk := os.read(self._read, 1 << 20):
            chunks.append(chunk)
        code = self._reap()
        if code != 0 or not chunks:
            return None
        try:
            parsed, skipped = pickle.loads(b"".join(chunks))
        except Exception:
            return None
        return parsed, int(skipped)

    def _reap(self) -> int:
        code = -1
        if self.pid:
            with contextlib.suppress(ChildProcessError):
                code = os.waitstatus_to_exitcode(os.waitpid(self.pid, 0)[1])
            self.pid = 0
        if self._read >= 0:
            os.close(self._read)
            self._read = -1
        return code

    def close(self) -> None:
        """Stop the child if it still runs (our half failed, or Ctrl-C)."""
        if self.pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
        self._reap()
