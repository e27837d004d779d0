"""A template checked before it is stored or sent: every field known, every part rendering.

A typo in a field name (``{{ 会社 }}`` for ``{{ 会社名 }}``) is the template's fault, not the
first member's, so it is refused once, naming the near fields; and a template that cannot
render for a sample member is refused in the template screen rather than at send time in
front of 10,000 members.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from typing import Any

from bcartnb import htmldepth
from bcartnb.exceptions import TemplateError
from bcartnb.orders.purchases import PURCHASE_COLUMNS
from bcartnb.templates.compiled import CompiledTemplate, compile_template
from bcartnb.templates.fields import (
    COMPOSER_FIELDS,
    SIGNATURE_FIELDS,
    UNSUBSCRIBE_LINK_FIELDS,
    UNSUBSCRIBE_TOKEN_FIELD,
    context_builder,
    merge_fields,
)
from bcartnb.templates.fileformat import Template

__all__ = ["check_fields", "check_renders"]


def check_fields(compiled: CompiledTemplate, columns: Iterable[str]) -> None:
    """Refuse a field that exists for no member at all, naming the near ones.

    Without this, ``{{ 会社 }}`` (for ``{{ 会社名 }}``) failed at the first member as "会員 1012
    の「会社」が空欄か…", blaming the member for the template's typo. Checked once per
    campaign against the member columns, before any member is rendered.
    """
    known = {name for name, _ in merge_fields(columns)}
    known |= COMPOSER_FIELDS | {"member"} | set(compiled.env.globals)
    known |= {str(c) for c in columns}
    unknown = sorted(
        (n for n in compiled.names if n not in known),
        key=lambda n: compiled.field_lines.get(n, 0),
    )
    if not unknown:
        return
    field = unknown[0]
    line = compiled.field_lines.get(field)
    if field in PURCHASE_COLUMNS:  # a real field, of members joined with their orders
        raise TemplateError(
            f"{compiled.where(line)}: unknown field {field!r}: a purchase column, "
            "there only when the campaign reads orders (orders = ...)",
            ja=f"{compiled.where_ja(line)}: 「{field}」は購入履歴の差し込み項目です。"
            "受注CSV（orders）を読み込んだ会員にだけ使えます。",
        )
    candidates = [name for name, _ in merge_fields(columns)]
    near = difflib.get_close_matches(field, candidates, n=5, cutoff=0.5)
    hint_ja = f"近い項目: {'、'.join(near)}。" if near else ""
    hint = f"; did you mean {', '.join(near)}?" if near else ""
    raise TemplateError(
        f"{compiled.where(line)}: unknown field {field!r} (no such member column or alias){hint}",
        ja=f"{compiled.where_ja(line)}: 「{field}」という差し込み項目はありません。{hint_ja}"
        "差し込み項目の一覧から選んでください。",
    )


def check_renders(template: Template, member: Mapping[str, Any]) -> None:
    """Render subject and body for ``member``; raise the first TemplateError.

    An HTML body, as rendered, is also held to the composer's depth limit
    (:mod:`bcartnb.htmldepth`): a template too deep for css-inline is not stored. (The source
    itself is not measured: both branches of an ``{% if %}`` would count.)
    """
    member_id = member.get("id")
    for part, source, html in (
        ("subject", template.subject, False),
        ("body", template.body, template.html),
    ):
        compiled = compile_template(source, template.name, part, html)
        check_fields(compiled, member.keys())  # a typo is the template's, not the member's
        context = context_builder(compiled.names)(member)
        context.update(dict.fromkeys(SIGNATURE_FIELDS & compiled.names, "署名"))
        if UNSUBSCRIBE_TOKEN_FIELD in compiled.names:
            context[UNSUBSCRIBE_TOKEN_FIELD] = "sample-token"
        link = "https://shop.example.invalid/mail/stop/sample-token"
        context.update(dict.fromkeys(UNSUBSCRIBE_LINK_FIELDS & compiled.names, link))
        rendered = compiled.render(context, member_id)
        if html:
            htmldepth.check_depth(rendered, compiled.where(None), compiled.where_ja(None))
