"""Orders in (a CP932 受注 CSV), the purchase columns on every member, and every face
filtering by them the same way (issue 26)."""

from __future__ import annotations

import datetime as dt
import json
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bcartnb.exceptions import FilterError, OrdersFileError, SettingsError
from bcartnb.filters import apply_filter, describe_filter
from bcartnb.orders import PURCHASE_COLUMNS, purchase_columns, read_orders, with_purchases
from bcartnb.settings import PurchaseSettings, settings_from_text

TODAY = dt.date(2026, 12, 6)
HEADER = "受注ID,会員ID,受注日時,対応状況,合計金額,商品コード,商品名\n"


def day(days_ago: int, time: str = "10:00:00") -> str:
    return (TODAY - dt.timedelta(days=days_ago)).strftime("%Y/%m/%d ") + time


#: (受注ID, 会員ID, 受注日時, 対応状況, 合計金額, 商品コード, 商品名): one line an order product
LINES: list[tuple[str, str, str, str, str, str, str]] = [
    # 2002: only cancelled orders
    ("10", "2002", day(10), "キャンセル", "5,000", "A-100", "りんご"),
    # 2003: one order today, two products
    ("11", "2003", day(0, "08:59:59"), "新規注文", "￥1,100", "A-100", "りんご"),
    ("11", "2003", day(0, "08:59:59"), "新規注文", "￥1,100", "B-1", "梨"),
    # 2004: two orders in one day (and one product in both)
    ("12", "2004", day(40, "09:00:00"), "発送済", "2000", "A-10", "みかん"),
    ("13", "2004", day(40, "23:59:59"), "発送済", "3001", "A-10", "みかん"),
    ("14", "2004", day(100), "発送済", "1000", "C-3", "桃"),
    # 2005: an order, and its return booked as a negative order: not a purchase
    ("15", "2005", day(200), "発送済", "50000", "D-4", "ぶどう"),
    ("16", "2005", day(195), "処理中", "-20000", "D-4", "ぶどう"),
    # 2006: 返品 does not count, the rest makes a 離反
    ("17", "2006", day(400), "発送済", "9000", "E-5", "柿"),
    ("18", "2006", day(5), "返品", "9000", "E-5", "柿"),
    # a 非会員 order: no 会員ID
    ("19", "", day(1), "発送済", "700", "A-100", "りんご"),
]
LINES += [  # 2007: ten orders of 100,000 over 300 days, the last 20 days ago: 優良
    (str(100 + i), "2007", day(20 + 30 * i), "発送済", "100000", f"F-{i % 3}", "箱")
    for i in range(10)
]


def csv_text(lines: list[tuple[str, ...]]) -> str:
    return HEADER + "".join(",".join(f'"{c}"' for c in line) + "\r\n" for line in lines)


@pytest.fixture
def orders_csv(tmp_path: Path) -> Path:
    path = tmp_path / "受注.csv"
    path.write_bytes(csv_text(LINES).encode("cp932"))
    return path


def members_frame(ids: list[int]) -> pd.DataFrame:
    return pd.DataFrame({"id": ids, "email": [f"m{i}@example.co.jp" for i in ids]})


MEMBER_IDS = [2001, 2002, 2003, 2004, 2005, 2006, 2007]


def joined(orders_csv: Path, **kw: Any) -> pd.DataFrame:
    orders = read_orders(orders_csv)
    return with_purchases(members_frame(MEMBER_IDS), orders, PurchaseSettings(**kw), TODAY)


def row(frame: pd.DataFrame, member: int) -> dict[str, Any]:
    values = frame[frame["id"] == member].iloc[0].to_dict()
    return {k: (None if v is pd.NA or v is pd.NaT else v) for k, v in values.items()}


def test_a_cp932_export_reads_into_typed_orders(orders_csv: Path) -> None:
    orders = read_orders(orders_csv)
    assert len(orders) == len(LINES)
    assert orders.loc[1, "product_name"] == "りんご" and orders.loc[0, "status"] == "キャンセル"
    assert orders["total"].tolist()[:3] == [5000, 1100, 1100]
    assert orders["member_id"].isna().sum() == 1
    assert str(orders["ordered_at"].dt.tz) == "Asia/Tokyo"
    assert orders.loc[1, "ordered_at"] == pd.Timestamp("2026-12-06 08:59:59", tz="Asia/Tokyo")


def test_hand_computed_purchase_columns_for_the_edge_members(orders_csv: Path) -> None:
    frame = joined(orders_csv)
    assert list(frame.columns) == ["id", "email", *PURCHASE_COLUMNS]
    for nobody in (2001, 2002):  # no orders; only cancelled orders
        r = row(frame, nobody)
        assert (r["購入回数"], r["購入金額合計"], r["顧客グループ"]) == (0, 0, "未購入")
        assert r["初回購入日"] is None and r["平均購入金額"] is None and r["R"] is None
        assert list(r["購入商品"]) == [] and list(r["購入カテゴリ"]) == []
    today = row(frame, 2003)
    assert today["最終購入日"] == pd.Timestamp("2026-12-06", tz="Asia/Tokyo")
    assert (today["最終購入からの日数"], today["購入回数"], today["購入金額合計"]) == (0, 1, 1100)
    assert (today["R"], today["F"], today["M"], today["顧客グループ"]) == (5, 1, 1, "新規")
    assert list(today["購入商品"]) == ["A-100", "B-1", "りんご", "梨"]  # codes, then names
    assert list(today["購入カテゴリ"]) == ["未分類"]  # this export has no category column
    twice = row(frame, 2004)
    assert (twice["購入回数"], twice["購入金額合計"], twice["平均購入金額"]) == (3, 6001, 2000)
    assert twice["最終購入からの日数"] == 40 and twice["F"] == 3 and twice["R"] == 4
    assert twice["顧客グループ"] == "一般" and list(twice["購入商品"]) == [
        "A-10",
        "C-3",
        "みかん",
        "桃",
    ]
    returned = row(frame, 2005)  # 50,000 then -20,000: one purchase, 30,000
    assert (returned["購入回数"], returned["購入金額合計"], returned["平均購入金額"]) == (
        1,
        30000,
        30000,
    )
    assert returned["最終購入からの日数"] == 200 and returned["顧客グループ"] == "休眠"
    gone = row(frame, 2006)  # its 返品 five days ago does not count
    assert (gone["購入回数"], gone["最終購入からの日数"], gone["顧客グループ"]) == (1, 400, "離反")
    best = row(frame, 2007)
    assert (best["購入回数"], best["購入金額合計"], best["F"], best["M"]) == (10, 1_000_000, 5, 5)
    assert (best["R"], best["顧客グループ"]) == (5, "優良")
    assert best["初回購入日"] == pd.Timestamp(TODAY - dt.timedelta(days=290), tz="Asia/Tokyo")


def test_thresholds_are_settings(orders_csv: Path, tmp_path: Path) -> None:
    toml = "[purchase]\ndormant_days = 30\nchurned_days = 500\nexcluded_statuses = ['キャンセル']\n"
    shop = settings_from_text(toml, tmp_path / "bcartnb.toml")
    frame = with_purchases(members_frame(MEMBER_IDS), read_orders(orders_csv), shop.purchase, TODAY)
    assert row(frame, 2004)["顧客グループ"] == "休眠"  # 40 days ≥ 30
    assert row(frame, 2006)["最終購入からの日数"] == 5  # 返品 counts now: its order is the last
    assert PurchaseSettings().dormant_days == 180 and PurchaseSettings().churned_days == 365


@pytest.mark.parametrize(
    "toml",
    [
        "[purchase]\ndormant_days = 400\n",  # not below churned_days
        "[purchase]\nrecency_days = [30, 20, 180, 365]\n",
        "[purchase]\nmonetary = [1, 2, 3]\n",
        "[purchase]\nloyal_rank = 6\n",
        "[purchase]\nexcluded_statuses = ['']\n",
        "[purchase]\ndormant = 180\n",
    ],
)
def test_bad_thresholds_are_one_japanese_line(toml: str, tmp_path: Path) -> None:
    with pytest.raises(SettingsError) as err:
        settings_from_text(toml, tmp_path / "bcartnb.toml")
    assert "purchase" in str(err.value) and err.value.ja


def test_every_filter_form_on_the_purchase_columns(orders_csv: Path) -> None:
    frame = joined(orders_csv)

    def ids(flt: dict[str, Any]) -> list[int]:
        return apply_filter(frame, flt)["id"].tolist()

    assert ids({"顧客グループ": "休眠"}) == [2005]
    assert ids({"顧客グループ": ["休眠", "離反"]}) == [2005, 2006]
    assert ids({"購入商品": {"contains": "A-100"}}) == [2003]  # not 2004's A-10
    assert ids({"購入商品": {"contains": "A-10"}}) == [2004]
    limit = (TODAY - dt.timedelta(days=200)).isoformat()
    assert ids({"最終購入日": {"before": limit}}) == [2006]
    assert ids({"最終購入日": {"to": limit}}) == [2005, 2006]
    assert ids({"最終購入日": {"after": limit}}) == [2003, 2004, 2007]
    assert ids({"購入回数": 0}) == [2001, 2002]
    assert ids({"購入金額合計": {"min": 9000}, "R": {"max": 2}}) == [2005, 2006]
    words = describe_filter(
        {
            "顧客グループ": "休眠",
            "最終購入日": {"before": "2026-06-01"},
            "購入商品": {"contains": "A-100"},
        }
    )
    assert (
        words == "顧客グループが 休眠、最終購入日が 2026年6月1日 より前、購入商品に「A-100」を含む"
    )
    assert describe_filter({"購入カテゴリ": {"contains": "果物"}}) == "購入カテゴリに「果物」を含む"
    assert (
        describe_filter({"初回購入日": {"from": dt.date(2026, 1, 5)}})
        == "初回購入日が 2026年1月5日 以降"
    )
    with pytest.raises(FilterError) as err:
        apply_filter(frame, {"購入商品": "A-100"})
    assert "contains" in err.value.ja


def test_categories_and_names_from_an_export_with_a_category_column(tmp_path: Path) -> None:
    path = tmp_path / "受注.csv"
    rows = [
        ("1", "2001", day(3), "発送済", "1000", "A-100", "りんご", "果物"),
        ("1", "2001", day(3), "発送済", "1000", "B-1", "緑茶", ""),  # no category
        ("2", "2002", day(3), "発送済", "1000", "C-3", "A-100", "飲料"),  # named like a code
        ("3", "2002", day(4), "キャンセル", "1000", "D-4", "桃", "果物"),  # not counted
        ("4", "2003", day(5), "発送済", "0", "E-5", "柿", "果物"),  # zero: not a purchase
    ]
    head = HEADER.replace("商品名\n", "商品名,商品カテゴリ\n")
    path.write_bytes((head + "".join(",".join(r) + "\r\n" for r in rows)).encode("cp932"))
    frame = with_purchases(
        members_frame([2001, 2002, 2003]), read_orders(path), PurchaseSettings(), TODAY
    )
    assert [list(v) for v in frame["購入カテゴリ"]] == [["未分類", "果物"], ["飲料"], []]  # sorted
    assert [list(v) for v in frame["購入商品"]] == [
        ["A-100", "B-1", "りんご", "緑茶"],
        ["C-3", "A-100"],
        [],
    ]

    def ids(flt: dict[str, Any]) -> list[int]:
        return apply_filter(frame, flt)["id"].tolist()

    assert ids({"購入カテゴリ": {"contains": "果物"}}) == [2001]
    assert ids({"購入カテゴリ": {"contains": "未分類"}}) == [2001]
    assert ids({"購入商品": {"contains": "りんご"}}) == [2001]  # by name
    assert ids({"購入商品": {"contains": "A-100"}}) == [2001, 2002]  # a code, or a name
    assert ids({"購入商品": {"contains": "桃"}}) == []  # only in a cancelled order


def test_hostile_and_broken_files(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_bytes((HEADER + "1,2001,2026/13/45 10:00,発送済,100,A,a\n").encode("cp932"))
    with pytest.raises(OrdersFileError) as err:
        read_orders(bad)
    assert "2 行目" in err.value.ja and "受注日時" in err.value.ja
    bad.write_bytes((HEADER + "1,2001,2026/01/05 10:00,発送済,百円,A,a\n").encode("cp932"))
    with pytest.raises(OrdersFileError, match="total"):
        read_orders(bad)
    bad.write_bytes("会員ID,商品名\n1,a\n".encode("cp932"))
    with pytest.raises(OrdersFileError) as err:
        read_orders(bad)
    assert "受注ID" in err.value.ja and err.value.line().startswith("受注ファイルのエラー")
    with pytest.raises(OrdersFileError):
        read_orders(tmp_path / "missing.csv")
    hostile = tmp_path / "hostile.csv"
    name = "<script>alert(1)</script>\r\n改行"
    hostile.write_text(HEADER + f'1,2001,2026/11/05,発送済,100,"{name}",x\n', encoding="utf-8")
    frame = with_purchases(members_frame([2001]), read_orders(hostile), PurchaseSettings(), TODAY)
    assert list(frame.loc[0, "購入商品"]) == [name, "x"]
    assert apply_filter(frame, {"購入商品": {"contains": name}})["id"].tolist() == [2001]


def test_a_profile_column_with_a_purchase_name_is_refused(orders_csv: Path) -> None:
    members = members_frame([2001]).assign(顧客グループ="x")
    with pytest.raises(Exception, match="顧客グループ"):
        with_purchases(members, read_orders(orders_csv), PurchaseSettings(), TODAY)


def reference(lines: list[tuple[str, ...]], excluded: tuple[str, ...]) -> pd.DataFrame:
    """The same rules as a plain loop, to hold the vectorised module to."""
    orders: dict[str, tuple[str, ...]] = {}
    for line in lines:
        if line[1] and line[3] not in excluded:
            orders.setdefault(line[0], line)
    out: dict[int, dict[str, Any]] = {}
    for oid, (_, mid, when, _, total, _, _) in orders.items():
        r = out.setdefault(
            int(mid), {"count": 0, "sum": 0, "last": None, "codes": set(), "names": set()}
        )
        r["sum"] += int(total)
        if int(total) > 0:
            r["count"] += 1
            d = when[:10]
            r["last"] = d if r["last"] is None else max(r["last"], d)
            r["codes"] |= {ln[5] for ln in lines if ln[0] == oid and ln[5]}
            r["names"] |= {ln[6] for ln in lines if ln[0] == oid and ln[6]}
    for r in out.values():  # codes, then the names that are not a code, each part sorted
        r["codes"] = sorted(r["codes"]) + sorted(r["names"] - r["codes"])
    frame = pd.DataFrame.from_dict(out, orient="index", columns=["count", "sum", "last", "codes"])
    return frame.sort_index()


order_lines = st.lists(
    st.tuples(
        st.integers(1, 40).map(str),  # 受注ID
        st.sampled_from(["3001", "3002", "3003", ""]),
        st.integers(0, 800).map(day),
        st.sampled_from(["新規注文", "発送済", "キャンセル", "返品", "処理中"]),
        st.integers(-50_000, 2_000_000).map(str),
        st.sampled_from(["A-1", "A-10", "ｱ-1", "B,2", ""]),
        st.sampled_from(["品", "A-1", ""]),  # a name may be another product's code
    ),
    max_size=30,
)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(lines=order_lines, seed=st.integers(0, 1000))
def test_the_derived_frame_is_the_loops_and_ignores_line_order(
    tmp_path: Path, lines: list[tuple[str, ...]], seed: int
) -> None:
    # an order's own columns are the same on each of its lines, as in an export
    first: dict[str, tuple[str, ...]] = {}
    lines = [(*first.setdefault(ln[0], ln)[:5], ln[5], ln[6]) for ln in lines]
    path = tmp_path / "o.csv"
    path.write_bytes(csv_text(lines).encode("cp932"))
    derived = purchase_columns(read_orders(path), PurchaseSettings(), TODAY)
    shuffled = lines[:]
    random.Random(seed).shuffle(shuffled)
    path.write_bytes(csv_text(shuffled).encode("cp932"))
    again = purchase_columns(read_orders(path), PurchaseSettings(), TODAY)
    pd.testing.assert_frame_equal(derived, again)
    ref = reference(lines, PurchaseSettings().excluded_statuses)
    assert derived.index.tolist() == ref.index.tolist()
    assert derived["購入回数"].tolist() == ref["count"].tolist()
    assert derived["購入金額合計"].tolist() == ref["sum"].tolist()
    assert [list(c) for c in derived["購入商品"]] == ref["codes"].tolist()
    last = [None if d is pd.NaT else d.strftime("%Y/%m/%d") for d in derived["最終購入日"]]
    assert last == [None if pd.isna(d) else d for d in ref["last"]]


# --- every face filters 休眠 the same way ------------------------------------------------


def bcartnb(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("BCARTNB_")}
    env["BCARTNB_CONFIG"] = str(cwd / "bcartnb.toml")
    return subprocess.run(
        [sys.executable, "-m", "bcartnb", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=120,
    )


def test_members_and_a_run_dry_run_filter_dormant_alike(tmp_path: Path) -> None:
    # today's day decides 休眠: the orders are dated from the real today
    today = dt.datetime.now(dt.timezone(dt.timedelta(hours=9))).date()

    def ago(days: int) -> str:
        return (today - dt.timedelta(days=days)).strftime("%Y/%m/%d 12:00:00")

    members = "".join(f"{4000 + i},商事{i},user{i}@example.co.jp,受け取る\n" for i in range(6))
    (tmp_path / "members.csv").write_text(
        "会員ID,会社名,メールアドレス,メール案内\n" + members, encoding="utf-8"
    )
    lines = [
        ("1", "4000", ago(200), "発送済", "1000", "A", "a"),  # 休眠
        ("2", "4001", ago(250), "発送済", "1000", "A", "a"),  # 休眠
        ("3", "4001", ago(10), "キャンセル", "1000", "A", "a"),  # cancelled: still 休眠
        ("4", "4002", ago(3), "発送済", "1000", "A", "a"),  # 新規
        ("5", "4003", ago(500), "発送済", "1000", "A", "a"),  # 離反
    ]
    (tmp_path / "受注.csv").write_bytes(csv_text(lines).encode("cp932"))
    (tmp_path / "bcartnb.toml").write_text(
        'plan = "プラン10"\nfrom = "見本商事 <shop@example.co.jp>"\n'
        'signature = "見本商事"\ndb = "ledger.sqlite3"\n',
        encoding="utf-8",
    )
    flt = '{"顧客グループ": "休眠"}'
    looked = bcartnb(
        "members", "members.csv", "--orders", "受注.csv", "--filter", flt, "--json", cwd=tmp_path
    )
    assert looked.returncode == 0, looked.stderr
    assert json.loads(looked.stdout)["selected"] == 2
    campaign = tmp_path / "campaign.toml"
    campaign.write_text(
        'members = "members.csv"\norders = "受注.csv"\nsubject = "ご無沙汰しております"\n'
        'body = "{{ 会社名 }} 様\\n"\n[filter]\n"顧客グループ" = "休眠"\n',
        encoding="utf-8",
    )
    dry = bcartnb("run", str(campaign), "--json", cwd=tmp_path)
    assert dry.returncode == 0, dry.stderr
    out = json.loads(dry.stdout)
    assert (out["selected"], out["sendable"], out["sent"]) == (2, 2, 0)
    # the command line's --orders does the same for a campaign file without orders
    campaign.write_text(campaign.read_text(encoding="utf-8").replace('orders = "受注.csv"\n', ""))
    dry = bcartnb("run", str(campaign), "--orders", "受注.csv", "--json", cwd=tmp_path)
    assert dry.returncode == 0, dry.stderr
    assert json.loads(dry.stdout)["selected"] == 2
    without = bcartnb("run", str(campaign), "--json", cwd=tmp_path)  # no orders: not a column
    assert without.returncode == 2 and "顧客グループ" in without.stderr
    assert "Traceback" not in without.stderr


def test_the_papermill_notebook_takes_orders(repo_root: Path, tmp_path: Path) -> None:
    from bcartnb.campaign import CampaignSpec
    from bcartnb.report import notebook_params

    cells = json.loads((repo_root / "notebooks" / "campaign.ipynb").read_text(encoding="utf-8"))
    sources = ["".join(c["source"]) for c in cells["cells"]]
    assert any(
        s.startswith("# キャンペーンのパラメータ") and "\norders = None" in s for s in sources
    )
    assert any("orders=orders" in s for s in sources)
    orders = tmp_path / "受注.csv"
    params = notebook_params(
        members=str(tmp_path / "m.csv"), orders=str(orders), subject="s", body="b"
    )
    assert CampaignSpec.from_mapping(params).orders == orders
    params = notebook_params(members=str(tmp_path / "m.csv"), orders=None, subject="s", body="b")
    assert CampaignSpec.from_mapping(params).orders is None
