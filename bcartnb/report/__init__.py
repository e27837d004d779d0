"""The campaign report: the document a reviewer opens after a campaign.

One :class:`CampaignReport` holds what the document says, gathered either from the run that
just happened (:func:`from_run`, the notebook's :func:`show_report`) or afterwards from the
ledger (:func:`from_ledger`, ``bcartnb report ID``); :func:`report_blocks` turns it into the
same outputs both ways, and :func:`export_html` makes the HTML page a reviewer opens. What
the ledger does not hold (a notebook run's scheduled time, its From and subject, the quota
it saw) is kept in a JSON file per campaign beside the ledger file (:func:`notes_path`).
The rules for every function of the package:

* members' addresses are masked (``t***@example.co.jp``, :func:`mask_address`, the one rule
  in :mod:`bcartnb.privacy`): a report is passed around, a member list is not; the shop's
  own addresses (From, admin, the signature's: ``Settings.own_addresses``) are shown as
  written, since the reviewer checks the legally required contact line; the subject is
  shown as one member received it, that member's personal values masked;
* nothing from the settings but the plan, the sender, the admin address and the server's
  host is shown, so the SMTP password (read from the environment only) cannot end up in an
  executed notebook;
* every value that comes from a member, a template, a parameter, a setting or a server's
  reply is shown as text, never as markup (:mod:`~bcartnb.report.blocks`); the HTML part of
  the sample mail is the one place where markup is meant, shown in a sandboxed iframe
  (:func:`mail_frame`) with no scripts and no requests to other hosts.

Laid out by concern, each module importing only those above it in this list:
:mod:`~bcartnb.report.blocks` (escaped HTML with a plain-text twin: what every report, the
list-hygiene one too, is made of), :mod:`~bcartnb.report.notes` (the notes file),
:mod:`~bcartnb.report.charts`, :mod:`~bcartnb.report.tables`, :mod:`~bcartnb.report.printcopy`
(the HTML mail for paper), :mod:`~bcartnb.report.mail`
(the sample mail), :mod:`~bcartnb.report.results` (開封・クリック, with its chart),
:mod:`~bcartnb.report.summary` (what a caller reads back),
:mod:`~bcartnb.report.document` (the sections), :mod:`~bcartnb.report.gather` (from a run or
the ledger), :mod:`~bcartnb.report.export` (the HTML page) and
:mod:`~bcartnb.report.notebook` (what the notebooks call, which writes the page too). The
names below are the package's face.
"""

from __future__ import annotations

from bcartnb.privacy import mask_address, mask_text
from bcartnb.report.blocks import Block, html_table
from bcartnb.report.charts import breakdown_chart, usage_chart
from bcartnb.report.document import DRY_RUN_BANNER, CampaignReport, outcome_words, report_blocks
from bcartnb.report.export import HIDDEN_CELL_TAGS, export_html, write_document, write_report
from bcartnb.report.gather import from_ledger, from_run
from bcartnb.report.mail import mail_frame, sample_mail, sample_mail_html, show_mail
from bcartnb.report.notebook import (
    DEMO_TEMPLATE,
    data_dir,
    demo_path,
    notebook_params,
    report_target,
    resolve_members,
    show_report,
)
from bcartnb.report.notes import notes_path
from bcartnb.report.summary import SUMMARY_MIMETYPE, read_summary, record_summary
from bcartnb.report.tables import (
    FAILURE_LABELS,
    counts_table,
    failure_label,
    mask_frame,
    parameters_table,
    quota_table,
    reasons_table,
)

__all__ = [
    "DEMO_TEMPLATE",
    "DRY_RUN_BANNER",
    "FAILURE_LABELS",
    "HIDDEN_CELL_TAGS",
    "SUMMARY_MIMETYPE",
    "Block",
    "CampaignReport",
    "breakdown_chart",
    "counts_table",
    "data_dir",
    "demo_path",
    "export_html",
    "failure_label",
    "from_ledger",
    "from_run",
    "html_table",
    "mail_frame",
    "mask_address",
    "mask_frame",
    "mask_text",
    "notebook_params",
    "notes_path",
    "outcome_words",
    "parameters_table",
    "quota_table",
    "read_summary",
    "reasons_table",
    "record_summary",
    "report_blocks",
    "report_target",
    "resolve_members",
    "sample_mail",
    "sample_mail_html",
    "show_mail",
    "show_report",
    "usage_chart",
    "write_document",
    "write_report",
]
