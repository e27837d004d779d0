"""One rule of what an address is as a key: the form every list and signature compares.

The suppression list keys its rows by it, the ledger's events and pushes look addresses up by
it, and the unsubscribe token's MAC covers it, so ``Taro@Example.jp `` pasted from a document
and ``taro@example.jp`` in the journal are one address everywhere. It sits in the ground
layer because the rules (the mail's tokens) and the stages (the ledger, hygiene) both need it
and neither may import the other's.

Ground layer: the standard library and :mod:`bcartnb.exceptions` only.
"""

from __future__ import annotations

import unicodedata
from typing import Final

from bcartnb.exceptions import HygieneError

__all__ = ["SPACES", "normalize_address"]

#: What is trimmed around an address: ASCII spaces and tabs, and the full-width space (U+3000)
#: a Japanese document leaves invisible after it (the member file trims the same).
SPACES: Final = " \t\u3000"
_MAX_ADDRESS: Final = 254  # RFC 5321's path limit, less the angle brackets


def normalize_address(address: str) -> str:
    """The list's key for an address: trimmed like the member file's, lower-cased.

    Refuses what no member file could hold as one address (empty, white space or a control
    character inside, no ``@``, longer than a mail path), so nothing odd becomes a key.
    """
    if not isinstance(address, str):
        raise HygieneError(
            f"address must be text, not {type(address).__name__}",
            ja="メールアドレスは文字列で指定してください",
        )
    key = address.strip(SPACES).lower()
    plain = key.isascii() and key.isprintable() and " " not in key  # the common case, at once
    bad = (
        None
        if plain
        else next(
            (ch for ch in key if ch.isspace() or unicodedata.category(ch).startswith("C")), None
        )
    )
    if not key or bad is not None or "@" not in key or len(key) > _MAX_ADDRESS:
        what = (
            "empty"
            if not key
            else f"contains {bad!r}"
            if bad is not None
            else "has no @"
            if "@" not in key
            else f"is longer than {_MAX_ADDRESS} characters"
        )
        raise HygieneError(
            f"not a mail address: {address[:80]!r} {what}",
            ja="メールアドレスとして扱えません（空欄・空白や制御文字・@ がない・長すぎる）: "
            f"{address[:80]!r}",
        )
    return key
