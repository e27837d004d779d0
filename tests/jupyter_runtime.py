"""Where a Jupyter server the tests start is listening (no browser needed to ask)."""

from __future__ import annotations

import json
from pathlib import Path

__all__ = ["served_port"]


def served_port(runtime: Path) -> int:
    """The port a Jupyter server started with ``--ServerApp.port=0`` took (0: not yet).

    The kernel picks it as the server binds, and the server names it in its
    ``jpserver-PID.json`` in ``JUPYTER_RUNTIME_DIR``: a port the test picked (bound, closed)
    would wait the server's seconds of start-up for it, and another process may take it.
    """
    for info in runtime.glob("jpserver-*.json"):
        try:
            return int(json.loads(info.read_text(encoding="utf-8"))["port"])
        except (OSError, ValueError, KeyError, TypeError):
            continue  # being written
    return 0
