"""The scheduling examples (issue 14, 12): the cron wrapper runs for real; the Airflow DAG
cannot (Airflow is not installed here), so it is only checked as valid Python that names
what the README says it does (ruff checks it with the rest of the tree)."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from secrets_scan import SECRET_ENV, assert_no_secret
from smtp_servers import Faults, TestServer

from bcartnb.report import demo_path

Server = Callable[..., TestServer]
REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"
ADMIN = "admin@example.co.jp"


def test_the_airflow_dag_is_valid_python_with_a_papermill_task() -> None:
    source = (EXAMPLES / "airflow_dag.py").read_text(encoding="utf-8")
    tree = ast.parse(source)
    compile(tree, "airflow_dag.py", "exec")
    imported = {
        (node.module, alias.name)
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom)
        for alias in node.names
    }
    assert ("airflow.providers.papermill.operators.papermill", "PapermillOperator") in imported
    [task] = [
        n
        for n in ast.walk(tree)
        if isinstance(n, ast.Call) and getattr(n.func, "id", "") == "PapermillOperator"
    ]
    params = next(k.value for k in task.keywords if k.arg == "parameters")
    given = ast.literal_eval(
        ast.Dict(
            keys=params.keys,  # type: ignore[attr-defined]
            values=[
                v if isinstance(v, ast.Constant | ast.Dict | ast.List) else ast.Constant("?")
                for v in params.values  # type: ignore[attr-defined]
            ],
        )
    )
    assert given["send"] is True and given["scheduled_at"] == "{{ logical_date }}"
    notebook_keys = set(_notebook_parameters()) | {"scheduled_at"}
    assert set(given) <= notebook_keys, set(given) - notebook_keys
    assert not any("password" in key for key in given)  # secrets never go in parameters


def _notebook_parameters() -> list[str]:
    import json

    nb = json.loads((REPO / "notebooks" / "campaign.ipynb").read_text(encoding="utf-8"))
    cell = next(c for c in nb["cells"] if "parameters" in c["metadata"].get("tags", []))
    tree = ast.parse("".join(cell["source"]))
    return [t.id for n in tree.body if isinstance(n, ast.Assign) for t in n.targets]  # type: ignore[attr-defined]


def wrapper(tmp_path: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(EXAMPLES / "scheduled-campaign.sh"), str(tmp_path / "params.yaml"), "reports"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=300,
    )


def test_the_cron_wrapper_sends_once_and_exits_with_bcartnb_codes(
    tmp_path: Path, smtp_server: Server
) -> None:
    server = smtp_server(faults=Faults(defer={"user1@example.co.jp": 1}))
    rows = "".join(
        f"{3000 + i},テスト商事{i},山田,太郎,user{i}@example.co.jp,東京都,受け取る\n"
        for i in range(3)
    )
    members = tmp_path / "members.csv"
    members.write_text(
        "会員ID,会社名,担当者(姓),担当者(名),メールアドレス,都道府県,メール案内\n" + rows,
        encoding="utf-8",
    )
    settings = tmp_path / "bcartnb.toml"
    settings.write_text(
        demo_path("demo.toml")
        .read_text(encoding="utf-8")
        .replace('templates = "templates"', f'templates = "{demo_path("templates")}"')
        + "\n[delivery]\nretries = 0\n",
        encoding="utf-8",
    )
    (tmp_path / "params.yaml").write_text(
        f"members: {members}\ntemplate: テキストニュースレター\nopt_in_only: true\n",
        encoding="utf-8",
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("BCARTNB_")}
    # tmp_path is the shop folder (its bcartnb.toml, ledger and reports), found by the
    # notebook's kernel from where the wrapper runs, as cron's `cd /srv/shop` would; every
    # secret held: none may reach the reports, the log or the output
    env |= server.env() | {"PYTHON": sys.executable} | SECRET_ENV

    def members_mailed() -> list[str]:
        return sorted(r.recipients[0] for r in server.received if r.recipients != (ADMIN,))

    first = wrapper(tmp_path, env)  # the server defers user1 once: unfinished
    assert first.returncode == 4, first.stderr
    assert "終了コード 4" in first.stderr.splitlines()[-1]
    assert members_mailed() == ["user0@example.co.jp", "user2@example.co.jp"]

    second = wrapper(tmp_path, env)  # the same cron line later: continues, nobody twice
    assert second.returncode == 0, second.stderr
    assert members_mailed() == [f"user{i}@example.co.jp" for i in range(3)]

    third = wrapper(tmp_path, env)  # once more: everyone has it, nothing sent (not an error)
    assert third.returncode == 0, third.stderr
    assert members_mailed() == [f"user{i}@example.co.jp" for i in range(3)]
    assert len([r for r in server.received if r.recipients == (ADMIN,)]) == 1
    assert (tmp_path / "ledger.sqlite3").is_file()  # the shop's own ledger, nowhere else
    reports = sorted((tmp_path / "reports").glob("campaign-*.ipynb"))
    assert len(reports) >= 2  # one report per run (two may share a second)
    text = "".join(p.read_text(encoding="utf-8") for p in reports)
    assert "user0@example.co.jp" not in text  # reports mask addresses
    runs = (first, second, third)
    assert_no_secret(*(r.stdout for r in runs), *(r.stderr for r in runs), tmp_path)
