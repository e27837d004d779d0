"""The spool's forked helper: composed alongside the claim, in chunks taken by either side.

A fork is only safe in a single-threaded process, and pytest's (with the SMTP servers'
threads) is not one, so every case runs in a fresh interpreter, as the command line does.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from test_cli_run import ADMIN, Server, env_for, member_mails, setup_campaign

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="the compose helper is Linux only"
)

# 40 members; in ISO-2022-JP the mails of members 1007 and 1023 cannot be composed (①)
MEMBERS = "".join(
    f"{1000 + i},{'①' if i in (7, 23) else ''}テスト商事{i},山田,太郎{i},user{i}@example.co.jp,"
    f"東京都,受け取る\n"
    for i in range(40)
)

PROLOGUE = r"""
import json, os, signal, sys, threading
from datetime import datetime
from pathlib import Path
from bcartnb.campaign import CampaignSpec, plan_campaign
from bcartnb.delivery.spool import Spool, SpoolHelper
from bcartnb.quota import TOKYO
from bcartnb.settings import Settings

members = Path(sys.argv[1])
AT = datetime(2026, 11, 27, 9, 0, tzinfo=TOKYO)

def plan_for(encoding):
    spec = CampaignSpec.from_mapping({
        "members": str(members), "encoding": encoding,
        "subject": "{{ 会社名 }} 様 12月のご案内",
        "body": "{{ 会社名 }} {{ 担当者名 }} 様\nいつもありがとうございます。\n.ドットの行\n",
    })
    settings = Settings(plan="プラン10", from_addr="shop@example.co.jp", from_name="見本商事",
                        db=members.with_name("l.sqlite3"))
    plan = plan_campaign(spec, settings)
    plan.composer.clock = lambda: AT
    return plan

def spooled(plan, rows, helper=None):
    "Every mail of rows as the spool gives it, or the error composing them raised."
    try:
        spool = Spool(plan, helper, rows)
    except Exception as err:
        return ["error", type(err).__name__, str(err)], {}
    try:
        mails = [[to, raw.decode("latin-1")] for to, raw in map(spool.get, map(int, rows["id"]))]
        return ["mails", mails], {"recomposed": spool.recomposed, "files": len(spool._files)}
    finally:
        spool.close()

def no_child_left():
    try:
        os.waitpid(-1, os.WNOHANG)
    except ChildProcessError:
        return True
    return False

assert threading.active_count() == 1
"""

PROPERTY = r"""
from hypothesis import HealthCheck, given, settings, strategies as st

plans = {e: plan_for(e) for e in ("utf-8", "iso-2022-jp")}
seen = {"error": 0, "mails": 0}

@settings(max_examples=40, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(
    encoding=st.sampled_from(sorted(plans)),
    picks=st.lists(st.integers(0, 39), min_size=1, max_size=40, unique=True),
    chunk=st.integers(1, 9),
)
def forked_is_plain(encoding, picks, chunk):
    plan = plans[encoding]
    rows = plan.audience.sendable.iloc[picks]
    plain, _ = spooled(plan, rows)
    helper = SpoolHelper(plan.composer, rows, chunk=chunk)
    try:
        forked, _ = spooled(plan, rows, helper)
    finally:
        helper.close()
    assert forked == plain, (forked[:3], plain[:3])
    assert no_child_left()
    seen[plain[0]] += 1

forked_is_plain()
print(json.dumps(seen))
"""

KILLED = r"""
plan = plan_for(sys.argv[2])
rows = plan.audience.sendable.iloc[json.loads(sys.argv[3])]
parent = os.getpid()
ready_r, ready_w = os.pipe()
hold_r, hold_w = os.pipe()

def clock():  # the child stops inside its first mail, until it is killed there
    if os.getpid() != parent:
        os.write(ready_w, b"x")
        os.read(hold_r, 1)
    return AT

plan.composer.clock = clock
helper = SpoolHelper(plan.composer, rows, chunk=6)
os.read(ready_r, 1)
os.kill(helper.pid, signal.SIGKILL)
forked, spool = spooled(plan, rows, helper)
helper.close()
plan.composer.clock = lambda: AT
plain, _ = spooled(plan, rows)
print(json.dumps({"same": forked == plain, "kind": forked[0], **spool,
                  "error": forked[2] if forked[0] == "error" else None,
                  "no_child": no_child_left()}))
"""


def _python(tmp_path: Path, script: str, *args: str) -> Any:
    proc = subprocess.run(
        [sys.executable, "-c", PROLOGUE + script, *args],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.splitlines()[-1])


def _members(tmp_path: Path) -> Path:
    path = tmp_path / "m.csv"
    path.write_text(
        "会員ID,会社名,担当者(姓),担当者(名),メールアドレス,都道府県,メール案内\n" + MEMBERS,
        encoding="utf-8",
    )
    return path


def test_mails_composed_by_both_sides_are_the_plain_spools_or_its_first_error(tmp_path: Path):
    seen = _python(tmp_path, PROPERTY, str(_members(tmp_path)))
    assert seen["error"] and seen["mails"]  # both outcomes were compared


def test_the_chunk_a_killed_helper_took_is_composed_here(tmp_path: Path):
    out = _python(tmp_path, KILLED, str(_members(tmp_path)), "utf-8", json.dumps(list(range(40))))
    # the child was killed inside its first chunk: those 6 mails came from us
    assert out == {
        "same": True,
        "kind": "mails",
        "recomposed": 6,
        "files": 1,
        "error": None,
        "no_child": True,
    }


def test_an_error_in_our_chunk_waits_for_an_earlier_one_in_the_helpers(tmp_path: Path):
    # the helper takes [1000, 1007, ...] and is killed inside 1000's mail; we take the next
    # chunk and meet 1023 first, yet the error raised is 1007's, as composing in order says
    order = [0, 7, 1, 2, 3, 4, 5, 23, *(i for i in range(6, 40) if i not in (7, 23))]
    out = _python(tmp_path, KILLED, str(_members(tmp_path)), "iso-2022-jp", json.dumps(order))
    assert out["same"] is True and out["no_child"] is True
    assert out["kind"] == "error" and str(out["error"]).startswith("member 1007")


COUNTED = r"""
import json, os, sqlite3, sys
from bcartnb.delivery import spool

made = []  # each helper started: its rows, and how many campaigns the ledger held then
start = spool.SpoolHelper.__init__
def counted(self, composer, rows, *args, **kwargs):
    campaigns = None  # no ledger file yet (a dry run makes none)
    if os.path.exists("ledger.sqlite3"):
        with sqlite3.connect("file:ledger.sqlite3?mode=ro", uri=True) as db:
            campaigns = db.execute("SELECT count(*) FROM campaigns").fetchone()[0]
    made.append([len(rows), campaigns])
    start(self, composer, rows, *args, **kwargs)
spool.SpoolHelper.__init__ = counted
spool.SpoolHelper.MIN_MAILS = int(sys.argv[2])

def no_child_left():
    try:
        os.waitpid(-1, os.WNOHANG)
    except ChildProcessError:
        return True
    return False
"""

RUN_CLI = r"""
from bcartnb.cli import main
code = main(["run", sys.argv[1], "--json", *sys.argv[3:]])
print(json.dumps({"made": made, "no_child": no_child_left()}), file=sys.stderr)
sys.exit(code)
"""

CONDUCT = r"""
from bcartnb import campaign
from bcartnb.ledger import Ledger
from bcartnb.settings import load_settings

settings = load_settings()
plan = campaign.plan_campaign(campaign.load_campaign(sys.argv[1]), settings)
running = sys.argv[3] == "running"
with Ledger.open(settings=settings) as other:  # another run holds some of it since the plan
    other.claim(
        fingerprint=plan.fingerprint if running else "another",
        plan=plan.plan, params={}, mail=plan.mail, campaign_id="another",
        recipients=plan.recipients if running else [(1003, "user3@example.co.jp")],
    )
out = {"made": made}
try:
    out["sent"] = campaign.send(plan, progress=False).sent
except Exception as err:
    out["error"] = type(err).__name__
out["no_child"] = no_child_left()
print(json.dumps(out))
"""


def _run(
    tmp_path: Path, server: Any, script: str, *args: str, code: int = 0, ready: bool = False
) -> subprocess.CompletedProcess[str]:
    """``script`` run on the campaign of 30 members in ``tmp_path`` (written unless ``ready``)."""
    campaign = tmp_path / "campaign.toml" if ready else setup_campaign(tmp_path, 30)
    proc = subprocess.run(
        [sys.executable, "-c", COUNTED + script, str(campaign), *args],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env_for(tmp_path, server),
        timeout=300,
    )
    assert proc.returncode == code, proc.stderr
    return proc


def _journal(tmp_path: Path) -> list[tuple[Any, ...]]:
    with sqlite3.connect(tmp_path / "ledger.sqlite3") as db:
        return db.execute(
            "SELECT member_id, address, state, attempts FROM deliveries "
            "WHERE campaign_id != 'another' ORDER BY member_id"
        ).fetchall()


def _mails(server: Any, campaign_id: str) -> dict[str, bytes]:
    """Each member's mail as received, its Date line dropped and its campaign id made neutral
    (the admin copy says when the run started and ended)."""
    return {
        r.recipients[0]: b"\r\n".join(
            line
            for line in r.raw.replace(campaign_id.encode(), b"CID").split(b"\r\n")
            if not line.startswith(b"Date: ")
        )
        for r in server.received
        if r.recipients[0] != ADMIN
    }


def test_mails_composed_while_the_claim_is_written_are_the_plain_runs(
    tmp_path: Path, smtp_server: Server
):
    runs = {}
    for way, min_mails in (("ahead", "1"), ("plain", str(10**9))):
        server = smtp_server()
        (tmp_path / way).mkdir()
        proc = _run(tmp_path / way, server, RUN_CLI, min_mails, "--send")
        summary = json.loads(proc.stdout)
        runs[way] = (summary.pop("campaign_id"), summary, json.loads(proc.stderr), server)
    (cid, summary, helpers, server), (cid_p, summary_p, helpers_p, server_p) = runs.values()
    # one helper, started before the claim (no campaign yet) and used; none for the plain run
    assert helpers == {"made": [[30, 0]], "no_child": True}
    assert helpers_p == {"made": [], "no_child": True}
    assert summary == summary_p and summary["sent"] == 30
    assert _journal(tmp_path / "ahead") == _journal(tmp_path / "plain")
    assert [state for _, _, state, _ in _journal(tmp_path / "ahead")] == ["sent"] * 30
    assert _mails(server, cid) == _mails(server_p, cid_p) and len(_mails(server, cid)) == 30


def test_a_member_taken_since_the_plan_drops_the_mails_composed_ahead(
    tmp_path: Path, smtp_server: Server
):
    server = smtp_server()
    out = json.loads(_run(tmp_path, server, CONDUCT, "1", "taken").stdout)
    # the helper composing the plan's 30 before the claim was stopped; another composed the 29
    assert out == {"made": [[30, 1], [29, 2]], "sent": 29, "no_child": True}
    assert sorted(member_mails(server)) == sorted(
        f"user{i}@example.co.jp" for i in range(30) if i != 3
    )
    assert [m for m, *_ in _journal(tmp_path)] == [1000 + i for i in range(30) if i != 3]


def test_a_refused_claim_leaves_no_helper_behind(tmp_path: Path, smtp_server: Server):
    server = smtp_server()
    out = json.loads(_run(tmp_path, server, CONDUCT, "1", "running").stdout)
    assert out == {"made": [[30, 1]], "error": "CampaignStateError", "no_child": True}
    assert server.received == []


@pytest.mark.parametrize("encoding", ["utf-8", "iso-2022-jp"])
def test_a_dry_run_on_two_cores_says_what_the_plain_one_says(
    tmp_path: Path, smtp_server: Server, encoding: str
):
    server = smtp_server()
    out = {}
    for way, min_mails in (("two", "1"), ("one", str(10**9))):
        (tmp_path / way).mkdir()
        campaign = setup_campaign(tmp_path / way, 30)
        with (tmp_path / way / "members.csv").open("a", encoding="utf-8") as members:
            members.write("1100,①商事,鈴木,一郎,x@example.co.jp,東京都,受け取る\n")
            members.write("1101,②商事,鈴木,二郎,y@example.co.jp,東京都,受け取る\n")
        with campaign.open("a", encoding="utf-8") as spec:
            spec.write(f'encoding = "{encoding}"\n')
        code = 0 if encoding == "utf-8" else 2
        proc = _run(tmp_path / way, server, RUN_CLI, min_mails, code=code, ready=True)
        lines = proc.stderr.replace(str(tmp_path / way), "DIR").splitlines()
        out[way] = (
            proc.stdout.replace(str(tmp_path / way), "DIR"),
            lines[:-1],
            json.loads(lines[-1]),
        )
    (stdout, errors, helpers), (stdout_p, errors_p, helpers_p) = out["two"], out["one"]
    assert helpers == {"made": [[32, None]], "no_child": True} and helpers_p["made"] == []
    assert errors == errors_p
    if encoding == "utf-8":
        summary, summary_p = json.loads(stdout), json.loads(stdout_p)
        assert summary.pop("campaign_id") != summary_p.pop("campaign_id")
        assert summary == summary_p and summary["sendable"] == 32
    else:  # the first member whose mail cannot be composed, as the plain run says
        assert stdout == stdout_p == "" and "1100" in errors[-1] and "①" in errors[-1]
    assert server.received == []
