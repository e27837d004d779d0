from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bcartnb.exceptions import SettingsError
from bcartnb.settings import (
    MAX_MAIL_BYTES,
    RENDER_TIMEOUT,
    find_shop,
    legacy_ledger_path,
    load_settings,
    require_ledger,
    require_plan,
)


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_file_then_environment_wins(tmp_path: Path) -> None:
    cfg = write(
        tmp_path / "bcartnb.toml",
        'plan = "プラン10"\nfrom = "見本商事 <shop@example.co.jp>"\nadmin = "admin@example.co.jp"\n'
        'db = "ledger.sqlite3"\n[smtp]\nhost = "mail.example.co.jp"\nsecurity = "starttls"\n'
        'user = "shop"\n',
    )
    s = load_settings(cfg, env={"BCARTNB_SMTP_PORT": "2525", "BCARTNB_SMTP_PASSWORD": "pw"})
    assert s.plan == "プラン10"
    assert (s.from_name, s.from_addr) == ("見本商事", "shop@example.co.jp")
    assert s.db == tmp_path / "ledger.sqlite3"
    assert s.smtp.host == "mail.example.co.jp" and s.smtp.port == 2525
    assert s.smtp.security == "starttls" and s.smtp.user == "shop"
    assert s.smtp.password == "pw"
    assert "pw" not in repr(s)


def test_security_default_ports(tmp_path: Path) -> None:
    cfg = write(tmp_path / "b.toml", '[smtp]\nhost = "h"\nsecurity = "ssl"\n')
    assert load_settings(cfg, env={}).smtp.port == 465


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ('plann = "x"\n', "unknown key 'plann'"),
        ('[smtp]\nport = "25"\n', "port must be an integer"),
        ('[smtp]\nsecurity = "tls"\n', "security must be one of"),
        ('from = "not an address"\n', "from is not a mail address"),
        ("plan = \n", "not valid TOML"),
    ],
)
def test_bad_settings_name_the_file_and_key(tmp_path: Path, text: str, needle: str) -> None:
    cfg = write(tmp_path / "bad.toml", text)
    with pytest.raises(SettingsError) as exc:
        load_settings(cfg, env={})
    assert str(cfg) in str(exc.value) and needle in str(exc.value)


@pytest.mark.parametrize(
    ("section", "key", "value", "kind"),
    [
        ("smtp", "host", "1", "a string"),
        ("smtp", "allow_plaintext_auth", '"yes"', "true or false"),
        ("smtp", "timeout", '"30"', "an integer or a number"),
        ("delivery", "connections", "true", "an integer"),
        ("delivery", "backoff", '"1"', "an integer or a number"),
        ("bcart", "api_url", "1", "a string"),
        ("hygiene", "verp", "1", "true or false"),
        ("hygiene", "server_connections", "2.5", "an integer"),
    ],
)
def test_each_section_names_its_key_and_kind(
    tmp_path: Path, section: str, key: str, value: str, kind: str
) -> None:
    cfg = write(tmp_path / "b.toml", f"[{section}]\n{key} = {value}\n")
    with pytest.raises(SettingsError) as exc:
        load_settings(cfg, env={})
    assert f"{cfg} [{section}]: {key} must be {kind}, not " in str(exc.value)
    assert f"{cfg} [{section}] の {key} の値" in exc.value.ja


def test_a_section_reads_whole_numbers_as_numbers_and_names_its_first_mistake(
    tmp_path: Path,
) -> None:
    cfg = write(
        tmp_path / "b.toml",
        '[smtp]\nuser = ""\ntimeout = 7\n[delivery]\nbackoff = 5\n'
        "[hygiene]\nsoft_window_days = 7\n",
    )
    s = load_settings(cfg, env={})
    assert s.smtp.user is None
    assert [type(v) for v in (s.smtp.timeout, s.delivery.backoff)] == [float, float]
    assert (s.delivery.backoff, s.hygiene.soft_window_days) == (5.0, 7.0)
    # checked in the order of the section's keys, whatever the order in the file
    for text, first in (
        ('[smtp]\ntimeout = "x"\nhost = 1\n', "host must be a string"),
        ('[smtp]\ntimeout = "x"\nport = 70000\n', "port 70000 is out of range"),
        ('[hygiene]\nserver_connections = "x"\nbounce_address = "a@b, c@d"\n', "bounce_address"),
    ):
        write(cfg, text)
        with pytest.raises(SettingsError, match=first):
            load_settings(cfg, env={})


def test_password_only_from_environment(tmp_path: Path) -> None:
    cfg = write(tmp_path / "b.toml", '[smtp]\npassword = "secret"\n')
    with pytest.raises(SettingsError, match="unknown key 'password'"):
        load_settings(cfg, env={})


def test_dotenv_fills_but_never_overrides(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    write(tmp_path / ".env", "BCARTNB_SMTP_PASSWORD=fromfile\nBCARTNB_PLAN=light\n")
    monkeypatch.setenv("BCARTNB_PLAN", "plan10")
    s = load_settings()
    assert s.smtp.password == "fromfile"
    assert s.plan == "plan10"


# --- hostile and careless settings (issue 12) --------------------------------------------


def test_a_password_over_a_plain_connection_to_another_host_is_refused(tmp_path: Path) -> None:
    cfg = tmp_path / "bcartnb.toml"
    cfg.write_text('[smtp]\nhost = "smtp.example.co.jp"\nuser = "shop"\n', encoding="utf-8")
    with pytest.raises(SettingsError) as exc:
        load_settings(cfg, env={"BCARTNB_SMTP_PASSWORD": "pw"})
    assert 'security = "starttls"' in str(exc.value) and "pw" not in str(exc.value)
    assert "暗号化" in exc.value.ja
    # the local machine, TLS, or a deliberate opt-in are fine
    for extra, env in [
        ('security = "starttls"\n', {}),
        ("allow_plaintext_auth = true\n", {}),
        ("", {"BCARTNB_SMTP_HOST": "127.0.0.1"}),
        ("", {"BCARTNB_SMTP_HOST": "localhost"}),
        ("", {"BCARTNB_SMTP_HOST": "::1"}),
    ]:
        cfg.write_text(
            f'[smtp]\nhost = "smtp.example.co.jp"\nuser = "shop"\n{extra}', encoding="utf-8"
        )
        settings = load_settings(cfg, env={"BCARTNB_SMTP_PASSWORD": "pw", **env})
        assert settings.smtp.user == "shop"


@pytest.mark.parametrize("what", ["directory", "device", "not-utf8", "huge"])
def test_a_settings_file_that_is_not_a_small_text_file_is_one_clear_error(
    tmp_path: Path, what: str
) -> None:
    path = {
        "directory": tmp_path,
        "device": Path("/dev/zero"),
        "not-utf8": tmp_path / "bad.toml",
        "huge": tmp_path / "huge.toml",
    }[what]
    if what == "not-utf8":
        path.write_bytes(b'plan = "light"\nfrom = "\xff"\n')
    if what == "huge":
        path.write_text("# x\n" * 300_000, encoding="utf-8")
    with pytest.raises(SettingsError) as exc:
        load_settings(path, env={})
    assert str(path) in str(exc.value) and "\n" not in str(exc.value)
    if what == "not-utf8":
        assert "line 2" in str(exc.value)


def test_render_limits_default_and_come_from_the_file(tmp_path: Path) -> None:
    s = load_settings(env={})
    assert (s.render_timeout, s.max_mail_bytes) == (RENDER_TIMEOUT, MAX_MAIL_BYTES)
    cfg = write(tmp_path / "b.toml", "render_timeout = 2\nmax_mail_bytes = 1_000_000\n")
    s = load_settings(cfg, env={})
    assert (s.render_timeout, s.max_mail_bytes) == (2.0, 1_000_000)
    assert isinstance(s.render_timeout, float)


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        (
            "render_timeout = 0\n",
            "render_timeout must be a number from 0.1 to 600 seconds, not 0.0",
        ),
        ("render_timeout = 601\n", "render_timeout must be a number from 0.1 to 600"),
        ("render_timeout = nan\n", "render_timeout must be a number from 0.1 to 600"),
        ('render_timeout = "5"\n', "render_timeout must be an integer or a number"),
        (
            "max_mail_bytes = 9999\n",
            "max_mail_bytes must be a whole number from 10,000 to 100,000,000",
        ),
        ("max_mail_bytes = 100_000_001\n", "max_mail_bytes must be a whole number from"),
        ("max_mail_bytes = 1e6\n", "max_mail_bytes must be an integer, not 1000000.0"),
        ("max_mail_bytes = true\n", "max_mail_bytes must be an integer"),
    ],
)
def test_bad_render_limits_name_the_key(tmp_path: Path, text: str, needle: str) -> None:
    cfg = write(tmp_path / "bad.toml", text)
    with pytest.raises(SettingsError) as exc:
        load_settings(cfg, env={})
    assert str(exc.value).startswith(f"{cfg}: ") and needle in str(exc.value)


# --- junk that used to be cut short or accepted (issue 12) --------------------------------


@pytest.mark.parametrize("key", ["from", "admin"])
@pytest.mark.parametrize(
    ("value", "needle"),
    [
        ("Shop <shop@example.co.jp>, evil@example.jp", "must be exactly one mail address"),
        ("shop@example.co.jp; evil@example.jp", "must be exactly one mail address"),
        ("Shop <shop@example.co.jp> evil@example.jp", "must be exactly one mail address"),
        ("Group: shop@example.co.jp;", "must be exactly one mail address"),
        ("Shop\x00 <shop@example.co.jp>", "contains a control character ('\\x00')"),
        ("shop@example.co.jp\x00evil@example.jp", "contains a control character ('\\x00')"),
        ("shop@example.co.jp\u2028Bcc: evil@example.jp", "contains a line break"),
    ],
)
def test_a_mailbox_setting_is_exactly_one_address(
    tmp_path: Path, key: str, value: str, needle: str
) -> None:
    # json.dumps writes the value as a TOML basic string (\u0000 escapes included)
    cfg = write(tmp_path / "b.toml", f"{key} = {json.dumps(value)}\n")
    with pytest.raises(SettingsError) as exc:
        load_settings(cfg, env={})
    message = str(exc.value)
    assert "\n" not in message and "\n" not in exc.value.ja
    assert f"{cfg}: {key} " in message and needle in message
    assert repr(value) in message  # the value as written, escapes and all
    assert exc.value.ja.startswith(key)


@pytest.mark.parametrize(
    ("value", "name", "addr"),
    [
        ("見本商事 <shop@example.co.jp>", "見本商事", "shop@example.co.jp"),
        ('"Shop, Inc." <shop@example.co.jp>', "Shop, Inc.", "shop@example.co.jp"),
        ("Shop Inc. <shop@example.co.jp>", "Shop Inc.", "shop@example.co.jp"),
        ("<shop@example.co.jp>", "", "shop@example.co.jp"),
        ("shop@example.co.jp", "", "shop@example.co.jp"),
    ],
)
def test_one_mailbox_in_its_usual_forms_is_accepted(
    tmp_path: Path, value: str, name: str, addr: str
) -> None:
    cfg = write(tmp_path / "b.toml", f"from = {json.dumps(value)}\nadmin = {json.dumps(value)}\n")
    s = load_settings(cfg, env={})
    assert (s.from_name, s.from_addr, s.admin) == (name, addr, addr)


def test_unknown_plan_in_the_file_names_the_file_and_key(tmp_path: Path) -> None:
    cfg = write(tmp_path / "b.toml", 'plan = "gold"\n')
    with pytest.raises(SettingsError) as exc:
        load_settings(cfg, env={})
    assert str(exc.value).startswith(f"{cfg}: plan: unknown plan 'gold'; valid plans: ")
    assert exc.value.ja.startswith(f"設定ファイル {cfg} の plan に指定されたプラン「gold」")


def test_unknown_plan_from_the_environment_says_so(tmp_path: Path) -> None:
    cfg = write(tmp_path / "b.toml", 'plan = "プラン10"\n')
    with pytest.raises(SettingsError) as exc:
        load_settings(cfg, env={"BCARTNB_PLAN": "plan20"})
    assert str(exc.value).startswith("BCARTNB_PLAN: unknown plan 'plan20'")
    assert str(cfg) not in str(exc.value)  # the file's plan is fine
    assert exc.value.ja.startswith("環境変数 BCARTNB_PLAN に指定されたプラン「plan20」")


@pytest.mark.parametrize(
    ("dotenv", "environ", "source"),
    [
        ("", {}, "bcartnb.toml: plan: "),
        ("BCARTNB_PLAN=plan20\n", {}, "BCARTNB_PLAN in .env: "),
        ("", {"BCARTNB_PLAN": "plan20"}, "BCARTNB_PLAN: "),
    ],
)
def test_cli_names_where_an_unknown_plan_came_from(
    tmp_path: Path, dotenv: str, environ: dict[str, str], source: str
) -> None:
    cfg = write(tmp_path / "bcartnb.toml", 'plan = "gold"\n' if not dotenv and not environ else "")
    write(tmp_path / ".env", dotenv)
    env = {k: v for k, v in os.environ.items() if not k.startswith("BCARTNB_")}
    env.update(environ, BCARTNB_CONFIG=str(cfg), BCARTNB_DB=str(tmp_path / "l.db"))
    proc = subprocess.run(
        [sys.executable, "-m", "bcartnb", "quota"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=60,
    )
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and source in proc.stderr
    assert "unknown plan" in proc.stderr


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    data=st.one_of(
        st.binary(max_size=300),
        st.text(max_size=200).map(lambda t: t.encode("utf-8", "surrogatepass")),
        st.lists(
            st.sampled_from(
                [
                    b'plan = "light"\n',
                    b"[smtp]\n",
                    b"[delivery]\n",
                    b"port = 0\n",
                    b"timeout = nan\n",
                    b"retries = -1\n",
                    b'from = "a@b.jp, c@d.jp"\n',
                    b'admin = "\\u0000@x.jp"\n',
                    b'security = "tls"\n',
                    b"connections = 1e9\n",
                    b'members = "/dev/zero"\n',
                    b"filter = { pref = 3 }\n",
                    b'checked = ["x"]\n',
                    b"send = 1\n",
                    b'encoding = "sjis"\n',
                    b'subject = "x"\nbody = "y"\n',
                    b"\xff\xfe",
                    b"\x00",
                ]
            ),
            max_size=8,
        ).map(b"".join),
    )
)
def test_any_bytes_as_a_settings_or_campaign_file_give_a_result_or_a_bcartnb_error(
    tmp_path: Path, data: bytes
) -> None:
    from bcartnb.campaign import load_campaign
    from bcartnb.exceptions import BcartnbError

    path = tmp_path / "any.toml"
    path.write_bytes(data)
    for load in (lambda: load_settings(path, env={}), lambda: load_campaign(path)):
        try:
            load()
        except BcartnbError as err:
            assert "\n" not in str(err)  # one line, fit to print


# --- the shop folder (issue 20) ------------------------------------------------------------


def test_the_shop_is_found_upward_and_its_paths_are_relative_to_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shop = tmp_path / "shop"
    deep = shop / "campaigns" / "2026" / "12"
    deep.mkdir(parents=True)
    write(shop / "bcartnb.toml", 'plan = "light"\nsegments = "saved/segments.toml"\n')
    nested = write(deep.parent / "bcartnb.toml", 'plan = "plan30"\n')  # the nearest wins
    monkeypatch.chdir(deep)
    assert load_settings().source == nested
    nested.unlink()
    s = load_settings()
    assert (s.source, s.plan) == (shop / "bcartnb.toml", "light")
    assert s.db == shop / "ledger.sqlite3" and s.ledger_by_default
    assert s.templates == shop / "templates"
    assert s.segments == shop / "saved" / "segments.toml"
    assert find_shop(tmp_path) is None and find_shop(deep) == shop / "bcartnb.toml"
    # a folder named bcartnb.toml is not a shop
    (tmp_path / "other" / "bcartnb.toml").mkdir(parents=True)
    assert find_shop(tmp_path / "other") is None


def test_the_ledger_key_its_old_name_and_bcartnb_db(tmp_path: Path) -> None:
    cfg = write(tmp_path / "bcartnb.toml", 'ledger = "records/shop.sqlite3"\n')
    s = load_settings(cfg, env={})
    assert s.db == tmp_path / "records" / "shop.sqlite3" and not s.ledger_by_default
    write(cfg, 'db = "/var/lib/shop.sqlite3"\n')  # what earlier files say
    assert load_settings(cfg, env={}).db == Path("/var/lib/shop.sqlite3")
    s = load_settings(cfg, env={"BCARTNB_DB": str(tmp_path / "env.sqlite3")})
    assert s.db == tmp_path / "env.sqlite3"
    write(cfg, 'ledger = "a.sqlite3"\ndb = "b.sqlite3"\n')
    with pytest.raises(SettingsError, match="ledger and db") as err:
        load_settings(cfg, env={})
    assert "ledger だけ" in (err.value.ja or "")
    for bad in ('ledger = ""', 'ledger = "  "', 'ledger = "a\\u0000b"', "ledger = 3"):
        with pytest.raises(SettingsError, match="ledger"):
            load_settings(write(cfg, bad + "\n"), env={})


def test_no_shop_means_no_ledger_until_bcartnb_db_names_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    s = load_settings()
    assert s.db is None and s.source is None
    with pytest.raises(SettingsError, match="no shop folder") as err:
        require_ledger(s)
    assert str(tmp_path) in str(err.value) and "bcartnb init" in (err.value.ja or "")
    with pytest.raises(SettingsError, match="no shop folder"):
        require_plan(s)  # the first thing to fix is the missing shop, not the plan
    monkeypatch.setenv("BCARTNB_DB", str(tmp_path / "x.sqlite3"))
    assert require_ledger(load_settings()) == tmp_path / "x.sqlite3"
    assert not (tmp_path / "x.sqlite3").exists()  # naming is not creating


def test_an_unadopted_per_user_ledger_is_named_until_the_shop_has_its_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    legacy = legacy_ledger_path()
    assert legacy == tmp_path / "xdg" / "bcartnb" / "ledger.sqlite3"
    legacy.parent.mkdir(parents=True)
    legacy.write_bytes(b"")
    (tmp_path / "shop").mkdir()
    cfg = write(tmp_path / "shop" / "bcartnb.toml", 'plan = "light"\n')
    s = load_settings(cfg)
    assert s.legacy_ledger == legacy
    with pytest.raises(SettingsError, match="adopt") as err:
        require_ledger(s)
    assert f'ledger = "{legacy}"' in (err.value.ja or "")
    (tmp_path / "shop" / "ledger.sqlite3").write_bytes(b"")  # adopted (or made) since
    assert require_ledger(s) == tmp_path / "shop" / "ledger.sqlite3"
    assert load_settings(cfg).legacy_ledger is None
    write(cfg, 'plan = "light"\nledger = "new.sqlite3"\n')  # a ledger named: the shop chose
    assert load_settings(cfg).legacy_ledger is None


def test_the_shops_dotenv_is_read_from_a_subfolder_and_never_overrides(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path / "bcartnb.toml", 'plan = "light"\n')
    write(tmp_path / ".env", "BCARTNB_SMTP_PASSWORD=shop\nBCARTNB_PLAN=plan10\n")
    (tmp_path / "sub").mkdir()
    write(tmp_path / "sub" / ".env", "BCARTNB_PLAN=plan30\n")  # the nearer one first
    monkeypatch.chdir(tmp_path / "sub")
    s = load_settings()
    assert (s.smtp.password, s.plan) == ("shop", "plan30")
    monkeypatch.setenv("BCARTNB_SMTP_PASSWORD", "env")
    assert load_settings().smtp.password == "env"


@pytest.mark.parametrize("bad", ["a\x00b", "a\rb", "a\x1b[2Jb", "a\u2028b", "a\x7fb"])
def test_a_signature_holds_no_control_character_but_line_feeds_and_tabs(
    tmp_path: Path, bad: str
) -> None:
    cfg = write(tmp_path / "bcartnb.toml", f"signature = {json.dumps(bad)}\n")
    with pytest.raises(SettingsError, match="signature contains a control character"):
        load_settings(cfg, env={})
    good = "見本商事\n\tTEL 03-0000-0000\n"
    write(cfg, f"signature = {json.dumps(good)}\n")
    assert load_settings(cfg, env={}).signature == good
