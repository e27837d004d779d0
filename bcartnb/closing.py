"""What a ``with`` block does to a connection, a mailbox or a server: one rule, written once.

A transport, each of its connections, a bounce mailbox and the sink all hold something the
operating system counts (a socket, a file, a thread): leaving their ``with`` block releases
it, on an error too. Rather than each spelling out the same ``__enter__``/``__exit__``
pair, they inherit it from here. Both are protocols, so a protocol (``Transport``,
``Connection``) names the same methods and a class that subclasses them gets the bodies; a
server (:class:`Serving`) starts on entering and closes by stopping.

Ground layer: the standard library only.
"""

from __future__ import annotations

from types import TracebackType
from typing import Protocol, Self

__all__ = ["Closing", "Serving"]


class Closing(Protocol):
    """Closed by leaving its ``with`` block; ``with`` hands over the object itself."""

    def close(self) -> None: ...

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class Serving(Closing, Protocol):
    """Started by entering its ``with`` block, stopped by leaving it (a server in a thread)."""

    def start(self) -> Self: ...

    def stop(self) -> None: ...

    def close(self) -> None:
        """Stop: a server that is let go of stops serving."""
        self.stop()

    def __enter__(self) -> Self:
        return self.start()
