"""What every step shares: the status area (bcartnb-status) and freezing controls.

A long action (filtering a big list, composing every mail, sending) freezes the controls so
a second click cannot start it twice, and unfreezes them in ``finally`` whatever happened
(the voila-optimade-client pattern). A :class:`~bcartnb.exceptions.BcartnbError` becomes one
line in the status area, in the marketer's words, never a traceback in the notebook.
"""

from __future__ import annotations

import html
import logging
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import ipywidgets as widgets

from bcartnb.exceptions import BcartnbError

__all__ = [
    "QUICK",
    "WARNING_STYLE",
    "Status",
    "fit",
    "frozen",
    "hide",
    "row",
    "show",
    "warning_html",
]

log = logging.getLogger("bcartnb.widgets")
T = TypeVar("T")


def _heading(err: BaseException) -> str:
    """The kind of failure in Japanese: each BcartnbError class names its own."""
    if isinstance(err, BcartnbError):
        return err.heading
    return f"予期しないエラー ({type(err).__name__})"


#: How every warning looks in the wizard (over the quota, 注意, 送信前の確認, HTML tags in a
#: text mail): one style, so the marketer learns once that red and ⚠ mean "read before 送信".
WARNING_STYLE = "color:#b00020;font-weight:bold;white-space:normal"


def warning_html(body: str, css: str, *, escaped: bool = False) -> str:
    """A warning block in :data:`WARNING_STYLE`, prefixed with ⚠; ``body`` is text (escaped
    here) unless ``escaped`` says it is markup made from escaped parts."""
    inner = body if escaped else html.escape(body, quote=False)
    return f'<div class="{css}" style="{WARNING_STYLE}">⚠ {inner}</div>'


class Status:
    """The status area of the wizard: an HTML widget with the class ``bcartnb-status``, or
    ``css`` for an area of its own beside one button (テスト送信's)."""

    def __init__(self, css: str = "bcartnb-status") -> None:
        self.widget = widgets.HTML(value="")
        self.widget.add_class(css)
        self.kind = ""  # "", "info", "error"
        self._text = ""

    @property
    def value(self) -> str:
        return str(self.widget.value)

    def _set(self, kind: str, text: str) -> None:
        self.kind, self._text = kind, text
        if not text:
            self.widget.value = ""
            return
        color = "#b00020" if kind == "error" else "#1a5fb4"
        body = html.escape(text, quote=False).replace("\n", "<br>")
        self.widget.value = (
            f'<div class="bcartnb-status-{kind}" style="color:{color};white-space:normal">'
            f"{body}</div>"
        )

    def info(self, text: str) -> None:
        self._set("info", text)

    def error(self, err: BaseException | str, then: str = "") -> None:
        """The error in Japanese first, then its detail; ``then``: what to do, on a line after."""
        if isinstance(err, BaseException):
            ja = getattr(err, "ja", "")
            detail = f"{ja}\n（詳細: {err}）" if ja else str(err)
            text = f"{_heading(err)}: {detail}"
        else:
            text = err
        self._set("error", f"{text}\n{then}" if then else text)

    def clear(self) -> None:
        self._set("", "")

    def note(self, text: str) -> None:
        """Add 「注意: text」 under what the area says, in its colour (info when empty)."""
        self._set(self.kind or "info", "\n注意: ".join(filter(None, [self._text, text])))

    def run(
        self,
        action: Callable[[], T],
        controls: Iterable[widgets.Widget] = (),
        *,
        busy: str = "処理中です…",
        quick: bool = False,
    ) -> T | None:
        """Run ``action`` with ``controls`` frozen; an error goes to the area and gives None.

        The status is cleared on success so the caller can write its own message. ``quick``:
        an action that mostly takes a few dozen milliseconds (絞込, 確認画面へ, a count): the
        controls are frozen and ``busy`` said only if it still runs after :data:`QUICK`
        seconds, so a quick click sends the browser no freezing and unfreezing of every
        control (two widget messages each, most of what the browser had to apply).
        """
        if not quick:
            self.info(busy)
        error: BaseException | None = None
        later = (QUICK, lambda: self.info(busy)) if quick else None
        with frozen(controls, later=later):
            try:
                result = action()
            except BcartnbError as err:
                error = err
            except Exception as err:  # a bug must still not print a traceback at the marketer
                log.exception("wizard action failed")
                error = err
        if error is not None:  # said once the freezing is over: it cannot say busy after this
            self.error(error)
            return None
        self.clear()
        return result


#: Seconds a ``quick`` action runs before its controls are frozen and its busy line shown.
QUICK = 0.2


@contextmanager
def frozen(
    controls: Iterable[widgets.Widget],
    *,
    later: tuple[float, Callable[[], None]] | None = None,
) -> Iterator[None]:
    """Disable the controls for the duration, then give each its own state back.

    ``later=(seconds, also)``: only if the block still runs after ``seconds``, from a timer
    thread, then ``also()`` too; the lock makes the end of the block and the timer exclusive,
    so controls frozen late are always given back, and never frozen after the block ended.
    """
    before: list[tuple[Any, bool]] = [
        (c, bool(c.disabled)) for c in controls if hasattr(c, "disabled")
    ]

    def freeze() -> None:
        for c, _ in before:
            c.disabled = True

    def give_back() -> None:
        for c, was in before:
            c.disabled = was

    if later is None:
        freeze()
        try:
            yield
        finally:
            give_back()
        return
    lock = threading.Lock()
    ended = frozen_late = False

    def freeze_late() -> None:
        nonlocal frozen_late
        with lock:
            if not ended:
                frozen_late = True
                freeze()
                later[1]()

    timer = threading.Timer(later[0], freeze_late)
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()
        with lock:
            ended = True
            if frozen_late:
                give_back()


def hide(*ws: widgets.Widget) -> None:
    for w in ws:
        w.layout.display = "none"


def show(*ws: widgets.Widget) -> None:
    for w in ws:
        w.layout.display = None


def fit(*buttons: widgets.Button) -> None:
    """Size each button to its whole label, never shrunk by its row.

    ipywidgets gives every button one short fixed width, which cut 「検索結果すべてに送信」 and
    「このページをすべてチェック」 to 「このページをすべ…」; ``width: auto`` with no shrinking
    shows the label whole, and :func:`row` wraps the buttons that do not fit a narrow screen.
    """
    for b in buttons:
        b.layout.width = "auto"
        b.layout.min_width = "max-content"
        b.layout.flex = "0 0 auto"


def row(*children: widgets.Widget, css: str = "") -> widgets.HBox:
    """A row that wraps onto the next line in a narrow notebook instead of cutting its items."""
    box = widgets.HBox(list(children), layout=widgets.Layout(flex_flow="row wrap"))
    if css:
        box.add_class(css)
    return box
