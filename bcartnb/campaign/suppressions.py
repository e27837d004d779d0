"""The suppression list as the faces see and change it: shown, added to, taken off, written
out for B-Cart's member import, and pushed to B-Cart.

The list and its rules are the ledger's (:mod:`bcartnb.ledger.suppressions`: the strongest
reason wins, a soft bounce counts until its threshold); which B-Cart member an address is,
hygiene's (:mod:`bcartnb.hygiene.writeback`). A face (``bcartnb suppress``, the notebooks)
calls these instead of opening the ledger, so every face changes the list the same way and
holds back the same members. Looking never creates a ledger.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

from bcartnb.ledger import Ledger, LedgerWatch
from bcartnb.ledger import using as ledger_using
from bcartnb.settings import Settings

if TYPE_CHECKING:
    from datetime import datetime

    import pandas as pd

    from bcartnb.bcart_api import PushReport
    from bcartnb.hygiene.export import BcartExport
    from bcartnb.ledger import BcartChange, Suppression

__all__ = [
    "SuppressionList",
    "export_suppressions",
    "push_suppressions",
    "suppress",
    "suppressed_addresses",
    "suppression_list",
    "unsuppress",
]


def suppressed_addresses(settings: Settings, *, ledger: Ledger | None = None) -> frozenset[str]:
    """The suppression list, for the faces that sort members themselves (the wizard's
    search, ``bcartnb members``), so every face holds back the same members.

    A ledger file that does not exist yet means an empty list: looking never creates one.
    In a shop still to adopt the per-user ledger of earlier versions (``legacy_ledger``),
    the list is that ledger's, what adopting will bring, read from a snapshot in memory so
    the old file stays as it is.
    """
    if ledger is None and (settings.db is None or not settings.db.expanduser().exists()):
        if settings.db is None or settings.legacy_ledger is None:
            return frozenset()
        with contextlib.closing(Ledger.in_memory(settings.legacy_ledger)) as old:
            return old.suppressed_addresses()
    with ledger_using(settings, ledger) as led:
        return led.suppressed_addresses()


def suppression_list(settings: Settings) -> list[Suppression]:
    """Every listed address with its reason, source, dates, count and member."""
    with ledger_using(settings) as led:
        return led.suppressions()


def suppress(
    settings: Settings, address: str, reason: str, *, source: str, member_id: int | None = None
) -> tuple[bool, Suppression | None]:
    """List ``address`` (True when it was not listed before) and its row as listed now."""
    with ledger_using(settings) as led:
        new = led.suppress(address, reason, source=source, member_id=member_id)
        return new, led.suppression(address)


def unsuppress(
    settings: Settings, address: str
) -> tuple[bool, list[tuple[int, str, int, datetime]]]:
    """Take ``address`` off the list (True when it was on it), with what B-Cart was told of
    it before (member, field, value, when): B-Cart is never changed back by itself."""
    with ledger_using(settings) as led:
        pushed = led.bcart_pushes(address)
        return led.unsuppress(address), pushed


def export_suppressions(
    settings: Settings, path: str | os.PathLike[str], *, members: pd.DataFrame | None
) -> BcartExport:
    """The list written out for B-Cart's member import (:func:`~bcartnb.hygiene.export.
    export_bcart_csv`), members resolved by ``members`` or else by the journal."""
    from bcartnb.hygiene.export import export_bcart_csv

    with ledger_using(settings) as led:
        listed, journal = led.suppressions(), led.journal_members()
    return export_bcart_csv(listed, path, members=members, journal=journal)


def push_suppressions(
    settings: Settings, members: pd.DataFrame | None, *, apply: bool
) -> PushReport:
    """The list's changes to B-Cart's members: listed, or (``apply``) made, each batch B-Cart
    accepted recorded at once so it is never pushed again."""
    from bcartnb import bcart_api

    with Ledger.open(settings.db) as ledger, bcart_api.BcartClient(settings.bcart) as client:

        def record(batch: Sequence[BcartChange]) -> None:
            for change in batch:
                ledger.record_bcart_push(change)

        return bcart_api.push_suppressions(
            bcart_api.plan_push(ledger, members), client, apply=apply, on_applied=record
        )


class SuppressionList:
    """The suppression list for a face that asks on every click (the wizard's search, its
    ticks and counts): read from the ledger once per change to the file
    (:class:`~bcartnb.ledger.LedgerWatch`), so an address listed anywhere (another notebook,
    ``bcartnb bounces``, a send in another process) is held back at the next ask, and the
    same frozenset comes back until then (the audience keeps its Arrow form per set).
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._watch = LedgerWatch(settings.db) if settings.db is not None else None
        self._version: tuple[int, int] | None = None
        self._listed: frozenset[str] = frozenset()

    def addresses(self) -> frozenset[str]:
        """:func:`suppressed_addresses`, as of now."""
        version = self._watch.version() if self._watch is not None else None
        if version is None or version != self._version:
            # the version before the read: a commit in between is read again next time
            self._listed = suppressed_addresses(self.settings)
            self._version = version
        return self._listed

    def close(self) -> None:
        if self._watch is not None:
            self._watch.close()
