"""``bcartnb wizard``: the wizard notebook, copied into the shop folder, opened in JupyterLab.

The repository's ``notebooks/campaign_wizard.ipynb`` is never the one a marketer runs:
JupyterLab saves every run into the notebook it opened (outputs, widget views), which made
the tracked file dirty and showed "model not found" the next day. The command copies it into
the shop folder once (a copy there is kept as it is: it is the marketer's), with the member
file given or none (then it is picked in the wizard), and starts JupyterLab on the copy in
the shop folder, where the kernel finds ``bcartnb.toml``. As root JupyterLab refuses to start
unless told, so ``--allow-root`` is passed then.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shlex
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any, Final

from bcartnb.cli.common import Command, arg, switch
from bcartnb.cli.output import say
from bcartnb.exceptions import MembersFileError, OrdersFileError, SettingsError

__all__ = ["WIZARD", "WIZARD_NOTEBOOK", "copy_wizard", "lab_command", "tracked_wizard"]

#: The notebook's name, in the repository's notebooks/ and in the shop folder.
WIZARD_NOTEBOOK: Final = "campaign_wizard.ipynb"
_MEMBERS_LINE: Final = re.compile(r"^members_path = [^#\n]*?(?P<comment>  #[^\n]*)?$", re.M)
_ORDERS_LINE: Final = re.compile(r"^orders_path = [^#\n]*?(?P<comment>  #[^\n]*)?$", re.M)


def tracked_wizard() -> Path:
    """The repository's wizard notebook (the package sits beside ``notebooks/``)."""
    return Path(__file__).resolve().parents[2] / "notebooks" / WIZARD_NOTEBOOK


def _with_members(notebook: dict[str, Any], members: Path | None) -> dict[str, Any]:
    """The notebook with its ``parameters`` cell naming ``members`` (None: picked in the wizard)."""
    return _with_line(notebook, "members_path", _MEMBERS_LINE, members)


def _with_line(
    notebook: dict[str, Any], name: str, pattern: re.Pattern[str], path: Path | None
) -> dict[str, Any]:
    """The notebook with the ``parameters`` cell's ``name = …`` line set to ``path``."""
    value = "None" if path is None else repr(str(path))

    def line(m: re.Match[str]) -> str:
        return f"{name} = {value}{m.group('comment') or ''}"

    for cell in notebook["cells"]:
        if "parameters" not in cell.get("metadata", {}).get("tags", []):
            continue
        new, n = pattern.subn(line, "".join(cell["source"]))
        if n != 1:
            break
        cell["source"] = new.splitlines(keepends=True)
        return notebook
    raise SettingsError(
        f"{tracked_wizard()}: no '{name} = …' line in a parameters cell",
        ja=f"ウィザードのノートブックに {name} の行が見つかりません。",
    )


def copy_wizard(
    shop: Path, members: Path | None = None, orders: Path | None = None
) -> tuple[Path, bool]:
    """The wizard notebook in ``shop``: copied now (True) or the marketer's copy kept (False).

    Never overwritten, even by two commands at once: the copy is linked into place only
    where no file of that name exists.
    """
    dest = shop / WIZARD_NOTEBOOK
    if dest.exists():
        return dest, False
    notebook = _with_members(json.loads(tracked_wizard().read_text("utf-8")), members)
    if orders is not None:  # 購入履歴 in the 絞込オプション
        notebook = _with_line(notebook, "orders_path", _ORDERS_LINE, orders)
    text = json.dumps(notebook, ensure_ascii=False, indent=1) + "\n"
    fd, tmp = tempfile.mkstemp(prefix=".wizard-", suffix=".ipynb", dir=shop)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        try:
            os.link(tmp, dest)
        except FileExistsError:
            return dest, False
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    return dest, True


def lab_command(extra: list[str]) -> list[str]:
    """``jupyter lab`` on the copy; ``--allow-root`` as root, where Jupyter refuses without."""
    found = Path(sys.executable).with_name("jupyter-lab")
    jupyter = str(found) if found.is_file() else shutil.which("jupyter-lab")
    if jupyter is None:
        raise SettingsError(
            "jupyter-lab not found: pip install -e '.[browser]'",
            ja="JupyterLab がインストールされていません。リポジトリで make lab を実行するか、"
            "pip install -e '.[browser]' でインストールしてください。",
        )
    root = ["--allow-root"] if os.geteuid() == 0 and "--allow-root" not in extra else []
    return [jupyter, WIZARD_NOTEBOOK, *root, *extra]


def _cmd_wizard(args: argparse.Namespace) -> int:
    from bcartnb.settings import find_shop

    found = find_shop()
    if found is None:
        raise SettingsError(
            f"no bcartnb.toml in {Path.cwd()} or above",
            ja="お店のフォルダーが見つかりません。bcartnb init で作り、その中で実行してください。",
        )
    shop = found.parent
    members = None
    if args.members is not None:
        members = Path(args.members).expanduser().resolve()
        if not members.is_file():
            raise MembersFileError(f"{args.members}: not found", ja="会員ファイルがありません。")
    orders = None
    if args.orders is not None:
        orders = Path(args.orders).expanduser().resolve()
        if not orders.is_file():
            raise OrdersFileError(
                f"{args.orders}: not found", ja=f"受注ファイル {args.orders} がありません。"
            )
    dest, made = copy_wizard(shop, members, orders)
    if made:
        say(f"ウィザードのノートブックを用意しました: {dest}")
    else:
        say(f"お店のフォルダーのノートブックを開きます（前回のまま）: {dest}")
        if orders is not None:
            say(f"受注ファイルは、ノートブックの orders_path に書いてください: {orders}")
    extra = list(args.jupyter_args)
    if extra[:1] == ["--"]:
        extra = extra[1:]
    command = lab_command(extra)
    shown = f"cd {shlex.quote(str(shop))} && {shlex.join(['jupyter', 'lab', *command[1:]])}"
    if args.no_start:
        say(f"JupyterLab の起動: {shown}")
        return 0
    say(f"JupyterLab を起動します: {shown}")
    say("ブラウザーでノートブックが開いたら、メニューの Run → Run All Cells で始めます。")
    say("Ctrl-C で JupyterLab を停止します。", flush=True)
    sys.stderr.flush()
    os.chdir(shop)
    os.execv(command[0], command)  # JupyterLab takes the terminal (and Ctrl-C) from here


WIZARD = Command(
    "wizard",
    help="ウィザードのノートブックをお店のフォルダーにコピーして JupyterLab で開く",
    description="リポジトリの notebooks/campaign_wizard.ipynb をお店のフォルダーにコピーし"
    "（すでにあればそのまま使います）、JupyterLab をそのコピーで起動します。"
    "root で実行したときは --allow-root を付けます。",
    args=(
        arg(
            "--members",
            help="コピーするときに会員ファイルを指定します（既定: ウィザードの中で選びます）",
        ),
        arg(
            "--orders",
            help="コピーするときに受注ファイルを指定します（絞込オプションの購入履歴で絞り込めます）",
        ),
        switch("--no-start", "コピーだけして、JupyterLab を起動するコマンドを表示します"),
        arg(
            "jupyter_args",
            nargs=argparse.REMAINDER,
            metavar="-- JupyterLabの引数",
            help="JupyterLab にそのまま渡す引数（例: -- --port 8890 --no-browser）",
        ),
    ),
    run=_cmd_wizard,
)
