"""Make the synthetic demo member list ``data/demo_members.csv`` (deterministic, seeded).

    python data/make_demo_members.py                      # rewrites data/demo_members.csv
    python data/make_demo_members.py --rows 100000 --out /tmp/members.csv

It looks like a B-Cart 会員一覧 CSV export: CP932, Japanese headers, CRLF line ends,
登録日時 as ``2024/05/01 12:34:56``, two custom columns (業種, 会員ランク). Company names
carry the characters that matter for ISO-2022-JP later (㈱, ①, 髙, 﨑, half-width kana).
A share of the members has an address of each unsendable kind, and some share an address
with an earlier member in another case. Only example domains appear: no mail can ever
reach a real person from the demo.
"""

from __future__ import annotations

import argparse
import bisect
import csv
import datetime as dt
import random
import sys
from collections.abc import Sequence
from pathlib import Path

__all__ = ["BAD_ADDRESSES", "HEADERS", "Earlier", "make_members", "write_members"]

SEED = 20261127
DOMAINS = ("example.co.jp", "example.com", "example.jp", "example.ne.jp")
HEADERS = (
    "Bカート会員ID",
    "貴社独自会員ID",
    "会社名",
    "会社名(カナ)",
    "担当部署",
    "担当者(姓)",
    "担当者(名)",
    "メールアドレス",
    "CCメールアドレス",
    "電話番号",
    "郵便番号",
    "都道府県",
    "市区町村",
    "町域・番地",
    "ビル建物名など",
    "価格グループID",
    "営業担当ID",
    "メール案内",
    "状態",
    "登録日時",
    "更新日時",
    "業種",
    "会員ランク",
)
# (surname, reading, romaji)
SURNAMES = (
    ("田中", "タナカ", "tanaka"),
    ("佐藤", "サトウ", "sato"),
    ("鈴木", "スズキ", "suzuki"),
    ("髙橋", "タカハシ", "takahashi"),
    ("山﨑", "ヤマザキ", "yamazaki"),
    ("伊藤", "イトウ", "ito"),
    ("渡辺", "ワタナベ", "watanabe"),
    ("中村", "ナカムラ", "nakamura"),
    ("小林", "コバヤシ", "kobayashi"),
    ("加藤", "カトウ", "kato"),
    ("吉田", "ヨシダ", "yoshida"),
    ("山田", "ヤマダ", "yamada"),
)
GIVEN = ("太郎", "花子", "健一", "美咲", "誠", "由美", "大輔", "直子", "翔", "陽子")
# (core name, reading)
CORES = (
    ("さくら", "サクラ"),
    ("みどり", "ミドリ"),
    ("東洋", "トウヨウ"),
    ("富士", "フジ"),
    ("大和", "ヤマト"),
    ("ひかり", "ヒカリ"),
    ("髙島", "タカシマ"),
    ("北斗", "ホクト"),
    ("青葉", "アオバ"),
    ("丸山", "マルヤマ"),
    ("丸①", "マルイチ"),
    ("ﾐﾄﾞﾘ", "ミドリ"),
    ("ｻﾝﾗｲｽﾞ", "サンライズ"),
)
TRADES = (
    ("商事", "ショウジ"),
    ("産業", "サンギョウ"),
    ("物産", "ブッサン"),
    ("食品", "ショクヒン"),
    ("工業", "コウギョウ"),
    ("製作所", "セイサクショ"),
    ("販売", "ハンバイ"),
)
FORMS = (
    ("株式会社", "カブシキガイシャ"),
    ("有限会社", "ユウゲンガイシャ"),
    ("㈱", "カブシキガイシャ"),
)
PREFS = (
    ("東京都", "千代田区", "100-0001"),
    ("東京都", "港区", "105-0001"),
    ("大阪府", "大阪市北区", "530-0001"),
    ("神奈川県", "横浜市西区", "220-0001"),
    ("愛知県", "名古屋市中区", "460-0001"),
    ("福岡県", "福岡市博多区", "812-0001"),
    ("北海道", "札幌市中央区", "060-0001"),
    ("宮城県", "仙台市青葉区", "980-0001"),
    ("広島県", "広島市中区", "730-0001"),
    ("京都府", "京都市下京区", "600-8001"),
)
DEPARTMENTS = ("営業部", "購買部", "総務部", "仕入課", "", "")
BUILDINGS = ("", "", "第①ビル 3F", "ｻﾝｼｬｲﾝ館 201", "髙木ビル 5階", "")
INDUSTRIES = ("卸売", "小売", "飲食", "製造", "サービス")
RANKS = ("ゴールド", "シルバー", "ブロンズ", "")
# One of each kind B-Cart cannot register, and blank ones; cycled over the members chosen.
BAD_ADDRESSES = (
    "",
    "\u3000",
    "  ",
    "no-at-mark.example.jp",
    "double@@example.jp",
    "ｆｕｌｌｗｉｄｔｈ@example.jp",
    "田中@example.co.jp",
    "double..dot@example.com",
    ".leading@example.jp",
    "trailing.@example.ne.jp",
    '"quoted"@example.jp',
    "with space@example.com",
    "paren(営業)@example.co.jp",
    "comma,name@example.jp",
    "nodot@example",
    "bad@-example.jp",
    "under@example_co.jp",
)


class Earlier:
    """The members before a position that do not hold a bad address, drawn from without
    listing them: listing them for every duplicate made 1M members take a quarter of an hour.
    """

    def __init__(self, bad: list[int]) -> None:
        self.bad = sorted(bad)
        # how many members below each bad position are drawable: the k-th drawable member is
        # k plus the number of bad positions whose count is at most k
        self.below = [b - i for i, b in enumerate(self.bad)]

    def draw(self, rng: random.Random, pos: int) -> int | None:
        """What ``rng.choice([j for j in range(pos) if j not in bad])`` gives, with the same
        draw from ``rng`` (so a seed makes the same file as before); None, drawing nothing,
        when there is no such member."""
        count = pos - bisect.bisect_left(self.bad, pos)
        if not count:
            return None
        k = rng.choice(range(count))
        return k + bisect.bisect_right(self.below, k)


def make_members(rows: int = 300, seed: int = SEED) -> list[dict[str, str]]:
    """The member rows as B-Cart would export them (every value text)."""
    rng = random.Random(seed)
    start = dt.datetime(2023, 1, 1)
    span = int((dt.datetime(2026, 10, 31) - start).total_seconds())
    members: list[dict[str, str]] = []
    for i in range(rows):
        member_id = 1001 + i
        last, _kana, romaji = rng.choice(SURNAMES)
        core, core_kana = rng.choice(CORES)
        trade, trade_kana = rng.choice(TRADES)
        form, form_kana = rng.choice(FORMS)
        before = rng.random() < 0.7
        name = f"{form}{core}{trade}" if before else f"{core}{trade}{form}"
        kana = f"{form_kana}{core_kana}{trade_kana}" if before else f"{core_kana}{trade_kana}"
        pref, city, zip_code = rng.choice(PREFS)
        created = start + dt.timedelta(seconds=rng.randrange(span))
        updated = created + dt.timedelta(seconds=rng.randrange(86400 * 200))
        updated = min(updated, dt.datetime(2026, 11, 20, 18, 0))
        domain = rng.choice(DOMAINS)
        cc = f"office{member_id}@{domain}" if rng.random() < 0.15 else ""
        flag = rng.choices(("受け取る", "受け取らない", ""), weights=(7, 2, 1))[0]
        members.append(
            {
                "Bカート会員ID": str(member_id),
                "貴社独自会員ID": f"C{member_id:06d}" if rng.random() < 0.8 else "",
                "会社名": name,
                "会社名(カナ)": kana,
                "担当部署": rng.choice(DEPARTMENTS),
                "担当者(姓)": last,
                "担当者(名)": rng.choice(GIVEN),
                "メールアドレス": f"{romaji}{member_id}@{domain}",
                "CCメールアドレス": cc,
                "電話番号": f"0{rng.randrange(3, 99)}-{rng.randrange(1000, 9999)}-"
                f"{rng.randrange(1000, 9999)}",
                "郵便番号": zip_code,
                "都道府県": pref,
                "市区町村": city,
                "町域・番地": f"{rng.randrange(1, 9)}-{rng.randrange(1, 30)}"
                f"-{rng.randrange(1, 20)}",
                "ビル建物名など": rng.choice(BUILDINGS),
                "価格グループID": str(rng.randrange(1, 6)),
                "営業担当ID": str(rng.randrange(101, 106)) if rng.random() < 0.85 else "",
                "メール案内": flag,
                "状態": "有効" if rng.random() < 0.9 else "停止",
                "登録日時": created.strftime("%Y/%m/%d %H:%M:%S"),
                "更新日時": updated.strftime("%Y/%m/%d %H:%M:%S"),
                "業種": rng.choice(INDUSTRIES),
                "会員ランク": rng.choice(RANKS),
            }
        )
    # Unsendable addresses of every kind, then addresses that an earlier member already has
    # (in another case), then valid ones padded with spaces that must be trimmed.
    n_bad = max(len(BAD_ADDRESSES), rows * 6 // 100)
    n_dup = max(8, rows * 3 // 100)
    n_pad = max(4, rows // 100)
    chosen = rng.sample(range(rows), min(rows, n_bad + n_dup + n_pad))
    for k, pos in enumerate(chosen[:n_bad]):
        members[pos]["メールアドレス"] = BAD_ADDRESSES[k % len(BAD_ADDRESSES)]
    earlier = Earlier(chosen[:n_bad])
    for pos in chosen[n_bad : n_bad + n_dup]:
        source_pos = earlier.draw(rng, pos)
        if source_pos is None:
            continue
        source = members[source_pos]["メールアドレス"]
        local, _, domain = source.partition("@")
        members[pos]["メールアドレス"] = f"{local.capitalize()}@{domain.upper()}"
    for pos in chosen[n_bad + n_dup :]:
        members[pos]["メールアドレス"] = f" {members[pos]['メールアドレス']}\u3000"
    return members


def write_members(members: list[dict[str, str]], path: Path, encoding: str = "cp932") -> None:
    """Write as B-Cart does: the given encoding, CRLF, every field quoted only when needed."""
    with path.open("w", encoding=encoding, newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=HEADERS, lineterminator="\r\n")
        writer.writeheader()
        writer.writerows(members)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=300)
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--encoding", default="cp932")
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("demo_members.csv"))
    args = parser.parse_args(argv)
    write_members(make_members(args.rows, args.seed), args.out, args.encoding)
    print(f"wrote {args.rows} members to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
