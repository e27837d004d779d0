"""B-Cart's customer keys, the merge fields every member has, shared by the template tests:
written out by hand from the README's merge field table and B-Cart's customer keys, never
taken from the code under test, so a test that holds the code's own list against it can fail."""

from __future__ import annotations

BCART_KEYS: frozenset[str] = frozenset(
    {
        "id",
        "ext_id",
        "comp_name",
        "comp_name_kana",
        "department",
        "tanto_last_name",
        "tanto_first_name",
        "email",
        "email_cc",
        "tel",
        "mobile_phone",
        "zip",
        "pref",
        "address1",
        "address2",
        "address3",
        "price_group_id",
        "view_group_id",
        "salesman_id",
        "mm_flag",
        "status",
        "created_at",
        "updated_at",
    }
)
