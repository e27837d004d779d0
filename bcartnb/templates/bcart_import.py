"""A B-Cart template pasted as text → one of ours: 件名 and 本文, placeholders as merge fields.

B-Cart's メールテンプレート管理 screen has a 件名 box and a 本文 box; a shop moving its mails over
copies both. The member-mail help page documents no placeholder syntax of its own, so a pasted
``{会社名}`` or ``{{ 会社名 }}`` is read by *name*: a name our merge fields know (the Japanese
aliases, the canonical columns, the member file's custom columns, or one of the few other
words shops write for the same thing, :data:`BCART_NAMES`) becomes ``{{ name }}``; any other
name is kept as the literal text it was and reported, so the template screen can say what
could not be mapped. Every other brace is escaped, so a pasted text always compiles.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final

from bcartnb.exceptions import TemplateError
from bcartnb.templates.fields import merge_fields
from bcartnb.templates.fileformat import Template

__all__ = ["BCART_NAMES", "ImportedTemplate", "import_bcart_text"]

#: Words shops write for one of our merge fields, beside the fields' own names.
BCART_NAMES: Final[Mapping[str, str]] = {
    "会社名(カナ)": "会社名カナ",
    "担当者": "担当者名",
    "担当者氏名": "担当者名",
    "氏名": "担当者名",
    "お名前": "担当者名",
    "担当者(姓)": "担当者姓",
    "担当者(名)": "担当者名前",
    "部署": "担当部署",
    "会員番号": "会員ID",
    "郵便番号(〒)": "郵便番号",
    "ビル建物名など": "ビル建物名",
    "町域・番地": "町域番地",
    "メール": "メールアドレス",
    "signature": "署名",
}
#: ``{{ name }}`` or ``{name}``: a name of one line, no brace inside.
_PLACEHOLDER: Final = re.compile(r"\{\{\s*([^{}\n]{1,60}?)\s*\}\}|\{\s*([^{}\n]{1,60}?)\s*\}")
#: What would open a Jinja tag, comment or expression in the literal text; a last ``{``
#: too, which would open one with the ``{{`` that follows it.
_JINJA_OPEN: Final = re.compile(r"\{[{%#]|\{$")
_SUBJECT: Final = re.compile(r"^\s*(?:件名|タイトル|subject)\s*[:：]\s?(.*)$", re.IGNORECASE)
_BODY: Final = re.compile(r"^\s*(?:本文|body)\s*[:：]\s?(.*)$", re.IGNORECASE)
_HTML_TAG: Final = re.compile(r"<\s*(?:html|body|p|br|div|table|a|img|span|h[1-6])\b", re.I)


@dataclass(frozen=True)
class ImportedTemplate:
    """The template made from the pasted text, and the placeholders left as they were."""

    template: Template
    unmapped: tuple[str, ...]


def _literal(text: str) -> str:
    """Text that Jinja prints as it is: every ``{{``/``{%``/``{#`` quoted, and a last ``{``."""
    return _JINJA_OPEN.sub(lambda m: "{{ " + repr(m.group()) + " }}", text)


def _convert(text: str, known: Mapping[str, str], unmapped: dict[str, None]) -> str:
    out: list[str] = []
    at = 0
    for m in _PLACEHOLDER.finditer(text):
        name = (m.group(1) or m.group(2) or "").strip()
        field = known.get(name)
        out.append(_literal(text[at : m.start()]))
        if field is None:
            unmapped[m.group()] = None
            out.append(_literal(m.group()))
        else:
            out.append(f"{{{{ {field} }}}}")
        at = m.end()
    out.append(_literal(text[at:]))
    return "".join(out)


def _split(text: str) -> tuple[str, str]:
    """件名 (the ``件名:`` line) and 本文 (after an optional ``本文:`` line, else the rest)."""
    lines = text.removeprefix("\ufeff").replace("\r\n", "\n").replace("\r", "\n").split("\n")
    subject: str | None = None
    rest: list[str] = []
    for i, line in enumerate(lines):
        m = _SUBJECT.match(line) if subject is None else None
        if m:
            subject = m.group(1).strip()
            continue
        b = _BODY.match(line)
        if b and subject is not None:
            rest = ([b.group(1)] if b.group(1).strip() else []) + lines[i + 1 :]
            break
        rest.append(line)
    if subject is None or not subject:
        raise TemplateError(
            "pasted B-Cart template: no subject line ('件名: ...')",
            ja="貼り付けたテンプレートに件名がありません。1行目に「件名：…」と書いてから、"
            "本文を続けてください。",
        )
    while rest and not rest[0].strip():
        rest.pop(0)
    body = "\n".join(rest).rstrip()
    if not body:
        raise TemplateError(
            "pasted B-Cart template: the body is empty",
            ja="貼り付けたテンプレートに本文がありません。件名の行の下に本文を貼り付けてください。",
        )
    return subject, body + "\n"


def import_bcart_text(text: str, name: str, columns: Iterable[str] = ()) -> ImportedTemplate:
    """The template a pasted B-Cart template gives under ``name`` (not stored: the screen shows
    it and :meth:`~bcartnb.templates.TemplateStore.save` checks and stores it).

    ``columns`` are the member file's, so a custom field (``{業種}``) maps too. HTML is ticked
    when the body holds HTML tags, as B-Cart's 「HTMLメールで送信」 would have been.
    """
    subject, body = _split(text)
    known = {field: field for field, _ in merge_fields(columns)}
    known.update({k: v for k, v in BCART_NAMES.items() if k not in known})
    unmapped: dict[str, None] = {}
    template = Template(
        name=name,
        subject=_convert(subject, known, unmapped),
        body=_convert(body, known, unmapped),
        html=bool(_HTML_TAG.search(body)),
    )
    return ImportedTemplate(template, tuple(unmapped))
