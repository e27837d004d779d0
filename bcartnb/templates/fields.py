"""Merge fields (差し込み項目): what ``{{ name }}`` in a template reads from a member row.

Merge fields are written ``{{ name }}`` with the canonical member column or a Japanese alias.
A field that is empty for a member is an *error* (``StrictUndefined``), never a blank in a
sent mail; templates run in Jinja2's sandbox, so ``{{ ''.__class__ }}`` fails cleanly.

==========================  ==================================================================
alias                       value
==========================  ==================================================================
``会員ID``, ``Bカート会員ID``  ``id``
``貴社独自会員ID``            ``ext_id``
``会社名``                   ``comp_name``
``会社名カナ``                ``comp_name_kana``
``担当部署``, ``部署名``       ``department``
``担当者名``                 ``tanto_last_name + " " + tanto_first_name`` (the parts present;
                            missing only when both are)
``担当者姓``                 ``tanto_last_name``
``担当者名前``                ``tanto_first_name``
``メールアドレス``             ``email``
``電話番号``                 ``tel``
``携帯番号``                 ``mobile_phone``
``郵便番号``                 ``zip``
``都道府県``                 ``pref``
``市区町村``                 ``address1``
``町域番地``                 ``address2``
``ビル建物名``                ``address3``
``住所``                    ``pref + address1 + address2``, then ``" " + address3`` (parts present)
``価格グループID``             ``price_group_id``
``営業担当ID``               ``salesman_id``
``状態``                    ``status``
``登録日時``                 ``created_at``
``更新日時``                 ``updated_at``
``署名``                    ``signature``: the shop's signature (設定している署名), not a member
                            field; see below
==========================  ==================================================================

``{{ signature }}`` (or ``{{ 署名 }}``) places the shop's signature where the template wants it:
in an HTML template it is HTML (escaped text, ``<br>`` between lines, each URL and mail address a
link, or the settings' ``signature_html``), so put it where a paragraph's content may go, e.g.
``<p class="signature">{{ signature }}</p>``; in a text template it is the signature's text. It
is empty when 「設定している署名を挿入」 is off. Without it the signature goes inside the body's
main container (the rule is in :mod:`bcartnb.compose`) or at the end of a text mail.

``{{ unsubscribe_link }}`` (or ``{{ 配信停止リンク }}``) is the member's own way to stop the mail,
for the visible 配信停止 link: the settings' ``unsubscribe_url`` as this member's mail carries it
in ``List-Unsubscribe`` (with the signed ``{{ unsubscribe_token }}`` when the setting names it, so
the click reaches the one-click page), else ``unsubscribe_mailto``, else ``mailto:`` the From
address (a reply, which 特定電子メール法 accepts as the way to opt out). One setting decides
the header and the link.

Custom fields (カスタム項目) are reachable by their column name when it is an identifier
(``{{ 業種 }}``), and every field by ``{{ member["カスタム項目(1)"] }}``. So are the purchase
columns (購入履歴: ``{{ 最終購入日 }}``, ``{{ 購入商品 }}``, ``{{ 顧客グループ }}``, …) when the
campaign reads orders (:mod:`bcartnb.orders.purchases`). A value counts as missing when it is
None, pandas NA/NaT, NaN, a blank string or an empty list. Each value is shown as a shop writes
it (2026年8月14日, 「、」 between a list's items, 12,345 for an amount):
:mod:`bcartnb.templates.values`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from bcartnb.members import CANONICAL_COLUMNS, COLUMN_LABELS
from bcartnb.orders.purchases import PURCHASE_COLUMNS
from bcartnb.templates.values import is_quantity, shown_value

__all__ = [
    "COMPOSER_FIELDS",
    "FIELD_ALIASES",
    "SAMPLE_MEMBER",
    "SIGNATURE_FIELDS",
    "UNSUBSCRIBE_LINK_FIELDS",
    "UNSUBSCRIBE_TOKEN_FIELD",
    "columns_for",
    "context_builder",
    "field_label",
    "is_missing",
    "merge_fields",
]


def _full_name(member: Mapping[str, Any]) -> Any:
    parts = [member.get(k) for k in ("tanto_last_name", "tanto_first_name")]
    present = [str(p).strip() for p in parts if not is_missing(p)]
    return " ".join(present) if present else None


def _address(member: Mapping[str, Any]) -> Any:
    head = "".join(
        str(member.get(k)).strip()
        for k in ("pref", "address1", "address2")
        if not is_missing(member.get(k))
    )
    tail = member.get("address3")
    if not is_missing(tail):
        head = f"{head} {str(tail).strip()}" if head else str(tail).strip()
    return head or None


#: Japanese alias → canonical column, or a function of the member row (None when missing).
FIELD_ALIASES: dict[str, str | Callable[[Mapping[str, Any]], Any]] = {
    "会員ID": "id",
    "Bカート会員ID": "id",
    "貴社独自会員ID": "ext_id",
    "会社名": "comp_name",
    "会社名カナ": "comp_name_kana",
    "担当部署": "department",
    "部署名": "department",
    "担当者名": _full_name,
    "担当者姓": "tanto_last_name",
    "担当者名前": "tanto_first_name",
    "メールアドレス": "email",
    "電話番号": "tel",
    "携帯番号": "mobile_phone",
    "郵便番号": "zip",
    "都道府県": "pref",
    "市区町村": "address1",
    "町域番地": "address2",
    "ビル建物名": "address3",
    "住所": _address,
    "価格グループID": "price_group_id",
    "営業担当ID": "salesman_id",
    "状態": "status",
    "登録日時": "created_at",
    "更新日時": "updated_at",
}

#: The names that place the shop's signature (filled by the composer, not from the member).
SIGNATURE_FIELDS = frozenset({"signature", "署名"})
#: The member's signed unsubscribe token (bcartnb.mailtokens.tokens), filled by the composer.
UNSUBSCRIBE_TOKEN_FIELD = "unsubscribe_token"
#: The member's unsubscribe link (the settings' URL or address), filled by the composer.
UNSUBSCRIBE_LINK_FIELDS = frozenset({"unsubscribe_link", "配信停止リンク"})
#: Every name the composer fills rather than the member row.
COMPOSER_FIELDS = SIGNATURE_FIELDS | UNSUBSCRIBE_LINK_FIELDS | {UNSUBSCRIBE_TOKEN_FIELD}

#: The member a template must render against before it is saved: every canonical field set.
SAMPLE_MEMBER: dict[str, Any] = {
    "id": 1,
    "ext_id": "C-0001",
    "comp_name": "株式会社サンプル商事",
    "comp_name_kana": "カブシキガイシャサンプルショウジ",
    "department": "購買部",
    "tanto_last_name": "山田",
    "tanto_first_name": "太郎",
    "email": "taro.yamada@example.co.jp",
    "email_cc": "kobai@example.co.jp",
    "tel": "03-1234-5678",
    "mobile_phone": "090-1234-5678",
    "zip": "100-0001",
    "pref": "東京都",
    "address1": "千代田区",
    "address2": "千代田1-1",
    "address3": "サンプルビル5階",
    "price_group_id": 1,
    "view_group_id": 1,
    "salesman_id": 1,
    "mm_flag": True,
    "status": "有効",
    "created_at": "2025-04-01 09:00:00",
    "updated_at": "2025-10-01 09:00:00",
}


def is_missing(value: Any) -> bool:
    """None, pandas NA/NaT, NaN and blank strings: the values a mail must never show as blank."""
    if value is None:
        return True
    if isinstance(value, str):
        return not value.strip()
    if isinstance(value, float):
        return value != value
    # pandas.NA and NaT without importing pandas here: both refuse bool() or equal nothing.
    try:
        return bool(value != value)
    except (TypeError, ValueError):
        return True


Getter = Callable[[Mapping[str, Any]], Any]


def _getter(name: str) -> Getter | None:
    if name in COMPOSER_FIELDS:
        return None  # the composer's, not the member's
    if name == "member":
        return _shown_member
    alias = FIELD_ALIASES.get(name)
    if callable(alias):
        return lambda m: shown_value(alias(m))
    column = alias if isinstance(alias, str) else name
    if is_quantity(column):
        return lambda m: shown_value(m.get(column), quantity=True)
    return lambda m: shown_value(m.get(column))


def _shown_member(member: Mapping[str, Any]) -> dict[str, Any]:
    """``member``: every value shown as a mail shows it, the blank ones left out."""
    out = {}
    for key, value in member.items():
        shown = shown_value(value, quantity=is_quantity(str(key)))
        if shown is not None:
            out[key] = shown
    return out


_ALIAS_COLUMNS: dict[Callable[[Mapping[str, Any]], Any], tuple[str, ...]] = {
    _full_name: ("tanto_last_name", "tanto_first_name"),
    _address: ("pref", "address1", "address2", "address3"),
}


def columns_for(names: Iterable[str]) -> frozenset[str] | None:
    """The member columns a context of ``names`` reads (None: all of them, for ``member``).

    Composing 10,000 members converts every column it reads to Python values; the date
    columns alone cost more than a template render, so columns nobody reads are skipped.
    """
    columns: set[str] = set()
    for name in names:
        if name in COMPOSER_FIELDS:
            continue
        alias = FIELD_ALIASES.get(name)
        if name == "member" or (callable(alias) and alias not in _ALIAS_COLUMNS):
            return None
        if callable(alias):
            columns.update(_ALIAS_COLUMNS[alias])
        else:
            columns.add(alias if isinstance(alias, str) else name)
    return frozenset(columns)


def context_builder(names: Iterable[str]) -> Callable[[Mapping[str, Any]], dict[str, Any]]:
    """A function member row → Jinja context holding only ``names``, missing values left out.

    Leaving a missing value out (rather than passing None) is what makes StrictUndefined
    raise for it, naming the field. Each value is shown as a mail shows it
    (:func:`~bcartnb.templates.values.shown_value`), which is None for a blank.
    """
    getters = [(n, g) for n in sorted(names) if (g := _getter(n)) is not None]

    def build(member: Mapping[str, Any]) -> dict[str, Any]:
        ctx: dict[str, Any] = {}
        for name, get in getters:
            value = get(member)
            if value is not None:
                ctx[name] = value
        return ctx

    return build


def merge_fields(columns: Iterable[str]) -> list[tuple[str, str]]:
    """Every field a template may use for members with ``columns``: (field, what it is).

    Japanese aliases first (what a shop writes), then the canonical columns, then the
    purchase columns (購入履歴) and custom columns (カスタム項目) that are identifiers. The
    wizard's field list and the "did you mean" of :func:`check_fields` both read this, so
    they cannot disagree.
    """
    out: list[tuple[str, str]] = []
    for alias, target in FIELD_ALIASES.items():
        out.append((alias, target if isinstance(target, str) else "複数の項目から"))
    out.append(("署名", "signature"))
    out.append((UNSUBSCRIBE_TOKEN_FIELD, "配信停止リンクのトークン"))
    for name in CANONICAL_COLUMNS:
        out.append((name, COLUMN_LABELS.get(name, name)))
    canonical = set(CANONICAL_COLUMNS)
    for col in columns:
        name = str(col)
        if name in PURCHASE_COLUMNS:
            out.append((name, "購入履歴"))
        elif name not in canonical and name.isidentifier():
            out.append((name, "カスタム項目"))
    return list(dict.fromkeys(out))


def field_label(name: str) -> str:
    """``会社名`` → ``会社名 (comp_name)`` for messages; canonical names stay as they are."""
    alias = FIELD_ALIASES.get(name)
    return f"{name} ({alias})" if isinstance(alias, str) else name
