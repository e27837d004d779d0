"""Print nothing, exit with the code ``bcartnb run`` would have given for an executed notebook.

papermill itself exits 1 for any failure; a scheduler needs to tell "run it again later"
(4, 130) from "tell a person" (2, 3, 5). The campaign notebook records its summary (with
its ``exit_code``) before it fails on an unfinished campaign; a campaign refused before
anything was sent leaves no summary but the error it raised, whose class carries its code.

    python examples/notebook_exit_code.py reports/campaign-20261201-090000.ipynb; echo $?
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from bcartnb import exceptions
from bcartnb.report import read_summary


def exit_code(notebook: Path) -> int:
    try:
        return int(read_summary(notebook)["exit_code"])
    except exceptions.BcartnbError:
        pass  # no summary: the run stopped before it (or the notebook is missing)
    try:
        cells = json.loads(notebook.read_text(encoding="utf-8")).get("cells", [])
    except (OSError, ValueError):
        return 1
    for cell in cells:
        for output in cell.get("outputs", []) or []:
            if output.get("output_type") == "error":
                error = getattr(exceptions, str(output.get("ename")), None)
                if isinstance(error, type) and issubclass(error, exceptions.BcartnbError):
                    return error.exit_code
                return 1
    return 1  # neither a summary nor an error: the notebook did not run to its end


if __name__ == "__main__":
    sys.exit(exit_code(Path(sys.argv[1])))
