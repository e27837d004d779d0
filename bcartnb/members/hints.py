"""A standard column the file lacks, named with the header it probably is.

A misnamed header is read as a custom field (カスタム項目), so the file loads and the column
is simply blank: a メール案内 header spelt 「メール案内（受取）」 makes every member
受け取らない and 送信件数 0, with nothing said. Here each missing standard column is matched
against the headers that named no standard column (:func:`bcartnb.near.near_names`, on the
Japanese header, the canonical name and a few words shops use for the same thing); the nearest
becomes a warning, or the hint of the error when the column is required.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Final

from bcartnb.members.columns import COLUMN_LABELS, HEADER_ALIASES
from bcartnb.near import near_names, quoted

__all__ = ["missing_column_notes", "near_headers"]

#: Other words shops write for a standard column, beside its Japanese headers and its name.
_ALSO: Final[Mapping[str, tuple[str, ...]]] = {
    "mm_flag": ("メルマガ", "メールマガジン", "メール配信", "メルマガ配信"),
    "email": ("メール", "Eメール", "e-mail", "mail", "メールアドレス1"),
    "id": ("会員番号", "顧客ID", "customer_id"),
}

#: What a blank standard column means for the mail, said with its warning.
_EFFECT: Final[Mapping[str, str]] = {
    "mm_flag": "このままでは全員がメール案内「受け取らない」になり、"
    "「メール案内「受け取る」の会員にのみ送信」では誰にも送られません。",
}


def _names(column: str) -> list[str]:
    aliases = [alias for alias, name in HEADER_ALIASES.items() if name == column]
    return [*aliases, column, *_ALSO.get(column, ())]


def near_headers(missing: Iterable[str], others: Sequence[str]) -> dict[str, list[str]]:
    """Missing standard column → the headers in ``others`` that are near one of its names,
    the nearest first; a column with none near is left out."""
    out: dict[str, list[str]] = {}
    for column in missing:
        found: list[str] = []
        for name in _names(column):
            found += [h for h in near_names(name, others) if h not in found]
        if found:
            out[column] = found[:3]
    return out


def missing_column_notes(near: Mapping[str, list[str]]) -> list[str]:
    """One warning a missing standard column with a near header, Japanese first."""
    return [
        f"「{COLUMN_LABELS[column]}」の列がありません。近い見出し: {quoted(heads)}"
        f"（カスタム項目として読み込みました）。{_EFFECT.get(column, '')}"
        f"見出しを「{COLUMN_LABELS[column]}」に直してください。"
        for column, heads in near.items()
    ]
