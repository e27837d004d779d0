"""The run's summary, recorded in the executed notebook for a program to read back.

The batch notebook records its summary as a display output with the :data:`SUMMARY_MIMETYPE`
mimetype (scrapbook's ``glue`` in one line, without the dependency); a caller (cron, CI,
``make demo``) reads it back from the output notebook with :func:`read_summary`. Like every
output of a report it is masked: warnings and checks may quote an address from the mail.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bcartnb.exceptions import BcartnbError
from bcartnb.privacy import mask_text
from bcartnb.report.blocks import display

__all__ = [
    "SUMMARY_MIMETYPE",
    "SUMMARY_TAG",
    "read_summary",
    "record_summary",
    "recorded_summaries",
    "safe_summary",
]

SUMMARY_MIMETYPE = "application/vnd.bcartnb.summary+json"
#: The summary's output carries this tag: the exported document leaves it out.
SUMMARY_TAG = "bcartnb-summary"


def safe_summary(summary: Mapping[str, Any]) -> dict[str, Any]:
    """The summary as JSON values, with what may quote a mail (warnings, checks) masked."""
    out = json.loads(json.dumps(dict(summary), ensure_ascii=False, default=str))
    if "warnings" in out:
        out["warnings"] = [mask_text(str(w)) for w in out["warnings"]]
    if "checks" in out:  # a finding's detail may quote a link or an address from the mail
        out["checks"] = [
            {k: mask_text(str(v)) if isinstance(v, str) else v for k, v in dict(c).items()}
            for c in out["checks"]
        ]
    return dict(out)


def record_summary(summary: Mapping[str, Any]) -> dict[str, Any]:
    """Record the run's summary under :data:`SUMMARY_MIMETYPE` (for :func:`read_summary`).

    The output is tagged so that the exported document leaves it out: it is data for a
    program, and the report shows the same numbers in words and tables.
    """
    data = safe_summary(summary)
    display(
        {SUMMARY_MIMETYPE: data, "text/plain": json.dumps(data, ensure_ascii=False, indent=1)},
        metadata={"tags": [SUMMARY_TAG]},
        raw=True,
    )
    return data


def read_summary(nb_path: str | os.PathLike[str]) -> dict[str, Any]:
    """The summary recorded by :func:`record_summary` in an executed notebook (the last one)."""
    path = Path(nb_path)
    try:
        nb = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        raise BcartnbError(
            f"{path}: notebook not found", ja="実行済みのノートブックが見つかりません。"
        ) from err
    except json.JSONDecodeError as err:
        raise BcartnbError(
            f"{path}: not a notebook (invalid JSON: {err})",
            ja="ノートブックとして読めないファイルです。",
        ) from err
    found = recorded_summaries(nb)
    if not found:
        raise BcartnbError(
            f"{path}: no campaign summary recorded (did the notebook finish?)",
            ja="ノートブックに配信の結果が記録されていません（最後まで実行されましたか）。",
        )
    return found[-1]


def recorded_summaries(nb: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every summary a notebook (its JSON, or an nbformat node) recorded, in order."""
    return [
        output["data"][SUMMARY_MIMETYPE]
        for cell in nb.get("cells", [])
        for output in cell.get("outputs", []) or []
        if SUMMARY_MIMETYPE in output.get("data", {})
    ]
