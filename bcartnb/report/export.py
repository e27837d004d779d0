"""The report document: the notebook's outputs as one HTML page a reviewer opens.

:func:`export_html` makes it from an executed notebook: the outputs without its code,
prompts, Markdown or checks, through the small nbconvert template in ``template/``
(JupyterLab's page, CSS inline, and none of the scripts it would load from a CDN). The
executed notebook stays for whoever wants the code. :func:`write_document` makes the same page
from a gathered report, through a notebook built in memory: for any campaign from the ledger
(:func:`write_report`, ``bcartnb report ID``) and for the papermill run itself, which writes
its page while it runs (:func:`~bcartnb.report.notebook.show_report`).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bcartnb.exceptions import InputError
from bcartnb.files import write_atomically
from bcartnb.report.document import CampaignReport, report_blocks, report_title
from bcartnb.report.gather import from_ledger
from bcartnb.report.summary import SUMMARY_MIMETYPE, SUMMARY_TAG, recorded_summaries

if TYPE_CHECKING:
    from bcartnb.settings import Settings

__all__ = ["HIDDEN_CELL_TAGS", "export_html", "write_document", "write_report"]

_TEMPLATES = Path(__file__).resolve().parent / "template"
#: Outputs the document shows; a failed cell's traceback and stray prints are left out
#: (the report says in words how the run ended).
_SHOWN_OUTPUTS = ("display_data", "execute_result")
#: Cells the document leaves out: the notebook's own checks and papermill's error banner.
HIDDEN_CELL_TAGS = ("bcartnb-hide", "injected-parameters", "parameters", "papermill-error-cell-tag")


def _exporter() -> Any:
    """nbconvert's ``lab`` page through our small template: no code, no prompts, no
    Markdown, no require.js/MathJax/widget scripts from a CDN; the summary left out."""
    from nbconvert import HTMLExporter
    from traitlets.config import Config

    c = Config()
    c.HTMLExporter.extra_template_basedirs = [str(_TEMPLATES)]
    c.HTMLExporter.template_name = "bcartnb_report"
    c.HTMLExporter.exclude_input = True
    c.HTMLExporter.exclude_input_prompt = True
    c.HTMLExporter.exclude_output_prompt = True
    c.HTMLExporter.exclude_markdown = True
    c.HTMLExporter.exclude_raw = True
    c.HTMLExporter.exclude_unknown = True
    c.HTMLExporter.language_code = "ja"
    c.TagRemovePreprocessor.enabled = True
    c.TagRemovePreprocessor.remove_cell_tags = set(HIDDEN_CELL_TAGS)
    c.TagRemovePreprocessor.remove_single_output_tags = {SUMMARY_TAG}
    make: Callable[..., Any] = HTMLExporter
    return make(config=c)


def export_html(notebook: str | os.PathLike[str] | Any, target: str | os.PathLike[str]) -> Path:
    """The report document: an executed notebook (a path or a node) as one standalone,
    inline HTML page (no code, nothing loaded from the network). Returns ``target``."""
    import nbformat

    read: Callable[..., Any] = nbformat.read
    nb = read(str(notebook), as_version=4) if isinstance(notebook, str | os.PathLike) else notebook
    for cell in nb.cells:  # a failed run's cell output: the report above says it in words
        if cell.get("cell_type") == "code":
            cell.outputs = [
                o for o in cell.get("outputs", []) if o.get("output_type") in _SHOWN_OUTPUTS
            ]
    title = _title_of(nb)
    if title:
        nb.metadata["title"] = title
    body, _ = _exporter().from_notebook_node(nb)
    out = Path(target)
    try:  # whole or not at all, even with two exports of one report at once
        write_atomically(out, body)
    except OSError as err:
        raise InputError(
            f"{out}: cannot write the report: {err.strerror or err}",
            ja=f"レポートを書き出せません（{out}）。フォルダがあるか、書き込めるかを確かめてください。",
        ) from err
    return out


def _title_of(nb: Any) -> str | None:
    found = recorded_summaries(nb)
    return report_title(str(found[0].get("campaign_id", ""))) if found else None


def write_report(campaign_id: str, settings: Settings, target: str | os.PathLike[str]) -> Path:
    """``bcartnb report ID``: the campaign's report document from the ledger, as HTML."""
    return write_document(from_ledger(campaign_id, settings), target)


def write_document(doc: CampaignReport, target: str | os.PathLike[str]) -> Path:
    """A gathered report as the HTML page :func:`export_html` makes of an executed notebook:
    the same blocks, through a notebook built in memory. Returns ``target``."""
    from nbformat import v4

    new_output: Callable[..., Any] = v4.new_output
    new_notebook: Callable[..., Any] = v4.new_notebook
    new_code_cell: Callable[..., Any] = v4.new_code_cell
    outputs = [new_output("display_data", data=block) for block in report_blocks(doc)]
    outputs.append(
        new_output(
            "display_data",
            data={SUMMARY_MIMETYPE: doc.summary, "text/plain": ""},
            metadata={"tags": [SUMMARY_TAG]},
        )
    )
    nb = new_notebook(
        cells=[new_code_cell(outputs=outputs, id="report")], metadata={"title": doc.title}
    )
    return export_html(nb, target)
