"""A quick action (絞込, 確認画面へ, a count) freezes its controls only if it runs long.

Freezing sends the browser two messages per control (disabled, then back), most of what a
quick click made the browser apply. So :meth:`Status.run` with ``quick=True`` freezes, and says
it is busy, only once the action has run :data:`QUICK` seconds, from a timer thread. The tests
drive real widgets; a long action is one that waits until it sees itself frozen (never a
sleep), so each case is deterministic on a fast machine and on a loaded one.
"""

from __future__ import annotations

import threading

import ipywidgets as widgets
import pytest

from bcartnb.exceptions import InputError
from bcartnb.widgets._common import QUICK, Status

WAIT = 60.0


def watched(*controls: widgets.Widget) -> list[tuple[str, bool]]:
    seen: list[tuple[str, bool]] = []
    for c in controls:
        c.observe(lambda ch, c=c: seen.append((c.description, bool(ch["new"]))), names="disabled")
    return seen


def test_a_quick_action_sends_no_freezing_and_no_busy_line() -> None:
    status = Status()
    status.info("検索結果: 10件")
    a, b = widgets.Button(description="a"), widgets.Button(description="b", disabled=True)
    seen = watched(a, b)
    lines: list[str] = []
    status.widget.observe(lambda ch: lines.append(ch["new"]), names="value")
    assert status.run(lambda: 42, [a, b], busy="絞込中です…", quick=True) == 42
    assert seen == []
    assert all("絞込中" not in line for line in lines)
    assert status.value == ""  # cleared for the caller's own line
    assert not a.disabled and b.disabled


def test_the_same_action_not_quick_freezes_at_once() -> None:
    status = Status()
    a = widgets.Button(description="a")
    seen = watched(a)
    status.run(lambda: None, [a], busy="送信中です…")
    assert seen == [("a", True), ("a", False)]


def test_a_quick_action_that_runs_long_is_frozen_then_given_back() -> None:
    status = Status()
    a, b = widgets.Button(description="a"), widgets.Button(description="b", disabled=True)
    frozen = threading.Event()
    a.observe(lambda ch: ch["new"] and frozen.set(), names="disabled")
    busy_seen: list[str] = []

    def long_action() -> str:
        assert frozen.wait(WAIT), f"not frozen after {QUICK} s"
        busy_seen.append(status.value)
        return "done"

    assert status.run(long_action, [a, b], busy="絞込中です…", quick=True) == "done"
    assert "絞込中です…" in busy_seen[0]
    assert not a.disabled and b.disabled  # each given its own state back
    assert status.value == ""


def test_an_error_after_the_freeze_is_said_and_not_covered_by_the_busy_line() -> None:
    status = Status()
    a = widgets.Button(description="a")
    frozen = threading.Event()
    a.observe(lambda ch: ch["new"] and frozen.set(), names="disabled")

    def failing() -> None:
        assert frozen.wait(WAIT)
        raise InputError("bad filter", ja="絞込条件が正しくありません。")

    assert status.run(failing, [a], busy="絞込中です…", quick=True) is None
    assert status.kind == "error" and "絞込条件が正しくありません。" in status.value
    assert "絞込中" not in status.value
    assert not a.disabled


@pytest.mark.parametrize("runs", [200])
def test_quick_actions_one_after_another_never_leave_a_control_frozen(runs: int) -> None:
    """The timer and the end of the block are exclusive: however they interleave (actions of
    every length around QUICK), no control stays disabled and the last line is the caller's."""
    status = Status()
    a = widgets.Button(description="a")
    for i in range(runs):
        status.run(lambda: None, [a], quick=True)
        if i % 50 == 0:  # now and then one that is surely frozen first
            frozen = threading.Event()

            def on_disabled(change: dict[str, object], frozen: threading.Event = frozen) -> None:
                if change["new"]:
                    frozen.set()

            a.observe(on_disabled, names="disabled")
            status.run(lambda frozen=frozen: frozen.wait(WAIT), [a], quick=True)
            a.unobserve(on_disabled, names="disabled")
        assert not a.disabled
    assert status.value == ""
