"""``bcart pull --orders`` after the first time: only what changed, merged whole; and what a
lock-out, a dropped connection and a SIGKILL leave behind (the next pull goes on, nothing
doubled). Against the real local B-Cart API (tests/bcart_server.py)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.parse
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pandas as pd
import pytest
from bcart_server import TOKEN, FakeBcart, serve
from test_orders_api import api_order

from bcartnb.bcart_api import BcartClient, PartialPull, partial_path
from bcartnb.bcart_api.orders import pull_orders as pull
from bcartnb.bcart_api.orders import snapshot_info
from bcartnb.exceptions import BcartApiError
from bcartnb.orders import read_orders
from bcartnb.settings import BcartSettings

TOKYO = ZoneInfo("Asia/Tokyo")
FIRST = datetime(2026, 12, 5, 12, 0, tzinfo=TOKYO)
OLD = "2026-12-01 10:00:00"  # every order's updated_at before the first pull
NEW = "2026-12-06 09:00:00"  # a change after it


def shop(n: int) -> list[dict[str, Any]]:
    return [{**api_order(i), "updated_at": OLD} for i in range(n)]


def order_queries(fake: FakeBcart) -> list[dict[str, str]]:
    return [dict(urllib.parse.parse_qsl(q)) for m, p, q in fake.requests if p.endswith("/orders")]


def offsets(fake: FakeBcart) -> list[int]:
    return [int(q["offset"]) for q in order_queries(fake)]


class Sleeps:
    def __init__(self) -> None:
        self.waits: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


def client_for(url: str, **kw: Any) -> BcartClient:
    kw.setdefault("backoff", 0.01)
    return BcartClient(BcartSettings(api_url=url, token=TOKEN), **kw)


def lines_of(orders: list[dict[str, Any]]) -> int:
    return sum(max(len(o["order_products"]), 1) for o in orders)


def test_the_second_pull_fetches_only_what_changed_and_replaces_it_whole(tmp_path: Path) -> None:
    out = tmp_path / "orders.parquet"
    fake = FakeBcart(orders=shop(250))
    with serve(fake) as url, client_for(url) as client:
        first = pull(client, out, now=FIRST)
        assert first.attrs["full"] and first.attrs["changed"] == 250
        assert "updated_at_min" not in order_queries(fake)[0]
        # 5003 is cancelled with one product left; 5010 gets a third product; a new order
        fake.orders[3] = {**fake.orders[3], "status": "キャンセル", "updated_at": NEW}
        fake.orders[3]["order_products"] = [{"product_no": "Z-9", "product_name": "新"}]
        fake.orders[10] = {**fake.orders[10], "updated_at": NEW}
        fake.orders[10]["order_products"] = [
            *fake.orders[10]["order_products"],
            {"product_no": "Z-1", "product_name": "追加", "category": "飲料"},
        ]
        fake.orders.append({**api_order(999), "updated_at": NEW})
        fake.requests.clear()
        second = pull(client, out, now=FIRST + timedelta(days=1))
    asked = order_queries(fake)
    assert [q["updated_at_min"] for q in asked] == ["2026-12-05 11:00:00"]  # an hour's overlap
    assert asked[0]["complete"] == "1"
    assert (second.attrs["full"], second.attrs["changed"]) == (False, 3)
    snap = read_orders(out)
    assert len(snap) == lines_of(fake.orders) and snap["order_id"].nunique() == 251
    cancelled = snap[snap["order_id"] == "5003"]
    assert cancelled["status"].tolist() == ["キャンセル"] and cancelled[
        "product_code"
    ].tolist() == ["Z-9"]
    grown = snap[snap["order_id"] == "5010"]
    assert grown["product_code"].tolist()[-1] == "Z-1" and len(grown) == 3
    assert grown["product_category"].tolist() == ["", "", "飲料"]
    untouched = snap[snap["order_id"] == "5004"]
    assert len(untouched) == 2 and untouched["status"].iloc[0] == api_order(4)["status"]
    info = snapshot_info(out)
    assert info is not None and info["since"] == "2026-12-05 11:00:00" and info["orders"] == 251
    assert out.stat().st_mode & 0o777 == 0o600 and TOKEN.encode() not in out.read_bytes()


def test_full_and_another_api_pull_everything_again(tmp_path: Path) -> None:
    out = tmp_path / "orders.parquet"
    fake = FakeBcart(orders=shop(30))
    with serve(fake) as url, client_for(url) as client:
        pull(client, out, now=FIRST)
        del fake.orders[5]  # deleted in B-Cart: a changed-since pull cannot see it
        pull(client, out, now=FIRST + timedelta(hours=2))
        assert read_orders(out)["order_id"].nunique() == 30
        fake.requests.clear()
        again = pull(client, out, now=FIRST + timedelta(hours=3), full=True)
        assert "updated_at_min" not in order_queries(fake)[0]
    assert again.attrs["full"] and read_orders(out)["order_id"].nunique() == 29
    with serve(FakeBcart(orders=shop(2))) as other, client_for(other) as client:
        pull(client, out, now=FIRST + timedelta(hours=4))  # not the API it came from
    assert read_orders(out)["order_id"].nunique() == 2


def test_an_api_that_ignores_changed_since_still_gives_each_order_once(tmp_path: Path) -> None:
    out = tmp_path / "orders.parquet"
    fake = FakeBcart(orders=shop(150), ignore_since=True)
    with serve(fake) as url, client_for(url) as client:
        pull(client, out, now=FIRST)
        fake.orders[0] = {**fake.orders[0], "status": "キャンセル", "updated_at": NEW}
        again = pull(client, out, now=FIRST + timedelta(days=1))
    assert again.attrs["changed"] == 150  # everything came back: merged, not added
    snap = read_orders(out)
    assert len(snap) == lines_of(fake.orders) and snap["order_id"].nunique() == 150
    assert snap[snap["order_id"] == "5000"]["status"].tolist() == ["キャンセル"] * 2


def test_a_second_pull_into_the_same_snapshot_at_once_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "orders.parquet"
    fake = FakeBcart(orders=shop(10))
    with serve(fake) as url, client_for(url) as client:
        pull(client, out, now=FIRST)
        query = {"complete": "1", "updated_at_min": "2026-12-05 11:00:00"}
        held = PartialPull(partial_path(out), url, 100, key="orders", query=query).open(FIRST)
        try:
            with pytest.raises(BcartApiError) as err:
                pull(client, out, now=FIRST + timedelta(hours=1))
        finally:
            held.discard()
        assert "実行中" in err.value.ja
        fake.requests.clear()
        pull(client, out, now=FIRST + timedelta(hours=1))  # once the first is done: fine
    assert len(order_queries(fake)) == 1 and read_orders(out)["order_id"].nunique() == 10


def test_a_lock_out_429_and_a_503_wait_what_retry_after_names(tmp_path: Path) -> None:
    fake = FakeBcart(orders=shop(150), fail_429=2, retry_after="7")
    fake.fail_5xx, fake.unavailable_retry_after = 1, "3"
    sleeps = Sleeps()
    with serve(fake) as url, client_for(url, sleep=sleeps) as client:
        frame = pull(client, tmp_path / "orders.parquet", now=FIRST)
    assert fake.locked == 2 and sleeps.waits == [7.0, 7.0, 3.0]
    assert offsets(fake) == [0, 0, 0, 0, 100]  # the same page asked again, never skipped
    assert frame["order_id"].nunique() == 150


def test_a_connection_dropped_for_good_keeps_the_pages_and_the_next_pull_goes_on(
    tmp_path: Path,
) -> None:
    out = tmp_path / "orders.parquet"
    fake = FakeBcart(orders=shop(250))
    with serve(fake) as url:
        with client_for(url) as client:
            pull(client, out, now=FIRST)
        for i in range(0, 250, 2):  # half of them change: three pages of changes
            fake.orders[i] = {**fake.orders[i], "status": "発送済", "updated_at": NEW}
        fake.drop_offsets = {100}
        fake.requests.clear()
        later = FIRST + timedelta(days=1)
        with client_for(url, attempts=1) as client, pytest.raises(BcartApiError) as err:
            pull(client, out, now=later)
        assert "取得済みの 100 件" in err.value.ja and "bcart pull --orders" in err.value.ja
        assert partial_path(out).exists()
        kept = read_orders(out).drop_duplicates("order_id")["status"].iloc[::2]
        assert not kept.eq("発送済").any()  # the old snapshot, as it was
        fake.requests.clear()
        with client_for(url) as client:
            done = pull(client, out, now=later + timedelta(minutes=5))
    # the kept page once more (has the list moved?), then on, asking the same question
    assert offsets(fake) == [0, 100]
    assert {q["updated_at_min"] for q in order_queries(fake)} == {"2026-12-05 11:00:00"}
    assert done.attrs["changed"] == 125 and not partial_path(out).exists()
    assert any("続きから" in w for w in done.attrs["warnings"])
    snap = read_orders(out)
    assert len(snap) == lines_of(fake.orders) and snap["order_id"].nunique() == 250
    heads = snap.drop_duplicates("order_id").set_index("order_id")["status"]
    assert all(heads[str(5000 + i)] == "発送済" for i in range(0, 250, 2))
    # dated from the first page of the stopped pull: nothing changed since then is missed
    assert snapshot_info(out)["pulled_at"] == later.isoformat(timespec="seconds")  # type: ignore[index]


def test_a_pull_killed_mid_way_then_run_again_doubles_nothing(tmp_path: Path) -> None:
    now = datetime.now(TOKYO)
    soon = (now + timedelta(days=1)).strftime("%Y-%m-%d %H:%M:%S")
    fake = FakeBcart(orders=shop(350))
    env = {
        **os.environ,
        "BCARTNB_BCART_TOKEN": TOKEN,
        "BCARTNB_CONFIG": str(tmp_path / "bcartnb.toml"),
    }
    cmd = [sys.executable, "-m", "bcartnb", "bcart", "pull", "--orders", "--json"]
    snapshot = tmp_path / "bcart_orders.parquet"
    kept = partial_path(snapshot)
    with serve(fake) as url:
        (tmp_path / "bcartnb.toml").write_text(f'[bcart]\napi_url = "{url}"\n', encoding="utf-8")
        first = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, timeout=120)
        assert first.returncode == 0, first.stderr.decode()
        for order in fake.orders:  # every order changes: four pages of changes
            order.update(status="完了", updated_at=soon)
            order["order_products"] = [*order["order_products"], {"product_no": "X-1"}]
        fake.stall_offsets = {200: 60.0}
        fake.requests.clear()
        proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while offsets(fake)[-1:] != [200]:  # held at the third page
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
        assert len(kept.read_text(encoding="utf-8").splitlines()) == 3  # head + 2 pages
        assert TOKEN not in kept.read_text(encoding="utf-8")
        assert read_orders(snapshot)["status"].ne("完了").all()  # the old snapshot, whole
        fake.requests.clear()
        done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr.decode()
    assert offsets(fake) == [100, 200, 300]
    out = json.loads(done.stdout)
    assert (out["orders"], out["changed"], out["full"]) == (350, 350, False)
    assert any("続きから" in w for w in out["warnings"])
    snap = read_orders(snapshot)
    assert len(snap) == lines_of(fake.orders) and not kept.exists()
    assert not snap.duplicated(["order_id", "product_code", "product_name"]).any()
    assert snap["status"].eq("完了").all()


def test_hostile_values_come_through_as_text(tmp_path: Path) -> None:
    odd = "<script>alert(1)</script>\r\n改行"
    order = {**api_order(1), "updated_at": OLD}
    order["order_products"] = [{"product_no": odd, "product_name": odd, "category": odd}]
    fake = FakeBcart(orders=[order])
    with serve(fake) as url, client_for(url) as client:
        pull(client, tmp_path / "orders.parquet", now=FIRST)
    snap = read_orders(tmp_path / "orders.parquet")
    assert snap.loc[0, ["product_code", "product_name", "product_category"]].tolist() == [odd] * 3
    assert isinstance(snap, pd.DataFrame)
