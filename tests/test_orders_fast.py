"""The fast 受注 CSV reader (Arrow) gives exactly the plain one's frame, or its error.

Generated exports: CP932, UTF-8 with or without a BOM, CRLF or LF, every cell quoted or only
where needed, 商品名 with commas, quotes and newlines, blank cells, money as ``¥1,234``,
``1,234円`` or a negative return, days with / or -, headers by any accepted name, in any
order, with extra columns, a 商品カテゴリ column or none, and now and then a blank line, a
short row or a bad cell. :func:`read_orders` is held to :func:`read_orders_plain` (the
reference), frame, types and attrs alike, or the same :class:`OrdersFileError` (row, column).
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import HealthCheck, event, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from bcartnb.exceptions import OrdersFileError
from bcartnb.orders import HEADERS, read_orders, read_orders_plain
from bcartnb.orders.reader import _read_fast


def rarely(good: st.SearchStrategy[str], bad: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """``bad`` now and then: most files read, so that their frames are compared."""
    return st.integers(0, 24).flatmap(lambda n: good if n else bad)


NAMES = st.text(alphabet="りんご梨ｱ①A-1 ,\"'\n\r\t¥", max_size=8)
MONEY = st.one_of(
    st.integers(-50_000, 2_000_000).map(str),
    st.integers(0, 2_000_000).map(lambda n: f"¥{n:,}"),
    st.integers(0, 2_000_000).map(lambda n: f"{n:,}円"),
    st.integers(-9_999, -1).map(lambda n: f"{n:,}"),
    rarely(st.sampled_from([" 1200 ", "￥1,200", "-0"]), st.sampled_from(["1.5", "abc", ""])),
)
GOOD_DAY = st.builds(
    lambda y, m, d, sep, t: f"{y}{sep}{m:02d}{sep}{d:02d}{t}",
    st.integers(2020, 2026),
    st.integers(1, 12),
    st.integers(1, 28),
    st.sampled_from(["/", "-"]),
    st.sampled_from(["", " 10:00:00", " 23:59:59"]),
)
DAYS = rarely(GOOD_DAY, st.sampled_from(["", "2026/13/01", "昨日"]))
MEMBER = st.one_of(
    st.sampled_from(["", " 12 "]), rarely(st.integers(1, 99_999).map(str), st.just("x1"))
)
STATUS = st.sampled_from(["発送済", "新規注文", "キャンセル", "返品", "処理中", "ﾍﾝﾋﾟﾝ", ""])


@st.composite
def exports(draw: st.DrawFn) -> tuple[bytes, bool]:
    """An export's bytes, and whether it is plain CSV the fast reader should take."""
    names = {n: draw(st.sampled_from(heads)) for n, heads in HEADERS.items()}
    if draw(st.booleans()):
        del names["product_category"]
    extra = draw(st.lists(st.sampled_from(["備考", "配送先", "ポイント"]), unique=True, max_size=2))
    columns = draw(st.permutations([*names, *extra]))
    header = [names.get(c, c) for c in columns]
    cell = {
        "order_id": rarely(st.integers(1, 50).map(str), st.just("")),
        "member_id": MEMBER,
        "ordered_at": DAYS,
        "status": STATUS,
        "total": MONEY,
        "product_code": st.sampled_from(["A-100", "B-1", "", "<x>"]),
        "product_name": NAMES,
        "product_category": st.sampled_from(["果物", "野菜", "", " 魚 "]),
    }
    rows = draw(
        st.lists(st.fixed_dictionaries({c: cell.get(c, NAMES) for c in columns}), max_size=8)
    )
    out = io.StringIO()
    newline = draw(st.sampled_from(["\r\n", "\n"]))
    quoting = draw(st.sampled_from([csv.QUOTE_MINIMAL, csv.QUOTE_ALL]))
    writer = csv.writer(out, lineterminator=newline, quoting=quoting)
    writer.writerow(header)
    for r in rows:
        writer.writerow([r[c] for c in columns])
    text = out.getvalue()
    plain = True
    if rows and draw(st.integers(0, 9)) == 0:  # a blank line, or a short row
        cut = text.index(newline) + len(newline)
        odd = draw(st.sampled_from([newline, "1,2" + newline]))
        text = text[:cut] + odd + text[cut:]
        plain = False
    if draw(st.booleans()):
        text = text.removesuffix(newline)
    # two line breaks in a row, even in quotes, may be a blank line pandas skips: read plainly
    plain = plain and not any(two in text for two in ("\n\n", "\r\r", "\n\r"))
    # csv.writer leaves a lone CR unquoted under LF lines: both parsers break the row there
    plain = plain and not (newline == "\n" and "\r" in text)
    encoding = draw(st.sampled_from(["cp932", "utf-8-sig", "utf-8"]))
    if encoding == "cp932":  # CP932 has no U+00A5: its exports write the full-width ￥
        text = text.replace("¥", "￥")
    return text.encode(encoding), plain


def read(reader: object, path: Path) -> pd.DataFrame | tuple[str, str]:
    try:
        return reader(path)  # type: ignore[operator, no-any-return]
    except OrdersFileError as err:
        return str(err), err.ja


@hsettings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(export=exports())
def test_the_fast_reader_gives_the_plain_readers_frame_or_error(
    tmp_path_factory: pytest.TempPathFactory, export: tuple[bytes, bool]
) -> None:
    data, plain = export
    path = tmp_path_factory.mktemp("fast") / "受注.csv"
    path.write_bytes(data)
    want, got = read(read_orders_plain, path), read(read_orders, path)
    if isinstance(want, tuple):
        event("both refused")
        assert got == want
        return
    event(f"read, {'fast' if plain else 'maybe plain'}")
    assert isinstance(got, pd.DataFrame)
    pd.testing.assert_frame_equal(got, want, check_exact=True)
    assert got.attrs == want.attrs
    if plain:  # a well-formed export was read by Arrow, not handed back
        assert _read_fast(path) is not None


def test_a_bad_cell_is_named_alike_by_both(tmp_path: Path) -> None:
    """The same row and column in both messages; the fast reader really read the file."""
    path = tmp_path / "受注.csv"
    text = (
        '受注ID,会員ID,受注日時,対応状況,合計金額,商品名\r\n1,10,2026/01/02,発送済,"￥1,200","a,\r\nb"\r\n'
        "2,11,2026-01-03 10:00:00,発送済,1200円,c\r\n3,12,2026/02/30,発送済,-300,d\r\n"
    )
    path.write_bytes(text.encode("cp932"))
    with pytest.raises(OrdersFileError) as plain:
        read_orders_plain(path)
    with pytest.raises(OrdersFileError) as fast:
        read_orders(path)
    assert str(fast.value) == str(plain.value) and fast.value.ja == plain.value.ja
    assert "row 4, column 受注日時" in str(fast.value)
    good = text.replace("2026/02/30", "2026/02/28")
    path.write_bytes(good.encode("cp932"))
    frame = _read_fast(path)
    assert frame is not None
    assert frame["total"].tolist() == [1200, 1200, -300]
    assert frame["product_name"].tolist() == ["a,\r\nb", "c", "d"]
    pd.testing.assert_frame_equal(frame, read_orders_plain(path), check_exact=True)
