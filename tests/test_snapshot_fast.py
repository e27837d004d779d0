"""A snapshot typed straight from Arrow (members/arrow_typed.py) is the frame the plain rules make.

The oracle is the read as it was before: every column turned into Python strings ("" for
null) and typed by :func:`typed_members`. The fast read must give the same frame (dtypes,
values, index, attrs) or the same error, for any snapshot: custom fields, nulls, Japanese
text, values of every kind written every way, and values no kind allows.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pandas.testing import assert_frame_equal

from bcartnb.exceptions import MembersFileError
from bcartnb.members import arrow_typed, read_members, read_snapshot
from bcartnb.members.columns import COLUMN_KINDS, canonical
from bcartnb.members.snapshot import METADATA_KEY, SNAPSHOT_FORMAT
from bcartnb.members.typed import ID_RE, typed_members

SOURCE = Path("members.parquet")


def plain(table: pa.Table, source: Path = SOURCE) -> pd.DataFrame:
    """The read as it was: Python strings, then the pandas rules."""
    body = pd.DataFrame(
        {
            i: pd.Series(table.column(i).fill_null("").to_pylist(), dtype="str")
            for i in range(table.num_columns)
        },
        index=pd.RangeIndex(table.num_rows),
    )
    return typed_members(list(table.column_names), body, source)


def outcome(read: Any) -> tuple[pd.DataFrame | None, BaseException | None]:
    try:
        return read(), None
    except Exception as err:  # the plain rules' own errors, pandas' too: compared below
        return None, err


def assert_same(table: pa.Table, source: Path = SOURCE) -> pd.DataFrame | None:
    want, want_err = outcome(lambda: plain(table, source))
    got, got_err = outcome(lambda: arrow_typed.typed_table(table, source))
    if want_err is not None:
        assert type(got_err) is type(want_err), (got_err, want_err)
        assert str(got_err) == str(want_err)
        assert getattr(got_err, "ja", None) == getattr(want_err, "ja", None)
        return None
    assert got_err is None, got_err
    assert got is not None and want is not None
    assert list(got.columns) == list(want.columns)
    assert type(got.index) is type(want.index)
    assert_frame_equal(got, want, check_index_type=True, check_exact=True)
    assert got.attrs == want.attrs
    return got


# --- generated snapshots -----------------------------------------------------------------------

SPACE = st.sampled_from(["", " ", "\u3000", "\t", " \u3000 "])
JAPANESE = st.text(
    alphabet=st.sampled_from(list("株式会社丸山物産ｶﾌﾞｼｷ髙﨑〜－・ー 　<>&$\r\n\"'ab01")),
    max_size=12,
)


def padded(values: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.builds(lambda a, v, b: a + v + b, SPACE, values, SPACE)


def fixed_dates(years: tuple[int, int] = (1890, 2230)) -> st.SearchStrategy[str]:
    return st.builds(
        lambda y, mo, d, h, mi, s, a, b, c: (
            f"{y:04d}{a}{mo:02d}{b}{d:02d}{c}{h:02d}:{mi:02d}:{s:02d}"
        ),
        st.integers(*years),
        st.integers(0, 13),
        st.integers(0, 32),
        st.integers(0, 24),
        st.integers(0, 60),
        st.integers(0, 60),
        st.sampled_from("/-."),
        st.sampled_from("/-."),
        st.sampled_from([" ", "T"]),
    )


GOOD_DATES = st.builds(
    lambda ts: ts.strftime(
        "%Y/%m/%d %H:%M:%S",
    ),
    st.datetimes(min_value=pd.Timestamp("1960-01-01"), max_value=pd.Timestamp("2100-12-31")),
)
ODD_DATES = st.sampled_from(
    [
        "2024/5/1",
        "2024/05/01 12:34",
        "2024年5月1日",
        "2024-05-01T12:34:56",
        "2024/05/01 12:34:56.5",
        "2024/05/01  12:34:56",
        "2024/05/01\t12:34:56",
        "２０２４/05/01 12:34:56",
        "0000/01/01 00:00:00",
        "1949/09/10 23:30:00",
        "2024/02/29 00:00:00",
        "2023/02/29 00:00:00",
        "2100/02/29 00:00:00",
        "2000/02/29 23:59:59",
        "May 1",
        "1",
    ]
)
DATES = st.one_of(
    GOOD_DATES, GOOD_DATES.map(lambda d: d.replace("/", "-")), fixed_dates(), ODD_DATES
)
INTS = st.one_of(
    st.integers(0, 10**18 - 1).map(str),
    st.integers(-(10**6), 10**6).map(str),
    st.sampled_from(["007", "0", "-0", "+1", "1.0", "１２", "1e3", "9" * 19, "٣"]),
)
FLAGS = st.sampled_from(
    ["受け取る", "受け取らない", "1", "0", "true", "false", "TRUE", "False", "yes", "İ", "ｔｒｕｅ"]
)
ADDRESSES = st.one_of(
    st.from_regex(r"[a-z0-9.]{1,8}@[a-z]{1,6}\.(jp|com)", fullmatch=True),
    st.sampled_from(["a@b", "@", "ｆｕｌｌ@example.jp", "x y@example.com"]),
)
TEXT = st.one_of(JAPANESE, INTS, DATES, FLAGS)

BY_KIND: dict[str | None, st.SearchStrategy[str]] = {
    "str": TEXT,
    "email": ADDRESSES,
    "int": INTS,
    "bool": FLAGS,
    "datetime": DATES,
    None: TEXT,
}
HEADERS = st.sampled_from(
    [
        "会社名",
        "email",
        "メールアドレス",
        "pref",
        "価格グループID",
        "salesman_id",
        "メール案内",
        "mm_flag",
        "登録日時",
        "updated_at",
        "状態",
        "業種",
        "取引開始年",
        "初回取引日",
        "会員ランク",
        "",
    ]
)


def cells(kind: str | None, n: int, clean: bool) -> st.SearchStrategy[list[str | None]]:
    """n cells of a column: mostly of its kind (``clean``: only that), padded, blank, null."""
    own = BY_KIND[kind]
    if clean:
        one = st.one_of(own, st.none(), st.just(""))
    else:
        one = st.one_of(own, own, padded(own), st.none(), st.just(""), SPACE, TEXT)
    return st.lists(one, min_size=n, max_size=n)


@st.composite
def snapshots(draw: st.DrawFn) -> pa.Table:
    n = draw(st.integers(0, 12))
    clean = draw(st.booleans())
    ids = draw(st.lists(st.integers(1, 10**18 - 1), min_size=n, max_size=n, unique=True))
    id_cells: list[str | None] = [str(i) for i in ids]
    if not clean and n:
        pos = draw(st.integers(0, n - 1))
        id_cells[pos] = draw(st.one_of(padded(INTS), st.none(), SPACE, st.just(str(ids[0]))))
    columns: dict[str, list[str | None]] = {}
    headers = ["id" if draw(st.booleans()) else "Bカート会員ID"]
    columns_list = [id_cells]
    for head in draw(st.lists(HEADERS, max_size=6)):
        name = canonical(head) if head else None
        kind = COLUMN_KINDS.get(name) if name else None
        if kind == "id":
            kind = None
        headers.append(head)
        columns_list.append(draw(cells(kind, n, clean)))
    if "email" not in {canonical(h) for h in headers if h} and draw(st.integers(0, 9)):
        headers.append("email")
        columns_list.append(draw(cells("email", n, clean)))
    order = draw(st.permutations(range(len(headers))))
    del columns
    arrays = [pa.array(columns_list[i], type=pa.string()) for i in order]
    return pa.Table.from_arrays(arrays, names=[headers[i] for i in order])


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(snapshots())
def test_fast_read_is_the_plain_read(table: pa.Table) -> None:
    assert_same(table)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(snapshots(), st.integers(1, 5))
def test_row_groups_and_large_strings_change_nothing(table: pa.Table, group: int) -> None:
    # a file of several row groups reads as chunked columns; large_string as another type
    chunked = pa.Table.from_batches(table.to_batches(max_chunksize=group), schema=table.schema)
    assert_same(chunked)
    large = table.cast(pa.schema([(f.name, pa.large_string()) for f in table.schema]))
    assert_same(large)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=20), INTS, padded(INTS)))
def test_the_digit_check_is_the_id_regex(value: str) -> None:
    assert arrow_typed._matches(pa.array([value]), ID_RE) == bool(re.fullmatch(ID_RE, value))


# --- the fast path is the one taken, and its edges -----------------------------------------------


def table_of(**columns: list[str | None]) -> pa.Table:
    return pa.Table.from_arrays(
        [pa.array(v, type=pa.string()) for v in columns.values()], names=list(columns)
    )


def test_typical_columns_are_typed_in_arrow() -> None:
    """The fast converters settle the columns B-Cart and its API write (else the property
    above would only be comparing the plain rules with themselves)."""
    index = pd.RangeIndex(2, 5, name="row")
    stamps = pa.chunked_array([["2024/05/01 12:34:56", None, "2025-12-31 23:59:59"]])
    got = arrow_typed._FAST["datetime"](stamps, index)
    assert got is not None and str(got.dtype) == "datetime64[us, Asia/Tokyo]"
    assert got.iloc[2] == pd.Timestamp("2025-12-31 23:59:59", tz="Asia/Tokyo")
    flags = pa.chunked_array([["1", None, "受け取らない"]])
    assert arrow_typed._FAST["bool"](flags, index).tolist() == [True, False, False]
    assert arrow_typed._FAST["int"](pa.chunked_array([["3", None, " 5 "]]), index) is not None
    assert arrow_typed._FAST["id"](pa.chunked_array([["1", "2", "3"]]), index) is not None
    for custom in (["12", None, "-3"], ["2024/05/01 00:00:00", "", None], ["小売", "卸", None]):
        assert arrow_typed._FAST[None](pa.chunked_array([custom]), index) is not None
    # what is not settled for certain goes to the plain rules
    odd = pa.chunked_array([["2024/5/1", None, "2024/05/01 12:34:56"]])
    assert arrow_typed._FAST["datetime"](odd, index) is None
    assert (
        arrow_typed._FAST["datetime"](pa.chunked_array([["2024/02/30 00:00:00"] * 3]), index)
        is None
    )


def test_a_null_that_holds_bytes_is_still_blank() -> None:
    """Arrow lets a null slot span bytes of the buffer: the dates are gathered, not viewed."""
    data = b"2024/05/01 12:34:56" + b"junk" + b"2025/01/02 03:04:05"
    offsets = pa.py_buffer(pa.array([0, 19, 23, 42], type=pa.int32()).buffers()[1])
    validity = pa.array([True, False, True]).buffers()[1]
    arr = pa.StringArray.from_buffers(3, offsets, pa.py_buffer(data), validity)
    table = pa.Table.from_arrays(
        [pa.array(["1", "2", "3"]), pa.array(["a@b.jp"] * 3), arr],
        names=["id", "email", "created_at"],
    )
    got = assert_same(table)
    assert got is not None and pd.isna(got["created_at"].iloc[1])
    assert got["created_at"].iloc[2] == pd.Timestamp("2025-01-02 03:04:05", tz="Asia/Tokyo")


def test_blank_rows_dropped_and_blank_ids_named_as_before() -> None:
    blank_row = table_of(id=["1", None, "3"], email=["a@b.jp", None, "c@d.jp"])
    got = assert_same(blank_row)
    assert got is not None and list(got.index) == [2, 4]
    blank_id = table_of(id=["1", "\u3000", "3"], email=["a@b.jp", "x@y.jp", "c@d.jp"])
    with pytest.raises(MembersFileError, match="row 3, column id: member id is blank"):
        arrow_typed.typed_table(blank_id, SOURCE)
    assert_same(blank_id)
    assert_same(table_of(id=[], email=[]))
    headless = table_of(id=["1"], email=["a@b.jp"])
    headless = headless.append_column("", pa.array(["x"]))
    with pytest.raises(MembersFileError, match="column 3 has values but no header"):
        arrow_typed.typed_table(headless, SOURCE)
    assert_same(headless)


def test_bad_values_are_the_plain_errors() -> None:
    """Each refusal comes from the plain rules, word for word (the fast path hands over)."""
    for column, value, words in (
        ("id", "12a", "'12a' is not a member id"),
        ("price_group_id", "1.5", "'1.5' is not a whole number"),
        ("mm_flag", "yes", "'yes' is not 受け取る/受け取らない"),
        ("created_at", "2024/02/30 00:00:00", "is not a date and time"),
        ("updated_at", "2024/05/01 24:00:00", "is not a date and time"),
    ):
        ok = {"id": "1", "price_group_id": "1", "mm_flag": "1"}
        ok.update(created_at="2024/05/01 00:00:00", updated_at="2024/05/01 00:00:00")
        cells_ = {name: [ok[name], ok[name]] for name in ok}
        cells_["id"] = ["1", "2"]
        cells_[column] = [cells_[column][0], value]
        table = table_of(email=["a@b.jp", "c@d.jp"], **cells_)
        with pytest.raises(MembersFileError, match=re.escape(words)) as err:
            arrow_typed.typed_table(table, SOURCE)
        assert "row 3" in str(err.value) and err.value.ja
        assert_same(table)


def write(table: pa.Table, path: Path) -> Path:
    info = {"format": SNAPSHOT_FORMAT, "pulled_at": "2026-12-06T09:00:00+09:00", "api_url": "u"}
    pq.write_table(table.replace_schema_metadata({METADATA_KEY: json.dumps(info).encode()}), path)
    return path


def test_a_snapshot_file_reads_as_the_plain_frame(tmp_path: Path) -> None:
    table = table_of(
        id=["1001", "1002", "1003"],
        email=[" a@b.jp\u3000", None, "c@d.jp"],
        comp_name=["株式会社<script>", "", None],
        mm_flag=["1", "0", None],
        created_at=["2024-05-01 12:34:56", None, "2024/05/02 00:00:00"],
        業種=["小売", None, "卸"],
        取引開始年=["2010", None, "1999"],
    )
    path = write(table, tmp_path / "s.parquet")
    got = read_members(path)
    want = plain(pq.read_table(path), path)
    assert_frame_equal(got, read_snapshot(path))
    assert_frame_equal(got, want, check_index_type=True, check_exact=True)
    assert got.attrs == {
        **want.attrs,
        "encoding": None,
        "pulled_at": "2026-12-06T09:00:00+09:00",
        "api_url": "u",
    }
    assert str(got["取引開始年"].dtype) == "Int64" and got.loc[2, "email"] == "a@b.jp"
