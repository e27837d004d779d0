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


# --- open_regular: a user's path is read only when it is a file ---------------------------


@pytest.mark.timeout(30)
def test_only_a_regular_file_is_opened(tmp_path: Path) -> None:
    import socket

    from bcartnb.exceptions import MembersFileError
    from bcartnb.files import check_regular, open_regular, read_regular

    plain = tmp_path / "plain.csv"
    plain.write_bytes(b"id,email\n")
    assert read_regular(plain, "会員ファイル") == b"id,email\n"
    check_regular(plain, "会員ファイル")
    with open_regular(plain, "会員ファイル") as fh:
        assert fh.read(2) == b"id"
    link = tmp_path / "link.csv"
    link.symlink_to(plain)
    assert read_regular(link, "会員ファイル") == b"id,email\n"  # a link to a file is a file

    fifo = tmp_path / "fifo.csv"
    os.mkfifo(fifo)  # no writer: a plain open would wait for ever
    sock = tmp_path / "sock.csv"
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(sock))
        for path, kind in ((fifo, "FIFO"), (sock, "ソケット"), (Path("/dev/zero"), "デバイス")):
            with pytest.raises(MembersFileError) as err:
                read_regular(path, "会員ファイル", MembersFileError)
            assert kind in err.value.ja and str(path) in err.value.ja
            assert "\n" not in err.value.line()
    (tmp_path / "fifo-link.csv").symlink_to(fifo)
    with pytest.raises(MembersFileError, match="named pipe"):
        check_regular(tmp_path / "fifo-link.csv", "会員ファイル", MembersFileError)
    with pytest.raises(IsADirectoryError):  # the caller's own words for a folder
        read_regular(tmp_path, "会員ファイル")
    with pytest.raises(FileNotFoundError):
        read_regular(tmp_path / "missing.csv", "会員ファイル")


def test_a_fifo_or_a_device_is_never_written_over(tmp_path: Path) -> None:
    from bcartnb.exceptions import InputError

    fifo = tmp_path / "export.csv"
    os.mkfifo(fifo)
    with pytest.raises(InputError, match="nothing was written"):
        write_atomically(fifo, b"data")
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)
    assert [p.name for p in tmp_path.iterdir()] == ["export.csv"]  # no temporary left
