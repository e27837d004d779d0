"""The same mail never twice (issue 20): a mail's identity is its content, held per address.

B-Cart's CSV export is downloaded anew before each campaign and the wizard stores each
upload under a new name: none of that may make the same newsletter a new campaign that
mails everyone again. Real processes and a real SMTP server; the oracle is a hand-written
model of who should have which mail, never the code's own helpers.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import sys
from collections import Counter
from collections.abc import Callable, Sequence
from email import message_from_bytes
from email.header import decode_header, make_header
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from smtp_servers import Faults, TestServer
from test_bcart_api import CUSTOMS, FakeBcart, client_for, csv_export, serve, shop
from test_cli_run import ADMIN, bcartnb, env_for, member_mails, setup_campaign
from test_delivery import make_settings

from bcartnb import campaign
from bcartnb.bcart_api import pull, write_snapshot
from bcartnb.campaign import CampaignSpec
from bcartnb.ledger import MIGRATIONS, Ledger
from bcartnb.templates import Template, TemplateStore

Server = Callable[..., TestServer]


def run_json(*args: str, env: dict[str, str], cwd: Path) -> dict[str, object]:
    out = bcartnb(*args, "--json", env=env, cwd=cwd)
    assert out.returncode == 0, out.stderr
    result: dict[str, object] = json.loads(out.stdout)
    return result


def campaigns(env: dict[str, str], cwd: Path) -> list[dict[str, object]]:
    out = bcartnb("campaigns", "--json", env=env, cwd=cwd)
    assert out.returncode == 0, out.stderr
    rows: list[dict[str, object]] = json.loads(out.stdout)
    return rows


def campaign_file(path: Path, members: str, **extra: str) -> Path:
    """A campaign of the same mail as :func:`setup_campaign`'s, from another member file."""
    lines = [
        f'members = "{members}"',
        'subject = "{{ 会社名 }} 様へのご案内"',
        'body = "{{ 会社名 }} {{ 担当者名 }} 様\\n本文です。\\n"',
        *(f"{k} = {v}" for k, v in extra.items()),
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_a_renamed_copy_mails_nobody_again_and_names_the_first_campaign(
    tmp_path: Path, smtp_server: Server
):
    server = smtp_server()
    first = setup_campaign(tmp_path, 5)
    env = env_for(tmp_path, server)
    sent = run_json("run", str(first), "--send", env=env, cwd=tmp_path)
    assert sent["sent"] == 5
    # B-Cart's export downloaded again, under the name the browser gives it
    shutil.copy(tmp_path / "members.csv", tmp_path / "members (1).csv")
    again = campaign_file(tmp_path / "again.toml", "members (1).csv")
    dry = run_json("run", str(again), env=env, cwd=tmp_path)
    assert (dry["sendable"], dry["reasons"]["already_sent"]) == (0, 5)  # type: ignore[index]
    out = bcartnb("run", str(again), "--send", env=env, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "すべて同じメールを送信済み" in out.stdout and str(sent["campaign_id"]) in out.stdout
    assert member_mails(server) == Counter(f"user{i}@example.co.jp" for i in range(5))
    assert len(campaigns(env, tmp_path)) == 1
    # the same mail on purpose: --repeat, and only then
    repeat = run_json("run", str(again), "--send", "--repeat", env=env, cwd=tmp_path)
    assert repeat["sent"] == 5 and repeat["campaign_id"] != sent["campaign_id"]
    assert set(member_mails(server).values()) == {2}


def test_a_snapshot_of_the_same_members_then_one_new_member(tmp_path: Path, smtp_server: Server):
    server = smtp_server()
    fake = FakeBcart(customers=shop(8), customs=list(CUSTOMS))
    setup_campaign(tmp_path, 0)  # the shop's settings; its members come from B-Cart below
    csv_export(fake.customers, tmp_path / "export.csv")
    env = env_for(tmp_path, server)
    first = run_json(
        "run",
        str(campaign_file(tmp_path / "c.toml", "export.csv")),
        "--send",
        env=env,
        cwd=tmp_path,
    )
    mailed = int(str(first["sendable"]))
    assert first["sent"] == mailed == len(member_mails(server)) > 0
    # the same members pulled from the API into a snapshot: nobody new
    with serve(fake) as url, client_for(url) as client:
        write_snapshot(pull(client, progress=False), tmp_path / "snap.parquet")
    snap = campaign_file(tmp_path / "s.toml", "snap.parquet")
    same = run_json("run", str(snap), "--send", env=env, cwd=tmp_path)
    assert (same["sent"], same["reasons"]["already_sent"]) == (0, mailed)  # type: ignore[index]
    # one member registered since: only that one is mailed
    grown = shop(9)
    grown[8]["email"] = "newcomer@example.co.jp"
    fake.customers[:] = grown
    with serve(fake) as url, client_for(url) as client:
        write_snapshot(pull(client, progress=False), tmp_path / "snap2.parquet")
    more = run_json(
        "run",
        str(campaign_file(tmp_path / "m.toml", "snap2.parquet")),
        "--send",
        env=env,
        cwd=tmp_path,
    )
    assert (more["sent"], more["reasons"]["already_sent"]) == (1, mailed)  # type: ignore[index]
    got = member_mails(server)
    assert got["newcomer@example.co.jp"] == 1 and set(got.values()) == {1}


def test_tokyo_today_and_kanto_tomorrow_mail_only_the_new_ones(tmp_path: Path, smtp_server: Server):
    server = smtp_server()
    setup_campaign(tmp_path, 0)
    prefs = ["東京都", "神奈川県", "東京都", "埼玉県", "東京都", "大阪府"]
    (tmp_path / "members.csv").write_text(
        "会員ID,会社名,担当者(姓),担当者(名),メールアドレス,都道府県,メール案内\n"
        + "".join(
            f"{100 + i},商事{i},山田,太郎,m{i}@example.co.jp,{p},受け取る\n"
            for i, p in enumerate(prefs)
        ),
        encoding="utf-8",
    )
    env = env_for(tmp_path, server)
    tokyo = campaign_file(tmp_path / "t.toml", "members.csv", filter='{ pref = "東京都" }')
    kanto = campaign_file(
        tmp_path / "k.toml", "members.csv", filter='{ pref = ["東京都", "神奈川県", "埼玉県"] }'
    )
    assert run_json("run", str(tokyo), "--send", env=env, cwd=tmp_path)["sent"] == 3
    second = run_json("run", str(kanto), "--send", env=env, cwd=tmp_path)
    assert (second["sent"], second["reasons"]["already_sent"]) == (2, 3)  # type: ignore[index]
    assert member_mails(server) == Counter(f"m{i}@example.co.jp" for i in (0, 1, 2, 3, 4))


def test_an_interrupted_campaign_continues_from_a_renamed_file(tmp_path: Path, smtp_server: Server):
    server = smtp_server()
    first = setup_campaign(tmp_path, 6)
    env = env_for(tmp_path, server)
    server.down()
    out = bcartnb("run", str(first), "--send", env=env, cwd=tmp_path)
    assert out.returncode == 4, out.stderr
    [row] = campaigns(env, tmp_path)
    server.up()
    shutil.copy(tmp_path / "members.csv", tmp_path / "members-20261206.csv")
    again = campaign_file(tmp_path / "again.toml", "members-20261206.csv")
    done = run_json("run", str(again), "--send", env=env, cwd=tmp_path)
    assert done["campaign_id"] == row["campaign_id"] and done["sent"] == 6  # continued
    assert member_mails(server) == Counter(f"user{i}@example.co.jp" for i in range(6))
    assert len(campaigns(env, tmp_path)) == 1


def test_two_runs_at_once_from_different_files_mail_each_address_once(
    tmp_path: Path, smtp_server: Server
):
    server = smtp_server(faults=Faults())
    setup_campaign(tmp_path, 0)
    head = "会員ID,会社名,担当者(姓),担当者(名),メールアドレス,都道府県,メール案内\n"
    for name, ids in (("a.csv", range(0, 120)), ("b.csv", range(60, 180))):
        rows = "".join(f"{i},商事{i},山田,太郎,u{i}@example.co.jp,東京都,受け取る\n" for i in ids)
        (tmp_path / name).write_text(head + rows, encoding="utf-8")
        campaign_file(tmp_path / f"{name}.toml", name)
    env = env_for(tmp_path, server)
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "bcartnb", "run", f"{name}.toml", "--send", "--json"],
            env=env,
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in ("a.csv", "b.csv")
    ]
    results = [p.communicate(timeout=180) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], results
    outs = [json.loads(out) for out, _ in results]
    # the overlap (60 members) went out once, from whichever run claimed it first
    assert member_mails(server) == Counter(f"u{i}@example.co.jp" for i in range(180))
    assert sum(o["sent"] for o in outs) == 180
    assert sum(o["reasons"]["already_sent"] for o in outs) == 60
    assert sum(1 for r in server.received if r.recipients == (ADMIN,)) == 2


def test_a_resume_sends_the_mail_it_started_with_and_an_edited_template_is_new(
    tmp_path: Path, smtp_server: Server
):
    server = smtp_server()
    settings = make_settings(tmp_path, server, templates=tmp_path / "templates")
    store = TemplateStore(settings.templates)
    store.save(Template(name="年末", subject="年末のご案内 {{ 会社名 }} 様", body="旧い本文\n"))
    members = tmp_path / "m.csv"
    members.write_text(
        "会員ID,会社名,メールアドレス\n"
        + "".join(f"{i},商事{i},t{i}@example.co.jp\n" for i in range(4)),
        encoding="utf-8",
    )
    spec = CampaignSpec.from_mapping({"members": str(members), "template": "年末"})
    server.down()
    first = campaign.run(spec, settings, send=True, progress=False).summary
    assert first.status == "unfinished"
    server.up()
    store.save(Template(name="年末", subject="新年のご案内 {{ 会社名 }} 様", body="新しい本文\n"))
    resumed = campaign.resume(first.campaign_id, settings, progress=False).summary
    assert resumed.sent == 4
    assert {subject(r.raw) for r in server.received if r.recipients != (ADMIN,)} == {
        f"年末のご案内 商事{i} 様" for i in range(4)
    }
    # the edited template is another mail: it goes to everyone, once
    edited = campaign.run(spec, settings, send=True, progress=False).summary
    assert edited.sent == 4 and edited.reasons["already_sent"] == 0


def subject(raw: bytes) -> str:
    return str(make_header(decode_header(message_from_bytes(raw)["Subject"])))


# --- an older ledger -------------------------------------------------------------------------


def test_a_version_4_ledgers_sent_mails_count_as_sent(tmp_path: Path, smtp_server: Server):
    server = smtp_server()
    settings = make_settings(tmp_path, server)
    Ledger.open(settings.db, migrations=MIGRATIONS[:4]).close()
    old_params = {
        "members": "/home/shop/Downloads/customers_20261101.csv",
        "filter": {},
        "checked": [],
        "template": None,
        "subject": "{{ 会社名 }} 様 年末のご案内",
        "body": "本文\n",
        "html": None,
        "insert_signature": True,
        "opt_in_only": False,
        "encoding": "utf-8",
    }
    conn = sqlite3.connect(settings.db)
    with conn:
        conn.execute(
            "INSERT INTO campaigns (campaign_id, created_at, user, host, plan, fingerprint, "
            "params, status, updated_at) VALUES ('old', '2026-11-01T00:00:00+00:00', 'shop', "
            "'pc', 'プラン10', 'f', ?, 'done', '2026-11-01T00:00:00+00:00')",
            (json.dumps(old_params, ensure_ascii=False),),
        )
        conn.executemany(
            "INSERT INTO deliveries (campaign_id, member_id, address, state, attempts) "
            "VALUES ('old', ?, ?, ?, ?)",
            [
                (0, "T0@example.co.jp", "sent", 1),
                (1, "t1@example.co.jp", "failed", 1),
                (2, "t2@example.co.jp", "withheld", 0),  # never went out: no claim
            ],
        )
    conn.close()
    members = tmp_path / "new-export.csv"
    members.write_text(
        "会員ID,会社名,メールアドレス\n"
        + "".join(f"{i},商事{i},t{i}@example.co.jp\n" for i in range(4)),
        encoding="utf-8",
    )
    spec = CampaignSpec.from_mapping(
        {k: v for k, v in {**old_params, "members": str(members)}.items() if v is not None}
    )
    dry = campaign.run(spec, settings, send=False, progress=False)
    assert dry.plan is not None
    assert dry.plan.audience.already_sent_by_campaign() == {"old": 2}
    sent = campaign.run(spec, settings, send=True, progress=False).summary
    assert sent.sent == 2 and sorted(member_mails_of(server)) == [
        "t2@example.co.jp",
        "t3@example.co.jp",
    ]
    with Ledger.open(settings.db) as led:
        assert led.campaign("old").mail_key is not None  # the legacy identity


def member_mails_of(server: TestServer) -> list[str]:
    return [r.recipients[0] for r in server.received if r.recipients != (ADMIN,)]


# --- the property: no address gets the same mail twice without --repeat -----------------------

MAILS = ("冬のご案内", "春のご案内")

Run = tuple[frozenset[int], int, bool, int]
runs_strategy = st.lists(
    st.tuples(
        st.frozensets(st.integers(0, 7), min_size=1, max_size=8),  # which members the file has
        st.integers(0, 1),  # which mail
        st.booleans(),  # --repeat
        st.integers(0, 2),  # which file name (a re-export, an upload, a snapshot's name)
    ),
    min_size=1,
    max_size=5,
)


def test_no_address_receives_the_same_mail_twice_without_repeat(
    tmp_path_factory: pytest.TempPathFactory, smtp_server: Server
):
    server = smtp_server()

    @hsettings(
        max_examples=25,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(runs=runs_strategy)
    def check(runs: Sequence[Run]) -> None:
        folder = tmp_path_factory.mktemp("shop")
        settings = make_settings(folder, server)
        before = len(server.received)
        model: Counter[tuple[str, str]] = Counter()  # (mail, address) → mails expected
        has: dict[str, set[str]] = {m: set() for m in MAILS}
        for members, mail, repeat, name in runs:
            path = folder / f"export-{name}.csv"
            path.write_text(
                "会員ID,会社名,メールアドレス\n"
                + "".join(f"{i},商事{i},p{i}@example.co.jp\n" for i in sorted(members)),
                encoding="utf-8",
            )
            spec = CampaignSpec.from_mapping(
                {"members": str(path), "subject": MAILS[mail], "body": "本文\n"}
            )
            addresses = {f"p{i}@example.co.jp" for i in members}
            to = addresses if repeat else addresses - has[MAILS[mail]]
            for a in to:
                model[(MAILS[mail], a)] += 1
            has[MAILS[mail]] |= addresses
            summary = campaign.run(spec, settings, send=True, repeat=repeat, progress=False).summary
            assert summary.exit_code == 0 and summary.sent == len(to)
        got = Counter(
            (subject(r.raw), r.recipients[0])
            for r in server.received[before:]
            if r.recipients != (ADMIN,)
        )
        assert got == model
        if not any(repeat for _, _, repeat, _ in runs):
            assert set(got.values()) <= {1}

    check()
