"""The shop folder (issue 20): ``bcartnb init``, finding the shop from any subfolder, one
ledger per shop, no ledger made silently elsewhere, adopting the per-user ledger of earlier
versions. Real processes (``bcartnb`` in subprocesses with their own working directories and
HOME), a real SMTP server, real SQLite files and real git."""

from __future__ import annotations

import json
import os
import re
import sqlite3
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from dotenv import dotenv_values
from hypothesis import given, settings
from hypothesis import strategies as st
from smtp_servers import TestServer

from bcartnb.cli import main
from bcartnb.exceptions import SettingsError
from bcartnb.ledger import Ledger
from bcartnb.settings import load_settings, settings_from_text
from bcartnb.shop import GITIGNORE, SECRET_VARIABLES, ShopAnswers, check_answer, render_settings

Server = Callable[..., TestServer]
FROM = "見本商事 <shop@example.co.jp>"
ADMIN = "admin@example.co.jp"
SIGNATURE = "見本商事株式会社\n〒100-0001 東京都千代田区千代田1-1\nTEL 03-0000-0000"
NO_SHOP = "bcartnb: error: 設定のエラー: お店のフォルダーが見つかりません"


def environ(home: Path, **extra: str) -> dict[str, str]:
    """A shell of its own: no BCARTNB_* variable, HOME in the test's folder, no XDG_DATA_HOME
    (so the per-user ledger of earlier versions would be ~/.local/share/bcartnb there)."""
    env = {
        k: v for k, v in os.environ.items() if not k.startswith("BCARTNB_") and k != "XDG_DATA_HOME"
    }
    home.mkdir(parents=True, exist_ok=True)
    return env | {"HOME": str(home)} | extra


def bcartnb(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bcartnb", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=120,
    )


def init(folder: Path, env: dict[str, str], *extra: str) -> subprocess.CompletedProcess[str]:
    done = bcartnb(
        "init",
        str(folder),
        "--plan",
        "plan10",
        "--from",
        FROM,
        "--admin",
        ADMIN,
        "--signature",
        SIGNATURE,
        "--yes",
        *extra,
        cwd=folder.parent,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    return done


def campaign(folder: Path, n: int, subject: str = "{{ 会社名 }} 様へのご案内") -> Path:
    """A member file and a campaign file in ``folder`` (paths relative to the campaign)."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = "".join(
        f"{1000 + i},テスト商事{i},山田,太郎,user{i}@example.co.jp,東京都,受け取る\n"
        for i in range(n)
    )
    (folder / "members.csv").write_text(
        "会員ID,会社名,担当者(姓),担当者(名),メールアドレス,都道府県,メール案内\n" + rows,
        encoding="utf-8",
    )
    path = folder / "campaign.toml"
    path.write_text(
        f'members = "members.csv"\nsubject = "{subject}"\n'
        'body = "{{ 会社名 }} {{ 担当者名 }} 様\\n本文です。\\n"\n',
        encoding="utf-8",
    )
    return path


def quota(cwd: Path, env: dict[str, str]) -> dict[str, object]:
    done = bcartnb("quota", "--json", cwd=cwd, env=env)
    assert done.returncode == 0, done.stderr
    out: dict[str, object] = json.loads(done.stdout)
    return out


def ledgers_under(*folders: Path) -> list[Path]:
    return sorted(p for f in folders for p in f.rglob("*.sqlite3*"))


# --- one shop, from any folder in it ------------------------------------------------------


def test_init_then_quota_dry_run_and_send_from_the_shop_and_a_subfolder(
    tmp_path: Path, smtp_server: Server
) -> None:
    server = smtp_server()
    env = environ(tmp_path / "home", **server.env())
    shop = tmp_path / "shop"
    made = init(shop, env)
    ledger = shop / "ledger.sqlite3"
    assert f"配信記録ファイルを作りました: {ledger}" in made.stdout.splitlines()
    assert ledger.is_file()  # made by init, where it says so

    first = bcartnb("quota", cwd=shop, env=env)
    assert first.returncode == 0, first.stderr
    assert f"配信記録ファイル: {ledger}" in first.stdout.splitlines()
    assert first.stderr == ""

    deep = shop / "campaigns" / "december"
    path = campaign(deep, 5)
    dry = bcartnb("run", "campaign.toml", "--json", cwd=deep, env=env)
    assert dry.returncode == 0, dry.stderr
    assert json.loads(dry.stdout)["quota"]["used_after"] == 5 and server.received == []
    sent = bcartnb("run", str(path), "--send", "--json", cwd=shop / "campaigns", env=env)
    assert sent.returncode == 0, sent.stderr
    assert json.loads(sent.stdout)["sent"] == 5
    assert len([r for r in server.received if r.recipients != (ADMIN,)]) == 5

    out = quota(deep, env)
    assert (out["plan"], out["used"], out["ledger"]) == ("プラン10", 5, str(ledger))
    rows = json.loads(bcartnb("campaigns", "--json", cwd=shop, env=env).stdout)
    assert [(r["sent"], r["ledger"]) for r in rows] == [(5, str(ledger))]
    assert ledgers_under(tmp_path / "home") == []  # nothing per user
    assert not (shop / "campaigns" / "ledger.sqlite3").exists()


def test_two_shells_in_different_folders_of_one_shop_share_one_ledger(
    tmp_path: Path, smtp_server: Server
) -> None:
    server = smtp_server()
    shop = tmp_path / "shop"
    init(shop, environ(tmp_path / "home-a"))
    # two marketers: two HOMEs, two working directories, one shop
    alice = environ(tmp_path / "home-a", **server.env())
    bob = environ(tmp_path / "home-b", **server.env())
    a_dir, b_dir = shop / "alice", shop / "team" / "bob"
    first = campaign(a_dir, 4)
    done = bcartnb("run", "campaign.toml", "--send", "--json", cwd=a_dir, env=alice)
    assert done.returncode == 0, done.stderr

    b_dir.mkdir(parents=True)
    assert quota(b_dir, bob)["used"] == 4  # bob sees alice's use of the monthly cap
    rows = json.loads(bcartnb("campaigns", "--json", cwd=b_dir, env=bob).stdout)
    assert [r["campaign_id"] for r in rows] == [json.loads(done.stdout)["campaign_id"]]
    again = bcartnb("run", str(first), "--send", cwd=b_dir, env=bob)
    assert again.returncode == 0 and "--repeat" in again.stdout  # never twice
    assert "すべて同じメールを送信済み" in again.stdout
    second = campaign(b_dir, 3, subject="{{ 会社名 }} 様 別のご案内")
    done = bcartnb("run", str(second), "--send", cwd=b_dir, env=bob)
    assert done.returncode == 0, done.stderr
    assert quota(a_dir, alice)["used"] == 7
    assert ledgers_under(shop) == [shop / "ledger.sqlite3"]
    assert ledgers_under(tmp_path / "home-a", tmp_path / "home-b") == []


def test_bcartnb_config_and_bcartnb_db_override_the_folder(tmp_path: Path) -> None:
    env = environ(tmp_path / "home")
    one, two = tmp_path / "one", tmp_path / "two"
    init(one, env)
    init(two, env, "--plan", "plan30")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()

    by_config = env | {"BCARTNB_CONFIG": str(two / "bcartnb.toml")}
    out = quota(one, by_config)  # in shop one, but BCARTNB_CONFIG names shop two
    assert (out["plan"], out["ledger"]) == ("プラン30", str(two / "ledger.sqlite3"))
    assert quota(elsewhere, by_config)["ledger"] == str(two / "ledger.sqlite3")

    other = tmp_path / "other.sqlite3"
    out = quota(one / "templates", env | {"BCARTNB_DB": str(other)})
    assert (out["plan"], out["ledger"]) == ("プラン10", str(other))
    assert other.is_file()

    text = (one / "bcartnb.toml").read_text(encoding="utf-8")
    (one / "bcartnb.toml").write_text('ledger = "records/shop.sqlite3"\n' + text, encoding="utf-8")
    assert quota(one / "uploads", env)["ledger"] == str(one / "records" / "shop.sqlite3")


def test_a_ledger_made_where_nobody_named_it_is_announced_once(tmp_path: Path) -> None:
    env = environ(tmp_path / "home")
    shop = tmp_path / "shop"
    init(shop, env)
    ledger = shop / "ledger.sqlite3"
    ledger.unlink()  # a shop whose ledger was never made (or a hand-written bcartnb.toml)
    looked = bcartnb("members", str(campaign(shop / "work", 2).with_name("members.csv")),
                     cwd=shop / "work", env=env)  # fmt: skip
    assert looked.returncode == 0 and looked.stderr == "" and not ledger.exists()
    first = bcartnb("quota", cwd=shop / "work", env=env)
    assert first.returncode == 0, first.stderr
    assert first.stderr == f"bcartnb: 配信記録ファイルを作りました: {ledger}\n"
    again = bcartnb("campaigns", cwd=shop / "work", env=env)
    assert again.returncode == 0 and again.stderr == ""  # once, when created
    assert f"配信記録ファイル: {ledger}" in again.stdout


def test_no_shop_is_a_japanese_error_and_no_ledger_is_created_anywhere(tmp_path: Path) -> None:
    env = environ(tmp_path / "home")
    work = tmp_path / "work"
    path = campaign(work, 3)
    for args in (
        ["quota"],
        ["run", str(path)],
        ["run", str(path), "--send"],
        ["campaigns"],
        ["suppressions"],
        ["suppress", "user1@example.co.jp"],
        ["resume", "20261201-090000-a1b2c3"],
    ):
        done = bcartnb(*args, cwd=work, env=env)
        assert done.returncode == 2, (args, done.stderr)
        assert done.stderr.startswith(NO_SHOP) and done.stderr.count("\n") == 1, done.stderr
        assert "bcartnb init" in done.stderr and str(work) in done.stderr  # where it looked
        assert "Traceback" not in done.stderr
    looked = bcartnb("members", "members.csv", "--json", cwd=work, env=env)
    assert looked.returncode == 0, looked.stderr  # a look needs no ledger
    assert json.loads(looked.stdout)["sendable"] == 3
    assert ledgers_under(tmp_path) == []


def test_in_process_settings_without_a_shop_have_no_ledger(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    settings = load_settings()
    assert settings.db is None and settings.source is None
    with pytest.raises(SettingsError, match="no shop folder") as err:
        Ledger.open()
    assert "bcartnb init" in (err.value.ja or "")
    assert ledgers_under(tmp_path) == []


# --- init: what it writes, and what it refuses ---------------------------------------------


def test_init_refuses_to_overwrite_a_shop(tmp_path: Path) -> None:
    env = environ(tmp_path / "home")
    shop = tmp_path / "shop"
    init(shop, env)
    before = {p: p.read_bytes() for p in shop.iterdir() if p.is_file()}
    for extra in ([], ["--plan", "own-smtp"], ["--adopt-ledger"]):
        done = bcartnb("init", "--yes", *extra, cwd=shop, env=env)
        assert done.returncode == 2, done.stderr
        assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
        assert done.stderr.startswith("bcartnb: error: 設定のエラー: "), done.stderr
    assert "上書きしません" in bcartnb("init", "--yes", cwd=shop, env=env).stderr
    assert {p: p.read_bytes() for p in shop.iterdir() if p.is_file()} == before


@pytest.mark.parametrize(
    ("flag", "value", "needle"),
    [
        ("--from", "shop@example.co.jp\r\nBcc: all@example.co.jp", "改行"),
        ("--from", "shop@example.co.jp\nplan = 'own-smtp'", "改行"),
        ("--from", "shop@example.co.jp\x00", "制御文字"),
        ("--from", "a@example.co.jp, b@example.co.jp", "1つだけ"),
        ("--admin", "admin@example.co.jp\r\n", "改行"),
        ("--signature", "見本商事\x00", "制御文字"),
        ("--signature", "見本商事\rBcc: x@example.co.jp", "制御文字"),
        ("--plan", "plan20", "プラン"),
    ],
)
def test_init_refuses_hostile_values_with_one_line_and_writes_nothing(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    flag: str,
    value: str,
    needle: str,
) -> None:
    monkeypatch.chdir(tmp_path)  # in process: a NUL cannot be passed to a new process
    assert main(["init", "shop", "--yes", flag, value]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    err = captured.err
    assert err.startswith(f"bcartnb: error: 設定のエラー: {flag}: ") and err.count("\n") == 1
    assert needle in err.split(" / ")[0]
    assert not (tmp_path / "shop").exists()


def test_a_signature_cannot_add_a_key_to_the_file(tmp_path: Path) -> None:
    env = environ(tmp_path / "home")
    hostile = 'ありがとう"""\nplan = "own-smtp"\n[smtp]\nhost = "evil.example.com"\n\\'
    shop = tmp_path / "shop"
    done = bcartnb("init", str(shop), "--plan", "light", "--signature", hostile, "--yes",
                   cwd=tmp_path, env=env)  # fmt: skip
    assert done.returncode == 0, done.stderr
    settings = load_settings(shop / "bcartnb.toml", env={})
    assert settings.plan == "ライトプラン" and settings.smtp.host == "127.0.0.1"
    assert settings.signature == hostile


@settings(max_examples=150, deadline=None)
@given(
    plan=st.sampled_from(["light", "プラン10", "own-smtp", "plan20", "", "プラン10\n"]),
    from_=st.one_of(st.none(), st.text(max_size=40), st.emails()),
    signature=st.one_of(st.none(), st.text(max_size=60)),
)
def test_any_answers_are_refused_or_written_so_they_load_back_unchanged(
    plan: str, from_: str | None, signature: str | None
) -> None:
    try:
        answers = ShopAnswers(
            plan=check_answer("plan", plan),
            from_=None if from_ is None else check_answer("from", from_),
            signature=None if signature is None else check_answer("signature", signature),
        )
    except SettingsError as err:
        assert err.ja
        return
    loaded = settings_from_text(render_settings(answers), Path("/shop/bcartnb.toml"))
    assert loaded.plan == answers.plan
    assert loaded.signature == (answers.signature or "")
    if answers.from_ is not None:
        assert loaded.from_addr in answers.from_
    assert loaded.db == Path("/shop/ledger.sqlite3")
    assert loaded.templates == Path("/shop/templates")


def test_the_settings_explain_every_key_and_each_example_is_valid() -> None:
    text = render_settings(ShopAnswers(plan="プラン10", from_=FROM))
    lines = text.splitlines()
    keys = "plan from admin signature ledger templates segments unsubscribe_url host port"
    keys += " security user timeout connections retries backoff api_url soft_threshold verp"
    for key in keys.split():
        at = next(i for i, line in enumerate(lines) if re.match(rf"(# )?{key} = ", line))
        while re.match(r"(# )?[a-z_]+ = ", lines[at - 1]):  # keys explained as a group
            at -= 1
        comment = lines[at - 1]
        assert comment.startswith("# ") and re.search("[ぁ-んァ-ヶ一-龯]", comment), key
    assert "[smtp]" in text
    # every commented example, uncommented, is a valid setting
    examples = re.sub(r"(?m)^# ((?:[a-z_]+ = |\[[a-z]+\]).*)$", r"\1", text)
    loaded = settings_from_text(examples, Path("/shop/bcartnb.toml"))
    assert loaded.db == Path("/shop/ledger.sqlite3") and loaded.delivery.connections == 4
    assert loaded.smtp.user == "shop@example.co.jp" and loaded.hygiene.verp is False


def test_the_env_is_private_with_empty_values_and_git_ignores_the_secrets(
    tmp_path: Path,
) -> None:
    env = environ(tmp_path / "home")
    shop = tmp_path / "shop"
    old = os.umask(0)  # a permissive umask must not make the secrets readable
    try:
        init(shop, env)
    finally:
        os.umask(old)
    dotenv = shop / ".env"
    assert stat.S_IMODE(dotenv.stat().st_mode) == 0o600
    assert dotenv_values(dotenv) == dict.fromkeys(SECRET_VARIABLES, "")
    assert all((shop / name).is_dir() for name in ("templates", "reports", "uploads"))

    subprocess.run(["git", "init", "-q"], cwd=shop, check=True)
    ignored = [
        ".env",
        "ledger.sqlite3",
        "ledger.sqlite3-wal",
        "ledger.sqlite3-shm",
        "ledger.sqlite3.reports/c.json",
        "segments.toml.lock",
        "uploads/members-20261201.csv",
        "reports/campaign.html",
    ]
    check = subprocess.run(
        ["git", "check-ignore", "--no-index", *ignored, "bcartnb.toml", "templates/a.txt"],
        cwd=shop,
        capture_output=True,
        text=True,
    )
    assert check.stdout.splitlines() == ignored
    # the empty secrets are not secrets: nothing logs in, nothing is signed
    settings = load_settings(shop / "bcartnb.toml")
    assert settings.smtp.password is None and settings.unsubscribe_secret is None


def test_init_keeps_an_existing_env_and_gitignore(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shop = tmp_path / "shop"
    shop.mkdir()
    (shop / ".env").write_text("BCARTNB_SMTP_PASSWORD=secret\n", encoding="utf-8")
    (shop / ".gitignore").write_text("*.csv\n.env\n", encoding="utf-8")
    done = init(shop, environ(tmp_path / "home"))
    assert "もとからあるものを残しました" in done.stdout
    assert (shop / ".env").read_text(encoding="utf-8") == "BCARTNB_SMTP_PASSWORD=secret\n"
    lines = (shop / ".gitignore").read_text(encoding="utf-8").splitlines()
    assert lines[:2] == ["*.csv", ".env"] and set(GITIGNORE) <= set(lines)
    assert lines.count(".env") == 1
    monkeypatch.chdir(shop / "templates")  # the shop's .env is read from a subfolder
    assert load_settings().smtp.password == "secret"


# --- the per-user ledger of earlier versions ------------------------------------------------


def test_the_per_user_ledger_is_detected_and_adopting_keeps_its_campaigns(
    tmp_path: Path, smtp_server: Server
) -> None:
    server = smtp_server()
    home = tmp_path / "home"
    env = environ(home, **server.env())
    legacy = home / ".local" / "share" / "bcartnb" / "ledger.sqlite3"
    legacy.parent.mkdir(parents=True)
    # an earlier version's way: settings by BCARTNB_CONFIG, the ledger per user
    old_cfg = tmp_path / "old.toml"
    old_cfg.write_text(  # the same shop: its From and signature make the same mail
        f'plan = "プラン10"\nfrom = "{FROM}"\n'
        f"signature = {json.dumps(SIGNATURE, ensure_ascii=False)}\n",
        encoding="utf-8",
    )
    work = tmp_path / "work"
    path = campaign(work, 3)
    old = env | {"BCARTNB_CONFIG": str(old_cfg), "BCARTNB_DB": str(legacy)}
    sent = bcartnb("run", str(path), "--send", "--json", cwd=work, env=old)
    assert sent.returncode == 0, sent.stderr
    cid = json.loads(sent.stdout)["campaign_id"]
    # an unsubscribe still in the WAL, with a connection open: the copy must carry it
    held = Ledger.open(legacy)
    held.suppress("user2@example.co.jp", "unsubscribed", source="test")
    assert Path(f"{legacy}-wal").stat().st_size > 0

    try:
        lost = bcartnb("quota", cwd=work, env=env)
        assert lost.returncode == 2 and lost.stderr.startswith(NO_SHOP)
        assert str(legacy) in lost.stderr and "--adopt-ledger" in lost.stderr

        shop = tmp_path / "shop"
        made = init(shop, env)
        assert str(legacy) in made.stderr and "--adopt-ledger" in made.stderr
        refused = bcartnb("quota", cwd=shop, env=env)
        assert refused.returncode == 2, refused.stderr
        assert "以前の配信記録" in refused.stderr and "--adopt-ledger" in refused.stderr
        assert f'ledger = "{legacy}"' in refused.stderr  # or keep using it where it is
        assert not (shop / "ledger.sqlite3").exists()  # no empty ledger beside the old one

        adopted = bcartnb("init", "--adopt-ledger", cwd=shop, env=env)
        assert adopted.returncode == 0, adopted.stderr
        assert str(shop / "ledger.sqlite3") in adopted.stdout
    finally:
        held.close()

    rows = json.loads(bcartnb("campaigns", "--json", cwd=shop / "templates", env=env).stdout)
    assert [(r["campaign_id"], r["sent"], r["status"]) for r in rows] == [(cid, 3, "done")]
    assert quota(shop, env)["used"] == 3
    listed = json.loads(bcartnb("suppressions", "--json", cwd=shop, env=env).stdout)
    assert [s["address"] for s in listed] == ["user2@example.co.jp"]
    again = bcartnb("run", str(path), "--send", cwd=shop, env=env)
    assert again.returncode == 0 and "--repeat" in again.stdout  # the history came along
    assert "すべて同じメールを送信済み" in again.stdout
    assert legacy.is_file()  # the original stays, as a backup
    twice = bcartnb("init", "--adopt-ledger", cwd=shop, env=env)
    assert twice.returncode == 2 and "もうあります" in twice.stderr

    fresh = tmp_path / "fresh"
    both = init(fresh, env, "--adopt-ledger")  # a new shop that takes the records at once
    assert "取り込みました" in both.stdout
    assert quota(fresh, env)["used"] == 3


def test_adopting_refuses_a_file_that_is_not_a_ledger(tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = environ(home)
    legacy = home / ".local" / "share" / "bcartnb" / "ledger.sqlite3"
    legacy.parent.mkdir(parents=True)
    with sqlite3.connect(legacy) as conn:
        conn.execute("CREATE TABLE t (x)")
    conn.close()
    shop = tmp_path / "shop"
    init(shop, env)
    done = bcartnb("init", "--adopt-ledger", cwd=shop, env=env)
    assert done.returncode == 2 and "bcartnb の配信記録ではありません" in done.stderr
    assert ledgers_under(shop) == []


def test_init_on_a_terminal_asks_and_asks_again_after_a_wrong_answer(tmp_path: Path) -> None:
    """A real terminal (a pty) on stdin: the questions in order, a wrong plan asked again,
    an empty answer leaving the key unset, a signature of several lines ended by an empty one."""
    import pty

    env = environ(tmp_path / "home")
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "bcartnb", "init", "shop"],
        stdin=slave,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=tmp_path,
        env=env,
    )
    os.close(slave)
    answers = ["plan20", "プラン30", FROM, "", "見本商事株式会社", "TEL 03-0000-0000", ""]
    os.write(master, "".join(f"{a}\n" for a in answers).encode())
    out, err = proc.communicate(timeout=60)
    os.close(master)
    assert proc.returncode == 0, err.decode()
    assert "plan20" in err.decode() and err.decode().count("\n") == 1  # asked again, once
    assert "お店のフォルダーを作りました: shop" in out.decode()
    settings = load_settings(tmp_path / "shop" / "bcartnb.toml", env={})
    assert (settings.plan, settings.from_addr, settings.admin) == (
        "プラン30",
        "shop@example.co.jp",
        None,
    )
    assert settings.signature == "見本商事株式会社\nTEL 03-0000-0000"


def test_a_shop_inside_a_shop_is_made_with_a_warning(tmp_path: Path) -> None:
    env = environ(tmp_path / "home")
    outer = tmp_path / "shop"
    init(outer, env)
    inner = init(outer / "branch", env)
    assert "注意: このフォルダーはお店のフォルダー" in inner.stderr and str(outer) in inner.stderr
    assert quota(outer / "branch", env)["ledger"] == str(outer / "branch" / "ledger.sqlite3")
