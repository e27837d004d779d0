"""Which campaign mail a bounce answers: our Message-IDs, VERP return paths, the ledger.

Every composed mail's Message-ID is ``<bcartnb.{campaign}.{member}@{from-domain}>``, each
part a plain token or its hash (:func:`bcartnb.compose._message_token`, the one rule), and
with ``[hygiene] verp = true`` its envelope sender is ``local+{campaign}.{member}@domain``
(:func:`verp_address`). A bounce carries one or both back; :class:`Matcher` turns the
tokens into a campaign id and a member id through the ledger, and only when the ledger's
address for that mail is one the bounce itself names (or arrived at that mail's own VERP
address), so a forged Message-ID naming another campaign's mail lists nobody it does not name.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from bcartnb.compose import _message_token
from bcartnb.ledger import Ledger

__all__ = ["MailRef", "Matcher", "parse_message_id", "parse_verp", "verp_address"]

_TOKEN = r"[A-Za-z0-9_-]{1,40}"
_MID_RE = re.compile(rf"<?bcartnb\.({_TOKEN})\.({_TOKEN})@[^<>@\s]+>?", re.ASCII)
_VERP_RE = re.compile(rf"[^+@\s<>]+\+({_TOKEN})\.({_TOKEN})@[^<>@\s]+", re.ASCII)


@dataclass(frozen=True)
class MailRef:
    """The two tokens that name one campaign mail, as a bounce carried them."""

    campaign: str
    member: str
    via: str  # "message-id" or "verp"


def verp_address(base: str, campaign_id: str, member_id: int | str) -> str:
    """The envelope sender of one campaign mail: ``local+{campaign}.{member}@domain``."""
    local, _, domain = base.rpartition("@")
    return f"{local}+{_message_token(campaign_id)}.{_message_token(str(member_id))}@{domain}"


def parse_verp(address: str) -> MailRef | None:
    """The tokens of a VERP address, or None when ``address`` is not one."""
    m = _VERP_RE.fullmatch(address.strip().strip("<>"))
    return MailRef(m.group(1), m.group(2), "verp") if m else None


def parse_message_id(text: str) -> list[MailRef]:
    """Every one of our Message-IDs in a header value (References may hold several)."""
    return [MailRef(a, b, "message-id") for a, b in _MID_RE.findall(text or "")]


class Matcher:
    """Resolves :class:`MailRef` tokens to (campaign id, member id, address) via the ledger.

    Campaign tokens are computed once for every campaign in the ledger; member tokens are
    the member id itself unless it was hashed, and then the campaign's journal is hashed
    once (only for the campaigns that need it).
    """

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self._campaigns: dict[str, str] | None = None
        self._members: dict[str, dict[str, int]] = {}

    def _campaign(self, token: str) -> str | None:
        if self._campaigns is None:
            frame = self.ledger.campaigns()
            self._campaigns = {_message_token(str(c)): str(c) for c in frame["campaign_id"]}
        return self._campaigns.get(token)

    def _member(self, campaign_id: str, token: str) -> int | None:
        if token.isdigit() and _message_token(str(int(token))) == token:
            return int(token)
        if campaign_id not in self._members:
            ids = self.ledger.deliveries(campaign_id)["member_id"]
            self._members[campaign_id] = {_message_token(str(int(m))): int(m) for m in ids}
        return self._members[campaign_id].get(token)

    def resolve(self, ref: MailRef) -> tuple[str, int, str] | None:
        """(campaign id, member id, the address that mail went to), or None if unknown."""
        cid = self._campaign(ref.campaign)
        if cid is None:
            return None
        member = self._member(cid, ref.member)
        if member is None:
            return None
        address = self.ledger.delivery_address(cid, member)
        return None if address is None else (cid, member, address)

    def match(self, refs: Iterable[MailRef], named: Iterable[str]) -> tuple[str, int, str] | None:
        """The first ref whose mail went to an address in ``named`` (compared ignoring case).

        When the bounce names no address at all, a VERP ref stands on its own: the bounce came
        back to that mail's own return path. A Message-ID alone never does (anyone can quote
        one).
        """
        wanted = {a.lower() for a in named}
        for ref in refs:
            found = self.resolve(ref)
            if found is None:
                continue
            if found[2].lower() in wanted or (ref.via == "verp" and not wanted):
                return found
        return None
