"""The suppression list: real ledger files, real `bcartnb` processes, a real SMTP server.

What must hold (issue 15): a listed address is never mailed again, by a new campaign (the
audience's ``suppressed`` reason) or by one already under way (its mails are ``withheld``);
an unsubscribe between an outage and the re-run continues the same campaign instead of
mailing everyone twice; recording the same bounce twice changes nothing; soft bounces list
an address only at the threshold, within the window.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import sqlite3
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from smtp_servers import Faults, TestServer
from test_audience import members_from
from test_cli_run import ADMIN, bcartnb, env_for, member_mails, setup_campaign

from bcartnb.audience import build_audience
from bcartnb.exceptions import HygieneError
from bcartnb.ledger import (
    MIGRATIONS,
    SCHEMA_VERSION,
    DeliveryResult,
    HygieneEvent,
    Ledger,
    fingerprint,
    normalize_address,
)
from bcartnb.quota import TOKYO

Server = Callable[..., TestServer]
T0 = datetime(2026, 11, 1, 9, 0, tzinfo=TOKYO)


@pytest.fixture
def ledger(tmp_path: Path) -> Ledger:
    return Ledger.open(tmp_path / "ledger.sqlite3", clock=lambda: T0)


def table(path: Path, name: str) -> list[tuple[object, ...]]:
    conn = sqlite3.connect(path)
    try:
        return sorted(conn.execute(f"SELECT * FROM {name}").fetchall(), key=repr)
    finally:
        conn.close()


def soft(key: str, address: str, day: int) -> HygieneEvent:
    return HygieneEvent(
        key, "soft_bounce", address, T0 + timedelta(days=day), "test", status="4.2.2"
    )


# --- the list itself -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad",
    [
        "",
        " \u3000 ",
        "a\r\nRCPT TO:<x@y.jp>@x.jp",
        "a\x00b@x.jp",
        "no-at-sign",
        "a b@x.jp",
        "x" * 250 + "@x.jp",
    ],
)
def test_an_address_no_member_file_could_hold_is_refused_in_japanese(bad: str) -> None:
    with pytest.raises(HygieneError) as err:
        normalize_address(bad)
    assert err.value.ja.startswith("メールアドレス")
    assert "\n" not in str(err.value) and "\r" not in str(err.value)


def test_addresses_are_trimmed_and_compared_ignoring_case(ledger: Ledger) -> None:
    assert normalize_address(" Foo@Example.JP\u3000") == "foo@example.jp"
    assert ledger.suppress(" Foo@Example.JP ", member_id=7) is True
    assert ledger.suppress("FOO@example.jp") is False  # listed already: counted, not added
    [row] = ledger.suppressions()
    assert (row.address, row.reason, row.count, row.member_id) == ("foo@example.jp", "manual", 2, 7)
    assert ledger.suppression("foo@EXAMPLE.jp") == row
    assert ledger.suppressed_addresses() == {"foo@example.jp"}


def test_a_stronger_reason_replaces_a_weaker_one_and_never_the_reverse(ledger: Ledger) -> None:
    ledger.suppress("a@x.jp", "hard_bounce", source="scan")
    ledger.suppress("a@x.jp", "unsubscribed", source="server")
    ledger.suppress("a@x.jp", "manual", source="cli")
    row = ledger.suppression("a@x.jp")
    assert row is not None and (row.reason, row.source, row.count) == ("unsubscribed", "server", 3)
    with pytest.raises(HygieneError):
        ledger.suppress("a@x.jp", "spam")


@pytest.mark.parametrize("kind", ["hard_bounce", "unsubscribed", "complaint"])
def test_a_hard_bounce_a_complaint_or_an_unsubscribe_lists_at_once(ledger: Ledger, kind: str):
    out = ledger.record_events([HygieneEvent("k1", kind, "A@x.jp", T0, "test", "c1", 5)])
    assert out.suppressed_new == ("a@x.jp",) and out.by_kind == {kind: 1}
    row = ledger.suppression("a@x.jp")
    assert row is not None and (row.reason, row.campaign_id, row.member_id) == (kind, "c1", 5)


def test_recording_the_same_events_twice_changes_nothing(tmp_path: Path, ledger: Ledger) -> None:
    events = [
        HygieneEvent("dsn-1", "hard_bounce", "a@x.jp", T0, "maildir"),
        soft("dsn-2", "b@x.jp", 0),
        soft("dsn-3", "b@x.jp", 1),
        soft("dsn-4", "b@x.jp", 2),
    ]
    first = ledger.record_events(events)
    assert (first.recorded, first.repeated) == (4, 0)
    assert set(first.suppressed_new) == {"a@x.jp", "b@x.jp"}
    before = table(tmp_path / "ledger.sqlite3", "suppressions")
    again = ledger.record_events(events)
    assert (again.recorded, again.repeated, again.suppressed_new) == (0, 4, ())
    assert table(tmp_path / "ledger.sqlite3", "suppressions") == before


def test_soft_bounces_list_an_address_only_at_the_threshold_within_the_window(
    ledger: Ledger,
) -> None:
    assert (
        ledger.record_events([soft("s1", "a@x.jp", 0), soft("s2", "a@x.jp", 5)]).suppressed_new
        == ()
    )
    assert "a@x.jp" not in ledger.suppressed_addresses()  # below the threshold: still sendable
    assert ledger.record_events([soft("s3", "a@x.jp", 29)]).suppressed_new == ("a@x.jp",)
    row = ledger.suppression("a@x.jp")
    assert row is not None and (row.reason, row.count) == ("soft_bounce", 3)
    # three, but never three within 30 days: day 0, 20, 40
    spread = [soft(f"t{d}", "b@x.jp", d) for d in (0, 20, 40)]
    assert ledger.record_events(spread).suppressed_new == ()
    # the threshold and the window are the caller's (the settings')
    out = ledger.record_events([soft("u1", "c@x.jp", 0), soft("u2", "c@x.jp", 1)], soft_threshold=2)
    assert out.suppressed_new == ("c@x.jp",)
    with pytest.raises(HygieneError):
        ledger.record_events([], soft_threshold=0)


def test_unsuppress_starts_the_soft_bounce_count_afresh(ledger: Ledger) -> None:
    ledger.record_events([soft(f"s{d}", "a@x.jp", d) for d in range(3)])
    assert ledger.unsuppress("A@X.JP") is True
    assert ledger.unsuppress("a@x.jp") is False
    assert ledger.record_events([soft("s9", "a@x.jp", 4)]).suppressed_new == ()
    assert ledger.suppressed_addresses() == frozenset()


_RECORD = """
import sys
from datetime import datetime
from bcartnb.ledger import HygieneEvent, Ledger
from bcartnb.quota import TOKYO
at = datetime(2026, 11, 1, tzinfo=TOKYO)
events = [HygieneEvent(f"dsn-{i}", "hard_bounce", f"u{i}@x.jp", at, "race") for i in range(300)]
with Ledger.open(sys.argv[1], timeout=30) as led:
    print(led.record_events(events).recorded)
"""


def test_two_processes_recording_the_same_mailbox_at_once_record_each_event_once(
    tmp_path: Path,
) -> None:
    db = tmp_path / "ledger.sqlite3"
    Ledger.open(db).close()
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _RECORD, str(db)], stdout=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    recorded = [int(p.communicate(timeout=60)[0]) for p in procs]
    assert sorted(recorded) == [0, 300]  # one transaction each: the second found them all
    assert len(table(db, "suppressions")) == 300
    assert len(table(db, "hygiene_events")) == 300


def test_b_cart_changes_are_pushed_once_each(ledger: Ledger) -> None:
    ledger.suppress("a@x.jp", "unsubscribed", member_id=1)
    ledger.suppress("b@x.jp", "hard_bounce", member_id=2)
    ledger.suppress("c@x.jp", "manual")  # no member id: nothing B-Cart could match
    changes = ledger.bcart_changes()
    assert [(c.member_id, c.field, c.value) for c in changes] == [
        (1, "mm_flag", 0),
        (2, "is_invalid_email", 1),
    ]
    for change in changes:
        ledger.record_bcart_push(change)
    assert ledger.bcart_changes() == []
    # a new, different reason for member 1 is a new change
    ledger.suppress("a@x.jp", "complaint")
    assert ledger.bcart_changes() == []  # complaint is mm_flag too: already pushed
    ledger.record_events([HygieneEvent("k", "hard_bounce", "d@x.jp", T0, "scan", "c", 4)])
    assert [(c.member_id, c.field) for c in ledger.bcart_changes()] == [(4, "is_invalid_email")]


def test_a_version_3_ledger_keeps_its_journal_and_gains_the_list(tmp_path: Path) -> None:
    db = tmp_path / "old.sqlite3"
    Ledger.open(db, migrations=MIGRATIONS[:3]).close()
    conn = sqlite3.connect(db)
    with conn:  # a version-3 campaign, as a version-3 bcartnb wrote it
        conn.execute(
            "INSERT INTO campaigns (campaign_id, created_at, user, host, plan, fingerprint, "
            "params, status, updated_at) VALUES ('c3', '2026-11-01T00:00:00+00:00', 'shop', "
            "'pc', 'ライトプラン', 'fp', '{}', 'unfinished', '2026-11-01T00:00:00+00:00')"
        )
        conn.executemany(
            "INSERT INTO deliveries (campaign_id, member_id, address) VALUES ('c3', ?, ?)",
            [(1, "a@x.jp"), (2, "b@x.jp")],
        )
    conn.close()
    before = table(db, "deliveries")
    with Ledger.open(db) as led:
        assert table(db, "deliveries") == before
        assert led.suppress("b@x.jp", "hard_bounce")
        assert led.withhold_suppressed("c3") == 1
        assert led.campaign("c3").journal == {"pending": 1, "withheld": 1}
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_withholding_touches_only_mails_not_yet_sent(ledger: Ledger) -> None:
    recipients = [(1, "a@x.jp"), (2, "B@X.JP"), (3, "c@x.jp"), (4, "d@x.jp")]
    ledger.claim(
        fingerprint=fingerprint({}, recipients),
        plan="light",
        params={},
        recipients=recipients,
        campaign_id="c1",
    )
    ledger.reserve("c1", 4, "light")
    ledger.mark_sending("c1", [(1, "pending"), (2, "pending"), (3, "pending")])
    ledger.mark_results("c1", [(1, "sent", 250, "ok"), (2, "deferred", 451, "greylisted")])
    ledger.mark_results("c1", [(3, "uncertain", None, "lost")])
    for address in ("a@x.jp", "b@x.jp", "c@x.jp", "d@x.jp"):
        ledger.suppress(address, "unsubscribed")
    assert ledger.withhold_suppressed("c1") == 3  # deferred, uncertain, pending; not the sent one
    assert ledger.withhold_suppressed("c1") == 0
    assert ledger.campaign("c1").journal == {"sent": 1, "withheld": 3}
    assert ledger.to_send("c1", resend_uncertain=True) == []


# One step of a send as the loop takes it, or another process listing an address (by index).
_STEP = st.one_of(
    st.tuples(st.just("list"), st.integers(0, 7)),
    st.tuples(st.just("unlist"), st.integers(0, 7)),
    st.tuples(st.just("hand"), st.integers(1, 4)),
    st.tuples(st.just("answer"), st.sampled_from(["sent", "deferred", "failed", "uncertain"])),
)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=st.lists(_STEP, max_size=30))
def test_no_mail_is_handed_over_while_its_address_is_listed(
    steps: list[tuple[str, object]],
) -> None:
    # Any interleaving of listings (and unlistings) with the loop's hand-overs and results:
    # a row goes to `sending` only when its address was not listed at that commit; a listed
    # row is `withheld` instead and counts nothing; a row already handed over keeps whatever
    # the server made of it.
    addresses = [f"m{i}@x.jp" for i in range(8)]
    recipients = [(i, a.upper() if i % 2 else a) for i, a in enumerate(addresses)]
    with tempfile.TemporaryDirectory() as tmp, Ledger.open(Path(tmp) / "l.sqlite3") as led:
        cid = led.claim(
            fingerprint="p", plan="own-smtp", params={}, recipients=recipients
        ).campaign_id
        led.reserve(cid, len(recipients), "own-smtp")
        listed: set[str] = set()
        in_flight: list[int] = []
        answered: dict[int, str] = {}
        counted = 0
        for kind, arg in steps:
            if kind == "list":
                led.suppress(addresses[int(str(arg))], "unsubscribed")
                listed.add(addresses[int(str(arg))])
            elif kind == "unlist":
                led.unsuppress(addresses[int(str(arg))])
                listed.discard(addresses[int(str(arg))])
            elif kind == "hand":
                todo = [(r.member_id, r.state) for r in led.to_send(cid)][: int(str(arg))]
                done = [DeliveryResult(m, answered.pop(m)) for m in list(answered)]
                step = led.hand_over(cid, done, todo)
                gone = {m for m, _ in todo if addresses[m] in listed}
                assert set(step.withheld) == gone
                counted += step.counted
                assert step.counted == sum(
                    1 for m, st_ in todo if m not in gone and st_ == "pending"
                )
                in_flight += [m for m, _ in todo if m not in gone]
            elif in_flight:
                answered[in_flight.pop(0)] = str(arg)
        states = dict(
            zip(led.deliveries(cid)["member_id"], led.deliveries(cid)["state"], strict=True)
        )
        for m in in_flight:
            assert states[m] == "sending"  # listed since: still the server's to answer
        assert led.usage("own-smtp").used == counted


# --- the audience ----------------------------------------------------------------------------

_ADDR = st.sampled_from(["a@x.jp", "A@X.jp", " b@x.jp", "c@x.jp", "", "bad..dot@x.jp", "d@x.jp"])
_FLAG = st.sampled_from(["受け取る", "受け取らない"])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rows=st.lists(st.tuples(_ADDR, _FLAG), min_size=1, max_size=12),
    listed=st.sets(st.sampled_from(["a@x.jp", "b@x.jp", "c@x.jp", "zz@x.jp"])),
    opt_in=st.booleans(),
)
def test_suppressed_is_decided_after_opt_in_and_before_duplicates(
    rows: list[tuple[str, str]], listed: set[str], opt_in: bool
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        members = members_from(Path(tmp), [(i + 1, a, f) for i, (a, f) in enumerate(rows)])
    without = build_audience(members, opt_in_only=opt_in)
    audience = build_audience(members, opt_in_only=opt_in, suppressed=listed)
    before = dict(zip(without.unsendable["id"], without.unsendable["reason"], strict=True))
    after = dict(zip(audience.unsendable["id"], audience.unsendable["reason"], strict=True))
    for member_id, address in zip(members["id"], members["email"], strict=True):
        key = address.strip().lower() if isinstance(address, str) else ""
        earlier = before.get(member_id) in ("empty_address", "invalid_address", "not_opted_in")
        if earlier:
            assert after[member_id] == before[member_id]  # an earlier reason wins
        elif key in listed:
            assert after[member_id] == "suppressed"
        else:
            assert after.get(member_id) == before.get(member_id)
    # one mail per address still, and never to a listed one
    sent = [a.strip().lower() for a in audience.sendable["email"]]
    assert len(sent) == len(set(sent)) and not set(sent) & listed
    assert sum(audience.reasons.values()) == len(audience.unsendable)


# --- every face, with real processes and a real server ---------------------------------------


def everyone_but(n: int, *gone: int) -> Counter[str]:
    return Counter(f"user{i}@example.co.jp" for i in range(n) if i not in gone)


@dataclass(frozen=True)
class Shop:
    """A campaign of members user0… in ``folder``, its settings, a real SMTP server, and
    ``bcartnb`` run there in a process of its own."""

    folder: Path
    campaign: Path
    server: TestServer
    env: dict[str, str]

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return bcartnb(*args, env=self.env, cwd=self.folder)

    @contextlib.contextmanager
    def sending(self, *extra: str) -> Iterator[subprocess.Popen[str]]:
        """``bcartnb run --send`` under way in the background; killed if the test fails."""
        proc = subprocess.Popen(
            [sys.executable, "-m", "bcartnb", "run", str(self.campaign), "--send", *extra],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=self.env,
            cwd=self.folder,
        )
        try:
            yield proc
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()


@pytest.fixture
def shop(tmp_path: Path, smtp_server: Server) -> Callable[..., Shop]:
    """``shop(n, faults=…, delivery="retries = 0")``: the campaign of ``n`` members (and one
    bad address), the server with those faults, ``delivery`` added as the [delivery] table."""

    def make(n: int, *, faults: Faults | None = None, delivery: str = "") -> Shop:
        server = smtp_server(faults=faults)
        path = setup_campaign(tmp_path, n)
        if delivery:
            settings = tmp_path / "bcartnb.toml"
            text = settings.read_text(encoding="utf-8")
            settings.write_text(f"{text}\n[delivery]\n{delivery}\n", encoding="utf-8")
        return Shop(tmp_path, path, server, env_for(tmp_path, server))

    return make


def test_a_listed_member_is_held_back_in_every_count_and_never_mailed(
    shop: Callable[..., Shop],
) -> None:
    at = shop(5)
    out = at.cli("suppress", " USER1@Example.co.jp ", "--member-id", "1001")
    assert out.returncode == 0 and "配信停止リストに追加しました: user1@example.co.jp" in out.stdout
    members = at.cli("members", str(at.folder / "members.csv"), "--json")
    assert json.loads(members.stdout)["reasons"]["suppressed"] == 1
    text = at.cli("members", str(at.folder / "members.csv"))
    assert "配信停止・不達" in text.stdout
    dry = json.loads(at.cli("run", str(at.campaign), "--json").stdout)
    assert (dry["sendable"], dry["reasons"]["suppressed"]) == (5 - 1, 1)
    sent = at.cli("run", str(at.campaign), "--send", "--json")
    assert sent.returncode == 0, sent.stderr
    assert member_mails(at.server) == everyone_but(5, 1)


def test_an_unsubscribe_between_an_outage_and_the_rerun_continues_the_campaign(
    shop: Callable[..., Shop],
) -> None:
    n = 8
    at = shop(n)
    at.server.down()
    first = at.cli("run", str(at.campaign), "--send", "--json")
    assert first.returncode == 4, first.stderr
    cid = json.loads(first.stdout)["campaign_id"]
    assert at.cli("suppress", "user3@example.co.jp", "--reason", "unsubscribed").returncode == 0
    at.server.up()
    again = at.cli("run", str(at.campaign), "--send", "--json")
    assert again.returncode == 0, again.stderr
    summary = json.loads(again.stdout)
    # the same campaign, continued: not a second one mailing everybody
    assert (summary["campaign_id"], summary["status"], summary["withheld"]) == (cid, "done", 1)
    assert member_mails(at.server) == everyone_but(n, 3)
    rows = json.loads(at.cli("campaigns", "--json").stdout)
    assert [(r["campaign_id"], r["status"]) for r in rows] == [(cid, "done")]
    assert json.loads(at.cli("quota", "--json").stdout)["used"] == n - 1


def test_a_greylisted_mail_whose_member_unsubscribes_is_withheld_by_the_resume(
    shop: Callable[..., Shop],
) -> None:
    n = 6
    at = shop(n, faults=Faults(greylist=3600), delivery="retries = 0")
    first = at.cli("run", str(at.campaign), "--send", "--json")
    assert first.returncode == 4, first.stderr
    out = json.loads(first.stdout)
    assert (out["deferred"], out["sent"]) == (n, 0)
    for i in (0, 4):
        assert at.cli("suppress", f"user{i}@example.co.jp").returncode == 0
    at.server.set_faults(Faults())
    resumed = at.cli("resume", out["campaign_id"], "--json")
    assert resumed.returncode == 0, resumed.stderr
    done = json.loads(resumed.stdout)
    assert (done["sent"], done["withheld"], done["deferred"]) == (n - 2, 2, 0)
    assert member_mails(at.server) == everyone_but(n, 0, 4)
    # handed over once each (a refused mail counts); withholding refunds nothing, adds nothing
    assert json.loads(at.cli("quota", "--json").stdout)["used"] == n
    assert sum(1 for r in at.server.received if r.recipients == (ADMIN,)) == 1


def journal_states(tmp_path: Path, campaign_id: str) -> dict[int, str]:
    with Ledger.open(tmp_path / "ledger.sqlite3") as led:
        frame = led.deliveries(campaign_id)
    return {int(m): str(s) for m, s in zip(frame["member_id"], frame["state"], strict=True)}


@pytest.mark.parametrize("pipelining", [False, True], ids=["plain", "pipelining"])
def test_an_unsubscribe_mid_send_is_honoured_before_the_next_hand_over(
    shop: Callable[..., Shop], pipelining: bool
) -> None:
    # One connection; the server holds the 4th mail (user3's) unanswered. While it is held,
    # another process lists user4 (next in line, not yet handed over) and user3 (handed
    # over, its data already at the server). Released: user4 is withheld, never sent; user3's
    # mail stays what the server made of it, sent. user4's MAIL FROM goes out while its
    # hand-over commits; withheld there, its transaction is given up before its RCPT, on a
    # server that pipelines too, and the next mail goes on a new connection.
    n = 8
    faults = Faults(hold_after=3, pipelining=pipelining)
    at = shop(n, faults=faults, delivery="connections = 1")
    with at.sending("--json") as proc:
        assert at.server.wait_held(1, timeout=60), "the 4th mail never reached the server"
        for address in ("user4@example.co.jp", "user3@example.co.jp"):
            listed = at.cli("suppress", address, "--reason", "unsubscribed")
            assert listed.returncode == 0, listed.stderr
        at.server.release()
        out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    summary = json.loads(out)
    assert (summary["status"], summary["sent"], summary["withheld"]) == ("done", n - 1, 1)
    assert member_mails(at.server) == everyone_but(n, 4)
    states = journal_states(at.folder, summary["campaign_id"])
    assert states[1004] == "withheld" and states[1003] == "sent"
    assert Counter(states.values()) == Counter({"sent": n - 1, "withheld": 1})
    # withheld before its hand-over: it never counted
    assert json.loads(at.cli("quota", "--json").stdout)["used"] == n - 1
    assert at.server.rcpt_attempts["user4@example.co.jp"] == 0
    # the one MAIL FROM without a mail is user4's, given up (n - 1 mails and the admin copy)
    assert at.server.transactions == (n - 1) + 1 + 1
    assert all(r.pipelined == pipelining for r in at.server.received)


def test_every_mail_listed_mid_send_is_withheld_and_the_summary_says_so(
    shop: Callable[..., Shop],
) -> None:
    # Four connections, everyone after the 2nd accepted mail listed while mails are held:
    # nothing but the mails already handed over reaches the server, and the text summary
    # counts the withheld ones.
    n = 12
    at = shop(n, faults=Faults(hold_after=2))
    with at.sending() as proc:
        assert at.server.wait_held(1, timeout=60)
        with Ledger.open(at.folder / "ledger.sqlite3") as led:
            for i in range(n):
                led.suppress(f"USER{i}@example.co.jp", "unsubscribed", source="test")
        at.server.release()
        out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    handed = len(member_mails(at.server))
    assert 3 <= handed < n and max(member_mails(at.server).values()) == 1
    assert f"配信停止のため送らなかった {n - handed}" in out
    with Ledger.open(at.folder / "ledger.sqlite3") as led:
        cid = str(led.campaigns()["campaign_id"].iloc[0])
    states = Counter(journal_states(at.folder, cid).values())
    assert states == Counter({"sent": handed, "withheld": n - handed})


def test_the_list_on_the_command_line_and_its_b_cart_export(
    tmp_path: Path, shop: Callable[..., Shop]
) -> None:
    at = shop(4)
    empty = at.cli("suppressions")
    assert empty.returncode == 0 and "配信停止リストは空です" in empty.stdout
    bad = at.cli("suppress", "user1@example.co.jp\r\nRSET")
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1
    assert bad.stderr.startswith("bcartnb: error: 配信停止リストのエラー: メールアドレス")
    for args in (
        ("user1@example.co.jp", "--reason", "hard_bounce", "--member-id", "1001"),
        ("user2@example.co.jp",),  # by address only: found through --members
        ("nobody@example.co.jp",),  # in no member file
    ):
        assert at.cli("suppress", *args).returncode == 0
    listed = json.loads(at.cli("suppressions", "--json").stdout)
    assert {r["address"] for r in listed} == {
        "user1@example.co.jp",
        "user2@example.co.jp",
        "nobody@example.co.jp",
    }
    assert {"address", "reason", "since", "count", "campaign_id", "member_id"} <= set(listed[0])
    shown = at.cli("suppressions").stdout
    assert "u***@example.co.jp" in shown and "user1@" not in shown  # masked on screen
    export = tmp_path / "b-cart.csv"
    out = at.cli(
        "suppressions", "--export-bcart", str(export), "--members", str(tmp_path / "members.csv")
    )
    assert out.returncode == 0, out.stderr
    # user2 (manual) is an opt-out; user1's hard bounce goes to the review file, not 受け取らない
    assert "（1 件、メール案内 = 受け取らない）" in out.stdout
    assert "b-cart-bounces.csv（1 件）" in out.stdout and "取り込まないでください" in out.stdout
    assert "1 件は書き出していません" in out.stderr  # nobody@ is in no member file
    raw = export.read_bytes()
    assert raw.startswith("会員ID,メール案内\r\n".encode("cp932"))
    rows = list(csv.reader(io.StringIO(raw.decode("cp932"), newline="")))
    assert rows == [["会員ID", "メール案内"], ["1002", "受け取らない"]]
    review = list(
        csv.reader(io.StringIO((tmp_path / "b-cart-bounces.csv").read_bytes().decode("cp932")))
    )
    assert review[1][:4] == ["不達", "不達（恒久的なエラー）", "1001", "user1@example.co.jp"]
    assert len(review) == 2 and "受け取らない" not in str(review)
    assert at.cli("unsuppress", "USER2@example.co.jp").returncode == 0
    after = json.loads(at.cli("suppressions", "--json").stdout)
    assert len(after) == 2


def test_the_wizard_shows_listed_members_as_suppressed_and_never_mails_them(
    tmp_path: Path, repo_root: Path, smtp_server: Server
) -> None:
    from test_widgets import HEADER, make_settings, member_rows

    from bcartnb.widgets import Wizard

    server = smtp_server()
    path = tmp_path / "members.csv"
    path.write_text(HEADER + member_rows(["東京都"] * 4), encoding="utf-8")
    settings = make_settings(tmp_path, repo_root, server.settings())
    with Ledger.open(settings.db) as led:
        led.suppress("USER1002@example.co.jp", "unsubscribed", source="server")
    wizard = Wizard(path, settings)
    cells = [c for r in wizard.table.shown_cells() for c in r]
    assert cells.count("配信停止・不達") == 1  # the member table says why
    wizard.send_all.click()
    assert wizard.stage == "compose", wizard.status.value
    wizard.compose.opt_in.value = False
    assert "配信停止・不達 1件" in wizard.compose.counts.value
    wizard.compose.template.value = "テキストニュースレター"
    wizard.compose.to_confirm.click()
    assert wizard.stage == "confirm", wizard.status.value
    assert "配信停止・不達 1件" in wizard.confirm.counts.value
    wizard.confirm.send.click()
    assert wizard.stage == "done", wizard.status.value
    server.wait_for(4)
    assert sorted(r.recipients[0] for r in server.received if r.recipients != (ADMIN,)) == [
        "user1001@example.co.jp",
        "user1003@example.co.jp",
        "user1004@example.co.jp",
    ]
