from __future__ import annotations

import subprocess
import sys

from bcartnb.cli import build_parser, main


def test_every_contract_subcommand_exists() -> None:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    assert set(sub.choices) >= {"members", "quota", "run", "resume", "campaigns", "sink"}  # type: ignore[arg-type]


def test_bad_usage_is_one_line_exit_2(capsys) -> None:  # type: ignore[no-untyped-def]
    try:
        main(["frobnicate"])
    except SystemExit as exc:
        assert exc.code == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "invalid choice" in err


def test_module_entry_point_runs() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "bcartnb", "--version"], capture_output=True, text=True, check=True
    )
    assert out.stdout.startswith("bcartnb ")
