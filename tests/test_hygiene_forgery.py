"""Forged bounces, complaints and unsubscribes from outside: only the shop's own mails count.

A real campaign goes through the aiosmtpd fixture (with VERP and a secret); the notices are
built from what that server really received (its Message-IDs, its envelope senders), or
forged the ways an outsider can: an address never mailed, a foreign Message-ID, a
guessed VERP, another member's Message-ID. The real command reads them in a subprocess, and
the B-Cart push's dry run shows what would reach B-Cart.
"""

from __future__ import annotations

import email
import json
import mailbox
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from smtp_servers import TestServer
from test_cli_run import bcartnb
from test_hygiene_scan import (
    DATA,
    NOW,
    SAMPLE_CID,
    SECRET,
    dsn,
    maildir_with,
    send_mails,
    setup_shop,
    shop_settings,
)

from bcartnb.hygiene.scan import scan_mailbox
from bcartnb.ledger import Ledger
from bcartnb.settings import Settings

Server = Callable[..., TestServer]
VERP_ON = '[hygiene]\nverp = true\nbounce_address = "bounces@example.co.jp"\n'


def real_shop(tmp_path: Path, server: TestServer, n: int, extra: str = "") -> dict[str, str]:
    """A shop with VERP that has really sent a campaign to user0…user{n-1}."""
    env = setup_shop(tmp_path, server, n, VERP_ON + extra)
    env["BCARTNB_UNSUBSCRIBE_SECRET"] = SECRET
    env["BCARTNB_BCART_TOKEN"] = "test-token-never-used-by-a-dry-run"
    done = bcartnb("run", "campaign.toml", "--send", "--json", env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    return env


def sent(server: TestServer) -> dict[str, tuple[str, str]]:
    """Address → (its mail's Message-ID, its envelope sender), as the server received them."""
    out = {}
    for r in server.received:
        msg = email.message_from_bytes(r.raw)
        out[r.recipients[0]] = (str(msg["Message-ID"]), r.envelope_from)
    return out


def scan(tmp_path: Path, env: dict[str, str], mails: list[bytes], name: str) -> dict[str, Any]:
    md = maildir_with(tmp_path / name, mails)
    done = bcartnb("bounces", "scan", str(md), "--json", env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout))


def listed(tmp_path: Path, env: dict[str, str]) -> dict[str, str]:
    out = bcartnb("suppressions", "--json", env=env, cwd=tmp_path)
    return {r["address"]: r["reason"] for r in json.loads(out.stdout)}


def pushed(tmp_path: Path, env: dict[str, str]) -> list[dict[str, Any]]:
    """The B-Cart push's dry run: what would be written to B-Cart (nothing is sent)."""
    done = bcartnb("bcart", "push-suppressions", "--json", env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    return list(json.loads(done.stdout)["members"])


def carrier(
    recipient: str, *, quoted_id: str | None = None, to: str = "shop@example.co.jp"
) -> bytes:
    """au's "Mail System Error" notice for ``recipient``, quoting ``quoted_id`` or nothing."""
    raw = (DATA / "au-ezweb-user-unknown.eml").read_text(encoding="utf-8")
    raw = raw.replace("goro-xyz@ezweb.ne.jp", recipient).replace(
        "To: shop@shop.example.co.jp", f"To: {to}"
    )
    ours = f"<bcartnb.{SAMPLE_CID}.1006@shop.example.co.jp>"
    if quoted_id is None:
        raw = raw.replace(f"Message-ID: {ours}\n", "")
    else:
        raw = raw.replace(ours, quoted_id)
    return raw.encode()


def arf(recipient: str, message_id: str | None, *, return_path: str | None = None) -> bytes:
    raw = (DATA / "arf-yahoo.eml").read_text(encoding="utf-8")
    raw = raw.replace("hachiro@yahoo.example", recipient)
    ours = f"<bcartnb.{SAMPLE_CID}.1009@shop.example.co.jp>"
    raw = re.sub(rf"Message-I[Dd]: {re.escape(ours)}\n", "", raw) if message_id is None else raw
    raw = raw.replace(ours, message_id or "")
    if return_path is not None:  # the original's own header, as the complainer's server kept it
        original = "\n\nFrom: shop@shop.example.co.jp\n"
        raw = raw.replace(original, f"\n\nReturn-Path: <{return_path}>{original[1:]}")
    return raw.encode()


def test_forged_notices_from_outside_change_nothing_and_never_reach_bcart(
    tmp_path: Path, smtp_server: Server
) -> None:
    server = smtp_server()
    env = real_shop(tmp_path, server, 3)
    real = sent(server)
    cid = json.loads(bcartnb("campaigns", "--json", env=env, cwd=tmp_path).stdout)[0]["campaign_id"]
    guessed_verp = f"bounces+{cid}.1001.abcdefghijklmnop@example.co.jp"
    forged = [
        # addresses never mailed, with no Message-ID: a DSN, an ARF, a carrier notice
        *(dsn(f"victim{i}@example.jp", "", own_id=f"f{i}@evil") for i in range(50)),
        arf("victim-arf@example.jp", None),
        carrier("victim-au@ezweb.ne.jp"),
        # a mailed address, but the notice is about a mail that is not ours
        dsn("user0@example.co.jp", "<staff-reply-17@pc.shop>", own_id="foreign@evil"),
        carrier("user0@example.co.jp", quoted_id="<other-shop-1@mail.example>"),
        # a guessed VERP, with and without a recipient, and in a complaint's original
        dsn("user1@example.co.jp", "", own_id="verp@evil", delivered_to=guessed_verp),
        carrier("user1@example.co.jp", to=guessed_verp),
        arf("user1@example.co.jp", None, return_path=guessed_verp),
        # another member's real Message-ID naming user2: not the mail user2 got
        dsn("user2@example.co.jp", real["user1@example.co.jp"][0], own_id="swap@evil"),
        # a Message-ID of ours shaped for a member or a campaign that was never mailed
        dsn("user2@example.co.jp", f"<bcartnb.{cid}.1099@example.co.jp>", own_id="m@evil"),
        dsn("user2@example.co.jp", "<bcartnb.20991231-000000-000000.1002@x.jp>", own_id="c@evil"),
        dsn("user2@example.co.jp", f"<bcartnb.{cid}.{'9' * 40}@x.jp>", own_id="big@evil"),
    ]
    out = scan(tmp_path, env, forged, "forged")
    assert (out["hard"], out["soft"], out["complaints"], out["suppressed_new"]) == (0, 0, 0, 0)
    assert out["unmatched"] == len(forged) and out["unverified"] == 0
    assert out["unmatched_reasons"] == {
        "never_mailed": 52,
        "foreign_message_id": 2,
        "bad_verp": 3,
        "address_mismatch": 1,
        "unknown_mail": 3,
    }
    assert listed(tmp_path, env) == {} and pushed(tmp_path, env) == []
    with Ledger.open(tmp_path / "ledger.sqlite3") as led:
        assert led.hygiene_events() == [] and led.unverified_events() == []
    # the text says why, in Japanese, and never the whole address
    text = bcartnb("bounces", "scan", str(tmp_path / "forged"), env=env, cwd=tmp_path).stdout
    assert "このショップが送ったことのないアドレス: 52 件" in text
    assert "VERP の署名が合わない（偽造）: 3 件" in text and "@example.jp" not in text
    # with VERP on, a scan without the secret cannot verify a VERP: refused, one line
    bare = {k: v for k, v in env.items() if k != "BCARTNB_UNSUBSCRIBE_SECRET"}
    refused = bcartnb("bounces", "scan", str(tmp_path / "forged"), env=bare, cwd=tmp_path)
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1
    assert "BCARTNB_UNSUBSCRIBE_SECRET" in refused.stderr
    # the campaign's next dry run still mails all three
    dry = json.loads(bcartnb("run", "campaign.toml", "--json", env=env, cwd=tmp_path).stdout)
    assert dry["reasons"].get("suppressed", 0) == 0


def test_real_notices_for_a_real_campaign_by_message_id_and_by_verp(
    tmp_path: Path, smtp_server: Server
) -> None:
    server = smtp_server()
    env = real_shop(tmp_path, server, 4)
    real = sent(server)
    by_mid = dsn("user0@example.co.jp", real["user0@example.co.jp"][0], own_id="r0@mx")
    # a carrier notice quoting nothing, but delivered to that mail's own return path
    by_verp = carrier("user1@example.co.jp", to=real["user1@example.co.jp"][1])
    # a complaint whose recipient is redacted: its original's Return-Path is user2's VERP
    complaint = arf("redacted@example.invalid", None, return_path=real["user2@example.co.jp"][1])
    # a Message-ID with the address in another case: still that mail
    upper = dsn("USER3@Example.co.jp", real["user3@example.co.jp"][0], own_id="r3@mx")
    out = scan(tmp_path, env, [by_mid, by_verp, complaint, upper], "real")
    assert (out["hard"], out["complaints"], out["unmatched"], out["suppressed_new"]) == (
        3,
        1,
        0,
        4,
    )
    assert listed(tmp_path, env) == {
        "user0@example.co.jp": "hard_bounce",
        "user1@example.co.jp": "hard_bounce",
        "user2@example.co.jp": "complaint",
        "user3@example.co.jp": "hard_bounce",
    }
    assert sorted((m["member_id"], m["field"]) for m in pushed(tmp_path, env)) == [
        (1000, "is_invalid_email"),
        (1001, "is_invalid_email"),
        (1002, "mm_flag"),
        (1003, "is_invalid_email"),
    ]


def test_three_copies_of_one_delay_notice_count_once(tmp_path: Path, smtp_server: Server) -> None:
    server = smtp_server()
    env = real_shop(tmp_path, server, 1)
    mid = sent(server)["user0@example.co.jp"][0]
    copies = [
        dsn("user0@example.co.jp", mid, own_id=f"copy{i}@mx", status="4.2.2") for i in range(3)
    ]
    out = scan(tmp_path, env, copies, "copies")
    assert (out["soft"], out["suppressed_new"], out["repeated"]) == (1, 0, 0)
    # even at a threshold of 2 the one mail is one soft bounce
    md = str(tmp_path / "copies")
    again = bcartnb("bounces", "scan", md, "--soft-threshold", "2", "--json", env=env, cwd=tmp_path)
    assert json.loads(again.stdout)["suppressed_new"] == 0
    assert listed(tmp_path, env) == {}


def test_a_notice_reread_after_a_mail_client_marked_it_is_the_same_event(
    tmp_path: Path, smtp_server: Server
) -> None:
    server = smtp_server()
    env = real_shop(tmp_path, server, 2, "")
    mid = sent(server)["user0@example.co.jp"][0]
    no_id = re.sub(
        rb"(?m)^Message-Id: .*\n",
        b"",
        dsn("user0@example.co.jp", mid, own_id="x@mx", status="4.2.2"),
    )
    loose = carrier("user1@example.co.jp")  # no id, no VERP: unverified
    loose = re.sub(rb"(?m)^Message-Id: .*\n", b"", loose)
    path = tmp_path / "bounces.mbox"
    box = mailbox.mbox(path, create=True)
    for raw in (no_id, loose):
        box.add(raw)
    box.close()
    first = json.loads(
        bcartnb("bounces", "scan", str(path), "--json", env=env, cwd=tmp_path).stdout
    )
    assert (first["soft"], first["unverified"]) == (1, 1)
    # what mutt does on reading an mbox: a Status header in each message
    box = mailbox.mbox(path)
    box.lock()
    for key, msg in list(box.items()):
        msg["Status"] = "RO"
        msg["X-Status"] = "A"
        box[key] = msg
    box.flush()
    box.unlock()
    box.close()
    assert path.read_bytes().count(b"Status: RO") == 2
    second = json.loads(
        bcartnb("bounces", "scan", str(path), "--json", env=env, cwd=tmp_path).stdout
    )
    assert (second["soft"], second["unverified"], second["repeated"]) == (0, 0, 2)
    with Ledger.open(tmp_path / "ledger.sqlite3") as led:
        assert len(led.hygiene_events()) == 1 and len(led.unverified_events()) == 1


def test_an_unverified_carrier_notice_is_listed_masked_then_confirmed_in_one_step(
    tmp_path: Path, smtp_server: Server
) -> None:
    server = smtp_server()
    env = real_shop(tmp_path, server, 2)
    docomo = (DATA / "docomo-unknown-user.ja.eml").read_bytes()
    docomo = docomo.replace(b"rokuro.abc@docomo.ne.jp", b"user1@example.co.jp")
    docomo = re.sub(rb"(?m)^.*bcartnb\.[^\n]*\n", b"", docomo)  # quotes nothing of ours
    out = scan(tmp_path, env, [docomo], "docomo")
    assert (out["hard"], out["unverified"], out["suppressed_new"]) == (0, 1, 0)
    [notice] = out["unverified_notices"]
    assert notice["address"] == "u***@example.co.jp" and notice["kind"] == "hard_bounce"
    assert notice["member_id"] == 1001
    assert listed(tmp_path, env) == {} and pushed(tmp_path, env) == []

    shown = bcartnb("bounces", "unverified", env=env, cwd=tmp_path)
    assert notice["id"] in shown.stdout and "user1@" not in shown.stdout
    for bad in ("zz", "nobody@example.jp", notice["id"][:4]):
        refused = bcartnb("bounces", "confirm", bad, env=env, cwd=tmp_path)
        assert refused.returncode == 2 and refused.stderr.count("\n") == 1
        assert f"確認待ちの通知 {bad!r} が見つかりません" in refused.stderr
    done = bcartnb("bounces", "confirm", notice["id"], "--json", env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["suppressed_new"] == 1
    assert listed(tmp_path, env) == {"user1@example.co.jp": "hard_bounce"}
    assert [(m["member_id"], m["field"]) for m in pushed(tmp_path, env)] == [
        (1001, "is_invalid_email")
    ]
    # confirmed once: nothing left to confirm, and a rescan adds nothing
    again = bcartnb("bounces", "confirm", notice["id"], env=env, cwd=tmp_path)
    assert again.returncode == 2
    rescan = scan(tmp_path, env, [], "docomo")
    assert (rescan["unverified"], rescan["repeated"]) == (0, 1)


def test_a_mailto_unsubscribe_counts_by_its_signed_token_not_its_from(
    tmp_path: Path, smtp_server: Server
) -> None:
    server = smtp_server()
    mailto = (
        'unsubscribe_mailto = "mailto:unsubscribe@example.co.jp'
        '?subject=unsubscribe%20{{ unsubscribe_token }}"\n'
    )
    env = real_shop(tmp_path, server, 2, "")
    # the mailto is a top-level setting: put it before [hygiene]
    cfg = tmp_path / "bcartnb.toml"
    cfg.write_text(mailto + cfg.read_text(encoding="utf-8"), encoding="utf-8")
    server.received.clear()
    (tmp_path / "campaign.toml").write_text(
        'members = "members.csv"\nsubject = "第2号"\nbody = "本文"\n', encoding="utf-8"
    )
    done = bcartnb("run", "campaign.toml", "--send", "--json", env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    headers = {
        r.recipients[0]: re.sub(
            r"\s+", "", str(email.message_from_bytes(r.raw)["List-Unsubscribe"])
        )
        for r in server.received
    }
    token = re.search(r"unsubscribe%20([A-Za-z0-9_-]+)>", headers["user0@example.co.jp"])
    assert token is not None

    def request(sender: str, subject: str) -> bytes:
        return (
            f"From: <{sender}>\nTo: unsubscribe@example.co.jp\nSubject: {subject}\n"
            f"Message-ID: <{abs(hash(subject))}@phone>\n\nunsubscribe\n"
        ).encode()

    mails = [
        # from the member's phone, another address: the token says whose mail it was
        request("user0.phone@example.jp", f"unsubscribe {token.group(1)}"),
        # forged: user1's address in From, no token (or a token that is not one)
        request("user1@example.co.jp", "unsubscribe"),
        request("user1@example.co.jp", "unsubscribe " + token.group(1)[:-2] + "xx"),
        # a stranger never mailed
        request("stranger@example.jp", "unsubscribe"),
    ]
    out = scan(tmp_path, env, mails, "unsub")
    assert (out["unsubscribes"], out["unverified"], out["unmatched"]) == (1, 2, 1)
    assert listed(tmp_path, env) == {"user0@example.co.jp": "unsubscribed"}


# --- the property -------------------------------------------------------------------------

_MAILED = [f"user{i}@example.co.jp" for i in range(4)]
_STRANGERS = ["victim@example.jp", "boss@example.co.jp", "user9@example.co.jp"]


@st.composite
def notices(draw: st.DrawFn) -> tuple[str, str, str, str]:
    """(shape, named recipient, Message-ID choice, VERP choice) of one incoming notice."""
    return (
        draw(st.sampled_from(["dsn-hard", "dsn-soft", "arf", "carrier"])),
        draw(st.sampled_from(_MAILED + _STRANGERS)),
        draw(
            st.sampled_from(["own", "other", "foreign", "forged", "none", *_MAILED])
            | st.one_of(st.integers(998, 1005), st.integers(0, 1 << 80)).map(
                lambda m: f"member:{m}"
            )
        ),
        draw(
            st.sampled_from(["none", "none", *_MAILED])
            | st.tuples(
                st.one_of(st.integers(998, 1005), st.integers(0, 1 << 70)),
                st.text("abcdefghijklmnopqrstuvwxyz234567", min_size=16, max_size=16),
            ).map(lambda t: f"guessed:{t[0]}.{t[1]}")
        ),
    )


def _build(
    n: int, notice: tuple[str, str, str, str], real: dict[str, tuple[str, str]], cid: str
) -> tuple[bytes, set[str]]:
    """The notice's bytes, and the addresses it genuinely ties (by the rules, not the code)."""
    shape, named, mid_choice, verp_choice = notice
    ties: set[str] = set()
    if mid_choice == "own":
        mid = real[named][0] if named in real else f"<bcartnb.{cid}.1077@example.co.jp>"
        ties |= {named} & set(real)
    elif mid_choice == "other":
        mid = real[_MAILED[(n + 1) % 4]][0]
        ties |= {named} & {_MAILED[(n + 1) % 4]}
    elif mid_choice in real:
        mid = real[mid_choice][0]
        ties |= {named} & {mid_choice}
    else:
        forged = f"<bcartnb.{cid}.{mid_choice.partition(':')[2]}@x.jp>"  # any member id
        mid = {"foreign": "<a1@mail.example>", "forged": f"<bcartnb.{cid}.1066@x.jp>"}.get(
            mid_choice, forged if mid_choice.startswith("member:") else ""
        )
    verp = None
    if mid_choice.startswith("member:"):  # a guessed member id may be a real one: then it ties
        ties |= {named} & {_MAILED[m - 1000] for m in [int(mid_choice[7:])] if 1000 <= m < 1004}
    if verp_choice.startswith("guessed:"):
        verp = f"bounces+{cid}.{verp_choice[8:]}@example.co.jp"
    elif verp_choice in real:
        verp = real[verp_choice][1]
        ties.add(verp_choice)  # back at that mail's own return path: that mail's address
    if shape == "arf":
        return arf(named, mid or None, return_path=verp), ties
    if shape == "carrier":
        return carrier(named, quoted_id=mid or None, to=verp or "shop@example.co.jp"), ties
    status = "4.2.2" if shape == "dsn-soft" else "5.1.1"
    kw = {"delivered_to": verp} if verp else {}
    return dsn(named, mid, own_id=f"p{n}@mx", status=status, **kw), ties


def test_property_only_addresses_the_shop_mailed_and_a_notice_tied_are_ever_suppressed(
    tmp_path: Path, smtp_server: Server
) -> None:
    server = smtp_server()
    base: Settings = shop_settings(
        tmp_path, VERP_ON, env={**server.env(), "BCARTNB_UNSUBSCRIBE_SECRET": SECRET}
    )
    members = {1000 + i: a for i, a in enumerate(_MAILED)}
    cid = send_mails(base, members, subject="本物")
    real = sent(server)
    pristine = tmp_path / "pristine.sqlite3"
    shutil.copy(base.db, pristine)
    runs = iter(range(10**6))

    @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.lists(notices(), min_size=1, max_size=8))
    def check(batch: list[tuple[str, str, str, str]]) -> None:
        run = next(runs)
        db = tmp_path / f"ledger-{run}.sqlite3"
        shutil.copy(pristine, db)
        built = [_build(n, notice, real, cid) for n, notice in enumerate(batch)]
        md = maildir_with(tmp_path / f"box-{run}", [raw for raw, _ in built])
        allowed = set().union(*(ties for _, ties in built))
        with Ledger.open(db) as led:
            out = scan_mailbox(md, base, ledger=led, now=NOW)
            suppressed = {s.address for s in led.suppressions()}
            changes = {c.member_id for c in led.bcart_changes()}
        assert suppressed <= allowed <= set(_MAILED)
        assert changes <= {m for m, a in members.items() if a in suppressed}
        assert out.scanned == len(batch)
        db.unlink()
        shutil.rmtree(md)

    check()
