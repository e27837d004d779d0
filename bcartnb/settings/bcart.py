"""Where the B-Cart API is and the access token to call it with: the ``[bcart]`` section.

The token (プライベートアプリ管理) is a key to the shop's member data, so it comes only from the
environment or ``.env`` (``BCARTNB_BCART_TOKEN``), is never shown, and goes over https only,
except to this machine (the tests' local API).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from bcartnb.exceptions import SettingsError
from bcartnb.settings.checks import CONTROL, check_url, is_local, read_section

__all__ = ["BCART_API_URL", "BcartSettings", "bcart_from_file"]

#: B-Cart's public REST API (https://api.bcart.jp/api/v1); ``[bcart] api_url`` points elsewhere.
BCART_API_URL = "https://api.bcart.jp/api/v1"


@dataclass(frozen=True)
class BcartSettings:
    """Where the B-Cart API is, and the access token (プライベートアプリ管理) to call it with.

    The token comes only from ``BCARTNB_BCART_TOKEN`` (environment or ``.env``): it is never
    shown (``repr=False``), and it goes over https only, except to this machine (tests).
    """

    api_url: str = BCART_API_URL
    token: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if isinstance(self.api_url, str):
            check_url(self.api_url, "[bcart] api_url", SettingsError)
        parts = urlsplit(self.api_url) if isinstance(self.api_url, str) else None
        bad = (
            parts is None
            or parts.scheme not in ("https", "http")
            or not parts.hostname
            or parts.username is not None
            or parts.password is not None
            or bool(parts.query or parts.fragment)
            or CONTROL.search(self.api_url) is not None
            or any(ch.isspace() for ch in self.api_url)
        )
        if bad:
            raise SettingsError(
                f"[bcart] api_url must be an http(s) URL such as {BCART_API_URL} "
                f"(no user, query or fragment), not {self.api_url!r}",
                ja=f"設定 [bcart] api_url は {BCART_API_URL} のようなURLにしてください"
                f"（{self.api_url!r} ではなく）。",
            )
        assert parts is not None and parts.hostname is not None
        if parts.scheme == "http" and not is_local(parts.hostname):
            # the Bearer token would cross the network in clear text
            raise SettingsError(
                f"[bcart] api_url {self.api_url!r} is plain http to another host: use https",
                ja=f"設定 [bcart] api_url {self.api_url!r} が暗号化なし（http）です。https"
                " のURLにしてください。",
            )
        if self.token is not None and (
            not self.token
            or not self.token.isascii()
            or CONTROL.search(self.token)
            or any(c.isspace() for c in self.token)
        ):
            # the value itself is never repeated: it is a secret. A placeholder such as "…"
            # (not ASCII) would otherwise only fail deep inside the HTTP client.
            raise SettingsError(
                "BCARTNB_BCART_TOKEN holds white space, a control character or a character "
                "outside ASCII (copy the access token again, on one line)",
                ja="BCARTNB_BCART_TOKEN のアクセストークンに空白・改行・全角などの文字が"
                "含まれています。プライベートアプリ管理でコピーし直してください。",
            )


def bcart_from_file(data: Mapping[str, Any], where: str, envd: Mapping[str, str]) -> dict[str, Any]:
    """The ``[bcart]`` table's ``api_url``, and the token from the environment only."""
    out = read_section(data, "bcart", {"api_url": str}, where)
    if envd.get("BCARTNB_BCART_TOKEN"):
        out["token"] = envd["BCARTNB_BCART_TOKEN"].strip()
    return out
