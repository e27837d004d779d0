"""The send loop's K connections (slots) and the mail each one is sending (its job)."""

from __future__ import annotations

from typing import NamedTuple

from bcartnb.transports import Connection, PollableConnection

__all__ = ["Job", "Slot"]


class Job(NamedTuple):
    """A mail handed to a connection."""

    member_id: int
    to: str
    raw: bytes
    state: str  # the row's state when it was handed over (pending, deferred, uncertain)


class Slot:
    """One of the K connections, and the mail it is sending (None when idle)."""

    __slots__ = ("conn", "error", "job", "polled")

    def __init__(self) -> None:
        self.conn: Connection | None = None
        self.error: BaseException | None = None  # opening it in the background failed
        self.job: Job | None = None
        self.polled = False  # the connection is driven by poll (begin / advance)

    @property
    def open(self) -> bool:
        """Its connection is open and usable now (no opening, no error to report first)."""
        return self.error is None and self.conn is not None and self.conn.alive

    def adopt(self, item: Connection | BaseException | None) -> None:
        if isinstance(item, BaseException):
            self.error = item
        elif item is not None:
            self.conn = item
            self.polled = isinstance(item, PollableConnection)
