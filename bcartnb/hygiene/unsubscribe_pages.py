"""The unsubscribe server's pages: what a member sees after clicking the link in a mail.

Each page says whose mail it stops (the shop's name), which address (masked:
``t***@example.co.jp``, never the whole one, since anyone holding the link sees the page),
what happened (the three states of :mod:`bcartnb.hygiene.unsubscribe`), and, below, a link back
to the shop's site and a contact line (``[shop] url`` and ``contact``, else the From address:
:class:`~bcartnb.settings.ShopInfo`). Every value is escaped here; the one stylesheet is
allowed by its hash in :data:`SECURITY_HEADERS`, so the pages need no inline style attribute.
The pages are given the address already masked and the state as the ledger names it
(``listed``, ``unsuppressed``, else new), so they know nothing of tokens or the ledger.
"""

from __future__ import annotations

import base64
import hashlib
import html
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from starlette.responses import HTMLResponse

if TYPE_CHECKING:
    from bcartnb.settings import Settings

__all__ = ["SECURITY_HEADERS", "ShopFooter", "confirm_page", "page", "result_page"]

_STYLE: Final = (
    "body{font-family:system-ui,sans-serif;max-width:34em;margin:3em auto;padding:0 1em;"
    "color:#222;line-height:1.8;overflow-wrap:anywhere}h1{font-size:1.4em}"
    "button{font-size:1.1em;padding:.6em 2em;cursor:pointer}"
    ".address{font-size:1.1em;font-weight:bold}"
    "footer{margin-top:2.5em;padding-top:.8em;border-top:1px solid #ccc;font-size:.9em;color:#555}"
)
_STYLE_HASH: Final = base64.b64encode(hashlib.sha256(_STYLE.encode()).digest()).decode()
SECURITY_HEADERS: Final = {
    "Content-Security-Policy": (
        f"default-src 'none'; style-src 'sha256-{_STYLE_HASH}'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
}


@dataclass(frozen=True)
class ShopFooter:
    """The shop as the pages name it, escaped once when the server starts."""

    name: str
    footer: str

    @classmethod
    def of(cls, settings: Settings) -> ShopFooter:
        name = settings.shop_name
        shown = html.escape(name or "当店")
        lines = []
        if settings.shop.url:
            label = html.escape(f"{name}のサイトへ" if name else "お店のサイトへ")
            lines.append(f'<a href="{html.escape(settings.shop.url)}">{label}</a>')
        contact = settings.shop.contact or settings.from_addr
        lines.append(f"お問い合わせ: {html.escape(contact)}")
        heading = f"{html.escape(name)}<br>" if name else ""
        return cls(shown, f"<footer>{heading}{'<br>'.join(lines)}</footer>")


def page(title: str, body: str, status: int = 200, footer: str = "") -> HTMLResponse:
    """A whole page: ``title`` is escaped here, ``body`` and ``footer`` are HTML the caller
    escaped."""
    return HTMLResponse(
        '<!doctype html>\n<html lang="ja"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        '<meta name="robots" content="noindex">'
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head>\n"
        f"<body><h1>{html.escape(title)}</h1>\n{body}\n{footer}</body></html>\n",
        status_code=status,
    )


def _address(masked: str) -> str:
    shown = html.escape(masked)
    return f'<p>配信を停止するメールアドレス:<br><span class="address">{shown}</span></p>'


def confirm_page(shop: ShopFooter, masked: str, state: str) -> HTMLResponse:
    """What a GET shows: the one button, or that there is nothing left to do."""
    if state == "listed":
        return _already_page(shop, masked)
    again = (
        "<p>このメールアドレスは以前に配信停止のお申し出をいただき、その後、配信を再開して"
        "います。</p>"
        if state == "unsuppressed"
        else ""
    )
    return page(
        "メール配信の停止",
        f"{again}<p>{shop.name}からのメールの配信を停止します。よろしければ、下のボタンを"
        f"押してください。</p>{_address(masked)}"
        '<form method="post">'
        '<input type="hidden" name="confirm" value="1">'
        '<button type="submit">配信を停止する</button></form>',
        footer=shop.footer,
    )


def _already_page(shop: ShopFooter, masked: str) -> HTMLResponse:
    return page(
        "すでに配信停止済みです",
        f"<p>{shop.name}からのメールの配信は、すでに停止しています。"
        f"あらためてのお手続きは必要ありません。</p>{_address(masked)}",
        footer=shop.footer,
    )


def result_page(shop: ShopFooter, masked: str, before: str) -> HTMLResponse:
    """What a POST did, told by the state the address was in before it."""
    if before == "listed":
        return _already_page(shop, masked)
    if before == "unsuppressed":
        return page(
            "配信を再び停止しました",
            "<p>このメールアドレスは以前の配信停止の後、配信を再開していましたが、"
            f"お申し出により、{shop.name}からのメールの配信を再び停止しました。"
            f"今後、このメールアドレスにはお送りしません。</p>{_address(masked)}",
            footer=shop.footer,
        )
    return page(
        "配信を停止しました",
        f"<p>{shop.name}からのメールの配信を停止しました。"
        f"今後、このメールアドレスにはお送りしません。</p>{_address(masked)}",
        footer=shop.footer,
    )
