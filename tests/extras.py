"""The optional tools some tests need: a clear skip where they are missing, a failure under
``make test``.

The browser tests need the ``browser`` extra (Playwright, JupyterLab) and Debian's Chromium;
the bounce-scan tests need Debian's Dovecot. Without them a developer's ``pytest`` says what
to install instead of failing with ``ModuleNotFoundError`` at collection. ``make test``
installs all of them and sets ``BCARTNB_REQUIRE_ALL=1``: there a missing tool is a failure,
so nothing is ever skipped quietly.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import NoReturn

import pytest

__all__ = ["CHROMIUM", "REQUIRE_ALL", "missing", "need_browser", "need_program"]

# Read at import (conftest imports this module first): the autouse fixture clears every
# BCARTNB_* variable before each test runs.
REQUIRE_ALL = os.environ.get("BCARTNB_REQUIRE_ALL") == "1"
CHROMIUM = Path("/usr/bin/chromium")


def missing(what: str, install: str) -> NoReturn:
    """Skip (the whole module when called at its import) naming what to install; fail under
    ``make test``."""
    message = f"{what} is not installed: {install}"
    if REQUIRE_ALL:
        pytest.fail(f"{message} (make test runs every test: BCARTNB_REQUIRE_ALL=1)", pytrace=False)
    pytest.skip(message, allow_module_level=True)


def need_browser() -> None:
    """The browser extra and Debian's Chromium (no browser is downloaded)."""
    for module in ("playwright", "jupyterlab"):
        try:
            found = importlib.util.find_spec(module) is not None
        except ImportError:
            found = False
        if not found:
            missing(f"the Python package {module}", "pip install -e '.[test,browser]' (make test)")
    if not os.access(CHROMIUM, os.X_OK):
        missing(f"Chromium ({CHROMIUM})", "sudo apt-get install chromium fonts-ipafont-gothic")


def need_program(path: str | Path, package: str) -> None:
    """A Debian program the test starts (Dovecot)."""
    if not os.access(path, os.X_OK):
        missing(f"{path}", f"sudo apt-get install {package} (make test)")
