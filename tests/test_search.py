"""The keyword box: every word must appear in company, person or address."""

from __future__ import annotations

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bcartnb.exceptions import FilterError
from bcartnb.search import KEYWORD_COLUMNS, keyword_mask, keyword_terms


def frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "id": [1, 2, 3, 4],
            "comp_name": ["株式会社さくら商事", "ＡＢＣ Trading", "㈱丸山", None],
            "tanto_last_name": ["山田", "佐藤", "鈴木", "山田"],
            "tanto_first_name": ["太郎", "花子", "一郎", "次郎"],
            "pref": ["東京都", "大阪府", "東京都", "北海道"],
            "address1": ["千代田区", "大阪市北区", "港区", "札幌市"],
            "email": ["yamada@example.jp", "sato@example.jp", "s@example.jp", "x@example.jp"],
        },
        dtype=object,
    ).astype({"id": "int64"})


def hits(df: pd.DataFrame, text: str) -> list[int]:
    return df["id"][keyword_mask(df, text)].tolist()


def test_every_word_must_appear_somewhere() -> None:
    df = frame()
    assert hits(df, "山田") == [1, 4]
    assert hits(df, "山田 東京都") == [1]
    assert hits(df, "山田　北海道") == [4]  # a full-width space separates words too
    assert hits(df, "山田 大阪府") == []


def test_joined_name_and_address_match() -> None:
    df = frame()
    assert hits(df, "山田太郎") == [1]
    assert hits(df, "東京都千代田区") == [1]


def test_width_and_case_do_not_matter() -> None:
    df = frame()
    assert hits(df, "abc") == [2]  # ＡＢＣ is full-width
    assert hits(df, "TRADING") == [2]
    assert hits(df, "(株)丸山") == [3]  # ㈱ is (株) after NFKC


def test_email_is_not_searched_and_blank_matches_all() -> None:
    df = frame()
    assert hits(df, "yamada") == []
    assert hits(df, "") == [1, 2, 3, 4]
    assert hits(df, "  ") == [1, 2, 3, 4]
    assert keyword_terms(" Ａ  b ") == ["a", "b"]


def test_no_searchable_column_is_an_error() -> None:
    with pytest.raises(FilterError, match="comp_name"):
        keyword_mask(pd.DataFrame({"id": [1], "email": ["a@b.jp"]}), "x")


names = st.text(alphabet="商事山田東京大阪abcＡＢ", min_size=1, max_size=6)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(names, names), min_size=1, max_size=8), st.data())
def test_matches_the_plain_loop(rows: list[tuple[str, str]], data: st.DataObject) -> None:
    import unicodedata

    df = pd.DataFrame(
        {"id": range(len(rows)), "comp_name": [r[0] for r in rows], "pref": [r[1] for r in rows]}
    )
    word = data.draw(names)
    norm = unicodedata.normalize("NFKC", word).lower()

    def plain(row: tuple[str, str]) -> bool:
        return any(norm in unicodedata.normalize("NFKC", v).lower() for v in row)

    assert keyword_mask(df, word).tolist() == [plain(r) for r in rows]
    assert set(KEYWORD_COLUMNS) >= {"comp_name", "pref"}
