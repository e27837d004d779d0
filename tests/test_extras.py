"""The guard for missing test tools (tests/extras.py): a skip that says why, a failure under
``make test`` (BCARTNB_REQUIRE_ALL=1)."""

from __future__ import annotations

import extras
import pytest


def test_a_missing_program_skips_naming_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(extras, "REQUIRE_ALL", False)
    with pytest.raises(pytest.skip.Exception, match="sudo apt-get install dovecot-imapd"):
        extras.need_program("/nonexistent/dovecot", "dovecot-imapd")


def test_under_make_test_a_missing_program_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(extras, "REQUIRE_ALL", True)
    with pytest.raises(pytest.fail.Exception, match="BCARTNB_REQUIRE_ALL=1"):
        extras.need_program("/nonexistent/dovecot", "dovecot-imapd")


def test_an_installed_program_passes() -> None:
    extras.need_program("/bin/sh", "dash")
