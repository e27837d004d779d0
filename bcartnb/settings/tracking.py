"""Where clicks and opens are measured: ``[tracking]``.

A shop measures only once it names the public address of its server (``url``): every link
of a campaign mail then goes through ``{url}/c/<token>`` and HTML mails carry a 1×1 image
``{url}/o/<token>`` (:mod:`bcartnb.compose.tracking`). ``track = false`` turns it off for
the whole shop while keeping the address; a campaign's own ``track = false`` turns it off
for that campaign.

``retention_days`` (default 365, 1 to 3,650): how long the public server keeps a click or an
open (by the day it was last seen); older ones are deleted when the server starts and once a
day while it runs (:mod:`bcartnb.hygiene.track_writer`). The link tables stay (they hold no
one's data, and an old mail's links keep working).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from bcartnb.exceptions import SettingsError
from bcartnb.settings.checks import check_url, read_section

__all__ = ["TrackingSettings", "tracking_from_file"]

_TRACKING_KINDS: dict[str, type] = {"url": str, "track": bool, "retention_days": int}
#: How long clicks and opens are kept unless the settings say otherwise.
DEFAULT_RETENTION_DAYS = 365
_RETENTION_RANGE = range(1, 3651)


@dataclass(frozen=True)
class TrackingSettings:
    """The public base URL of the tracking server, and whether the shop measures at all."""

    url: str | None = None
    track: bool = True
    retention_days: int = DEFAULT_RETENTION_DAYS

    def __post_init__(self) -> None:
        if type(self.retention_days) is not int or self.retention_days not in _RETENTION_RANGE:
            raise SettingsError(
                f"[tracking] retention_days must be 1 to 3650, not {self.retention_days!r}",
                ja="[tracking] retention_days（開封・クリックの保存日数）は 1 から 3650 の"
                f"整数にしてください（{self.retention_days!r} ではなく）。",
            )
        if self.url is None:
            return
        check_url(self.url, "[tracking] url", SettingsError)
        parts = urlsplit(self.url)
        if (
            parts.scheme not in ("http", "https")
            or not parts.netloc
            or parts.query
            or parts.fragment
            or "{" in self.url
            or any(c.isspace() for c in self.url)
        ):
            raise SettingsError(
                "[tracking] url must be a plain http(s) address such as "
                f"https://shop.example.co.jp/t, not {self.url!r}",
                ja="[tracking] url は https://shop.example.co.jp/t のような http(s) の"
                "アドレスにしてください（? や # や {{ }} を含めずに。"
                f"{self.url!r} ではなく）。",
            )

    @property
    def base(self) -> str | None:
        """The URL every tracked link starts with (no trailing slash), when measuring."""
        if not self.url or not self.track:
            return None
        return self.url.rstrip("/")

    @property
    def path(self) -> str:
        """The path in front of ``/c/`` and ``/o/`` on the server (``""`` or ``/t``)."""
        return urlsplit(self.url or "").path.rstrip("/")


def tracking_from_file(data: Mapping[str, Any], where: str) -> dict[str, Any]:
    """The ``[tracking]`` table's keys, typed; the URL is checked by TrackingSettings."""
    return read_section(data, "tracking", _TRACKING_KINDS, where)
