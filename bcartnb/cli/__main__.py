"""``python -m bcartnb.cli``, as ``python -m bcartnb`` and the ``bcartnb`` command."""

from bcartnb.cli import entry

entry()
