"""The signed token in each tracked link and open image: which campaign, member and link.

``{tracking_url}/c/<token>`` redirects to the URL the ledger recorded for the campaign and
the link's number; ``{tracking_url}/o/<token>`` is the open image (number 0). The token is::

    base64url( version 1 | HMAC-SHA256(secret, domain + payload)[:16] | payload )
    payload = "<member id>:<link number>:<campaign id>"

It is signed with the unsubscribe secret (the one rule of :func:`~bcartnb.mailtokens.check_secret`)
under its own domain prefix, so a click token is never an unsubscribe token nor the other
way round. Unlike the unsubscribe token, no address is inside the MAC: a click changes no
list, it only counts, and the server need not read the journal to check it. The number
is inside the MAC, so a member cannot turn link 1's token into link 2's, and the server
redirects only to the URL recorded for that number (never one from the request).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from typing import Final, NamedTuple

from bcartnb.exceptions import SettingsError
from bcartnb.mailtokens.tokens import SECRET_ENV, check_secret

__all__ = ["OPEN_LINK", "TRAP_LINK", "TrackSigner", "TrackToken"]

#: The "link number" of the open image.
OPEN_LINK: Final = 0

_MAX_LINKS: Final = 10_000
#: The "link number" of the hidden link no person sees (:mod:`bcartnb.compose.tracking`): the
#: last number a token can hold, never one of a campaign's links (they stop below it).
TRAP_LINK: Final = _MAX_LINKS - 1

_VERSION: Final = b"\x01"
_MAC_BYTES: Final = 16
_DOMAIN: Final = b"bcartnb-track-v1\x00"  # this MAC means nothing anywhere else
_MAX_CAMPAIGN_BYTES: Final = 200
_MAX_TOKEN_CHARS: Final = (1 + _MAC_BYTES + 20 + 1 + 5 + 1 + _MAX_CAMPAIGN_BYTES) * 4 // 3 + 3
_TOKEN_RE: Final = re.compile(r"[A-Za-z0-9_-]+")
_PAYLOAD_RE: Final = re.compile(
    rb"(0|[1-9][0-9]{0,18}|-[1-9][0-9]{0,18}):(0|[1-9][0-9]{0,4}):(.+)", re.DOTALL
)
_INT64: Final = range(-(1 << 63), 1 << 63)


class TrackToken(NamedTuple):
    """What a genuine token names: the campaign, the member and the link (0: the open image)."""

    campaign_id: str
    member_id: int
    link: int


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


class TrackSigner:
    """Makes and opens tracking tokens with the unsubscribe secret."""

    def __init__(self, secret: str | None, why: str = "[tracking]") -> None:
        if not secret:
            raise SettingsError(
                f"{why} needs the secret {SECRET_ENV} (environment or .env): it is not set",
                ja=f"開封・クリックの計測（[tracking] url）には署名用の秘密の文字列 {SECRET_ENV} が"
                "必要です（配信停止リンクと同じもの）。環境変数か .env で設定するか、"
                "[tracking] の track = false で計測を止めてください。",
            )
        key = check_secret(secret, why).encode("utf-8")
        self._keyed = hmac.new(key, _DOMAIN, hashlib.sha256)  # copied per token: no re-keying

    def __repr__(self) -> str:
        return "TrackSigner(<secret>)"

    def _mac(self, payload: bytes) -> bytes:
        mac = self._keyed.copy()
        mac.update(payload)
        return mac.digest()[:_MAC_BYTES]

    def make(self, campaign_id: str, member_id: int, link: int) -> str:
        """The token for link ``link`` (0: the open image) of the campaign's mail to the member."""
        if type(member_id) is not int or member_id not in _INT64:
            raise ValueError(f"member id must be a 64-bit integer, not {member_id!r}")
        if type(link) is not int or not 0 <= link < _MAX_LINKS:
            raise ValueError(f"link number must be 0 to {_MAX_LINKS - 1}, not {link!r}")
        cid = campaign_id.encode("utf-8")
        if not cid or len(cid) > _MAX_CAMPAIGN_BYTES:
            raise ValueError(f"campaign id must have 1 to {_MAX_CAMPAIGN_BYTES} bytes")
        payload = f"{member_id}:{link}:".encode("ascii") + cid
        return _b64(_VERSION + self._mac(payload) + payload)

    def open(self, token: str) -> TrackToken | None:
        """What ``token`` names, or None for anything :meth:`make` did not write with this
        secret: malformed, truncated, altered, another secret, another kind of token."""
        if not isinstance(token, str) or len(token) > _MAX_TOKEN_CHARS:
            return None
        if not _TOKEN_RE.fullmatch(token):
            return None
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        except (binascii.Error, ValueError):
            return None
        if _b64(raw) != token or len(raw) < 1 + _MAC_BYTES + 5 or raw[:1] != _VERSION:
            return None
        mac, payload = raw[1 : 1 + _MAC_BYTES], raw[1 + _MAC_BYTES :]
        if not hmac.compare_digest(mac, self._mac(payload)):
            return None
        found = _PAYLOAD_RE.fullmatch(payload)
        if found is None:  # pragma: no cover - only make() signs, and it writes this shape
            return None
        try:
            campaign_id = found.group(3).decode("utf-8")
        except UnicodeDecodeError:  # pragma: no cover - as above
            return None
        return TrackToken(campaign_id, int(found.group(1)), int(found.group(2)))
