"""What the wizard keeps between clicks, and that keeping it never shows a stale list.

The suppression list is read once per change to the ledger (``PRAGMA data_version``), so a
listing made by another process (``bcartnb suppress``, a scan, another notebook) must still
hold the member back at the next 絞込; the member table makes its row widgets once and only
sets their values, so the check boxes must still name, and tick, the member they show.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import ipywidgets as widgets
import pytest

from bcartnb.campaign import SuppressionList
from bcartnb.ledger import Ledger, LedgerWatch
from bcartnb.settings import Settings
from bcartnb.widgets import Wizard

HEADER = "会員ID,会社名,担当者(姓),担当者(名),メールアドレス,都道府県,メール案内\n"


def members(path: Path, count: int, start: int = 1001) -> Path:
    pref = {0: "大阪府", 1: "東京都"}
    rows = [
        f"{m},テスト商事{m},山田,太郎,user{m}@example.co.jp,{pref[m % 2]},受け取る\n"
        for m in range(start, start + count)
    ]
    path.write_text(HEADER + "".join(rows), encoding="utf-8")
    return path


def cli(db: Path, *args: str) -> None:
    """A real second process writing the ledger, as the marketer's terminal would."""
    env = {**os.environ, "BCARTNB_DB": str(db)}
    done = subprocess.run(
        [sys.executable, "-m", "bcartnb", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr


def reason(wizard: Wizard, member_id: int) -> str:
    return str(wizard.table.rows.set_index("id").loc[member_id, "送信できない理由"])


@pytest.fixture
def wizard(tmp_path: Path) -> Wizard:
    db = tmp_path / "ledger.sqlite3"
    with Ledger.open(db) as led:
        led.suppress("user1001@example.co.jp")
    return Wizard(members(tmp_path / "m.csv", 45), Settings(plan="プラン300", db=db))


def test_a_listing_by_another_process_is_seen_at_the_next_search(wizard: Wizard) -> None:
    db = wizard.settings.db
    assert db is not None
    assert reason(wizard, 1001) == "配信停止・不達" and reason(wizard, 1003) == ""
    kept = wizard.selecting.suppressions.addresses()
    wizard.filter_step.apply.click()
    assert wizard.selecting.suppressions.addresses() is kept  # nothing changed: not read again

    cli(db, "suppress", "USER1003@example.co.jp", "--reason", "unsubscribed")
    wizard.filter_step.apply.click()
    assert reason(wizard, 1003) == "配信停止・不達", wizard.status.value
    assert wizard.found is not None and wizard.found.reasons["suppressed"] == 2

    cli(db, "unsuppress", "user1001@example.co.jp")
    wizard.filter_step.pref.value = ("東京都",)
    wizard.filter_step.apply.click()
    assert reason(wizard, 1001) == "" and reason(wizard, 1003) == "配信停止・不達"
    # a tick counts against the list as it is now, too
    wizard.table.check([1001, 1003])
    assert wizard.found.reasons["suppressed"] == 1


def test_the_watch_moves_on_every_commit_and_on_a_new_file(tmp_path: Path) -> None:
    db = tmp_path / "ledger.sqlite3"
    watch = LedgerWatch(db)
    assert watch.version() is None and not db.exists()  # looking creates no ledger
    with Ledger.open(db) as led:
        led.suppress("a@example.jp")
    first = watch.version()
    assert first is not None and watch.version() == first == watch.version()
    cli(db, "suppress", "b@example.jp")
    second = watch.version()
    assert second != first and watch.version() == second
    with Ledger.open(db) as led:  # this process, another connection: a change too
        led.unsuppress("b@example.jp")
    third = watch.version()
    assert third not in (first, second)
    db.unlink()
    for extra in ("-wal", "-shm"):
        Path(f"{db}{extra}").unlink(missing_ok=True)
    assert watch.version() is None
    with Ledger.open(db) as led:  # a new file in its place: never the old file's version
        led.suppress("c@example.jp")
    assert watch.version() not in (None, first, second, third)
    watch.close()


def test_the_list_is_read_again_only_when_the_ledger_changed(tmp_path: Path) -> None:
    db = tmp_path / "ledger.sqlite3"
    listed = SuppressionList(Settings(plan="プラン300", db=db))
    assert listed.addresses() == frozenset() and not db.exists()
    cli(db, "suppress", "Someone@Example.jp")
    got = listed.addresses()
    assert got == {"someone@example.jp"} and listed.addresses() is got
    cli(db, "suppress", "other@example.jp")
    assert listed.addresses() == {"someone@example.jp", "other@example.jp"}
    assert SuppressionList(Settings(plan="プラン300")).addresses() == frozenset()  # no ledger
    listed.close()


def _boxes(wizard: Wizard) -> list[widgets.Checkbox]:
    return [w for w in wizard.table.grid.children if isinstance(w, widgets.Checkbox)]


def _named(box: widgets.Checkbox) -> list[str]:
    return [c for c in box._dom_classes if c.startswith("bcartnb-check-")]


def test_pages_reuse_their_widgets_and_name_the_members_they_show(wizard: Wizard) -> None:
    table = wizard.table
    first = list(table.grid.children)
    assert [_named(b) for b in _boxes(wizard)] == [
        [f"bcartnb-check-{m}"] for m in range(1001, 1021)
    ]
    table.next.click()
    assert all(a is b for a, b in zip(first, table.grid.children, strict=True))
    assert [_named(b) for b in _boxes(wizard)] == [
        [f"bcartnb-check-{m}"] for m in range(1021, 1041)
    ]
    assert [r[0] for r in table.shown_cells()] == [str(m) for m in range(1021, 1041)]
    _boxes(wizard)[2].value = True  # the user ticks the third row of page 2
    assert table.checked == (1023,)
    table.next.click()  # the last page: 5 rows, the other boxes leave the grid
    # the header, the page's cells (one widget), a box a row
    assert len(_boxes(wizard)) == 5 and len(table.grid.children) == 2 + 5
    assert len(table.shown_cells()) == 5
    assert [_named(b) for b in _boxes(wizard)] == [
        [f"bcartnb-check-{m}"] for m in range(1041, 1046)
    ]
    assert [b.value for b in _boxes(wizard)] == [False] * 5
    spare = first[2 + 7]  # a box off the page: a late click on it ticks nobody
    assert isinstance(spare, widgets.Checkbox)
    spare.value = not spare.value
    assert table.checked == (1023,)
    table.prev.click()
    assert [b.value for b in _boxes(wizard)][2] is True  # the tick is shown where it was
    assert '<div class="bcartnb-cell bcartnb-head">会社名</div>' in table.header.value

    wizard.filter_step.pref.value = ("東京都",)
    wizard.filter_step.apply.click()  # a new result: ticks cleared, rows renamed
    assert table.checked == () and table.page == 0
    shown = [m for m in range(1001, 1046) if m % 2][:20]
    assert [_named(b) for b in _boxes(wizard)] == [[f"bcartnb-check-{m}"] for m in shown]
    cells = [c for r in table.shown_cells() for c in r]
    assert "テスト商事1002" not in cells and "テスト商事1003" in cells
