"""The customers notebook and its tables (issue 26): counts are what the purchase columns say.

Each table of :mod:`bcartnb.orders.analysis` is held to a plain pandas count of the joined
frame (:func:`bcartnb.orders.with_purchases`), the segment it ends on to
:func:`bcartnb.filters.apply_filter`, and the notebook, run for real with papermill on the
demo data, to both. The demo orders' generator writes the committed file byte for byte.
"""

from __future__ import annotations

import datetime as dt
import json
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np
import pandas as pd
import papermill
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bcartnb.exceptions import BcartnbError, InputError
from bcartnb.filters import apply_filter
from bcartnb.members import read_members
from bcartnb.orders import GROUPS, read_orders, with_purchases
from bcartnb.orders.analysis import (
    dormant_by,
    group_counts,
    recency_curve,
    rf_grid,
    rfm_counts,
    segment_filter,
    send_guidance,
)
from bcartnb.report import customers
from bcartnb.report.notebook import demo_path
from bcartnb.settings import PurchaseSettings, load_settings

REPO = Path(__file__).resolve().parent.parent
NOTEBOOK = REPO / "notebooks" / "customers.ipynb"
AS_OF = dt.date(2026, 12, 1)


@pytest.fixture(scope="module")
def demo() -> pd.DataFrame:
    members = read_members(demo_path("demo_members.csv"))
    orders = read_orders(demo_path("demo_orders.csv"))
    return with_purchases(members, orders, PurchaseSettings(), AS_OF)


def test_group_counts_are_the_purchase_columns_counts(demo: pd.DataFrame) -> None:
    table = group_counts(demo)
    assert list(table.index) == list(GROUPS)
    plain = demo["顧客グループ"].value_counts()
    assert {g: int(n) for g, n in table["会員数"].items() if n} == plain.to_dict()
    assert table["会員数"].sum() == len(demo)
    # the demo shows every group but 一般's neighbours too: each one is somebody
    assert (table["会員数"] > 0).all()


def test_rfm_counts_and_the_grid_count_the_buyers(demo: pd.DataFrame) -> None:
    buyers = int((demo["購入回数"] > 0).sum())
    rfm = rfm_counts(demo)
    for name in ("R", "F", "M"):
        assert rfm[name].sum() == buyers
        assert rfm[name].to_dict() == demo[name].value_counts().to_dict() | {
            r: 0 for r in range(1, 6) if r not in set(demo[name].dropna())
        }
    grid = rf_grid(demo)
    assert grid.to_numpy().sum() == buyers
    assert grid.loc[5, 1] == int(((demo["R"] == 5) & (demo["F"] == 1)).sum())


def test_dormant_by_prefecture_and_price_group_by_name(demo: pd.DataFrame) -> None:
    dormant = demo[demo["顧客グループ"] == "休眠"]
    by_pref = dormant_by(demo, "pref")
    assert by_pref["休眠"].sum() == len(dormant)
    assert by_pref["会員数"].sum() == len(demo)
    assert {k: v for k, v in by_pref["休眠"].items() if v} == dormant[
        "pref"
    ].value_counts().to_dict()
    assert list(by_pref["休眠"]) == sorted(by_pref["休眠"], reverse=True)
    by_price = dormant_by(demo, "price_group_id", {1: "一般", 2: "卸A"})
    assert by_price.loc["卸A", "休眠"] == int((dormant["price_group_id"] == 2).sum())
    assert by_price.loc["3", "会員数"] == int((demo["price_group_id"] == 3).sum())
    assert by_price.loc["卸A", "割合"] == round(
        100 * by_price.loc["卸A", "休眠"] / by_price.loc["卸A", "会員数"], 1
    )
    # another group, and a group that does not exist
    assert dormant_by(demo, "pref", group="離反")["離反"].sum() == int(
        (demo["顧客グループ"] == "離反").sum()
    )
    with pytest.raises(InputError, match="unknown customer group") as err:
        dormant_by(demo, "pref", group="休眠顧客")
    assert "顧客グループ「休眠顧客」" in err.value.ja


def test_a_blank_value_is_counted_as_blank(demo: pd.DataFrame) -> None:
    frame = demo.copy()
    frame["pref"] = frame["pref"].where(frame["id"] % 7 != 0, None)
    table = dormant_by(frame, "pref")
    blank = frame["pref"].isna()
    assert table.loc["（空欄）", "会員数"] == int(blank.sum())
    assert table.loc["（空欄）", "休眠"] == int((blank & (frame["顧客グループ"] == "休眠")).sum())


def test_recency_curve_rises_to_every_buyer(demo: pd.DataFrame) -> None:
    curve = recency_curve(demo, days=2000, step=1)
    ago = demo["最終購入からの日数"].dropna()
    assert list(curve.columns) == ["全体"]
    assert np.all(np.diff(curve["全体"].to_numpy()) >= 0)
    assert curve["全体"].iloc[-1] == 100.0
    assert curve.loc[180, "全体"] == round(100 * int((ago <= 180).sum()) / len(ago), 1)
    by = recency_curve(demo, "price_group_id", {2: "卸A"})
    assert list(by.columns) == ["1", "卸A", "3", "4", "5"]
    assert by.index[1] - by.index[0] == 7


def test_a_member_list_without_orders_is_told_to_join_them(demo: pd.DataFrame) -> None:
    bare = demo.drop(columns=["顧客グループ"])
    for table in (group_counts, rfm_counts, rf_grid, recency_curve):
        with pytest.raises(InputError) as err:
            table(bare)
        assert "受注ファイル" in err.value.ja and "顧客グループ" in err.value.ja
    with pytest.raises(InputError, match="no column 'no_such'"):
        dormant_by(demo, "no_such")


def test_no_orders_at_all_is_every_member_unbought(demo: pd.DataFrame) -> None:
    members = read_members(demo_path("demo_members.csv"))
    none = with_purchases(
        members, read_orders(demo_path("demo_orders.csv")).iloc[:0], PurchaseSettings(), AS_OF
    )
    assert group_counts(none).loc["未購入", "会員数"] == len(members)
    assert rfm_counts(none).to_numpy().sum() == 0
    assert rf_grid(none).to_numpy().sum() == 0
    assert recency_curve(none).empty or recency_curve(none)["全体"].eq(0).all()


def test_the_guidance_pastes_into_every_face(demo: pd.DataFrame, tmp_path: Path) -> None:
    members = tmp_path / "会員 's.csv"  # a space and a quote: the shell lines must still paste
    orders = tmp_path / "受注.csv"
    flt = segment_filter("休眠")
    text = send_guidance(demo, flt, members, orders)
    count = len(apply_filter(demo, flt))
    assert text.splitlines()[0] == f"このセグメントに送る: 顧客グループが 休眠（{count:,}人）"
    toml = text.split("に書く行:\n", 1)[1].split("\n\n■", 1)[0]
    assert tomllib.loads(toml) == {"members": str(members), "orders": str(orders), "filter": flt}
    assert json.dumps(flt, ensure_ascii=False) in text
    line = next(ln for ln in text.splitlines() if ln.strip().startswith("bcartnb members"))
    words = shlex.split(line)
    assert words[2] == str(members) and words[4] == str(orders)
    assert json.loads(words[6]) == flt
    with pytest.raises(InputError):
        segment_filter("休眠顧客")


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    days=st.one_of(st.none(), st.integers(0, 2000)),
    products=st.sampled_from(["A-100", "B-200", "E-500", "Z-999"]),
    count=st.integers(1, 30),
)
def test_any_purchase_filter_in_the_guidance_is_the_filters_count(
    demo: pd.DataFrame, days: int | None, products: str, count: int
) -> None:
    flt: dict[str, object] = {"購入回数": {"min": count}, "購入商品": {"contains": products}}
    if days is not None:
        flt["最終購入日"] = {"after": (AS_OF - dt.timedelta(days=days)).isoformat()}
    text = send_guidance(demo, flt, "m.csv", "o.csv")
    toml = text.split("に書く行:\n", 1)[1].split("\n\n■", 1)[0]
    assert tomllib.loads(toml)["filter"] == flt
    assert f"（{len(apply_filter(demo, flt)):,}人）" in text.splitlines()[0]


def test_tables_and_charts_show_hostile_values_as_text(demo: pd.DataFrame) -> None:
    frame = demo.copy()
    frame["pref"] = frame["pref"].where(frame["id"] % 3 != 0, "<script>x</script>$\\alpha$")
    table = dormant_by(frame, "pref", group="未購入")
    png = customers.bar_chart(table["未購入"], "$x^2$ <b>")
    assert png.startswith(b"\x89PNG")
    from bcartnb.report.blocks import html_table

    assert "<script>" not in html_table(table)
    assert customers.rf_chart(rfm_counts(frame)).startswith(b"\x89PNG")
    assert customers.recency_chart(recency_curve(frame, "pref"), "曲線").startswith(b"\x89PNG")


def test_as_of_is_a_day(demo: pd.DataFrame) -> None:
    settings_ = load_settings(demo_path("demo.toml"), env={})
    frame = customers.customers_frame(None, None, settings_, "2026/12/01")
    assert (
        frame["顧客グループ"].value_counts().to_dict()
        == demo["顧客グループ"].value_counts().to_dict()
    )
    for bad in ("2026-02-30", "昨日", "2026-12-01T00:00"):
        with pytest.raises(InputError, match="as_of") as err:
            customers.customers_frame(None, None, settings_, bad)
        assert err.value.ja.startswith("as_of は")


def test_the_notebook_is_committed_without_outputs() -> None:
    nb = json.loads(NOTEBOOK.read_text(encoding="utf-8"))
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert all(not c["outputs"] and c["execution_count"] is None for c in code)
    assert "parameters" in code[0]["metadata"]["tags"]
    params = "".join(code[0]["source"])
    for name in ("members", "orders", "settings_path", "as_of", "group"):
        assert f"\n{name} = " in f"\n{params}"


def test_the_notebook_on_the_demo_counts_what_the_purchase_columns_say(
    demo: pd.DataFrame, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BCARTNB_CONFIG", str(demo_path("demo.toml")))
    out = tmp_path / "customers.ipynb"
    papermill.execute_notebook(
        str(NOTEBOOK),
        str(out),
        parameters={"as_of": AS_OF.isoformat(), "group": "休眠"},
        kernel_name="python3",
        cwd=str(tmp_path),
        progress_bar=False,
    )
    got = customers.read_counts(out)
    assert got["members"] == len(demo)
    assert got["groups"] == {g: int(n) for g, n in demo["顧客グループ"].value_counts().items()} | {
        g: 0 for g in GROUPS if g not in set(demo["顧客グループ"])
    }
    dormant = demo[demo["顧客グループ"] == "休眠"]
    assert got["dormant_by_pref"] == {k: v for k, v in dormant_by(demo, "pref")["休眠"].items()}
    assert {k: v for k, v in got["dormant_by_pref"].items() if v} == dormant[
        "pref"
    ].value_counts().to_dict()
    assert {int(k): v for k, v in got["dormant_by_price_group"].items() if v} == (
        dormant["price_group_id"].value_counts().to_dict()
    )
    for name in ("R", "F", "M"):
        assert {int(r): n for r, n in got["rfm"][name].items() if n} == demo[
            name
        ].value_counts().to_dict()
    assert got["segment"] == {"filter": {"顧客グループ": "休眠"}, "count": len(dormant)}
    text = out.read_text(encoding="utf-8")
    assert "このセグメントに送る: 顧客グループが 休眠" in text
    assert text.count('"image/png"') == 6
    assert "Traceback" not in text and "Warning" not in text


def test_the_notebook_says_a_wrong_group_in_japanese(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BCARTNB_CONFIG", str(demo_path("demo.toml")))
    with pytest.raises(papermill.PapermillExecutionError) as err:
        papermill.execute_notebook(
            str(NOTEBOOK),
            str(tmp_path / "bad.ipynb"),
            parameters={"as_of": "2026-12-01", "group": "休眠顧客"},
            kernel_name="python3",
            cwd=str(tmp_path),
            progress_bar=False,
        )
    assert "休眠顧客" in str(err.value)


def test_read_counts_of_a_notebook_that_recorded_none(tmp_path: Path) -> None:
    empty = tmp_path / "empty.ipynb"
    empty.write_text(json.dumps({"cells": []}), encoding="utf-8")
    with pytest.raises(BcartnbError, match="no customer counts"):
        customers.read_counts(empty)
    with pytest.raises(BcartnbError, match="not a readable notebook"):
        customers.read_counts(tmp_path / "missing.ipynb")


# --- the demo orders ---------------------------------------------------------------------


def test_demo_orders_are_reproducible(tmp_path: Path) -> None:
    out = tmp_path / "orders.csv"
    subprocess.run(
        [sys.executable, str(REPO / "data" / "make_demo_orders.py"), "--out", str(out)],
        check=True,
        capture_output=True,
    )
    assert out.read_bytes() == (REPO / "data" / "demo_orders.csv").read_bytes()


def test_demo_orders_match_the_demo_members_and_read_as_an_export(demo: pd.DataFrame) -> None:
    raw = (REPO / "data" / "demo_orders.csv").read_bytes()
    raw.decode("cp932")
    with pytest.raises(UnicodeDecodeError):
        raw.decode("utf-8")
    assert b"\r\n" in raw
    orders = read_orders(REPO / "data" / "demo_orders.csv")
    ids = set(orders["member_id"].dropna().astype(int))
    assert ids <= set(demo["id"])
    assert orders["member_id"].isna().any()  # a 非会員 order
    assert {"キャンセル", "返品"} <= set(orders["status"])
    assert (orders["total"] < 0).any()  # a return booked as its own order


@pytest.mark.parametrize(("members", "seed"), [(0, 1), (1, 2), (2_000, 3)])
def test_the_generator_at_any_size(tmp_path: Path, members: int, seed: int) -> None:
    out = tmp_path / "o.csv"
    subprocess.run(
        [
            sys.executable,
            str(REPO / "data" / "make_demo_orders.py"),
            "--members",
            str(members),
            "--seed",
            str(seed),
            "--out",
            str(out),
        ],
        check=True,
        capture_output=True,
    )
    orders = read_orders(out)
    assert set(orders["member_id"].dropna().astype(int)) <= set(range(1001, 1001 + members))
    assert orders.groupby("order_id")["total"].nunique().max() <= 1 if len(orders) else True


def test_the_demo_shop_has_the_orders_of_its_members(tmp_path: Path) -> None:
    from bcartnb.demo import make_demo_shop

    shop = make_demo_shop(tmp_path / "demo-out")
    assert (shop / "demo_orders.csv").read_bytes() == demo_path("demo_orders.csv").read_bytes()
    frame = customers.customers_frame(
        shop / "demo_members.csv",
        shop / "demo_orders.csv",
        load_settings(shop / "bcartnb.toml"),
        AS_OF,
    )
    assert (frame["購入回数"] > 0).sum() > len(frame) // 2
