"""The values a template sees besides the member's columns: the signature, the unsubscribe token
and the member's unsubscribe link.

Each is added by wrapping the member's context builder once per campaign, and only when a
template names it, so a campaign that uses neither pays nothing per member. Every render path
(the fast templates and the reference pipeline) reads the same context, so the same values.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from bcartnb.compose.checks import member_id_of, recipient
from bcartnb.compose.headers import unsubscribe_uri
from bcartnb.exceptions import ComposeError, HygieneError
from bcartnb.mailtokens import TokenSigner
from bcartnb.templates import SIGNATURE_FIELDS, UNSUBSCRIBE_TOKEN_FIELD
from bcartnb.templates.compiled import CompiledTemplate
from bcartnb.templates.fields import UNSUBSCRIBE_LINK_FIELDS

__all__ = ["Builder", "with_link", "with_signature", "with_token"]

Builder = Callable[[Mapping[str, Any]], dict[str, Any]]


def with_signature(build: Builder, names: set[str], value: str) -> Builder:
    """The member's context, plus ``signature``/``署名`` when a template names them."""
    wanted = SIGNATURE_FIELDS & names
    if not wanted:
        return build
    extra = dict.fromkeys(wanted, value)

    def with_signature(member: Mapping[str, Any]) -> dict[str, Any]:
        ctx = build(member)
        ctx.update(extra)
        return ctx

    return with_signature


def with_token(
    build: Builder, names: set[str], secret: str | None, where: str, campaign_id: str
) -> Builder:
    """The member's context, plus the signed ``unsubscribe_token`` when a template or the
    unsubscribe settings name it: one member value, so every render path gets the same.

    Without the secret this refuses here, when the campaign is planned (the dry run);
    ``where`` names what asks for the token in that error.
    """
    if UNSUBSCRIBE_TOKEN_FIELD not in names:
        return build
    signer = TokenSigner(secret, where)

    def with_token(member: Mapping[str, Any]) -> dict[str, Any]:
        ctx = build(member)
        member_id = member_id_of(member)
        try:
            token = signer.make(campaign_id, member_id, recipient(member, member_id))
        except (ValueError, HygieneError) as err:
            raise ComposeError(
                f"member {member_id}: no unsubscribe token: {err}",
                ja=f"会員 {member_id} の配信停止リンクを作れません"
                "（メールアドレスを確認してください）。",
            ) from err
        ctx[UNSUBSCRIBE_TOKEN_FIELD] = token
        return ctx

    return with_token


def with_link(build: Builder, names: set[str], link: CompiledTemplate | str) -> Builder:
    """The member's context, plus ``unsubscribe_link``/``配信停止リンク`` when a template names
    them: ``link`` rendered for the member (the settings' ``unsubscribe_url``, its token
    already in the context) or, with no URL set, a fixed ``mailto:``. Wrap it around
    :func:`with_token`, whose token the URL may hold."""
    wanted = UNSUBSCRIBE_LINK_FIELDS & names
    if not wanted:
        return build
    if isinstance(link, str):
        fixed = dict.fromkeys(wanted, unsubscribe_uri(link))

        def with_fixed_link(member: Mapping[str, Any]) -> dict[str, Any]:
            ctx = build(member)
            ctx.update(fixed)
            return ctx

        return with_fixed_link

    def with_link(member: Mapping[str, Any]) -> dict[str, Any]:
        ctx = build(member)
        value = unsubscribe_uri(link.render(ctx, member_id_of(member)))
        ctx.update(dict.fromkeys(wanted, value))
        return ctx

    return with_link
