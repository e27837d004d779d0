"""``make demo``: run the demo campaign end to end and say where to look.

Grows with the flow: for now it shows the demo members' audience (送信件数 / 送信できない件数)
for every member and for a narrowed campaign, in Japanese, as the confirmation screen will.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from bcartnb.audience import REASON_LABELS, build_audience, format_summary
from bcartnb.members import read_members

__all__ = ["DEMO_FILTER", "DEMO_MEMBERS", "main"]

DEMO_MEMBERS = Path(__file__).resolve().parent.parent / "data" / "demo_members.csv"
#: 東京都・大阪府の有効な会員、価格グループ 2〜4
DEMO_FILTER: dict[str, Any] = {
    "都道府県": ["東京都", "大阪府"],
    "状態": "有効",
    "price_group_id": {"min": 2, "max": 4},
}


def _mask(address: object) -> str:
    """t***@example.co.jp: the demo prints no whole address, as the report will not."""
    if not isinstance(address, str) or not address.strip():
        return "(空欄)"
    if "@" not in address:
        return "(形式不正)"
    local, _, domain = address.rpartition("@")
    return f"{local[:1]}***@{domain}"


def main(members_path: Path = DEMO_MEMBERS) -> int:
    members = read_members(members_path)
    print(f"デモ会員: {len(members)} 件（{members.attrs['encoding']}）")
    print()
    print("== 全会員（メール案内: 指定なし） ==")
    print(format_summary(build_audience(members)))
    print()
    print("== 絞込とメール案内「受け取る」のみ ==")
    audience = build_audience(members, DEMO_FILTER, opt_in_only=True)
    print(format_summary(audience))
    print()
    print("送信できない会員（先頭 8 件）:")
    for row, member in audience.unsendable.head(8).iterrows():
        print(
            f"  {row:>4} 行目  会員ID {member['id']}  {member['comp_name']}  "
            f"{_mask(member['email'])}  → {REASON_LABELS[member['reason']]}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
