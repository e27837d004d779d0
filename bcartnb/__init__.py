"""bcartnb: B-Cart member mail delivery from JupyterLab, papermill and the command line.

The public names below are the flow's stages, re-exported lazily so that ``bcartnb --help``
does not pay for importing pandas: members → audience → draft → plan → delivery, and
:mod:`bcartnb.campaign`'s conductor (``run``, ``send``, ``resume``) over them.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "BcartnbError": "bcartnb.exceptions",
    "CampaignSpec": "bcartnb.campaign",
    "Draft": "bcartnb.compose",
    "Ledger": "bcartnb.ledger",
    "Sink": "bcartnb.sink",
    "TemplateStore": "bcartnb.templates",
    "Wizard": "bcartnb.widgets",
    "build_audience": "bcartnb.audience",
    "dry_run": "bcartnb.campaign",
    "load_campaign": "bcartnb.campaign",
    "load_settings": "bcartnb.settings",
    "plan_campaign": "bcartnb.campaign",
    "read_members": "bcartnb.members",
    "resume": "bcartnb.campaign",
    "run": "bcartnb.campaign",
    "send": "bcartnb.campaign",
    "send_test": "bcartnb.campaign",
}

__all__ = sorted([*_EXPORTS, "__version__"])


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'bcartnb' has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
