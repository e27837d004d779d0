"""The B-Cart API against a real local server: pull, snapshot, rate limit, retries, push."""

from __future__ import annotations

import csv
import email
import email.policy
import io
import json
import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from bcart_server import TOKEN, FakeBcart, serve
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pandas.testing import assert_frame_equal
from secrets_scan import assert_no_secret

from bcartnb.bcart_api import (
    BcartClient,
    RateLimiter,
    customers_text,
    fetch_customers,
    pull,
    push_suppressions,
    read_snapshot,
    snapshot_info,
    write_snapshot,
)
from bcartnb.cli import main
from bcartnb.exceptions import BcartApiError, InputError, MembersFileError, SettingsError
from bcartnb.ledger import BcartChange, Ledger
from bcartnb.members import read_members, typed_members
from bcartnb.settings import BcartSettings, load_settings

CUSTOMS = [
    {"id": 11, "name": "業種", "is_active": 1, "input_type": "text", "input_choices": None},
    {"id": 13, "name": "実店舗の有無", "is_active": 1, "input_type": "select"},
]
# B-Cart's CSV export headers (the contract's table) for the keys the fake API returns
CSV_HEADERS = {
    "id": "会員ID",
    "ext_id": "貴社独自会員ID",
    "comp_name": "会社名",
    "comp_name_kana": "会社名(カナ)",
    "department": "担当部署",
    "tanto_last_name": "担当者(姓)",
    "tanto_first_name": "担当者(名)",
    "email": "メールアドレス",
    "tel": "電話番号",
    "pref": "都道府県",
    "address1": "市区町村",
    "address3": "ビル建物名など",
    "price_group_id": "価格グループID",
    "mm_flag": "メール案内",
    "status": "状態",
    "created_at": "登録日時",
    "updated_at": "更新日時",
}


def member(i: int, **over: Any) -> dict[str, Any]:
    """A customer as GET /customers gives it (the shapes in bcartnb/bcart_api/__init__.py)."""
    base: dict[str, Any] = {
        "id": 1000 + i,
        "ext_id": f"K{i:05d}",
        "comp_name": f"見本商事{i}",
        "comp_name_kana": f"ミホンショウジ{i}",
        "department": "営業部" if i % 3 else None,
        "tanto_last_name": "山田",
        "tanto_first_name": "太郎",
        "email": f"user{i}@example.co.jp",
        "tel": "03-1234-5678",
        "pref": ["東京都", "大阪府", "北海道"][i % 3],
        "address1": "千代田区",
        "address3": None,
        "price_group_id": (i % 4) or None,
        "mm_flag": i % 2,
        "status": "有効",
        "created_at": f"2024-05-{1 + i % 28:02d} 12:34:56",
        "updated_at": "2025-01-02 03:04:05",
        "customs": [{"field_id": 11, "value": "小売" if i % 2 else "卸"}]
        + ([{"field_id": 13, "value": "1"}] if i % 5 == 0 else []),
    }
    base.update(over)
    return base


def shop(n: int) -> list[dict[str, Any]]:
    people = [member(i) for i in range(n)]
    if n > 3:  # hostile and awkward values, Japanese the API keeps as they are
        people[1].update(
            comp_name="㈱髙橋商店 <script>alert(1)</script>",
            email="  hanako@example.jp\u3000",
            address3='第2ビル\r\n3F, "奥"',
            price_group_id=None,
            department="",
        )
        people[2].update(email=None, status=None, created_at=None, customs=[])
        people[3].update(mm_flag=0, comp_name="①髙島屋ｶﾌﾞｼｷ", tel="")
    return people


def csv_export(
    people: list[dict[str, Any]], path: Path, customs: list[dict[str, Any]] = CUSTOMS
) -> Path:
    """The CSV B-Cart's admin screen would export for the same members (CP932): the
    standard columns, then each custom field under its name (a name may repeat one)."""
    names = {c["id"]: c["name"] for c in customs}
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow([*CSV_HEADERS.values(), *names.values()])
    for m in people:
        row = []
        for key in CSV_HEADERS:
            value = m.get(key)
            if key == "mm_flag":
                value = "受け取る" if value else "受け取らない"
            elif key in ("created_at", "updated_at") and value:
                value = value.replace("-", "/")
            row.append("" if value is None else str(value))
        customs = {c["field_id"]: c["value"] for c in m["customs"]}
        row += [customs.get(fid, "") for fid in names]
        writer.writerow(row)
    path.write_bytes(out.getvalue().encode("cp932"))
    return path


@pytest.fixture
def fake() -> FakeBcart:
    return FakeBcart(customers=shop(250), customs=list(CUSTOMS))


@pytest.fixture
def api(fake: FakeBcart) -> Iterator[str]:
    with serve(fake) as url:
        yield url


def client_for(url: str, token: str = TOKEN, **kw: Any) -> BcartClient:
    kw.setdefault("backoff", 0.01)
    return BcartClient(BcartSettings(api_url=url, token=token), **kw)


# --- pull ------------------------------------------------------------------------------


def test_pulled_snapshot_is_the_csv_exports_frame(api: str, fake: FakeBcart, tmp_path: Path):
    pages: list[int] = []
    with client_for(api) as client:
        pulled = pull(client, progress=pages.append)
    frame = write_snapshot(pulled, tmp_path / "snap.parquet")
    from_csv = read_members(csv_export(fake.customers, tmp_path / "export.csv"))
    from_snapshot = read_members(tmp_path / "snap.parquet")
    assert_frame_equal(from_snapshot, from_csv)
    assert_frame_equal(frame, from_csv)
    assert_frame_equal(read_snapshot(tmp_path / "snap.parquet"), from_csv)
    # the awkward ones, as typed
    row = from_snapshot.set_index("id")
    assert row.loc[1001, "comp_name"] == "㈱髙橋商店 <script>alert(1)</script>"
    assert row.loc[1001, "email"] == "hanako@example.jp"
    assert row.loc[1001, "address3"] == '第2ビル\r\n3F, "奥"'
    assert pd.isna(row.loc[1002, "email"]) and pd.isna(row.loc[1002, "created_at"])
    assert not row.loc[1003, "mm_flag"] and row.loc[1005, "mm_flag"]
    # a custom column of whole numbers is typed (Int64), in the CSV and the snapshot alike
    assert row.loc[1005, "実店舗の有無"] == 1 and pd.isna(row.loc[1001, "実店舗の有無"])
    assert row.loc[1001, "業種"] == "小売"
    # paged: 100, 100, 50, each page once, the custom field names once
    assert pages == [100, 100, 50, -1]
    offsets = [q for m, p, q in fake.requests if p.endswith("/customers")]
    assert offsets == ["limit=100&offset=0", "limit=100&offset=100", "limit=100&offset=200"]
    assert from_snapshot.attrs["pulled_at"] == pulled.pulled_at.isoformat(timespec="seconds")
    assert from_snapshot.attrs["api_url"] == api


@pytest.mark.parametrize("end_with_404", [False, True])
def test_an_exact_number_of_pages_ends_either_way(end_with_404: bool, tmp_path: Path):
    fake = FakeBcart(customers=shop(200), customs=CUSTOMS, end_with_404=end_with_404)
    with serve(fake) as url, client_for(url) as client:
        pulled = pull(client, progress=False)
    assert pulled.members == 200
    assert sorted(int(r[0]) for r in pulled.rows) == list(range(1000, 1200))


def test_an_empty_shop_and_no_custom_fields(tmp_path: Path):
    fake = FakeBcart(customers=[], customs=[])
    with serve(fake) as url, client_for(url) as client:
        frame = write_snapshot(pull(client, progress=False), tmp_path / "s.parquet")
    assert len(frame) == 0 and len(read_members(tmp_path / "s.parquet")) == 0


def test_a_dropped_connection_resumes_at_its_page(fake: FakeBcart, api: str, tmp_path: Path):
    fake.drop_offsets = {100, 200}
    with client_for(api) as client:
        pulled = pull(client, progress=False)
    assert fake.dropped == 2 and client.retries == 2
    offsets = [q.rsplit("=", 1)[1] for m, p, q in fake.requests if p.endswith("/customers")]
    assert offsets == ["0", "100", "100", "200", "200"]  # never from the start again
    assert pulled.members == 250


def test_5xx_is_retried_then_reported_without_the_token(fake: FakeBcart, api: str):
    fake.fail_5xx = 2
    with client_for(api) as client:
        assert pull(client, progress=False).members == 250
    fake.fail_5xx = 100
    fake.echo_token_on_error = True
    with client_for(api, attempts=3) as client, pytest.raises(BcartApiError) as err:
        pull(client, progress=False)
    assert "HTTP 503 after 3 attempts" in str(err.value)
    assert TOKEN not in str(err.value) and TOKEN not in err.value.ja


def test_client_limiter_keeps_within_the_servers_limit(tmp_path: Path):
    # 3 requests per 2 s: the limiter must wait unless 3 requests took 2 s. With 0.5 s, a
    # loaded machine (0.25 s a request) never reached the limit and waited nothing.
    fake = FakeBcart(customers=shop(500), customs=CUSTOMS, rate_requests=3, rate_window=2.0)
    limiter = RateLimiter(3, 2.0)
    with serve(fake) as url, client_for(url, rate=limiter) as client:
        started = time.monotonic()
        assert pull(client, progress=False).members == 500
    assert fake.locked == 0  # never locked out
    assert limiter.waited > 0 and time.monotonic() - started >= 2.0  # 7 requests, 3 per 2 s


def test_a_lock_out_is_waited_out_by_retry_after(tmp_path: Path):
    fake = FakeBcart(customers=shop(500), customs=CUSTOMS, rate_requests=2, rate_window=5)
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        time.sleep(seconds)

    # a client that does not know the limit (another app used the same token, say)
    with serve(fake) as url, client_for(url, rate=RateLimiter(1000, 1), sleep=sleep) as client:
        assert pull(client, progress=False).members == 500
    assert fake.locked >= 1
    assert 1.0 in waits  # the Retry-After the server named, not a guess


def test_wrong_token_is_one_japanese_line(api: str, tmp_path: Path):
    with client_for(api, token="expired-token") as client, pytest.raises(SettingsError) as err:
        pull(client, progress=False)
    assert "401" in str(err.value) and "アクセストークン" in err.value.ja
    with pytest.raises(SettingsError, match="BCARTNB_BCART_TOKEN"):
        BcartClient(BcartSettings(api_url=api))


def test_a_nul_in_a_member_value_is_refused_naming_the_member(tmp_path: Path):
    fake = FakeBcart(customers=[member(1, comp_name="見本\x00商事")], customs=CUSTOMS)
    with serve(fake) as url, client_for(url) as client, pytest.raises(BcartApiError) as err:
        pull(client, progress=False)
    assert "member 1001: comp_name holds a NUL" in str(err.value)


def test_a_bad_member_value_fails_the_pull_and_keeps_the_old_snapshot(tmp_path: Path):
    good = FakeBcart(customers=shop(5), customs=CUSTOMS)
    out = tmp_path / "snap.parquet"
    with serve(good) as url, client_for(url) as client:
        write_snapshot(pull(client, progress=False), out)
    before = out.read_bytes()
    bad = FakeBcart(customers=[member(1, price_group_id="二")], customs=CUSTOMS)
    with serve(bad) as url, client_for(url) as client:
        pulled = pull(client, progress=False)
    with pytest.raises(MembersFileError, match="price_group_id"):
        write_snapshot(pulled, out)
    assert out.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["snap.parquet"]  # no temporary left


def test_two_pulls_at_once_leave_one_whole_snapshot(fake: FakeBcart, api: str, tmp_path: Path):
    out = tmp_path / "snap.parquet"
    errors: list[BaseException] = []

    def one() -> None:
        try:
            with client_for(api) as client:
                write_snapshot(pull(client, progress=False), out)
        except BaseException as err:  # pragma: no cover - shown by the assert below
            errors.append(err)

    threads = [threading.Thread(target=one) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(read_members(out)) == 250
    assert sorted(p.name for p in tmp_path.iterdir()) == ["snap.parquet"]


def test_a_member_seen_twice_while_paging_is_kept_once(fake: FakeBcart, api: str):
    fake.customers.insert(150, dict(fake.customers[99]))  # shifted by a sign-up mid-pull
    with client_for(api) as client:
        pulled = pull(client, progress=False)
    assert pulled.members == 250 and "重複" in pulled.warnings[0]


# --- the snapshot file ------------------------------------------------------------------


def test_snapshot_metadata_and_no_token_in_it(fake: FakeBcart, api: str, tmp_path: Path):
    out = tmp_path / "snap.parquet"
    with client_for(api) as client:
        write_snapshot(pull(client, progress=False), out)
    info = snapshot_info(out)
    assert info["api_url"] == api and info["members"] == 250 and info["format"] == 1
    assert info["pulled_at"].endswith("+09:00")
    assert TOKEN.encode() not in out.read_bytes()


def test_what_is_not_a_snapshot_is_one_clear_error(tmp_path: Path):
    plain = tmp_path / "plain.parquet"
    pq.write_table(pa.table({"id": ["1"], "email": ["a@example.jp"]}), plain)
    with pytest.raises(MembersFileError, match="not a snapshot written by bcartnb") as err:
        read_members(plain)
    assert "スナップショット" in err.value.ja
    junk = tmp_path / "junk.parquet"
    junk.write_bytes(b"id,email\n1,a@example.jp\n")
    with pytest.raises(MembersFileError, match="is not a B-Cart snapshot"):
        read_members(junk)
    with pytest.raises(MembersFileError, match="no such member file"):
        read_members(tmp_path / "missing.parquet")
    (tmp_path / "dir.parquet").mkdir()
    with pytest.raises(MembersFileError, match="not a regular file"):
        read_members(tmp_path / "dir.parquet")


text = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
    max_size=30,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    names=st.lists(text, min_size=1, max_size=5),
    custom=st.lists(text, min_size=1, max_size=5),
    flags=st.lists(st.sampled_from([0, 1, None]), min_size=1, max_size=5),
)
def test_any_text_maps_like_the_csv(names: list[str], custom: list[str], flags: list[Any]):
    """Whatever the values (CR, LF, quotes, commas, Japanese, blanks), the API's members
    type to the frame their CSV export reads as."""
    n = min(len(names), len(custom), len(flags))
    people = [
        {
            "id": i + 1,
            "comp_name": names[i],
            "email": f"u{i}@example.jp",
            "mm_flag": flags[i],
            "customs": [{"field_id": 11, "value": custom[i]}],
        }
        for i in range(n)
    ]
    header, rows = customers_text(people, {11: "業種"})
    frame = typed_members(header, pd.DataFrame(dict(enumerate(zip(*rows, strict=True)))), "api")
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["会員ID", "会社名", "メールアドレス", "メール案内", "業種"])
    for p in people:
        flag = {1: "受け取る", 0: "受け取らない", None: ""}[p["mm_flag"]]
        writer.writerow([p["id"], p["comp_name"], p["email"], flag, p["customs"][0]["value"]])
    raw = out.getvalue().encode("utf-8")
    body = pd.read_csv(
        io.BytesIO(raw), dtype=str, keep_default_na=False, na_filter=False, index_col=False
    )
    from_csv = typed_members(list(body.columns), body, "csv")
    assert_frame_equal(frame, from_csv)
    # and both as the rule says, by hand: text kept exactly as sent (CR, LF, edge spaces and
    # all), blank is missing; メール案内 is True only for 1 (受け取る). A custom column of
    # whole numbers or dates is typed (members._custom): by hand only when it stays text.
    texts = [("comp_name", names)]
    if str(frame["業種"].dtype) == str(frame["comp_name"].dtype):
        texts.append(("業種", custom))
    for i in range(n):
        row = frame.iloc[i]
        assert (row["id"], row["email"]) == (i + 1, f"u{i}@example.jp")
        assert row["mm_flag"] == (flags[i] == 1)
        for column, values in texts:
            assert (None if pd.isna(row[column]) else row[column]) == (values[i] or None)


# --- settings ---------------------------------------------------------------------------


def test_bcart_settings_are_checked_at_load(tmp_path: Path):
    cfg = tmp_path / "bcartnb.toml"
    cfg.write_text('[bcart]\napi_url = "http://api.example.jp/api/v1"\n', encoding="utf-8")
    with pytest.raises(SettingsError, match="plain http to another host") as err:
        load_settings(cfg, env={})
    assert "https" in err.value.ja
    cfg.write_text('[bcart]\napi_url = "ftp://x"\n', encoding="utf-8")
    with pytest.raises(SettingsError, match="api_url must be an http"):
        load_settings(cfg, env={})
    cfg.write_text('[bcart]\nurl = "https://x.jp"\n', encoding="utf-8")
    with pytest.raises(SettingsError, match="unknown key 'url'"):
        load_settings(cfg, env={})
    cfg.write_text("[bcart]\n", encoding="utf-8")
    loaded = load_settings(cfg, env={"BCARTNB_BCART_TOKEN": TOKEN})
    assert loaded.bcart.api_url == "https://api.bcart.jp/api/v1"
    assert loaded.bcart.token == TOKEN and TOKEN not in repr(loaded)
    for secret in ("abc\r\nX-Evil: 1", "…", "ｔｏｋｅｎ"):  # the README's placeholder, full width
        with pytest.raises(SettingsError, match="white space, a control character") as err:
            load_settings(cfg, env={"BCARTNB_BCART_TOKEN": secret})
        assert secret not in str(err.value) and err.value.ja.startswith("BCARTNB_BCART_TOKEN")


def test_token_from_dotenv(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text(f"BCARTNB_BCART_TOKEN={TOKEN}\n", encoding="utf-8")
    assert load_settings().bcart.token == TOKEN


# --- push -------------------------------------------------------------------------------


def changes() -> list[BcartChange]:
    return [
        BcartChange(1001, "hanako@example.jp", "unsubscribed", "mm_flag", 0),
        BcartChange(1002, "x@example.jp", "hard_bounce", "is_invalid_email", 1),
        BcartChange(1003, "y@example.jp", "complaint", "mm_flag", 0),
        BcartChange(1003, "y@example.jp", "complaint", "mm_flag", 0),  # twice: one update
    ]


def test_push_is_a_dry_run_unless_applied(fake: FakeBcart, api: str):
    with client_for(api) as client:
        report = push_suppressions(changes(), client)
    assert fake.patches == [] and report.dry_run and len(report.changes) == 3
    text = report.message()
    assert "会員ID 1001 (h***@example.jp, unsubscribed)" in text and "--apply" in text
    assert "hanako@" not in text

    done: list[list[int]] = []
    with client_for(api) as client:
        report = push_suppressions(
            changes(),
            client,
            apply=True,
            batch_size=2,
            on_applied=lambda b: done.append([c.member_id for c in b]),
        )
    assert fake.patches == [
        {"customers": [{"id": 1001, "mm_flag": 0}, {"id": 1002, "is_invalid_email": 1}]},
        {"customers": [{"id": 1003, "mm_flag": 0}]},
    ]
    assert done == [[1001, 1002], [1003]] and len(report.applied) == 3
    assert next(c for c in fake.customers if c["id"] == 1002)["is_invalid_email"] == 1


def test_a_refused_batch_says_how_many_went_through(fake: FakeBcart, api: str):
    bad = [*changes()[:2], BcartChange(9999, "z@example.jp", "manual", "mm_flag", 0)]
    done: list[int] = []
    with client_for(api) as client, pytest.raises(BcartApiError) as err:
        push_suppressions(
            bad, client, apply=True, batch_size=2, on_applied=lambda b: done.extend([len(b)])
        )
    assert "2 of 3 changes applied" in str(err.value) and done == [2]


# --- the command line ---------------------------------------------------------------------


def cli_env(tmp_path: Path, url: str, monkeypatch: pytest.MonkeyPatch, token: str = TOKEN) -> None:
    cfg = tmp_path / "bcartnb.toml"
    cfg.write_text(
        f'plan = "プラン10"\nfrom = "見本商事 <shop@example.co.jp>"\ndb = "ledger.sqlite3"\n'
        f'[bcart]\napi_url = "{url}"\n',
        encoding="utf-8",
    )
    monkeypatch.setenv("BCARTNB_CONFIG", str(cfg))
    monkeypatch.setenv("BCARTNB_BCART_TOKEN", token)
    monkeypatch.chdir(tmp_path)


def test_cli_pull_members_and_no_secret_anywhere(
    api: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
):
    cli_env(tmp_path, api, monkeypatch)
    caplog.set_level(logging.DEBUG)
    assert main(["bcart", "pull", "--json"]) == 0
    pulled = json.loads(capsys.readouterr().out)
    assert pulled["members"] == 250 and pulled["out"] == str(tmp_path / "bcart_members.parquet")
    assert main(["bcart", "pull", "--out", "snaps/today.parquet"]) == 0
    shown = capsys.readouterr()
    assert "会員 250 件を取得しました" in shown.out
    assert main(["members", "snaps/today.parquet", "--opt-in-only", "--json"]) == 0
    counts = json.loads(capsys.readouterr().out)
    assert counts["selected"] == 250 and counts["reasons"]["not_opted_in"] == 125
    # stdout, stderr, the log, the snapshots: no token in any form
    assert_no_secret(
        shown.out, shown.err, caplog.text, json.dumps(pulled), tmp_path, secrets={"token": TOKEN}
    )
    assert "Bearer" not in caplog.text


def test_cli_wrong_token_is_one_line_exit_2(
    api: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
):
    cli_env(tmp_path, api, monkeypatch, token="wrong-" + TOKEN[::-1])
    assert main(["bcart", "pull"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("bcartnb: error: 設定のエラー: BカートAPIがアクセストークンを")
    assert err.count("\n") == 1 and "Traceback" not in err and TOKEN[::-1] not in err
    assert not (tmp_path / "bcart_members.parquet").exists()


def test_cli_push_records_what_was_applied(
    fake: FakeBcart,
    api: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
):
    cli_env(tmp_path, api, monkeypatch)
    with Ledger.open(tmp_path / "ledger.sqlite3") as ledger:
        ledger.suppress("user1@example.co.jp", "unsubscribed", source="test", member_id=1001)
        ledger.suppress("user2@example.co.jp", "hard_bounce", source="test", member_id=1002)
        ledger.suppress("nobody@example.co.jp", "manual", source="test")  # no member id
    assert main(["bcart", "push-suppressions"]) == 0
    listed = capsys.readouterr().out
    assert "会員ID 1001" in listed and "会員ID 1002" in listed and fake.patches == []
    assert main(["bcart", "push-suppressions", "--apply", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["applied"] == 2
    assert fake.patches == [
        {"customers": [{"id": 1001, "mm_flag": 0}, {"id": 1002, "is_invalid_email": 1}]}
    ]
    assert main(["bcart", "push-suppressions", "--apply", "--json"]) == 0  # again: nothing
    assert json.loads(capsys.readouterr().out)["applied"] == 0 and len(fake.patches) == 1


# --- campaigns from a snapshot ----------------------------------------------------------


def test_campaign_from_a_snapshot_dry_run_then_send(
    api: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    smtp_server: Any,
):
    server = smtp_server()
    cli_env(tmp_path, api, monkeypatch)
    for key, value in server.env().items():
        monkeypatch.setenv(key, value)
    assert main(["bcart", "pull", "--json"]) == 0
    pulled_at = json.loads(capsys.readouterr().out)["pulled_at"]
    campaign = tmp_path / "campaign.toml"
    campaign.write_text(
        'members = "bcart_members.parquet"\nopt_in_only = true\n'
        'subject = "{{ 会社名 }} 様へのご案内"\nbody = "{{ 会社名 }} 様\\n業種: {{ 業種 }}\\n"\n'
        '[filter]\npref = "東京都"\n',
        encoding="utf-8",
    )
    assert main(["run", str(campaign), "--json"]) == 0
    dry = json.loads(capsys.readouterr().out)
    assert dry["dry_run"] and dry["members_pulled_at"] == pulled_at and server.received == []
    # 東京都 is i % 3 == 0, opted in is i % 2 == 1, and member 3 was made to opt out
    expected = [f"user{i}@example.co.jp" for i in range(250) if i % 6 == 3 and i != 3]
    assert dry["sendable"] == len(expected)

    assert main(["run", str(campaign), "--send", "--json"]) == 0
    sent = json.loads(capsys.readouterr().out)
    assert sent["sent"] == len(expected) and sent["members_pulled_at"] == pulled_at
    got = sorted(r.recipients[0] for r in server.received)
    assert got == sorted(expected)
    mail = email.message_from_bytes(server.received[0].raw, policy=email.policy.default)
    assert "業種: 小売" in mail.get_content()  # a custom field merged from the snapshot

    # a fresh pull of the same members: nobody gets the same mail twice
    assert main(["bcart", "pull"]) == 0
    capsys.readouterr()
    assert main(["run", str(campaign), "--send"]) == 0
    out = capsys.readouterr().out
    assert "すべて同じメールを送信済み" in out and "--repeat" in out
    assert len(server.received) == len(expected)


def test_papermill_notebook_takes_a_snapshot(
    api: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, smtp_server: Any
):
    import papermill

    from bcartnb.report import demo_path, read_summary

    server = smtp_server()
    monkeypatch.setenv("BCARTNB_CONFIG", str(demo_path("demo.toml")))
    monkeypatch.setenv("BCARTNB_DB", str(tmp_path / "ledger.sqlite3"))
    for key, value in server.env().items():
        monkeypatch.setenv(key, value)
    snap = tmp_path / "snap.parquet"
    with client_for(api) as client:
        pulled = pull(client, progress=False)
    write_snapshot(pulled, snap)
    out = tmp_path / "out.ipynb"
    papermill.execute_notebook(
        str(Path(__file__).resolve().parent.parent / "notebooks" / "campaign.ipynb"),
        str(out),
        parameters={
            "members": str(snap),
            "filter": {"pref": "北海道"},
            "template": "テキストニュースレター",
        },
        kernel_name="python3",
        cwd=str(tmp_path),
        progress_bar=False,
    )
    summary = read_summary(out)
    assert summary["dry_run"] and summary["selected"] == 83  # 北海道: i % 3 == 2
    assert summary["members_pulled_at"] == pulled.pulled_at.isoformat(timespec="seconds")
    assert server.received == [] and TOKEN not in out.read_text(encoding="utf-8")


# --- edges ------------------------------------------------------------------------------


def test_rate_limiter_window_with_an_injected_clock():
    now = [0.0]
    slept: list[float] = []

    def sleep(s: float) -> None:
        slept.append(s)
        now[0] += s

    limiter = RateLimiter(3, 10.0, clock=lambda: now[0], sleep=sleep)
    for _ in range(3):
        with limiter.slot():
            now[0] += 1.0  # each answer takes a second
    assert slept == []
    with limiter.slot():  # the 4th waits until the first answer's stamp leaves the window
        pass
    assert slept == [pytest.approx(1.0 + 10.0 - 3.0)]
    with pytest.raises(ValueError):
        RateLimiter(0, 1.0)


def test_snapshot_name_and_place_are_checked(fake: FakeBcart, api: str, tmp_path: Path):
    with client_for(api) as client:
        pulled = pull(client, progress=False)
    with pytest.raises(InputError, match=r"must end in \.parquet") as err:
        write_snapshot(pulled, tmp_path / "members.csv")
    assert ".parquet" in err.value.ja
    (tmp_path / "taken.parquet").mkdir()
    with pytest.raises(InputError, match="cannot write the snapshot"):
        write_snapshot(pulled, tmp_path / "taken.parquet")
    (tmp_path / "file").write_text("x")
    with pytest.raises(InputError, match="cannot write the snapshot"):
        write_snapshot(pulled, tmp_path / "file" / "s.parquet")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "taken.parquet"]


def test_progress_bar_counts_members(fake: FakeBcart, api: str, capsys: pytest.CaptureFixture[str]):
    with client_for(api) as client:
        pull(client, progress=True)
    err = capsys.readouterr().err
    assert "会員を取得中" in err and "250" in err


def test_a_redirect_never_carries_the_token_away(fake: FakeBcart, api: str):
    elsewhere = FakeBcart(customs=CUSTOMS)
    with serve(elsewhere) as other:
        fake.redirect_to = other + "/customer_customs"
        with client_for(api) as client, pytest.raises(BcartApiError, match="HTTP 302"):
            pull(client, progress=False)
    assert elsewhere.requests == []


def test_a_hostile_retry_after_and_plain_http(tmp_path: Path):
    from bcartnb.bcart_api.client import _retry_after

    assert _retry_after("2") == 2.0 and _retry_after("99999") == 99999.0  # never shortened
    assert _retry_after("nan") is None and _retry_after("-1") is None
    assert _retry_after("soon") is None and _retry_after(None) is None
    assert _retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # a date gone by: now
    assert _retry_after("Wed, 21 Oct 2099 07:28:00 GMT") > 365 * 86400  # type: ignore[operator]
    with pytest.raises(SettingsError, match="plain http to another host"):
        BcartSettings(api_url="http://evil.example/api/v1", token=TOKEN)


def test_a_wrong_api_url_says_so(api: str):
    wrong = client_for(api.replace("/api/v1", "/api/v9"))
    with wrong as client, pytest.raises(BcartApiError, match=r"HTTP 404 \(is \[bcart\] api_url"):
        fetch_customers(client, progress=False)


def test_the_wizard_opens_a_snapshot(api: str, tmp_path: Path, smtp_server: Any):
    from bcartnb.settings import Settings
    from bcartnb.widgets import Wizard

    snap = tmp_path / "snap.parquet"
    with client_for(api) as client:
        pulled = pull(client, progress=False)
    write_snapshot(pulled, snap)
    repo = Path(__file__).resolve().parent.parent
    settings = Settings(
        plan="プラン10",
        db=tmp_path / "ledger.sqlite3",
        templates=repo / "data" / "templates",
        smtp=smtp_server().settings(),
    )
    wizard = Wizard(snap, settings)
    assert len(wizard.members) == 250
    assert wizard.members.attrs["pulled_at"] == pulled.pulled_at.isoformat(timespec="seconds")


def test_a_huge_value_comes_through_whole(tmp_path: Path):
    huge = "髙" * 1_000_000 + "<script>"
    fake = FakeBcart(customers=[member(1, memo=huge)], customs=CUSTOMS)
    with serve(fake) as url, client_for(url) as client:
        write_snapshot(pull(client, progress=False), tmp_path / "s.parquet")
    assert read_members(tmp_path / "s.parquet")["memo"].iloc[0] == huge
