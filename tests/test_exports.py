"""The public names: each one real, and documented ones exported (httpx's habit).

That every ``__all__`` is sorted is ruff's rule RUF022 (selected through "RUF" in
pyproject.toml), checked by ``make test`` before pytest runs: not repeated here."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import pytest

import bcartnb


def test_all_resolves() -> None:
    for name in bcartnb.__all__:
        assert getattr(bcartnb, name) is not None


def test_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no_such_thing"):
        bcartnb.no_such_thing  # noqa: B018


@pytest.mark.parametrize(
    "module",
    [
        "audience",
        "bcart_api",
        "campaign",
        "compose",
        "delivery",
        "exceptions",
        "filters",
        "ledger",
        "mailcheck",
        "members",
        "quota",
        "report",
        "search",
        "segments",
        "settings",
        "shop",
        "sink",
        "templates",
        "transports",
        "widgets",
        "hygiene.bounces",
        "hygiene.export",
        "hygiene.matching",
        "hygiene.report",
        "hygiene.scan",
        "hygiene.sources",
        "mailtokens",
    ],
)
def test_each_module_all_is_real(module: str) -> None:
    mod = importlib.import_module(f"bcartnb.{module}")
    names = list(mod.__all__)
    for name in names:
        assert hasattr(mod, name), f"bcartnb.{module}.{name}"


def test_cli_start_does_not_import_pandas() -> None:
    code = "import sys, bcartnb.cli; print('pandas' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_readme_python_names_exist(repo_root: Path) -> None:
    text = (repo_root / "README.md").read_text(encoding="utf-8")
    for name in ("plan_campaign", "dry_run", "send", "resume", "load_settings", "CampaignSpec"):
        assert name in text and name in bcartnb.__all__
