"""Where the wizard sends the view after each click, and its buttons while their action runs
(issue 23, item 1), driven in Python like tests/test_widgets.py; tests/test_browser_view.py
measures the same in JupyterLab.

What is checked here is what the kernel asks of the page: the script in the wizard's
:class:`~bcartnb.widgets.viewport.Viewport` output, naming the wizard's own class and the
element to show, in the order the screens change.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import test_widgets
from smtp_servers import TestServer
from test_wizard_screens import sent_unfinished

from bcartnb.widgets import Wizard
from bcartnb.widgets.viewport import REVEAL_JS

# the fixtures of the wizard's other tests: a member CSV, a real SMTP server, the wizard on both
members_csv = test_widgets.members_csv
server = test_widgets.server
wizard = test_widgets.wizard

_CALL = re.compile(r"\}\)\((\"[^\"]*\"), (\"[^\"]*\"), 40\);\s*$")


def watch_reveals(w: Wizard) -> list[str]:
    """Each element the page is asked to show, in order (read from the scripts themselves)."""
    seen: list[str] = []

    def on_outputs(change: dict[str, Any]) -> None:
        for out in change["new"]:
            script = out["data"]["application/javascript"]
            m = _CALL.search(script)
            assert m is not None, script
            assert json.loads(m.group(1)) == w.viewport.scope
            seen.append(json.loads(m.group(2)))

    w.viewport.widget.observe(on_outputs, names="outputs")
    return seen


def watch_disabled(button: Any) -> list[bool]:
    seen: list[bool] = []
    button.observe(lambda c: seen.append(bool(c["new"])), names="disabled")
    return seen


def test_opening_scrolls_nothing_and_the_scope_is_the_wizards_own(wizard: Wizard) -> None:
    assert wizard.viewport.revealed == ""
    assert wizard.viewport.widget.outputs == ()
    assert wizard.viewport.scope in wizard.widget._dom_classes
    assert "bcartnb-wizard" in wizard.widget._dom_classes
    other = Wizard(wizard.members, wizard.settings)
    assert other.viewport.scope != wizard.viewport.scope  # two wizards on a page stay apart
    assert REVEAL_JS.count("%s") == 2


def test_each_click_shows_what_it_changed(wizard: Wizard, server: TestServer) -> None:
    seen = watch_reveals(wizard)
    wizard.filter_step.pref.value = ("東京都",)
    wizard.filter_step.apply.click()
    assert seen == ["bcartnb-result-count"]

    wizard.table.check([1003, 1007])
    wizard.send_checked.click()
    assert wizard.stage == "compose" and seen[-1] == "bcartnb-status"
    wizard.compose.opt_in.value = False
    wizard.compose.template.value = "テキストニュースレター"
    wizard.compose.to_confirm.click()
    assert wizard.stage == "confirm" and seen[-1] == "bcartnb-status"
    status_before = wizard.status.value

    # テスト送信: its result under its button, the status line left as it was
    disabled = watch_disabled(wizard.confirm.test_send)
    wizard.confirm.test_send.click()
    assert disabled == [True, False]
    assert "テスト送信しました" in wizard.confirm.test_result.value
    assert seen[-1] == "bcartnb-test-result" and wizard.status.value == status_before
    wizard.confirm.test_to.value = "a@b\r\nBcc: x@example.com"  # refused, and said by the button
    wizard.confirm.test_send.click()
    assert disabled == [True, False, True, False]
    assert wizard.confirm.test_result.kind == "error", wizard.confirm.test_result.value
    assert seen[-1] == "bcartnb-test-result" and len(server.received) == 1

    wizard.confirm.back.click()
    assert wizard.stage == "compose" and seen[-1] == "bcartnb-status"
    wizard.compose.to_confirm.click()
    assert wizard.confirm.test_result.value == ""  # a new confirmation: the old result is gone

    n = len(seen)
    wizard.confirm.send.click()
    assert wizard.stage == "done"
    assert seen[n:] == ["bcartnb-progress", "bcartnb-status"]  # the bar, then the done screen

    wizard.sending.again.click()
    assert wizard.stage == "select" and seen[-1] == "bcartnb-status"


def test_an_error_brings_the_status_line_into_view(wizard: Wizard) -> None:
    seen = watch_reveals(wizard)
    disabled = watch_disabled(wizard.send_checked)
    wizard.send_checked.click()  # nothing ticked: said atop the wizard, which comes into view
    assert wizard.status.kind == "error" and seen == ["bcartnb-status"]
    assert disabled == [] and not wizard.send_checked.disabled

    wizard.filter_step.text.value = "存在しない会社名"
    wizard.filter_step.apply.click()  # no error: the (empty) result count
    assert seen[-1] == "bcartnb-result-count"


def test_revealing_starts_no_ipython_shell(wizard: Wizard) -> None:
    """With an InteractiveShell about, every Output widget swallows what is raised inside it
    (the send's and 再開's errors then vanished from the status line): outside a kernel, the
    wizard's scrolling must not make one."""
    from IPython.core.interactiveshell import InteractiveShell

    before = InteractiveShell.initialized()
    wizard.filter_step.apply.click()
    wizard.send_checked.click()
    assert wizard.viewport.revealed == "bcartnb-status"
    assert wizard.viewport.widget.outputs[0]["data"]["application/javascript"].startswith("(fun")
    assert InteractiveShell.initialized() == before


def test_in_a_kernel_a_resume_error_is_said_and_the_button_comes_back(
    tmp_path: Path, repo_root: Path, smtp_server: Callable[..., TestServer]
) -> None:
    """In a kernel (an InteractiveShell about) an Output widget swallows what is raised inside
    it: 再開's error must still reach the status line, in Japanese, and 再開 be enabled again."""
    from IPython.core.interactiveshell import InteractiveShell

    server = smtp_server()
    server.down()
    w = sent_unfinished(tmp_path, repo_root, server)
    before = w.result
    Path(w.members.attrs["source"]).write_text(
        "会員ID,メールアドレス,メール案内\n1,a@example.co.jp,たぶん\n", "utf-8"
    )
    had_shell = InteractiveShell.initialized()
    InteractiveShell.instance()
    try:
        disabled = watch_disabled(w.sending.resume)
        w.sending.resume.click()
    finally:
        if not had_shell:
            InteractiveShell.clear_instance()
    assert w.status.kind == "error" and "会員ファイルのエラー" in w.status.value, w.status.value
    assert disabled == [True, False] and w.stage == "done" and w.result is before
    assert w.viewport.revealed == "bcartnb-status"
