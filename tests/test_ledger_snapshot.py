"""An old ledger only looked at is left exactly as it was: adopting it (``bcartnb init
--adopt-ledger``) and counting its suppressions before then (``bcartnb members``) add no
``-wal``/``-shm`` file beside it and change none of its bytes, yet copy what its WAL holds
(bcartnb/ledger/snapshot.py). Real processes, real SQLite files."""

from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path

from test_shop import bcartnb, campaign, environ, init
from test_shop_ledger import files_under, legacy_ledger

from bcartnb.ledger import Ledger
from bcartnb.ledger.snapshot import copy_ledger_file


def listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_a_look_and_an_adoption_leave_the_old_ledgers_folder_as_it_was(tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = environ(home)
    legacy = legacy_ledger(home, "user1@example.co.jp")
    folder = legacy.parent
    before = files_under(folder)
    assert listing(folder) == ["ledger.sqlite3"]  # closed: no companion to begin with
    shop = tmp_path / "shop"
    init(shop, env)
    campaign(shop, 4)

    looked = bcartnb("members", "members.csv", "--json", cwd=shop, env=env)
    assert looked.returncode == 0, looked.stderr
    assert json.loads(looked.stdout)["reasons"]["suppressed"] == 1
    assert files_under(folder) == before and listing(folder) == ["ledger.sqlite3"]

    adopted = bcartnb("init", "--adopt-ledger", cwd=shop, env=env)
    assert adopted.returncode == 0, adopted.stderr
    assert files_under(folder) == before and listing(folder) == ["ledger.sqlite3"]
    listed = json.loads(bcartnb("suppressions", "--json", cwd=shop, env=env).stdout)
    assert [s["address"] for s in listed] == ["user1@example.co.jp"]


def test_a_ledger_in_use_is_copied_with_its_wal_and_nothing_is_added(tmp_path: Path) -> None:
    path = tmp_path / "old" / "ledger.sqlite3"
    path.parent.mkdir()
    held = Ledger.open(path)
    try:
        held.suppress("wal@example.co.jp", "unsubscribed", source="test")  # still in the WAL
        assert Path(f"{path}-wal").stat().st_size > 0
        names = listing(path.parent)
        with Ledger.in_memory(path) as copy:
            assert copy.suppressed_addresses() == {"wal@example.co.jp"}
        assert listing(path.parent) == names
    finally:
        held.close()
    assert listing(path.parent) == ["ledger.sqlite3"]  # the writer, last out, tidied up


def test_copying_a_closed_ledger_twice_at_once_makes_no_companion(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite3"
    with Ledger.open(path) as led:
        led.suppress("a@example.co.jp", "manual", source="test")
    bytes_before = path.read_bytes()
    found: list[int] = []

    def copy() -> None:
        into = sqlite3.connect(":memory:")
        copy_ledger_file(path, into, 5.0)
        found.append(into.execute("SELECT count(*) FROM suppressions").fetchone()[0])
        into.close()

    threads = [threading.Thread(target=copy) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert found == [1, 1]
    assert listing(tmp_path) == ["ledger.sqlite3"] and path.read_bytes() == bytes_before


def test_a_copy_taken_while_a_writer_writes_is_whole_and_in_order(tmp_path: Path) -> None:
    """A writer starting, writing and stopping during the copies: each copy is one moment of
    the file (intact, never fewer rows than the copy before it), whichever way it was read."""
    path = tmp_path / "ledger.sqlite3"
    Ledger.open(path).close()
    total = 200
    done = threading.Event()

    def write() -> None:
        try:
            for i in range(total):
                with Ledger.open(path) as led:  # opened and closed: companions come and go
                    led.suppress(f"w{i}@example.co.jp", "manual", source="test")
        finally:
            done.set()

    writer = threading.Thread(target=write)
    writer.start()
    seen = [0]

    def copy_and_count() -> int:
        into = sqlite3.connect(":memory:")
        try:
            copy_ledger_file(path, into, 30.0)
            assert into.execute("PRAGMA quick_check").fetchone()[0] == "ok"
            return int(into.execute("SELECT count(*) FROM suppressions").fetchone()[0])
        finally:
            into.close()

    while not done.is_set():
        seen.append(copy_and_count())
        assert seen[-2] <= seen[-1] <= total
    writer.join(timeout=120)
    assert copy_and_count() == total
    assert len(seen) > 1  # copies were taken while it wrote
