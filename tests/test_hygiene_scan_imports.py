"""``bcartnb bounces scan`` never needs pandas: not to start, not while it matches and records;
nor numpy, pyarrow, jinja2, nor tqdm when no progress bar is shown.

A real shop sends a campaign into a Maildir outbox (the claims, the journal, the Message-IDs),
then a whole ``bcartnb bounces scan`` process reads DSNs quoting those mails: once with every
import of pandas made to fail after start-up (what the scan asks for while it runs), once
with ``-X importtime`` (what it loads to start).
"""

from __future__ import annotations

import json
import mailbox
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bcartnb.campaign import CampaignSpec, plan_campaign, send
from bcartnb.settings import load_settings
from bcartnb.transports import MaildirTransport, read_maildir

DATA = Path(__file__).parent / "data" / "bounces"
SHOP = "shop.example.co.jp"
N = 3

# Every pandas import fails once the command's modules are loaded: a scan that builds a
# DataFrame while it runs (the send history, a journal) stops with an ImportError.
NO_PANDAS_AT_RUN_TIME = """
import importlib.abc, runpy, sys
import bcartnb.cli, bcartnb.hygiene.scan
for name in [m for m in sys.modules if m == "pandas" or m.startswith("pandas.")]:
    del sys.modules[name]
class NoPandas(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name == "pandas" or name.startswith("pandas."):
            raise ImportError("the scan asked for " + name)
sys.meta_path.insert(0, NoPandas())
sys.argv = ["bcartnb", *sys.argv[1:]]
runpy.run_module("bcartnb", run_name="__main__")
"""


def bounced_shop(folder: Path, n: int) -> tuple[Path, dict[str, str]]:
    """A shop in ``folder`` that sent ``n`` members a campaign into a Maildir outbox, and a
    Maildir ``bounces`` of one DSN quoting each mail; the environment a command runs with."""
    (folder / "bcartnb.toml").write_text(
        f'plan = "自社SMTP"\nfrom = "見本商事 <shop@{SHOP}>"\nadmin = "admin@{SHOP}"\n'
        f'db = "ledger.sqlite3"\nunsubscribe_mailto = "mailto:unsubscribe@{SHOP}"\n',
        encoding="utf-8",
    )
    members = folder / "members.csv"
    members.write_text(
        "会員ID,会社名,メールアドレス,メール案内\n"
        + "".join(f"{1001 + i},商事{i},member{i}@example.jp,受け取る\n" for i in range(n)),
        encoding="utf-8",
    )
    settings = load_settings(folder / "bcartnb.toml", env={})
    spec = CampaignSpec.from_mapping(
        {"members": str(members), "subject": "お知らせ", "body": "本文"}
    )
    done = send(
        plan_campaign(spec, settings),
        transport=MaildirTransport(folder / "outbox", fsync=False),
        progress=False,
    )
    assert done.sent == n
    sample = (DATA / "postfix-user-unknown.eml").read_text(encoding="utf-8")
    box = mailbox.Maildir(folder / "bounces", create=True)
    for mail in read_maildir(folder / "outbox"):
        to, mid = str(mail.message["To"]), str(mail.message["Message-ID"])
        if to.startswith("member"):
            dsn = sample.replace("taro@example.jp", to)
            dsn = dsn.replace("<bcartnb.20261101-100000-abc123.1001@shop.example.co.jp>", mid)
            box.add(dsn.encode())
    box.close()
    env = {k: v for k, v in os.environ.items() if not k.startswith("BCARTNB_")}
    env["BCARTNB_CONFIG"] = str(folder / "bcartnb.toml")
    return folder, env


@pytest.fixture
def shop(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A shop that sent N members a campaign, and a Maildir of one DSN for each mail."""
    return bounced_shop(tmp_path, N)


def scan(shop: Path, env: dict[str, str], *python: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, *python, "bounces", "scan", str(shop / "bounces"), "--json"]
    return subprocess.run(cmd, env=env, cwd=shop, capture_output=True, text=True, timeout=120)


def test_the_scan_asks_for_no_pandas_while_it_runs(shop: tuple[Path, dict[str, str]]) -> None:
    path, env = shop
    done = scan(path, env, "-c", NO_PANDAS_AT_RUN_TIME)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout)
    assert (result["scanned"], result["hard"], result["unmatched"]) == (N, N, 0)


def test_the_scan_loads_no_pandas_to_start(shop: tuple[Path, dict[str, str]]) -> None:
    path, env = shop
    done = scan(path, env, "-X", "importtime", "-m", "bcartnb")
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout)["hard"] == N
    loaded = {line.rpartition("|")[2].strip() for line in done.stderr.splitlines()}
    assert "bcartnb.hygiene.bounces" in loaded  # what -X importtime wrote is read right
    heavy = {"pandas", "numpy", "pyarrow", "jinja2", "tqdm", "multiprocessing"}
    assert not {m for m in loaded if m.split(".")[0] in heavy}  # no bar asked: no tqdm
