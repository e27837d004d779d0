"""The shop's ledger before it exists (issue 22): a dry run, a look and the wizard write
nothing and say the file is not made yet; while a shop waits to adopt the per-user ledger
of earlier versions, ``bcartnb members`` counts the suppressions adopting will bring, and
leaves that ledger as it was. Real processes with their own HOME, a real SMTP server, real
SQLite files; the wizard in process, driven like a user."""

from __future__ import annotations

import hashlib
import html
import json
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from smtp_servers import TestServer
from test_shop import FROM, SIGNATURE, bcartnb, campaign, environ, init, ledgers_under

from bcartnb.ledger import Ledger
from bcartnb.settings import load_settings
from bcartnb.widgets import Wizard

Server = Callable[..., TestServer]
NOT_YET = "まだありません"


def hand_written_shop(folder: Path) -> Path:
    """A shop folder as a marketer writes it without ``bcartnb init``: no ledger, no key
    naming one (so the default file in the folder is the shop's)."""
    folder.mkdir(parents=True)
    (folder / "bcartnb.toml").write_text(
        f'plan = "プラン10"\nfrom = "{FROM}"\nsignature = {json.dumps(SIGNATURE)}\n',
        encoding="utf-8",
    )
    return folder / "ledger.sqlite3"


def files_under(folder: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def legacy_ledger(home: Path, *suppressed: str) -> Path:
    """The per-user ledger of earlier versions, with ``suppressed`` on its list."""
    path = home / ".local" / "share" / "bcartnb" / "ledger.sqlite3"
    path.parent.mkdir(parents=True)
    with Ledger.open(path) as led:
        for address in suppressed:
            led.suppress(address, "unsubscribed", source="test")
    return path


def header_text(wizard: Wizard) -> str:
    """The ledger line as the marketer reads it: tags dropped, then entities decoded."""
    return html.unescape(re.sub(r"<[^>]*>", "", str(wizard.header.ledger.value)))


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_dry_run_in_a_hand_written_shop_writes_nothing_and_says_so(
    tmp_path: Path, smtp_server: Server
) -> None:
    server = smtp_server()
    env = environ(tmp_path / "home", **server.env())
    shop = tmp_path / "shop"
    ledger = hand_written_shop(shop)
    work = shop / "work"
    campaign(work, 3)
    before = files_under(shop)

    dry = bcartnb("run", "campaign.toml", cwd=work, env=env)
    assert dry.returncode == 0 and dry.stderr == "", dry.stderr
    assert f"注意: 配信記録ファイル {ledger} は{NOT_YET}" in dry.stdout
    # twice at once, with --json: neither makes the file, both say why the counts are zeros
    runs = [
        subprocess.Popen(
            [sys.executable, "-m", "bcartnb", "run", "campaign.toml", "--json"],
            cwd=work,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    for proc in runs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        data = json.loads(out)
        assert (data["sendable"], data["quota"]["used_after"]) == (3, 3)
        assert any(str(ledger) in w and NOT_YET in w for w in data["warnings"])
    looked = bcartnb("members", "members.csv", "--json", cwd=work, env=env)
    assert looked.returncode == 0 and looked.stderr == "", looked.stderr
    assert json.loads(looked.stdout)["reasons"]["suppressed"] == 0
    assert files_under(shop) == before and ledgers_under(tmp_path) == []
    assert server.received == []

    sent = bcartnb("run", "campaign.toml", "--send", "--json", cwd=work, env=env)
    assert sent.returncode == 0, sent.stderr
    assert sent.stderr == f"bcartnb: 配信記録ファイルを作りました: {ledger}\n"  # made by the send
    assert json.loads(sent.stdout)["sent"] == 3 and ledger.is_file()
    again = bcartnb("run", "campaign.toml", cwd=work, env=env)
    assert again.returncode == 0 and again.stderr == "", again.stderr
    assert NOT_YET not in again.stdout and "送信済み" in again.stdout  # the ledger speaks now


def test_while_a_shop_waits_to_adopt_members_counts_the_old_ledgers_suppressions(
    tmp_path: Path,
) -> None:
    home = tmp_path / "home"
    env = environ(home)
    legacy = legacy_ledger(home, "User1@Example.co.jp", "gone@example.co.jp")
    kept = digest(legacy)
    shop = tmp_path / "shop"
    made = init(shop, env)
    assert "--adopt-ledger" in made.stderr and not (shop / "ledger.sqlite3").exists()
    campaign(shop, 4)

    looked = bcartnb("members", "members.csv", "--json", cwd=shop, env=env)
    assert looked.returncode == 0, looked.stderr
    data = json.loads(looked.stdout)
    assert (data["sendable"], data["reasons"]["suppressed"]) == (3, 1)  # user1, any case
    # one line in Japanese, as every 注意 note is: the file, the command, what was counted
    assert looked.stderr.splitlines() == [
        f"注意: 以前の配信記録 {legacy} はまだお店に取り込まれていません"
        "（bcartnb init --adopt-ledger）。配信停止・不達は、取り込む予定のその記録から数えました。"
    ]
    text = bcartnb("members", "members.csv", cwd=shop, env=env)
    assert any(
        line.strip().startswith("配信停止・不達") and line.endswith(" 1 件")
        for line in text.stdout.splitlines()
    ), text.stdout
    assert digest(legacy) == kept and not (shop / "ledger.sqlite3").exists()
    refused = bcartnb("run", "campaign.toml", cwd=shop, env=env)  # as before: adopt first
    assert refused.returncode == 2 and "--adopt-ledger" in refused.stderr

    adopted = bcartnb("init", "--adopt-ledger", cwd=shop, env=env)
    assert adopted.returncode == 0, adopted.stderr
    after = bcartnb("members", "members.csv", "--json", cwd=shop, env=env)
    assert after.returncode == 0 and after.stderr == "", after.stderr  # adopted: no note
    assert json.loads(after.stdout)["reasons"]["suppressed"] == 1
    assert digest(legacy) == kept


def test_a_waiting_ledger_that_is_not_one_is_named_not_counted_as_empty(tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = environ(home)
    legacy = home / ".local" / "share" / "bcartnb" / "ledger.sqlite3"
    legacy.parent.mkdir(parents=True)
    legacy.write_bytes(b"SQLite format 3\x00" + b"\x00" * 84 + b"<script>" * 200)
    shop = tmp_path / "shop"
    init(shop, env)
    campaign(shop, 2)
    looked = bcartnb("members", "members.csv", cwd=shop, env=env)
    assert looked.returncode == 2 and looked.stdout == ""
    assert looked.stderr.startswith("bcartnb: error: ") and looked.stderr.count("\n") == 1
    assert str(legacy) in looked.stderr and "Traceback" not in looked.stderr


def test_the_wizard_shows_its_ledger_and_makes_it_only_by_sending(
    tmp_path: Path, smtp_server: Server
) -> None:
    server = smtp_server()
    shop = tmp_path / "<b>shop</b>"  # a folder's name is shown, never markup
    ledger = hand_written_shop(shop)
    members = campaign(shop, 3).with_name("members.csv")
    env = {"XDG_DATA_HOME": str(tmp_path / "data"), **server.env()}
    settings = load_settings(shop / "bcartnb.toml", env=env)
    wizard = Wizard(members, settings, member_folders=[shop], upload_dir=shop / "uploads")

    waiting = f"配信記録: {ledger}（まだありません。最初の送信のときに作ります）"
    assert header_text(wizard) == waiting
    assert "<b>shop" not in str(wizard.header.ledger.value)
    wizard.filter_step.apply.click()  # the search: its quota warning reads the ledger
    wizard.send_all.click()
    wizard.compose.opt_in.value = False
    wizard.compose.subject.value = "{{ 会社名 }} 様へのご案内"
    wizard.compose.body.value = "{{ 会社名 }} 様\n本文です。"
    wizard.compose.to_confirm.click()
    assert wizard.stage == "confirm", wizard.status.value
    # the search with its quota warning, the counts, the confirmation's dry run: all looks
    assert header_text(wizard) == waiting and not ledger.exists()
    wizard.confirm.send.click()
    assert wizard.stage == "done", wizard.status.value
    server.wait_for(3)
    assert ledger.is_file() and header_text(wizard) == f"配信記録: {ledger}"  # said again


def test_the_wizard_says_the_old_ledger_is_still_to_adopt(tmp_path: Path) -> None:
    data = tmp_path / "data"
    legacy = legacy_ledger(tmp_path / "home", "a@example.co.jp")
    data.mkdir()
    (data / "bcartnb").symlink_to(legacy.parent)
    shop = tmp_path / "shop"
    ledger = hand_written_shop(shop)
    settings = load_settings(shop / "bcartnb.toml", env={"XDG_DATA_HOME": str(data)})
    wizard = Wizard(None, settings, member_folders=[shop], upload_dir=shop / "uploads")
    text = header_text(wizard)
    assert text.startswith(f"配信記録: {ledger}（まだありません。以前の配信記録 ")
    assert "bcartnb init --adopt-ledger" in text
    assert not ledger.exists()
