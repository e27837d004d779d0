"""Every mail of a run composed before the first goes out, kept on disk, on two cores.

An error in member 5,000 must stop a campaign before member 1 is mailed, so every mail is
composed first; keeping the bytes spares composing them all a second time while sending.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import signal
import struct
import sys
import tempfile
import threading
from collections import deque
from typing import IO

import numpy as np
import pandas as pd

from bcartnb.compose import Composer
from bcartnb.delivery.plan import SendPlan

__all__ = ["Spool", "SpoolHelper", "compose_check", "spool_or_check"]


def compose_check(plan: SendPlan, rows: pd.DataFrame | None = None) -> None:
    """Compose every sendable member (or ``rows``) once: no error can appear halfway through."""
    deque(plan.composer.compose_all(plan.audience.sendable if rows is None else rows), maxlen=0)


class Spool:
    """Every mail of a campaign composed once, before the first goes out, kept on disk.

    The compose check has to compose every mail anyway (an error in member 5,000 must stop
    us before member 1); keeping its bytes spares composing them all a second time while
    sending. They go to anonymous temporary files, not to memory, so a campaign of any
    size needs a few bytes of index per member; the files have no name and vanish when
    closed or when the process dies. The Date header is renewed as each mail goes out,
    as if it had been composed then (a rate-limited campaign can take hours).

    With a :class:`SpoolHelper` the rows are composed in chunks by whichever of the two
    processes is free; whatever the helper did not hand back (it failed, or was killed) is
    composed here, in file order, so the first member whose mail cannot be composed raises
    its own error, exactly as composing them all here would.
    """

    def __init__(
        self,
        plan: SendPlan,
        helper: SpoolHelper | None = None,
        rows: pd.DataFrame | None = None,
    ) -> None:
        self._files: list[IO[bytes]] = []
        self._index: dict[int, tuple[str, int, int, int, bytes]] = {}
        self._composer = plan.composer
        sendable = plan.audience.sendable if rows is None else rows
        #: mails composed here because the helper did not hand them back
        self.recomposed = 0
        try:
            self._files.append(_spool_file())
            self._offset = 0
            if helper is None:
                self._add(sendable)
                self._files[0].flush()
                return
            try:
                while (part := helper.take()) is not None:
                    self._add(sendable.iloc[part])
            except OSError:
                raise  # the spool's file: nothing is known of what it holds
            except Exception:
                helper.stop()  # the first error is raised below, in file order
            file, entries = helper.result()
            if file is not None:
                self._files.append(file)
                for member_id, to, offset, size, date in entries:
                    self._index.setdefault(member_id, (to, 1, offset, size, date))
            ids = sendable["id"].astype("int64").to_numpy()
            left = sendable[~np.isin(ids, np.fromiter(self._index, np.int64, len(self._index)))]
            self.recomposed = len(left)
            self._add(left)
            self._files[0].flush()
        except BaseException:
            self.close()
            raise

    def _add(self, rows: pd.DataFrame) -> None:
        write = self._files[0].write
        index = self._index
        offset = self._offset
        try:
            for mail in self._composer.compose_all(rows):
                raw = mail.raw
                write(raw)
                index[int(mail.member_id)] = (mail.to, 0, offset, len(raw), mail.date.encode())
                offset += len(raw)
        finally:
            self._offset = offset

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
    # closed by Spool.close(); a large buffer makes a few big writes, not one per mail or two
    return tempfile.TemporaryFile(prefix="bcartnb-spool-", buffering=1 << 20)


_PART = struct.Struct("=I")  # one chunk's number in the queue: 4 bytes, read whole by either side


class SpoolHelper:
    """A forked process that composes the spool's mails alongside us, chunk by chunk.

    Composing is pure CPU and the campaign waits for all of it before the first mail goes
    out, so a second core halves that wait; started before the campaign is claimed, it
    composes while we write the claim. Only where ``fork`` is cheap and safe: Linux, a
    single Python thread (the command line; never inside a Jupyter kernel, whose threads a
    fork would leave in an unknown state; Arrow's own pools re-create themselves after a
    fork), and enough mails to be worth a process.

    The rows are cut into chunks whose numbers wait in a pipe; each side takes the next
    one (a read of 4 bytes from a pipe is whole on Linux), so whichever is free composes
    and neither waits for the other's half. The child writes its mails to a temporary file
    inherited from us and sends back their index. It hands back only what it composed: on
    an error it stops, and :class:`Spool` composes the rest here, raising the real error.
    """

    MIN_MAILS = 4000
    CHUNK = 256
    MAX_CHUNKS = 1024  # 4 KiB of chunk numbers: what the smallest pipe Linux makes holds

    @classmethod
    def fork(cls, plan: SendPlan, rows: pd.DataFrame | None = None) -> SpoolHelper | None:
        """Start the helper on ``rows`` (all sendable), or None where it does not fit."""
        rows = plan.audience.sendable if rows is None else rows
        if (
            len(rows) < cls.MIN_MAILS
            or not sys.platform.startswith("linux")
            or threading.active_count() != 1
        ):
            return None
        try:
            return cls(plan.composer, rows)
        except OSError:  # no process, pipe or file to be had: one process composes them all
            return None

    def __init__(self, composer: Composer, rows: pd.DataFrame, chunk: int | None = None) -> None:
        self.composer = composer
        self.rows = rows
        n = len(rows)
        self.chunk = max(chunk or self.CHUNK, -(-n // self.MAX_CHUNKS))
        self.pid, self._queue, self._read = 0, -1, -1
        self.file: IO[bytes] | None = None
        write = -1
        try:
            self.file = _spool_file()
            self._queue = _queue_of(-(-n // self.chunk))
            self._read, write = os.pipe()
            self.pid = os.fork()
        except BaseException:
            if write >= 0:
                os.close(write)
            self.close()
            raise
        if self.pid == 0:  # the child: compose, report, leave without running any cleanup
            os.close(self._read)
            code = 0
            try:
                _compose_child(self, write)
            except BaseException:
                code = 1
            finally:
                os._exit(code)
        os.close(write)

    def take(self) -> slice | None:
        """The rows of the next chunk nobody has taken, or None when none is left."""
        if self._queue < 0:
            return None
        got = os.read(self._queue, _PART.size)
        if len(got) != _PART.size:
            return None
        start = _PART.unpack(got)[0] * self.chunk
        return slice(start, start + self.chunk)

    def stop(self) -> None:
        """Leave no chunk to take: the child ends after the one it is composing."""
        if self._queue >= 0:
            while os.read(self._queue, 1 << 16):
                pass
            os.close(self._queue)
            self._queue = -1

    def matches(self, composer: Composer, rows: pd.DataFrame) -> bool:
        """Whether this helper composes exactly these mails (the claim changed nothing)."""
        return composer is self.composer and np.array_equal(
            self.rows["id"].to_numpy(), rows["id"].to_numpy()
        )

    def result(self) -> tuple[IO[bytes] | None, list[tuple[int, str, int, int, bytes]]]:
        """The child's file and index of what it composed; (None, []) if it died first."""
        chunks = []
        while chunk := os.read(self._read, 1 << 16):
            chunks.append(chunk)
        self._reap()
        try:
            entries = pickle.loads(b"".join(chunks))
        except Exception:
            return None, []
        file, self.file = self.file, None
        return file, entries

    def _reap(self) -> None:
        if self.pid:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(self.pid, 0)
            self.pid = 0
        if self._read >= 0:
            os.close(self._read)
            self._read = -1

    def close(self) -> None:
        """Stop the child if it still runs (our part failed, or Ctrl-C) and free its file."""
        self.stop()
        if self.pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
        self._reap()
        if self.file is not None:
            self.file.close()
            self.file = None


def _queue_of(parts: int) -> int:
    """The read end of a pipe holding the chunk numbers ``0 … parts - 1``; its write end is
    closed, so once they are all taken a read says end of file."""
    read, fill = os.pipe()
    try:
        data = b"".join(_PART.pack(i) for i in range(parts))
        while data:
            data = data[os.write(fill, data) :]
    except BaseException:
        os.close(read)
        raise
    finally:
        os.close(fill)
    return read


def _compose_child(helper: SpoolHelper, pipe: int) -> None:
    entries: list[tuple[int, str, int, int, bytes]] = []
    file = helper.file
    assert file is not None
    try:
        offset = 0
        while (part := helper.take()) is not None:
            for mail in helper.composer.compose_all(helper.rows.iloc[part]):
                raw = mail.raw
                file.write(raw)
                entries.append((int(mail.member_id), mail.to, offset, len(raw), mail.date.encode()))
                offset += len(raw)
    except Exception:
        pass  # the parent composes what we did not hand back, and raises the real error
    try:
        file.flush()
    except OSError:
        entries = []
    view = memoryview(pickle.dumps(entries))
    while view:
        view = view[os.write(pipe, view) :]
    os.close(pipe)


def spool_or_check(
    plan: SendPlan, helper: SpoolHelper | None = None, rows: pd.DataFrame | None = None
) -> Spool | None:
    """Compose every mail (of ``rows``) before the first goes out; spool them if there is room."""
    try:
        return Spool(plan, helper, rows)
    except OSError:
        if helper is not None:
            helper.close()
        compose_check(plan, rows)  # no room for the spool: check now, compose again to send
        return None
