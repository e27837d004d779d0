"""What the notebooks call: their parameters, the demo's data, and the report shown in one call.

The batch notebook (``notebooks/campaign.ipynb``) is a parameters cell and calls into this
package, so the report looks the same whoever runs it and is tested here rather than in a
notebook: :func:`notebook_params` turns its parameters into campaign keys, and
:func:`show_report` shows the report of the run block by block, keeps what only this run
knows for ``bcartnb report ID`` (:mod:`bcartnb.report.notes`), writes the HTML page a reviewer
opens (:func:`report_target`: the shop's ``reports/`` folder unless told otherwise) and records
the summary a caller reads back (:mod:`bcartnb.report.summary`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Unpack

from bcartnb.exceptions import BcartnbError
from bcartnb.privacy import mask_text
from bcartnb.report.blocks import show
from bcartnb.report.document import CampaignReport, report_blocks
from bcartnb.report.export import write_document
from bcartnb.report.gather import RunContext, from_run
from bcartnb.report.notes import is_campaign_id, write_notes
from bcartnb.report.summary import record_summary
from bcartnb.settings import require_ledger

if TYPE_CHECKING:
    from bcartnb.campaign import CampaignPlan, DeliverySummary
    from bcartnb.settings import Settings

__all__ = [
    "DEMO_TEMPLATE",
    "data_dir",
    "demo_path",
    "notebook_params",
    "report_target",
    "resolve_members",
    "show_report",
]


def data_dir() -> Path:
    """The repository's ``data/`` folder, found from the package, so any cwd works."""
    return Path(__file__).resolve().parents[2] / "data"


def demo_path(*parts: str) -> Path:
    """A path inside ``data/`` (``demo_path("demo_members.csv")``)."""
    return data_dir().joinpath(*parts)


#: The template the demo members are mailed with when the notebook is given neither a
#: template nor a subject and body (its default run, and nbval's).
DEMO_TEMPLATE = "テキストニュースレター"


def notebook_params(**params: Any) -> dict[str, Any]:
    """The papermill notebook's parameters as campaign keys.

    ``members=None`` means the demo members, and only then does a missing template default to
    the demo's (:data:`DEMO_TEMPLATE`): a shop's own run with ``subject`` and ``body`` uses no
    template, and one without them is told to give a template or both.
    """
    out = dict(params)
    demo = out.get("members") in (None, "")
    out["members"] = str(resolve_members(out.get("members")))
    if demo and not out.get("template") and out.get("subject") is None and out.get("body") is None:
        out["template"] = DEMO_TEMPLATE
    return out


def resolve_members(members: str | os.PathLike[str] | None) -> Path:
    """The notebook's ``members`` parameter as a path: None means the demo members.

    papermill runs the kernel in whatever directory it was given, so a relative path is
    taken from the current directory and an absolute one as is; give absolute paths.
    """
    if members is None or members == "":
        return demo_path("demo_members.csv")
    return Path(members).expanduser().resolve()


def report_target(
    html: str | os.PathLike[str] | None, settings: Settings, campaign_id: str
) -> Path | None:
    """Where the run's HTML page goes: ``html`` when given (relative to the current folder),
    none for ``""``, and by default ``campaign-ID.html`` in the ``reports/`` folder of the
    shop whose settings the run read (``bcartnb init`` makes it); none outside a shop."""
    if html is not None:
        return Path(html).expanduser().resolve() if str(html) else None
    if settings.source is None or not is_campaign_id(campaign_id):
        return None  # an id that is not one never names a file
    reports = settings.source.parent / "reports"
    return reports / f"campaign-{campaign_id}.html" if reports.is_dir() else None


def show_report(
    plan: CampaignPlan,
    summary: DeliverySummary,
    params: Mapping[str, Any],
    html: str | os.PathLike[str] | None = None,
    **run: Unpack[RunContext],
) -> dict[str, Any]:
    """Display the report in the notebook, block by block, write it as an HTML page
    (:func:`report_target`); return the recorded summary.

    ``run`` is what the notebook knows besides (:class:`~bcartnb.report.gather.RunContext`):
    ``scheduled_at``, and ``ledger_usage``, read from the plan's ledger when not given.
    """
    doc = from_run(plan, summary, params, **run)
    if not summary.dry_run:  # what only this run knows, for `bcartnb report ID` later
        notes = {
            "scheduled_at": doc.scheduled_at,
            "sender": doc.sender,
            "subject": mask_text(plan.draft.subject),
            "received_subject": doc.subject,
        }
        try:
            write_notes(
                require_ledger(plan.settings), doc.campaign_id, {**notes, "quota": summary.quota}
            )
        except OSError as err:  # the mail went out: the report must still be shown
            doc.notes.append(
                "`bcartnb report` 用のメモを書き込めませんでした"
                f"（{err.filename}: {err.strerror}）。あとで書き出すレポートには、"
                "予定時刻と送信時の差出人が載りません。"
            )
    _write_page(doc, report_target(html, plan.settings, doc.campaign_id))
    show(*report_blocks(doc))
    return record_summary(summary.as_dict())


def _write_page(doc: CampaignReport, target: Path | None) -> None:
    """The HTML page, or a note in the report saying why there is none (the run is done:
    a folder that cannot be written must not hide its report)."""
    if target is None:
        return
    try:
        written = write_document(doc, target)
    except BcartnbError as err:
        doc.notes.append(f"HTMLのレポートを書き出せませんでした（{err.ja or err}）。")
        return
    print(f"HTMLのレポートを書き出しました: {written}")
