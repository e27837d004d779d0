"""The ``bcartnb`` command: parse, call the package, print. No business logic lives here.

Every :class:`~bcartnb.exceptions.BcartnbError` becomes one line on stderr (its Japanese
explanation first, when it has one, then the exact detail) and its exit code: 2 bad input or
settings, 3 quota refused, both before anything was sent. ``run`` and ``resume`` exit with
their summary's code once something may have gone out: 0 finished and every mail accepted,
4 unfinished (the resume command is printed), 5 finished with mails refused for good, 130
interrupted. Anything else is a bug and keeps its traceback.

One module a command family, each declaring its commands with :mod:`bcartnb.cli.common`:
:mod:`~bcartnb.cli.shop` (init), :mod:`~bcartnb.cli.members`, :mod:`~bcartnb.cli.quota`,
:mod:`~bcartnb.cli.campaigns` (run, resume, cancel, campaigns, report),
:mod:`~bcartnb.cli.schedule` (予約配信: run --at, schedule, due),
:mod:`~bcartnb.cli.hygiene` (suppressions, suppress, unsuppress, bounces),
:mod:`~bcartnb.cli.bcart`, :mod:`~bcartnb.cli.segments` and :mod:`~bcartnb.cli.servers`
(unsubscribe-server, sink) and :mod:`~bcartnb.cli.wizard` (the wizard in JupyterLab). A new
command is a :class:`~bcartnb.cli.common.Command` in its family's module and one entry in
:data:`COMMANDS`.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Iterator, Sequence
from typing import NoReturn

from bcartnb import __version__
from bcartnb.cli import (
    bcart,
    campaigns,
    hygiene,
    members,
    quota,
    results,
    schedule,
    segments,
    servers,
    shop,
    wizard,
)
from bcartnb.cli.common import Command, Parser, japanese_argparse
from bcartnb.cli.output import say, silence_stdout
from bcartnb.exceptions import BcartnbError

__all__ = ["COMMANDS", "build_parser", "entry", "main"]

#: Every command, in the order ``bcartnb --help`` lists them.
COMMANDS: tuple[Command, ...] = (
    shop.INIT,
    wizard.WIZARD,
    members.MEMBERS,
    quota.QUOTA,
    *campaigns.COMMANDS,
    *schedule.COMMANDS,
    results.RESULTS,
    *hygiene.COMMANDS,
    bcart.BCART,
    servers.UNSUBSCRIBE_SERVER,
    segments.SEGMENTS,
    servers.SINK,
)


def build_parser() -> argparse.ArgumentParser:
    """The whole command line. Build it inside :func:`~bcartnb.cli.common.japanese_argparse`
    (as :func:`main` does) for argparse's own words in Japanese too."""
    parser = Parser(
        prog="bcartnb",
        description="Bカートの会員にメールを配信します（絞込・メール作成・確認・送信）。",
    )
    parser.add_argument(
        "--version",
        action="version",
        version=f"bcartnb {__version__}",
        help="バージョンを表示して終了します",
    )
    sub = parser.add_subparsers(
        dest="command", required=True, parser_class=Parser, metavar="コマンド"
    )
    for command in COMMANDS:
        command.add_to(sub)
    return parser


@contextlib.contextmanager
def _telling_a_new_ledger(command: str) -> Iterator[None]:
    """Say once, on stderr, where the shop's ledger was created if this command created it
    where nobody named it (``bcartnb init`` makes and says it; a ``ledger`` key or
    ``BCARTNB_DB`` names it): a ledger never appears unannounced."""
    from pathlib import Path

    from bcartnb.settings import load_settings

    watch: Path | None = None
    if command != "init":
        with contextlib.suppress(BcartnbError):
            settings = load_settings()
            if settings.ledger_by_default and settings.db and not settings.db.exists():
                watch = settings.db
    try:
        yield
    finally:
        if watch is not None and watch.exists():
            say(f"bcartnb: 配信記録ファイルを作りました: {watch}", err=True)


def main(argv: Sequence[str] | None = None, *, whole_process: bool = False) -> int:
    """Run one command; ``whole_process``: this process is the command (:func:`entry`), so
    it may tune the interpreter for it (:func:`~bcartnb.cli.common.importing`)."""
    try:
        with japanese_argparse():
            args = build_parser().parse_args(argv)
        args.whole_process = whole_process
        with _telling_a_new_ledger(args.command):
            code: int = args.func(args)
        sys.stdout.flush()
    except BrokenPipeError:
        silence_stdout()
        return 0
    except BcartnbError as err:
        say(f"bcartnb: error: {err.line()}", err=True)
        return err.exit_code
    except KeyboardInterrupt:
        print("bcartnb: 中断しました / interrupted", file=sys.stderr)
        return 130
    return code


def entry() -> NoReturn:
    """The ``bcartnb`` command: :func:`main`, then leave without tearing Python down.

    By then everything we opened is closed (ledger, spool, connections) and we flush the
    output here; the interpreter's own shutdown, freeing pandas, NumPy and Arrow module by
    module, would only add a tenth of a second to every command.
    """
    code = main(whole_process=True)
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):  # a closed pipe must not change the exit code
            stream.flush()
    os._exit(code)
