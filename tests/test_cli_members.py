"""`bcartnb members`: the contract's JSON, the Japanese table, one-line errors with exit 2."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bcartnb.audience import REASONS, build_audience
from bcartnb.cli import main
from bcartnb.members import read_members

CSV = (
    "Bカート会員ID,会社名,メールアドレス,都道府県,メール案内\r\n"
    "1,㈱さくら商事,a@example.jp,東京都,受け取る\r\n"
    "2,髙島産業,,大阪府,受け取る\r\n"
    "3,丸①物産,bad..x@example.jp,東京都,受け取らない\r\n"
    "4,ﾐﾄﾞﾘ商事,c@example.jp,東京都,受け取らない\r\n"
    "5,東洋工業,A@EXAMPLE.JP,東京都,受け取る\r\n"
)


@pytest.fixture
def members_csv(tmp_path: Path) -> Path:
    path = tmp_path / "members.csv"
    path.write_bytes(CSV.encode("cp932"))
    return path


def run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(args)
    out, err = capsys.readouterr()
    return code, out, err


def test_json_summary_is_the_contract(
    members_csv: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(["members", str(members_csv), "--json"], capsys)
    assert code == 0 and err == ""
    data = json.loads(out)
    assert data == {
        "selected": 5,
        "sendable": 2,
        "unsendable": 3,
        "reasons": {
            "empty_address": 1,
            "invalid_address": 1,
            "not_opted_in": 0,
            "suppressed": 0,
            "already_sent": 0,  # every code, always: members alone never have a mail
            "duplicate_address": 1,
        },
    }
    assert list(data["reasons"]) == list(REASONS)


def test_filter_checked_and_opt_in_only(
    members_csv: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    flt = {"都道府県": "東京都", "comp_name": {"contains": "商事"}}
    args = ["members", str(members_csv), "--filter", json.dumps(flt, ensure_ascii=False)]
    code, out, _ = run([*args, "--checked", "4, 1", "--opt-in-only", "--json"], capsys)
    assert code == 0
    expected = build_audience(read_members(members_csv), flt, [1, 4], opt_in_only=True)
    assert json.loads(out) == expected.summary()
    assert json.loads(out)["reasons"]["not_opted_in"] == 1


def test_readable_japanese_table(members_csv: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["members", str(members_csv), "--opt-in-only"], capsys)
    assert code == 0
    lines = out.splitlines()
    assert any(line.startswith("送信件数") and line.endswith(" 1 件") for line in lines)
    assert any(line.startswith("送信できない件数") and line.endswith(" 4 件") for line in lines)
    assert "メール案内: 「受け取る」の会員のみ" in lines
    assert "送信方法: 検索結果すべてに送信" in lines
    assert any("メールアドレスが空欄" in line for line in lines)


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        (["--filter", "{pref:"], "--filter is not valid JSON"),
        (["--filter", '["東京都"]'], "--filter must be a JSON object"),
        (["--filter", '{"prefecture": "東京都"}'], "'prefecture'"),
        (["--filter", '{"price_group_id": "3"}'], "'price_group_id'"),
        (["--filter", '{"pref": {"like": "東"}}'], "'like'"),
        (["--checked", "1,a"], "'a' is not a member id"),
        (["--checked", ""], "--checked is empty"),
        (["--checked", "1.5"], "'1.5'"),
        (
            ["--checked", "2,99", "--filter", '{"pref": "東京都"}'],
            "not in the search result: 2, 99",
        ),
    ],
)
def test_bad_arguments_are_one_line_exit_2(
    members_csv: Path, capsys: pytest.CaptureFixture[str], extra: list[str], words: str
) -> None:
    code, out, err = run(["members", str(members_csv), *extra], capsys)
    assert code == 2 and out == ""
    assert err.startswith("bcartnb: error: ") and err.count("\n") == 1
    assert words in err
    heading, ja, detail = re.fullmatch(r"bcartnb: error: (\S+?): (.+?) / (.+)\n", err).groups()  # type: ignore[union-attr]
    assert heading in ("絞込条件のエラー", "会員の選択のエラー")
    assert re.search(r"[\u3040-\u30ff]", ja) and words in detail  # Japanese, then the detail


def test_bad_files_are_one_line_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_bytes("会員ID,メールアドレス,メール案内\n1,a@example.jp,たぶん\n".encode("cp932"))
    for path, words in [
        (bad, "row 2, column メール案内 (mm_flag)"),
        (tmp_path / "missing.csv", "no such member file"),
    ]:
        code, _, err = run(["members", str(path)], capsys)
        assert code == 2 and err.count("\n") == 1 and words in err and str(path) in err


def test_no_traceback_from_a_real_process(tmp_path: Path) -> None:
    path = tmp_path / "dup.csv"
    path.write_text("id,email\n1,a@example.jp\n1,b@example.jp\n", encoding="utf-8")
    proc = subprocess.run(
        [sys.executable, "-m", "bcartnb", "members", str(path)], capture_output=True, text=True
    )
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert "member id 1 appears more than once" in proc.stderr


def test_demo_members_from_a_real_process(repo_root: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "bcartnb",
            "members",
            str(repo_root / "data" / "demo_members.csv"),
            "--json",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    data = json.loads(proc.stdout)
    assert data["selected"] == data["sendable"] + data["unsendable"] == 300


def test_list_says_who_is_excluded_and_why(
    members_csv: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(["members", str(members_csv), "--opt-in-only", "--list"], capsys)
    assert code == 0
    lines = out.splitlines()
    at = lines.index("送信できない会員（会員ID / メールアドレス / 理由）:")
    assert lines[at + 1 :] == [
        "  2  （空欄）  メールアドレスが空欄",
        "  3  b***@example.jp  登録できないメールアドレス",
        "  4  c***@example.jp  メール案内を受け取らない",
        "  5  A***@EXAMPLE.JP  メールアドレスの重複",
    ]
    code, out, _ = run(["members", str(members_csv), "--list", "--json"], capsys)
    data = json.loads(out)
    assert data["excluded"] == [
        {"id": 2, "email": "", "reason": "empty_address"},
        {"id": 3, "email": "b***@example.jp", "reason": "invalid_address"},
        {"id": 5, "email": "A***@EXAMPLE.JP", "reason": "duplicate_address"},
    ]
    assert {k: data[k] for k in ("selected", "sendable", "unsendable")} == {
        "selected": 5,
        "sendable": 2,
        "unsendable": 3,
    }
    code, out, _ = run(["members", str(members_csv), "--json"], capsys)
    assert "excluded" not in json.loads(out)  # the contract's JSON unless asked


def test_list_masks_hostile_addresses(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "hostile.csv"
    path.write_text(
        "id,email\n1,ok@example.jp\n2,<script>alert(1)</script>@example.jp\n"
        '3,"evil\r\nBcc: x@example.jp"\n',
        encoding="utf-8",
    )
    code, out, _ = run(["members", str(path), "--list", "--json"], capsys)
    assert code == 0
    excluded = json.loads(out)["excluded"]
    assert [e["reason"] for e in excluded] == ["invalid_address", "invalid_address"]
    assert excluded[0]["email"] == "<***@example.jp"
    assert "script" not in out and "evil" not in out and "\r" not in excluded[1]["email"]
    code, out, _ = run(["members", str(path), "--list"], capsys)
    assert all("\r" not in line and "Bcc" not in line for line in out.splitlines())


def test_nobody_excluded(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "fine.csv"
    path.write_text("id,email\n1,ok@example.jp\n", encoding="utf-8")
    code, out, _ = run(["members", str(path), "--list"], capsys)
    assert code == 0 and out.splitlines()[-1] == "送信できない会員はいません。"


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    flt=st.one_of(
        st.text(max_size=40),
        st.dictionaries(
            st.text(max_size=8),
            st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=8)),
            max_size=3,
        ).map(lambda d: json.dumps(d, ensure_ascii=False)),
    ),
    checked=st.one_of(st.none(), st.text(max_size=12)),
)
def test_any_filter_or_checked_is_a_result_or_one_japanese_line(
    members_csv: Path, capsys: pytest.CaptureFixture[str], flt: str, checked: str | None
) -> None:
    """Hostile arguments (CR, LF, NUL, ESC, <script>, huge numbers) never make a traceback,
    a second line or a raw control character on the terminal."""
    args = ["members", str(members_csv), "--filter", flt]
    if checked is not None:
        args += ["--checked", checked]
    code, out, err = run(args, capsys)
    assert code in (0, 2)
    if code == 0:
        assert "送信件数" in out
        # a filter value no member holds is a note, one line each (never an error or a trace)
        for line in err.splitlines():
            assert line.startswith("注意: ") and not _CONTROL.search(line), err
        return
    assert out == "" and err.count("\n") == 1 and err.endswith("\n")
    assert re.match(r"bcartnb: error: [^\x00-\x7f]+: ", err), err  # the heading in Japanese
    assert not _CONTROL.search(err[:-1])
