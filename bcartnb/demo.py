"""``make demo``: a real campaign end to end, with nothing leaving the machine.

``python -m bcartnb.demo [--out DIR]`` makes a demo shop folder with ``bcartnb init``
(:func:`bcartnb.shop.init_shop`, answered from ``data/demo.toml``: plan, From, admin,
signature) and puts the demo's templates and members in it, starts the embedded SMTP sink in
this process, runs ``notebooks/campaign.ipynb`` with papermill inside the shop folder (the
kernel finds ``bcartnb.toml`` as every face does, by looking upward from where it runs) and
exports the executed notebook, the campaign's report, to HTML. ``DIR`` (default: the
current directory) receives ``demo-out/``, the shop folder (its settings, ledger, templates,
members and the sink's Maildir, made anew on every run so the demo can be repeated), and
``reports/``, which keeps every run's report. Only the sink's address comes through the
environment, as a cron job's would; no password is involved anywhere.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bcartnb.audience import build_audience, format_summary
from bcartnb.cli.common import japanese_argparse
from bcartnb.exceptions import BcartnbError
from bcartnb.members import read_members
from bcartnb.quota import now_tokyo
from bcartnb.report import data_dir, demo_path, export_html, read_summary
from bcartnb.settings import load_settings
from bcartnb.shop import ShopAnswers, init_shop
from bcartnb.sink import Sink

__all__ = [
    "DEMO_FILTER",
    "DEMO_MEMBERS",
    "DEMO_PARAMETERS",
    "NOTEBOOK",
    "ensure_kernel",
    "main",
    "make_demo_shop",
    "readable_parameters",
    "run_demo",
]

NOTEBOOK = data_dir().parent / "notebooks" / "campaign.ipynb"
DEMO_MEMBERS = demo_path("demo_members.csv")
#: their orders (data/make_demo_orders.py): the wizard's 購入履歴 and notebooks/customers.ipynb
_DEMO_ORDERS = demo_path("demo_orders.csv")
#: 東京都・大阪府・神奈川県の有効な会員
DEMO_FILTER: dict[str, Any] = {"都道府県": ["東京都", "大阪府", "神奈川県"], "状態": "有効"}
#: その中でメール案内「受け取る」の会員へ HTML ニュースレターを送信
DEMO_PARAMETERS: dict[str, Any] = {
    "members": str(DEMO_MEMBERS),
    "filter": DEMO_FILTER,
    "template": "HTMLニュースレター",
    "opt_in_only": True,
    "send": True,
}
KERNEL = "python3"


def ensure_kernel(name: str = KERNEL) -> None:
    """papermill needs a kernelspec; install ipykernel's into this environment if missing."""
    from jupyter_client.kernelspec import KernelSpecManager

    if name in KernelSpecManager().find_kernel_specs():
        return
    from ipykernel.kernelspec import install

    install(prefix=sys.prefix, kernel_name=name)


@contextmanager
def _environ(changes: Mapping[str, str | None]) -> Iterator[None]:
    """Set (or, for None, remove) variables for the kernel papermill starts; restore after."""
    saved = {key: os.environ.get(key) for key in changes}
    try:
        for key, value in changes.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def readable_parameters() -> None:
    """Have papermill write the injected parameters as Python literals people can read.

    papermill escapes every non-ASCII character (``"\\u6771\\u4eac\\u90fd"`` for 東京都), and the
    executed notebook is kept for those who read its code. ``repr`` gives a valid literal
    for any string (control characters still escaped). Registered for this process only.
    """
    from papermill.translators import PythonTranslator, papermill_translators

    class ReadablePython(PythonTranslator):  # type: ignore[misc]
        @classmethod
        def translate_escaped_str(cls, str_val: Any) -> str:
            return repr(str_val) if isinstance(str_val, str) else f'"{str_val}"'

    papermill_translators.register("python", ReadablePython)


def _ipc_kernel_manager(folder: str) -> type[Any]:
    """A kernel manager that talks to the kernel over Unix sockets in ``folder``, not TCP.

    Over TCP, ipykernel 7 warns on every start that its traffic is unencrypted: the first
    thing a new user of ``make demo`` would read. Unix sockets stay on this machine, in a
    folder only we can read.
    """
    from jupyter_client.manager import KernelManager
    from traitlets import default

    class IpcKernelManager(KernelManager):
        @default("transport")
        def _transport_default(self) -> str:
            return "ipc"

        @default("ip")
        def _ip_default(self) -> str:
            return os.path.join(folder, "kernel")

    return IpcKernelManager


def make_demo_shop(folder: Path) -> Path:
    """A shop folder as ``bcartnb init`` makes it, answered with the demo shop's settings,
    with the demo's templates, members and orders put in; an earlier demo shop there is replaced."""
    shutil.rmtree(folder, ignore_errors=True)
    demo = load_settings(demo_path("demo.toml"), env={})
    sender = f"{demo.from_name} <{demo.from_addr}>" if demo.from_name else demo.from_addr
    answers = ShopAnswers(demo.plan, sender, demo.admin, demo.signature)
    init_shop(folder, answers, new_ledger=True)  # whatever this user ran before
    for template in demo_path("templates").glob("*.txt"):
        shutil.copy2(template, folder / "templates" / template.name)
    shutil.copy2(DEMO_MEMBERS, folder / DEMO_MEMBERS.name)
    shutil.copy2(_DEMO_ORDERS, folder / _DEMO_ORDERS.name)
    return folder


def run_demo(out: Path, parameters: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Run the demo campaign into ``out``; return where everything is and the summary."""
    import papermill

    out = out.resolve()
    work = make_demo_shop(out / "demo-out")
    maildir = work / "Maildir"  # the sink creates it with tmp/ new/ cur/
    reports = out / "reports"
    reports.mkdir(parents=True, exist_ok=True)
    ensure_kernel()
    readable_parameters()
    executed = reports / f"campaign-{now_tokyo():%Y%m%d-%H%M%S}.ipynb"
    with Sink(maildir, port=0) as sink:
        env: dict[str, str | None] = {
            # the kernel finds the shop from its working directory, like every face
            "BCARTNB_CONFIG": None,
            "BCARTNB_DB": None,
            "BCARTNB_SMTP_HOST": sink.host,
            "BCARTNB_SMTP_PORT": str(sink.port),
            "BCARTNB_SMTP_SECURITY": "none",
            # the sink wants no login, and the demo must not pick up a real one
            "BCARTNB_SMTP_USER": None,
            "BCARTNB_SMTP_PASSWORD": None,
            "BCARTNB_PLAN": None,
        }
        with _environ(env), tempfile.TemporaryDirectory(prefix="bcartnb-kernel-") as ipc:
            papermill.execute_notebook(
                str(NOTEBOOK),
                str(executed),
                parameters=dict(
                    {**DEMO_PARAMETERS, "members": str(work / DEMO_MEMBERS.name)}
                    if parameters is None
                    else parameters
                ),
                kernel_name=KERNEL,
                cwd=str(work),
                progress_bar=False,
                kernel_manager_class=_ipc_kernel_manager(ipc),
            )
        received = sink.received
    summary = read_summary(executed)
    report = executed.with_name(f"campaign-{summary['campaign_id']}.ipynb")
    executed.replace(report)
    return {
        "shop": work,
        "report": report,
        "html": export_html(report, report.with_suffix(".html")),
        "maildir": maildir,
        "received": received,
        "summary": summary,
    }


def main(argv: Sequence[str] = ()) -> int:
    with japanese_argparse():  # argparse's own words too, as for the bcartnb command
        parser = argparse.ArgumentParser(
            prog="python -m bcartnb.demo",
            description="デモキャンペーンを埋め込みSMTPサーバー宛に送信し、レポートを作成します。",
        )
        parser.add_argument(
            "--out",
            type=Path,
            default=Path.cwd(),
            metavar="フォルダー",
            help="demo-out/ と reports/ を作るフォルダー（既定: 今のフォルダー）",
        )
        args = parser.parse_args(list(argv))
    from papermill.exceptions import PapermillExecutionError

    # the confirmation screen first: what the notebook is about to send
    print("== 確認画面 ==")
    print(format_summary(build_audience(read_members(DEMO_MEMBERS), DEMO_FILTER, opt_in_only=True)))
    print()
    try:
        result = run_demo(args.out)
    except PapermillExecutionError as err:
        print(f"bcartnb demo: error: {err.ename}: {err.evalue}", file=sys.stderr)
        return 2
    except BcartnbError as err:
        print(f"bcartnb demo: error: {err.line()}", file=sys.stderr)
        return err.exit_code
    s = result["summary"]
    q = s["quota"]
    print(
        f"デモキャンペーン {s['campaign_id']}: 送信件数 {s['sendable']} / "
        f"送信できない件数 {s['unsendable']} / 送信済み {s['sent']} / 失敗 {s['failed']}"
    )
    print(f"今月の配信数 {q['used_before']} → {q['used_after']}（{q['plan']}、上限 {q['cap']}）")
    print(
        f"デモのお店のフォルダー: {result['shop']}"
        "（その中で bcartnb campaigns・quota などを試せます）"
    )
    print(f"レポート（ノートブック）: {result['report']}")
    print(f"レポート（HTML）: {result['html']}")
    print(f"受信したメール（Maildir）: {result['maildir']}")
    print(
        f"埋め込みSMTPサーバーが受信したメール: {result['received']} 通"
        f"（会員宛 {s['sent']} 通 + 管理者宛の控え）"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
