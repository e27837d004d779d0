"""The audience: selected = sendable + unsendable, each unsendable member with one reason."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bcartnb.audience import (
    REASON_LABELS,
    REASONS,
    Audience,
    build_audience,
    format_summary,
    hold_back,
)
from bcartnb.exceptions import FilterError, SelectionError
from bcartnb.members import read_members


def members_from(
    tmp_path: Path, rows: list[tuple[int, str, str]], name: str = "m.csv"
) -> pd.DataFrame:
    """rows: (id, address, メール案内)."""
    lines = ["会員ID,メールアドレス,メール案内,都道府県"]
    lines += [f"{i},{addr},{flag},{'東京都' if i % 2 else '大阪府'}" for i, addr, flag in rows]
    path = tmp_path / name
    path.write_bytes(("\r\n".join(lines) + "\r\n").encode("cp932"))
    return read_members(path)


def reasons_by_id(audience: Audience) -> dict[int, str]:
    return dict(zip(audience.unsendable["id"].tolist(), audience.unsendable["reason"], strict=True))


def test_reason_codes_in_contract_order() -> None:
    assert REASONS == (
        "empty_address",
        "invalid_address",
        "not_opted_in",
        "suppressed",
        "already_sent",
        "duplicate_address",
    )
    assert list(REASON_LABELS) == list(REASONS)
    assert all(REASON_LABELS.values())


def test_every_reason_code(tmp_path: Path) -> None:
    df = members_from(
        tmp_path,
        [
            (1, "a@example.jp", "受け取る"),
            (2, "", "受け取る"),
            (3, "bad..dot@example.jp", "受け取る"),
            (4, "b@example.jp", "受け取らない"),
            (5, "A@Example.JP", "受け取る"),
            (6, "c@example.jp", "1"),
            (7, " Gone@Example.jp ", "受け取る"),
            (8, "gone@example.jp", "受け取る"),
            (9, "b@example.jp", "受け取る"),
        ],
    )
    # listed addresses are lower-cased; b@ is listed too but not_opted_in comes first for
    # member 4, and member 9 (opted in, same address) is held back as suppressed
    audience = build_audience(df, opt_in_only=True, suppressed={"gone@example.jp", "b@example.jp"})
    assert reasons_by_id(audience) == {
        2: "empty_address",
        3: "invalid_address",
        4: "not_opted_in",
        5: "duplicate_address",
        7: "suppressed",
        8: "suppressed",
        9: "suppressed",
    }
    assert audience.sendable["id"].tolist() == [1, 6]
    assert audience.already_sent_in == {}
    assert audience.reasons == {
        "empty_address": 1,
        "invalid_address": 1,
        "not_opted_in": 1,
        "suppressed": 3,
        "already_sent": 0,
        "duplicate_address": 1,
    }


def test_not_opted_in_only_with_opt_in_only(tmp_path: Path) -> None:
    df = members_from(tmp_path, [(1, "a@example.jp", "受け取らない"), (2, "b@example.jp", "")])
    assert build_audience(df).summary()["sendable"] == 2
    audience = build_audience(df, opt_in_only=True)
    assert reasons_by_id(audience) == {1: "not_opted_in", 2: "not_opted_in"}


def test_reasons_are_decided_in_order(tmp_path: Path) -> None:
    df = members_from(
        tmp_path,
        [
            (1, "", "受け取らない"),  # empty beats not opted in
            (2, "x y@example.jp", "受け取らない"),  # invalid beats not opted in
            (3, "same@example.jp", "受け取らない"),  # not opted in: does not keep the address
            (4, "SAME@example.jp", "受け取る"),  # so this one is sendable, not a duplicate
            (5, " same@EXAMPLE.jp\u3000", "受け取る"),  # duplicate of 4 (trimmed, any case)
        ],
    )
    audience = build_audience(df, opt_in_only=True)
    assert reasons_by_id(audience) == {
        1: "empty_address",
        2: "invalid_address",
        3: "not_opted_in",
        5: "duplicate_address",
    }
    assert audience.sendable["id"].tolist() == [4]


def test_first_in_file_order_keeps_the_address(tmp_path: Path) -> None:
    df = members_from(
        tmp_path,
        [(9, "Dup@example.jp", "1"), (3, "dup@example.jp", "1"), (5, "DUP@EXAMPLE.JP", "1")],
    )
    audience = build_audience(df)
    assert audience.sendable["id"].tolist() == [9]
    assert reasons_by_id(audience) == {3: "duplicate_address", 5: "duplicate_address"}


def test_invalid_addresses_never_claim_an_address(tmp_path: Path) -> None:
    df = members_from(tmp_path, [(1, "a b@example.jp", "1"), (2, "a b@example.jp", "1")])
    assert reasons_by_id(build_audience(df)) == {1: "invalid_address", 2: "invalid_address"}


def test_sendable_keeps_file_order_columns_and_trimmed_address(tmp_path: Path) -> None:
    df = members_from(
        tmp_path,
        [(30, "\u3000c@example.jp ", "1"), (10, "bad", "1"), (20, "a@example.jp", "1")],
    )
    audience = build_audience(df)
    assert list(audience.sendable.columns) == list(df.columns)
    assert list(audience.unsendable.columns) == [*df.columns, "reason"]
    assert audience.sendable["id"].tolist() == [30, 20]
    assert audience.sendable.index.tolist() == [2, 4]
    assert audience.sendable["email"].tolist() == ["c@example.jp", "a@example.jp"]
    assert audience.selected.index.tolist() == [2, 3, 4]


def test_filter_checked_and_reasons_together(tmp_path: Path) -> None:
    df = members_from(
        tmp_path,
        [
            (1, "a@example.jp", "1"),
            (3, "", "1"),
            (5, "c@example.jp", "0"),
            (2, "d@example.jp", "1"),
        ],
    )
    audience = build_audience(df, {"pref": "東京都"}, checked=[3, 5], opt_in_only=True)
    assert audience.selected["id"].tolist() == [3, 5]
    assert reasons_by_id(audience) == {3: "empty_address", 5: "not_opted_in"}
    assert audience.checked == (3, 5)
    with pytest.raises(SelectionError, match=r"result: 2$"):
        build_audience(df, {"pref": "東京都"}, checked=[2])
    with pytest.raises(FilterError, match="'nope'"):
        build_audience(df, {"nope": 1})


def test_frames_from_elsewhere_are_trimmed_and_checked() -> None:
    df = pd.DataFrame(
        {"id": [1, 2, 3], "email": [" a@example.jp\u3000", "\u3000", None]},
        index=pd.Index([2, 3, 4], name="row"),
    )
    audience = build_audience(df)
    assert audience.sendable["email"].tolist() == ["a@example.jp"]
    assert reasons_by_id(audience) == {2: "empty_address", 3: "empty_address"}
    assert audience.selected["email"].isna().tolist() == [False, True, True]
    with pytest.raises(FilterError, match="mm_flag"):
        build_audience(df, opt_in_only=True)


def test_an_empty_selection(tmp_path: Path) -> None:
    df = members_from(tmp_path, [(1, "a@example.jp", "1")])
    audience = build_audience(df, {"pref": "北海道"})
    assert audience.summary() == {
        "selected": 0,
        "sendable": 0,
        "unsendable": 0,
        "reasons": dict.fromkeys(REASONS, 0),
    }


def test_reason_table_and_japanese_summary(tmp_path: Path) -> None:
    df = members_from(tmp_path, [(1, "a@example.jp", "1"), (3, "", "1"), (5, "A@example.jp", "0")])
    audience = build_audience(df, {"pref": "東京都"}, opt_in_only=True)
    table = audience.reason_table()
    assert table.loc["empty_address", "件数"] == 1
    assert table.loc["not_opted_in", "件数"] == 1
    assert table["理由"].tolist() == [REASON_LABELS[r] for r in REASONS]
    text = format_summary(audience)
    lines = text.splitlines()
    assert "絞込条件: 都道府県が 東京都" in lines
    assert any(line.startswith("送信件数") and line.endswith(" 1 件") for line in lines)
    assert any(line.startswith("送信できない件数") and line.endswith(" 2 件") for line in lines)
    for code in REASONS:  # every reason, zeros included; already_sent only with a mail
        shown = any(REASON_LABELS[code] in line for line in lines)
        assert shown == (code != "already_sent")


def test_the_demo_members_show_every_reason(repo_root: Path) -> None:
    members = read_members(repo_root / "data" / "demo_members.csv")
    # the suppression list lives in the ledger, not the file: list one sendable address
    listed = build_audience(members, opt_in_only=True).sendable["email"].iloc[0].upper()
    # and what another campaign already mailed (also the ledger's): a second sendable one
    second = build_audience(members, opt_in_only=True).sendable["email"].iloc[1]
    audience = build_audience(
        members,
        opt_in_only=True,
        suppressed={listed.lower()},
        already_sent={second.lower(): "20261201-090000-abcdef"},
    )
    assert all(audience.reasons[r] > 0 for r in REASONS)
    assert audience.already_sent_by_campaign() == {"20261201-090000-abcdef": 1}
    assert audience.source is not None and audience.source.endswith("demo_members.csv")


def test_demo_prints_the_audience_in_japanese(capsys: pytest.CaptureFixture[str]) -> None:
    from bcartnb import demo

    assert demo.main() == 0
    out = capsys.readouterr().out
    expected = build_audience(read_members(demo.DEMO_MEMBERS), demo.DEMO_FILTER, opt_in_only=True)
    assert "送信件数" in out and "送信できない件数" in out
    assert any(
        line.startswith("送信件数") and line.endswith(f" {len(expected.sendable)} 件")
        for line in out.splitlines()
    )
    assert "@" not in "".join(line for line in out.splitlines() if "***@" not in line)


# --- properties --------------------------------------------------------------------------

_POOL = [
    "a@example.jp",
    "A@EXAMPLE.JP",
    " a@example.jp",
    "b@example.com",
    "B@example.com",
    "c@example.ne.jp",
    "",
    "\u3000",
    "bad",
    "x..y@example.jp",
    "d@example.co.jp",
]
_MEMBERS = st.lists(
    st.tuples(st.sampled_from(_POOL), st.sampled_from(["受け取る", "受け取らない", ""])),
    max_size=25,
)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("audience")


@settings(max_examples=80, deadline=None)
@given(
    rows=_MEMBERS,
    opt_in_only=st.booleans(),
    checked_every=st.integers(0, 3),
    pref=st.sampled_from([None, "東京都"]),
)
def test_selected_is_sendable_plus_unsendable_and_no_address_twice(
    workdir: Path,
    rows: list[tuple[str, str]],
    opt_in_only: bool,
    checked_every: int,
    pref: str | None,
) -> None:
    df = members_from(workdir, [(i + 1, a, f) for i, (a, f) in enumerate(rows)], "p.csv")
    flt = {"pref": pref} if pref else None
    base = build_audience(df, flt).selected["id"].tolist()
    checked = base[::checked_every] if checked_every else None
    audience = build_audience(df, flt, checked, opt_in_only)

    sel = audience.selected.index
    assert sorted([*audience.sendable.index, *audience.unsendable.index]) == sorted(sel)
    assert not set(audience.sendable.index) & set(audience.unsendable.index)
    assert audience.summary()["selected"] == len(sel)
    assert sum(audience.reasons.values()) == len(audience.unsendable)
    keys = audience.sendable["email"].str.strip().str.lower()
    assert not keys.duplicated().any()
    assert set(audience.unsendable["reason"]) <= set(REASONS)
    if not opt_in_only:
        assert audience.reasons["not_opted_in"] == 0
    else:
        assert audience.sendable["mm_flag"].all()


_KEYS = sorted({a.strip().lower() for a in _POOL if "@" in a} | {"z@example.jp"})
_HELD = st.dictionaries(st.sampled_from(_KEYS), st.sampled_from(["c-1", "c-2", "c-3"]))


def assert_same_audience(got: Audience, want: Audience) -> None:
    for name in ("selected", "sendable", "unsendable"):
        pd.testing.assert_frame_equal(getattr(got, name), getattr(want, name))
    assert got.codes.tolist() == want.codes.tolist()
    assert (got.reasons, got.already_sent_in) == (want.reasons, want.already_sent_in)
    assert got.already_sent_by_campaign() == want.already_sent_by_campaign()
    assert (got.filter, got.checked, got.opt_in_only, got.source) == (
        want.filter,
        want.checked,
        want.opt_in_only,
        want.source,
    )


@settings(max_examples=100, deadline=None)
@given(
    rows=st.lists(st.tuples(st.sampled_from(_POOL), st.booleans()), max_size=30),
    index=st.sampled_from(["file", "shifted", "repeated"]),
    opt_in_only=st.booleans(),
    checked_every=st.integers(0, 3),
    pref=st.sampled_from([None, "東京都"]),
    suppressed=st.sets(st.sampled_from(_KEYS)),
    first=_HELD,
    later=_HELD,
)
def test_holding_back_later_is_building_with_it_from_the_start(
    rows: list[tuple[str, bool]],
    index: str,
    opt_in_only: bool,
    checked_every: int,
    pref: str | None,
    suppressed: set[str],
    first: dict[str, str],
    later: dict[str, str],
) -> None:
    """A plan sorts its members, then learns from the ledger who has the mail (``first``);
    a claim then learns whom another campaign took since (``later``). Holding them back
    afterwards must give the audience that knowing it all along gives, whatever the
    duplicates, the suppressed, the opted-out, the selection, and even a frame whose row
    labels repeat."""
    positions = {"file": range(len(rows)), "shifted": range(7, 7 + len(rows))}
    df = pd.DataFrame(
        {
            "id": [1000 + i for i in range(len(rows))],
            "email": [a for a, _ in rows],
            "mm_flag": [f for _, f in rows],
            "pref": ["東京都" if i % 3 else "大阪府" for i in range(len(rows))],
        },
        index=pd.Index(positions.get(index, [0] * len(rows))),
    )
    flt = {"pref": pref} if pref else None
    found = build_audience(df, flt).selected["id"].tolist()
    chosen = (flt, found[::checked_every] if checked_every else None, opt_in_only, suppressed)

    plain = build_audience(df, *chosen)
    known = build_audience(df, *chosen, already_sent=first)
    assert_same_audience(hold_back(plain, first), known)
    both = build_audience(df, *chosen, already_sent={**first, **later})
    assert_same_audience(hold_back(known, later), both)
    assert_same_audience(hold_back(hold_back(plain, first), later), both)
    assert hold_back(known, {}) is known  # nothing learnt: the same audience
    # nobody becomes sendable, and each address moved is one the ledger named
    moved = set(known.sendable.index) - set(both.sendable.index) if index != "repeated" else set()
    assert all(str(both.selected.loc[i, "email"]).lower() in later for i in moved)
