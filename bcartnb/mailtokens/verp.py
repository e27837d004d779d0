"""The names a mail carries back: its VERP return path and its Message-ID's tokens.

A bounce or a complaint is worth something only when it is tied to one mail the shop sent
(:mod:`bcartnb.hygiene.matching` weighs that). Two things in the mail name it, both written
by the rules here so that the writer (compose, delivery) and the reader (hygiene) cannot drift:

* **VERP** (``[hygiene] verp = true``): each mail's envelope sender is
  ``local+{campaign}.{member}.{tag}@domain``, ``tag`` an HMAC of the campaign and member
  under ``BCARTNB_UNSUBSCRIBE_SECRET`` (:class:`VerpSigner`). Only the mail's own servers
  ever see it, so a notice that comes back to it (or quotes it as the original's
  Return-Path) was caused by that mail; without the secret no one can make one.
* **Message-ID**: ``<bcartnb.{campaign}.{member}@{from-domain}>``, each id as
  :func:`message_token` writes it. It can be guessed, so it ties a notice to a mail only when
  the notice also names the address that mail went to.

Rules layer: the standard library and the secret's one check (:mod:`bcartnb.mailtokens.tokens`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from dataclasses import dataclass
from typing import Final

from bcartnb.mailtokens.tokens import check_secret

__all__ = [
    "MailRef",
    "VerpSigner",
    "is_ours",
    "message_token",
    "parse_message_id",
    "parse_verp",
]

_TOKEN = r"[A-Za-z0-9_-]{1,40}"
_TOKEN_RE: Final = re.compile(_TOKEN)
_TAG_CHARS: Final = 16  # base32: 80 bits, far beyond guessing by mail
_MID = rf"bcartnb\.({_TOKEN})\.({_TOKEN})@[^<>@\s]+>?"
_MID_RE = re.compile("<?" + _MID, re.ASCII)
# the same ids, searched for from their literal start: a pattern that opens with an optional
# "<" cannot skip ahead to "bcartnb." and is tried at every character of a notice (14x slower)
_MID_SEARCH = re.compile(_MID, re.ASCII)
_VERP_RE = re.compile(
    rf"[^+@\s<>]+\+({_TOKEN})\.({_TOKEN})\.([a-z2-7]{{{_TAG_CHARS}}})@[^<>@\s]+",
    re.ASCII | re.IGNORECASE,
)
_DOMAIN: Final = b"bcartnb-verp-v1\x00"  # this MAC means nothing anywhere else


def message_token(value: str) -> str:
    """A campaign or member id as a Message-ID and a VERP carry it: itself when it is a short
    token of letters, digits, ``_`` and ``-``, else a hash, so no id can break either."""
    return (
        value
        if _TOKEN_RE.fullmatch(value)
        else "h" + hashlib.sha256(value.encode()).hexdigest()[:20]
    )


@dataclass(frozen=True)
class MailRef:
    """The tokens that name one campaign mail, as a notice carried them."""

    campaign: str
    member: str
    via: str  # "message-id" or "verp"
    tag: str = ""  # the VERP's HMAC tag


class VerpSigner:
    """Makes and checks the VERP tag of one mail (see the module docstring).

    The secret is ``BCARTNB_UNSUBSCRIBE_SECRET``, kept apart from the unsubscribe token's MAC
    by its own domain prefix: one secret for the shop to keep, checked by one rule
    (:func:`bcartnb.mailtokens.tokens.check_secret`).
    """

    def __init__(self, secret: str | None) -> None:
        self._key = check_secret(secret, "[hygiene] verp").encode("utf-8")

    def __repr__(self) -> str:
        return "VerpSigner(<secret>)"

    def tag(self, campaign_id: str, member_id: int | str) -> str:
        """The mail's tag: lower-case base32, because some servers lower-case a local part."""
        message = _DOMAIN + f"{campaign_id}\x00{member_id}".encode()
        digest = hmac.new(self._key, message, hashlib.sha256).digest()
        return base64.b32encode(digest).decode("ascii").lower()[:_TAG_CHARS]

    def address(self, base: str, campaign_id: str, member_id: int | str) -> str:
        """The envelope sender of one campaign mail: ``local+{campaign}.{member}.{tag}@domain``."""
        local, _, domain = base.rpartition("@")
        cid, mid = message_token(campaign_id), message_token(str(member_id))
        return f"{local}+{cid}.{mid}.{self.tag(campaign_id, member_id)}@{domain}"

    def verifies(self, ref: MailRef, campaign_id: str, member_id: int) -> bool:
        """Whether ``ref``'s tag is the one :meth:`address` gave the campaign's mail to
        ``member_id`` (constant time)."""
        expected = self.tag(campaign_id, member_id)
        return hmac.compare_digest(ref.tag.lower().encode(), expected.encode())


def parse_verp(address: str) -> MailRef | None:
    """The tokens and tag of a VERP address, or None when ``address`` is not one."""
    m = _VERP_RE.fullmatch(address.strip().strip("<>"))
    return MailRef(m.group(1), m.group(2), "verp", m.group(3).lower()) if m else None


def parse_message_id(text: str) -> list[MailRef]:
    """Every one of our Message-IDs in a header value (References may hold several)."""
    return [MailRef(a, b, "message-id") for a, b in _MID_SEARCH.findall(text or "")]


def is_ours(message_id: str) -> bool:
    """Whether a Message-ID has the shape bcartnb gives its campaign mails."""
    return _MID_RE.fullmatch(message_id.strip()) is not None
