"""The signed token in each mail's unsubscribe link: which campaign's mail, to which member.

A one-click unsubscribe (RFC 8058) has no login: whoever holds the URL may stop the mail, so
the URL must be impossible to forge or to turn against another member. The token is::

    base64url( version 1 | HMAC-SHA256(secret, payload + address)[:16] | payload )
    payload = "<member id>:<campaign id>"

* The secret is ``BCARTNB_UNSUBSCRIBE_SECRET`` (the environment or ``.env`` only, like the SMTP
  password: a notebook, report or log must never hold it). Without it no token can be made,
  and a template or ``unsubscribe_url`` naming ``{{ unsubscribe_token }}`` is refused when the
  campaign is planned (the dry run), not when it is sent. A weak one is refused too, with the
  reason (:func:`check_secret`): whoever guesses it can forge a link for every member.
* The address the mail went to is inside the MAC but not in the token. The server takes the
  address from the ledger's journal (the campaign's mail to that member) and checks the MAC
  against it, so a token can only ever suppress the address its mail was sent to: a member who
  changed address since keeps the new one, and a test send (another campaign id, another
  address) suppresses nobody. Leaving the address (or an unkeyed hash of it) out of the URL
  keeps it out of proxy and browser logs, and keeps the token short.
* 16 bytes of MAC (128 bits, RFC 2104 allows truncating to half) keep a token near 60
  characters for today's campaign ids, well inside a header line. Only the URL-safe base64
  alphabet is used, without padding, and only the canonical encoding is accepted, so one
  mail has exactly one token and a changed character never decodes to the same bytes.
* The MAC is compared in constant time (:func:`hmac.compare_digest`).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import math
import re
from collections.abc import Callable
from typing import Final, NamedTuple

from bcartnb.address_key import normalize_address
from bcartnb.exceptions import HygieneError, SettingsError
from bcartnb.settings import UNSUBSCRIBE_SECRET_ENV

__all__ = [
    "MIN_SECRET_BITS",
    "MIN_SECRET_CHARS",
    "MIN_SECRET_DISTINCT",
    "SECRET_ENV",
    "TokenSigner",
    "UnsubscribeToken",
    "check_secret",
    "parse",
    "secret_bits",
]

#: The environment variable (or ``.env`` key) holding the signing secret.
SECRET_ENV: Final = UNSUBSCRIBE_SECRET_ENV
#: A secret shorter than this is refused: ``secrets.token_urlsafe(32)`` gives 43 characters.
MIN_SECRET_CHARS: Final = 32
#: ...with at least this many different characters (``secrets.token_hex(16)`` has about 14)...
MIN_SECRET_DISTINCT: Final = 10
#: ...and at least this many bits by :func:`secret_bits`: the MAC's own strength (128 bits).
MIN_SECRET_BITS: Final = 128

_VERSION: Final = b"\x01"
_MAC_BYTES: Final = 16
_DOMAIN: Final = b"bcartnb-unsubscribe-v1\x00"  # this MAC means nothing anywhere else
_MAX_CAMPAIGN_BYTES: Final = 200
#: No genuine token is longer: version, MAC, a 64-bit id, ":" and the longest campaign id.
_MAX_TOKEN_CHARS: Final = (1 + _MAC_BYTES + 20 + 1 + _MAX_CAMPAIGN_BYTES) * 4 // 3 + 3
_TOKEN_RE: Final = re.compile(r"[A-Za-z0-9_-]+")
_INT_RE: Final = re.compile(rb"-?(?:0|[1-9][0-9]{0,18})")
_INT64: Final = range(-(1 << 63), 1 << 63)
_HOW_JA: Final = (
    f"{SECRET_ENV} に {MIN_SECRET_CHARS} 文字以上のランダムな文字列を環境変数か .env で"
    '設定してください（例: python -c "import secrets; print(secrets.token_urlsafe(32))"）。'
)


class UnsubscribeToken(NamedTuple):
    """Whose mail a token stops: the campaign and the member, and the address it went to."""

    campaign_id: str
    member_id: int
    address: str


def check_secret(secret: str | None, why: str) -> str:
    """The secret, or a SettingsError saying ``why`` it is needed and how to set it.

    The message never contains the secret, only its length when it is too short.
    """
    if not secret:
        raise SettingsError(
            f"{why} needs the secret {SECRET_ENV} (environment or .env): it is not set",
            ja=f"配信停止リンク（unsubscribe_token）を使うには署名用の秘密の文字列が必要です。"
            f"{_HOW_JA}",
        )
    if len(secret) < MIN_SECRET_CHARS:
        raise SettingsError(
            f"{SECRET_ENV} is too short ({len(secret)} characters, at least "
            f"{MIN_SECRET_CHARS}): a short secret can be guessed and every link forged",
            ja=f"{SECRET_ENV} が短すぎます（{len(secret)} 文字）。{_HOW_JA}",
        )
    distinct = len(set(secret))
    if distinct < MIN_SECRET_DISTINCT:
        raise SettingsError(
            f"{SECRET_ENV} has too few different characters ({distinct}, at least "
            f"{MIN_SECRET_DISTINCT}): it can be guessed and every link forged",
            ja=f"{SECRET_ENV} に使われている文字の種類が少なすぎます（{distinct} 種類）。{_HOW_JA}",
        )
    bits = secret_bits(secret)
    if bits < MIN_SECRET_BITS:
        raise SettingsError(
            f"{SECRET_ENV} is too easy to guess (about {bits:.0f} bits, at least "
            f"{MIN_SECRET_BITS}: repeated, sequential or few kinds of characters)",
            ja=f"{SECRET_ENV} は推測されやすい文字列です（繰り返しや連続した文字が多く、"
            f"推定 {bits:.0f} ビット。{MIN_SECRET_BITS} ビット以上が必要です）。{_HOW_JA}",
        )
    return secret


def secret_bits(secret: str) -> float:
    """A cautious estimate of a secret's strength in bits, for refusing weak ones.

    Each character is worth the bits of the character classes the secret uses (lower case,
    upper case, digits, other ASCII, anything else), unless it is predictable from what
    came before: the end of four characters seen earlier (a repeated block) counts nothing,
    the same as or next to the previous character (``aaaa``, ``1234``, ``dcba``) one bit.
    Random output (``secrets.token_urlsafe(32)``: 43 characters, about 250 bits here)
    passes with room; words, keyboard runs and repeats do not.
    """
    pool = 0
    for members, size in ((str.islower, 26), (str.isupper, 26), (str.isdigit, 10)):
        if any(c.isascii() and members(c) for c in secret):
            pool += size
    if any(c.isascii() and not c.isalnum() for c in secret):
        pool += 33
    if any(not c.isascii() for c in secret):
        pool += 100
    per_char = math.log2(max(pool, 2))
    bits = 0.0
    grams: set[str] = set()
    for i, ch in enumerate(secret):
        gram = secret[max(0, i - 3) : i + 1]
        follows = i > 0 and ord(ch) - ord(secret[i - 1]) in (0, 1, -1)
        repeats = len(gram) == 4 and gram in grams
        bits += 0.0 if repeats else 1.0 if follows else per_char
        grams.add(gram)
    return bits


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


class TokenSigner:
    """Makes and opens tokens with one secret (see the module docstring for the format)."""

    def __init__(self, secret: str | None, why: str = "unsubscribe_token") -> None:
        self._key = check_secret(secret, why).encode("utf-8")

    def __repr__(self) -> str:
        return "TokenSigner(<secret>)"

    def _mac(self, payload: bytes, address: str) -> bytes:
        message = _DOMAIN + payload + b"\x00" + normalize_address(address).encode("utf-8")
        return hmac.new(self._key, message, hashlib.sha256).digest()[:_MAC_BYTES]

    def make(self, campaign_id: str, member_id: int, address: str) -> str:
        """The token for the campaign's mail to ``member_id`` at ``address``."""
        if type(member_id) is not int or member_id not in _INT64:
            raise ValueError(f"member id must be a 64-bit integer, not {member_id!r}")
        cid = campaign_id.encode("utf-8")
        if not cid or len(cid) > _MAX_CAMPAIGN_BYTES:
            raise ValueError(f"campaign id must have 1 to {_MAX_CAMPAIGN_BYTES} bytes")
        payload = str(member_id).encode("ascii") + b":" + cid
        return _b64(_VERSION + self._mac(payload, address) + payload)

    def open(
        self, token: str, address_of: Callable[[str, int], str | None]
    ) -> UnsubscribeToken | None:
        """Whose mail ``token`` stops, or None for anything not made by :meth:`make` with
        this secret: malformed, truncated, tampered, another secret, or a mail the ledger
        does not know (``address_of(campaign_id, member_id)`` gives the address it went to).
        """
        parsed = parse(token)
        if parsed is None:
            return None
        mac, payload, campaign_id, member_id = parsed
        address = address_of(campaign_id, member_id)
        try:
            # an unknown mail costs a MAC too: the answer's time says little of the journal
            expected = self._mac(payload, address or "unknown@invalid")
        except HygieneError:  # an address no mail could have gone to
            return None
        if not hmac.compare_digest(mac, expected) or address is None:
            return None
        return UnsubscribeToken(campaign_id, member_id, address)


def parse(token: str) -> tuple[bytes, bytes, str, int] | None:
    """(MAC, payload, campaign id, member id) of a well-formed token, unchecked; else None."""
    if not isinstance(token, str) or len(token) > _MAX_TOKEN_CHARS:
        return None
    if not _TOKEN_RE.fullmatch(token):
        return None
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (binascii.Error, ValueError):
        return None
    if _b64(raw) != token:  # stray bits in the last character: not what make() wrote
        return None
    if len(raw) < 1 + _MAC_BYTES + 3 or raw[:1] != _VERSION:
        return None
    mac, payload = raw[1 : 1 + _MAC_BYTES], raw[1 + _MAC_BYTES :]
    number, colon, cid = payload.partition(b":")
    if not colon or not _INT_RE.fullmatch(number) or not cid or len(cid) > _MAX_CAMPAIGN_BYTES:
        return None
    member_id = int(number)
    if member_id not in _INT64 or number == b"-0":
        return None
    try:
        campaign_id = cid.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return mac, payload, campaign_id, member_id
