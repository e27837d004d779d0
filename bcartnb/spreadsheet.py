"""What a shop opens in Excel: cells that stay text, files Excel reads as UTF-8.

A CSV the marketer opens in a spreadsheet must not run anything: a cell starting with ``=``,
``+``, ``-``, ``@`` (or a tab or CR, which some spreadsheets skip before one) is read as a
formula, and a company name or a URL is anyone's text (CSV injection). Such a cell is
written with a leading ``'``, which every spreadsheet shows as text. Excel reads a CSV as
UTF-8 only when it starts with a byte order mark; without it 会社名 turns to mojibake.
"""

from __future__ import annotations

from typing import Final

__all__ = ["BOM", "FORMULA_START", "text_cell"]

#: The first characters that make a spreadsheet read a cell as a formula.
FORMULA_START: Final = ("=", "+", "-", "@", "\t", "\r")
#: Written first, so Excel takes the file as UTF-8.
BOM: Final = "\ufeff"


def text_cell(value: object) -> str:
    """``value`` as text a spreadsheet shows and never runs."""
    text = str(value)
    return "'" + text if text.startswith(FORMULA_START) else text
