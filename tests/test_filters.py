"""The declarative filter, its Japanese description, and the selection mode."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bcartnb.exceptions import FilterError, SelectionError
from bcartnb.filters import OPERATORS, apply_filter, describe_filter, select, validate_filter
from bcartnb.members import CANONICAL_COLUMNS, read_members

HEADER = (
    "会員ID,会社名,メールアドレス,都道府県,価格グループID,営業担当ID,メール案内,状態,登録日時,業種"
)
ROWS = [
    "1,㈱さくら商事,a@example.jp,東京都,1,101,受け取る,有効,2024/12/31 23:59:59,卸売",
    "2,髙島産業株式会社,b@example.jp,大阪府,2,,受け取らない,有効,2025/01/01 00:00:00,小売",
    "3,有限会社ﾐﾄﾞﾘ商事,c@example.jp,東京都,3,102,受け取る,停止,2025/06/15 12:00:00,卸売",
    "4,丸①物産株式会社,d@example.jp,愛知県,5,101,,有効,2025/12/31 23:59:59,",
    "5,東洋工業株式会社,e@example.jp,福岡県,4,103,1,有効,2026/01/01 00:00:00,製造",
]


@pytest.fixture(scope="module")
def members(tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    path = tmp_path_factory.mktemp("filters") / "members.csv"
    path.write_bytes(("\r\n".join([HEADER, *ROWS]) + "\r\n").encode("cp932"))
    return read_members(path)


def ids(frame: pd.DataFrame) -> list[int]:
    return [int(i) for i in frame["id"]]


# --- every operator ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("flt", "expected"),
    [
        (None, [1, 2, 3, 4, 5]),
        ({}, [1, 2, 3, 4, 5]),
        ({"pref": "東京都"}, [1, 3]),
        ({"price_group_id": 5}, [4]),
        ({"id": 2}, [2]),
        ({"mm_flag": True}, [1, 3, 5]),
        ({"mm_flag": False}, [2, 4]),
        ({"pref": ["東京都", "大阪府"]}, [1, 2, 3]),
        ({"price_group_id": [1, 4]}, [1, 5]),
        ({"comp_name": {"contains": "商事"}}, [1, 3]),
        ({"price_group_id": {"min": 3}}, [3, 4, 5]),
        ({"price_group_id": {"max": 2}}, [1, 2]),
        ({"price_group_id": {"min": 2, "max": 4}}, [2, 3, 5]),
        ({"price_group_id": {"min": 1.5}}, [2, 3, 4, 5]),
        ({"salesman_id": None}, [2]),
        ({"salesman_id": [None, 103]}, [2, 5]),
        ({"業種": None}, [4]),
        ({"created_at": {"from": "2025-01-01"}}, [2, 3, 4, 5]),
        ({"created_at": {"to": "2024-12-31"}}, [1]),
        ({"created_at": {"from": "2025-01-01", "to": "2025-12-31"}}, [2, 3, 4]),
        ({"created_at": "2025-06-15"}, [3]),
        ({"created_at": {"before": "2025-06-15"}}, [1, 2]),
        ({"created_at": {"after": "2025-06-15"}}, [4, 5]),
        ({"created_at": ["2024-12-31", "2026-01-01"]}, [1, 5]),
    ],
)
def test_operators(members: pd.DataFrame, flt: dict[str, Any] | None, expected: list[int]) -> None:
    assert ids(apply_filter(members, flt)) == expected


def test_every_documented_operator_is_exercised() -> None:
    assert set(OPERATORS) == {"contains", "min", "max", "from", "to", "before", "after"}


def test_keys_are_anded(members: pd.DataFrame) -> None:
    flt = {"pref": "東京都", "status": "有効", "comp_name": {"contains": "商事"}}
    assert ids(apply_filter(members, flt)) == [1]


def test_japanese_headers_and_custom_columns_as_keys(members: pd.DataFrame) -> None:
    assert ids(apply_filter(members, {"都道府県": "東京都"})) == [1, 3]
    assert ids(apply_filter(members, {"メール案内": True, "業種": "卸売"})) == [1, 3]
    assert ids(apply_filter(members, {"価格グループID": {"min": 4}})) == [4, 5]
    assert ids(apply_filter(members, {"Bカート会員ID": [2, 3]})) == [2, 3]


def test_result_keeps_columns_index_and_attrs(members: pd.DataFrame) -> None:
    out = apply_filter(members, {"pref": "東京都"})
    assert list(out.columns) == list(members.columns)
    assert out.index.tolist() == [2, 4]  # spreadsheet rows
    assert out.attrs["source"] == members.attrs["source"]


def test_filter_survives_json_unchanged(members: pd.DataFrame) -> None:
    flt = {
        "都道府県": ["東京都", "大阪府"],
        "price_group_id": {"min": 1, "max": 3},
        "created_at": {"from": "2024-01-01", "to": "2025-12-31"},
        "mm_flag": True,
        "comp_name": {"contains": "商事"},
        "salesman_id": [None, 101],
    }
    before = json.dumps(flt, ensure_ascii=False, sort_keys=True)
    again = json.loads(json.dumps(flt, ensure_ascii=False))
    assert again == flt
    assert ids(apply_filter(members, again)) == ids(apply_filter(members, flt)) == [1]
    assert json.dumps(flt, ensure_ascii=False, sort_keys=True) == before  # not mutated


# --- errors that name the key ------------------------------------------------------------


@pytest.mark.parametrize(
    ("flt", "words"),
    [
        ({"prefecture": "東京都"}, ["'prefecture'", "unknown column"]),
        ({"pref": {"startswith": "東"}}, ["'pref'", "'startswith'", "unknown operator"]),
        ({"price_group_id": "3"}, ["'price_group_id'", "whole number"]),
        ({"price_group_id": 3.0}, ["'price_group_id'", "whole number"]),
        ({"price_group_id": True}, ["'price_group_id'", "whole number"]),
        ({"pref": 13}, ["'pref'", "text"]),
        ({"mm_flag": "受け取る"}, ["'mm_flag'", "true or false"]),
        ({"mm_flag": 1}, ["'mm_flag'", "true or false"]),
        ({"pref": ["東京都", 1]}, ["'pref'", "list item"]),
        ({"pref": []}, ["'pref'", "empty list"]),
        ({"pref": {}}, ["'pref'", "empty operator"]),
        ({"comp_name": {"contains": 3}}, ["'comp_name'", "contains"]),
        ({"comp_name": {"contains": ""}}, ["'comp_name'", "contains"]),
        ({"price_group_id": {"contains": "3"}}, ["'price_group_id'", "text column"]),
        ({"pref": {"min": 1}}, ["'pref'", "number column"]),
        ({"price_group_id": {"min": "2"}}, ["'price_group_id'", "number"]),
        ({"created_at": {"min": "2025-01-01"}}, ["'created_at'", "from/to"]),
        ({"pref": {"from": "2025-01-01"}}, ["'pref'", "date column"]),
        ({"created_at": {"from": "01/31/2025"}}, ["'created_at'", "YYYY-MM-DD"]),
        ({"created_at": {"to": "2025-02-30"}}, ["'created_at'", "not a real date"]),
        ({"created_at": {"from": 20250101}}, ["'created_at'", "YYYY-MM-DD"]),
        ({"price_group_id": {"min": 4, "max": 2}}, ["'price_group_id'", "after"]),
        ({"created_at": {"from": "2025-02-01", "to": "2025-01-01"}}, ["'created_at'", "after"]),
        ({"pref": {"東京都"}}, ["'pref'", "unsupported"]),
        ({3: "x"}, ["3", "column name"]),
    ],
)
def test_bad_filters_name_the_key(
    members: pd.DataFrame, flt: dict[Any, Any], words: list[str]
) -> None:
    with pytest.raises(FilterError) as info:
        apply_filter(members, flt)
    message = str(info.value)
    assert "\n" not in message
    for word in words:
        assert word in message
    key = next(iter(flt))
    assert info.value.ja.startswith(f"絞込条件「{key}」: "), info.value.ja  # Japanese first
    assert "\n" not in info.value.ja


def test_a_filter_must_be_a_dict(members: pd.DataFrame) -> None:
    with pytest.raises(FilterError, match="dict"):
        apply_filter(members, ["pref", "東京都"])  # type: ignore[arg-type]


def test_validate_filter_against_column_names_only() -> None:
    conds = validate_filter(
        {"価格グループID": {"min": 2}, "業種": "卸売"}, [*CANONICAL_COLUMNS, "業種"]
    )
    assert [(c.column, c.op, c.value) for c in conds] == [
        ("price_group_id", "min", 2),
        ("業種", "equals", "卸売"),
    ]
    with pytest.raises(FilterError, match="'price_group_id'"):
        validate_filter({"price_group_id": "2"}, CANONICAL_COLUMNS)
    with pytest.raises(FilterError, match="'業種'"):
        validate_filter({"業種": "卸売"}, CANONICAL_COLUMNS)


# --- in Japanese words -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("flt", "words"),
    [
        (None, "条件なし（すべての会員）"),
        ({"pref": "東京都"}, "都道府県が 東京都"),
        (
            {"pref": ["東京都", "大阪府"], "comp_name": {"contains": "商事"}},
            "都道府県が 東京都 または 大阪府、会社名に「商事」を含む",
        ),
        ({"price_group_id": {"min": 2, "max": 5}}, "価格グループIDが 2 以上 5 以下"),
        ({"price_group_id": {"min": 2}}, "価格グループIDが 2 以上"),
        (
            {"created_at": {"from": "2025-01-01", "to": "2025-12-31"}},
            "登録日時が 2025年1月1日 から 2025年12月31日 まで",
        ),
        ({"created_at": {"from": "2025-01-01"}}, "登録日時が 2025年1月1日 以降"),
        ({"created_at": {"to": "2025-12-31"}}, "登録日時が 2025年12月31日 まで"),
        ({"mm_flag": True}, "メール案内が 受け取る"),
        ({"メール案内": False}, "メール案内が 受け取らない"),
        ({"salesman_id": None}, "営業担当IDが 空欄"),
        ({"業種": "卸売", "状態": "有効"}, "業種が 卸売、状態が 有効"),
    ],
)
def test_describe_filter(flt: dict[str, Any] | None, words: str) -> None:
    assert describe_filter(flt) == words


def test_describe_filter_refuses_an_unknown_operator() -> None:
    with pytest.raises(FilterError, match="'between'"):
        describe_filter({"price_group_id": {"between": [1, 2]}})


# --- selection ---------------------------------------------------------------------------


def test_select_everything_in_the_search_result(members: pd.DataFrame) -> None:
    filtered = apply_filter(members, {"pref": "東京都"})
    assert ids(select(filtered, None)) == [1, 3]
    assert ids(select(filtered, [])) == [1, 3]


def test_select_checked_keeps_file_order(members: pd.DataFrame) -> None:
    assert ids(select(members, [5, 2, 2])) == [2, 5]


def test_checked_outside_the_result_names_them(members: pd.DataFrame) -> None:
    filtered = apply_filter(members, {"pref": "東京都"})
    with pytest.raises(SelectionError) as info:
        select(filtered, [1, 2, 99])
    assert str(info.value) == "checked member ids not in the search result: 2, 99"
    with pytest.raises(SelectionError, match=r"result: 4$"):
        select(filtered, [4])


def test_checked_ids_must_be_ints(members: pd.DataFrame) -> None:
    with pytest.raises(SelectionError, match="'1'"):
        select(members, ["1"])  # type: ignore[list-item]
    with pytest.raises(SelectionError, match="True"):
        select(members, [True])


def test_many_outside_ids_are_summarised(members: pd.DataFrame) -> None:
    with pytest.raises(SelectionError, match=r"and 5 more\)$"):
        select(members, list(range(100, 115)))


# --- against a plain-Python reading of the same filter -----------------------------------

_PREFS = ["東京都", "大阪府", "愛知県", "福岡県", "北海道"]
_FILTERS = st.fixed_dictionaries(
    {},
    optional={
        "pref": st.one_of(
            st.sampled_from(_PREFS), st.lists(st.sampled_from(_PREFS), min_size=1, max_size=3)
        ),
        "price_group_id": st.tuples(st.integers(0, 6), st.integers(0, 6)).map(
            lambda t: {"min": min(t), "max": max(t)}
        ),
        "mm_flag": st.booleans(),
        "comp_name": st.sampled_from(["商事", "産業", "株式会社"]).map(lambda s: {"contains": s}),
    },
)


@settings(max_examples=60, deadline=None)
@given(_FILTERS)
def test_vectorised_filter_matches_a_row_loop(members: pd.DataFrame, flt: dict[str, Any]) -> None:
    def keep(row: pd.Series) -> bool:
        for key, spec in flt.items():
            value = row[key]
            if key == "pref" and value not in (spec if isinstance(spec, list) else [spec]):
                return False
            if key == "price_group_id" and not (
                not pd.isna(value) and spec["min"] <= value <= spec["max"]
            ):
                return False
            if key == "mm_flag" and value != spec:
                return False
            if key == "comp_name" and spec["contains"] not in value:
                return False
        return True

    expected = [int(r["id"]) for _, r in members.iterrows() if keep(r)]
    assert ids(apply_filter(members, flt)) == expected


# --- typed custom columns (issue 14, 10) ----------------------------------------------------


@pytest.fixture
def typed(tmp_path: Path) -> pd.DataFrame:
    rows = [
        "1,a@example.jp,2008,0123,2024/01/15,卸売",
        "2,b@example.jp,2010,0456,2024/06/30,小売",
        "3,c@example.jp,,0789,,小売",
        "4,d@example.jp,2019,1000,2025-01-01,",
        "5,e@example.jp,2020,0042,2024年12月31日,卸売",
    ]
    path = tmp_path / "typed.csv"
    path.write_text(
        "会員ID,メールアドレス,取引開始年,得意先コード,契約日,業種\n" + "\n".join(rows) + "\n",
        encoding="utf-8",
    )
    return read_members(path)


def test_a_range_on_a_numeric_custom_column(typed: pd.DataFrame) -> None:
    assert ids(apply_filter(typed, {"取引開始年": {"min": 2010, "max": 2019}})) == [2, 4]
    assert ids(apply_filter(typed, {"取引開始年": [2008, None]})) == [1, 3]
    assert ids(apply_filter(typed, {"契約日": {"from": "2024-06-30", "to": "2024-12-31"}})) == [
        2,
        5,
    ]


@pytest.mark.parametrize(
    ("flt", "english", "japanese"),
    [
        (
            {"得意先コード": {"min": 100}},
            "column '得意先コード' holds text (a custom column is whole numbers only when",
            "min は数の列にだけ使えます。「得意先コード」は文字の列です（カスタム項目は",
        ),
        (
            {"取引開始年": {"contains": "20"}},
            "column '取引開始年' holds a whole number",
            "contains は文字の列にだけ使えます。「取引開始年」は整数の列です（カスタム項目は",
        ),
        (
            {"契約日": {"min": 1}},
            "use from/to for dates",
            "「契約日」は日付（YYYY-MM-DD）の列です。日付には from / to を使ってください。",
        ),
        ({"取引開始年": "2010"}, "must be a whole number", "整数の列なので"),
        ({"得意先コード": 123}, "must be text", '"123" のように'),
    ],
)
def test_an_operator_that_does_not_fit_names_the_column_type(
    typed: pd.DataFrame, flt: dict[str, Any], english: str, japanese: str
) -> None:
    with pytest.raises(FilterError) as info:
        apply_filter(typed, flt)
    assert english in str(info.value)
    assert japanese in info.value.ja


_YEARS = pd.array([2008, 2010, None, 2019, 2020], dtype="Int64")


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(1990, 2030), min_size=2, max_size=2).map(sorted))
def test_a_custom_range_matches_the_plain_comparison(bounds: list[int]) -> None:
    low, high = bounds  # a valid range on every example: the code runs every time
    frame = pd.DataFrame({"id": [1, 2, 3, 4, 5], "取引開始年": _YEARS})
    got = ids(apply_filter(frame, {"取引開始年": {"min": low, "max": high}}))
    want = [
        i for i, y in zip(frame["id"], _YEARS, strict=True) if not pd.isna(y) and low <= y <= high
    ]
    assert got == want


@settings(max_examples=30, deadline=None)
@given(st.lists(st.integers(1990, 2030), min_size=2, max_size=2, unique=True).map(sorted))
def test_a_custom_range_upside_down_is_refused_naming_both_ends(bounds: list[int]) -> None:
    low, high = bounds
    frame = pd.DataFrame({"id": [1, 2, 3, 4, 5], "取引開始年": _YEARS})
    with pytest.raises(FilterError) as info:
        apply_filter(frame, {"取引開始年": {"min": high, "max": low}})
    assert f"min {high} is after max {low}" in str(info.value)
    assert info.value.ja == f"絞込条件「取引開始年」: min（{high}）が max（{low}）より後です。"
