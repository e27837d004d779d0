"""How every command prints: JSON as the contract writes it, text fit for a terminal, and the
few phrasings (the ledger's place, a time in Tokyo, a campaign's subject) that several
commands say alike."""

from __future__ import annotations

import contextlib
import json
import os
import re
import sys
from typing import Any

__all__ = [
    "jst",
    "ledger_line",
    "print_json",
    "say",
    "shown",
    "silence_stdout",
    "subject_of",
]


def print_json(data: Any) -> None:
    print(json.dumps(data, ensure_ascii=False, indent=2, default=str))


#: Control characters other than line breaks and tabs (C0, DEL, C1): a member's 会社名, a
#: subject or a server's reply holding ESC [ 2 J must not clear or restyle the terminal.
_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def shown(text: str) -> str:
    """Text from members, templates and servers, fit for a terminal: controls as ``\\x1b``."""
    return _CONTROLS.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def say(text: str = "", *, err: bool = False, flush: bool = False) -> None:
    print(shown(text), file=sys.stderr if err else sys.stdout, flush=flush)


def silence_stdout() -> None:
    """The reader closed the pipe: drop the rest of our output instead of a traceback."""
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


def ledger_line(db: Any) -> str:
    """Where the shop's records are, said by the commands that read them."""
    return f"配信記録ファイル: {db}"


def subject_of(params: dict[str, Any]) -> str:
    """A campaign's subject as written (merge fields unrendered), else its template's name."""
    if params.get("subject"):
        return " ".join(str(params["subject"]).split())
    if params.get("template"):
        return f"テンプレート「{params['template']}」"
    return ""


def jst(iso: str) -> str:
    """``2026-11-20T10:00:00+09:00`` → ``2026-11-20 10:00`` in Asia/Tokyo."""
    from datetime import datetime

    from bcartnb.quota import TOKYO

    return datetime.fromisoformat(iso).astimezone(TOKYO).strftime("%Y-%m-%d %H:%M")
