"""The public server's click and open answers: ``/c/<token>`` and ``/o/<token>``.

They are routes of the one-click unsubscribe server's app (:mod:`bcartnb.hygiene.unsubscribe`:
one process, one proxy recipe, the same guard against slow clients and the same strict
headers, ``Referrer-Policy: no-referrer`` among them, so a token never leaves in a Referer),
under the path of ``[tracking] url`` (``https://shop.example.co.jp/t`` → ``/t/c/<token>``).

``GET``/``HEAD <path>/c/<token>``
    302 to the URL the ledger recorded for the token's campaign and link number
    (:meth:`~bcartnb.ledger.Ledger.link_target`), never to anything the request carries, so
    the server redirects nowhere a shop's mail did not link to; the click is counted.
    The hidden link's token (:data:`~bcartnb.mailtokens.TRAP_LINK`): 204, counted as a machine.
``GET``/``HEAD <path>/o/<token>``
    A 1×1 transparent GIF; the open is counted.
A malformed, altered or forged token, a link number the campaign has no link for (a link
added to the template after sending, another campaign's number), an open token on ``/c/``
or the reverse: the unsubscribe server's fixed 404 page, which repeats nothing of the
request, and nothing is recorded.

Answering does not wait for SQLite: a link table is read once per campaign and kept (it is
frozen when the campaign is first sent), and the event is queued for the writer
(:mod:`bcartnb.hygiene.track_writer`: batches, recorded by a process of its own, flushed on a
clean stop; what a SIGKILL loses).

Who is a machine (counted apart, never as a person). Here, by the request alone:

* a ``HEAD`` request: a browser following a link asks with ``GET``; link checkers and
  gateways often only ``HEAD``;
* a User-Agent that is empty or names a known scanner, mail gateway, link checker, crawler or
  HTTP library (a case-insensitive substring of :data:`SCANNER_AGENTS`: Microsoft Defender
  Safe Links / Office 365, Proofpoint URL Defense, Mimecast, Barracuda, Trend Micro, Google's
  link checkers, curl, wget, python-requests, Go-http-client, ...).

And by the ledger (:mod:`bcartnb.ledger.tracking`), for gateways that pose as a browser:
every link of one mail fetched within 2 seconds of each other
(:data:`~bcartnb.ledger.tracking.BURST_SECONDS`); a click within 10 seconds of the mail's
delivery (:data:`~bcartnb.ledger.tracking.DELIVERY_SECONDS`); and the hidden link: its fetch,
and every event of that mail within 60 seconds of it
(:data:`~bcartnb.ledger.tracking.TRAP_SECONDS`).

Privacy: no IP address and no User-Agent is kept (the address is not even read), only the
member, link, kind, first and last time and count; ``[tracking] retention_days`` bounds how
long (the writer purges at start and daily).

Known limits, said wherever the numbers are shown: an open is only seen when the mail's
images are shown (many clients block them), Apple Mail Privacy Protection fetches every
image of every mail (its opens look like people's), and a text-only mail has no image.
"""

from __future__ import annotations

import base64
import logging
import re
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import TYPE_CHECKING, Final

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from bcartnb.exceptions import BcartnbError
from bcartnb.hygiene.track_writer import TrackWriter
from bcartnb.ledger.tracking import TrackEvent
from bcartnb.mailtokens import OPEN_LINK, TRAP_LINK, TrackSigner, TrackToken
from bcartnb.quota import now_tokyo

if TYPE_CHECKING:
    from bcartnb.ledger import Ledger
    from bcartnb.settings import Settings

__all__ = ["GIF", "SCANNER_AGENTS", "Tracker", "is_machine", "tracking_routes"]

log = logging.getLogger("bcartnb.unsubscribe")

#: The 1×1 transparent GIF the open image is.
GIF: Final = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")

#: User-Agent substrings (lower case) of scanners, crawlers and HTTP libraries: a request
#: from one is a machine's. Mail gateways that pose as a browser are caught by the burst rule.
SCANNER_AGENTS: Final = (
    "bot",
    "crawler",
    "spider",
    "scanner",
    "preview",
    "curl/",
    "wget/",
    "python-requests",
    "python-urllib",
    "python-httpx",
    "aiohttp",
    "go-http-client",
    "java/",
    "okhttp",
    "apache-httpclient",
    "libwww-perl",
    "headlesschrome",
    "phantomjs",
    "proofpoint",
    "mimecast",
    "barracuda",
    "trendmicro",
    "trend micro",
    "symantec",
    "forcepoint",
    "fireeye",
    "sophos",
    "safelinks",
    "safe links",
    "microsoft office",
    "ms-office",
    "microsoft url control",
    "microsoft exchange",
    "skypeuripreview",
    "urldefense",
    "ironport",
    "cisco",
    "checkpoint",
    "fortinet",
    "zscaler",
    "messagelabs",
    "google-safety",
    "google-read-aloud",
    "googleother",
    "google-inspectiontool",
    "chrome-lighthouse",
    "headless",
    "slackbot",
    "facebookexternalhit",
    "node-fetch",
    "axios/",
    "httpclient",
    "winhttp",
    "powershell",
    "libcurl",
    "httpie",
)


#: :data:`SCANNER_AGENTS` as one search (every request asks).
_SCANNER_RE: Final = re.compile("|".join(re.escape(s) for s in SCANNER_AGENTS))


def is_machine(method: str, user_agent: str | None) -> bool:
    """A HEAD, no User-Agent, or a known scanner's (the other rules are the ledger's)."""
    if method == "HEAD":
        return True
    agent = (user_agent or "").lower().strip()
    return not agent or _SCANNER_RE.search(agent) is not None


Answer = Callable[[], Awaitable[Response]]


class Tracker:
    """The app's click and open state: the link tables read so far and the event writer."""

    def __init__(
        self, ledger: Ledger, retention_days: int | None, clock: Callable[[], datetime] | None
    ) -> None:
        self.ledger = ledger
        self.writer = TrackWriter(ledger, retention_days=retention_days, clock=clock)
        self._links: dict[str, dict[int, str]] = {}
        self._known: set[str] = set()

    async def target(self, campaign_id: str, number: int) -> str | None:
        """Link ``number``'s URL: the frozen table, read once per campaign it is found for."""
        table = self._links.get(campaign_id)
        if table is None:
            table = await run_in_threadpool(self.ledger.tracked_links, campaign_id)
            if not table:
                return None  # not sent yet, or measured nothing: ask again next time
            if len(self._links) > 10_000:
                self._links.clear()
            self._links[campaign_id] = table
        return table.get(number)

    async def known(self, campaign_id: str) -> bool:
        """Whether the ledger has the campaign (once known, always: campaigns are kept)."""
        if campaign_id in self._known:
            return True
        found = await run_in_threadpool(self.ledger.campaign_known, campaign_id)
        if found:
            if len(self._known) > 10_000:
                self._known.clear()
            self._known.add(campaign_id)
        return found


def tracking_routes(
    settings: Settings,
    tracker: Tracker,
    not_found: Answer,
    unavailable: Callable[[], Response],
    clock: Callable[[], datetime] | None = None,
) -> list[Route]:
    """``/c/`` and ``/o/`` under ``[tracking] url``'s path, for the public server's app."""
    signer = TrackSigner(settings.unsubscribe_secret, "the tracking server")
    path = settings.tracking.path
    now = clock or now_tokyo

    def queued(request: Request, found: TrackToken, kind: str) -> bool:
        machine = is_machine(request.method, request.headers.get("user-agent"))
        event = TrackEvent(found.campaign_id, found.member_id, found.link, kind, machine, now())
        return tracker.writer.put(event)

    async def click(request: Request) -> Response:
        found = signer.open(request.path_params["token"])
        if found is None or found.link == OPEN_LINK:
            return await not_found()
        try:
            if found.link == TRAP_LINK:
                target = None if not await tracker.known(found.campaign_id) else ""
            else:
                target = await tracker.target(found.campaign_id, found.link)
        except BcartnbError as err:
            log.error("クリックを記録できません: %s", err)
            return unavailable()
        if target is None:
            return await not_found()
        if not queued(request, found, "click"):
            return unavailable()
        if not target:
            return Response(status_code=204)
        return RedirectResponse(target, status_code=302)

    async def opened(request: Request) -> Response:
        found = signer.open(request.path_params["token"])
        if found is None or found.link != OPEN_LINK:
            return await not_found()
        try:
            if not await tracker.known(found.campaign_id):
                return await not_found()
        except BcartnbError as err:
            log.error("開封を記録できません: %s", err)
            return unavailable()
        if not queued(request, found, "open"):
            return unavailable()
        return Response(GIF, media_type="image/gif")

    return [
        Route(path + "/c/{token}", click, methods=["GET", "HEAD"]),
        Route(path + "/o/{token}", opened, methods=["GET", "HEAD"]),
    ]
