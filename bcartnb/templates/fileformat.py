"""A template as a file: a small TOML header between two ``+++`` lines, then the body.

A shop keeps its recurring mails as templates: one plain UTF-8 file per template in the
templates folder (``Settings.templates``), named ``<テンプレート名>.txt`` so that a double
click opens it in any editor. The file starts with a small TOML header between two ``+++``
lines (the "front matter" of Hugo and many static-site tools), then the body, verbatim::

    +++
    subject = "【{{ 会社名 }} 様】新商品のご案内"
    html = false
    +++
    {{ 会社名 }}
    {{ 担当者名 }} 様

    いつもお世話になっております。…

``subject`` (件名) is required; ``html`` (HTMLメールで送信) defaults to false. The body needs no
quoting or escaping of any kind, which is why it is not a TOML string: a shop person pastes
the HTML from their newsletter tool and is done. A BOM and Windows line ends are accepted.

The name is the file name, so it must be a safe one on every OS (Japanese is welcome).
"""

from __future__ import annotations

import tomllib
import unicodedata
from dataclasses import dataclass

from bcartnb.exceptions import TemplateError

__all__ = [
    "SUFFIX",
    "Template",
    "check_name",
    "parse_template_file",
    "render_template_file",
]

SUFFIX = ".txt"
_FRONT = "+++"
_MAX_NAME = 100
_BAD_NAME_CHARS = set('/\\:*?"<>|')
_WINDOWS_RESERVED = {"CON", "PRN", "AUX", "NUL"} | {
    f"{p}{i}" for p in ("COM", "LPT") for i in range(1, 10)
}


@dataclass(frozen=True)
class Template:
    """One stored template: what the compose screen's テンプレート選択 fills in."""

    name: str
    subject: str
    body: str
    html: bool = False


def _toml_string(value: str) -> str:
    out = ['"']
    for ch in value:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ord(ch) < 0x20 or ch == "\x7f":
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def render_template_file(template: Template) -> str:
    """The file text for ``template``; :func:`parse_template_file` reads it back exactly."""
    html = "true" if template.html else "false"
    return f"{_FRONT}\nsubject = {_toml_string(template.subject)}\nhtml = {html}\n{_FRONT}\n" + (
        template.body
    )


def parse_template_file(text: str, name: str, where: str) -> Template:
    """Read the front matter and body; errors name the file and what is wrong with it."""
    text = text.removeprefix("\ufeff").replace("\r\n", "\n")
    lines = text.split("\n")
    if not lines or lines[0].strip() != _FRONT:
        raise TemplateError(
            f"{where}: must start with a '+++' line (the template header)",
            ja=f"テンプレート {where} は '+++' の行（ヘッダー）で始めてください。",
        )
    try:
        end = next(i for i in range(1, len(lines)) if lines[i].strip() == _FRONT)
    except StopIteration:
        raise TemplateError(
            f"{where}: the header has no closing '+++' line",
            ja=f"テンプレート {where} のヘッダーを閉じる '+++' の行がありません。",
        ) from None
    try:
        head = tomllib.loads("\n".join(lines[1:end]))
    except tomllib.TOMLDecodeError as err:
        raise TemplateError(
            f"{where}: header is not valid TOML: {err}",
            ja=f"テンプレート {where} のヘッダーが TOML として正しくありません。",
        ) from err
    unknown = sorted(set(head) - {"subject", "html"})
    if unknown:
        raise TemplateError(
            f"{where}: unknown header key {unknown[0]!r} (known: html, subject)",
            ja=f"テンプレート {where} のヘッダーに知らない項目 {unknown[0]!r} があります"
            "（subject と html だけ）。",
        )
    subject = head.get("subject")
    if not isinstance(subject, str):
        raise TemplateError(
            f"{where}: header key 'subject' (件名) is required and must be a string",
            ja=f"テンプレート {where} のヘッダーに件名（subject）を文字列で書いてください。",
        )
    html = head.get("html", False)
    if not isinstance(html, bool):
        raise TemplateError(
            f"{where}: header key 'html' must be true or false, not {html!r}",
            ja=f"テンプレート {where} のヘッダーの html は true か false にしてください（{html!r}"
            " ではなく）。",
        )
    return Template(name=name, subject=subject, body="\n".join(lines[end + 1 :]), html=html)


def check_name(name: str) -> str:
    """A template name that is a safe file name on every OS; Japanese is welcome."""
    if not isinstance(name, str):
        raise TemplateError(
            f"template name must be a string, not {name!r}",
            ja=f"テンプレート名は文字列で指定してください（{name!r} ではなく）。",
        )
    norm = unicodedata.normalize("NFC", name)
    problem = None
    if not norm.strip():
        problem = "is empty"
    elif len(norm) > _MAX_NAME:
        problem = f"is longer than {_MAX_NAME} characters"
    elif any(ch in _BAD_NAME_CHARS for ch in norm):
        bad = next(ch for ch in norm if ch in _BAD_NAME_CHARS)
        problem = f"contains {bad!r} (not allowed: {' '.join(sorted(_BAD_NAME_CHARS))})"
    elif any(unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp") for ch in norm):
        problem = "contains a control character"
    elif norm[0] in ". " or norm[-1] in ". " or norm[0] == "\u3000" or norm[-1] == "\u3000":
        problem = "starts or ends with a dot or a space"
    elif norm.split(".")[0].upper() in _WINDOWS_RESERVED:
        problem = "is a reserved device name on Windows"
    if problem:
        raise TemplateError(
            f"template name {name!r} {problem}",
            ja=f"テンプレート名「{name}」は使えません（空、長すぎる、使えない文字など）。",
        )
    return norm
