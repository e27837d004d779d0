"""Moving the view to what just changed: the new step, the progress bar, a button's result.

A step's screen replaces the previous one in place, so after a click at the bottom of a long
member list the notebook stayed scrolled down and looked blank, and 送信's progress bar was
never seen. ipywidgets has no scroll API, and JupyterLab strips scripts from HTML widgets;
an :class:`ipywidgets.Output` renders ``application/javascript`` with JupyterLab's own
JavaScript renderer (its outputs are trusted), so :meth:`Viewport.reveal` puts one tiny script
there, which finds the element by the CSS classes the widgets carry and calls
``scrollIntoView``. The wizard's own class (one per wizard, :attr:`Viewport.scope`) keeps two
wizards on one page apart. Where no browser runs the script (papermill, tests driving the
wizard in Python) nothing happens.
"""

from __future__ import annotations

import json
import secrets
from typing import Final

import ipywidgets as widgets

__all__ = ["REVEAL_JS", "Viewport"]

#: Waits until the element is laid out (the step's box may be shown in the same breath), then
#: scrolls the least that shows it; an element taller than the screen shows its top.
REVEAL_JS: Final = """\
(function (scope, target, tries) {
  function go() {
    var root = document.querySelector("." + scope);
    var el = root && root.querySelector("." + target);
    if (!el || !el.getClientRects().length) {
      if (tries-- > 0) { setTimeout(go, 50); }
      return;
    }
    var tall = el.getBoundingClientRect().height > window.innerHeight * 0.8;
    el.scrollIntoView({block: tall ? "start" : "nearest", inline: "nearest"});
  }
  requestAnimationFrame(go);
})(%s, %s, 40);
"""


class Viewport:
    """The invisible output that scrolls the wizard's page; put :attr:`widget` in the wizard
    and add :attr:`scope` to the wizard's outer box."""

    def __init__(self) -> None:
        self.scope = f"bcartnb-view-{secrets.token_hex(6)}"
        self.widget = widgets.Output(layout=widgets.Layout(height="0px", overflow="hidden"))
        self.widget.add_class("bcartnb-viewport")
        #: the CSS class last revealed (what tests read; "" before any)
        self.revealed = ""

    def reveal(self, css_class: str) -> None:
        """Scroll the page so the element with ``css_class`` inside the wizard is in view."""
        self.revealed = css_class
        script = REVEAL_JS % (json.dumps(self.scope), json.dumps(css_class))
        # a new output each time (the same script runs again), written as the output message
        # itself: IPython's formatter would make an InteractiveShell where none runs (tests,
        # scripts), and with one every Output widget swallows the exceptions raised inside it
        self.widget.outputs = ()
        self.widget.outputs = (
            {
                "output_type": "display_data",
                "data": {"application/javascript": script, "text/plain": ""},
                "metadata": {},
            },
        )
