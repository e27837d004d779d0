from __future__ import annotations

import subprocess
import sys
from pathlib import Path

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


def test_every_error_line_starts_in_japanese(tmp_path: Path) -> None:
    """The heading each error class names, before the exact English detail (issue 14, 8)."""
    (tmp_path / "c.toml").write_text('members = "m.csv"\nsubject = "s"\n', encoding="utf-8")
    cases = [
        (["run", str(tmp_path / "c.toml")], "設定のエラー"),  # no body
        (["members", str(tmp_path / "missing.csv")], "会員ファイルのエラー"),
        (["run", str(tmp_path / "nothing.toml")], "設定のエラー"),
    ]
    for args, heading in cases:
        out = subprocess.run(
            [sys.executable, "-m", "bcartnb", *args],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            timeout=60,
        )
        assert out.returncode == 2, out.stderr
        assert out.stderr.startswith(f"bcartnb: error: {heading}"), out.stderr
        assert out.stderr.count("\n") == 1
