"""`bcartnb bounces scan`: real Maildirs and mbox files, a real ledger, real campaigns sent
into a real SMTP server, and the real command in a subprocess."""

from __future__ import annotations

import hashlib
import json
import mailbox
import os
import sqlite3
import subprocess
import sys
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from smtp_servers import TestServer
from test_cli_run import bcartnb

from bcartnb import campaign
from bcartnb.exceptions import HygieneError, SettingsError
from bcartnb.hygiene.scan import scan_mailbox
from bcartnb.ledger import HygieneEvent, Ledger
from bcartnb.ledger.suppressions import event_id
from bcartnb.mailtokens import VerpSigner
from bcartnb.settings import Settings, load_settings

Server = Callable[..., TestServer]
DATA = Path(__file__).parent / "data" / "bounces"
SAMPLE_CID = "20261101-100000-abc123"
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
SECRET = "kJ8s-Qw3rTy_uI0pAsDfGhJkLzXcVbNm1234567890"  # a test secret, 42 random-looking chars
#: the member each sample answers (tests/data/bounces/README.md)
SAMPLE_MEMBERS = {
    1001: "taro@example.jp",
    1002: "hanako@example.ne.jp",
    1003: "jiro@example.net",
    1004: "saburo.example@gmail.com",
    1005: "shiro@contoso.example",
    1006: "goro-xyz@ezweb.ne.jp",
    1007: "rokuro.abc@docomo.ne.jp",
    1008: "nanako@i.softbank.jp",
    1009: "hachiro@yahoo.example",
    1010: "kuro@outlook.example",
    1011: "juro@example.org",
}


def shop_settings(
    tmp_path: Path, extra: str = "", env: Mapping[str, str] | None = None
) -> Settings:
    cfg = tmp_path / "bcartnb.toml"
    cfg.write_text(
        'plan = "プラン10"\nfrom = "見本商事 <shop@example.co.jp>"\nadmin = "admin@example.co.jp"\n'
        'db = "ledger.sqlite3"\nunsubscribe_mailto = "mailto:unsubscribe@shop.example.co.jp"\n'
        + extra,
        encoding="utf-8",
    )
    return load_settings(cfg, env=dict(env or {}))


def send_mails(
    settings: Settings,
    members: Mapping[int, str],
    *,
    campaign_id: str | None = None,
    subject: str = "お知らせ",
) -> str:
    """Send a real campaign to ``members`` (id → address) through the settings' SMTP server."""
    csv_path = Path(settings.db).parent / f"members-{uuid.uuid4().hex}.csv"
    csv_path.write_text(
        "会員ID,会社名,メールアドレス,メール案内\n"
        + "".join(f"{m},商事{m},{a},受け取る\n" for m, a in members.items()),
        encoding="utf-8",
    )
    spec = campaign.CampaignSpec.from_mapping(
        {"members": str(csv_path), "subject": subject, "body": "{{ 会社名 }} 様\n本文"}
    )
    plan = campaign.plan_campaign(spec, settings, campaign_id=campaign_id)
    done = campaign.send(plan, progress=False)
    assert done.exit_code == 0, done
    return done.campaign_id


def sample_shop(tmp_path: Path, server: TestServer, extra: str = "") -> Settings:
    """A shop that has sent the samples' campaign (its id, the samples' members), for real."""
    settings = shop_settings(tmp_path, extra, env=server.env())
    send_mails(settings, SAMPLE_MEMBERS, campaign_id=SAMPLE_CID)
    return settings


def maildir_with(path: Path, mails: list[bytes]) -> Path:
    box = mailbox.Maildir(path, create=True)
    for raw in mails:
        box.add(raw)
    box.close()
    return path


def snapshot(path: Path) -> dict[str, str]:
    """Every file under ``path`` with the hash of its bytes: what "unchanged" means."""
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def dsn(
    recipient: str,
    message_id: str,
    *,
    own_id: str,
    status: str = "5.1.1",
    date: datetime = NOW,
    delivered_to: str = "shop@shop.example.co.jp",
) -> bytes:
    """A Postfix DSN (the sample's shape) for ``recipient`` about our mail ``message_id``."""
    raw = (DATA / "postfix-user-unknown.eml").read_text(encoding="utf-8")
    action = "delayed" if status.startswith("4") else "failed"
    raw = (
        raw.replace("taro@example.jp", recipient)
        .replace(f"<bcartnb.{SAMPLE_CID}.1001@shop.example.co.jp>", message_id)
        .replace("<20261129010005.4B1C2D3E4F@mail.shop.example.co.jp>", f"<{own_id}>")
        .replace("Status: 5.1.1", f"Status: {status}")
        .replace("Action: failed", f"Action: {action}")
        .replace("550 5.1.1", f"{status[0]}50 {status}")
        .replace("Date: Sun, 29 Nov 2026 10:00:05 +0900 (JST)", f"Date: {_rfc2822(date)}")
        .replace("Delivered-To: shop@shop.example.co.jp", f"Delivered-To: {delivered_to}")
    )
    return raw.encode()


def _rfc2822(at: datetime) -> str:
    from email.utils import format_datetime

    return format_datetime(at)


def test_samples_from_a_maildir_and_an_mbox_then_a_second_scan_changes_nothing(
    tmp_path: Path, smtp_server: Server
) -> None:
    settings = sample_shop(tmp_path, smtp_server())
    raws = [p.read_bytes() for p in sorted(DATA.glob("*.eml"))]
    md = maildir_with(tmp_path / "Maildir", raws)
    box = mailbox.mbox(tmp_path / "bounces.mbox", create=True)
    for raw in raws:
        box.add(raw)
    box.close()
    before = snapshot(md) | snapshot(tmp_path / "bounces.mbox")

    first = scan_mailbox(md, settings, now=NOW).as_dict()
    assert {k: first[k] for k in first if k not in ("source",)} == {
        "scanned": 11,
        "hard": 5,
        "soft": 3,
        "unsubscribes": 0,  # its From alone proves nothing: waiting for the marketer
        "complaints": 2,
        "unmatched": 0,
        "suppressed_new": 7,  # soft bounces stay below the threshold
        "unverified": 1,
        "unmatched_reasons": {},
        "unverified_notices": [
            {
                "id": first["unverified_notices"][0]["id"],
                "address": "j***@example.org",
                "member_id": 1011,
                "kind": "unsubscribed",
                "status": None,
                "at": "2026-11-30T09:00:00+09:00",
            }
        ],
        "repeated": 0,
        "skipped": 0,
    }
    again = scan_mailbox(md, settings, now=NOW).as_dict()
    assert (again["hard"], again["soft"], again["suppressed_new"], again["repeated"]) == (
        0,
        0,
        0,
        11,
    )
    # the same mails from an mbox are the same events (keyed by the mail they are about)
    from_mbox = scan_mailbox(tmp_path / "bounces.mbox", settings, now=NOW).as_dict()
    assert from_mbox["scanned"] == 11 and from_mbox["repeated"] == 11
    assert snapshot(md) | snapshot(tmp_path / "bounces.mbox") == before  # read-only

    with Ledger.open(settings.db) as led:
        listed = {s.address: s.reason for s in led.suppressions()}
    assert listed == {
        "taro@example.jp": "hard_bounce",
        "jiro@example.net": "hard_bounce",
        "shiro@contoso.example": "hard_bounce",
        "goro-xyz@ezweb.ne.jp": "hard_bounce",
        "rokuro.abc@docomo.ne.jp": "hard_bounce",
        "hachiro@yahoo.example": "complaint",
        "kuro@outlook.example": "complaint",
    }
    # one step confirms the member's mail to the unsubscribe address
    with Ledger.open(settings.db) as led:
        [pending] = led.unverified_events()
        assert pending["address"] == "juro@example.org"
        done = led.confirm_events([first["unverified_notices"][0]["id"]])
        assert done.suppressed_new == ("juro@example.org",)
        row = led.suppression("juro@example.org")
        assert row is not None and (row.reason, row.member_id) == ("unsubscribed", 1011)
        assert led.unverified_events() == []


def test_soft_bounces_count_once_per_mail_below_and_at_the_threshold(
    tmp_path: Path, smtp_server: Server
) -> None:
    settings = shop_settings(tmp_path, env=smtp_server().env())
    full, slow = "full@example.jp", "slow@example.jp"
    cids = [send_mails(settings, {7: full, 8: slow}, subject=f"第{i}号") for i in range(3)]
    mails = [
        dsn(full, mid(cid, 7), own_id=f"soft{i}@mx", status="4.2.2", date=NOW - timedelta(days=d))
        for i, (cid, d) in enumerate(zip(cids[:2], (20, 10), strict=True))
    ]
    # three more notices about the first mail: the same mail, still one soft bounce
    mails += [
        dsn(full, mid(cids[0], 7), own_id=f"again{i}@mx", status="4.2.2", date=NOW)
        for i in range(3)
    ]
    md = maildir_with(tmp_path / "Maildir", mails)
    out = scan_mailbox(md, settings, now=NOW)
    assert (out.soft, out.suppressed_new, out.unmatched) == (2, (), 0)
    with Ledger.open(settings.db) as led:
        assert led.suppression(full) is None
    maildir_with(md, [dsn(full, mid(cids[2], 7), own_id="soft2@mx", status="4.2.2", date=NOW)])
    out = scan_mailbox(md, settings, now=NOW)
    assert (out.soft, out.repeated, out.suppressed_new) == (1, 2, (full,))
    with Ledger.open(settings.db) as led:
        row = led.suppression(full)
    assert row is not None and row.reason == "soft_bounce"

    # three soft bounces spread over more than the window list nobody
    spread = [
        dsn(slow, mid(cid, 8), own_id=f"spread{d}@mx", status="4.4.1", date=NOW - timedelta(days=d))
        for cid, d in zip(cids, (70, 35, 0), strict=True)
    ]
    out = scan_mailbox(maildir_with(tmp_path / "Spread", spread), settings, now=NOW)
    assert (out.soft, out.suppressed_new) == (3, ())


def test_hygiene_settings_are_checked_at_load(tmp_path: Path) -> None:
    s = shop_settings(tmp_path, "[hygiene]\nsoft_threshold = 2\nsoft_window_days = 7\n")
    assert (s.hygiene.soft_threshold, s.hygiene.soft_window_days, s.hygiene.verp) == (2, 7.0, False)
    assert shop_settings(tmp_path).hygiene.soft_threshold == 3
    for bad in (
        "soft_threshold = 0",
        "soft_threshold = true",
        "soft_threshold = 2.5",
        "soft_window_days = -1",
        "soft_window_days = nan",
        'verp = "yes"',
        "colour = 1",
        'bounce_address = "a+b@example.co.jp"',
        'bounce_address = "x@y.jp, z@w.jp"',
    ):
        with pytest.raises(SettingsError, match=r"hygiene"):
            shop_settings(tmp_path, f"[hygiene]\n{bad}\n")


@pytest.mark.parametrize(
    "source",
    ["nowhere", "folder", "notmbox.txt", "http://example.jp/box", "imaps://u:pw@host/INBOX"],
)
def test_bad_sources_are_refused_with_one_line(tmp_path: Path, source: str) -> None:
    settings = shop_settings(tmp_path)
    (tmp_path / "folder").mkdir()
    (tmp_path / "notmbox.txt").write_text("hello\n", encoding="utf-8")
    target = source if "://" in source else str(tmp_path / source)
    with pytest.raises(HygieneError) as err:
        scan_mailbox(target, settings)
    assert "\n" not in str(err.value) and err.value.ja
    assert "pw" not in str(err.value)


# --- the real command, a real campaign --------------------------------------------------


def setup_shop(tmp_path: Path, server: TestServer, n: int, extra: str = "") -> dict[str, str]:
    rows = "".join(
        f"{1000 + i},商事{i},山田,太郎,user{i}@example.co.jp,受け取る\n" for i in range(n)
    )
    (tmp_path / "members.csv").write_text(
        "会員ID,会社名,担当者(姓),担当者(名),メールアドレス,メール案内\n" + rows, encoding="utf-8"
    )
    (tmp_path / "bcartnb.toml").write_text(
        'plan = "プラン10"\nfrom = "見本商事 <shop@example.co.jp>"\n'
        'db = "ledger.sqlite3"\n' + extra,
        encoding="utf-8",
    )
    (tmp_path / "campaign.toml").write_text(
        'members = "members.csv"\nsubject = "{{ 会社名 }} 様へ"\nbody = "{{ 会社名 }} 様\\n本文"\n',
        encoding="utf-8",
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("BCARTNB_")}
    env.update(server.env())
    env["BCARTNB_CONFIG"] = str(tmp_path / "bcartnb.toml")
    return env


def send_campaign(tmp_path: Path, env: dict[str, str]) -> str:
    done = bcartnb("run", "campaign.toml", "--send", "--json", env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    return str(json.loads(done.stdout)["campaign_id"])


def mid(cid: str, member: int) -> str:
    return f"<bcartnb.{cid}.{member}@example.co.jp>"


def test_full_loop_send_bounce_scan_twice_then_the_dry_run_holds_them_back(
    tmp_path: Path, smtp_server: Server
) -> None:
    server = smtp_server()
    env = setup_shop(tmp_path, server, 8)
    cid = send_campaign(tmp_path, env)
    assert len(server.received) == 8

    arf = (DATA / "arf-yahoo.eml").read_text(encoding="utf-8")
    arf = arf.replace("hachiro@yahoo.example", "user2@example.co.jp").replace(
        f"<bcartnb.{SAMPLE_CID}.1009@shop.example.co.jp>", mid(cid, 1002)
    )
    no_rcpt = dsn("user5@example.co.jp", mid(cid, 1005), own_id="norcpt@mx")
    no_rcpt = no_rcpt.replace(b"Final-Recipient: rfc822; user5@example.co.jp\n", b"")
    no_rcpt = no_rcpt.replace(b"Original-Recipient: rfc822;user5@example.co.jp\n", b"")
    no_rcpt = no_rcpt.replace(b"user5@example.co.jp", b"someone")
    md = maildir_with(
        tmp_path / "bounces",
        [
            dsn("USER0@example.co.jp", mid(cid, 1000), own_id="hard0@mx"),
            dsn("user1@example.co.jp", mid(cid, 1001), own_id="soft1@mx", status="4.2.2"),
            arf.encode(),
            # forged: names a stranger while quoting user4's mail; user4 stays sendable
            dsn("stranger@example.jp", mid(cid, 1004), own_id="forged@mx"),
            # no recipient and no VERP: counted as unmatched, nobody listed
            no_rcpt,
            # a forged id of a campaign that does not exist: user6 was mailed, but not by it
            dsn("user6@example.co.jp", mid("20990101-000000-ffffff", 1006), own_id="x6@mx"),
        ],
    )
    before = snapshot(md)
    first = bcartnb("bounces", "scan", str(md), "--json", env=env, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    out = json.loads(first.stdout)
    assert {k: out[k] for k in ("scanned", "hard", "soft", "complaints", "unmatched")} == {
        "scanned": 6,
        "hard": 1,
        "soft": 1,
        "complaints": 1,
        "unmatched": 3,
    }
    assert out["unmatched_reasons"] == {
        "address_mismatch": 1,
        "no_address": 1,
        "unknown_mail": 1,
    }
    assert (out["suppressed_new"], out["unsubscribes"], out["unverified"]) == (2, 0, 0)

    listed = json.loads(bcartnb("suppressions", "--json", env=env, cwd=tmp_path).stdout)
    by_address = {row["address"]: row for row in listed}
    assert set(by_address) == {"user0@example.co.jp", "user2@example.co.jp"}
    assert (
        by_address["user0@example.co.jp"]["campaign_id"],
        by_address["user0@example.co.jp"]["member_id"],
    ) == (cid, 1000)
    assert by_address["user2@example.co.jp"]["reason"] == "complaint"

    second = bcartnb("bounces", "scan", str(md), "--json", env=env, cwd=tmp_path)
    again = json.loads(second.stdout)
    assert (again["hard"], again["soft"], again["complaints"], again["suppressed_new"]) == (
        0,
        0,
        0,
        0,
    )
    assert json.loads(bcartnb("suppressions", "--json", env=env, cwd=tmp_path).stdout) == listed
    assert snapshot(md) == before

    # the same mail again on purpose: the bounced and the complaining are still held back
    dry = bcartnb("run", "campaign.toml", "--repeat", "--json", env=env, cwd=tmp_path)
    assert dry.returncode == 0, dry.stderr
    summary = json.loads(dry.stdout)
    assert summary["reasons"]["suppressed"] == 2  # user0, user2; not user1, user4, user6
    assert summary["sendable"] == 6


def test_cli_output_text_and_errors(tmp_path: Path, smtp_server: Server) -> None:
    server = smtp_server()
    env = setup_shop(tmp_path, server, 2)
    cid = send_campaign(tmp_path, env)
    md = maildir_with(
        tmp_path / "b",
        [
            dsn("user0@example.co.jp", mid(cid, 1000), own_id="1@mx"),
            dsn("a@example.jp", "<x@y>", own_id="2@mx"),
        ],
    )
    text = bcartnb("bounces", "scan", str(md), env=env, cwd=tmp_path)
    assert text.returncode == 0, text.stderr
    assert "不達（恒久的なエラー）          1 件" in text.stdout
    assert "照合できない通知（無視）        1 件" in text.stdout
    assert "このショップのメールではない（Message-ID が違う）: 1 件" in text.stdout
    for args in (
        ("bounces", "scan", str(tmp_path / "missing")),
        ("bounces", "scan", str(md), "--soft-threshold", "0"),
        ("bounces", "scan", "imaps://shop@127.0.0.1:1/INBOX"),  # no password set
    ):
        bad = bcartnb(*args, env=env, cwd=tmp_path)
        assert bad.returncode == 2, bad.stderr
        assert bad.stderr.startswith("bcartnb: error: ") and bad.stderr.count("\n") == 1
        assert "Traceback" not in bad.stderr
    # a soft bounce at a threshold of 1 given on the command line lists it at once
    soft = maildir_with(
        tmp_path / "s",
        [dsn("user1@example.co.jp", mid(cid, 1001), own_id="s@mx", status="4.2.2")],
    )
    out = bcartnb(
        "bounces", "scan", str(soft), "--soft-threshold", "1", "--json", env=env, cwd=tmp_path
    )
    assert json.loads(out.stdout)["suppressed_new"] == 1


def test_two_scans_at_once_record_each_event_once(tmp_path: Path, smtp_server: Server) -> None:
    server = smtp_server()
    env = setup_shop(tmp_path, server, 60)
    cid = send_campaign(tmp_path, env)
    mails = [
        dsn(f"user{i}@example.co.jp", mid(cid, 1000 + i), own_id=f"m{i}@mx") for i in range(60)
    ]
    md = maildir_with(tmp_path / "b", mails)
    cmd = [sys.executable, "-m", "bcartnb", "bounces", "scan", str(md), "--json"]
    procs = [
        subprocess.Popen(cmd, env=env, cwd=tmp_path, stdout=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outs = [json.loads(p.communicate(timeout=120)[0]) for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert sum(o["hard"] for o in outs) == 60 and sum(o["repeated"] for o in outs) == 60
    assert sum(o["suppressed_new"] for o in outs) == 60
    with sqlite3.connect(tmp_path / "ledger.sqlite3") as db:
        assert db.execute("SELECT count(*) FROM hygiene_events").fetchone()[0] == 60
        assert db.execute("SELECT count(*) FROM suppressions").fetchone()[0] == 60


def test_verp_gives_each_mail_its_own_return_path_and_places_a_bounce_that_names_nobody(
    tmp_path: Path, smtp_server: Server
) -> None:
    server = smtp_server()
    env = setup_shop(
        tmp_path, server, 3, '[hygiene]\nverp = true\nbounce_address = "bounces@example.co.jp"\n'
    )
    # VERP's tag needs the secret: without it the dry run already refuses, nothing is sent
    refused = bcartnb("run", "campaign.toml", "--json", env=env, cwd=tmp_path)
    assert refused.returncode == 2 and "BCARTNB_UNSUBSCRIBE_SECRET" in refused.stderr
    assert "[hygiene] verp" in refused.stderr and not server.received
    env["BCARTNB_UNSUBSCRIBE_SECRET"] = SECRET
    cid = send_campaign(tmp_path, env)
    signer = VerpSigner(SECRET)
    senders = {r.recipients[0]: r.envelope_from for r in server.received}
    assert senders == {
        f"user{i}@example.co.jp": signer.address("bounces@example.co.jp", cid, 1000 + i)
        for i in range(3)
    }
    assert all(s.startswith(f"bounces+{cid}.") for s in senders.values())
    # the headers still say who the shop is; only the envelope changed
    assert all(b"From: " in r.raw and b"bounces+" not in r.raw for r in server.received)

    nobody = dsn("user1@example.co.jp", "<unrelated@x>", own_id="verp1@mx")
    nobody = nobody.replace(b"user1@example.co.jp", b"garbled")
    nobody = nobody.replace(
        b"Delivered-To: shop@shop.example.co.jp",
        f"Delivered-To: {senders['user1@example.co.jp']}".encode(),
    )
    md = maildir_with(tmp_path / "b", [nobody])
    out = json.loads(bcartnb("bounces", "scan", str(md), "--json", env=env, cwd=tmp_path).stdout)
    assert (out["hard"], out["unmatched"], out["suppressed_new"]) == (1, 0, 1)
    # the old, untagged form (or anyone's guess) places nothing
    guessed = nobody.replace(
        f"Delivered-To: {senders['user1@example.co.jp']}".encode(),
        f"Delivered-To: bounces+{cid}.1002.aaaaaaaaaaaaaaaa@example.co.jp".encode(),
    )
    assert guessed != nobody
    md2 = maildir_with(tmp_path / "b2", [guessed])
    out = json.loads(bcartnb("bounces", "scan", str(md2), "--json", env=env, cwd=tmp_path).stdout)
    assert (out["hard"], out["unmatched"], out["unmatched_reasons"]) == (0, 1, {"bad_verp": 1})
    rows = json.loads(bcartnb("suppressions", "--json", env=env, cwd=tmp_path).stdout)
    assert [(r["address"], r["campaign_id"], r["member_id"]) for r in rows] == [
        ("user1@example.co.jp", cid, 1001)
    ]


def test_without_verp_the_envelope_sender_is_the_shop(tmp_path: Path, smtp_server: Server) -> None:
    server = smtp_server()
    env = setup_shop(tmp_path, server, 2)
    send_campaign(tmp_path, env)
    assert {r.envelope_from for r in server.received} == {"shop@example.co.jp"}


def test_a_progress_bar_on_stderr_when_asked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:  # (nothing was mailed: the three are unmatched, only read)
    settings = shop_settings(tmp_path)
    md = maildir_with(
        tmp_path / "b", [dsn(f"p{i}@example.jp", "<x@y>", own_id=f"p{i}@mx") for i in range(3)]
    )
    scan_mailbox(md, settings, progress=True)
    captured = capsys.readouterr()
    assert "不達メールの読み込み" in captured.err and "3/3" in captured.err
    assert captured.out == ""
    scan_mailbox(md, settings)  # the default: quiet
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("command", ["bounces unverified", "bounces confirm"])
def test_the_confirm_commands_help_is_japanese(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from test_cli import test_every_help_is_japanese

    test_every_help_is_japanese(command.split(), capsys)


def test_confirmed_soft_bounces_count_toward_the_threshold_and_ids_must_be_unambiguous(
    tmp_path: Path,
) -> None:
    def key(i: int) -> str:
        return "unverified:" + hashlib.sha256(str(i).encode()).hexdigest()[:40]

    def soft(i: int, address: str = "a@x.jp") -> HygieneEvent:
        at = NOW - timedelta(days=i)
        return HygieneEvent(key(i), "soft_bounce", address, at, "scan t", verified=False)

    with Ledger.open(tmp_path / "l.sqlite3") as led:
        out = led.record_events([soft(i) for i in range(3)], now=NOW)
        assert (out.unverified, out.suppressed_new, dict(out.by_kind)) == (3, (), {})
        assert led.hygiene_events() == [] and led.suppression("a@x.jp") is None
        assert led.record_events([soft(0)], now=NOW).repeated == 1  # the same notice again
        one = led.confirm_events([event_id(key(0))], now=NOW)
        assert len(one.confirmed) == 1 and one.suppressed_new == ()  # 1 of 3: still sendable
        rest = led.confirm_events(["A@X.JP"], now=NOW)  # by address: all it still has
        assert len(rest.confirmed) == 2 and rest.suppressed_new == ("a@x.jp",)
        row = led.suppression("a@x.jp")
        assert row is not None and row.reason == "soft_bounce"
        assert [e["detail"] for e in led.hygiene_events()] == ["(確認済み)"] * 3
        # two pending ids sharing their first 8 characters: the short form names neither
        twins = [
            HygieneEvent(
                f"unverified:abcdef12{c * 32}", "hard_bounce", f"{c}@x.jp", NOW, "t", verified=False
            )
            for c in "bc"
        ]
        led.record_events(twins, now=NOW)
        bad_calls: list[list[str]] = [
            [],
            ["   "],
            ["b@x.jp", "abcdef1"],  # too short to be an id
            ["b@x.jp", "abcdef12"],  # names two
            ["b@x.jp", "nobody@x.jp"],
            ["b@x.jp", event_id(key(0))],  # confirmed already
        ]
        for bad in bad_calls:
            with pytest.raises(HygieneError) as err:
                led.confirm_events(bad)
            assert err.value.ja
        assert led.suppression("b@x.jp") is None  # nothing half-done by a refused call
        with pytest.raises(HygieneError, match="names 2 notices"):
            led.confirm_events(["abcdef12"])
        assert led.confirm_events(["abcdef12b"]).suppressed_new == ("b@x.jp",)
