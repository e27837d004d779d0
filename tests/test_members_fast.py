"""The fast member reader (UTF-8 bytes a megabyte at a time, parsed by Arrow) against the plain
one (the whole text decoded, parsed by pandas): the same frame, or the same error.

One truth per rule: the plain reader is the reference, and whatever the fast one cannot read
exactly as it does is left to it. The property below writes member files the way B-Cart, Excel
and people do (UTF-8, UTF-8 with a BOM, CP932; quoted or not; CRLF or LF) and the way they
break (short and long rows, blank lines, NUL, a quote left open, encodings mixed), and holds
the two readers to each other on every one.
"""

from __future__ import annotations

import csv
import io
import tempfile
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from bcartnb.exceptions import MembersFileError
from bcartnb.members import arrowcsv, decode, read_members, reader
from bcartnb.members.arrowcsv import parse_utf8
from bcartnb.members.reader import read_members_plain

# every character here is in CP932, so any file of them can be written in any encoding
TEXT = st.text(alphabet='ab Z09@.-_,"\r\n\t\u3000あア漢髙﨑①ｱ㈱', max_size=12)
COLUMNS = {
    "会社名": TEXT,
    "メール案内": st.sampled_from(["受け取る", "受け取らない", "", "1", " true ", "たぶん"]),
    "価格グループID": st.sampled_from(["", "3", " 4 ", "x"]),
    "登録日時": st.sampled_from(["2024/05/01 12:34:56", "2024-5-1", "", "2024年5月1日", "昨日"]),
    "業種": TEXT,
    "取引開始年": st.sampled_from(["2010", "", "0123", "-3"]),
    "": st.sampled_from(["", "", "x"]),
    '備考 "メモ", 他': TEXT,
}
EMAILS = st.sampled_from(["a@example.jp", " B@Example.com\u3000", "", "bad", "a@example.jp"])


@st.composite
def member_rows(draw: st.DrawFn) -> list[list[str]]:
    """A header and rows of cells (ids mostly unique whole numbers)."""
    extra = draw(st.lists(st.sampled_from(sorted(COLUMNS)), unique=True, max_size=4))
    header = [draw(st.sampled_from(["会員ID", "id"])), "メールアドレス", *extra]
    rows = []
    for n in range(draw(st.integers(0, 6))):
        member_id = draw(st.sampled_from([str(n + 1)] * 8 + [" 7 ", "", "1.5", str(n)]))
        rows.append([member_id, draw(EMAILS), *(draw(COLUMNS[c]) for c in extra)])
    return [header, *rows]


def written(rows: list[list[str]], quoting: str, newline: str) -> str:
    if quoting == "naive":  # no quoting at all: a comma or quote in a value breaks its row
        return "".join(",".join(row) + newline for row in rows)
    out = io.StringIO()
    style = csv.QUOTE_ALL if quoting == "all" else csv.QUOTE_MINIMAL
    csv.writer(out, quoting=style, lineterminator=newline).writerows(rows)
    return out.getvalue()


ODDITIES = [
    "none",
    "short row",
    "long row",
    "blank line",
    "blank lines at the end",
    "spaces line",
    "no final newline",
    "open quote at the end",
    "lone CR",
    "NUL",
    "mixed encodings",
    "undecodable byte",
]


@st.composite
def member_files(draw: st.DrawFn) -> bytes:
    rows = draw(member_rows())
    quoting = draw(st.sampled_from(["minimal", "minimal", "all", "naive"]))
    newline = draw(st.sampled_from(["\r\n", "\n"]))
    encoding = draw(st.sampled_from(["cp932", "utf-8", "utf-8-sig"]))
    oddity = draw(st.sampled_from(ODDITIES))
    event(f"{quoting}, {encoding}, {oddity}")
    lines = written(rows, quoting, newline).split(newline)[:-1]
    at = draw(st.integers(1, max(1, len(lines))))
    if oddity == "short row" and len(lines) > 1:
        lines[at - 1] = lines[at - 1].rsplit(",", 1)[0]
    elif oddity == "long row":
        lines[at - 1] += ",x"
    elif oddity in ("blank line", "spaces line"):
        lines.insert(at, "" if oddity == "blank line" else "  ")
    elif oddity == "lone CR":
        lines[at - 1] += "\r"
    text = newline.join(lines) + newline
    if oddity == "blank lines at the end":
        text += newline * 2
    elif oddity == "no final newline":
        text = text[: -len(newline)]
    elif oddity == "open quote at the end":
        text += '1,"a@example.jp' + newline
    if oddity == "mixed encodings":  # the later half written in the other encoding
        half = len(text) // 2
        other = "utf-8" if encoding == "cp932" else "cp932"
        return text[:half].encode(encoding) + text[half:].encode(other)
    data = text.encode(encoding)
    if oddity == "NUL":
        data = data[: len(data) // 2] + b"\x00" + data[len(data) // 2 :]
    elif oddity == "undecodable byte":
        data += b"1,\x81\x7f@example.jp" + newline.encode()
    return data


def outcome(read: object, path: Path) -> pd.DataFrame | tuple[str, str]:
    try:
        return read(path)  # type: ignore[operator, no-any-return]
    except MembersFileError as err:
        return str(err), err.ja


def assert_same(fast: pd.DataFrame | tuple[str, str], plain: pd.DataFrame | tuple[str, str]):
    if isinstance(plain, tuple) or isinstance(fast, tuple):
        assert fast == plain
        return
    pd.testing.assert_frame_equal(fast, plain, check_exact=True)
    assert fast.attrs == plain.attrs


#: bytes a block the file is read in (decode._CHUNK): a character, a line and a quoted value
#: cut anywhere, and the whole file in one
CHUNKS = st.sampled_from([1, 2, 3, 7, 64, 1 << 20])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=member_files(), chunk=CHUNKS)
def test_the_fast_reader_gives_the_plain_readers_frame_or_error(data: bytes, chunk: int) -> None:
    with tempfile.TemporaryDirectory() as folder, pytest.MonkeyPatch.context() as patch:
        patch.setattr(decode, "_CHUNK", chunk)
        path = Path(folder) / "members.csv"
        path.write_bytes(data)
        plain = outcome(read_members_plain, path)
        event("frame" if isinstance(plain, pd.DataFrame) else "error")
        assert_same(outcome(read_members, path), plain)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rows=member_rows(),
    quoting=st.sampled_from(["minimal", "all"]),
    newline=st.sampled_from(["\r\n", "\n"]),
    encoding=st.sampled_from(["cp932", "utf-8", "utf-8-sig"]),
    chunk=CHUNKS,
)
def test_every_well_formed_file_is_read_the_fast_way(
    rows: list[list[str]], quoting: str, newline: str, encoding: str, chunk: int
) -> None:
    """Not a property that passes by declining: a well-formed file in any encoding, however
    its blocks cut it, is parsed by Arrow as it streams (a value its column refuses is
    refused there, as the plain way refuses it)."""
    with tempfile.TemporaryDirectory() as folder, pytest.MonkeyPatch.context() as patch:
        patch.setattr(decode, "_CHUNK", chunk)
        path = Path(folder) / "members.csv"
        # csv quotes a value holding a character of its line ending: a lone CR needs CRLF
        newline = "\r\n" if quoting == "minimal" else newline
        path.write_bytes(written(rows, quoting, newline).encode(encoding))
        try:
            fast = reader._read_fast(path)
        except MembersFileError:
            event("a value refused")
            return
        assert fast is not None
        frame, read_as = fast
        assert read_as == encoding
        assert len(frame) <= len(rows) - 1


@pytest.mark.parametrize(
    ("late", "why"),
    [
        (b"\x00", "a NUL"),
        ("漢字のUTF-8の行".encode(), "a line of Japanese in UTF-8"),
        (b"\x81\x7f", "a byte CP932 cannot read"),
        (b"\x82", "a character cut off at the end"),
    ],
)
def test_what_a_later_block_holds_sends_the_file_to_the_plain_way(
    tmp_path: Path, late: bytes, why: str
) -> None:
    """Met blocks after the parse began: the fast way stops and the plain one says why."""
    rows = "".join(f"{n},m{n}@example.jp,髙﨑①ｱ㈱\r\n" for n in range(1, 3000))
    path = tmp_path / "members.csv"
    path.write_bytes(f"会員ID,メールアドレス,会社名\r\n{rows}".encode("cp932") + b"1," + late)
    assert path.stat().st_size > 3 * 16_384
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(decode, "_CHUNK", 16_384)
        assert reader._read_fast(path) is None, why
        with pytest.raises(MembersFileError) as err:
            read_members(path)
    assert str(err.value) == outcome(read_members_plain, path)[0]


def test_a_block_longer_than_arrows_is_given_in_parts(tmp_path: Path) -> None:
    """Arrow asks for its block size; a longer block (a long line of half-width kana, three
    times its CP932 bytes) is given a part at a time, and read the same."""
    kana = "ｱｲｳｴｵ" * 40
    text = "会員ID,メールアドレス,会社名\r\n" + "".join(
        f"{n},m{n}@example.jp,{kana}\r\n" for n in range(1, 200)
    )
    path = tmp_path / "members.csv"
    path.write_bytes(text.encode("cp932"))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(arrowcsv, "_BLOCK", 1 << 12)
        patch.setattr(decode, "_CHUNK", 1 << 14)
        fast = reader._read_fast(path)
    assert fast is not None
    assert fast[0]["comp_name"].tolist() == [kana] * 199
    assert_same(read_members(path), read_members_plain(path))


@settings(max_examples=100, deadline=None)
@given(rows=member_rows(), quoting=st.sampled_from(["minimal", "all"]))
def test_arrow_parses_every_well_formed_file(rows: list[list[str]], quoting: str) -> None:
    """Not a property that passes by declining: well-formed files take the fast way."""
    data = bytearray(written(rows, quoting, "\r\n").encode())
    body = parse_utf8(data, rows[0])
    assert body is not None
    assert body.to_numpy().tolist() == rows[1:]


def test_a_blank_line_is_a_blank_row_to_both_parsers() -> None:
    data = bytearray(b"id,email\r\n1,a@example.jp\r\n\r\n2,b@example.jp\r\n")
    body = parse_utf8(data, ["id", "email"])
    assert body is not None
    assert body.to_numpy().tolist() == [["1", "a@example.jp"], ["", ""], ["2", "b@example.jp"]]


@pytest.mark.parametrize(
    ("tail", "why"),
    [
        ('2,"b@example.jp\r\n', "a quote left open at the end"),
        ("2,b@example.jp,x\r\n", "a long row"),
        ("2\r\n", "a short row"),
        ("  \r\n2,b@example.jp\r\n", "a line of spaces (one short field)"),
    ],
)
def test_arrow_declines_what_pandas_reads_otherwise(tail: str, why: str) -> None:
    data = bytearray(f"id,email\r\n1,a@example.jp\r\n{tail}".encode())
    assert parse_utf8(data, ["id", "email"]) is None, why


@pytest.mark.parametrize("chunk", [1, 2, 5, 7, 1 << 20])
def test_the_utf8_line_scan_finds_the_same_line_a_megabyte_or_a_byte_at_a_time(
    monkeypatch: pytest.MonkeyPatch, chunk: int
) -> None:
    cp932 = "髙﨑①ｱ㈱さくら商事\n".encode("cp932") * 3
    raw = cp932 + "漢字のUTF-8の行\n".encode() + cp932
    whole = decode._utf8_line(raw, len(raw))
    monkeypatch.setattr(decode, "_CHUNK", chunk)
    assert decode._utf8_line(raw, len(raw)) == whole == len(cp932)
    assert decode._utf8_line(raw, len(cp932)) is None
    assert decode.utf8_bytes(raw) is None  # mixed: left to decode, which names both lines
    assert decode.utf8_bytes(cp932) == (bytearray(cp932.decode("cp932").encode()), "cp932")
