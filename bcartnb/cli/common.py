"""One way to declare a command: its name, its Japanese help, its arguments, ``--json`` and
the exit-code epilog, and the function that runs it.

A command family's module lists :class:`Command` values; :func:`bcartnb.cli.build_parser`
turns them into argparse parsers. The parser speaks Japanese: argparse's own words through
:func:`japanese_argparse`, a usage mistake as one line and exit 2 through :class:`Parser`.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, NoReturn

from bcartnb.exceptions import UsageError

__all__ = [
    "ARGPARSE_JA",
    "EXIT_CODES_HELP",
    "JSON",
    "PLACEHOLDERS",
    "Arg",
    "Command",
    "Parser",
    "arg",
    "importing",
    "japanese_argparse",
    "switch",
]

#: A command's function: the parsed arguments in, the exit code out.
Handler = Callable[[argparse.Namespace], int]
_Sub = Any  # argparse's _SubParsersAction, private in typeshed's eyes

EXIT_CODES_HELP = (
    "終了コード: 0 完了（すべて受信側が受け付けた） / 2 入力か設定のエラー（何も送っていない） / "
    "3 メール配信上限数を超える（何も送っていない） / 4 送信途中（bcartnb resume で続きを送る） / "
    "5 完了したが受信側に拒否されたメールがある / 130 中断（bcartnb resume で続きを送る）"
)


@dataclass(frozen=True)
class Arg:
    """One ``add_argument`` call, made when the parser is built. ``exclusive`` names the
    mutually exclusive group it belongs to (``run``'s ``--send`` and ``--test-to``)."""

    flags: tuple[str, ...]
    options: Mapping[str, Any]
    exclusive: str | None = None


#: What ``--help`` shows for an argument's value, by the argument's name (its ``dest``): one
#: Japanese word for one thing in every command, where argparse would print the English name
#: (``campaign_id``, ``ADDRESS``). :func:`arg` takes the placeholder from here unless a
#: declaration names its own; format placeholders (``JSON``, ``YYYY-MM``) stay as written.
PLACEHOLDERS: Mapping[str, str] = {
    "address": "メールアドレス",
    "admin": "メールアドレス",
    "campaign": "キャンペーンファイル.toml",
    "campaign_id": "キャンペーンID",
    "checked": "会員ID,会員ID,…",
    "delete": "名前",
    "export_bcart": "書き出すファイル.csv",
    "folder": "フォルダー",
    "from_": "送信元",
    "host": "ホスト",
    "maildir": "フォルダー",
    "member_id": "会員ID",
    "members": "会員ファイル.csv",
    "orders": "受注ファイル.csv",
    "out": "書き出すファイル",
    "plan": "プラン",
    "port": "ポート番号",
    "prefix": "パス",
    "results": "キャンペーンID",
    "save": "名前",
    "signature": "署名",
    "soft_threshold": "回数",
    "soft_window_days": "日数",
    "source": "メールボックス",
    "test_to": "メールアドレス",
    "which": "通知ID|メールアドレス",
}


def _dest(flags: tuple[str, ...], options: Mapping[str, Any]) -> str:
    """The name argparse gives the value: ``dest``, else the first long flag or the name."""
    if "dest" in options:
        return str(options["dest"])
    long = next((f for f in flags if f.startswith("--")), flags[0])
    return long.lstrip("-").replace("-", "_")


def arg(*flags: str, exclusive: str | None = None, **options: Any) -> Arg:
    """An argument, declared with ``add_argument``'s own words; its placeholder in ``--help``
    comes from :data:`PLACEHOLDERS` unless ``metavar`` is given (or it is a switch)."""
    takes_value = options.get("action", "store") == "store" and "choices" not in options
    if takes_value and "metavar" not in options:
        placeholder = PLACEHOLDERS.get(_dest(flags, options))
        if placeholder is not None:
            options["metavar"] = placeholder
    return Arg(flags, options, exclusive)


def switch(flag: str, help: str, *, exclusive: str | None = None) -> Arg:
    """An option that is on when given (``store_true``)."""
    return arg(flag, action="store_true", help=help, exclusive=exclusive)


#: ``--json``: the command prints its result as JSON instead of sentences.
JSON = switch("--json", "JSON で出力します")


@dataclass(frozen=True)
class Command:
    """A command: its name, Japanese help (the one-line ``help`` in the command list, the
    ``description`` atop its own page), its arguments in the order shown, whether its page
    ends with the exit codes a scheduler acts on, and what runs it. A family of commands
    under one word (``bcart pull``, ``bounces scan``) lists them in ``commands`` instead."""

    name: str
    help: str
    run: Handler | None = None
    description: str | None = None
    args: tuple[Arg, ...] = ()
    exit_codes: bool = False
    commands: tuple[Command, ...] = ()

    def add_to(self, sub: _Sub) -> argparse.ArgumentParser:
        """This command's parser, added to ``sub`` (an ``add_subparsers`` result)."""
        parser: argparse.ArgumentParser = sub.add_parser(
            self.name,
            help=self.help,
            description=self.description,
            epilog=EXIT_CODES_HELP if self.exit_codes else None,
        )
        groups: dict[str, Any] = {}
        for a in self.args:
            target: Any = parser
            if a.exclusive is not None:
                if a.exclusive not in groups:
                    groups[a.exclusive] = parser.add_mutually_exclusive_group()
                target = groups[a.exclusive]
            target.add_argument(*a.flags, **a.options)
        if self.run is not None:
            parser.set_defaults(func=self.run)
        if self.commands:
            family = parser.add_subparsers(
                dest=f"{self.name}_command", required=True, parser_class=Parser
            )
            for command in self.commands:
                command.add_to(family)
        return parser


class Parser(argparse.ArgumentParser):
    """A usage mistake is an error like any other: one line, Japanese first, exit 2."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"`{self.prog} --help` で使い方を表示します", ja=message)


#: argparse's own words (Python 3.11) in Japanese. argparse looks every one of them up through
#: gettext at the moment it uses it, via its module-level ``_`` and ``ngettext``;
#: :func:`japanese_argparse` points those at this table while our parser is built and used.
ARGPARSE_JA: dict[str, str] = {
    "usage: ": "使い方: ",
    "positional arguments": "引数",
    "options": "オプション",
    "subcommands": "コマンド",
    "show this help message and exit": "この説明を表示して終了します",
    "show program's version number and exit": "バージョンを表示して終了します",
    "argument %(argument_name)s: %(message)s": "引数 %(argument_name)s: %(message)s",
    "unrecognized arguments: %s": "知らない引数です: %s",
    "not allowed with argument %s": "引数 %s と一緒には使えません",
    "ignored explicit argument %r": "値 %r は受け付けません",
    "the following arguments are required: %s": "次の引数が必要です: %s",
    "one of the arguments %s is required": "引数 %s のどれかひとつが必要です",
    "expected one argument": "値をひとつ指定してください",
    "expected at most one argument": "値はひとつまでです",
    "expected at least one argument": "値をひとつ以上指定してください",
    "expected %s argument": "値を %s 個指定してください",
    "expected %s arguments": "値を %s 個指定してください",
    "ambiguous option: %(option)s could match %(matches)s": (
        "オプション %(option)s はあいまいです（候補: %(matches)s）"
    ),
    "unexpected option string: %s": "思いがけないオプションです: %s",
    "invalid %(type)s value: %(value)r": "%(value)r は %(type)s の値として正しくありません",
    "invalid choice: %(value)r (choose from %(choices)s)": (
        "%(value)r は選べません（選べるもの: %(choices)s）"
    ),
    "unknown parser %(parser_name)r (choices: %(choices)s)": (
        "%(parser_name)r というコマンドはありません（あるもの: %(choices)s）"
    ),
    "can't open '%(filename)s': %(error)s": "'%(filename)s' を開けません: %(error)s",
}


def _ja_gettext(message: str) -> str:
    return ARGPARSE_JA.get(message, message)


def _ja_ngettext(singular: str, plural: str, n: int) -> str:
    return _ja_gettext(singular if n == 1 else plural)


@contextlib.contextmanager
def japanese_argparse() -> Iterator[None]:
    """argparse speaks Japanese inside this block, and only there (its module globals are
    put back afterwards, so another parser in the same process keeps its own language)."""
    saved = argparse._, argparse.ngettext  # type: ignore[attr-defined]
    argparse._, argparse.ngettext = _ja_gettext, _ja_ngettext  # type: ignore[attr-defined]
    try:
        yield
    finally:
        argparse._, argparse.ngettext = saved  # type: ignore[attr-defined]


@contextlib.contextmanager
def importing(args: argparse.Namespace) -> Iterator[None]:
    """A command's own imports (pandas, Arrow, Jinja, the ledger) with the cyclic garbage
    collector paused, and what they made frozen out of its sight afterwards.

    Nearly nothing an import makes is ever garbage, yet the collector walks it all: two full
    passes and some 250 young ones, 0.1 s of CPU of a ``run`` before its first mail (8 ms
    left once frozen). Only in the ``bcartnb`` process itself (``args.whole_process``, set
    by :func:`bcartnb.cli.entry`, which leaves with ``os._exit``): whoever calls
    :func:`bcartnb.cli.main` (a test, a notebook) keeps its collector as it was.
    """
    if not getattr(args, "whole_process", False) or not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        gc.enable()
