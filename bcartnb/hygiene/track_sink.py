"""The process that writes the public server's clicks and opens into the ledger.

Why a process and not a thread: SQLite's work and the ledger's rules take the CPU in Python,
and a thread of the server's would take the GIL from the event loop answering requests
(measured: the server's throughput halved and its p99 grew tenfold). Here the server only
hands each batch over a pipe (:class:`Sink`), and this process, started with the server and
ending with it, records it (:meth:`~bcartnb.ledger.Ledger.record_tracks`) and answers
``("ok", n)`` or ``("error", message)``.

It reads until the server says ``close`` or its pipe ends: when the server is killed, the
batch in hand is still committed, and the process ends by itself (it never outlives the
pipe by more than that batch). It ignores SIGINT and SIGTERM: Ctrl-C in a terminal and
``systemctl stop`` signal the whole group, and the server's clean stop still has its last
batches to hand over; the server ends this process when it is done.

Run as ``python -m bcartnb.hygiene.track_sink LEDGER READ_FD WRITE_FD`` by :class:`Sink` only.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from bcartnb.exceptions import BcartnbError, LedgerError

__all__ = ["Sink", "main"]


class Sink:
    """The server's end: start the process, hand it batches, wait for its answer."""

    def __init__(self, ledger_path: Path) -> None:
        to_child, from_parent = os.pipe()
        to_parent, from_child = os.pipe()
        try:
            self._proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "bcartnb.hygiene.track_sink",
                    str(ledger_path),
                    str(to_child),
                    str(from_child),
                ],
                pass_fds=(to_child, from_child),
                stdin=subprocess.DEVNULL,
            )
        except OSError as err:
            for fd in (to_child, from_parent, to_parent, from_child):
                os.close(fd)
            raise LedgerError(
                f"cannot start the click writer: {err}",
                ja="開封・クリックを記録するプロセスを起動できません。",
            ) from err
        os.close(to_child)
        os.close(from_child)
        self._out = Connection(from_parent, readable=False)
        self._in = Connection(to_parent, writable=False)

    def write(self, batch: list[tuple[Any, ...]]) -> str | None:
        """Record the batch; None when done, else why not (the batch was not recorded)."""
        try:
            self._out.send(("batch", batch))
            kind, detail = self._in.recv()
        except (OSError, EOFError) as err:
            return f"the click writer process ended ({err or 'EOF'})"
        return None if kind == "ok" else str(detail)

    def alive(self) -> bool:
        return self._proc.poll() is None

    def close(self, timeout: float = 30.0) -> None:
        """Tell the process to end, and wait for it."""
        with contextlib.suppress(OSError):
            self._out.send(("close", None))
        self._out.close()
        try:
            self._proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        self._in.close()


def main(argv: list[str]) -> int:
    from bcartnb.ledger import Ledger
    from bcartnb.ledger.tracking import TrackEvent

    for stop in (signal.SIGINT, signal.SIGTERM):
        signal.signal(stop, signal.SIG_IGN)
    path, read_fd, write_fd = argv
    inbox = Connection(int(read_fd), writable=False)
    outbox = Connection(int(write_fd), readable=False)
    with Ledger.open(path) as ledger:
        while True:
            try:
                kind, batch = inbox.recv()
            except (EOFError, OSError):
                return 0  # the server is gone: what it had handed over is written
            if kind != "batch":
                return 0
            try:
                ledger.record_tracks([TrackEvent(*e) for e in batch])
                answer: tuple[str, Any] = ("ok", len(batch))
            except BcartnbError as err:
                answer = ("error", str(err))
            try:
                outbox.send(answer)
            except OSError:
                return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
