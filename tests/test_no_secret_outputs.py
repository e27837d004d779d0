"""No secret in any output of the command line, with every secret set and really used.

One shop runs through the commands a marketer uses (dry run, send, history, report, quota,
suppression export, member check) and through the error lines of a refused SMTP login, an
unreachable IMAP server and an unreachable B-Cart API, with the SMTP password, the B-Cart
token, the unsubscribe secret and the IMAP password all in the environment. Everything that
came out (stdout, stderr, the mails, every file the commands wrote under the shop's folder:
ledger, reports, exports) goes through the one scan, tests/secrets_scan.py.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

from bcart_server import FakeBcart, serve
from secrets_scan import SECRET_ENV, SECRETS, assert_no_secret
from smtp_servers import TestServer
from test_bcart_api import CUSTOMS
from test_bcart_api import shop as bcart_shop
from test_cli_run import ADMIN, bcartnb, env_for, setup_campaign

Server = Callable[..., TestServer]
WRONG = "Wr0ng-Pw/3Zx+8Lq~Ty&7"
WRONG_TOKEN = "Wr0ngTok3nQz7Xc2Vb9Nm4Lk6"


def shop(tmp_path: Path, server: TestServer, api: str) -> tuple[Path, dict[str, str]]:
    campaign = setup_campaign(tmp_path, 6)
    with (tmp_path / "bcartnb.toml").open("a", encoding="utf-8") as toml:
        toml.write(
            'unsubscribe_url = "https://shop.example.co.jp/mail/stop/{{ unsubscribe_token }}"\n'
            f'[bcart]\napi_url = "{api}"\n'
        )
    text = campaign.read_text(encoding="utf-8")
    campaign.write_text(
        text.replace("本文です。", "本文です。停止: {{ unsubscribe_token }}"), encoding="utf-8"
    )
    env = {**env_for(tmp_path, server), **SECRET_ENV, "BCARTNB_SMTP_USER": "shop"}
    return campaign, env


def test_no_secret_in_any_output_of_the_command_line(tmp_path: Path, smtp_server: Server):
    server = smtp_server(users={"shop": SECRETS["SMTP password"]}, auth_required=True)
    fake = FakeBcart(customers=bcart_shop(5), customs=list(CUSTOMS), token=SECRETS["B-Cart token"])
    with serve(fake) as api:
        campaign, env = shop(tmp_path, server, api)
        outputs = run_everything(tmp_path, campaign, env, server)
    scanned = assert_no_secret(
        *outputs,
        *(r.raw for r in server.received),
        tmp_path,
        secrets={**SECRETS, "wrong SMTP password": WRONG, "wrong token": WRONG_TOKEN},
    )
    assert (tmp_path / "report.html").is_file() and (tmp_path / "bcart.csv").is_file()
    assert (tmp_path / "bcart_members.parquet").is_file()
    assert scanned > len(outputs) + len(server.received) + 4


def run_everything(
    tmp_path: Path, campaign: Path, env: dict[str, str], server: TestServer
) -> list[str]:
    """Each command's stdout and stderr, the secrets used for real on the way."""
    outs: list[subprocess.CompletedProcess[str]] = []

    def cli(*args: str, code: int = 0, **changes: str) -> subprocess.CompletedProcess[str]:
        done = bcartnb(*args, env={**env, **changes}, cwd=tmp_path)
        assert done.returncode == code, (args, done.stdout, done.stderr)
        outs.append(done)
        return done

    cli("run", str(campaign), "--json")
    sent = json.loads(cli("run", str(campaign), "--send", "--json").stdout)
    assert sent["sent"] == 6
    # the secrets were really used: AUTH with the password, a signed token in every mail
    assert {r.auth_user for r in server.received} == {"shop"}
    assert all(b"/mail/stop/" in r.raw for r in server.received if r.recipients != (ADMIN,))
    cid = sent["campaign_id"]
    cli("campaigns")
    cli("campaigns", cid, "--json")
    cli("quota", "--json")
    cli("report", cid, "--out", str(tmp_path / "report.html"))
    cli("suppress", "user1@example.co.jp")
    cli("suppressions", "--json")
    cli("suppressions", "--export-bcart", str(tmp_path / "bcart.csv"))
    cli("members", str(tmp_path / "members.csv"))
    # error lines: a refused login (with a wrong password, itself a secret), an IMAP server
    # that does not answer, a B-Cart API that refuses a wrong token
    (tmp_path / "again.toml").write_text(
        campaign.read_text(encoding="utf-8").replace("様へのご案内", "様 再送"), encoding="utf-8"
    )
    login = bcartnb(
        "run",
        str(tmp_path / "again.toml"),
        "--send",
        env={**env, "BCARTNB_SMTP_PASSWORD": WRONG},
        cwd=tmp_path,
    )
    assert login.returncode != 0 and "Traceback" not in login.stderr
    outs.append(login)
    imap = bcartnb("bounces", "scan", "imap://shop@127.0.0.1:9/INBOX", env=env, cwd=tmp_path)
    token = bcartnb("bcart", "pull", env={**env, "BCARTNB_BCART_TOKEN": WRONG_TOKEN}, cwd=tmp_path)
    for failed in (imap, token):
        assert failed.returncode != 0 and "Traceback" not in failed.stderr, failed.stderr
        outs.append(failed)
    cli("bcart", "pull")  # the right token: a snapshot of the shop's members
    return [o.stdout for o in outs] + [o.stderr for o in outs]
