"""Near names: what a mistyped name or value was probably meant to be.

One way to say 「近いもの」 for every name a marketer types (a CSV header, a filter value, a
template name): the words are compared after NFKC and case folding, so 東京 finds 東京都,
ﾒｰﾙ案内 finds メール案内 and Plan10 finds plan10. A word that holds the other (or is held by
it) comes first, then difflib's ratio decides; at most a few, never a guess when nothing is
close.
"""

from __future__ import annotations

import difflib
import unicodedata
from collections.abc import Iterable

__all__ = ["near_names", "quoted"]

#: How alike two words must be (difflib's ratio) to be offered as near.
CUTOFF = 0.6


def _key(word: str) -> str:
    return unicodedata.normalize("NFKC", word).strip().casefold()


def near_names(word: str, candidates: Iterable[str], n: int = 3) -> list[str]:
    """Up to ``n`` of ``candidates`` closest to ``word``, the closest first; [] when none is.

    ``word`` itself is never offered; another spelling of it (ﾃｽﾄ for テスト, 東京都 with a
    full-width space) is, first: where names are compared as written, that is the hint.
    """
    key = _key(word)
    if not key:
        return []
    scored: dict[str, tuple[int, float]] = {}
    matcher = difflib.SequenceMatcher(b=key, autojunk=False)
    for cand in candidates:
        other = _key(cand)
        if not other or cand == word or cand in scored:
            continue
        if other == key:
            scored[cand] = (-1, -1.0)
            continue
        held = min(len(key), len(other)) >= 2 and (key in other or other in key)
        matcher.set_seq1(other)
        if not held and matcher.real_quick_ratio() < CUTOFF:
            continue
        ratio = matcher.ratio()
        if held or ratio >= CUTOFF:
            scored[cand] = (0 if held else 1, -ratio)
    return sorted(scored, key=lambda c: (*scored[c], c))[:n]


def quoted(names: Iterable[str]) -> str:
    """「a」「b」: names as a Japanese sentence quotes them."""
    return "".join(f"「{name}」" for name in names)
