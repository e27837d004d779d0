"""最終購入からの日数 and 顧客グループ count from the one clock (``BCARTNB_NOW``), not the
machine's: a real ``bcartnb members --orders`` moves a member from 新規 to 休眠 as the clock
moves, with the same files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from test_orders import csv_text


def run_members(tmp_path: Path, now: str, group: str) -> dict[str, object]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BCARTNB_")}
    env["BCARTNB_CONFIG"] = str(tmp_path / "bcartnb.toml")
    env["BCARTNB_NOW"] = now
    where = json.dumps({"顧客グループ": group}, ensure_ascii=False)
    args = ["members", "members.csv", "--orders", "受注.csv", "--filter", where, "--json"]
    done = subprocess.run(
        [sys.executable, "-m", "bcartnb", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    out: dict[str, object] = json.loads(done.stdout)
    return out


def test_bcartnb_now_moves_a_member_from_new_to_dormant(tmp_path: Path) -> None:
    (tmp_path / "members.csv").write_text(
        "会員ID,会社名,メールアドレス,メール案内\n"
        "4000,商事0,user0@example.co.jp,受け取る\n4001,商事1,user1@example.co.jp,受け取る\n",
        encoding="utf-8",
    )
    lines = [("1", "4000", "2026/01/10 12:00:00", "発送済", "1000", "A-1", "梨")]
    (tmp_path / "受注.csv").write_bytes(csv_text(lines).encode("cp932"))
    (tmp_path / "bcartnb.toml").write_text(
        'plan = "プラン10"\nfrom = "見本商事 <shop@example.co.jp>"\n', encoding="utf-8"
    )
    soon, late = "2026-01-20T12:00:00+09:00", "2026-07-20T12:00:00+09:00"  # 10 and 191 days
    assert run_members(tmp_path, soon, "新規")["selected"] == 1
    assert run_members(tmp_path, soon, "休眠")["selected"] == 0
    assert run_members(tmp_path, late, "新規")["selected"] == 0
    assert run_members(tmp_path, late, "休眠")["selected"] == 1
    # a day after the one clock's midnight in Tokyo: still counted in Tokyo's days
    assert run_members(tmp_path, "2026-07-08T15:30:00+00:00", "休眠")["selected"] == 1
    assert run_members(tmp_path, "2026-07-08T14:30:00+00:00", "休眠")["selected"] == 0
