"""The same mail never twice: one claim per (mail, address), across every campaign.

A mail's identity is what the member receives, as written before member values are merged in
(:func:`mail_key` of the frozen mail: subject, body, HTML or not, encoding, signature, From),
never where the member list came from. ``mail_claims`` holds one row per (mail, lower-cased
address): the campaign that mailed, or is mailing, that address. Its primary key, written in
the claim's ``BEGIN IMMEDIATE`` transaction, is what holds "each address gets a given mail at
most once" across re-exported or renamed files, API snapshots, grown lists and two runs at
once: the second run finds the address taken and holds the member back as ``already_sent``.

A claim is *live* while its journal row may still reach, or has reached, the address:

* a row the server was handed at least once (sent, failed, deferred, uncertain, or ended by
  the marketer after a try) keeps its claim for good;
* a row never handed over keeps it while its campaign may still send it (pending in a
  ``sending`` or ``unfinished`` campaign);
* a ``withheld`` row (suppressed before it went out), and a row never handed over whose
  campaign or mail was cancelled, hold nothing: the address never got the mail.

Liveness is read from the journal when claims are looked up, so no state change anywhere
has to remember to release a claim. ``repeat`` (``--repeat``) takes over the claims of
finished campaigns on purpose; a claim held by a campaign still under way is never taken.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple

__all__ = ["OPEN_STATUSES", "Held", "live_claims", "mail_key", "split_claims", "write_claims"]

#: A campaign in one of these may still send its pending mails.
OPEN_STATUSES = ("sending", "unfinished")

_LIVE = (
    "SELECT mc.address, mc.campaign_id, c.status FROM mail_claims mc "
    "JOIN campaigns c ON c.campaign_id = mc.campaign_id "
    "JOIN deliveries d ON d.campaign_id = mc.campaign_id AND d.member_id = mc.member_id "
    "WHERE mc.mail_key IN ({keys}) AND d.state != 'withheld' "
    "AND (d.attempts > 0 OR (d.state != 'cancelled' AND c.status != 'cancelled'))"
)


def mail_key(mail: Mapping[str, Any]) -> str:
    """The identity of a frozen mail: a hash of its canonical JSON (key order ignored).

    Two campaigns with the same subject, body, flags, signature and From are the same mail,
    whatever template name, member file or filter produced them.
    """
    text = json.dumps(dict(mail), sort_keys=True, ensure_ascii=False, default=str)
    return "mail:" + hashlib.sha256(text.encode()).hexdigest()


class Held(NamedTuple):
    """A live claim: the campaign holding the address for this mail, and its status."""

    campaign_id: str
    status: str


def _key(address: str) -> str:
    return address.strip().lower()


def live_claims(c: sqlite3.Connection, keys: Sequence[str]) -> dict[str, Held]:
    """Lower-cased address → the campaign holding it, for any of ``keys`` (the mail's own
    key first, then the identities older ledgers gave the same mail)."""
    if not keys:
        return {}
    held: dict[str, Held] = {}
    sql = _LIVE.format(keys=", ".join("?" * len(keys)))
    for address, cid, status in c.execute(sql, tuple(keys)):
        # an address live under two keys (a legacy claim and a repeat's): the open one wins
        if address not in held or status in OPEN_STATUSES:
            held[str(address)] = Held(str(cid), str(status))
    return held


def split_claims(
    c: sqlite3.Connection,
    keys: Sequence[str],
    rows: Iterable[tuple[int, str]],
    *,
    repeat: bool = False,
) -> tuple[list[tuple[int, str]], list[tuple[int, str, str]]]:
    """Which recipients a new campaign may hold for this mail, inside the caller's write
    transaction: the free ones, and the ones skipped as ``(member id, address, holding
    campaign)``: a live claim of another campaign, or, with ``repeat``, of one still under way.
    """
    held = live_claims(c, keys)
    kept: list[tuple[int, str]] = []
    skipped: list[tuple[int, str, str]] = []
    for member_id, address in rows:
        owner = held.get(_key(address))
        if owner is not None and (not repeat or owner.status in OPEN_STATUSES):
            skipped.append((int(member_id), address, owner.campaign_id))
        else:
            kept.append((int(member_id), address))
    return kept, skipped


def write_claims(
    c: sqlite3.Connection, keys: Sequence[str], campaign_id: str, kept: Sequence[tuple[int, str]]
) -> None:
    """Claim ``kept`` for ``campaign_id`` under ``keys[0]``, replacing any older (dead, or
    finished and repeated) claim of the same addresses under any of ``keys``.

    Only addresses that have such a claim are deleted first: a new mail (most campaigns)
    has none, and a DELETE per recipient was half of what claiming 10,000 cost.
    """
    marks = ", ".join("?" * len(keys))
    claimed = {
        str(a)
        for (a,) in c.execute(
            f"SELECT address FROM mail_claims WHERE mail_key IN ({marks})", tuple(keys)
        )
    }
    rows = [(m, _key(a)) for m, a in kept]
    c.executemany(
        f"DELETE FROM mail_claims WHERE mail_key IN ({marks}) AND address = ?",
        ((*keys, a) for _, a in rows if a in claimed),
    )
    c.executemany(
        "INSERT INTO mail_claims (mail_key, address, campaign_id, member_id) VALUES (?,?,?,?)",
        ((keys[0], a, campaign_id, m) for m, a in rows),
    )
