"""The ``bcartnb`` process pauses the garbage collector over a command's imports and freezes
what they made; a caller of ``main()`` keeps its collector exactly as it was."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from test_cli_run import setup_campaign

SCRIPT = r"""
import gc, json, sys
from bcartnb.cli import main
if sys.argv[2] == "off":
    gc.disable()
full = gc.get_stats()[2]["collections"]
code = main(["run", sys.argv[1], "--json"], whole_process=sys.argv[3] == "whole")
print(json.dumps({"code": code, "enabled": gc.isenabled(), "frozen": gc.get_freeze_count() > 0,
                  "pandas": "pandas" in sys.modules,
                  "full": gc.get_stats()[2]["collections"] - full}))
"""


@pytest.mark.parametrize(
    ("collector", "caller", "enabled", "frozen"),
    [
        ("on", "whole", True, True),  # the bcartnb command itself (entry)
        ("on", "caller", True, False),  # a test or a notebook calling main()
        ("off", "whole", False, False),  # a collector someone turned off stays off
        ("off", "caller", False, False),
    ],
)
def test_the_collector_after_a_run(
    tmp_path: Path, collector: str, caller: str, enabled: bool, frozen: bool
) -> None:
    campaign = setup_campaign(tmp_path, 3)
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(campaign), collector, caller],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={"BCARTNB_CONFIG": str(tmp_path / "bcartnb.toml"), "PATH": "/usr/bin:/bin"},
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.splitlines()[-1])
    full = out.pop("full")  # passes over every object while the command ran
    # the dry run ran and imported pandas: the imports were inside the command
    assert out == {"code": 0, "enabled": enabled, "frozen": frozen, "pandas": True}
    if frozen:  # pandas' million objects were never walked
        assert full == 0
