"""The keyword box of 絞込オプション: one text over company, person and address.

The contract's filter ANDs one condition per column, so "any of these columns contains the
word" cannot be written in it. The wizard keeps the keyword beside the filter and turns its
result into checked ids (see :mod:`bcartnb.widgets`), so a campaign stays replayable from the
member file alone. Matching is what a marketer expects from a search box: words separated by
spaces must all appear (in any of the columns), full-width and half-width forms are the same
(NFKC) and Latin letters ignore case. Every step is a vectorised Arrow compute kernel.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any, Final

import numpy as np
import pandas as pd
import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.compute as pc  # type: ignore[import-untyped]

from bcartnb.exceptions import FilterError

__all__ = ["KEYWORD_COLUMNS", "KeywordIndex", "keyword_mask", "keyword_terms"]

#: The columns the keyword looks in: company, person, address (B-Cart's 会員一覧 search).
KEYWORD_COLUMNS: Final[tuple[str, ...]] = (
    "comp_name",
    "comp_name_kana",
    "department",
    "tanto_last_name",
    "tanto_first_name",
    "pref",
    "address1",
    "address2",
    "address3",
)
#: Fields joined without a separator too, so 「山田太郎」 and 「東京都千代田区」 match.
_JOINED: Final[tuple[tuple[str, ...], ...]] = (
    ("tanto_last_name", "tanto_first_name"),
    ("pref", "address1", "address2", "address3"),
)
_SPACES: Final = re.compile(r"\s+")


def keyword_terms(text: str) -> list[str]:
    """The words of a search text, normalised (NFKC, lower case); blanks give no words."""
    norm = unicodedata.normalize("NFKC", text or "").lower()
    return [t for t in _SPACES.split(norm) if t]


def _norm(values: pd.Series) -> pa.Array:
    arr = pa.array(values.astype("str"), type=pa.string(), from_pandas=True)
    return pc.utf8_lower(pc.utf8_normalize(pc.fill_null(arr, ""), "NFKC"))


class KeywordIndex:
    """The members' searchable text, normalised once; :meth:`mask` is then one scan a word.

    Normalising a column (NFKC) costs far more than searching it, so the wizard builds this
    once per member list and every later 絞込 click only scans.
    """

    def __init__(self, members: pd.DataFrame) -> None:
        present = [c for c in KEYWORD_COLUMNS if c in members.columns]
        if not present:
            raise FilterError(
                "keyword search needs a company, person or address column "
                f"({', '.join(KEYWORD_COLUMNS)}); the members have none",
                ja="キーワード検索には会社名・担当者・住所の列が必要ですが、会員ファイルにありません。",
            )
        cols = {c: _norm(members[c]) for c in present}
        parts = [cols[c] for c in present]
        for group in _JOINED:
            joined = [cols[c] for c in group if c in cols]
            if len(joined) > 1:
                parts.append(pc.binary_join_element_wise(*joined, ""))
        self.size = len(members)
        # words never hold a line break, so no word matches across two fields
        self.text = pc.binary_join_element_wise(*parts, "\n") if len(parts) > 1 else parts[0]

    def mask(self, text: str) -> np.ndarray[Any, np.dtype[np.bool_]]:
        """True where every word of ``text`` appears; an empty text matches everybody."""
        mask = np.ones(self.size, dtype=bool)
        for term in keyword_terms(text):
            found = pc.match_substring(self.text, term)
            mask &= found.to_numpy(zero_copy_only=False)
        return mask


def keyword_mask(members: pd.DataFrame, text: str) -> np.ndarray[Any, np.dtype[np.bool_]]:
    """True for members whose company, person or address contains every word of ``text``.

    An empty text matches everybody. A frame with none of :data:`KEYWORD_COLUMNS` is a
    :class:`FilterError` rather than an empty result, which would look like "nobody matched".
    For repeated searches over the same members build a :class:`KeywordIndex` once.
    """
    if not keyword_terms(text):
        return np.ones(len(members), dtype=bool)
    return KeywordIndex(members).mask(text)
