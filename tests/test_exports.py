"""The public names: sorted, each one real, and documented ones exported (httpx's habit)."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import pytest

import bcartnb


def isort_key(name: str) -> tuple[int, str]:
    """ruff's RUF022 order: CONSTANTS, then Classes, then functions, each alphabetical."""
    kind = 0 if name.isupper() else 1 if name[:1].isupper() else 2
    return kind, name


def test_all_is_sorted_and_resolves() -> None:
    assert bcartnb.__all__ == sorted(bcartnb.__all__)
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
    ],
)
def test_each_module_all_is_sorted_and_real(module: str) -> None:
    mod = importlib.import_module(f"bcartnb.{module}")
    names = list(mod.__all__)
    assert names == sorted(names, key=isort_key), module
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
