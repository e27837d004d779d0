"""The keyword box of 絞込オプション: one text over company, person and address.

The contract's filter ANDs one condition per column, so "any of these columns contains the
word" cannot be written in it. The wizard keeps the keyword beside the filter and turns its
result into checked ids (see :mod:`bcartnb.widgets`), so a campaign stays replayable from the
member file alone. Matching is what a marketer expects from a search box: words separated by
spaces must all appear (in any of the columns), full-width and half-width forms are the same
(NFKC) and Latin letters ignore case. Every step is a vectorised pandas string operation.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any, Final

import numpy as np
import pandas as pd

from bcartnb.exceptions import FilterError

__all__ = ["KEYWORD_COLUMNS", "keyword_mask", "keyword_terms"]

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


def _norm(col: pd.Series) -> pd.Series:
    return col.astype("str").fillna("").str.normalize("NFKC").str.lower()


def keyword_mask(members: pd.DataFrame, text: str) -> np.ndarray[Any, np.dtype[np.bool_]]:
    """True for members whose company, person or address contains every word of ``text``.

    An empty text matches everybody. A frame with none of :data:`KEYWORD_COLUMNS` is a
    :class:`FilterError` rather than an empty result, which would look like "nobody matched".
    """
    terms = keyword_terms(text)
    if not terms:
        return np.ones(len(members), dtype=bool)
    present = [c for c in KEYWORD_COLUMNS if c in members.columns]
    if not present:
        raise FilterError(
            "keyword search needs a company, person or address column "
            f"({', '.join(KEYWORD_COLUMNS)}); the members have none"
        )
    cols = {c: _norm(members[c]) for c in present}
    hay = [cols[c] for c in present]
    for group in _JOINED:
        parts = [cols[c] for c in group if c in cols]
        if len(parts) > 1:
            joined = parts[0]
            for p in parts[1:]:
                joined = joined + p
            hay.append(joined)
    text_col = hay[0]
    for h in hay[1:]:
        text_col = text_col + "\n" + h
    mask = np.ones(len(members), dtype=bool)
    for term in terms:
        found = text_col.str.contains(term, regex=False)
        mask &= found.to_numpy(dtype=bool, na_value=False)
    return mask
