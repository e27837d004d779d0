"""Every mail of a run composed before the first goes out, kept on disk, on two cores.

An error in member 5,000 must stop a campaign before member 1 is mailed, so every mail is
composed first; keeping the bytes spares composing them all a second time while sending.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import signal
import sys
import tempfile
import threading
from collections import deque
from typing import IO

import pandas as pd

from bcartnb.delivery.plan import SendPlan
from bcartnb.exceptions import ComposeError

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
    as if it had been composed then (a rate-limited campaign can take hours). With a
    :class:`SpoolHelper`, the second half is composed by a forked process meanwhile.
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
    # closed by Spool.close(); a large buffer makes a few big writes, not one per mail or two
    return tempfile.TemporaryFile(prefix="bcartnb-spool-", buffering=1 << 20)


class SpoolHelper:
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
    def fork(cls, plan: SendPlan, rows: pd.DataFrame | None = None) -> SpoolHelper | None:
        """Start the helper on the second half of ``rows`` (all sendable), or None if unfit."""
        rows = plan.audience.sendable if rows is None else rows
        n = len(rows)
        if (
            n < cls.MIN_MAILS
            or not sys.platform.startswith("linux")
            or threading.active_count() != 1
        ):
            return None
        return cls(plan, n // 2, rows)

    def __init__(self, plan: SendPlan, first_row: int, rows: pd.DataFrame | None = None) -> None:
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

    def result(self, plan: SendPlan) -> tuple[IO[bytes], list[tuple[int, str, int, int, bytes]]]:
        """The child's file and index; its first error raised here as if composed here."""
        chunks = []
        while chunk := os.read(self._read, 1 << 16):
            chunks.append(chunk)
        self._reap()
        try:
            kind, payload = pickle.loads(b"".join(chunks))
        except Exception as err:
            raise ComposeError(
                "the compose helper process ended without a result",
                ja="メールを作成する処理が途中で終わりました。もう一度実行してください。",
            ) from err
        if kind == "error":
            row, message = payload
            at = self.first_row + row
            member = self.rows.iloc[at : at + 1]
            deque(plan.composer.compose_all(member), maxlen=0)  # raises the real error
            raise ComposeError(
                message,
                ja="会員のメールを作成できません。確認のみ（--send なし）"
                "で実行して原因を確かめてください。",
            )
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


def _compose_child(plan: SendPlan, rows: pd.DataFrame, file: IO[bytes], pipe: int) -> None:
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
