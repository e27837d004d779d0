"""`bcart pull` against a hostile local B-Cart API: it ends, it waits visibly, it keeps what
it has, it never prints the token, and clashing custom fields are read, not refused."""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pandas as pd
import pytest
from bcart_server import TOKEN, FakeBcart, serve
from pandas.testing import assert_frame_equal
from test_bcart_api import CUSTOMS, cli_env, client_for, csv_export, member, shop

from bcartnb.bcart_api import (
    PartialPull,
    PullStopped,
    WaitTooLong,
    partial_path,
    pull,
    pull_snapshot,
    read_snapshot,
    write_snapshot,
)
from bcartnb.bcart_api.client import LOCKED_BACKOFF, LOCKOUT, MAX_WAIT
from bcartnb.cli import main
from bcartnb.exceptions import BcartApiError, MembersFileError
from bcartnb.members import read_members
from bcartnb.templates import compile_template, context_builder


def customer_offsets(fake: FakeBcart) -> list[int]:
    return [
        int(dict(urllib.parse.parse_qsl(q))["offset"])
        for m, p, q in fake.requests
        if p.endswith("/customers") and m == "GET"
    ]


class Sleeps:
    """An injected sleep: records each wait and returns at once (no test sleeps minutes)."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


# --- a pull always ends -------------------------------------------------------------------


def test_an_api_that_ignores_offset_stops_at_the_second_page(tmp_path: Path):
    fake = FakeBcart(customers=shop(250), customs=CUSTOMS, ignore_offset=True)
    with serve(fake) as url, client_for(url) as client, pytest.raises(PullStopped) as err:
        pull(client, progress=False)
    assert customer_offsets(fake) == [0, 100]  # not 300 requests: two
    assert "同じページを繰り返している" in err.value.ja and "\n" not in err.value.line()


def test_a_page_served_again_stops_the_pull(tmp_path: Path):
    fake = FakeBcart(customers=shop(450), customs=CUSTOMS, repeat_offsets={200: 100})
    with serve(fake) as url, client_for(url) as client, pytest.raises(PullStopped) as err:
        pull(client, progress=False)
    assert customer_offsets(fake) == [0, 100, 200]
    assert "offset=200" in str(err.value)


def test_a_list_shifted_by_sign_ups_is_not_a_repeat(tmp_path: Path):
    # 30 sign-ups at the front between two pages: page 2 repeats 30, but brings 70 new
    fake = FakeBcart(customers=shop(250), customs=CUSTOMS)
    with serve(fake) as url, client_for(url) as client:
        seen: list[int] = []

        def grow(n: int) -> None:
            seen.append(n)
            if len(seen) == 1:
                fake.customers[:0] = [member(900 + i) for i in range(30)]

        pulled = pull(client, progress=grow)
    # offset paging cannot see who signed up in front of it; it must not stop, though
    assert pulled.members == 250 and "30 件を重複として除きました" in pulled.warnings[0]


def test_an_endless_list_stops_at_the_ceiling(tmp_path: Path):
    fake = FakeBcart(customs=CUSTOMS, endless=True)
    with serve(fake) as url, client_for(url) as client, pytest.raises(PullStopped) as err:
        pull(client, progress=False, max_members=1000)
    assert len(customer_offsets(fake)) == 11  # 1,100 members: one page past the ceiling
    assert "1,000 件を超えました" in err.value.ja


def test_an_endless_list_stops_past_the_announced_total(tmp_path: Path):
    fake = FakeBcart(customs=CUSTOMS, endless=True, total=250)
    with serve(fake) as url, client_for(url) as client, pytest.raises(PullStopped) as err:
        pull(client, progress=False)
    assert customer_offsets(fake) == [0, 100, 200]  # 300 > 250 announced
    assert "total of 250" in str(err.value)


def test_a_true_total_changes_nothing(tmp_path: Path):
    fake = FakeBcart(customers=shop(250), customs=CUSTOMS, total=250)
    with serve(fake) as url, client_for(url) as client:
        assert pull(client, progress=False).members == 250


# --- waits: shown, bounded, and backed off without Retry-After ------------------------------


def test_a_429_storm_without_retry_after_backs_off_on_its_own_schedule(tmp_path: Path):
    fake = FakeBcart(customers=shop(250), customs=CUSTOMS, fail_429=3, retry_after=None)
    sleeps = Sleeps()
    with serve(fake) as url, client_for(url, sleep=sleeps) as client:
        assert pull(client, progress=False).members == 250
    # the written rule: 15 s, doubling, never past the 300-s lock-out
    assert sleeps.waits == [15.0, 30.0, 60.0] and fake.locked == 3
    assert (LOCKED_BACKOFF, LOCKOUT) == (15.0, 300.0)


def test_a_lock_out_without_retry_after_is_waited_out(tmp_path: Path):
    fake = FakeBcart(
        customers=shop(300), customs=CUSTOMS, rate_requests=2, rate_window=60, lockout=0.2
    )
    fake.lockout_retry_after = False
    waits: list[float] = []

    def sleep(seconds: float) -> None:  # the server's lock-out is real time: wait a little
        waits.append(seconds)
        time.sleep(0.25)

    with serve(fake) as url, client_for(url, sleep=sleep, max_wait=10_000) as client:
        assert pull(client, progress=False).members == 300
    assert fake.locked >= 1 and waits[0] == LOCKED_BACKOFF


def test_a_429_storm_with_retry_after_waits_what_it_names(tmp_path: Path):
    fake = FakeBcart(customers=shop(250), customs=CUSTOMS, fail_429=3, retry_after="7")
    sleeps = Sleeps()
    with serve(fake) as url, client_for(url, sleep=sleeps) as client:
        assert pull(client, progress=False).members == 250
    assert sleeps.waits == [7.0, 7.0, 7.0]


def test_an_endless_storm_stops_once_the_waits_pass_the_maximum(tmp_path: Path):
    fake = FakeBcart(customers=shop(250), customs=CUSTOMS, fail_429=100, retry_after=None)
    sleeps = Sleeps()
    with (
        serve(fake) as url,
        client_for(url, sleep=sleeps, attempts=20) as client,
        pytest.raises(WaitTooLong) as err,
    ):
        pull(client, progress=False)
    assert sum(sleeps.waits) <= MAX_WAIT < sum(sleeps.waits) + LOCKOUT
    assert "以降にもう一度実行してください" in err.value.ja


def test_a_huge_retry_after_stops_at_once_saying_when(tmp_path: Path):
    fake = FakeBcart(customers=shop(250), customs=CUSTOMS, fail_429=1, retry_after="3000")
    sleeps = Sleeps()
    with (
        serve(fake) as url,
        client_for(url, sleep=sleeps) as client,
        pytest.raises(WaitTooLong) as err,
    ):
        pull(client, progress=False)
    assert sleeps.waits == [] and fake.locked == 1  # no 50 minutes of silence
    assert err.value.seconds == 3000.0
    assert re.search(r"50 分の待機が必要です。(\d\d月\d\d日 )?\d\d:\d\d 以降に", err.value.ja)
    assert err.value.retry_at > pd.Timestamp.now(tz="Asia/Tokyo")


def test_a_long_wait_is_shown_with_the_time_left(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    fake = FakeBcart(customers=shop(150), customs=CUSTOMS, fail_429=1, retry_after="125")
    left: list[float] = []
    with serve(fake) as url, client_for(url, sleep=Sleeps(), on_wait=left.append) as client:
        pull(client, progress=False)
    assert left == [float(s) for s in range(125, 0, -1)] + [0.0]  # second by second, then done
    fake = FakeBcart(customers=shop(150), customs=CUSTOMS, fail_429=1, retry_after="125")
    with serve(fake) as url, client_for(url, sleep=Sleeps()) as client:
        pull(client, progress=True)
    err = capsys.readouterr().err
    assert "待機中 残り 2:05" in err and "残り 0:01" in err and "会員を取得中" in err


# --- what was fetched is kept, and the next pull goes on from there ------------------------


def test_a_stopped_pull_keeps_its_pages_and_the_next_one_resumes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
):
    fake = FakeBcart(customers=shop(250), customs=CUSTOMS)
    with serve(fake) as url:
        cli_env(tmp_path, url, monkeypatch)
        fake.repeat_offsets = {200: 0}  # the third page misbehaves
        assert main(["bcart", "pull"]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and TOKEN not in err
        assert "取得済みの 200 件" in err and "続きから取得します" in err
        # the error names the file it wrote, never the snapshot it did not
        assert not re.search(r"bcart_members\.parquet(?!\.partial)", err)
        assert not (tmp_path / "bcart_members.parquet").exists()
        kept = tmp_path / "bcart_members.parquet.partial"
        assert kept.exists() and kept.stat().st_mode & 0o777 == 0o600
        assert TOKEN not in kept.read_text(encoding="utf-8")

        fake.repeat_offsets = {}
        fake.requests.clear()
        assert main(["bcart", "pull", "--json"]) == 0
        out = json.loads(capsys.readouterr().out)
    # the last kept page once more (has the list moved?), then on: the rest is not fetched
    assert customer_offsets(fake) == [100, 200]
    assert out["members"] == 250 and any("続きから" in w for w in out["warnings"])
    assert not kept.exists()
    frame = read_members(tmp_path / "bcart_members.parquet")
    assert sorted(frame["id"]) == list(range(1000, 1250))


def test_a_pull_refused_for_too_long_a_wait_resumes_later(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
):
    # two pages go through, then a lock-out of an hour
    fake = FakeBcart(customers=shop(350), customs=CUSTOMS, lock_offsets={200: "3600"})
    with serve(fake) as url:
        cli_env(tmp_path, url, monkeypatch)
        assert main(["bcart", "pull"]) == 2
        err = capsys.readouterr().err
        assert "以降にもう一度実行してください" in err and "取得済みの 200 件" in err
        fake.requests.clear()
        assert main(["bcart", "pull"]) == 0
    assert customer_offsets(fake) == [100, 200, 300]
    assert len(read_members(tmp_path / "bcart_members.parquet")) == 350


def test_a_pull_killed_mid_way_resumes_at_its_page(tmp_path: Path):
    fake = FakeBcart(customers=shop(350), customs=CUSTOMS, stall_offsets={200: 60.0})
    env = {
        **os.environ,
        "BCARTNB_BCART_TOKEN": TOKEN,
        "BCARTNB_CONFIG": str(tmp_path / "bcartnb.toml"),
    }
    with serve(fake) as url:
        (tmp_path / "bcartnb.toml").write_text(f'[bcart]\napi_url = "{url}"\n', encoding="utf-8")
        cmd = [sys.executable, "-m", "bcartnb", "bcart", "pull"]
        proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stderr=subprocess.DEVNULL)
        kept = tmp_path / "bcart_members.parquet.partial"
        deadline = time.monotonic() + 60
        while customer_offsets(fake)[-1:] != [200]:  # held at the third page
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
        assert len(kept.read_text(encoding="utf-8").splitlines()) == 3  # head + 2 pages
        fake.requests.clear()
        done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr.decode()
    assert customer_offsets(fake) == [100, 200, 300]
    assert len(read_members(tmp_path / "bcart_members.parquet")) == 350 and not kept.exists()


def test_a_resumed_pull_whose_list_moved_starts_over(tmp_path: Path):
    fake = FakeBcart(customers=shop(250), customs=CUSTOMS, repeat_offsets={200: 0})
    out = tmp_path / "snap.parquet"
    with serve(fake) as url:
        with client_for(url) as client, pytest.raises(PullStopped):
            pull_snapshot(client, out, progress=False)
        del fake.customers[:150]  # 150 members deleted since: the kept offset 200 is past them
        fake.customers += [member(500 + i) for i in range(150)]
        fake.repeat_offsets = {}
        fake.requests.clear()
        with client_for(url) as client:
            _, frame = pull_snapshot(client, out, progress=False)
    # the kept page at 100 holds other members now: everything again, from the start
    assert customer_offsets(fake) == [100, 0, 100, 200]
    assert sorted(frame["id"]) == [1000 + i for i in range(150, 250)] + [
        1500 + i for i in range(150)
    ]


def test_two_pulls_into_one_snapshot_at_once_are_refused(tmp_path: Path):
    fake = FakeBcart(customers=shop(250), customs=CUSTOMS)
    out = tmp_path / "snap.parquet"
    with serve(fake) as url, client_for(url) as first, client_for(url) as second:
        held = PartialPull(partial_path(out), first.api_url, 100).open(pd.Timestamp.now(tz="UTC"))
        with pytest.raises(BcartApiError, match="another bcart pull") as err:
            pull_snapshot(second, out, progress=False)
        held.close()
        assert "実行中" in err.value.ja
        pull_snapshot(second, out, progress=False)
    assert len(read_members(out)) == 250 and not partial_path(out).exists()


def test_refused_members_discard_the_kept_pages(tmp_path: Path):
    fake = FakeBcart(customers=[member(1, price_group_id="二")], customs=CUSTOMS)
    out = tmp_path / "snap.parquet"
    with serve(fake) as url, client_for(url) as client, pytest.raises(MembersFileError) as err:
        pull_snapshot(client, out, progress=False)
    # named as what it is: members from the API, not a snapshot file never written
    assert "members pulled from http://127.0.0.1" in str(err.value)
    assert "BカートAPI（" in err.value.ja and "snap.parquet" not in err.value.line()
    assert sorted(p.name for p in tmp_path.iterdir()) == []


# --- the token, in every form a server echoes it --------------------------------------------

ECHOES: dict[str, Callable[[str], str]] = {
    "as is": lambda auth: auth,
    "lower": str.lower,
    "upper": str.upper,
    "json-escaped": lambda auth: json.dumps(auth).replace("/", "\\/")[1:-1],
    "url-encoded": lambda auth: urllib.parse.quote(auth, safe=""),
    "form-encoded": urllib.parse.quote_plus,
    "base64": lambda auth: base64.b64encode(auth.encode()).decode(),
    "base64 token": lambda auth: base64.b64encode(auth.split()[1].encode()).decode(),
    "cut at 20": lambda auth: auth[:20] + "...",
    "last 12": lambda auth: "..." + auth[-12:],
    "repr": repr,
}


@pytest.mark.parametrize("form", sorted(ECHOES))
def test_an_echoed_token_never_reaches_an_error(form: str, tmp_path: Path):
    token = TOKEN[:10] + "/+Ab" + TOKEN[10:]  # a slash and a plus: escaped in most forms
    fake = FakeBcart(customers=shop(5), customs=CUSTOMS, token=token, echo=ECHOES[form])
    fake.fail_with = [400]
    with (
        serve(fake) as url,
        client_for(url, token=token) as client,
        pytest.raises(BcartApiError) as err,
    ):
        pull(client, progress=False)
    text = err.value.line()
    assert "HTTP 400" in text and "***" in text
    for piece in (token, token[:8], token[-8:], token[10:18]):
        for variant in {piece, piece.lower(), urllib.parse.quote(piece, safe="")}:
            assert variant.lower() not in text.lower(), (form, variant)
    core = base64.b64encode(token.encode()).decode()[:-4]
    assert core not in text


# --- custom fields named like standard columns ------------------------------------------------

CLASHING = [
    {"id": 11, "name": "状態"},
    {"id": 12, "name": "メール案内"},
    {"id": 13, "name": "会員ID"},
    {"id": 14, "name": "email"},
    {"id": 15, "name": "業種"},
    {"id": 16, "name": "業種"},
]


def test_custom_fields_named_like_columns_are_renamed_and_said(tmp_path: Path):
    people = [
        member(
            i,
            customs=[
                {"field_id": 11, "value": "取引中" if i % 2 else "休止"},
                {"field_id": 12, "value": "希望しない"},
                {"field_id": 13, "value": f"X{i}"},
                {"field_id": 14, "value": f"other{i}@example.jp"},
                {"field_id": 15, "value": "小売"},
                {"field_id": 16, "value": "卸"},
            ],
        )
        for i in range(5)
    ]
    fake = FakeBcart(customers=people, customs=CLASHING)
    with serve(fake) as url, client_for(url) as client:
        pulled = pull(client, progress=False)
    frame = write_snapshot(pulled, tmp_path / "s.parquet")
    renamed = ["カスタム:状態", "カスタム:メール案内", "カスタム:会員ID", "カスタム:email"]
    for name in [*renamed, "業種", "カスタム:業種"]:
        assert name in frame.columns
    assert [w for w in pulled.warnings if "カスタム項目" in w] == [
        f"カスタム項目「{old}」は標準の列または他の列と同じ名前のため、「{new}」として"
        f'読み込みました（テンプレートでは {{{{ member["{new}"] }}}}）。'
        for old, new in [
            ("状態", "カスタム:状態"),
            ("メール案内", "カスタム:メール案内"),
            ("会員ID", "カスタム:会員ID"),
            ("email", "カスタム:email"),
            ("業種", "カスタム:業種"),
        ]
    ]
    row = frame.set_index("id").loc[1001]
    assert row["status"] == "有効" and row["カスタム:状態"] == "取引中"
    assert row["email"] == "user1@example.co.jp" and row["カスタム:email"] == "other1@example.jp"
    assert bool(row["mm_flag"]) and row["カスタム:メール案内"] == "希望しない"
    assert row["業種"] == "小売" and row["カスタム:業種"] == "卸"
    assert_frame_equal(read_snapshot(tmp_path / "s.parquet"), frame)
    # the name the warning gives is the one a template reaches it by
    body = compile_template('{{ 状態 }}/{{ member["カスタム:状態"] }}', "t", "body")
    assert body.render(context_builder(["状態", "member"])(row.to_dict())) == "有効/取引中"


def test_the_csv_export_with_the_same_clash_reads_the_same(tmp_path: Path):
    customs = [{"id": 11, "name": "業種"}, {"id": 12, "name": "状態"}]
    people = shop(6)
    for i, p in enumerate(people):
        p["customs"] = [{"field_id": 11, "value": "卸"}, {"field_id": 12, "value": f"S{i}"}]
    fake = FakeBcart(customers=people, customs=customs)
    with serve(fake) as url, client_for(url) as client:
        frame = write_snapshot(pull(client, progress=False), tmp_path / "s.parquet")
    export = csv_export(people, tmp_path / "export.csv", customs)  # 状態 twice in its header
    assert export.read_bytes().decode("cp932").splitlines()[0].count("状態") == 2
    from_csv = read_members(export)
    assert_frame_equal(frame, from_csv)
    assert from_csv.attrs["warnings"] == [
        "カスタム項目「状態」は標準の列または他の列と同じ名前のため、「カスタム:状態」として"
        '読み込みました（テンプレートでは {{ member["カスタム:状態"] }}）。'
    ]
    assert list(from_csv["status"].iloc[:2]) == ["有効", "有効"]
    assert list(from_csv["カスタム:状態"].iloc[:2]) == ["S0", "S1"]


def test_a_member_value_error_never_names_an_unwritten_snapshot(tmp_path: Path):
    fake = FakeBcart(customers=[member(1, mm_flag="たぶん")], customs=CUSTOMS)
    with serve(fake) as url, client_for(url) as client:
        pulled = pull(client, progress=False)
    with pytest.raises(MembersFileError) as err:
        write_snapshot(pulled, tmp_path / "never.parquet")
    assert "never.parquet" not in err.value.line() and "取得した会員" in err.value.ja
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("case", ["torn last line", "too old", "another API"])
def test_kept_pages_are_used_only_when_they_are_this_pulls(case: str, tmp_path: Path):
    fake = FakeBcart(customers=shop(250), customs=CUSTOMS, repeat_offsets={200: 0})
    out = tmp_path / "snap.parquet"
    began = datetime(2026, 12, 1, 9, 0, tzinfo=ZoneInfo("Asia/Tokyo"))
    later = began + timedelta(hours=1)
    with serve(fake) as url:
        with client_for(url) as client, pytest.raises(PullStopped):
            pull_snapshot(client, out, progress=False, now=began)
        kept = partial_path(out)
        lines = kept.read_text(encoding="utf-8").splitlines()
        assert len(lines) == 3  # the head and two pages
        if case == "torn last line":  # a crash in the middle of a write
            kept.write_text("\n".join(lines) + '\n{"offset": 200, "custo', encoding="utf-8")
        elif case == "too old":
            later = began + timedelta(hours=25)
        else:
            head = lines[0].replace(url, url + "/other")
            kept.write_text("\n".join([head, *lines[1:]]), encoding="utf-8")
        fake.repeat_offsets = {}
        fake.requests.clear()
        with client_for(url) as client:
            pulled, frame = pull_snapshot(client, out, progress=False, now=later)
    if case == "torn last line":
        assert customer_offsets(fake) == [100, 200] and pulled.pulled_at == began
    else:  # not this pull's pages: all of them again, dated now
        assert customer_offsets(fake) == [0, 100, 200] and pulled.pulled_at == later
    assert len(frame) == 250 and not kept.exists()
