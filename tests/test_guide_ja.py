"""The marketer's guide in Japanese, README.ja.md, stays true (issue 23, 11).

Its shell blocks run in tests/test_readme.py like the README's. Here: the README links it,
every picture it shows exists, the wizard's screens come in their order, every command it names
is a command, and every kind of error the tool can print is explained in it.
"""

from __future__ import annotations

import re
from pathlib import Path

from bcartnb import exceptions
from bcartnb.cli import build_parser

REPO = Path(__file__).resolve().parent.parent
GUIDE = REPO / "README.ja.md"
TEXT = GUIDE.read_text(encoding="utf-8")
KANA_OR_KANJI = re.compile(r"[\u3040-\u30ff\u4e00-\u9fff]")


def test_the_readme_links_the_guide() -> None:
    assert "(README.ja.md)" in (REPO / "README.md").read_text(encoding="utf-8")


def test_every_picture_exists_and_the_wizard_screens_come_in_order() -> None:
    pictures = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", TEXT)
    assert len(pictures) >= 10
    assert [p for p in pictures if not (REPO / p).is_file()] == []
    wizard = [p for p in pictures if "/wizard-" in p]
    assert wizard == sorted(wizard) and len(wizard) == 5


def test_every_command_it_names_is_a_command() -> None:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    commands = set(sub.choices)  # type: ignore[arg-type]
    named = set(re.findall(r"bcartnb ([a-z][a-z-]+)", TEXT))
    assert {"members", "run", "resume", "unsubscribe-server", "bounces"} <= named
    assert named - commands == set()


def test_every_kind_of_error_is_explained() -> None:
    headings = {getattr(exceptions, name).heading for name in exceptions.__all__}
    table = {line.split("|")[1].strip() for line in TEXT.splitlines() if line.startswith("| ")}
    assert headings - table == set()


def test_it_is_written_in_japanese() -> None:
    prose = re.sub(r"^```.*?^```$", "", TEXT, flags=re.M | re.S)
    lines = [line for line in prose.splitlines() if line.strip() and not line.startswith("|")]
    lines = [line for line in lines if not line.startswith(("<!--", "!["))]
    assert len(lines) > 40
    assert [line for line in lines if not KANA_OR_KANJI.search(line)] == []
