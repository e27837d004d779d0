"""The member columns: B-Cart's names, kinds and Japanese headers; which column a header names.

One table (the contract's canonical columns, named after the API's customer keys) that every
source, filter, template and report reads, so a column is named, labelled and typed in one
place. A custom field (カスタム項目) that takes a standard column's name is renamed here, by one
rule, whether it came from the CSV export or the API.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Container, Iterable, Mapping
from typing import Any, Final

import numpy as np
import pandas as pd

__all__ = [
    "CANONICAL_COLUMNS",
    "COLUMN_KINDS",
    "COLUMN_LABELS",
    "CUSTOM_PREFIX",
    "DAY_PATTERN",
    "HEADER_ALIASES",
    "MM_FLAG_VALUES",
    "SPACES",
    "TOKYO",
    "canonical",
    "custom_column",
    "day_parts",
    "day_words",
    "empty_members",
    "renamed_note",
]

# canonical name, kind, Japanese headers accepted (the first is the label shown to users)
_SPEC: Final[tuple[tuple[str, str, tuple[str, ...]], ...]] = (
    ("id", "id", ("Bカート会員ID", "会員ID")),
    ("ext_id", "str", ("貴社独自会員ID",)),
    ("comp_name", "str", ("会社名",)),
    ("comp_name_kana", "str", ("会社名(カナ)",)),
    ("department", "str", ("担当部署", "部署名")),
    ("tanto_last_name", "str", ("担当者(姓)",)),
    ("tanto_first_name", "str", ("担当者(名)",)),
    ("email", "email", ("メールアドレス",)),
    ("email_cc", "str", ("CCメールアドレス",)),
    ("tel", "str", ("電話番号",)),
    ("mobile_phone", "str", ("携帯番号",)),
    ("zip", "str", ("郵便番号",)),
    ("pref", "str", ("都道府県",)),
    ("address1", "str", ("市区町村",)),
    ("address2", "str", ("町域・番地",)),
    ("address3", "str", ("ビル建物名など",)),
    ("price_group_id", "int", ("価格グループID",)),
    ("view_group_id", "int", ("閲覧グループID",)),
    ("salesman_id", "int", ("営業担当ID",)),
    ("mm_flag", "bool", ("メール案内",)),
    ("status", "str", ("状態",)),
    ("created_at", "datetime", ("登録日時",)),
    ("updated_at", "datetime", ("更新日時",)),
)

#: The canonical member columns, in the contract's order.
CANONICAL_COLUMNS: Final[tuple[str, ...]] = tuple(name for name, _, _ in _SPEC)
#: canonical column -> "id" | "str" | "email" | "int" | "bool" | "datetime"
COLUMN_KINDS: Final[Mapping[str, str]] = {name: kind for name, kind, _ in _SPEC}
#: canonical column -> the Japanese header B-Cart shows (for messages and reports)
COLUMN_LABELS: Final[Mapping[str, str]] = {name: aliases[0] for name, _, aliases in _SPEC}
#: Japanese header -> canonical column. Headers are compared after NFKC, so 会社名（カナ）
#: with full-width parentheses is 会社名(カナ).
HEADER_ALIASES: Final[Mapping[str, str]] = {
    alias: name for name, _, aliases in _SPEC for alias in aliases
}
#: メール案内 values (compared stripped and case-folded); blank is False; anything else is an error.
MM_FLAG_VALUES: Final[Mapping[str, bool]] = {
    "受け取る": True,
    "1": True,
    "true": True,
    "受け取らない": False,
    "0": False,
    "false": False,
    "": False,
}

TOKYO: Final = "Asia/Tokyo"
#: A day as B-Cart writes it (2023/09/17) or a person does (2023-9-17, 2023.9.17,
#: 2023年9月17日): year, month and day as groups. Member date columns and the filter's
#: dates read it alike.
DAY_PATTERN: Final = r"(\d{4})[-/.年](\d{1,2})[-/.月](\d{1,2})日?"
# ASCII white space and the full-width space U+3000, trimmed around an address or a value.
SPACES: Final = " \t\r\n\v\f\u3000"


def day_parts(text: str) -> tuple[int, int, int] | None:
    """Year, month and day of a day written as :data:`DAY_PATTERN` allows (full-width digits
    too), or None; whether the day exists (2023/02/30) is the caller's to say."""
    found = re.fullmatch(DAY_PATTERN, unicodedata.normalize("NFKC", text).strip())
    if found is None:
        return None
    year, month, day = (int(g) for g in found.groups())
    return year, month, day


def day_words(year: int, month: int, day: int) -> str:
    """A day as the shop writes it to people (2026年8月14日, no leading zeros): the filter's
    words on the confirmation screen and the report, and a day merged into a mail, alike."""
    return f"{year}年{month}月{day}日"


def _header_key(header: str) -> str:
    return unicodedata.normalize("NFKC", header).strip()


_ALIAS_KEYS: Final[Mapping[str, str]] = {
    **{_header_key(alias): name for alias, name in HEADER_ALIASES.items()},
    **{name: name for name in CANONICAL_COLUMNS},
}


def canonical(header: str) -> str | None:
    """The canonical column a header names (Japanese or canonical, after NFKC), if any."""
    key = _header_key(header)
    return _ALIAS_KEYS.get(key) or _ALIAS_KEYS.get(key.lower())


#: A custom field (カスタム項目) whose name is a standard column's is read under this prefix.
CUSTOM_PREFIX: Final = "カスタム:"


def custom_column(head: str, taken: Container[str]) -> str:
    """The column a custom field is read into: its own name, unless that names a standard
    column (状態, メール案内, 会員ID, status, ...) or a column already taken; then
    ``カスタム:名前`` (``カスタム:名前(2)`` should that be taken too).

    B-Cart lets a shop name a custom field anything, and it cannot be deleted once used, so
    a clash is read, not refused. The CSV export lists custom fields after the standard
    columns and the API apart from them: either way the custom one is renamed, by this one
    rule, and both sources give the same frame.
    """
    if canonical(head) is None and head not in taken:
        return head
    name, n = f"{CUSTOM_PREFIX}{head}", 2
    while name in taken:
        name, n = f"{CUSTOM_PREFIX}{head}({n})", n + 1
    return name


def renamed_note(head: str, name: str) -> str:
    """The warning line for a custom field read under another name (:func:`custom_column`)."""
    return (
        f"カスタム項目「{head}」は標準の列または他の列と同じ名前のため、"
        f'「{name}」として読み込みました（テンプレートでは {{{{ member["{name}"] }}}}）。'
    )


def empty_members(extra: Iterable[str] = ()) -> pd.DataFrame:
    """A member frame with no rows but every canonical column typed (the schema, for UIs)."""
    cols: dict[str, Any] = {}
    for name in CANONICAL_COLUMNS:
        cols[name] = _typed_empty(COLUMN_KINDS[name])
    for name in extra:
        cols[name] = pd.Series([], dtype="str")
    frame = pd.DataFrame(cols, index=pd.Index([], dtype=np.int64, name="row"))
    return frame


def _typed_empty(kind: str) -> pd.Series:
    if kind == "id":
        return pd.Series([], dtype=np.int64)
    if kind == "int":
        return pd.Series([], dtype="Int64")
    if kind == "bool":
        return pd.Series([], dtype=bool)
    if kind == "datetime":
        return pd.Series([], dtype=f"datetime64[us, {TOKYO}]")
    return pd.Series([], dtype="str")
