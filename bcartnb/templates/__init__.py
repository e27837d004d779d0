"""Templates (メールテンプレート): the shop's recurring mails, stored, checked and rendered.

A rule of the mail, below every stage that sends one. One concern a module:

- :mod:`~bcartnb.templates.fileformat`: a template as a file (a ``+++`` TOML header, then the
  body) and the names a file may have;
- :mod:`~bcartnb.templates.store`: the template store (メールテンプレート管理) on disk;
- :mod:`~bcartnb.templates.fields`: the merge fields (差し込み項目), their Japanese aliases
  (the full table is there) and the context a member row gives a template;
- :mod:`~bcartnb.templates.sandbox`: the sandboxed Jinja2 environment and its two limits
  (``render_timeout``, ``max_mail_bytes``);
- :mod:`~bcartnb.templates.compiled`: a template compiled once, rendered per member, with
  errors naming template, part, line and member;
- :mod:`~bcartnb.templates.checks`: a template checked before it is stored or sent (unknown
  fields with the near ones suggested, a sample render).
"""

from __future__ import annotations

from bcartnb.templates.checks import check_fields, check_renders
from bcartnb.templates.compiled import CompiledTemplate, RenderDeclined, compile_template
from bcartnb.templates.fields import (
    COMPOSER_FIELDS,
    FIELD_ALIASES,
    SAMPLE_MEMBER,
    SIGNATURE_FIELDS,
    UNSUBSCRIBE_LINK_FIELDS,
    UNSUBSCRIBE_TOKEN_FIELD,
    columns_for,
    context_builder,
    field_label,
    is_missing,
    merge_fields,
)
from bcartnb.templates.fileformat import (
    Template,
    check_name,
    parse_template_file,
    render_template_file,
)
from bcartnb.templates.sandbox import LimitedSandbox, make_environment
from bcartnb.templates.store import TemplateStore

__all__ = [
    "COMPOSER_FIELDS",
    "FIELD_ALIASES",
    "SAMPLE_MEMBER",
    "SIGNATURE_FIELDS",
    "UNSUBSCRIBE_LINK_FIELDS",
    "UNSUBSCRIBE_TOKEN_FIELD",
    "CompiledTemplate",
    "LimitedSandbox",
    "RenderDeclined",
    "Template",
    "TemplateStore",
    "check_fields",
    "check_name",
    "check_renders",
    "columns_for",
    "compile_template",
    "context_builder",
    "field_label",
    "is_missing",
    "make_environment",
    "merge_fields",
    "parse_template_file",
    "render_template_file",
]
