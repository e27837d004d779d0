"""``GET /orders`` against the real local B-Cart API: pages, a dropped connection, a repeating
API, the command line, and the same purchase columns as the 受注 CSV of the same orders."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from bcart_server import TOKEN, FakeBcart, serve
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from secrets_scan import assert_no_secret
from test_orders import TODAY, csv_text, day

from bcartnb.bcart_api import BcartClient, PullStopped
from bcartnb.bcart_api.orders import orders_text, pull_orders
from bcartnb.cli import main
from bcartnb.orders import purchase_columns, read_orders, typed_orders
from bcartnb.settings import BcartSettings, PurchaseSettings

STATUSES = ["新規注文", "発送済", "キャンセル", "返品"]


def api_order(i: int, products: int = 2) -> dict[str, Any]:
    return {
        "id": 5000 + i,
        "customer_id": None if i % 17 == 0 else 100 + i % 40,
        "ordered_at": day(i % 500).replace("/", "-"),
        "status": STATUSES[i % 4],
        "total_price": (i * 7919) % 90_000 - 10_000,
        "order_products": [
            {"product_no": f"P-{(i + k) % 13}", "product_name": f"商品{k}"} for k in range(products)
        ],
    }


def as_csv_lines(orders: list[dict[str, Any]]) -> list[tuple[str, ...]]:
    """The same orders as the admin screen's 受注 CSV writes them."""
    out = []
    for o in orders:
        for p in o["order_products"] or [{"product_no": "", "product_name": ""}]:
            out.append(
                (
                    str(o["id"]),
                    "" if o["customer_id"] is None else str(o["customer_id"]),
                    o["ordered_at"].replace("-", "/"),
                    o["status"],
                    str(o["total_price"]),
                    p["product_no"],
                    p["product_name"],
                )
            )
    return out


def client_for(url: str, token: str = TOKEN) -> BcartClient:
    return BcartClient(BcartSettings(api_url=url, token=token), backoff=0.01)


def test_pages_and_a_dropped_connection_give_the_csvs_purchase_columns(tmp_path: Path) -> None:
    orders = [api_order(i) for i in range(250)]
    fake = FakeBcart(orders=orders, drop_offsets={100})
    with serve(fake) as url, client_for(url) as client:
        pulled = pull_orders(client, tmp_path / "orders.parquet")
    offsets = [q for m, p, q in fake.requests if p.endswith("/orders")]
    assert offsets == [
        "limit=100&offset=0",
        "limit=100&offset=100",  # dropped, then asked again
        "limit=100&offset=100",
        "limit=100&offset=200",
    ]
    assert fake.dropped == 1 and len(pulled) == 500
    assert (tmp_path / "orders.parquet").stat().st_mode & 0o777 == 0o600
    snapshot = read_orders(tmp_path / "orders.parquet")
    csv = tmp_path / "受注.csv"
    csv.write_bytes(csv_text(as_csv_lines(orders)).encode("cp932"))
    from_csv = read_orders(csv)
    cols = ["order_id", "member_id", "ordered_at", "status", "total", "product_code"]
    pd.testing.assert_frame_equal(snapshot[cols], from_csv[cols])
    pd.testing.assert_frame_equal(
        purchase_columns(snapshot, PurchaseSettings(), TODAY),
        purchase_columns(from_csv, PurchaseSettings(), TODAY),
    )


def test_an_api_repeating_its_first_page_is_stopped(tmp_path: Path) -> None:
    fake = FakeBcart(orders=[api_order(i) for i in range(250)], ignore_offset=True)
    with serve(fake) as url, client_for(url) as client, pytest.raises(PullStopped) as err:
        pull_orders(client, tmp_path / "orders.parquet")
    assert "繰り返して" in err.value.ja
    assert not (tmp_path / "orders.parquet").exists()


def test_a_bad_order_writes_nothing(tmp_path: Path) -> None:
    bad = api_order(1)
    bad["ordered_at"] = "いつか"
    fake = FakeBcart(orders=[api_order(0), bad])
    with serve(fake) as url, client_for(url) as client, pytest.raises(Exception) as err:
        pull_orders(client, tmp_path / "orders.parquet")
    assert "受注日時" in getattr(err.value, "ja", "")
    assert not (tmp_path / "orders.parquet").exists()


def test_cli_pull_orders_then_members_filter_by_it(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    fake = FakeBcart(orders=[api_order(i) for i in range(120)])
    with serve(fake) as url:
        (tmp_path / "bcartnb.toml").write_text(
            'plan = "プラン10"\nfrom = "見本商事 <shop@example.co.jp>"\ndb = "ledger.sqlite3"\n'
            f'[bcart]\napi_url = "{url}"\n',
            encoding="utf-8",
        )
        monkeypatch.setenv("BCARTNB_CONFIG", str(tmp_path / "bcartnb.toml"))
        monkeypatch.setenv("BCARTNB_BCART_TOKEN", TOKEN)
        monkeypatch.chdir(tmp_path)
        caplog.set_level(logging.DEBUG)
        assert main(["bcart", "pull", "--orders", "--json"]) == 0
    out = capsys.readouterr().out
    info = json.loads(out)
    assert info["out"] == str(tmp_path / "bcart_orders.parquet") and info["orders"] == 120
    members = "".join(f"{100 + i},m{i}@example.co.jp\n" for i in range(45))
    (tmp_path / "m.csv").write_text("会員ID,メールアドレス\n" + members, encoding="utf-8")
    flt = json.dumps({"購入回数": 0})
    assert (
        main(["members", "m.csv", "--orders", "bcart_orders.parquet", "--filter", flt, "--json"])
        == 0
    )
    counted = json.loads(capsys.readouterr().out)
    snapshot = read_orders(tmp_path / "bcart_orders.parquet")
    buyers = set(purchase_columns(snapshot, PurchaseSettings()).index)
    assert counted["selected"] == len(set(range(100, 145)) - buyers) > 0
    assert_no_secret(out, caplog.text, tmp_path, secrets={"token": TOKEN})
    assert os.stat(tmp_path / "bcart_orders.parquet").st_mode & 0o777 == 0o600


api_orders = st.lists(
    st.builds(
        lambda i, member, days, status, total, codes: {
            "id": i,
            "customer_id": member,
            "ordered_at": day(days).replace("/", "-"),
            "status": status,
            "total_price": total,
            "order_products": [{"product_no": c, "product_name": "品"} for c in codes],
        },
        st.integers(1, 10**9),
        st.none() | st.integers(1, 6),
        st.integers(0, 900),
        st.sampled_from(STATUSES),
        st.integers(-100_000, 5_000_000),
        st.lists(st.sampled_from(["A-1", "A-10", "ｱ-1", "B,2", "<b>"]), max_size=3),
    ),
    max_size=25,
    unique_by=lambda o: o["id"],
)


@settings(
    max_examples=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(orders=api_orders)
def test_the_api_snapshot_and_the_csv_of_the_same_orders_derive_alike(
    tmp_path: Path, orders: list[dict[str, Any]]
) -> None:
    from_api = typed_orders(orders_text(orders), tmp_path / "api")
    csv = tmp_path / "受注.csv"
    csv.write_bytes(csv_text(as_csv_lines(orders)).encode("cp932"))
    from_csv = read_orders(csv)
    pd.testing.assert_frame_equal(
        purchase_columns(from_api, PurchaseSettings(), TODAY),
        purchase_columns(from_csv, PurchaseSettings(), TODAY),
    )
