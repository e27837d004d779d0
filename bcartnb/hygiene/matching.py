"""Which mail of ours a notice answers, or why it answers none: the rule that keeps forgers out.

Anyone can mail the bounce address. So a bounce or a complaint counts only when it is tied to
one mail the shop handed to its server (journal state ``sent``, ``uncertain`` or ``sending``:
:data:`bcartnb.ledger.suppressions.HANDED_OVER`), and then only for the address that mail went to:

* **VERP** (``[hygiene] verp = true``): the mail's own signed return path
  (:class:`~bcartnb.mailtokens.verp.VerpSigner`); without the secret no one can make one.
* **Message-ID**: ``<bcartnb.{campaign}.{member}@{from-domain}>``
  (:mod:`bcartnb.mailtokens.verp`, the one rule). It can be guessed, so it ties a
  notice to a mail only when the notice also names the address that mail went to.

A notice tied to neither is ``unmatched`` (with its :data:`UNMATCHED_REASONS` reason) when
it says something false or foreign: a Message-ID not ours, a VERP tag that does not verify,
a mail never handed over, an address never mailed; it changes nothing. One that carries no
Message-ID and no VERP at all (some Japanese carriers' notices) but names an address the
shop did mail is ``unverified``: recorded, suppressing nothing until the marketer confirms
it (``bcartnb bounces confirm``). A mail to the ``unsubscribe_mailto`` address is tied by
the signed unsubscribe token its subject or address carries; without one it is unverified.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Final, TypeVar

from bcartnb.exceptions import SettingsError
from bcartnb.ledger import Ledger
from bcartnb.ledger.suppressions import HANDED_OVER
from bcartnb.mailtokens import MailRef, TokenSigner, VerpSigner, message_token

__all__ = [
    "UNMATCHED_REASONS",
    "Mail",
    "Match",
    "Matcher",
]

#: Why a notice changed nothing, in the shop's words (the scan's ``unmatched_reasons`` keys).
UNMATCHED_REASONS: Final[Mapping[str, str]] = {
    "bad_verp": "VERP の署名が合わない（偽造）",
    "unknown_mail": "このショップの Message-ID の形だが、そのメールの記録がない",
    "not_sent": "そのメールはサーバーに渡していない",
    "address_mismatch": "メールの宛先と通知のアドレスが違う",
    "foreign_message_id": "このショップのメールではない（Message-ID が違う）",
    "no_address": "宛先のアドレスが読めない",
    "never_mailed": "このショップが送ったことのないアドレス",
}

_T = TypeVar("_T")


@dataclass(frozen=True)
class Mail:
    """One journal row: a campaign's mail to a member, and where it went."""

    campaign_id: str
    member_id: int
    address: str
    state: str


@dataclass(frozen=True)
class Match:
    """What one finding of a notice is tied to: a mail, nothing (and why), or not yet known.

    ``status``: ``matched`` (``mail`` set; the event is about ``mail.address``),
    ``unmatched`` (``reason`` set) or ``unverified`` (``address`` mailed by the shop before).
    """

    status: str
    mail: Mail | None = None
    reason: str | None = None
    address: str | None = None


class Matcher:
    """Ties a notice's findings to the mails of the ledger (see the module docstring).

    Campaign tokens are computed once for every campaign in the ledger (compared ignoring
    case, as a server may lower-case a VERP); member tokens are the member id itself unless
    it was hashed, and then the campaign's journal is hashed once. Each mail's journal row is
    looked up once a scan, a whole batch's at once with :meth:`prefetch`.
    """

    def __init__(
        self,
        ledger: Ledger,
        *,
        secret: str | None,
        mailed: Mapping[str, tuple[str, int]],
    ) -> None:
        self.ledger = ledger
        self.mailed = mailed
        self._campaigns: dict[str, str] | None = None
        self._members: dict[str, dict[str, int]] = {}
        self._rows: dict[tuple[str, int], tuple[str, str] | None] = {}
        self.verp = _optional(VerpSigner, secret)
        self.tokens = _optional(TokenSigner, secret)

    def _campaign(self, token: str) -> str | None:
        if self._campaigns is None:
            ids = self.ledger.campaign_ids()
            self._campaigns = {message_token(c).lower(): c for c in ids}
        return self._campaigns.get(token.lower())

    def _member(self, campaign_id: str, token: str) -> int | None:
        if token.isdigit() and message_token(str(int(token))) == token:
            return int(token) if int(token) < 1 << 63 else None  # no row holds more
        if campaign_id not in self._members:
            members = self.ledger.member_ids(campaign_id)
            self._members[campaign_id] = {message_token(str(m)).lower(): m for m in members}
        return self._members[campaign_id].get(token.lower())

    def resolve(self, ref: MailRef) -> Mail | None:
        """The journal row ``ref`` names, whatever its state, or None if there is none."""
        cid = self._campaign(ref.campaign)
        member = None if cid is None else self._member(cid, ref.member)
        if cid is None or member is None:
            return None
        found = self._delivery(cid, member)
        return None if found is None else Mail(cid, member, found[0], found[1])

    def prefetch(self, refs: Iterable[MailRef]) -> None:
        """Look up the journal rows of all these references at once (a scan's whole batch),
        so that :meth:`resolve` asks the ledger nothing more for them."""
        wanted: set[tuple[str, int]] = set()
        for ref in refs:
            cid = self._campaign(ref.campaign)
            member = None if cid is None else self._member(cid, ref.member)
            if cid is not None and member is not None and (cid, member) not in self._rows:
                wanted.add((cid, member))
        found = self.ledger.deliveries_of(wanted)
        self._rows.update((mail, found.get(mail)) for mail in wanted)

    def _delivery(self, campaign_id: str, member_id: int) -> tuple[str, str] | None:
        """(address, state) of one mail: looked up once a scan."""
        mail = (campaign_id, member_id)
        if mail not in self._rows:
            self._rows[mail] = self.ledger.delivery(campaign_id, member_id)
        return self._rows[mail]

    def match(
        self,
        kind: str,
        address: str | None,
        *,
        refs: Iterable[MailRef],
        named: Iterable[str],
        foreign_ids: bool,
        tokens: Iterable[str] = (),
    ) -> Match:
        """Tie one finding (``kind``, the ``address`` it names) to a mail, or say why not."""
        if kind == "unsubscribed":
            return self._unsubscribe(address, tokens)
        wanted = {a.lower() for a in named} | ({address.lower()} if address else set())
        refs = list(refs)
        verps = [r for r in refs if r.via == "verp"]
        mids = [r for r in refs if r.via == "message-id"]
        reasons: list[str] = []
        hit = self._by_verp(verps, address, reasons)
        if hit is None:
            hit = self._by_message_id(mids, address, wanted, reasons)
        if hit is not None:
            return Match("matched", mail=hit)
        if foreign_ids and not mids:
            reasons.append("foreign_message_id")
        return self._loose(address, reasons)

    def _by_verp(self, refs: list[MailRef], address: str | None, reasons: list[str]) -> Mail | None:
        if not refs:
            return None
        if self.verp is None:  # without the secret a VERP proves nothing: weigh the rest
            return None
        good = []
        for ref in refs:
            mail = self.resolve(ref)
            if mail is None or not self.verp.verifies(ref, mail.campaign_id, mail.member_id):
                reasons.append("bad_verp")
            elif mail.state not in HANDED_OVER:
                reasons.append("not_sent")
            else:
                good.append(mail)
        return _preferred(good, address)

    def _by_message_id(
        self, refs: list[MailRef], address: str | None, wanted: set[str], reasons: list[str]
    ) -> Mail | None:
        good = []
        for ref in refs:
            mail = self.resolve(ref)
            if mail is None:
                reasons.append("unknown_mail")
            elif mail.state not in HANDED_OVER:
                reasons.append("not_sent")
            elif not wanted:
                reasons.append("no_address")
            elif mail.address.lower() not in wanted:
                reasons.append("address_mismatch")
            else:
                good.append(mail)
        return _preferred(good, address)

    def _loose(self, address: str | None, reasons: list[str]) -> Match:
        """A finding no reference ties: unmatched for its first reason, else by its address."""
        if reasons:
            return Match("unmatched", reason=reasons[0], address=address)
        if address is None:
            return Match("unmatched", reason="no_address")
        if address.lower() not in self.mailed:
            return Match("unmatched", reason="never_mailed", address=address)
        return Match("unverified", address=address.lower())

    def _unsubscribe(self, address: str | None, tokens: Iterable[str]) -> Match:
        """A mail to the unsubscribe address: tied by a signed token it carries, else loose."""
        if self.tokens is not None:
            for token in tokens:
                found = self.tokens.open(token, self._handed_address)
                if found is not None:
                    mail = self.resolve_ids(found.campaign_id, found.member_id)
                    if mail is not None:
                        return Match("matched", mail=mail)
        return self._loose(address, [])

    def _handed_address(self, campaign_id: str, member_id: int) -> str | None:
        mail = self.resolve_ids(campaign_id, member_id)
        return None if mail is None else mail.address

    def resolve_ids(self, campaign_id: str, member_id: int) -> Mail | None:
        """The mail to ``member_id`` of ``campaign_id`` if it was handed over, else None."""
        found = self._delivery(campaign_id, member_id)
        if found is None or found[1] not in HANDED_OVER:
            return None
        return Mail(campaign_id, member_id, found[0], found[1])


def _preferred(mails: list[Mail], address: str | None) -> Mail | None:
    """The mail that went to ``address`` if one did, else the first."""
    for mail in mails:
        if address is not None and mail.address.lower() == address.lower():
            return mail
    return mails[0] if mails else None


def _optional(make: Callable[[str | None], _T], secret: str | None) -> _T | None:
    """A signer when the secret is set and strong enough; without one nothing verifies."""
    try:
        return make(secret)
    except SettingsError:
        return None
