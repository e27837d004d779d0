from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

import pytest

from bcartnb.cli import build_parser, main


def test_every_contract_subcommand_exists() -> None:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    assert set(sub.choices) >= {  # type: ignore[arg-type]
        "members",
        "quota",
        "run",
        "resume",
        "cancel",
        "campaigns",
        "sink",
    }


def test_bad_usage_is_one_line_exit_2(capsys) -> None:  # type: ignore[no-untyped-def]
    assert main(["frobnicate"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith(
        "bcartnb: error: 使い方のエラー: 引数 コマンド: 'frobnicate' は選べません"
    )
    assert "'members'" in err and "`bcartnb --help`" in err


def _commands(parser: argparse.ArgumentParser, prefix: str = "") -> list[str]:
    """Every command and subcommand the parser has, read from it: a new command cannot be
    left out of the help test below."""
    out: list[str] = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                out += [f"{prefix}{name}", *_commands(child, f"{prefix}{name} ")]
    return out


SUBCOMMANDS = _commands(build_parser())


def test_the_help_test_sees_every_command() -> None:
    assert {"cancel", "bounces confirm", "bounces unverified", "bcart pull"} <= set(SUBCOMMANDS)


ARGPARSE_ENGLISH = [
    "usage:",
    "positional arguments",
    "options:",
    "optional arguments",
    "show this help message",
    "show program's version",
]


@pytest.mark.parametrize("command", [[], *(c.split() for c in SUBCOMMANDS)])
def test_every_help_is_japanese(command: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    """argparse's own words too (issue 14, 8): nothing a shop's staff has to read in English."""
    with pytest.raises(SystemExit) as exc:
        main([*command, "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"使い方: bcartnb {' '.join(command)}".rstrip())
    assert "この説明を表示して終了します" in out and "オプション:" in out
    for words in ARGPARSE_ENGLISH:
        assert words not in out
    # every option's and argument's help line is Japanese: at least one kana or kanji each
    for line in out.splitlines():
        if line.lstrip().startswith("-") and "  " in line.strip():
            assert re.search(r"[\u3040-\u30ff\u4e00-\u9fff]", line), line


#: Placeholders that are a format, not a word: the same in every language.
FORMATS = {"JSON", "YYYY-MM"}


def _parsers(
    parser: argparse.ArgumentParser, name: str = "bcartnb"
) -> list[tuple[str, argparse.ArgumentParser]]:
    out = [(name, parser)]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child_name, child in action.choices.items():
                out += _parsers(child, f"{name} {child_name}")
    return out


def test_every_value_placeholder_is_japanese(capsys: pytest.CaptureFixture[str]) -> None:
    """``--help`` shows キャンペーンID, メールアドレス, 会員ファイル.csv where argparse would show
    ``campaign_id``, ``ADDRESS`` or ``MEMBERS.csv`` (issue 23, 11): every argument that takes a
    value, in every command, has a Japanese placeholder or a format (JSON, YYYY-MM)."""
    english = []
    seen = 0
    for name, parser in _parsers(build_parser()):
        for action in parser._actions:
            if action.nargs == 0 or action.choices is not None:
                continue  # a switch, a subcommand, or a list of codes shown as they are
            seen += 1
            shown = parser._get_formatter()._metavar_formatter(action, action.dest.upper())(1)[0]
            if shown not in FORMATS and not re.search(r"[\u3040-\u30ff\u4e00-\u9fff]", shown):
                english.append(f"{name} {'/'.join(action.option_strings) or action.dest}: {shown}")
    assert seen > 30
    assert english == []
    with pytest.raises(SystemExit):
        main(["resume", "--help"])
    assert "使い方: bcartnb resume [-h]" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["suppress", "--help"])
    usage = capsys.readouterr().out.split("\n\n")[0]
    assert usage.rstrip().endswith("メールアドレス") and "address" not in usage.lower()


def test_one_placeholder_for_one_thing() -> None:
    """The same argument shows the same word in every command that takes it."""
    shown: dict[str, set[str]] = {}
    for _, parser in _parsers(build_parser()):
        for action in parser._actions:
            if isinstance(action.metavar, str):
                shown.setdefault(action.dest, set()).add(action.metavar)
    assert shown["campaign_id"] == {"キャンペーンID"}
    assert shown["members"] == {"会員ファイル.csv"}
    assert {d: m for d, m in shown.items() if len(m) > 1} == {}


def test_help_lists_exit_codes_for_a_scheduler(capsys: pytest.CaptureFixture[str]) -> None:
    for command in ("run", "resume"):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        out = " ".join(capsys.readouterr().out.split())
        for code in (
            "0 完了",
            "2 入力か設定のエラー",
            "3 メール配信上限数",
            "4 送信途中",
            "5 完了",
            "130 中断",
        ):
            assert code in out, (command, code)


@pytest.mark.parametrize(
    ("args", "first"),
    [
        (["run"], "使い方のエラー: 次の引数が必要です: キャンペーンファイル"),
        (["members", "m.csv", "--bogus"], "使い方のエラー: 知らない引数です: --bogus"),
        (
            ["sink", "--port", "x"],
            "使い方のエラー: 引数 --port: 'x' は int の値として正しくありません",
        ),
        (
            ["run", "c.toml", "--send", "--test-to", "a@b.jp"],
            "使い方のエラー: 引数 --test-to: 引数 --send と一緒には使えません",
        ),
        (["quota", "--month"], "使い方のエラー: 引数 --month: 値をひとつ指定してください"),
    ],
)
def test_usage_errors_are_japanese_first(
    args: list[str], first: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"bcartnb: error: {first}"), err
    assert err.count("\n") == 1


def test_argparse_speaks_english_again_after_main(capsys: pytest.CaptureFixture[str]) -> None:
    """The Japanese words are ours alone: another parser in the same process keeps its own."""
    main(["frobnicate"])
    capsys.readouterr()
    other = argparse.ArgumentParser(prog="other")
    assert "usage: other" in other.format_help() and "options:" in other.format_help()
    assert argparse._("usage: ") == "usage: "  # type: ignore[attr-defined]


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


def test_the_demos_help_is_japanese_too() -> None:
    """``python -m bcartnb.demo`` has its own small parser: the same Japanese words."""
    out = subprocess.run(
        [sys.executable, "-m", "bcartnb.demo", "--help"],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout
    assert out.startswith("使い方: python -m bcartnb.demo [-h] [--out フォルダー]")
    for words in ARGPARSE_ENGLISH:
        assert words not in out
