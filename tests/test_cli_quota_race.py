"""Two different campaigns race for the month's quota, as two real ``bcartnb run --send``.

DESIGN.md: "Two campaigns at once can never exceed the cap together"; a campaign larger than
what is left is refused before anything is sent (exit 3). Two shops' folders share one ledger
file; the server holds every mail until both processes are past their reservation (the one
that lost has exited, or both have mail in flight), so the two runs really overlap.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from smtp_servers import Faults, TestServer
from test_cli_run import ADMIN, bcartnb, env_for, setup_campaign

Server = Callable[..., TestServer]
CAP = 100  # ライトプラン: 50 members, twice that in mails a month


def shop(folder: Path, n: int, prefix: str, db: Path) -> Path:
    """A campaign of ``n`` sendable members whose addresses start with ``prefix``."""
    folder.mkdir()
    campaign = setup_campaign(folder, n, plan="light")
    members = folder / "members.csv"
    members.write_text(
        members.read_text(encoding="utf-8").replace("user", prefix), encoding="utf-8"
    )
    config = folder / "bcartnb.toml"
    config.write_text(
        config.read_text(encoding="utf-8").replace('db = "ledger.sqlite3"', f'db = "{db}"'),
        encoding="utf-8",
    )
    campaign.write_text(
        campaign.read_text(encoding="utf-8").replace("ご案内", f"{prefix} のご案内"),
        encoding="utf-8",
    )
    return campaign


def mailed(server: TestServer, prefix: str) -> int:
    return sum(r.recipients[0].startswith(prefix) for r in server.received)


@pytest.mark.parametrize(("a", "b"), [(60, 60), (45, 55), (30, 50)])
def test_two_campaigns_at_once_never_pass_the_cap_together(
    tmp_path: Path, smtp_server: Server, a: int, b: int
) -> None:
    server = smtp_server(faults=Faults(hold_after=0))
    db = tmp_path / "ledger.sqlite3"
    runs = {prefix: shop(tmp_path / prefix, n, prefix, db) for prefix, n in (("aa", a), ("bb", b))}
    procs = {
        prefix: subprocess.Popen(
            [sys.executable, "-m", "bcartnb", "run", str(campaign), "--send", "--json"],
            env=env_for(campaign.parent, server),
            cwd=campaign.parent,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for prefix, campaign in runs.items()
    }
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # both past their reservation, one way or the other
            ended = any(p.poll() is not None for p in procs.values())
            if ended or all(mailed(server, prefix) for prefix in procs):
                break
            time.sleep(0.05)
        else:
            raise AssertionError("neither run got to its mail nor ended")
    finally:
        server.set_faults(Faults())  # answer the held mails: the runs finish
        outs = {prefix: p.communicate(timeout=120) for prefix, p in procs.items()}
    codes = {prefix: p.returncode for prefix, p in procs.items()}
    sizes = {"aa": a, "bb": b}
    if a + b <= CAP:
        assert codes == {"aa": 0, "bb": 0}, outs
        winners = ["aa", "bb"]
    else:
        assert sorted(codes.values()) == [0, 3], outs
        [loser] = [prefix for prefix, code in codes.items() if code == 3]
        err = outs[loser][1]
        assert err.count("\n") == 1 and "Traceback" not in err and "上限" in err, err
        assert mailed(server, loser) == 0  # refused before anything was sent
        winners = [prefix for prefix in codes if prefix != loser]
    for prefix in procs:
        assert mailed(server, prefix) == (sizes[prefix] if prefix in winners else 0)
    quota = bcartnb("quota", "--json", env=env_for(tmp_path / "aa", server), cwd=tmp_path / "aa")
    used = json.loads(quota.stdout)["used"]
    assert used == sum(sizes[p] for p in winners) <= CAP
    assert sum(r.recipients == (ADMIN,) for r in server.received) == len(winners)
