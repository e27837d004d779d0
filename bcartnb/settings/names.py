"""Names for the ids a member row holds: ``[names]`` (価格グループ and 営業担当 by name).

B-Cart's member file and API give 価格グループID and 営業担当ID as bare numbers; the shop
knows them as 「一般」「卸A」 or 「佐藤」. The optional table lets the wizard's 絞込オプション show
the names beside the ids (the filter itself keeps the ids, as the CLI takes them)::

    [names.price_groups]
    1 = "一般"
    2 = "卸A"

    [names.sales_staff]
    101 = "佐藤"
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from bcartnb.exceptions import SettingsError
from bcartnb.settings.checks import check_keys

__all__ = ["IdNames", "names_from_file"]

_TABLES = {"price_groups": "価格グループ", "sales_staff": "営業担当"}


@dataclass(frozen=True)
class IdNames:
    """id → name for 価格グループ (``price_groups``) and 営業担当 (``sales_staff``)."""

    price_groups: Mapping[int, str] = field(default_factory=dict)
    sales_staff: Mapping[int, str] = field(default_factory=dict)


def _table(value: Any, here: str, what: str) -> dict[int, str]:
    if not isinstance(value, dict):
        raise SettingsError(
            f'{here} must be a table of id = "name"',
            ja=f'{here}（{what}）は 1 = "名前" の形で書いてください。',
        )
    out: dict[int, str] = {}
    for key, name in value.items():
        if not str(key).isascii() or not str(key).isdigit() or len(str(key)) > 18:
            raise SettingsError(
                f"{here}: key {key!r} is not an id (a whole number)",
                ja=f"{here} の「{key}」は{what}のID（整数）ではありません。",
            )
        if not isinstance(name, str) or not name.strip() or any(c in name for c in "\r\n\0"):
            raise SettingsError(
                f"{here}: {key} must name it in one line of text",
                ja=f"{here} の {key} には名前を1行の文字で書いてください。",
            )
        out[int(key)] = name.strip()
    return out


def names_from_file(data: Mapping[str, Any], where: str) -> IdNames:
    """The ``[names]`` table (empty when absent), each id a whole number, each name a line."""
    table = data.get("names", {})
    if not isinstance(table, dict):
        raise SettingsError(
            f"{where}: [names] must be a table", ja=f"{where} の [names] は表で書いてください。"
        )
    check_keys(table, _TABLES, f"{where} [names]")
    return IdNames(
        **{
            key: _table(table[key], f"{where} [names.{key}]", what)
            for key, what in _TABLES.items()
            if key in table
        }
    )
