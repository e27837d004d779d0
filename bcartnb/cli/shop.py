"""``bcartnb init``: the shop folder (settings, secrets, templates and the ledger's place),
asked for on a terminal, given by flags elsewhere."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from bcartnb.cli.common import Command, arg, switch
from bcartnb.cli.output import say

__all__ = ["INIT", "INIT_FILES", "INIT_QUESTIONS"]

#: What ``bcartnb init`` asks on a terminal, in the order asked.
INIT_QUESTIONS = {
    "plan": "プラン（ライトプラン・プラン10・プラン30・プラン50・プラン100・プラン300・自社SMTP）",
    "from": "送信元 From（例: 見本商事 <shop@example.co.jp>）",
    "admin": "管理者のアドレス（キャンペーンの控えの送り先。空欄で省略）",
    "signature": "署名（複数行。空の行で終わります。空欄で省略）",
}
#: What each file and folder of a new shop is for, as ``init`` tells it.
INIT_FILES = {
    "bcartnb.toml": "設定（プラン・送信元・管理者・署名・SMTP）",
    ".env": "パスワードなど秘密の値（名前だけ。値は空、本人だけが読めます）",
    ".gitignore": ".env・配信記録・uploads/・reports/ を git に入れません",
    "templates/": "メールテンプレート",
    "reports/": "キャンペーンのレポート",
    "uploads/": "ウィザードでアップロードした会員CSV",
}


def _cmd_init(args: argparse.Namespace) -> int:
    from pathlib import Path

    from bcartnb import shop
    from bcartnb.settings import SHOP_FILE

    folder = Path(args.folder)
    if args.adopt_ledger and (folder / SHOP_FILE).is_file():
        ledger = shop.adopt_into_shop(folder / SHOP_FILE)
        print(_adopted(ledger))
        return 0
    shop.check_free(folder)  # before any question is asked
    answers = shop.ShopAnswers(
        **{key.replace("from", "from_"): _init_answer(args, key) for key in INIT_QUESTIONS}
    )
    _tell_init(shop.init_shop(folder, answers, adopt=args.adopt_ledger))
    return 0


def _tell_init(done: Any) -> None:
    """What ``init`` made, what is left to do, and what to watch for."""
    import shlex

    from bcartnb.settings import find_shop

    print(f"お店のフォルダーを作りました: {done.folder}")
    for name, what in INIT_FILES.items():
        kept = "（もとからあるものを残しました）" if name in done.kept else ""
        print(f"  {name:<13} {what}{kept}")
    if done.adopted is not None:
        print(_adopted(done.adopted))
    elif done.legacy is None:
        print(f"配信記録ファイルを作りました: {done.ledger}")
    if done.missing:
        print(
            f"まだ書いていない設定: {'・'.join(done.missing)}（{done.settings} に書いてください）"
        )
    where = shlex.quote(str(done.folder))
    print(f"これからは、このフォルダーかその中で bcartnb を実行します: cd {where}")
    outer = find_shop(done.folder.absolute().parent)
    if outer is not None:  # a shop inside a shop: a second ledger, a second monthly cap
        say(
            f"注意: このフォルダーはお店のフォルダー {outer.parent} の中です。"
            f"中で実行した bcartnb は {done.settings} を使い、配信記録も別になります。",
            err=True,
        )
    if done.legacy is not None:
        say(
            f"注意: 以前の配信記録 {done.legacy} があります。このお店で使うには、{where} で "
            "bcartnb init --adopt-ledger を実行して取り込んでください。",
            err=True,
        )


def _adopted(ledger: Any) -> str:
    return f"以前の配信記録を取り込みました: {ledger}（元のファイルはそのまま残してあります）"


def _init_answer(args: argparse.Namespace, key: str) -> str | None:
    """A flag's value, checked; else, on a terminal without --yes, the question's answer."""
    from bcartnb import shop
    from bcartnb.exceptions import SettingsError

    given = getattr(args, key.replace("from", "from_"))
    if given is not None:
        try:
            return shop.check_answer(key, given)
        except SettingsError as err:
            raise SettingsError(f"--{key}: {err}", ja=f"--{key}: {err.ja}") from err
    if args.yes or not sys.stdin.isatty():
        return None
    while True:
        text = _ask(INIT_QUESTIONS[key], multiline=key == "signature")
        if not text.strip():
            return None
        try:
            return shop.check_answer(key, text)
        except SettingsError as err:
            say(f"  {err.ja or err}", err=True)


def _ask(question: str, *, multiline: bool) -> str:
    try:
        if not multiline:
            return input(f"{question}: ")
        print(f"{question}:")
        lines: list[str] = []
        while line := input():
            lines.append(line)
        return "\n".join(lines)
    except EOFError:
        return ""


INIT = Command(
    "init",
    help="お店のフォルダー（設定・秘密の値・テンプレート・配信記録の置き場）を作ります",
    description="お店のフォルダーを作り、説明つきの bcartnb.toml、秘密の値の .env（値は空）、"
    "templates/・reports/・uploads/ と .gitignore を書きます。端末ではプラン・送信元・"
    "管理者・署名を尋ねます（--yes なら尋ねません）。bcartnb.toml があるフォルダーには"
    "書きません。このフォルダーとその中で実行した bcartnb は、このお店の設定と配信記録を"
    "使います。",
    args=(
        arg("folder", nargs="?", default=".", help="既定: 今のフォルダー"),
        arg("--plan", default=None, help="プラン（例: プラン10、plan10）"),
        arg(
            "--from",
            dest="from_",
            default=None,
            help="送信元（例: 見本商事 <shop@example.co.jp>）",
        ),
        arg("--admin", default=None, help="管理者のアドレス（キャンペーンの控えの送り先）"),
        arg("--signature", default=None, help="署名（改行を含めてかまいません）"),
        switch("--yes", "尋ねずに作ります（指定しなかった設定は後で書きます）"),
        switch(
            "--adopt-ledger",
            "以前の版がユーザーごとに作った配信記録（~/.local/share/bcartnb/ledger.sqlite3）を"
            "このお店にコピーして使います（既にあるお店のフォルダーでも使えます）",
        ),
    ),
    run=_cmd_init,
)
