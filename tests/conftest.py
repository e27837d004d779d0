"""Shared fixtures: every test gets its own settings, ledger and working directory."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _isolated_env(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Iterator[None]:
    """No test reads the developer's ~/.local ledger, bcartnb.toml or .env."""
    home = tmp_path_factory.mktemp("home")
    for var in list(__import__("os").environ):
        if var.startswith("BCARTNB_"):
            monkeypatch.delenv(var)
    monkeypatch.setenv("XDG_DATA_HOME", str(home / "data"))
    monkeypatch.setenv("BCARTNB_CONFIG", str(home / "no-config.toml"))
    monkeypatch.delenv("BCARTNB_CONFIG")
    monkeypatch.chdir(home)
    yield


@pytest.fixture
def repo_root() -> Path:
    return Path(__file__).resolve().parent.parent
