"""Every shell block of README.md and of the Japanese guide README.ja.md runs as written, on a
fresh copy of the repository.

A fresh copy (the tracked and new files, not the ignored ones: no ledger, no reports) with this
checkout's ``.venv`` linked in, so nothing is installed again; ``PYTHONPATH`` makes the copy's
package the one imported. ``console`` blocks are commands after ``$`` with the output they
show, which must be what the command prints (blank lines at the end aside). A block that
cannot run in a test says why in the README itself, in a ``<!-- not run by tests: why -->``
line right before it; this test skips exactly those and reports that reason.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"
#: The marketer's guide, in Japanese: its blocks are run like the README's.
GUIDE = REPO / "README.ja.md"
SHELLS = ("sh", "bash", "shell", "console")
_FENCE = re.compile(r"^```(\w*)\n(.*?)^```$", re.M | re.S)
_NOT_RUN = re.compile(r"<!-- not run by tests: (.+?) -->\n\Z")
_MARK = "@@readme-command-{}@@"


@dataclass(frozen=True)
class Block:
    line: int
    lang: str
    body: str
    not_run: str | None
    file: str = "README.md"


def shell_blocks(text: str) -> list[Block]:
    blocks = []
    for m in _FENCE.finditer(text):
        before = text[: m.start()]
        reason = _NOT_RUN.search(before)
        if m.group(1) not in SHELLS:
            assert reason is None, f"README line {before.count(chr(10)) + 1}: not a shell block"
            continue
        line = before.count("\n") + 1
        blocks.append(Block(line, m.group(1), m.group(2), reason.group(1) if reason else None))
    return blocks


BLOCKS = shell_blocks(README.read_text(encoding="utf-8")) + [
    dataclasses.replace(b, file=GUIDE.name) for b in shell_blocks(GUIDE.read_text(encoding="utf-8"))
]


def console_commands(body: str) -> list[tuple[str, list[str]]]:
    """``$ command`` (continued by a trailing backslash) and the lines it shows."""
    out: list[tuple[str, list[str]]] = []
    lines = body.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        assert line.startswith("$ "), f"output before any command: {line!r}"
        command = line[2:]
        while command.endswith("\\"):
            i += 1
            command += "\n" + lines[i]
        i += 1
        shown = []
        while i < len(lines) and not lines[i].startswith("$ "):
            shown.append(lines[i])
            i += 1
        out.append((command, shown))
    return out


def fresh_copy(dest: Path) -> Path:
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        src = REPO / name
        if src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)
    (dest / ".venv").symlink_to(REPO / ".venv")
    return dest


def run_bash(script: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BCARTNB_")}
    env["PATH"] = f"{cwd / '.venv' / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = str(cwd)
    return subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_every_shell_block_is_run_or_says_why() -> None:
    assert len(BLOCKS) >= 5
    assert any(b.not_run is None for b in BLOCKS) and any(b.lang == "console" for b in BLOCKS)
    for block in BLOCKS:
        assert block.not_run is None or len(block.not_run) > 10, block


def _id(block: Block) -> str:
    return ("" if block.file == README.name else "ja-") + f"line{block.line}-{block.lang}"


@pytest.mark.parametrize("block", BLOCKS, ids=[_id(b) for b in BLOCKS])
def test_readme_block_runs_as_written(block: Block, tmp_path: Path) -> None:
    if block.not_run is not None:
        pytest.skip(f"{block.file} line {block.line}: not run by tests: {block.not_run}")
    copy = fresh_copy(tmp_path / "repo")
    if block.lang != "console":
        done = run_bash(block.body, copy)
        where = f"{block.file} line {block.line}"
        assert done.returncode == 0, f"{where}:\n{done.stdout}\n{done.stderr}"
        return
    commands = console_commands(block.body)
    script = "\n".join(f"echo {_MARK.format(i)}\n{cmd}" for i, (cmd, _) in enumerate(commands))
    done = run_bash(script, copy)
    assert done.returncode == 0, f"{block.file} line {block.line}:\n{done.stdout}\n{done.stderr}"
    printed = re.split(r"^@@readme-command-\d+@@\n", done.stdout, flags=re.M)[1:]
    assert len(printed) == len(commands)
    for (command, shown), got in zip(commands, printed, strict=True):
        if shown:
            want = "\n".join(line.rstrip() for line in shown).rstrip("\n")
            have = "\n".join(line.rstrip() for line in got.splitlines()).rstrip("\n")
            assert have == want, f"{block.file} line {block.line}: `{command}` printed:\n{got}"


def test_console_blocks_parse_commands_and_their_output() -> None:
    body = "$ echo a \\\n  b\na b\n\n$ true\n"
    assert console_commands(body) == [("echo a \\\n  b", ["a b", ""]), ("true", [])]
    text = (
        "x\n<!-- not run by tests: it needs a server -->\n```sh\nserve\n```\n```toml\na = 1\n```\n"
    )
    assert shell_blocks(text) == [Block(3, "sh", "serve\n", "it needs a server")]
