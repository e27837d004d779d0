"""The unsubscribe server's log speaks Japanese and keeps the members' secrets (issue 23, 11).

uvicorn's own start and stop lines are English; :mod:`bcartnb.hygiene.server_log` gives it a
log configuration that writes them in Japanese. The real command runs here (a process, a real
ledger, real requests), and what it wrote on stderr is read whole: uvicorn's lines in Japanese,
what was unsubscribed, and never a token, an address or the client's address.
"""

from __future__ import annotations

import logging
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import httpx
from test_unsubscribe import CID, PREFIX, SECRET, T0, URL_SETTING, bound_port, token_for

from bcartnb.hygiene.server_log import UVICORN_JA, JapaneseLines, log_config
from bcartnb.ledger import Ledger

#: Words of uvicorn's English lines and level names: none may reach the log.
ENGLISH = ("Started", "Finished", "Shutting", "Uvicorn", "Waiting", "INFO", "WARNING", "ERROR")
KANA_OR_KANJI = re.compile(r"[\u3040-\u30ff\u4e00-\u9fff]")


def _record(msg: str, *args: object, level: int = logging.INFO) -> logging.LogRecord:
    return logging.LogRecord("uvicorn.error", level, __file__, 1, msg, args, None)


def test_each_known_uvicorn_line_is_japanese_with_its_values() -> None:
    for english, japanese in UVICORN_JA.items():
        assert KANA_OR_KANJI.search(japanese), english
        assert re.findall(r"%[sd]", english) == re.findall(r"%[sd]", japanese), english
    record = _record("Started server process [%d]", 4242)
    assert JapaneseLines().filter(record)
    assert record.getMessage() == "サーバーを開始しました（プロセス番号 4242）"
    assert record.level_ja == "情報"  # type: ignore[attr-defined]


def test_an_unknown_line_passes_and_addresses_are_masked_in_every_line() -> None:
    record = _record("ledger locked for %s at %s", "taro@example.co.jp", "x", level=logging.ERROR)
    JapaneseLines().filter(record)
    assert record.getMessage() == "ledger locked for t***@example.co.jp at x"
    assert record.level_ja == "エラー"  # type: ignore[attr-defined]
    inline = _record("配信停止: hanako@example.co.jp")
    JapaneseLines().filter(inline)
    assert inline.getMessage() == "配信停止: h***@example.co.jp"


def test_the_access_log_writes_nowhere() -> None:
    config = log_config()
    assert config["loggers"]["uvicorn.access"] == {
        "handlers": ["nowhere"],
        "level": "INFO",
        "propagate": False,
    }
    assert config["handlers"]["nowhere"]["class"] == "logging.NullHandler"


def test_the_command_logs_in_japanese_without_tokens_or_addresses(tmp_path: Path) -> None:
    address = "user7@example.co.jp"
    (tmp_path / "bcartnb.toml").write_text(
        f'plan = "プラン10"\nfrom = "見本商事 <shop@example.co.jp>"\ndb = "ledger.sqlite3"\n'
        f'unsubscribe_url = "{URL_SETTING}"\n',
        "utf-8",
    )
    with Ledger.open(tmp_path / "ledger.sqlite3") as led:
        led.claim(
            fingerprint="fp",
            plan="プラン10",
            params={},
            recipients=[(1007, address)],
            campaign_id=CID,
            now=T0,
        )
    token = token_for(1007, address)
    env = {k: v for k, v in os.environ.items() if not k.startswith("BCARTNB_")}
    env |= {"BCARTNB_CONFIG": str(tmp_path / "bcartnb.toml"), "BCARTNB_UNSUBSCRIBE_SECRET": SECRET}
    proc = subprocess.Popen(
        [sys.executable, "-m", "bcartnb", "unsubscribe-server", "--port", "0"],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        encoding="utf-8",
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        port = bound_port(first)
        assert (
            first == f"配信停止サーバーを起動しました: http://127.0.0.1:{port}{PREFIX}<トークン>\n"
        )
        url = f"http://127.0.0.1:{port}{PREFIX}{token}"
        with httpx.Client(timeout=30) as client:
            assert client.get(url).status_code == 200
            assert client.post(url, content=b"List-Unsubscribe=One-Click").status_code == 200
            assert client.get(f"http://127.0.0.1:{port}{PREFIX}forged").status_code == 404
            # a WebSocket upgrade the server does not take: uvicorn's two warnings, in Japanese
            upgrade = {"Connection": "Upgrade", "Upgrade": "websocket"}
            assert client.get(f"http://127.0.0.1:{port}/", headers=upgrade).status_code == 404
        # bytes no HTTP parser reads: uvicorn's warning, in Japanese
        with socket.create_connection(("127.0.0.1", port), timeout=30) as raw:
            raw.sendall(b"\x00\x01 nonsense\r\n\r\n")
            assert raw.recv(100).startswith(b"HTTP/1.1 400")
    finally:
        proc.terminate()
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    lines = err.splitlines()
    assert lines, out
    assert any("サーバーを開始しました（プロセス番号 " in line for line in lines), err
    assert any(line.endswith(f"情報: 配信停止: キャンペーン {CID} 会員 1007") for line in lines), (
        err
    )
    assert any(line.endswith("情報: 停止しています") for line in lines), err
    assert any("サーバーを終了しました（プロセス番号 " in line for line in lines), err
    for line in lines:
        assert KANA_OR_KANJI.search(line), line
    for word in ENGLISH:
        assert word not in err, err
    for secret in (token, token[:20], SECRET, address, "user7@", "forged"):
        assert secret not in out + err
    assert "127.0.0.1" not in err  # the client's address: nowhere
    assert any("HTTP として読めないリクエスト" in line for line in lines), err
    assert any("WebSocket" in line for line in lines), err
    assert out.endswith("配信停止サーバーを停止しました\n") and "stopped" not in out
