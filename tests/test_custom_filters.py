"""Issue 23 (6): custom-field filters in 絞込オプション, and names beside 価格グループ and 営業担当.

Each custom column gets the control its values call for; what is picked is the contract's
filter, the very dict ``bcartnb members --filter`` takes, and it selects the same members
there (a real subprocess). ``[names]`` in ``bcartnb.toml`` names the ids; the filter keeps ids.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import ipywidgets as widgets
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from smtp_servers import TestServer

from bcartnb.exceptions import FilterError, SettingsError
from bcartnb.filters import apply_filter
from bcartnb.members import read_members
from bcartnb.settings import IdNames, Settings, load_settings
from bcartnb.widgets import Wizard
from bcartnb.widgets.custom_filters import MAX_CHOICES, CustomFilters

Server = Callable[..., TestServer]
HEADER = (
    "会員ID,会社名,担当者(姓),担当者(名),メールアドレス,都道府県,価格グループID,営業担当ID,"
    "状態,メール案内,業種,年間購入額,初回購入日,メモ,状態\n"
)
KINDS = ("卸売", "小売", "製造")


def row(m: int) -> str:
    return (
        f"{m},商事{m},山田,太郎,u{m}@example.co.jp,東京都,{1 + m % 3},{101 + m % 2},有効,"
        f"受け取る,{KINDS[m % 3]},{m * 1000 % 70000},2024/0{1 + m % 9}/1{m % 10},メモ{m},"
        f"{'AB'[m % 2]}\n"
    )


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    # 状態 twice: the second is a custom field read as カスタム:状態
    rows = "".join(row(m) for m in range(1001, 1001 + 2 * MAX_CHOICES))
    (tmp_path / "members.csv").write_text(HEADER + rows, "utf-8")
    (tmp_path / "bcartnb.toml").write_text(
        'plan = "プラン10"\nfrom = "shop@example.co.jp"\nledger = "ledger.sqlite3"\n'
        '[names.price_groups]\n1 = "一般"\n2 = "卸A"\n[names.sales_staff]\n101 = "佐藤"\n',
        "utf-8",
    )
    return tmp_path


@pytest.fixture(scope="module")
def frame(tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    path = tmp_path_factory.mktemp("custom") / "members.csv"
    path.write_text(HEADER + "".join(row(m) for m in range(1001, 1001 + 2 * MAX_CHOICES)), "utf-8")
    return read_members(path)


@pytest.fixture
def wizard(folder: Path, smtp_server: Server) -> Wizard:
    settings = load_settings(folder / "bcartnb.toml", env={})
    settings = settings.replace(smtp=smtp_server().settings())
    return Wizard(folder / "members.csv", settings, member_folders=[folder])


def cli_count(folder: Path, flt: dict[str, object]) -> int:
    got = subprocess.run(
        [
            sys.executable,
            "-m",
            "bcartnb",
            "members",
            "members.csv",
            "--filter",
            json.dumps(flt, ensure_ascii=False),
            "--json",
        ],
        capture_output=True,
        text=True,
        cwd=folder,
        timeout=120,
        env={"BCARTNB_CONFIG": str(folder / "bcartnb.toml"), "PATH": "/usr/bin:/bin"},
    )
    assert got.returncode == 0, got.stderr
    return int(json.loads(got.stdout)["selected"])


def test_each_custom_column_gets_the_control_its_values_call_for(wizard: Wizard) -> None:
    custom = wizard.filter_step.custom
    assert list(custom.fields) == ["業種", "年間購入額", "初回購入日", "メモ", "カスタム:状態"]
    kinds = {c: type(custom.field(c)[0]) for c in custom.fields}
    assert kinds == {
        "業種": widgets.SelectMultiple,  # few values: a list
        "年間購入額": widgets.Text,  # a range
        "初回購入日": widgets.DatePicker,
        "メモ": widgets.Text,  # 60 distinct values: を含む
        "カスタム:状態": widgets.SelectMultiple,
    }
    assert custom.field("業種")[0].options == (("卸売", "卸売"), ("小売", "小売"), ("製造", "製造"))
    assert len(custom.field("年間購入額")) == len(custom.field("初回購入日")) == 2


def test_the_wizards_filter_is_the_clis_and_selects_the_same_members(
    wizard: Wizard, folder: Path
) -> None:
    custom = wizard.filter_step.custom
    custom.field("業種")[0].value = ("卸売", "製造")
    custom.field("年間購入額")[0].value = "10,000"
    custom.field("年間購入額")[1].value = "50000"
    custom.field("初回購入日")[0].value = dt.date(2024, 3, 1)
    custom.field("メモ")[0].value = "10"
    wizard.filter_step.apply.click()
    expected = {
        "業種": ["卸売", "製造"],
        "年間購入額": {"min": 10000, "max": 50000},
        "初回購入日": {"from": "2024-03-01"},
        "メモ": {"contains": "10"},
    }
    assert wizard.filter == expected
    assert wizard.found is not None
    n = len(wizard.found.selected)
    frame = read_members(folder / "members.csv")
    assert n == len(apply_filter(frame, expected)) > 0
    assert cli_count(folder, wizard.filter) == n
    assert [int(i) for i in wizard.found.selected["id"]] == wizard.table.result_ids

    wizard.filter_step.reset.click()  # クリア: the custom controls too
    assert wizard.filter_step.filter == {}


def test_a_custom_column_named_like_a_standard_one_filters_by_its_own_values(
    wizard: Wizard, folder: Path
) -> None:
    wizard.filter_step.custom.field("カスタム:状態")[0].value = ("A",)
    wizard.filter_step.apply.click()
    assert wizard.filter == {"カスタム:状態": ["A"]}
    assert wizard.found is not None
    assert cli_count(folder, wizard.filter) == len(wizard.found.selected) == MAX_CHOICES


@pytest.mark.parametrize("bad", ["十", "1.5", "1e3", "\x00", "<script>"])
def test_a_range_that_is_not_a_number_is_said_and_the_result_kept(wizard: Wizard, bad: str) -> None:
    before = wizard.table.result_ids
    wizard.filter_step.custom.field("年間購入額")[0].value = bad
    wizard.filter_step.apply.click()
    assert "絞込条件「年間購入額」: 下限は 3 のように整数で書いてください" in wizard.status.value
    assert wizard.table.result_ids == before


def test_a_range_upside_down_is_the_filters_own_error(wizard: Wizard) -> None:
    custom = wizard.filter_step.custom
    custom.field("年間購入額")[0].value = "5000"
    custom.field("年間購入額")[1].value = "100"
    wizard.filter_step.apply.click()
    assert "絞込条件「年間購入額」" in wizard.status.value and "より後です" in wizard.status.value


def test_no_custom_columns_no_custom_box(tmp_path: Path) -> None:
    path = tmp_path / "m.csv"
    path.write_text("会員ID,メールアドレス\n1,a@example.co.jp\n", "utf-8")
    box = CustomFilters(read_members(path))
    assert box.fields == {} and box.filter == {}


# --- names for 価格グループ and 営業担当 -------------------------------------------------------


def test_ids_are_shown_with_their_names_and_filtered_by_id(wizard: Wizard, folder: Path) -> None:
    step = wizard.filter_step
    assert step.price_group.options == (("1: 一般", 1), ("2: 卸A", 2), ("3", 3))
    assert step.salesman.options == (("101: 佐藤", 101), ("102", 102))
    step.price_group.value = (2,)
    step.apply.click()
    assert wizard.filter == {"price_group_id": [2]}
    assert cli_count(folder, wizard.filter) == len(wizard.found.selected)


def test_the_names_survive_loading_another_member_file(wizard: Wizard, folder: Path) -> None:
    wizard.load_members(folder / "members.csv")
    assert wizard.filter_step.price_group.options[0] == ("1: 一般", 1)
    assert "業種" in wizard.filter_step.custom.fields


def test_without_names_the_ids_stay_bare(folder: Path, smtp_server: Server) -> None:
    settings = Settings(db=folder / "l.sqlite3", smtp=smtp_server().settings(), plan="プラン10")
    assert settings.names == IdNames()
    w = Wizard(folder / "members.csv", settings, member_folders=[folder])
    assert w.filter_step.price_group.options == (("1", 1), ("2", 2), ("3", 3))


@pytest.mark.parametrize(
    ("table", "ja"),
    [
        ("[names]\nstaff = {}\n", "知らない項目 'staff'"),
        ("names = 3\n", "[names] は表で書いてください"),
        ('[names.price_groups]\nx = "一般"\n', "「x」は価格グループのID（整数）ではありません"),
        ("[names.sales_staff]\n1 = 3\n", "1 には名前を1行の文字で書いてください"),
        ('[names.sales_staff]\n1 = "佐藤\\n"\n', "1 には名前を1行の文字で書いてください"),
        ('[names]\nprice_groups = "一般"\n', '1 = "名前" の形で書いてください'),
    ],
)
def test_a_bad_names_table_is_refused_in_japanese(tmp_path: Path, table: str, ja: str) -> None:
    path = tmp_path / "bcartnb.toml"
    path.write_text('plan = "プラン10"\n' + table, "utf-8")
    with pytest.raises(SettingsError) as err:
        load_settings(path, env={})
    assert ja in err.value.ja


def test_the_names_example_bcartnb_init_writes_loads_when_uncommented(tmp_path: Path) -> None:
    import re

    from bcartnb.shop import ShopAnswers, render_settings

    text = render_settings(ShopAnswers(plan="プラン10", from_="shop@example.co.jp"))
    example = text[text.index("# [names.price_groups]") :]
    table = re.compile(r"# (\[names\.\w+\]|\d+ = .*)$")
    uncommented = [m.group(1) for ln in example.split("\n") if (m := table.match(ln))]
    assert len(uncommented) == 4
    path = tmp_path / "bcartnb.toml"
    path.write_text(text + "\n" + "\n".join(uncommented) + "\n", "utf-8")
    names = load_settings(path, env={}).names
    assert names == IdNames(price_groups={1: "一般"}, sales_staff={101: "佐藤"})


@settings(max_examples=60, deadline=None)
@given(
    kinds=st.sets(st.sampled_from(KINDS)),
    low=st.one_of(st.none(), st.integers(-1000, 80_000)),
    high=st.one_of(st.none(), st.integers(-1000, 80_000)),
    since=st.one_of(st.none(), st.dates(dt.date(2023, 12, 1), dt.date(2024, 10, 1))),
)
def test_whatever_is_picked_is_a_valid_filter_selecting_what_pandas_selects(
    frame: pd.DataFrame, kinds: set[str], low: int | None, high: int | None, since: dt.date | None
) -> None:
    box = CustomFilters(frame)
    box.field("業種")[0].value = tuple(sorted(kinds))
    box.field("年間購入額")[0].value = "" if low is None else f"{low:,}"
    box.field("年間購入額")[1].value = "" if high is None else str(high)
    box.field("初回購入日")[0].value = since
    if low is not None and high is not None and low > high:
        with pytest.raises(FilterError):
            apply_filter(frame, box.filter)
        return
    got = apply_filter(frame, box.filter)
    mask = pd.Series(True, index=frame.index)
    if kinds:
        mask &= frame["業種"].isin(kinds)
    if low is not None:
        mask &= frame["年間購入額"] >= low
    if high is not None:
        mask &= frame["年間購入額"] <= high
    if since is not None:
        mask &= frame["初回購入日"].dt.date >= since
    assert got["id"].tolist() == frame[mask]["id"].tolist()
