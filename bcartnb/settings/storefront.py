"""The shop as its members know it: the ``[shop]`` section (name, web site, contact line).

What a member sees outside a mail names the shop: the unsubscribe page says whose mail it
stops, links back to the shop and says how to reach it; the reports name the shop in their
header. Each key falls back on what the settings already hold (the From's display name and
address), so a shop that writes none of them still gets a page that names it.

```toml
[shop]
name = "見本商事オンラインショップ"
url = "https://shop.example.co.jp/"
contact = "TEL 03-0000-0000（平日 9:00〜18:00）"
```
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from bcartnb.exceptions import SettingsError
from bcartnb.settings.checks import CONTROL, check_url, read_section

__all__ = ["ShopInfo", "shop_from_file"]


@dataclass(frozen=True)
class ShopInfo:
    """``[shop]``: the name members know, the shop's web site and a contact line (all
    optional; :attr:`Settings.shop_name <bcartnb.settings.Settings.shop_name>` falls back on
    the From's display name)."""

    name: str = ""
    url: str | None = None
    contact: str = ""

    def __post_init__(self) -> None:
        for key in ("name", "contact"):
            value = getattr(self, key)
            if CONTROL.search(value):
                raise SettingsError(
                    f"[shop] {key} must be one line without control characters, not {value!r}",
                    ja=f"設定 [shop] {key} の値 {value!r} は使えません。"
                    "1行で書いてください（改行・制御文字は使えません）。",
                )
        if self.url is None:
            return
        check_url(self.url, "[shop] url", SettingsError)
        parts = urlsplit(self.url)
        if parts.scheme not in ("https", "http") or not parts.hostname:
            raise SettingsError(
                f"[shop] url must be an http(s) URL such as https://shop.example.co.jp/, "
                f"not {self.url!r}",
                ja=f"設定 [shop] url の値 {self.url!r} は使えません。"
                "https://shop.example.co.jp/ のようなURLにしてください。",
            )


def shop_from_file(data: Mapping[str, Any], where: str) -> dict[str, Any]:
    """The ``[shop]`` table's keys, each a string."""
    out = read_section(data, "shop", {"name": str, "url": str, "contact": str}, where)
    for key in ("name", "contact"):
        if key in out:
            out[key] = out[key].strip()
    if "url" in out:
        out["url"] = out["url"].strip() or None
    return out
