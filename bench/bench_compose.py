"""Compose speed: Composer.compose_all against one EmailMessage per member, same script.

The baseline is the straightforward implementation with the templates compiled once: per
member render subject and body, append the signature, (HTML: css-inline and html2text on the
rendered HTML), then ``EmailMessage`` + ``set_content`` / ``add_alternative`` + headers +
``as_bytes``. Both use the demo templates from ``data/templates`` and synthetic members.

    .venv/bin/python bench/bench_compose.py [--members 10000]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pandas as pd

from bcartnb.compose import ComposedMail, Composer, Draft
from bcartnb.settings import Settings
from bcartnb.templates import TemplateStore

ROOT = Path(__file__).resolve().parent.parent
PREFS = ["東京都", "大阪府", "愛知県", "福岡県", "北海道", "宮城県", "広島県", "京都府"]
LAST = ["佐藤", "鈴木", "高橋", "田中", "伊藤", "渡辺", "山本", "中村", "小林", "加藤"]
FIRST = ["太郎", "花子", "一郎", "美咲", "健太", "由美", "翔", "陽子"]
SETTINGS = Settings(
    from_addr="info@shop.example.co.jp",
    from_name="サンプル商店",
    signature=(
        "━━━━━━━━━━━━━━━━\nサンプル商店 営業部\n〒100-0001 東京都千代田区千代田1-1\n"
        "TEL 03-0000-0000 / shop.example.co.jp\n━━━━━━━━━━━━━━━━"
    ),
    unsubscribe_url="https://shop.example.co.jp/mail/stop?id={{ id }}",
    unsubscribe_mailto="stop@shop.example.co.jp",
)
NOW = datetime(2026, 11, 27, 10, 0, tzinfo=ZoneInfo("Asia/Tokyo"))


def members(n: int) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "id": range(1, n + 1),
            "email": [f"member{i}@example.co.jp" for i in range(1, n + 1)],
            "comp_name": [f"株式会社サンプル{i}商事" for i in range(1, n + 1)],
            "tanto_last_name": [LAST[i % len(LAST)] for i in range(n)],
            "tanto_first_name": [FIRST[i % len(FIRST)] for i in range(n)],
            "pref": [PREFS[i % len(PREFS)] for i in range(n)],
            "mm_flag": [True] * n,
        }
    ).astype({"email": "string", "comp_name": "string", "pref": "string"})


def baseline(composer: Composer, df: pd.DataFrame) -> int:
    total = 0
    for record in df.to_dict("records"):
        row = {str(k): v for k, v in record.items()}
        subject, text, html = composer.render_reference(row)
        mail = ComposedMail(
            member_id=row["id"],
            to=row["email"],
            subject=subject,
            text=text,
            html=html,
            raw=b"",
            message_id=composer.message_id(row["id"]),
            date="Fri, 27 Nov 2026 10:00:00 +0900",
            list_unsubscribe=f"<https://shop.example.co.jp/mail/stop?id={row['id']}>",
        )
        total += len(composer.to_email_message(mail).as_bytes())
    return total


def fast(composer: Composer, df: pd.DataFrame) -> int:
    return sum(len(m.raw) for m in composer.compose_all(df))


def timed(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--members", type=int, default=10_000)
    args = parser.parse_args()
    store = TemplateStore(ROOT / "data" / "templates")
    df = members(args.members)
    n = len(df)
    print(f"members: {n}")
    print(f"{'template':<28}{'baseline msg/s':>16}{'fast msg/s':>12}{'ratio':>8}  fast path")
    for name in ("テキストニュースレター", "HTMLニュースレター"):
        draft = Draft.from_template(store.get(name))
        base_c = Composer(draft, SETTINGS, "bench", clock=lambda: NOW)
        fast_c = Composer(draft, SETTINGS, "bench", clock=lambda: NOW)
        t_base = timed(partial(baseline, base_c, df))
        t_fast = timed(partial(fast, fast_c, df))
        paths = f"html={fast_c.fast_html} text={fast_c.fast_text}" if draft.html else "-"
        print(
            f"{name:<28}{n / t_base:>16,.0f}{n / t_fast:>12,.0f}{t_base / t_fast:>7.1f}x  {paths}"
        )
    draft = Draft.from_template(store.get("テキストニュースレター"), encoding="iso-2022-jp")
    c = Composer(draft, SETTINGS, "bench", clock=lambda: NOW)
    t = timed(lambda: fast(c, df))
    print(f"{'テキスト (ISO-2022-JP)':<28}{'':>16}{n / t:>12,.0f}")


if __name__ == "__main__":
    main()
