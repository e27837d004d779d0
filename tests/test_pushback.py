"""The write-back to B-Cart hides nothing (issue 20 item 4, issue 21 item 3).

Real parts: a real SMTP server and `bcartnb` processes for the campaign whose journal names
the members, the local B-Cart API (tests/bcart_server.py on uvicorn) for pulls and PATCHes,
real ledger files, and the CP932 bytes of every exported file read back. What must hold:
every listed address is either pushed (its own member id, or resolved through the journal
or a member file) or listed as not pushable with the reason, in the dry run and after
--apply; never both, never silently dropped; an address on two members is never pushed; a
bounce is never written as メール案内 = 受け取らない; a second push sends nothing; an address
unsuppressed and listed again is pushed again.
"""

from __future__ import annotations

import csv
import io
import json
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from bcart_server import TOKEN, FakeBcart, serve
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from smtp_servers import TestServer
from test_bcart_api import client_for, member
from test_cli_run import bcartnb, env_for, setup_campaign

from bcartnb.bcart_api import push_suppressions
from bcartnb.bcart_api.push import plan_push
from bcartnb.hygiene.export import BOUNCE_HEADER, HEADER, bounces_path, export_bcart_csv
from bcartnb.hygiene.writeback import resolve_members
from bcartnb.ledger import BCART_FIELDS, Ledger, fingerprint
from bcartnb.members import typed_members

Server = Callable[..., TestServer]


@pytest.fixture
def fake() -> FakeBcart:
    return FakeBcart(customers=[member(i) for i in range(4)])


@pytest.fixture
def api(fake: FakeBcart) -> Iterator[str]:
    with serve(fake) as url:
        yield url


def shop_with_journal(tmp_path: Path, server: TestServer, api: str, n: int = 4) -> dict[str, str]:
    """A shop that mailed members 1000.. (user0@..) through a real SMTP server, pointed at
    the local B-Cart API: the ledger's journal now knows whose each address is."""
    campaign = setup_campaign(tmp_path, n)
    config = tmp_path / "bcartnb.toml"
    config.write_text(
        config.read_text(encoding="utf-8") + f'[bcart]\napi_url = "{api}"\n', encoding="utf-8"
    )
    env = env_for(tmp_path, server)
    env["BCARTNB_BCART_TOKEN"] = TOKEN
    sent = bcartnb("run", str(campaign), "--send", "--json", env=env, cwd=tmp_path)
    assert sent.returncode == 0, sent.stderr
    assert json.loads(sent.stdout)["sent"] == n
    return env


def push(env: dict[str, str], cwd: Path, *args: str) -> Any:
    done = bcartnb("bcart", "push-suppressions", *args, env=env, cwd=cwd)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout) if "--json" in args else done.stdout


def frame(rows: list[tuple[int, str | None]]) -> pd.DataFrame:
    """A member file as read_members gives it (ids unique, addresses as the file has them)."""
    body = pd.DataFrame({0: [str(i) for i, _ in rows], 1: [a or "" for _, a in rows]}, dtype="str")
    return typed_members(["会員ID", "メールアドレス"], body, "members.csv")


def journal(led: Ledger, cid: str, recipients: list[tuple[int, str]]) -> None:
    """A campaign's journal rows (member id, address), as a real claim writes them."""
    led.claim(
        fingerprint=fingerprint({"c": cid}, recipients),
        plan="light",
        params={"c": cid},
        recipients=recipients,
        campaign_id=cid,
    )
    led.release(cid)


# --- push-suppressions: resolved, or listed with the reason ---------------------------------


def test_a_manual_suppression_is_pushed_through_the_journal_or_listed_with_why(
    tmp_path: Path, smtp_server: Server, fake: FakeBcart, api: str
) -> None:
    env = shop_with_journal(tmp_path, smtp_server(), api)
    for address in ("USER1@example.co.jp", "stranger@example.co.jp"):  # by address only
        assert bcartnb("suppress", address, env=env, cwd=tmp_path).returncode == 0

    dry = push(env, tmp_path)
    assert "会員ID 1001 (u***@example.co.jp, manual)" in dry and "（送信記録で照合）" in dry
    assert "Bカートに反映できない配信停止: 1 件（会員IDがわからない 1 件）" in dry
    assert "s***@example.co.jp（手動で停止）: 会員IDがわからない" in dry
    assert "stranger@" not in dry and "会員の照合: 送信記録のみ" in dry
    assert fake.patches == []
    shown = push(env, tmp_path, "--json")
    assert (shown["changes"], shown["applied"], shown["unpushable"]) == (1, 0, 1)
    assert shown["members"] == [
        {"member_id": 1001, "reason": "manual", "field": "mm_flag", "value": 0, "source": "journal"}
    ]
    assert shown["unpushable_reasons"] == {"no_member_id": 1}
    [left] = shown["unpushable_addresses"]
    assert (left["address"], left["why"], left["member_ids"]) == (
        "stranger@example.co.jp",
        "no_member_id",
        [],
    )
    assert shown["members_file"] is None and shown["already_pushed"] == 0

    applied = push(env, tmp_path, "--apply")
    assert "Bカートに反映しました: 1 件。" in applied
    assert "反映できない配信停止: 1 件" in applied  # still said after --apply
    assert fake.patches == [{"customers": [{"id": 1001, "mm_flag": 0}]}]
    again = push(env, tmp_path, "--apply", "--json")  # twice: nothing sent the second time
    assert (again["applied"], again["already_pushed"], again["unpushable"]) == (0, 1, 1)
    assert len(fake.patches) == 1

    # a pull of B-Cart's members (the default snapshot, found by itself) names the stranger
    fake.customers.append(member(99, email="Stranger@Example.co.jp"))
    assert bcartnb("bcart", "pull", env=env, cwd=tmp_path).returncode == 0
    third = push(env, tmp_path, "--apply", "--json")
    assert third["members"] == [
        {
            "member_id": 1099,
            "reason": "manual",
            "field": "mm_flag",
            "value": 0,
            "source": "members_file",
        }
    ]
    assert third["unpushable"] == 0 and third["already_pushed"] == 1
    assert third["members_file"].endswith("bcart_members.parquet") and third["members_pulled_at"]
    assert fake.patches[-1] == {"customers": [{"id": 1099, "mm_flag": 0}]}
    assert next(c for c in fake.customers if c["id"] == 1099)["mm_flag"] == 0


def test_an_address_on_two_members_is_listed_and_never_pushed(
    tmp_path: Path, smtp_server: Server, fake: FakeBcart, api: str
) -> None:
    env = shop_with_journal(tmp_path, smtp_server(), api)
    # B-Cart holds user2's address on a second member too (case and spaces differ)
    fake.customers.append(member(50, email="\u3000User2@EXAMPLE.co.jp "))
    assert bcartnb("bcart", "pull", "--out", "snap.parquet", env=env, cwd=tmp_path).returncode == 0
    bcartnb("suppress", "user2@example.co.jp", env=env, cwd=tmp_path)
    for args in ((), ("--apply",)):
        text = push(env, tmp_path, "--members", "snap.parquet", *args)
        assert "同じアドレスの会員が複数いる（会員ID 1002, 1050）" in text
        assert "会員ID 1002 (" not in text and "会員ID 1050 (" not in text
        assert "会員の照合: 会員ファイル snap.parquet" in text
    out = push(env, tmp_path, "--members", "snap.parquet", "--apply", "--json")
    assert out["unpushable_addresses"][0]["member_ids"] == [1002, 1050]
    assert out["changes"] == 0 and fake.patches == []
    # the journal alone knows one member for it, but a member file, when given, decides
    assert push(env, tmp_path, "--json")["members"][0]["member_id"] == 1002


def test_two_members_in_the_journal_are_ambiguous_and_a_member_file_settles_it(
    tmp_path: Path,
) -> None:
    with Ledger.open(tmp_path / "l.sqlite3") as led:
        journal(led, "c1", [(1, "a@x.jp"), (2, "b@x.jp")])
        journal(led, "c2", [(3, "A@X.jp"), (2, "b@x.jp")])  # a@ re-registered as member 3
        led.suppress("a@x.jp")
        led.suppress("b@x.jp", "hard_bounce")
        plan = plan_push(led)
        assert [(c.member_id, c.field) for c in plan.changes] == [(2, "is_invalid_email")]
        [left] = plan.unresolved
        assert (left.address, left.why, left.member_ids) == ("a@x.jp", "ambiguous", (1, 3))
        members = frame([(3, "a@x.jp"), (2, "new-b@x.jp")])
        plan = plan_push(led, members)
        assert [(c.member_id, c.address) for c in plan.changes] == [(3, "a@x.jp")]
        assert [(u.address, u.why) for u in plan.unresolved] == [("b@x.jp", "not_in_members")]


def test_a_row_naming_its_member_is_checked_against_the_member_file(tmp_path: Path) -> None:
    with Ledger.open(tmp_path / "l.sqlite3") as led:
        led.suppress("gone@x.jp", "unsubscribed", member_id=7)
        led.suppress("moved@x.jp", "hard_bounce", member_id=8)
        led.suppress("kept@x.jp", "complaint", member_id=9)
        assert len(plan_push(led).changes) == 3  # no member file: the rows' own ids
        plan = plan_push(led, frame([(8, "new@x.jp"), (9, "KEPT@x.jp")]))
    assert [(c.member_id, c.field) for c in plan.changes] == [(9, "mm_flag")]
    assert sorted((u.address, u.why) for u in plan.unresolved) == [
        ("gone@x.jp", "member_missing"),
        ("moved@x.jp", "address_changed"),
    ]


# --- re-listing: suppress → push → unsuppress → suppress → push ------------------------------


def test_an_address_listed_again_after_unsuppress_is_pushed_again(
    tmp_path: Path, smtp_server: Server, fake: FakeBcart, api: str
) -> None:
    env = shop_with_journal(tmp_path, smtp_server(), api)
    bcartnb("suppress", "user3@example.co.jp", env=env, cwd=tmp_path)
    assert push(env, tmp_path, "--apply", "--json")["applied"] == 1
    assert push(env, tmp_path, "--apply", "--json")["applied"] == 0
    fake.customers[3]["mm_flag"] = 1  # the member opted in again on B-Cart's own page

    gone = bcartnb("unsuppress", "user3@example.co.jp", env=env, cwd=tmp_path)
    assert gone.returncode == 0, gone.stderr
    assert "Bカートの会員情報は戻していません: 会員ID 1003 の mm_flag = 0" in gone.stdout
    assert len(fake.patches) == 1  # unsuppress changes nothing in B-Cart
    nothing = push(env, tmp_path, "--apply", "--json")
    assert (nothing["changes"], nothing["already_pushed"], nothing["unpushable"]) == (0, 0, 0)

    bcartnb("suppress", "user3@example.co.jp", env=env, cwd=tmp_path)  # listed again
    again = push(env, tmp_path, "--apply", "--json")
    assert again["applied"] == 1 and fake.patches[-1] == {"customers": [{"id": 1003, "mm_flag": 0}]}
    assert fake.customers[3]["mm_flag"] == 0 and len(fake.patches) == 2
    assert push(env, tmp_path, "--apply", "--json")["applied"] == 0 and len(fake.patches) == 2


def test_a_bounce_listed_again_is_pushed_again_and_a_stronger_reason_is_a_new_change(
    tmp_path: Path,
) -> None:
    with Ledger.open(tmp_path / "l.sqlite3") as led:
        led.suppress("a@x.jp", "manual", member_id=1)
        for change in led.bcart_changes():
            led.record_bcart_push(change)
        led.suppress("a@x.jp", "hard_bounce")  # stronger: B-Cart must also mark it invalid
        assert [(c.member_id, c.field) for c in led.bcart_changes()] == [(1, "is_invalid_email")]
        for change in led.bcart_changes():
            led.record_bcart_push(change)
        assert [p[:3] for p in led.bcart_pushes("A@x.jp")] == [
            (1, "is_invalid_email", 1),
            (1, "mm_flag", 0),
        ]
        assert led.unsuppress("a@x.jp") and led.bcart_pushes("a@x.jp") == []
        led.suppress("a@x.jp", "soft_bounce", member_id=1)
        assert [(c.member_id, c.field) for c in led.bcart_changes()] == [(1, "is_invalid_email")]


# --- the CSV export: bounces apart, never 受け取らない ----------------------------------------


def read_cp932(path: Path) -> list[list[str]]:
    raw = path.read_bytes()
    assert b"\r\n" in raw and not raw.startswith(b"\xef\xbb\xbf")  # CRLF, no BOM
    return list(csv.reader(io.StringIO(raw.decode("cp932"), newline="")))


def test_the_export_keeps_bounces_apart_and_labelled(tmp_path: Path) -> None:
    with Ledger.open(tmp_path / "l.sqlite3") as led:
        journal(led, "c1", [(11, "soft@x.jp"), (12, "opt@x.jp")])
        led.suppress("hard@x.jp", "hard_bounce", member_id=10, detail="5.1.1 user unknown")
        led.suppress("soft@x.jp", "soft_bounce", detail='=HYPERLINK("http://evil")\r\n😀')
        led.suppress("opt@x.jp", "manual")
        led.suppress("unsub@x.jp", "unsubscribed", member_id=13)
        led.suppress("=1+2@x.jp", "hard_bounce")  # a spreadsheet formula, as an address
        led.suppress("😀@x.jp", "complaint")  # no CP932 for it, and no member
        done = export_bcart_csv(
            led.suppressions(),
            tmp_path / "out.csv",
            journal=led.journal_members(),
        )
    assert read_cp932(tmp_path / "out.csv") == [
        list(HEADER),
        ["12", "受け取らない"],
        ["13", "受け取らない"],
    ]
    assert done.member_ids == (12, 13) and done.without_id == ("😀@x.jp",)
    assert [u.why for u in done.unresolved] == ["no_member_id"]
    review = read_cp932(bounces_path(tmp_path / "out.csv"))
    assert done.bounces_path == tmp_path / "out-bounces.csv" and done.bounces == 3
    assert review[0] == list(BOUNCE_HEADER)
    assert not {"会員ID", "メールアドレス", "メール案内"} & set(review[0])  # nothing to import
    by_address = {r[3]: r for r in review[1:]}
    assert by_address["hard@x.jp"][:3] == ["不達", "不達（恒久的なエラー）", "10"]
    assert by_address["hard@x.jp"][7] == "5.1.1 user unknown"
    soft = by_address["soft@x.jp"]
    assert soft[:3] == ["不達", "不達（一時的なエラーの繰り返し）", "11"]
    assert soft[7] == '\'=HYPERLINK("http://evil") \\U0001f600'  # one line, no formula
    assert by_address["'=1+2@x.jp"][8].startswith("会員IDがわからない")
    assert all(r[0] == "不達" for r in review[1:]) and "受け取らない" not in str(review)


def test_the_export_refuses_a_folder_and_writes_nothing(tmp_path: Path) -> None:
    from bcartnb.exceptions import HygieneError

    (tmp_path / "out-bounces.csv").mkdir()
    with Ledger.open(tmp_path / "l.sqlite3") as led:
        led.suppress("a@x.jp", "manual", member_id=1)
        with pytest.raises(HygieneError, match=r"out-bounces\.csv: is a folder") as err:
            export_bcart_csv(led.suppressions(), tmp_path / "out.csv")
    assert "フォルダ" in str(err.value.ja)
    assert not (tmp_path / "out.csv").exists()


# --- hostile values in the snapshot ----------------------------------------------------------


def test_hostile_addresses_and_ids_in_the_snapshot_match_nobody_else(
    tmp_path: Path, smtp_server: Server, fake: FakeBcart, api: str
) -> None:
    env = shop_with_journal(tmp_path, smtp_server(), api)
    big = 10**18 - 1  # the largest id a member file may hold (18 digits)
    fake.customers += [
        member(60, id=big, email="victim@example.co.jp\r\nBcc: all@example.co.jp"),
        member(61, email="<script>alert(1)</script>@example.co.jp"),
        member(62, email="\x1b[2Jvictim@example.co.jp"),
        member(63, email="v" * 5000 + "@example.co.jp"),
        member(64, email="VICTIM@example.co.jp"),
    ]
    assert bcartnb("bcart", "pull", env=env, cwd=tmp_path).returncode == 0
    bcartnb("suppress", "victim@example.co.jp", env=env, cwd=tmp_path)
    text = push(env, tmp_path, "--apply")
    assert "会員ID 1064 (v***@example.co.jp, manual)" in text
    assert "\x1b" not in text and "<script>" not in text and "Bcc" not in text
    assert fake.patches == [{"customers": [{"id": 1064, "mm_flag": 0}]}]
    # the huge id is a member like any other: suppressed by its own address, it is pushed
    bcartnb("suppress", "x@example.co.jp", env=env, cwd=tmp_path)
    fake.customers[4]["email"] = "x@example.co.jp"
    assert bcartnb("bcart", "pull", env=env, cwd=tmp_path).returncode == 0
    out = push(env, tmp_path, "--apply", "--json")
    assert [m["member_id"] for m in out["members"]] == [big]
    assert fake.patches[-1] == {"customers": [{"id": big, "mm_flag": 0}]}


# --- the property: pushed exactly once, or listed; never both, never dropped ----------------

_POOL = ["a@x.jp", "b@x.jp", "c@x.jp", "d@x.jp", "e@x.jp"]
_REASONS = sorted(BCART_FIELDS)


@pytest.fixture(scope="module")
def shared_api() -> Iterator[tuple[FakeBcart, str]]:
    fake = FakeBcart()
    with serve(fake) as url:
        yield fake, url


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    listed=st.dictionaries(
        st.sampled_from(_POOL),
        st.tuples(st.sampled_from(_REASONS), st.none() | st.integers(1, 6)),
        max_size=5,
    ),
    mailed=st.lists(st.tuples(st.integers(1, 6), st.sampled_from(_POOL)), max_size=6),
    members=st.none()
    | st.dictionaries(st.integers(1, 6), st.none() | st.sampled_from(_POOL), max_size=6),
)
def test_every_suppression_is_pushed_once_or_listed(
    shared_api: tuple[FakeBcart, str],
    listed: dict[str, tuple[str, int | None]],
    mailed: list[tuple[int, str]],
    members: dict[int, str | None] | None,
) -> None:
    fake, url = shared_api
    fake.customers = [{"id": i, "email": f"m{i}@x.jp"} for i in range(1, 7)]
    fake.patches.clear()
    file = None if members is None else frame(sorted(members.items()))
    with tempfile.TemporaryDirectory() as tmp, Ledger.open(Path(tmp) / "l.sqlite3") as led:
        for n, (member_id, address) in enumerate(mailed):
            journal(led, f"c{n}", [(member_id, address)])
        for address, (reason, member_id) in listed.items():
            led.suppress(address, reason, member_id=member_id)
        first = plan_push(led, file)
        pushed = {c.address for c in first.changes}
        left = {u.address for u in first.unresolved}
        assert pushed | left == set(listed) and not pushed & left  # every one, once
        assert first.already == 0
        # the same rule in the export: its import file holds the opt-outs the push resolves
        found = resolve_members(led.suppressions(), journal=led.journal_members(), members=file)
        assert set(found.member_ids) == pushed
        with client_for(url) as client:
            report = push_suppressions(
                first,
                client,
                apply=True,
                on_applied=lambda b: [led.record_bcart_push(c) for c in b],
            )
        sent = [(c["id"], k) for p in fake.patches for c in p["customers"] for k in c if k != "id"]
        assert sorted(set(sent)) == sorted({(c.member_id, c.field) for c in first.changes})
        assert len(report.applied) == len(first.changes)
        second = plan_push(led, file)
        assert second.changes == [] and {u.address for u in second.unresolved} == left
        assert second.already == len(pushed)  # remembered, not sent again


_ODD_POOL = ["a@x.jp", "=a@x.jp", "+b@x.jp", "-c@x.jp", "@d@x.jp", "山田@x.jp", "😀@x.jp"]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    listed=st.dictionaries(
        st.sampled_from(_ODD_POOL),
        st.tuples(st.sampled_from(_REASONS), st.none() | st.integers(1, 4)),
        max_size=7,
    ),
    members=st.none()
    | st.dictionaries(st.integers(1, 4), st.none() | st.sampled_from(_ODD_POOL), max_size=4),
)
def test_no_bounce_is_ever_exported_as_opted_out(
    listed: dict[str, tuple[str, int | None]], members: dict[int, str | None] | None
) -> None:
    file = None if members is None else frame(sorted(members.items()))
    with tempfile.TemporaryDirectory() as tmp, Ledger.open(Path(tmp) / "l.sqlite3") as led:
        for address, (reason, member_id) in listed.items():
            led.suppress(address, reason, member_id=member_id)
        rows = led.suppressions()
        done = export_bcart_csv(rows, Path(tmp) / "out.csv", members=file)
        imported = read_cp932(Path(tmp) / "out.csv")
        review = read_cp932(Path(tmp) / "out-bounces.csv")
    found = resolve_members(rows, members=file)
    opt_outs = {s.address for s in rows if BCART_FIELDS[s.reason][0] == "mm_flag"}
    bounced = {s.address for s in rows} - opt_outs
    assert imported[0] == list(HEADER) and all(r[1] == "受け取らない" for r in imported[1:])
    # each imported id is an opt-out's own member; every opt-out is imported or named as left out
    assert {int(r[0]) for r in imported[1:]} == {
        found.member_ids[a] for a in opt_outs if a in found.member_ids
    }
    assert {a for a in opt_outs if a not in found.member_ids} == set(done.without_id)
    # every bounce is in the review file, labelled, and nowhere as 受け取らない
    assert len(review) - 1 == len(bounced) == done.bounces
    assert all(r[0] == "不達" and r[1].startswith("不達（") for r in review[1:])
    assert "受け取らない" not in str(review)
    assert not any(r[3].startswith(("=", "+", "-", "@")) for r in review[1:])  # never a formula


@pytest.mark.parametrize("module", ["bcartnb.hygiene.writeback", "bcartnb.bcart_api.push"])
def test_every_exported_name_exists(module: str) -> None:
    import importlib

    mod = importlib.import_module(module)  # the order of __all__ is ruff's (RUF022)
    assert all(hasattr(mod, name) for name in mod.__all__)


def test_an_address_unsuppressed_during_a_push_leaves_no_record(tmp_path: Path) -> None:
    with Ledger.open(tmp_path / "l.sqlite3") as led:
        led.suppress("a@x.jp", "unsubscribed", member_id=1)
        [change] = plan_push(led).changes
        assert led.unsuppress("a@x.jp")  # between the plan and B-Cart's answer
        led.record_bcart_push(change)
        assert led.bcart_pushes("a@x.jp") == []
        led.suppress("a@x.jp", "unsubscribed", member_id=1)
        assert plan_push(led).changes == [change]
