"""Near names and near values, through real files and the real command line: a misnamed
column, a filter value no member holds, a mistyped template name, a date written B-Cart's way
(2023/09/17), a plan written with a space (プラン 10)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import tomli_w
from hypothesis import given, settings
from hypothesis import strategies as st
from test_cli_run import bcartnb

from bcartnb.exceptions import SettingsError
from bcartnb.filter_hints import MANY, value_hints
from bcartnb.filters import apply_filter
from bcartnb.members import read_members
from bcartnb.near import near_names
from bcartnb.plans import PLANS, resolve_plan
from bcartnb.settings import load_settings

HEADER = "会員ID,会社名,メールアドレス,都道府県,{flag},登録日時\n"
ROWS = (
    "1001,東京商事,a@example.co.jp,東京都,受け取る,2023/09/17 07:50:08\n"
    "1002,大阪物産,b@example.co.jp,大阪府,受け取る,2023/09/18 10:00:00\n"
    "1003,京都工業,c@example.co.jp,京都府,受け取らない,2023/09/16 23:59:59\n"
)


def write_shop(tmp_path: Path, *, flag: str = "メール案内", plan: str = "プラン10") -> Path:
    """A shop folder (bcartnb.toml, templates/, members.csv); the members' opt-in column
    headed ``flag``."""
    (tmp_path / "members.csv").write_text(HEADER.format(flag=flag) + ROWS, encoding="utf-8")
    (tmp_path / "bcartnb.toml").write_text(
        f'plan = "{plan}"\nfrom = "見本商事 <shop@example.co.jp>"\n'
        'admin = "admin@example.co.jp"\nsignature = "見本商事 東京都千代田区1-1"\n'
        'db = "ledger.sqlite3"\ntemplates = "templates"\n',
        encoding="utf-8",
    )
    (tmp_path / "templates").mkdir(exist_ok=True)
    (tmp_path / "templates" / "新商品のご案内.txt").write_text(
        '+++\nsubject = "新商品のご案内"\n+++\n{{ 会社名 }} 様\n新商品のご案内です。\n',
        encoding="utf-8",
    )
    return tmp_path / "members.csv"


def env(tmp_path: Path) -> dict[str, str]:
    import os

    out = {k: v for k, v in os.environ.items() if not k.startswith("BCARTNB_")}
    out["BCARTNB_CONFIG"] = str(tmp_path / "bcartnb.toml")
    return out


def campaign_file(tmp_path: Path, **keys: Any) -> Path:
    path = tmp_path / "campaign.toml"
    path.write_text(tomli_w.dumps({"members": "members.csv", **keys}), encoding="utf-8")
    return path


# --- near names, the one rule -----------------------------------------------------------


def test_near_names_finds_the_longer_spelling_and_nothing_far() -> None:
    prefs = ["東京都", "大阪府", "京都府", "北海道"]
    assert near_names("東京", prefs)[0] == "東京都"
    assert near_names("ﾒｰﾙ案内", ["メール案内（受取）", "会社名"]) == ["メール案内（受取）"]
    # another spelling of the same name is the best hint where names are compared as written
    assert near_names("ﾃｽﾄ商事", ["テスト商事2", "テスト商事"]) == ["テスト商事", "テスト商事2"]
    assert near_names("沖縄県", prefs) == []
    assert near_names("都", prefs) == []  # one character held by every name is no hint
    assert "東京都" not in near_names("東京都", prefs)  # itself is not a suggestion
    assert near_names("", prefs) == []


@given(st.text(max_size=40), st.lists(st.text(max_size=40), max_size=30))
@settings(max_examples=200, deadline=None)
def test_near_names_never_raises_and_offers_only_candidates(
    word: str, candidates: list[str]
) -> None:
    near = near_names(word, candidates)
    assert len(near) <= 3 and set(near) <= set(candidates)


# --- a misnamed column ------------------------------------------------------------------


def test_a_misnamed_opt_in_column_is_named_with_its_header(tmp_path: Path) -> None:
    """「メール案内（受取）」 is read as a custom field, so everyone is 受け取らない: the file
    still loads, and `members` and `run` both say which header it probably is."""
    path = write_shop(tmp_path, flag="メール案内（受取）")
    frame = read_members(path)
    assert not frame["mm_flag"].any()  # what the marketer would see without the hint
    [note] = frame.attrs["warnings"]
    assert "「メール案内」の列がありません" in note and "「メール案内（受取）」" in note
    assert "受け取らない" in note

    got = bcartnb("members", str(path), "--opt-in-only", env=env(tmp_path), cwd=tmp_path)
    assert got.returncode == 0, got.stderr
    assert "注意: 「メール案内」の列がありません。近い見出し: 「メール案内（受取）」" in got.stderr

    dry = bcartnb(
        "run",
        str(campaign_file(tmp_path, template="新商品のご案内")),
        env=env(tmp_path),
        cwd=tmp_path,
    )
    assert dry.returncode == 0, dry.stderr
    assert "注意: 「メール案内」の列がありません。近い見出し: 「メール案内（受取）」" in dry.stdout


def test_a_well_named_file_says_nothing(tmp_path: Path) -> None:
    path = write_shop(tmp_path)
    assert read_members(path).attrs["warnings"] == []
    got = bcartnb("members", str(path), env=env(tmp_path), cwd=tmp_path)
    assert got.returncode == 0 and "注意" not in got.stderr, got.stderr


def test_a_misnamed_required_column_is_an_error_naming_the_near_header(tmp_path: Path) -> None:
    path = tmp_path / "members.csv"
    path.write_text("会員ID,会社名,メールアドレス1\n1,東京商事,a@example.co.jp\n", encoding="utf-8")
    got = bcartnb("members", str(path), env=env(tmp_path), cwd=tmp_path)
    assert got.returncode == 2
    [line] = got.stderr.splitlines()
    assert (
        "必要な列がありません: メールアドレス。「メールアドレス」に近い見出し: 「メールアドレス1」"
        in line
    )
    assert line.index("近い見出し") < line.index(" / ")  # Japanese first, then the detail


def test_a_far_header_is_no_hint(tmp_path: Path) -> None:
    """A custom field unlike any standard column (業種) is not offered as one."""
    path = tmp_path / "members.csv"
    path.write_text("会員ID,メールアドレス,業種\n1,a@example.co.jp,小売\n", encoding="utf-8")
    assert read_members(path).attrs["warnings"] == []


# --- a filter value no member holds -----------------------------------------------------


def test_a_filter_value_no_member_holds_names_the_near_ones(tmp_path: Path) -> None:
    path = write_shop(tmp_path)
    got = bcartnb(
        "members",
        str(path),
        "--filter",
        '{"都道府県": "東京"}',
        "--json",
        env=env(tmp_path),
        cwd=tmp_path,
    )
    assert got.returncode == 0, got.stderr
    assert json.loads(got.stdout)["selected"] == 0  # the contract's JSON is unchanged
    assert (
        "注意: 絞込条件「都道府県」の「東京」に当たる会員はいません。近い値: 「東京都」。"
        in got.stderr
    )

    dry = bcartnb(
        "run",
        str(
            campaign_file(tmp_path, template="新商品のご案内", filter={"pref": ["東京", "大阪府"]})
        ),
        env=env(tmp_path),
        cwd=tmp_path,
    )
    assert dry.returncode == 0, dry.stderr
    assert (
        "注意: 絞込条件「都道府県」の「東京」に当たる会員はいません。近い値: 「東京都」"
        in dry.stdout
    )
    assert "「大阪府」に当たる" not in dry.stdout  # a value members hold is not mentioned


def test_value_hints_only_for_text_values_nobody_holds(tmp_path: Path) -> None:
    members = read_members(write_shop(tmp_path))
    assert value_hints(members, {"pref": "東京都"}) == []
    assert value_hints(members, {"pref": None}) == []  # blank: a real question, no typo
    assert value_hints(members, {"comp_name": {"contains": "zzz"}}) == []
    assert value_hints(members, {"pref": "沖縄県"}) == [
        "絞込条件「都道府県」の「沖縄県」に当たる会員はいません。"
    ]


@given(st.text(max_size=30))
@settings(max_examples=100, deadline=None)
def test_value_hints_take_any_text(value: str) -> None:
    members = read_members(Path(__file__).resolve().parent.parent / "data" / "demo_members.csv")
    hints = value_hints(members, {"pref": value})
    assert len(hints) <= 1 and all(value in h for h in hints)


def test_among_many_distinct_values_the_near_ones_are_still_found(tmp_path: Path) -> None:
    """More distinct values than are compared one by one (会社名 of a big list): the values
    sharing the most pieces with the typed one are compared, and the typo's own is among them;
    a half-width spelling of a held value names it first (a filter compares as written)."""
    n = MANY + 500
    path = tmp_path / "members.csv"
    rows = "".join(f"{i},株式会社サンプル{i:05d},m{i}@example.co.jp\n" for i in range(1, n + 1))
    path.write_text("会員ID,会社名,メールアドレス\n" + rows, encoding="utf-8")
    members = read_members(path)
    [hint] = value_hints(members, {"会社名": "株式会社サンプル0123"})  # a digit short
    assert "近い値: 「株式会社サンプル01230」" in hint  # the values holding it come first
    [hint] = value_hints(members, {"会社名": "株式会社ｻﾝﾌﾟﾙ02000"})
    assert "近い値: 「株式会社サンプル02000」" in hint


# --- a mistyped template name -----------------------------------------------------------


def test_a_mistyped_template_name_in_a_campaign_file_names_the_near_one(tmp_path: Path) -> None:
    write_shop(tmp_path)
    got = bcartnb(
        "run",
        str(campaign_file(tmp_path, template="新商品ご案内")),
        env=env(tmp_path),
        cwd=tmp_path,
    )
    assert got.returncode == 2
    [line] = got.stderr.splitlines()
    assert "テンプレート「新商品ご案内」が" in line and "近い名前: 「新商品のご案内」" in line
    assert line.index("近い名前") < line.index(" / ")  # in the Japanese half
    assert "did you mean 新商品のご案内?" in line


# --- dates as B-Cart writes them --------------------------------------------------------


@pytest.mark.parametrize(
    ("day", "ids"),
    [
        ("2023/09/17", [1001, 1002]),
        ("2023-09-17", [1001, 1002]),
        ("2023/9/17", [1001, 1002]),
        ("２０２３／０９／１７", [1001, 1002]),  # an IME's full-width digits and slash
        ("2023年9月17日", [1001, 1002]),
    ],
)
def test_a_date_with_slashes_filters_like_the_iso_one(
    tmp_path: Path, day: str, ids: list[int]
) -> None:
    members = read_members(write_shop(tmp_path))
    found = apply_filter(members, {"登録日時": {"from": day}})
    assert found["id"].tolist() == ids
    assert apply_filter(members, {"created_at": {"to": day}})["id"].tolist() == [1001, 1003]
    assert apply_filter(members, {"created_at": day})["id"].tolist() == [1001]


def test_a_slashed_date_through_the_command_line(tmp_path: Path) -> None:
    path = write_shop(tmp_path)
    got = bcartnb(
        "members",
        str(path),
        "--filter",
        '{"created_at": {"from": "2023/09/17", "to": "2023/09/17"}}',
        "--json",
        env=env(tmp_path),
        cwd=tmp_path,
    )
    assert got.returncode == 0, got.stderr
    assert json.loads(got.stdout)["selected"] == 1
    bad = bcartnb(
        "members",
        str(path),
        "--filter",
        '{"created_at": {"from": "2023/02/30"}}',
        env=env(tmp_path),
        cwd=tmp_path,
    )
    assert bad.returncode == 2 and "2023/02/30 という日付はありません" in bad.stderr


# --- plan names with spaces -------------------------------------------------------------


@pytest.mark.parametrize("written", ["プラン 10", "プラン\u300010"])
def test_a_plan_with_a_space_is_the_plan(tmp_path: Path, written: str) -> None:
    write_shop(tmp_path, plan=written)
    got = bcartnb("quota", "--json", env=env(tmp_path), cwd=tmp_path)
    assert got.returncode == 0, got.stderr
    assert json.loads(got.stdout)["plan"] == "プラン10"


def test_every_plan_keeps_its_own_name_and_alias() -> None:
    for plan in PLANS:
        for written in (
            plan.name,
            plan.key,
            plan.key.upper(),
            plan.name.replace("プラン", "プラン "),
        ):
            assert resolve_plan(written) is plan
    assert resolve_plan("own smtp") is resolve_plan("own_smtp") is resolve_plan("自社 SMTP")
    for written in (" プラン１０ ", "plan 10", "Plan-10", "プラン\t10", "ＰＬＡＮ　１０"):
        assert resolve_plan(written) is PLANS[1]
    with pytest.raises(SettingsError) as info:
        resolve_plan("プラン 20")
    assert info.value.ja.startswith("プラン「プラン 20」はありません")


def test_the_settings_check_takes_a_spaced_plan(tmp_path: Path) -> None:
    write_shop(tmp_path, plan="プラン\u300030")
    assert load_settings(tmp_path / "bcartnb.toml").plan is not None
    assert re.search("プラン", str(load_settings(tmp_path / "bcartnb.toml").plan))
