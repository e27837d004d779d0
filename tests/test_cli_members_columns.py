"""`bcartnb members` sorts only the columns it reads (ids, addresses, メール案内 and what the
filter names): its counts and its list stay those of the audience over every column."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bcartnb.audience import build_audience
from bcartnb.cli import main
from bcartnb.members import read_members

CSV = (
    "Bカート会員ID,会社名,メールアドレス,都道府県,メール案内,登録日時,業種,取引開始年\r\n"
    "1,㈱さくら商事,a@example.jp,東京都,受け取る,2024/05/01 10:00:00,卸売,2010\r\n"
    "2,髙島産業,,大阪府,受け取る,2025/01/02 09:00:00,小売,\r\n"
    "3,丸①物産,bad..x@example.jp,東京都,受け取らない,2024/12/31 23:59:00,卸売,2019\r\n"
    "4,ﾐﾄﾞﾘ商事,c@example.jp,東京都,受け取らない,2023/03/03 03:03:03,飲食,2001\r\n"
    "5,東洋工業,A@EXAMPLE.JP,東京都,受け取る,2024/07/07 07:07:07,卸売,2015\r\n"
    "6,大和販売,d@example.jp,愛知県,受け取る,2024/08/08 08:08:08,卸売,2020\r\n"
)


@pytest.mark.parametrize(
    ("flt", "checked", "opt_in"),
    [
        (None, None, False),
        ({"業種": "卸売"}, None, True),
        ({"取引開始年": {"min": 2012}}, None, False),
        ({"登録日時": {"from": "2024-01-01", "to": "2024-12-31"}, "pref": "東京都"}, None, True),
        ({"comp_name": {"contains": "商事"}}, [1, 4], False),
        ({"status": "有効"}, None, False),  # a column the file lacks: blank, nobody matches
    ],
)
def test_counts_and_list_are_the_audience_over_every_column(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    flt: dict[str, Any] | None,
    checked: list[int] | None,
    opt_in: bool,
) -> None:
    path = tmp_path / "members.csv"
    path.write_bytes(CSV.encode("cp932"))
    args = ["members", str(path), "--json", "--list"]
    args += ["--filter", json.dumps(flt, ensure_ascii=False)] if flt is not None else []
    args += ["--checked", ",".join(map(str, checked))] if checked else []
    args += ["--opt-in-only"] if opt_in else []
    code = main(args)
    out, _ = capsys.readouterr()
    assert code == 0
    data = json.loads(out)
    whole = build_audience(read_members(path), flt, checked, opt_in)
    assert {k: v for k, v in data.items() if k != "excluded"} == whole.summary()
    assert [e["id"] for e in data["excluded"]] == whole.unsendable["id"].tolist()
    assert [e["reason"] for e in data["excluded"]] == whole.unsendable["reason"].tolist()


def test_a_filter_on_an_unknown_column_is_still_refused_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "members.csv"
    path.write_bytes(CSV.encode("cp932"))
    code = main(["members", str(path), "--filter", '{"好きな色": "青"}'])
    _, err = capsys.readouterr()
    assert code == 2 and "好きな色" in err and err.count("\n") <= 2
