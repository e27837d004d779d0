"""Reading B-Cart member CSVs: encodings, headers, dtypes, bad input, and the address rules."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import pandas as pd
import pytest
from email_validator import EmailNotValidError, validate_email
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bcartnb.exceptions import BcartnbError, MembersFileError
from bcartnb.members import (
    CANONICAL_COLUMNS,
    HEADER_ALIASES,
    check_addresses,
    empty_members,
    normalize_address,
    read_members,
)

JA_HEADER = "Bカート会員ID,会社名,メールアドレス,メール案内,価格グループID,登録日時,業種"
ROWS = [
    "1001,㈱さくら商事,sato@example.co.jp,受け取る,3,2024/05/01 12:34:56,卸売",
    "1002,髙島産業株式会社,  Takahashi@Example.JP\u3000,受け取らない,,2025-1-2,",
    "1003,有限会社ﾐﾄﾞﾘ物産,,,5,2026年3月4日,小売",
]


def write(tmp_path: Path, text: str, encoding: str = "cp932", name: str = "m.csv") -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode(encoding))
    return path


def csv_text(header: str = JA_HEADER, rows: list[str] | None = None) -> str:
    return "\r\n".join([header, *(ROWS if rows is None else rows)]) + "\r\n"


def error_of(path: Path) -> str:
    with pytest.raises(MembersFileError) as info:
        read_members(path)
    message = str(info.value)
    assert "\n" not in message
    assert str(path) in message
    assert isinstance(info.value, BcartnbError)
    return message


# --- encodings and headers ---------------------------------------------------------------


@pytest.mark.parametrize("encoding", ["cp932", "shift_jis", "utf-8", "utf-8-sig"])
def test_every_encoding_reads_the_same_members(tmp_path: Path, encoding: str) -> None:
    # plain Shift_JIS has neither ㈱ nor 髙 (CP932 extensions): a file in it is still read
    plain = encoding == "shift_jis"
    rows = [r.replace("㈱", "株式会社").replace("髙", "高") for r in ROWS] if plain else ROWS
    df = read_members(write(tmp_path, csv_text(rows=rows), encoding))
    assert df["id"].tolist() == [1001, 1002, 1003]
    assert df.loc[3, "comp_name"] == ("高" if plain else "髙") + "島産業株式会社"
    assert df.loc[4, "comp_name"] == "有限会社ﾐﾄﾞﾘ物産"
    expected = {"cp932": "cp932", "shift_jis": "cp932", "utf-8": "utf-8", "utf-8-sig": "utf-8-sig"}
    assert df.attrs["encoding"] == expected[encoding]


def test_canonical_headers_read_like_japanese_ones(tmp_path: Path) -> None:
    ja = read_members(write(tmp_path, csv_text(), name="ja.csv"))
    en_header = "id,comp_name,email,mm_flag,price_group_id,created_at,業種"
    en = read_members(write(tmp_path, csv_text(en_header), "utf-8", name="en.csv"))
    pd.testing.assert_frame_equal(ja, en, check_like=False)


def test_full_width_header_variants_map_after_nfkc(tmp_path: Path) -> None:
    header = "会員ID,会社名（カナ）,ＣＣメールアドレス,メールアドレス"
    df = read_members(write(tmp_path, f"{header}\n7,カブシキ,cc@example.jp,a@example.jp\n"))
    assert df.loc[2, "comp_name_kana"] == "カブシキ"
    assert df.loc[2, "email_cc"] == "cc@example.jp"
    assert df.attrs["headers"]["comp_name_kana"] == "会社名（カナ）"


def test_every_contract_alias_maps_to_a_canonical_column() -> None:
    assert set(HEADER_ALIASES.values()) <= set(CANONICAL_COLUMNS)
    for alias in ["Bカート会員ID", "会員ID", "担当部署", "部署名", "ビル建物名など", "状態"]:
        assert alias in HEADER_ALIASES


def test_columns_canonical_first_then_custom_in_file_order(tmp_path: Path) -> None:
    header = "備考,メールアドレス,業種,Bカート会員ID"
    df = read_members(write(tmp_path, f"{header}\nメモ,a@example.jp,卸売,1\n"))
    assert list(df.columns) == [*CANONICAL_COLUMNS, "備考", "業種"]
    assert df.loc[2, "備考"] == "メモ"
    assert "comp_name" in df.attrs["missing_columns"]
    assert "email" not in df.attrs["missing_columns"]


def test_dtypes(tmp_path: Path) -> None:
    df = read_members(write(tmp_path, csv_text()))
    assert df["id"].dtype == "int64"
    assert str(df["price_group_id"].dtype) == "Int64"
    assert df["price_group_id"].isna().tolist() == [False, True, False]
    assert df["mm_flag"].dtype == bool
    assert df["mm_flag"].tolist() == [True, False, False]
    assert str(df["created_at"].dt.tz) == "Asia/Tokyo"
    assert df.loc[2, "created_at"] == pd.Timestamp("2024-05-01 12:34:56", tz="Asia/Tokyo")
    assert df.loc[3, "created_at"] == pd.Timestamp("2025-01-02", tz="Asia/Tokyo")
    assert df.loc[4, "created_at"] == pd.Timestamp("2026-03-04", tz="Asia/Tokyo")
    assert df["updated_at"].isna().all()  # not in the file: blank, still a datetime column
    assert pd.api.types.is_string_dtype(df["業種"])
    assert pd.isna(df.loc[3, "業種"])


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("受け取る", True),
        ("1", True),
        ("true", True),
        ("TRUE", True),
        (" True ", True),
        ("受け取らない", False),
        ("0", False),
        ("false", False),
        ("False", False),
        ("", False),
    ],
)
def test_mm_flag_values(tmp_path: Path, value: str, expected: bool) -> None:
    df = read_members(write(tmp_path, f"id,email,メール案内\n1,a@example.jp,{value}\n"))
    assert bool(df.loc[2, "mm_flag"]) is expected


def test_email_is_trimmed_and_blank_is_missing(tmp_path: Path) -> None:
    df = read_members(write(tmp_path, csv_text()))
    assert df.loc[3, "email"] == "Takahashi@Example.JP"
    assert pd.isna(df.loc[4, "email"])


def test_index_is_the_spreadsheet_row_and_blank_rows_are_dropped(tmp_path: Path) -> None:
    text = "id,email\n1,a@example.jp\n\n,\n2,b@example.jp\n"
    df = read_members(write(tmp_path, text))
    assert df.index.name == "row"
    assert df.index.tolist() == [2, 5]
    assert df["id"].tolist() == [1, 2]


def test_attrs_name_the_source(tmp_path: Path) -> None:
    path = write(tmp_path, csv_text())
    df = read_members(path)
    assert df.attrs["source"] == str(path)
    assert df.attrs["headers"]["email"] == "メールアドレス"


def test_header_only_file_is_an_empty_member_list(tmp_path: Path) -> None:
    df = read_members(write(tmp_path, JA_HEADER + "\n"))
    assert len(df) == 0
    assert df["id"].dtype == "int64"
    assert list(df.columns)[: len(CANONICAL_COLUMNS)] == list(CANONICAL_COLUMNS)


def test_empty_members_has_the_schema() -> None:
    df = empty_members(["業種"])
    assert list(df.columns) == [*CANONICAL_COLUMNS, "業種"]
    assert df["mm_flag"].dtype == bool


def test_quoted_fields_with_commas_and_newlines(tmp_path: Path) -> None:
    text = 'id,email,会社名\n1,a@example.jp,"株式会社A, 本店"\n2,b@example.jp,"二行\n目"\n'
    df = read_members(write(tmp_path, text, "utf-8"))
    assert df["comp_name"].tolist() == ["株式会社A, 本店", "二行\n目"]


# --- bad input ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "missing"), [("会社名,メールアドレス", "id"), ("会員ID,会社名", "email")]
)
def test_missing_required_column(tmp_path: Path, header: str, missing: str) -> None:
    msg = error_of(write(tmp_path, f"{header}\nx,y\n"))
    assert f"missing column {missing}" in msg


@pytest.mark.parametrize(("sep", "word"), [("\t", "tab"), (";", "semicolon")])
def test_other_separators_get_advice(tmp_path: Path, sep: str, word: str) -> None:
    msg = error_of(write(tmp_path, f"id{sep}email\n1{sep}a@example.jp\n"))
    assert f"{word}-separated" in msg


def test_rows_with_fewer_fields_are_blank_at_the_end(tmp_path: Path) -> None:
    text = "id,email,会社名,メール案内,価格グループID\n1,a@example.jp\n2,b@example.jp,x,1,3\n"
    df = read_members(write(tmp_path, text))
    assert pd.isna(df.loc[2, "comp_name"]) and not df.loc[2, "mm_flag"]
    assert pd.isna(df.loc[2, "price_group_id"]) and df.loc[3, "price_group_id"] == 3


def test_unreadable_mm_flag_names_row_and_column(tmp_path: Path) -> None:
    rows = [*ROWS[:2], "1003,A,c@example.jp,たぶん,,,"]
    msg = error_of(write(tmp_path, csv_text(rows=rows)))
    assert "row 4" in msg and "メール案内" in msg and "たぶん" in msg


@pytest.mark.parametrize("value", ["昨日", "2024-02-30", "2024/13/01", "1", "2024-01-01 25:00"])
def test_a_date_that_is_not_one(tmp_path: Path, value: str) -> None:
    msg = error_of(
        write(tmp_path, f"id,email,登録日時\n1,a@example.jp,2024/01/01\n2,b@example.jp,{value}\n")
    )
    assert "row 3" in msg and "登録日時 (created_at)" in msg and value in msg


def test_duplicated_member_ids_name_the_rows(tmp_path: Path) -> None:
    text = "id,email\n5,a@example.jp\n6,b@example.jp\n5,c@example.jp\n"
    msg = error_of(write(tmp_path, text))
    assert "member id 5" in msg and "rows 2, 4" in msg


@pytest.mark.parametrize(
    ("ids", "named"),
    [
        ([1, 2, 2, 3], "member id 2 appears more than once (column id, rows 3, 4)"),
        ([1, 2, 3, 3], "member id 3 appears more than once (column id, rows 4, 5)"),
        ([3, 1, 3], "member id 3 appears more than once (column id, rows 2, 4)"),
        ([2, 1, 2, 1], "member id 2 appears more than once (column id, rows 2, 4) (and 1 more"),
    ],
)
def test_a_repeated_id_is_found_whether_the_ids_are_sorted_or_not(
    tmp_path: Path, ids: list[int], named: str
) -> None:
    """Ids in ascending order are unique without a hash table; equal neighbours are not."""
    text = "id,email\n" + "".join(f"{i},m{n}@example.jp\n" for n, i in enumerate(ids))
    assert named in error_of(write(tmp_path, text))


def test_ascending_ids_read_without_a_word(tmp_path: Path) -> None:
    text = "id,email\n" + "".join(f"{i},m{i}@example.jp\n" for i in (1, 2, 10, 11, 999))
    assert read_members(write(tmp_path, text))["id"].tolist() == [1, 2, 10, 11, 999]


@pytest.mark.parametrize("value", ["abc", "1.5", "-3", "１２"])
def test_an_id_that_is_not_a_whole_number(tmp_path: Path, value: str) -> None:
    msg = error_of(write(tmp_path, f"id,email\n1,a@example.jp\n{value},b@example.jp\n", "utf-8"))
    assert "row 3" in msg and "column id" in msg


def test_a_blank_id(tmp_path: Path) -> None:
    msg = error_of(write(tmp_path, "id,email\n,a@example.jp\n"))
    assert "row 2" in msg and "blank" in msg


def test_a_group_id_that_is_not_a_number(tmp_path: Path) -> None:
    msg = error_of(write(tmp_path, "id,email,価格グループID\n1,a@example.jp,ゴールド\n"))
    assert "row 2" in msg and "価格グループID (price_group_id)" in msg


@pytest.mark.parametrize("content", [b"", b"\xef\xbb\xbf", b"  \r\n\r\n"])
def test_an_empty_file(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "empty.csv"
    path.write_bytes(content)
    assert "is empty" in error_of(path)


def test_an_xlsx_file_is_not_a_csv(tmp_path: Path) -> None:
    path = tmp_path / "members.xlsx"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("[Content_Types].xml", "<Types/>")
        zf.writestr("xl/workbook.xml", "<workbook/>")
    assert "Excel workbook" in error_of(path)


def test_binary_data_is_not_a_csv(tmp_path: Path) -> None:
    path = tmp_path / "photo.csv"
    path.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    assert "not a CSV" in error_of(path)


def test_utf16_is_refused_with_advice(tmp_path: Path) -> None:
    path = write(tmp_path, "id,email\n1,a@example.jp\n", "utf-16")
    assert "UTF-16" in error_of(path)


def test_bytes_that_no_encoding_reads(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_bytes(b"id,email\n1,a@example.jp\n2,\x81\x7f@example.jp\n")
    msg = error_of(path)
    assert "line 3" in msg and "CP932" in msg


def test_a_row_with_too_many_fields(tmp_path: Path) -> None:
    msg = error_of(write(tmp_path, "id,email\n1,a@example.jp\n2,b@example.jp,extra\n"))
    assert "line 3" in msg and "3 fields" in msg


def test_two_headers_for_one_column(tmp_path: Path) -> None:
    # the later one is a custom field (B-Cart exports them after the standard columns)
    df = read_members(write(tmp_path, "会員ID,Bカート会員ID,email\n1,7,a@example.jp\n"))
    assert list(df["id"]) == [1] and list(df["カスタム:Bカート会員ID"]) == [7]
    assert df.attrs["warnings"] == [
        "カスタム項目「Bカート会員ID」は標準の列または他の列と同じ名前のため、"
        "「カスタム:Bカート会員ID」として読み込みました"
        '（テンプレートでは {{ member["カスタム:Bカート会員ID"] }}）。'
    ]


def test_a_column_without_header_but_with_values(tmp_path: Path) -> None:
    msg = error_of(write(tmp_path, "id,email,\n1,a@example.jp,x\n"))
    assert "column 3" in msg


def test_a_trailing_empty_column_is_ignored(tmp_path: Path) -> None:
    df = read_members(write(tmp_path, "id,email,\n1,a@example.jp,\n"))
    assert list(df.columns) == list(CANONICAL_COLUMNS)


def test_missing_file_and_directory(tmp_path: Path) -> None:
    assert "no such member file" in error_of(tmp_path / "nope.csv")
    assert "directory" in error_of(tmp_path)


# --- addresses ---------------------------------------------------------------------------

VALID = [
    "sato@example.co.jp",
    "Sato.Taro@Example.JP",
    "a!#$%&'*+-/=?^_{|}~z@example.com",
    "x@sub.example.ne.jp",
    "user+tag@example.com",
    "1234@example.jp",
    "a-b@ex-ample.jp",
    " padded@example.jp\u3000",
    "\u3000\u3000tab@example.jp\t",
    "x@xn--eckwd4c7c.xn--zckzah",  # punycode, checked by email-validator
    "a--b@example.jp",  # "--" sends it the slow way, and it is fine
    "x@EXAMPLE.JP",
]
INVALID = [
    "no-at-mark.example.jp",
    "double@@example.jp",
    "ｆｕｌｌ@example.jp",
    "田中@example.jp",
    "a@例え.jp",
    "a@ｅｘａｍｐｌｅ.jp",
    "double..dot@example.com",
    ".leading@example.jp",
    "trailing.@example.jp",
    '"quoted"@example.jp',
    "with space@example.jp",
    "back`tick@example.jp",
    "paren(x)@example.jp",
    "comma,x@example.jp",
    "angle<x>@example.jp",
    "nodot@example",
    "bad@-example.jp",
    "bad@example-.jp",
    "under@example_co.jp",
    "x@example..jp",
    "x@.example.jp",
    "x@example.jp.",
    "x@123.456",
    "x@example.test",
    "x@a.TEST",
    "x@xn--zz.jp",
    "x@host.localhost",
    "x@ab--cd.example.jp",
    "x@[127.0.0.1]",
    "x" * 65 + "@example.jp",
    "x@" + "a" * 64 + ".jp",
    "x@" + ".".join(["abcdefghi"] * 26) + ".jp",
    "@example.jp",
    "x@",
]


@pytest.mark.parametrize("address", VALID)
def test_valid_addresses(address: str) -> None:
    assert check_addresses(pd.Series([address])).isna().all()


@pytest.mark.parametrize("address", INVALID)
def test_invalid_addresses(address: str) -> None:
    assert check_addresses(pd.Series([address])).tolist() == ["invalid_address"]


@pytest.mark.parametrize("address", ["", " ", "\u3000", " \t\u3000 ", None])
def test_empty_addresses(address: str | None) -> None:
    assert check_addresses(pd.Series([address], dtype=object)).tolist() == ["empty_address"]


def test_check_addresses_keeps_the_index() -> None:
    s = pd.Series(["a@example.jp", "bad"], index=[7, 9])
    out = check_addresses(s)
    assert out.index.tolist() == [7, 9]
    assert str(out.dtype) == "string"


def test_normalize_address() -> None:
    assert normalize_address("\u3000 a@example.jp \t") == "a@example.jp"
    assert normalize_address(None) == ""
    assert normalize_address("a b@example.jp") == "a b@example.jp"


# The contract's address rule (DESIGN.md, "Addresses"), case by case, written by hand: the
# independent oracle. The property below holds the vectorised check to email-validator's
# verdict on generated addresses; this table holds both to the contract.
ADDRESS_VERDICTS: dict[str | None, str | None] = {
    "a@example.jp": None,
    "  a@example.jp\u3000": None,  # surrounding white space, full-width too, is trimmed
    "Taro.Yamada@Example.CO.JP": None,
    "a+tag@sub.example.co.jp": None,
    "!#$%&'*+-/=?^_{|}~@example.jp": None,  # every symbol the local part may hold
    "a.b.c@example.jp": None,
    "x" * 64 + "@example.jp": None,
    None: "empty_address",
    "": "empty_address",
    " \t\u3000 ": "empty_address",
    "a": "invalid_address",  # no @
    "a@": "invalid_address",
    "@example.jp": "invalid_address",
    "a@@example.jp": "invalid_address",
    "a@example": "invalid_address",  # a domain needs a dot
    ".a@example.jp": "invalid_address",  # leading, trailing, doubled dot
    "a.@example.jp": "invalid_address",
    "a..b@example.jp": "invalid_address",
    'a"b@example.jp': "invalid_address",
    "a`b@example.jp": "invalid_address",
    "a(b)@example.jp": "invalid_address",
    "a,b@example.jp": "invalid_address",
    "a b@example.jp": "invalid_address",
    "<a@example.jp>": "invalid_address",
    "あ@example.jp": "invalid_address",  # non-ASCII
    "a@exa mple.jp": "invalid_address",
    "a@example..jp": "invalid_address",
    "a@-example.jp": "invalid_address",  # not a DNS name
    "x" * 65 + "@example.jp": "invalid_address",  # a local part is at most 64 octets
}


def test_address_verdicts_follow_the_contract_case_by_case() -> None:
    got = check_addresses(pd.Series(list(ADDRESS_VERDICTS), dtype=object))
    verdicts = dict(zip(ADDRESS_VERDICTS, (None if pd.isna(g) else g for g in got), strict=True))
    assert verdicts == ADDRESS_VERDICTS
    assert [reference(a) for a in ADDRESS_VERDICTS if a is not None] == [
        v for a, v in ADDRESS_VERDICTS.items() if a is not None
    ]


_LOCAL = r"[A-Za-z0-9!#$%&'*+/=?^_{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_{|}~-]+)*"


def reference(address: str) -> str | None:
    """The rule as the contract states it, one address at a time with email-validator."""
    text = address.strip(" \t\r\n\v\f\u3000")
    if not text:
        return "empty_address"
    found = re.fullmatch(rf"({_LOCAL})@([A-Za-z0-9.-]+)", text)
    if not found or len(text) > 254 or len(found.group(1)) > 64:
        return "invalid_address"
    try:
        validate_email(
            text, check_deliverability=False, allow_smtputf8=False, allow_quoted_local=False
        )
    except EmailNotValidError:
        return "invalid_address"
    return None


_PIECES = st.sampled_from([*"aZ09.-_@`\"' ()+x", "\u3000", "あ", "ｘ", "xn--", "--", "例え.jp"])
_LABEL = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,8}[a-z0-9])?", fullmatch=True)
_DOMAIN = st.one_of(
    st.lists(_LABEL, min_size=1, max_size=4).map(".".join),
    st.sampled_from(
        ["example.jp", "example.test", "ex--ample.jp", "xn--abc.jp", "a.b", "123.jp", "x.local"]
    ),
)
_ADDRESS = st.one_of(
    st.lists(_PIECES, max_size=30).map("".join),
    st.tuples(st.from_regex(_LOCAL, fullmatch=True), _DOMAIN).map("@".join),
    st.tuples(st.lists(_PIECES, max_size=8).map("".join), _DOMAIN).map("@".join),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_ADDRESS, min_size=1, max_size=20))
def test_vectorised_check_agrees_with_email_validator_row_by_row(addresses: list[str]) -> None:
    got = check_addresses(pd.Series(addresses, dtype=object))
    want = [reference(a) for a in addresses]
    assert [None if pd.isna(g) else g for g in got] == want


# --- the demo member list ------------------------------------------------------------------


def test_demo_members_are_reproducible(repo_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "demo.csv"
    subprocess.run(
        [sys.executable, str(repo_root / "data" / "make_demo_members.py"), "--out", str(out)],
        check=True,
        capture_output=True,
    )
    assert out.read_bytes() == (repo_root / "data" / "demo_members.csv").read_bytes()


def test_demo_members_look_like_a_bcart_export(repo_root: Path) -> None:
    df = read_members(repo_root / "data" / "demo_members.csv")
    assert df.attrs["encoding"] == "cp932"
    assert 250 <= len(df) <= 400
    names = "".join(df["comp_name"])
    for char in ["㈱", "①", "髙", "ｻ"]:
        assert char in names
    assert set(df["pref"].dropna()) >= {"東京都", "大阪府"}
    assert set(df["price_group_id"].dropna()) == {1, 2, 3, 4, 5}
    assert set(df["status"]) == {"有効", "停止"}
    assert df["created_at"].dt.year.between(2023, 2026).all()
    assert {"業種", "会員ランク"} <= set(df.columns)
    domains = df["email"].dropna().str.rsplit("@", n=1).str[-1].str.lower()
    assert all("example" in d for d in domains)
    reasons = check_addresses(df["email"]).value_counts()
    assert reasons["empty_address"] >= 2 and reasons["invalid_address"] >= 10
    lower = df["email"].dropna().str.lower()
    assert lower.duplicated().sum() >= 3
    assert (df["email"].dropna() != lower).any()


# --- hostile files (issue 12) --------------------------------------------------------------


def ja_of(path: Path) -> str:
    with pytest.raises(MembersFileError) as info:
        read_members(path)
    assert "\n" not in info.value.ja and str(path) in info.value.ja
    return info.value.ja


def test_a_nul_byte_past_the_first_64_kib_is_refused_naming_its_line(tmp_path: Path) -> None:
    rows = [f"{1000 + i},会社{i},u{i}@example.co.jp" for i in range(3000)]
    text = "\n".join(["会員ID,会社名,メールアドレス", *rows]) + "\n"
    raw = text.encode("utf-8")
    assert len(raw) > 1 << 16
    line = 2500
    path = tmp_path / "nul.csv"
    lines = raw.split(b"\n")
    lines[line - 1] = lines[line - 1].replace(b"@", b"\x00@")
    path.write_bytes(b"\n".join(lines))
    msg = error_of(path)
    assert "NUL" in msg and f"line {line}," in msg
    assert f"{line} 行目" in ja_of(path)
    lines[line - 1] = lines[line - 1].replace(b"\x00", b"")
    path.write_bytes(b"\n".join(lines))
    assert len(read_members(path)) == 3000  # the same file without it is fine


def test_utf8_rows_then_a_cp932_row_name_that_row_and_column(tmp_path: Path) -> None:
    path = tmp_path / "mixed.csv"
    path.write_bytes(
        "会員ID,会社名,メールアドレス\n1,さくら商事,a@example.jp\n".encode()
        + "2,髙島産業,b@example.jp\n".encode("cp932")
        + "3,みどり物産,c@example.jp\n".encode()
    )
    msg = error_of(path)
    assert "mixes encodings" in msg
    assert "line 3, column 2 (会社名)" in msg
    assert "line 1 is UTF-8" in msg
    assert "3 行目" in ja_of(path) and "UTF-8" in ja_of(path)


def test_cp932_rows_then_a_utf8_row_name_that_row(tmp_path: Path) -> None:
    path = tmp_path / "mixed.csv"
    path.write_bytes(
        "会員ID,会社名,メールアドレス\n1,さくら商事,a@example.jp\n".encode("cp932")
        + "2,みどり物産株式会社,b@example.jp\n".encode()
        + "3,髙島産業,c@example.jp\n".encode("cp932")
    )
    msg = error_of(path)
    assert "mixes encodings" in msg and "line 3 is UTF-8" in msg


def test_ascii_header_cp932_row_then_utf8_row_is_not_garbled_silently(tmp_path: Path) -> None:
    # Read whole as CP932 this decodes without error: row 4 would be mojibake.
    path = tmp_path / "mixed.csv"
    path.write_bytes(
        b"id,comp_name,email\n1,ACME,a@example.jp\n"
        + "2,さくら商事,b@example.jp\n".encode("cp932")
        + "3,みどり物産株式会社,c@example.jp\n".encode()
    )
    msg = error_of(path)
    assert "mixes encodings" in msg
    assert "line 4 is UTF-8" in msg and "line 3, column 2 (comp_name)" in msg


def test_undecodable_byte_names_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_bytes(b"id,comp_name,email\n1,ACME,a@example.jp\n2,\x81\x7f,b@example.jp\n")
    msg = error_of(path)
    assert "line 3, column 2 (comp_name)" in msg


def test_a_plain_cp932_file_with_rare_kanji_is_not_mixed(tmp_path: Path) -> None:
    # Level-2 kanji (lead bytes E0-EA) followed by kana: byte runs that look like UTF-8
    path = tmp_path / "cp932.csv"
    rows = ["1,蘂薇ゃ商事,a@example.jp", "2,劍o,b@example.jp", "3,弓,c@example.jp"]
    path.write_bytes(("id,comp_name,email\n" + "\n".join(rows) + "\n").encode("cp932"))
    df = read_members(path)
    assert df.attrs["encoding"] == "cp932"
    assert df["comp_name"].tolist() == ["蘂薇ゃ商事", "劍o", "弓"]


@pytest.mark.timeout(20)
def test_a_character_device_is_refused_without_reading_it(tmp_path: Path) -> None:
    msg = error_of(Path("/dev/zero"))  # reading it would never end
    assert "not a regular file but a character device" in msg
    assert "通常のファイルではありません" in ja_of(Path("/dev/zero"))


@pytest.mark.timeout(20)
def test_a_fifo_is_refused_without_waiting_for_a_writer(tmp_path: Path) -> None:
    fifo = tmp_path / "members.csv"
    os.mkfifo(fifo)
    assert "named pipe" in error_of(fifo)


def test_a_directory_is_refused_in_one_line(tmp_path: Path) -> None:
    assert "is a directory" in error_of(tmp_path)
    assert "フォルダー" in ja_of(tmp_path)


@pytest.mark.timeout(60)
def test_cli_members_on_dev_zero_exits_2_with_one_line() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "bcartnb", "members", "/dev/zero"],
        capture_output=True,
        text=True,
        timeout=50,
    )
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "not a regular file" in proc.stderr


_CSV_BYTES = st.builds(
    lambda head, rows: head + b"\n" + b"\n".join(rows),
    st.sampled_from(
        [
            b"id,email",
            "会員ID,会社名,メールアドレス,メール案内,登録日時".encode(),
            "会員ID,会社名,メールアドレス,価格グループID".encode("cp932"),
            b"\xef\xbb\xbfid,email,mm_flag,created_at",
        ]
    ),
    st.lists(
        st.one_of(
            st.binary(max_size=40),
            st.text(max_size=30).map(lambda t: t.encode("utf-8")),
            st.text(alphabet='0123456789,"@.ax受け取る\r\n', max_size=30).map(
                lambda t: t.encode("utf-8")
            ),
        ),
        max_size=8,
    ),
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.one_of(st.binary(max_size=300), _CSV_BYTES))
def test_any_bytes_give_a_frame_or_a_bcartnb_error(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "members.csv"
        path.write_bytes(data)
        try:
            frame = read_members(path)
        except BcartnbError as err:
            assert "\n" not in str(err)
        else:
            assert isinstance(frame, pd.DataFrame)


def test_a_first_row_longer_than_the_header_is_an_error_not_a_dropped_value(
    tmp_path: Path,
) -> None:
    # pandas only warned here (and dropped "x"); any later row was already an error
    msg = error_of(write(tmp_path, "id,email\n1,a@example.jp,x\n2,b@example.jp\n"))
    assert "line 2: 3 fields where the header has 2" in msg


# --- custom columns (カスタム項目) are typed by what they hold (issue 14, 10) ---------------


def custom_frame(tmp_path: Path, values: list[str], header: str = "取引開始年") -> pd.DataFrame:
    rows = [f"{i + 1},m{i}@example.jp,{v}" for i, v in enumerate(values)]
    return read_members(write(tmp_path, csv_text(f"会員ID,メールアドレス,{header}", rows)))


def test_whole_numbers_with_blanks_are_nullable_int(tmp_path: Path) -> None:
    df = custom_frame(tmp_path, ["2010", "", " 2019 ", "-3", "0"])
    assert str(df["取引開始年"].dtype) == "Int64"
    assert df["取引開始年"].tolist()[0] == 2010 and pd.isna(df["取引開始年"].iloc[1])
    assert df["取引開始年"].tolist()[2:] == [2019, -3, 0]


@pytest.mark.parametrize(
    "values",
    [
        ["0123", "4567"],  # a code: its leading zero is part of it
        ["2010", "2011年"],  # one value that is not a number: the column is text
        ["12", "1.5"],
        ["+5", "6"],
        ["１２", "3"],  # full-width digits are text, as B-Cart shows them
        ["1234567890123456789"],  # beyond int64's 18 safe digits
        ["2010", "2024/05/01"],  # a number and a date: never two types in one column
    ],
)
def test_a_mixed_or_zero_led_column_stays_text(tmp_path: Path, values: list[str]) -> None:
    df = custom_frame(tmp_path, values)
    assert pd.api.types.is_string_dtype(df["取引開始年"]), df["取引開始年"].dtype
    assert df["取引開始年"].tolist() == [v.strip() for v in values]  # exactly as written


def test_dates_in_any_form_are_tokyo_datetimes(tmp_path: Path) -> None:
    df = custom_frame(tmp_path, ["2024/05/01 12:34:56", "2025-1-2", "", "2026年3月4日"], "契約日")
    col = df["契約日"]
    assert pd.api.types.is_datetime64_any_dtype(col) and str(col.dt.tz) == "Asia/Tokyo"
    assert [None if pd.isna(t) else t.strftime("%Y-%m-%d %H:%M") for t in col] == [
        "2024-05-01 12:34",
        "2025-01-02 00:00",
        None,
        "2026-03-04 00:00",
    ]


@pytest.mark.parametrize("bad", ["2024/02/30", "2024-13-01", "2024/05/01 25:00"])
def test_a_date_shaped_non_date_keeps_the_column_text(tmp_path: Path, bad: str) -> None:
    df = custom_frame(tmp_path, ["2024/05/01", bad], "契約日")
    assert df["契約日"].tolist() == ["2024/05/01", bad]


def test_blank_and_hostile_custom_columns_stay_text(tmp_path: Path) -> None:
    df = custom_frame(tmp_path, ["", "<script>1</script>", '"2010\r\n2011"'], "備考")
    assert pd.api.types.is_string_dtype(df["備考"])
    assert df["備考"].tolist()[1:] == ["<script>1</script>", "2010\r\n2011"]


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(st.lists(st.one_of(st.integers(-(10**17), 10**17), st.none()), min_size=1, max_size=12))
def test_any_whole_numbers_round_trip_as_int(tmp_path: Path, numbers: list[int | None]) -> None:
    with tempfile.TemporaryDirectory(dir=tmp_path) as folder:
        df = custom_frame(Path(folder), ["" if n is None else str(n) for n in numbers])
    col = df["取引開始年"]
    if all(n is None for n in numbers):
        assert col.isna().all()
        return
    assert str(col.dtype) == "Int64"
    assert [None if pd.isna(v) else int(v) for v in col] == numbers


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    st.lists(st.from_regex(r"0[0-9]{1,6}", fullmatch=True), min_size=1, max_size=5),
    st.lists(st.integers(0, 10**6), max_size=5),
)
def test_a_leading_zero_anywhere_keeps_every_value_as_written(
    tmp_path: Path, codes: list[str], numbers: list[int]
) -> None:
    values = [*map(str, numbers), *codes]
    with tempfile.TemporaryDirectory(dir=tmp_path) as folder:
        df = custom_frame(Path(folder), values, "得意先コード")
    assert df["得意先コード"].tolist() == values
