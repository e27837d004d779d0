"""A big Maildir read on both cores gives the list one process gives: same mails, same order,
the same entries skipped; a helper that dies changes nothing but the time; an mbox and a
small Maildir are read by one process."""

from __future__ import annotations

import mailbox
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from test_hygiene_read_once import corpus

from bcartnb.hygiene import readall
from bcartnb.hygiene.bounces import Parsed, parse_message
from bcartnb.hygiene.readall import read_all
from bcartnb.hygiene.sources import open_mailbox

NOW = datetime(2026, 12, 1, tzinfo=UTC)
MAILS = corpus()[:90]

can_fork = pytest.mark.skipif(
    len(os.sched_getaffinity(0)) < 2, reason="a helper is forked only with two cores"
)
_AGAIN = "BCARTNB_READALL_ALONE"


@pytest.fixture
def alone(request: pytest.FixtureRequest) -> Iterator[bool]:
    """True when this process may fork a reader: it has one thread. In a whole-suite run an
    earlier test may have left a thread (a server, tqdm's monitor), and read_all then rightly
    reads alone; the test is run again, whole, in a fresh pytest process, and False tells it
    that the fresh one has answered for it."""
    if threading.active_count() == 1:
        yield True
        return
    assert not os.environ.get(_AGAIN), "a fresh pytest process should have one thread"
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:randomly", request.node.nodeid],
        cwd=request.config.rootpath,
        env={**os.environ, _AGAIN: "1"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    yield False


def parse(raw: bytes) -> tuple[int, Parsed]:
    return os.getpid(), parse_message(raw, now=NOW)


def maildir(tmp_path: Path, *, fifo: bool = True) -> Path:
    box = mailbox.Maildir(tmp_path / "box", create=True)
    for raw in MAILS:
        box.add(raw)
    box.close()
    if fifo:  # a FIFO in new/ is passed over and counted, by whichever process meets it
        os.mkfifo(tmp_path / "box" / "new" / "zzzz.fifo")
    return tmp_path / "box"


def one_process(path: Path) -> tuple[list[Parsed], int]:
    with open_mailbox(path) as box:
        return [parse_message(raw, now=NOW) for raw in box], box.skipped


@can_fork
def test_a_big_maildir_is_read_by_two_processes_as_one_would(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, alone: bool
) -> None:
    if not alone:
        return  # a fresh process ran it (see alone)
    path = maildir(tmp_path)
    expected, skipped = one_process(path)
    assert skipped == 1 and len(expected) == len(MAILS)
    monkeypatch.setattr(readall, "MIN_MAILS", 10)
    with open_mailbox(path) as box:
        got = read_all(box, parse)
        assert box.skipped == skipped
    assert [p for _, p in got] == expected
    pids = [pid for pid, _ in got]
    assert pids[0] == os.getpid() and pids[-1] != os.getpid()  # the second half: the child's
    assert pids == sorted(pids, key=lambda pid: pid != os.getpid())


@can_fork
def test_a_helper_that_fails_leaves_its_half_to_us(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, alone: bool
) -> None:
    if not alone:
        return  # a fresh process ran it (see alone)
    path = maildir(tmp_path)
    expected, _ = one_process(path)
    monkeypatch.setattr(readall, "MIN_MAILS", 10)
    me = os.getpid()

    def dies_in_the_child(raw: bytes) -> Parsed:
        if os.getpid() != me:
            os._exit(3)  # killed, not an exception: nothing comes back
        return parse_message(raw, now=NOW)

    def raises_in_the_child(raw: bytes) -> Parsed:
        if os.getpid() != me:
            raise MemoryError
        return parse_message(raw, now=NOW)

    for fn in (dies_in_the_child, raises_in_the_child):
        with open_mailbox(path) as box:
            assert read_all(box, fn) == expected
            assert box.skipped == 1


def test_an_error_reading_is_raised_here_and_no_child_is_left(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = maildir(tmp_path, fifo=False)
    monkeypatch.setattr(readall, "MIN_MAILS", 10)

    def broken(raw: bytes) -> Parsed:
        raise RuntimeError("broken parser")

    with open_mailbox(path) as box, pytest.raises(RuntimeError, match="broken parser"):
        read_all(box, broken)
    with pytest.raises(ChildProcessError):
        os.waitpid(-1, os.WNOHANG)  # every child reaped


@pytest.mark.parametrize("kind", ["mbox", "small maildir"])
def test_an_mbox_or_a_small_maildir_is_read_by_this_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    if kind == "mbox":
        mbox = mailbox.mbox(tmp_path / "box.mbox", create=True)
        for raw in MAILS:
            mbox.add(raw)
        mbox.close()
        path = tmp_path / "box.mbox"
        monkeypatch.setattr(readall, "MIN_MAILS", 10)
    else:
        path = maildir(tmp_path, fifo=False)
    shown: list[int] = []
    show: Callable[..., object] = lambda mails, n: shown.append(n) or mails  # noqa: E731
    with open_mailbox(path) as box:
        got = read_all(box, parse, show)  # type: ignore[arg-type]
    assert {pid for pid, _ in got} == {os.getpid()}
    assert [p for _, p in got] == [parse_message(raw, now=NOW) for raw in _read(path)]
    assert shown == [len(MAILS)]


def _read(path: Path) -> list[bytes]:
    with open_mailbox(path) as box:
        return list(box)
