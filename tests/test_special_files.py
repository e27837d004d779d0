"""Every path a user gives is refused unless it is a regular file: real `bcartnb` processes.

A FIFO blocks the open (or the read) until someone writes to it, ``/dev/zero`` reads forever
and a socket cannot be read at all (issue 21): each face that reads a user's file must say
so in one Japanese line naming the path, at once. In a Maildir such an entry is skipped and
counted, never fatal: the rest of the mailbox is still scanned.
"""

from __future__ import annotations

import json
import mailbox
import os
import socket
import stat
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from smtp_servers import TestServer
from test_cli_run import env_for, setup_campaign

Server = Callable[..., TestServer]
BOUNCES = Path(__file__).parent / "data" / "bounces"


def run(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    # a hang is the failure this file is about: it must end the test, not the suite
    return subprocess.run(
        [sys.executable, "-m", "bcartnb", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=60,
    )


@pytest.fixture
def shop(tmp_path: Path, smtp_server: Server) -> Iterator[tuple[Path, dict[str, str]]]:
    setup_campaign(tmp_path, 3)
    yield tmp_path, env_for(tmp_path, smtp_server())


def fifo(path: Path) -> Path:
    if path.exists():
        path.unlink()
    os.mkfifo(path)
    return path


def refused(out: subprocess.CompletedProcess[str], path: Path, kind: str) -> None:
    assert out.returncode == 2, (out.stdout, out.stderr)
    assert out.stderr.startswith("bcartnb: error: ") and out.stderr.count("\n") == 1
    assert "Traceback" not in out.stderr
    assert "通常のファイルではありません" in out.stderr and kind in out.stderr
    assert path.name in out.stderr  # named as it was given (relative stays relative)


CASES = {
    # what is a FIFO, and the command that reads it
    "member CSV": ("members.csv", ["members", "members.csv"]),
    "member CSV of a campaign": ("members.csv", ["run", "campaign.toml"]),
    "snapshot": ("members.parquet", ["members", "members.parquet"]),
    "campaign file": ("other.toml", ["run", "other.toml"]),
    "segments file": ("segments.toml", ["segments"]),
    "mbox": ("bounces.mbox", ["bounces", "scan", "bounces.mbox"]),
    "export target": ("optouts.csv", ["suppressions", "--export-bcart", "optouts.csv"]),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_fifo_anywhere_a_path_is_read_is_refused_at_once(
    shop: tuple[Path, dict[str, str]], case: str
) -> None:
    folder, env = shop
    name, args = CASES[case]
    target = fifo(folder / name)
    refused(run(*args, env=env, cwd=folder), target, "FIFO")
    assert stat.S_ISFIFO(os.stat(target).st_mode)  # left as it was, never renamed over


def test_a_fifo_as_the_settings_file_or_as_dot_env_is_refused(
    shop: tuple[Path, dict[str, str]],
) -> None:
    folder, env = shop
    settings = fifo(folder / "fifo.toml")
    elsewhere = {**env, "BCARTNB_CONFIG": str(settings)}
    refused(run("quota", env=elsewhere, cwd=folder), settings, "FIFO")
    dotenv = fifo(folder / ".env")
    refused(run("quota", env=env, cwd=folder), dotenv, "FIFO")


def test_a_fifo_as_a_template_is_refused(shop: tuple[Path, dict[str, str]]) -> None:
    folder, env = shop
    (folder / "templates").mkdir()
    template = fifo(folder / "templates" / "news.txt")
    (folder / "campaign.toml").write_text(
        'members = "members.csv"\ntemplate = "news"\n', encoding="utf-8"
    )
    refused(run("run", "campaign.toml", env=env, cwd=folder), template, "FIFO")


def test_a_socket_and_a_device_are_refused(shop: tuple[Path, dict[str, str]]) -> None:
    folder, env = shop
    path = folder / "members.sock"
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(path))
        server.listen()
        refused(run("members", str(path), env=env, cwd=folder), path, "ソケット")
    refused(run("bounces", "scan", "/dev/zero", env=env, cwd=folder), Path("/dev/zero"), "デバイス")


def test_a_fifo_in_a_maildir_is_skipped_and_counted_and_the_rest_is_scanned(
    shop: tuple[Path, dict[str, str]],
) -> None:
    folder, env = shop
    box = mailbox.Maildir(folder / "Maildir", create=True)
    for sample in sorted(BOUNCES.glob("*.eml"))[:3]:
        box.add(sample.read_bytes())
    box.close()
    fifo(folder / "Maildir" / "new" / "1764900000.M1P1.host")
    fifo(folder / "Maildir" / "cur" / "1764900001.M2P2.host:2,S")
    out = run("bounces", "scan", "Maildir", "--json", env=env, cwd=folder)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert (result["scanned"], result["skipped"]) == (3, 2)
    text = run("bounces", "scan", "Maildir", env=env, cwd=folder)
    assert text.returncode == 0, text.stderr
    assert "飛ばしたもの 2 件" in text.stdout
