"""A real JupyterLab and Debian's headless Chromium, for the browser tests.

``JupyterLab`` runs ``jupyter lab`` as a subprocess on 127.0.0.1 with a random token, its
runtime, config, workspace and user-settings directories in tmp (so a developer's own Lab
setup changes nothing), and the notebook options that keep every cell in the DOM (windowing
off) and the news/update toasts away from the screenshots. ``launch_chromium`` starts
``/usr/bin/chromium`` through Playwright with no browser download: none can be reached here.

The page helpers speak JupyterLab's own DOM (menus, the kernel status) and nothing of the
wizard: the wizard is found by the CSS classes the widgets promise in notes/api.md.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from extras import CHROMIUM, need_browser
from jupyter_runtime import served_port

need_browser()  # a clear skip (a failure under make test), not ModuleNotFoundError

from playwright.sync_api import (  # noqa: E402
    Browser,
    Locator,
    Page,
    Playwright,
    ViewportSize,
    expect,
)

__all__ = [
    "CHROMIUM",
    "CHROMIUM_ARGS",
    "VIEWPORT",
    "JupyterLab",
    "Screenshots",
    "collapse_left_sidebar",
    "launch_chromium",
    "open_notebook",
    "run_all_cells",
    "wait_for_wizard",
    "wait_kernel_idle",
    "widget_input",
]

# Flags that work as root in a container with no GPU and no network beyond 127.0.0.1.
CHROMIUM_ARGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
)
_IDLE = re.compile(r"\| Idle$")
VIEWPORT: ViewportSize = {"width": 1280, "height": 900}

# JupyterLab user settings, written where --LabApp.user_settings_dir points.
_LAB_SETTINGS: dict[str, dict[str, Any]] = {
    # Every cell stays in the DOM: windowing would detach the wizard while it is scrolled away.
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
    # No "Would you like to get news?" toast over the screenshots, and no request for it.
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {
        "fetchNews": "false",
        "checkForUpdates": False,
    },
}


class JupyterLab:
    """``jupyter lab`` serving ``root`` on 127.0.0.1; a context manager that always stops it."""

    def __init__(self, root: Path, state: Path, env: Mapping[str, str] | None = None) -> None:
        self.root = root
        self.state = state
        self.port = 0  # the server's, once it has started (see served_port)
        self.token = secrets.token_hex(16)
        self.log_path = state / "jupyterlab.log"
        self._extra_env = dict(env or {})
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def notebook_url(self, relpath: str) -> str:
        return f"{self.url}/lab/tree/{relpath}?token={self.token}"

    def _env(self) -> dict[str, str]:
        # The kernel inherits this environment: no BCARTNB_* of the developer's leaks in.
        env = {k: v for k, v in os.environ.items() if not k.startswith("BCARTNB_")}
        for name in ("runtime", "config", "data"):
            (self.state / name).mkdir(parents=True, exist_ok=True)
        env.update(
            JUPYTER_RUNTIME_DIR=str(self.state / "runtime"),
            JUPYTER_CONFIG_DIR=str(self.state / "config"),
            JUPYTER_DATA_DIR=str(self.state / "data"),
            JUPYTER_PLATFORM_DIRS="1",
            IPYTHONDIR=str(self.state / "ipython"),
            XDG_DATA_HOME=str(self.state / "xdg"),
            PYTHONUNBUFFERED="1",
        )
        env.update(self._extra_env)
        return env

    def start(self, timeout: float = 60.0) -> JupyterLab:
        settings_dir = self.state / "lab-settings"
        for name, values in _LAB_SETTINGS.items():
            path = settings_dir / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(values), encoding="utf-8")
        jupyter = Path(sys.executable).with_name("jupyter")
        cmd = [
            str(jupyter),
            "lab",
            "--no-browser",
            "--ServerApp.ip=127.0.0.1",
            "--ServerApp.port=0",
            "--ServerApp.port_retries=0",
            f"--IdentityProvider.token={self.token}",
            f"--ServerApp.root_dir={self.root}",
            f"--LabApp.user_settings_dir={settings_dir}",
            f"--LabApp.workspaces_dir={self.state / 'workspaces'}",
            "--ServerApp.terminals_enabled=False",
        ]
        if os.geteuid() == 0:  # CI containers run as root; Jupyter refuses that unless told
            cmd.append("--allow-root")
        env = self._env()
        for stale in (self.state / "runtime").glob("jpserver-*.json"):  # a killed server's
            stale.unlink()
        self.port = 0
        log = self.log_path.open("wb")
        self._proc = subprocess.Popen(
            cmd, cwd=self.root, env=env, stdout=log, stderr=subprocess.STDOUT
        )
        log.close()
        deadline = time.monotonic() + timeout
        while True:
            if self._proc.poll() is not None:
                raise RuntimeError(f"jupyter lab exited {self._proc.returncode}:\n{self.log()}")
            self.port = self.port or served_port(self.state / "runtime")
            try:
                if self.port:
                    status = f"{self.url}/api/status?token={self.token}"
                    with urllib.request.urlopen(status, timeout=2) as resp:
                        if resp.status == 200:
                            return self
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"jupyter lab did not answer in {timeout} s:\n{self.log()}")
            time.sleep(0.2)

    def log(self) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")[-4000:]
        except FileNotFoundError:
            return ""

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()  # SIGTERM: the server shuts its kernels down before it exits
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)

    def __enter__(self) -> JupyterLab:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def launch_chromium(playwright: Playwright) -> Browser:
    """Debian's Chromium, headless; Playwright gives each launch a fresh temporary profile."""
    if not CHROMIUM.is_file():
        raise RuntimeError(
            f"{CHROMIUM} not found: install Debian's chromium (`make browser-deps` as root)"
        )
    return playwright.chromium.launch(
        executable_path=str(CHROMIUM), headless=True, args=list(CHROMIUM_ARGS)
    )


class Screenshots:
    """PNGs of each step, numbered in the order taken, into ``directory``."""

    def __init__(self, directory: Path, prefix: str) -> None:
        self.directory = directory
        self.prefix = prefix
        self.count = 0
        directory.mkdir(parents=True, exist_ok=True)

    def take(self, page: Page, name: str, focus: Locator | None = None) -> Path:
        self.count += 1
        path = self.directory / f"{self.prefix}-{self.count:02d}-{name}.png"
        if focus is not None:
            focus.scroll_into_view_if_needed()
        page.screenshot(path=str(path))
        return path


def open_notebook(page: Page, lab: JupyterLab, relpath: str) -> None:
    """Open a notebook and wait until its kernel is idle."""
    page.goto(lab.notebook_url(relpath))
    expect(page.locator(".jp-Notebook").first).to_be_visible(timeout=60_000)
    wait_kernel_idle(page)


def wait_kernel_idle(page: Page, timeout: float = 60_000) -> None:
    # The status bar reads "Python 3 (ipykernel) | Idle" once the kernel is up and not busy.
    status = page.locator("#jp-main-statusbar").get_by_role("button", name=_IDLE)
    expect(status).to_be_visible(timeout=timeout)


#: The ids whose check box is not on the row of their cells: left of the row's 会員ID cell,
#: its middle within that cell's height (the cells are text in one widget, the boxes widgets).
OFF_ROW_JS = """ids => ids.filter(id => {
  const box = document.querySelector(".bcartnb-check-" + id + " input");
  const cell = [...document.querySelectorAll(".bcartnb-member-table .bcartnb-cell")]
    .find(c => c.textContent === String(id));
  if (!box || !cell) return true;
  const b = box.getBoundingClientRect(), c = cell.getBoundingClientRect();
  const middle = (b.top + b.bottom) / 2;
  return !(b.right <= c.left && middle >= c.top && middle <= c.bottom);
})"""


def wait_page_settled(page: Page, ids: list[int], timeout: float = 60_000) -> None:
    """After an action that changes the member table's page (絞込, a page turn), before a box
    is ticked: the kernel idle (every widget message of the action is out, in order), then the
    box of each of ``ids`` on its own row. The new page's count, cells and boxes' names come
    as separate messages; a box ticked between them is the old page's box, which the next
    message gives to another member."""
    wait_kernel_idle(page, timeout)
    page.wait_for_function(f"ids => ({OFF_ROW_JS})(ids).length === 0", arg=ids, timeout=timeout)


def run_all_cells(page: Page) -> None:
    """Run > Run All Cells, as a user would, then wait for the kernel to settle."""
    page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
    page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click()


def collapse_left_sidebar(page: Page) -> None:
    """Give the notebook the whole width: clicking the open sidebar tab folds the sidebar."""
    tab = page.get_by_role("tab", name=re.compile(r"^File Browser"))
    if tab.get_attribute("aria-selected") == "true":
        tab.click()
    expect(page.locator("#jp-left-stack")).to_be_hidden()


def wait_for_wizard(page: Page, timeout: float = 60_000) -> Locator:
    """The wizard's outer box once rendered; a traceback in any output fails with its text."""
    wizard = page.locator(".bcartnb-wizard")
    error = page.locator('.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]')
    expect(wizard.or_(error).first).to_be_visible(timeout=timeout)
    if not wizard.is_visible():
        raise AssertionError("the notebook failed:\n" + "\n".join(error.all_inner_texts()))
    return wizard


def widget_input(page: Page, css_class: str, selector: str = "input, textarea, select") -> Locator:
    """The form control inside an ipywidget carrying ``css_class`` (add_class on its outer div)."""
    return page.locator(f".{css_class}").locator(selector).first
