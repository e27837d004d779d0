"""Run a call that must end, without asserting how fast: speed is measured in bench/.

A test of "this stops" (a render limit, a refusal before a huge value is built, a linear
pattern) needs a bound only to fail instead of hanging the suite. The bound is generous, for
a loaded machine; the call runs in a daemon thread so a runaway one is left behind, not
waited for.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

__all__ = ["GENEROUS", "finishes"]

T = TypeVar("T")

GENEROUS = 120.0  # seconds: a call that ends in well under one on an idle machine


def finishes(call: Callable[[], T], timeout: float = GENEROUS) -> T:
    """``call()``'s result (or its exception, re-raised), failing if it is still running."""
    outcome: list[tuple[bool, object]] = []

    def run() -> None:
        try:
            outcome.append((True, call()))
        except BaseException as err:  # handed to the test's thread
            outcome.append((False, err))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout)
    assert outcome, f"still running after {timeout:g} s: it does not stop"
    ok, value = outcome[0]
    if not ok:
        assert isinstance(value, BaseException)
        raise value
    return value  # type: ignore[return-value]
