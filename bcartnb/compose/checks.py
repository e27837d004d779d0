"""What a member's values may not bring into a mail, each refused naming the member and field.

A member without an id, an address we cannot send to, a CR, LF, NUL or other control in a
header (it would end the header and start another, or a second message), a character the
charset cannot encode, a mail over ``max_mail_bytes``: each is a
:class:`~bcartnb.exceptions.ComposeError` whose Japanese first says which member and which
column to fix, so a dry run points at the row.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from bcartnb.exceptions import ComposeError
from bcartnb.templates import field_label, is_missing

__all__ = [
    "check_header_value",
    "check_member_header",
    "check_size",
    "encoding_error",
    "member_id_of",
    "plain",
    "recipient",
    "who",
]

_LOCAL_RE = re.compile(r"[A-Za-z0-9!#$%&'*+\-/=?^_{|}~]+(?:\.[A-Za-z0-9!#$%&'*+\-/=?^_{|}~]+)*")
_DOMAIN_RE = re.compile(
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
)
_TRIM = " \t\u3000"
_HEADER_BREAKERS = ("\r", "\n", "\x00")
# Every control character but TAB: CR, LF and NUL would end a header (or the message); the
# others (ESC, BEL, DEL, the C1 range) are invisible in a subject and some are acted on by the
# terminals and mail clients that show it.
_HEADER_CONTROL_RE = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f]")


def check_member_header(
    value: str, member_id: Any, ctx: Mapping[str, Any], what: str, what_ja: str
) -> None:
    """A CR, LF or NUL in a header would end it and start another (or a second message);
    any other control character is refused too (see :data:`_HEADER_CONTROL_RE`)."""
    found = _HEADER_CONTROL_RE.search(value)
    if found is None:
        return  # one scan in C: this runs for every header of every member
    breakers = [c for c in _HEADER_BREAKERS if c in value]
    ch = breakers[0] if breakers else found.group()
    field = _culprit_field(ctx, ch)
    if ch == "\x00":
        kind, kind_ja, why = "a NUL character", "NUL文字", ", which could inject a header"
    elif ch in "\r\n":
        kind, kind_ja, why = "a line break (CR/LF)", "改行", ", which could inject a header"
    else:
        kind, kind_ja, why = f"a control character (U+{ord(ch):04X})", "制御文字", ""
    where = f"field {field_label(field)}" if field else f"the {what} template"
    source = f"「{field}」の値" if field else "テンプレート"
    raise ComposeError(
        f"member {member_id}: the {what} contains {kind} from {where}{why}",
        ja=f"会員 {member_id} の{what_ja}に{kind_ja}が入ります（{source}）。"
        "ヘッダーには使えないので、会員データを直してください。",
    )


def check_header_value(value: str, what: str) -> None:
    """A header value of the campaign (the settings, a template): no line break, no NUL."""
    if "\r" in value or "\n" in value:
        raise ComposeError(
            f"{what} contains a line break (CR/LF), which could inject a header",
            ja=f"{what} に改行が入っています。ヘッダーに改行は使えません。",
        )
    if "\x00" in value:
        raise ComposeError(
            f"{what} contains a NUL character", ja=f"{what} に NUL 文字が入っています。"
        )


def check_size(size: int, limit: int, name: str, member_id: Any) -> None:
    """A mail over the settings' ``max_mail_bytes`` (``limit``), from template ``name``."""
    if size > limit:
        where = "the draft" if name == "draft" else f"template {name!r}"
        where_ja = "入力した本文" if name == "draft" else f"テンプレート「{name}」"
        raise ComposeError(
            f"member {member_id}: the mail from {where} is over max_mail_bytes "
            f"({size:,} > {limit:,} bytes)",
            ja=f"会員 {member_id} のメール（{where_ja}）が大きすぎます"
            f"（{size:,} バイト、上限 {limit:,} バイト）。",
        )


def who(member_id: Any, what: str) -> str:
    return f"member {member_id}: {what}" if member_id is not None else what


def member_id_of(member: Mapping[str, Any]) -> Any:
    value = member.get("id")
    if is_missing(value):
        raise ComposeError(
            f"a member has no id (email {member.get('email')!r})",
            ja=f"会員IDのない会員がいます（メールアドレス {member.get('email')!r}）"
            "。会員ファイルを確かめてください。",
        )
    return plain(value)


def plain(value: Any) -> Any:
    """numpy scalars → Python values, so ids compare and print like the ones users typed."""
    item = getattr(value, "item", None)
    return item() if callable(item) else value


def recipient(member: Mapping[str, Any], member_id: Any) -> str:
    value = member.get("email")
    if is_missing(value):
        raise ComposeError(
            f"member {member_id}: email is empty",
            ja=f"会員 {member_id} のメールアドレスが空欄です。",
        )
    to = str(value).strip(_TRIM)
    if "\r" in to or "\n" in to:
        raise ComposeError(
            f"member {member_id}: email contains a line break (CR/LF)",
            ja=f"会員 {member_id} のメールアドレスに改行が入っています。",
        )
    local, at, domain = to.rpartition("@")
    if not at or not _LOCAL_RE.fullmatch(local) or not _DOMAIN_RE.fullmatch(domain):
        raise ComposeError(
            f"member {member_id}: email {to!r} is not an address we can send to",
            ja=f"会員 {member_id} のメールアドレス {to!r} には送れません。",
        )
    return to


def _culprit_field(ctx: Mapping[str, Any], ch: str) -> str | None:
    """The field whose value brought ``ch`` into the mail, if one did (else the template)."""
    for name, value in ctx.items():
        if isinstance(value, Mapping):
            continue
        if ch in str(value) or (ch == "\n" and "\r" in str(value)):
            return name
    return None


def _culprit(ctx: Mapping[str, Any], ch: str, default: str) -> str:
    name = _culprit_field(ctx, ch)
    return default if name is None else f"field {field_label(name)}"


def encoding_error(
    err: UnicodeEncodeError, member_id: Any, part: str, ctx: Mapping[str, Any], charset: str
) -> ComposeError:
    """The error for a character of ``part`` that ``charset`` (its MIME label) cannot encode."""
    ch = err.object[err.start]
    where = _culprit(ctx, ch, f"the {part} template")
    field = _culprit_field(ctx, ch)
    part_ja = {"subject": "件名", "body": "本文", "HTML body": "HTML本文"}.get(part, part)
    source = f"「{field}」の値" if field else "テンプレート"
    return ComposeError(
        f"member {member_id}: {where} has {ch!r} (U+{ord(ch):04X}) in the {part}, which "
        f"{charset} cannot encode; send in UTF-8 or replace the character",
        ja=f"会員 {member_id} の{part_ja}に、{charset} では送れない文字「{ch}」が"
        f"{source}にあります。文字コードを UTF-8 にするか、その文字を置き換えてください。",
    )
