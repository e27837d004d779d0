"""How bounces list an address and how the public server holds its clients: ``[hygiene]``.

The numbers are listmonk's defaults where it has them; each is checked by the dataclass, so a
bad one is refused wherever it comes from.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bcartnb.exceptions import SettingsError
from bcartnb.settings.checks import in_range, parse_mailbox, read_section

__all__ = ["HygieneSettings", "hygiene_from_file"]

#: The keys of ``[hygiene]`` and their kinds, in the order they are checked.
_HYGIENE_KINDS: dict[str, type] = {
    "soft_threshold": int,
    "soft_window_days": float,
    "verp": bool,
    "bounce_address": str,
    "server_header_timeout": float,
    "server_body_timeout": float,
    "server_connections": int,
}


@dataclass(frozen=True)
class HygieneSettings:
    """How bounces list an address, and where they come back to.

    Soft bounces (a full mailbox, a greylisting server) list an address only once
    ``soft_threshold`` of them fall within ``soft_window_days`` (listmonk's defaults, 3 within
    30 days). With ``verp`` each campaign mail's envelope sender (Return-Path) is
    ``local+<campaign>.<member>@domain`` of ``bounce_address`` (the from address unless set),
    so a bounce names the mail it answers even when it quotes nothing of it.

    The public server (``bcartnb unsubscribe-server``) cannot be held by slow or idle
    clients: a request's head must arrive whole within ``server_header_timeout`` seconds of
    the connection being ready for it, its body within ``server_body_timeout`` after that,
    and at most ``server_connections`` connections are read at once; more wait, unread, in
    arrival order (queued, never refused).
    """

    soft_threshold: int = 3
    soft_window_days: float = 30.0
    verp: bool = False
    bounce_address: str | None = None
    server_header_timeout: float = 10.0
    server_body_timeout: float = 10.0
    server_connections: int = 256

    def __post_init__(self) -> None:
        in_range("[hygiene] soft_threshold", self.soft_threshold, 1, 1000, integer=True)
        in_range("[hygiene] soft_window_days", self.soft_window_days, 1, 3660, unit=" days")
        for key in ("server_header_timeout", "server_body_timeout"):
            in_range(f"[hygiene] {key}", getattr(self, key), 1, 300, unit=" seconds")
        in_range("[hygiene] server_connections", self.server_connections, 8, 10_000, integer=True)
        if self.bounce_address is not None and "+" in self.bounce_address.partition("@")[0]:
            raise SettingsError(
                f"[hygiene] bounce_address must not contain '+' before the @ (VERP adds it): "
                f"{self.bounce_address!r}",
                ja=f"[hygiene] bounce_address {self.bounce_address!r} の @ の前に + は使えません"
                "（VERP が付けます）。",
            )


def hygiene_from_file(data: Mapping[str, Any], where: str) -> dict[str, Any]:
    """The ``[hygiene]`` table's keys, typed; ranges are checked by HygieneSettings."""
    here = f"{where} [hygiene]: bounce_address"
    convert = {"bounce_address": lambda value: parse_mailbox(value, here)[1]}
    return read_section(data, "hygiene", _HYGIENE_KINDS, where, convert)
