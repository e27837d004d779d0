"""The ipywidgets wizard: B-Cart's member-mail screens, one step a module, no business logic.

``Wizard(members, settings)`` shows 絞込オプション, the member table, the compose form, the
confirmation and the send. Every control carries a stable CSS class (``bcartnb-…``) that the
browser test and users' own styling rely on; see the step modules.
"""

from __future__ import annotations

from .wizard import Wizard

__all__ = ["Wizard"]
