"""The public server's guard against slow and idle clients (slowloris), under uvicorn.

uvicorn (0.55, h11) has no deadline for receiving a request: ``timeout_keep_alive`` covers
only the wait between requests and is reset by every byte (``data_received`` disarms it),
so a client trickling a header line holds a connection forever, and ``limit_concurrency``
counts those held connections and answers every real request 503 (issue 21: 64 idle
connections stopped every one-click POST). Starlette middleware cannot help: it runs once a
request head is complete. So this wraps uvicorn's own h11 protocol, with four rules:

* **head deadline**: from the moment a connection is ready for a request (accepted, or the
  previous response sent), its request head must be complete within ``header_timeout``
  seconds, however the bytes trickle in; else 408 and the connection is closed;
* **head size**: a head longer than :data:`MAX_HEAD_BYTES` is refused (431) even when it
  arrives in one read (h11's own limit counts only a head still incomplete, so up to a whole
  read, 256 KiB, passes);
* **body deadline**: from the complete head, the body must be complete within
  ``body_timeout`` seconds; else the connection is closed (the app sees a disconnect and
  records nothing);
* **a queue, not a refusal**: at most ``connections`` connections are read at once; one
  more is accepted but not read (its bytes wait in the kernel) until a slot frees, in
  arrival order, and only then does its head deadline start. Idle attackers lose their
  slots after ``header_timeout``; real requests wait, and are then answered.

Go's ``http.Server.ReadHeaderTimeout`` and ``ReadTimeout`` are the same deadlines (nginx's
``client_header_timeout`` too; its ``client_body_timeout`` counts only between two reads); the
README's proxy snippets set them in front of this server as well.
"""

from __future__ import annotations

import asyncio
import re
from collections import deque
from dataclasses import dataclass
from typing import Any, ClassVar, Final, Literal

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

__all__ = ["MAX_HEAD_BYTES", "GuardedH11Protocol", "ServerLimits", "guarded_protocol"]

#: The longest request head taken: a one-click POST's is a few hundred bytes (a token is
#: at most about 320 characters), a browser's a kilobyte or two.
MAX_HEAD_BYTES: Final = 16 * 1024

#: What a client whose request did not arrive in time gets, before the connection closes.
_TIMEOUT_REPLY: Final = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain; charset=utf-8\r\n"
    b"content-length: 16\r\nconnection: close\r\n\r\nrequest timeout\n"
)

_TOO_LARGE_REPLY: Final = (
    b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: text/plain; charset=utf-8\r\n"
    b"content-length: 23\r\nconnection: close\r\n\r\nrequest head too large\n"
)
_HEAD_END: Final = re.compile(rb"\n\r?\n")  # where h11 ends a head
_Phase = Literal["head", "body"]


@dataclass(frozen=True)
class ServerLimits:
    """The three numbers: settings ``[hygiene] server_*``, their defaults and ranges there."""

    header_timeout: float
    body_timeout: float
    connections: int


class _Gate:
    """Slots for the connections being read; the rest wait in arrival order."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.active: set[GuardedH11Protocol] = set()
        self.waiting: deque[GuardedH11Protocol] = deque()

    def enter(self, conn: GuardedH11Protocol) -> bool:
        if len(self.active) < self.size:
            self.active.add(conn)
            return True
        self.waiting.append(conn)
        return False

    def leave(self, conn: GuardedH11Protocol) -> None:
        if conn in self.active:
            self.active.discard(conn)
        elif conn in self.waiting:
            self.waiting.remove(conn)
        while self.waiting and len(self.active) < self.size:
            nxt = self.waiting.popleft()
            if not nxt.transport.is_closing():
                self.active.add(nxt)
                nxt.admitted()


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with the head and body deadlines and the connection queue.

    A class per server (:func:`guarded_protocol`) carries its limits and its gate.
    """

    limits: ClassVar[ServerLimits]
    gate: ClassVar[_Gate]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._phase: _Phase | None = None
        self._deadline: asyncio.TimerHandle | None = None
        self._reading = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if self.gate.enter(self):
            self.admitted()
        else:
            transport.pause_reading()

    def admitted(self) -> None:
        """A slot is ours: read, and start the head deadline."""
        self._reading = True
        self.transport.resume_reading()
        self._watch()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        self._reading = False
        self.gate.leave(self)
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._phase == "head" and self._head_too_long(data):
            self._refuse(_TOO_LARGE_REPLY)
            return
        super().data_received(data)
        self._watch()

    def _head_too_long(self, data: bytes) -> bool:
        buffered = self.conn.trailing_data[0]
        if len(buffered) + len(data) <= MAX_HEAD_BYTES:
            return False
        window = (buffered + data)[: MAX_HEAD_BYTES + 2]
        return _HEAD_END.search(window) is None

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._watch()

    def _watch(self) -> None:
        """Arm the deadline of what the connection now waits for; a deadline already
        running for the same phase keeps running (a trickle of bytes never resets it)."""
        if not self._reading or self.transport.is_closing():
            return
        theirs = self.conn.their_state
        phase: _Phase | None
        if theirs is h11.IDLE and self.conn.our_state is h11.IDLE:
            phase = "head"
        elif theirs is h11.SEND_BODY:
            phase = "body"
        else:
            phase = None
        if phase == self._phase:
            return
        self._disarm()
        self._phase = phase
        if phase is not None:
            seconds = self.limits.header_timeout if phase == "head" else self.limits.body_timeout
            self._deadline = self.loop.call_later(seconds, self._expired, phase)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        self._phase = None

    def _expired(self, phase: _Phase) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        if phase == "head":
            begun = bool(self.conn.trailing_data[0])  # an idle keep-alive is closed quietly
        else:
            begun = self.cycle is None or not self.cycle.response_started
        if begun:  # nothing of a response went out yet, so a whole one can
            self._refuse(_TIMEOUT_REPLY)
        else:
            self.transport.close()

    def _refuse(self, reply: bytes) -> None:
        """Answer with a fixed reply and close: the app, if it waits for the body, sees a
        disconnect once the connection is lost."""
        self._disarm()
        self.transport.write(reply)
        self.transport.close()


def guarded_protocol(limits: ServerLimits) -> type[GuardedH11Protocol]:
    """A protocol class for one server: pass it as ``uvicorn.Config(http=...)``."""
    return type(
        "GuardedH11Protocol",
        (GuardedH11Protocol,),
        {"limits": limits, "gate": _Gate(limits.connections)},
    )
