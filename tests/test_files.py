"""write_atomically: whole or not at all, with the permissions asked for, twice at once."""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path
from typing import BinaryIO

import pytest

from bcartnb.files import write_atomically


def test_bytes_text_and_a_writer_land_whole(tmp_path: Path) -> None:
    target = tmp_path / "out.txt"
    assert write_atomically(target, b"\x00bytes") == target
    assert target.read_bytes() == b"\x00bytes"
    write_atomically(target, "テキスト\r\n改行はそのまま\n")
    assert target.read_bytes() == "テキスト\r\n改行はそのまま\n".encode()
    write_atomically(target, lambda fh: fh.write(b"from a writer"))
    assert target.read_bytes() == b"from a writer"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]  # no temporary file left


def test_a_failing_writer_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "out.csv"
    target.write_bytes(b"old")

    def half(fh: BinaryIO) -> None:
        fh.write(b"half of the new")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_atomically(target, half)
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.csv"]


def test_a_missing_folder_is_an_oserror_and_writes_nothing(tmp_path: Path) -> None:
    with pytest.raises(OSError):
        write_atomically(tmp_path / "missing" / "out.txt", b"x")
    assert list(tmp_path.iterdir()) == []


def test_permissions_follow_the_mode_and_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        write_atomically(tmp_path / "shared", b"x")
        write_atomically(tmp_path / "private", b"x", mode=0o600)
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "shared").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "private").stat().st_mode) == 0o600


def test_many_writers_at_once_leave_one_whole_file(tmp_path: Path) -> None:
    target = tmp_path / "out.bin"
    bodies = [bytes([i]) * 200_000 for i in range(16)]
    threads = [threading.Thread(target=write_atomically, args=(target, b)) for b in bodies]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert target.read_bytes() in bodies
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]
