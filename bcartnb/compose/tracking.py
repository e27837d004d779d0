"""Click and open measurement in a campaign's mails: links through the shop's tracking server.

With ``[tracking] url`` set (and neither the shop's ``track = false`` nor the campaign's),
each mail is written as usual and then, as its last step, its links are pointed at
``{url}/c/<token>`` and an HTML mail gets a 1×1 image ``{url}/o/<token>``
(:mod:`bcartnb.mailtokens.tracking`; the server is :mod:`bcartnb.hygiene.unsubscribe`).
Rewriting the finished text and HTML, after the fast or the reference path made them, keeps
the two paths byte-equal with tracking on as they are without it.

Which links are tracked is settled once per campaign, from the template and the signature
as written (:func:`tracked_links`), and numbered in order of first appearance; that table
(number → URL) is what the ledger records with the campaign and the only place the server
takes a redirect's target from. So:

* only a link written out in full (``https://…``) is tracked; one holding a merge field
  (``{{ … }}``, a member's own URL, the ``unsubscribe_link``/``unsubscribe_url`` with its
  token) is left as it is, and so is any link to the ``unsubscribe_url`` setting's page
  (its fixed part before a merge field or ``?``; under it, when that ends in ``/``);
* ``mailto:`` and ``tel:`` are never tracked (only ``http://`` and ``https://`` are);
* in the HTML part, a link whose visible text is itself a URL keeps its href: pointing it
  elsewhere is what filters and 送信前の確認 call a misleading link (``link_text_mismatch``);
* the text part: each tracked URL is replaced by its tracking URL where it stands (a text
  link is only ever what it shows). The label before it (``冬のカタログ（…）``) stays, and
  the tracking URL is short and on the shop's own domain, so the reader still sees whose
  link it is; a text-only mail's sentences around a URL say where it goes.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Iterable
from html.parser import HTMLParser
from typing import Any, Final

from bcartnb.mailtokens import OPEN_LINK, TRAP_LINK, TrackSigner

__all__ = ["LinkTracker", "tracked_links"]

#: An http(s) URL as it stands in text: ASCII only, so 「」（）。 around it are not part of it.
_URL_RE: Final = re.compile(r"https?://[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]+", re.IGNORECASE)
_TRAILING: Final = ".,;:!?')]>"
#: ``<a …href="…"…>text</a>`` as css-inline writes it (attributes always double-quoted).
_ANCHOR_RE: Final = re.compile(
    r'(<a\b[^>]*?\shref=")([^"]*)("[^>]*>)(.*?)(</a\s*>)', re.IGNORECASE | re.DOTALL
)
_TAG_RE: Final = re.compile(r"<[^>]*>")
_URLISH_RE: Final = re.compile(r"(?:https?://|www\.)\S+", re.IGNORECASE)
_BODY_END_RE: Final = re.compile(r"</body\s*>", re.IGNORECASE)
_MARKUP: Final = ("{{", "{%", "{#")


class _Hrefs(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.found: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            href = dict(attrs).get("href")
            if href:
                self.found.append(href.strip())


def _hrefs(source: str) -> list[str]:
    parser = _Hrefs()
    parser.feed(source)
    parser.close()
    return parser.found


def _text_urls(source: str) -> list[str]:
    return [_trimmed(m.group()) for m in _URL_RE.finditer(source)]


def _trimmed(url: str) -> str:
    while url and url[-1] in _TRAILING:
        url = url[:-1]
    return url


def tracked_links(
    body: str, html_body: bool, signature: Iterable[str], never: Iterable[str | None] = ()
) -> tuple[str, ...]:
    """The campaign's link table: each distinct http(s) URL written out in full in the
    body or the signature (HTML hrefs for an HTML mail, URLs in the text for a text mail), in
    order of first appearance; link number ``i + 1`` is element ``i``. ``never``: URLs left
    as they are whatever the template says (the unsubscribe setting)."""
    found = (_hrefs if html_body else _text_urls)(body)
    for part in signature:
        found += (_hrefs if html_body else _text_urls)(part)
    skip = [_stem(u) for u in never if u]
    out: list[str] = []
    for url in found:
        if (
            url.lower().startswith(("http://", "https://"))
            and not any(m in url for m in _MARKUP)
            and not any(_under(url, stem) for stem in skip)
            and url not in out
            and not any(c.isspace() or ord(c) < 32 for c in url)
        ):
            out.append(url)
    return tuple(out[: TRAP_LINK - 1])  # numbers 1 to TRAP_LINK - 1; any more stay as written


def _stem(setting: str) -> str:
    """The fixed part of an unsubscribe setting: before its first merge field or query."""
    for mark in ("{{", "{%", "?", "#"):
        setting = setting.split(mark, 1)[0]
    return setting


def _under(url: str, stem: str) -> bool:
    """Whether ``url`` is the unsubscribe page ``stem`` names (or, for a folder, under it)."""
    bare = url.split("?", 1)[0].split("#", 1)[0]
    return bare.rstrip("/") == stem.rstrip("/") or (stem.endswith("/") and bare.startswith(stem))


class LinkTracker:
    """One campaign's rewriting: its link table, the tracking base URL and the signer."""

    def __init__(
        self, base: str, signer: TrackSigner, campaign_id: str, links: tuple[str, ...]
    ) -> None:
        self.base = base.rstrip("/")
        self.campaign_id = campaign_id
        self.links = links
        self._signer = signer
        self._numbers = {url: i + 1 for i, url in enumerate(links)}

    def url(self, member_id: int, number: int) -> str:
        """The tracking URL of link ``number`` (0: the open image) in the member's mail."""
        kind = "o" if number == OPEN_LINK else "c"  # the hidden link is a click: TRAP_LINK
        return f"{self.base}/{kind}/{self._signer.make(self.campaign_id, member_id, number)}"

    def apply(self, member_id: Any, text: str, body: str | None) -> tuple[str, str | None]:
        """The member's text and HTML parts with their tracked links rewritten and, in HTML,
        the open image added before ``</body>``. A member id that is no integer (none of
        B-Cart's) cannot be in a token: that mail is left as it is."""
        try:
            mid = int(member_id)
        except (TypeError, ValueError):
            return text, body
        urls: dict[int, str] = {}

        def url(number: int) -> str:
            if number not in urls:
                urls[number] = self.url(mid, number)
            return urls[number]

        return self._text(url, text), None if body is None else self._html(url, body)

    def _text(self, url: Callable[[int], str], text: str) -> str:
        url_of = url

        def swap(m: re.Match[str]) -> str:
            whole = m.group()
            found = _trimmed(whole)
            number = self._numbers.get(found)
            if number is None:
                return whole
            return url_of(number) + whole[len(found) :]

        return _URL_RE.sub(swap, text) if self.links else text

    def _html(self, url: Callable[[int], str], body: str) -> str:
        def swap(m: re.Match[str]) -> str:
            number = self._numbers.get(html.unescape(m.group(2)).strip())
            shown = " ".join(html.unescape(_TAG_RE.sub("", m.group(4))).split())
            if number is None or _URLISH_RE.fullmatch(shown):
                return m.group()
            tracked = html.escape(url(number))
            return m.group(1) + tracked + m.group(3) + m.group(4) + m.group(5)

        if self.links:
            body = _ANCHOR_RE.sub(swap, body)
        pixel = (
            f'<img src="{html.escape(url(OPEN_LINK))}" width="1" height="1" '
            'alt="" style="display:block;border:0;width:1px;height:1px">'
            f'<a href="{html.escape(url(TRAP_LINK))}" aria-hidden="true" tabindex="-1" '
            'style="display:none;width:0;height:0;overflow:hidden;font-size:0;line-height:0">'
            "</a>"
        )
        ends = list(_BODY_END_RE.finditer(body))
        if not ends:
            return body.rstrip("\n") + pixel + "\n"
        at = ends[-1].start()
        return body[:at] + pixel + body[at:]
