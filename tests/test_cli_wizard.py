"""``bcartnb wizard`` (issue 23, item 3): the wizard opens from a copy in the shop folder, never
from the tracked notebook, and JupyterLab is started on that copy (``--allow-root`` as root).

Real subprocesses of the CLI, a real JupyterLab for the start, the copy's own cells executed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import nbformat
import pytest
from extras import missing
from jupyter_runtime import served_port
from test_cli_run import bcartnb

from bcartnb.cli.wizard import WIZARD_NOTEBOOK, tracked_wizard
from bcartnb.widgets import Wizard

REPO = Path(__file__).resolve().parent.parent


def clean_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BCARTNB_")}
    env["HOME"] = str(tmp_path / "home")  # no per-user ledger of the developer's
    return env


def make_shop(tmp_path: Path) -> Path:
    shop = tmp_path / "myshop"
    (shop / "templates").mkdir(parents=True)
    (shop / "bcartnb.toml").write_text('plan = "プラン10"\n', encoding="utf-8")
    return shop


def code_of(path: Path) -> list[str]:
    nb = nbformat.read(path, as_version=4)
    return [c.source for c in nb.cells if c.cell_type == "code"]


def test_copies_the_notebook_into_the_shop_once_and_prints_the_start(tmp_path: Path) -> None:
    shop = make_shop(tmp_path)
    tracked_before = tracked_wizard().read_bytes()
    env = clean_env(tmp_path)
    sub = shop / "templates"  # found upward, as every face finds the shop

    done = bcartnb("wizard", "--no-start", env=env, cwd=sub)
    assert done.returncode == 0, done.stderr
    copy = shop / WIZARD_NOTEBOOK
    assert f"ウィザードのノートブックを用意しました: {copy}" in done.stdout
    start = f"JupyterLab の起動: cd {shop} && jupyter lab {WIZARD_NOTEBOOK}"
    assert start in done.stdout, done.stdout
    assert ("--allow-root" in done.stdout) == (os.geteuid() == 0)
    nbformat.validate(nbformat.read(copy, as_version=4))
    tracked, copied = code_of(tracked_wizard()), code_of(copy)
    assert copied[1:] == tracked[1:]
    assert "members_path = None  # the B-Cart member CSV" in copied[0]  # picked in the wizard
    assert "../data/demo_members.csv" not in copied[0]
    assert nbformat.read(copy, as_version=4).cells[0].source.startswith("## はじめかた")

    # the marketer's copy is theirs: a second run opens it as it is
    copy.write_text(copy.read_text("utf-8").replace("はじめかた", "うちの手順"), "utf-8")
    kept = copy.read_bytes()
    again = bcartnb(
        "wizard", "--no-start", "--members", str(REPO / "data" / "x.csv"), env=env, cwd=shop
    )
    assert again.returncode == 2  # a member file that is not there is said, nothing written
    assert "会員ファイル" in again.stderr
    again = bcartnb("wizard", "--no-start", env=env, cwd=shop)
    assert again.returncode == 0, again.stderr
    assert "前回のまま" in again.stdout
    assert copy.read_bytes() == kept
    assert tracked_wizard().read_bytes() == tracked_before  # never the tracked notebook
    assert sorted(p.name for p in shop.iterdir()) == ["bcartnb.toml", WIZARD_NOTEBOOK, "templates"]


def test_the_copy_names_the_members_given_and_builds_the_wizard_in_the_shop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shop = make_shop(tmp_path)
    members = tmp_path / "会員 'one\".csv"  # a space, quotes and Japanese survive the copy
    members.write_bytes((REPO / "data" / "demo_members.csv").read_bytes())
    done = bcartnb(
        "wizard", "--no-start", "--members", str(members), env=clean_env(tmp_path), cwd=shop
    )
    assert done.returncode == 0, done.stderr

    monkeypatch.chdir(shop)  # the kernel runs in the notebook's folder
    scope: dict[str, object] = {}
    for source in code_of(shop / WIZARD_NOTEBOOK):
        exec(compile(source, WIZARD_NOTEBOOK, "exec"), scope)
    assert scope["members_path"] == str(members)
    wizard = scope["wizard"]
    assert isinstance(wizard, Wizard)
    assert wizard.settings.source == shop / "bcartnb.toml"
    assert wizard.table.result_count.value == f"検索結果: {len(wizard.members):,}件"


def test_twice_at_once_makes_one_copy(tmp_path: Path) -> None:
    shop = make_shop(tmp_path)
    env = clean_env(tmp_path)
    with ThreadPoolExecutor(2) as pool:
        runs = list(pool.map(lambda _: bcartnb("wizard", "--no-start", env=env, cwd=shop), [1, 2]))
    assert [r.returncode for r in runs] == [0, 0], [r.stderr for r in runs]
    assert sum("用意しました" in r.stdout for r in runs) == 1
    json.loads((shop / WIZARD_NOTEBOOK).read_text("utf-8"))
    assert [p.name for p in shop.iterdir() if p.name.startswith(".wizard-")] == []


def test_outside_a_shop_it_says_how_to_make_one(tmp_path: Path) -> None:
    (tmp_path / "nowhere").mkdir()
    done = bcartnb("wizard", "--no-start", env=clean_env(tmp_path), cwd=tmp_path / "nowhere")
    assert done.returncode == 2
    assert "お店のフォルダーが見つかりません" in done.stderr and "bcartnb init" in done.stderr
    assert not (tmp_path / "nowhere" / WIZARD_NOTEBOOK).exists()


@pytest.mark.timeout(180)
def test_starts_jupyterlab_on_the_copy(tmp_path: Path) -> None:
    try:
        import jupyterlab  # noqa: F401
    except ImportError:
        missing("the Python package jupyterlab", "pip install -e '.[browser]' (make lab)")
    shop = make_shop(tmp_path)
    env = clean_env(tmp_path)
    for name in ("runtime", "config"):
        env[f"JUPYTER_{name.upper()}_DIR"] = str(tmp_path / "jupyter" / name)
    token = "t" * 32
    # port 0: the server takes a free one as it binds and names it in its runtime file
    extra = ["--no-browser", "--ServerApp.ip=127.0.0.1", "--ServerApp.port=0"]
    extra += ["--ServerApp.port_retries=0", f"--IdentityProvider.token={token}"]
    log = (tmp_path / "lab.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "bcartnb", "wizard", "--", *extra],
        cwd=shop,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 120
        port = 0
        while True:
            assert proc.poll() is None, (tmp_path / "lab.log").read_text("utf-8", "replace")
            port = port or served_port(tmp_path / "jupyter" / "runtime")
            url = f"http://127.0.0.1:{port}/api/contents/{WIZARD_NOTEBOOK}?content=0&token={token}"
            try:
                if port:
                    with urllib.request.urlopen(url, timeout=2) as resp:
                        found = json.load(resp)
                    break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            assert time.monotonic() < deadline, (tmp_path / "lab.log").read_text("utf-8")
            time.sleep(0.3)
        assert found["path"] == WIZARD_NOTEBOOK  # the server's root is the shop folder
        assert (shop / WIZARD_NOTEBOOK).is_file()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()
    said = (tmp_path / "lab.log").read_text("utf-8", "replace")
    assert "Run → Run All Cells" in said
