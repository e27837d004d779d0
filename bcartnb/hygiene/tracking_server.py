"""The public server's click and open answers: ``/c/<token>`` and ``/o/<token>``.

They are routes of the one-click unsubscribe server's app (:mod:`bcartnb.hygiene.unsubscribe`:
one process, one proxy recipe, the same guard against slow clients and the same strict
headers, ``Referrer-Policy: no-referrer`` among them, so a token never leaves in a Referer),
under the path of ``[tracking] url`` (``https://shop.example.co.jp/t`` → ``/t/c/<token>``).

``GET``/``HEAD <path>/c/<token>``
    302 to the URL the ledger recorded for the token's campaign and link number
    (:meth:`~bcartnb.ledger.Ledger.link_target`), never to anything the request carries, so
    the server redirects nowhere a shop's mail did not link to; the click is counted.
``GET``/``HEAD <path>/o/<token>``
    A 1×1 transparent GIF; the open is counted.
A malformed, altered or forged token, a link number the campaign has no link for (a link
added to the template after sending, another campaign's number), an open token on ``/c/``
or the reverse: the unsubscribe server's fixed 404 page, which repeats nothing of the
request, and nothing is recorded.

Who is a machine (counted apart, never as a person; :data:`SCANNER_AGENTS`):

* a ``HEAD`` request: a browser following a link asks with ``GET``; link checkers and
  gateways often only ``HEAD``;
* a User-Agent that is empty or names a known scanner, crawler or HTTP library (a
  case-insensitive substring of :data:`SCANNER_AGENTS`);
* two links of one mail clicked within 2 seconds of each other: a gateway (Microsoft
  Defender Safe Links, Proofpoint, Trend Micro, ...) fetching every link of a mail at
  delivery; both are moved to the machines (the ledger's rule,
  :data:`~bcartnb.ledger.tracking.BURST_SECONDS`).

Known limits, said wherever the numbers are shown: an open is only seen when the mail's
images are shown (many clients block them), Apple Mail Privacy Protection fetches every
image of every mail (its opens look like people's), and a text-only mail has no image.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import TYPE_CHECKING, Final

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from bcartnb.exceptions import BcartnbError
from bcartnb.mailtokens import OPEN_LINK, TrackSigner, TrackToken
from bcartnb.quota import now_tokyo

if TYPE_CHECKING:
    from bcartnb.ledger import Ledger
    from bcartnb.settings import Settings

__all__ = ["GIF", "SCANNER_AGENTS", "is_machine", "tracking_routes"]

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
    "microsoft office",
)


def is_machine(method: str, user_agent: str | None) -> bool:
    """A HEAD, no User-Agent, or a known scanner's (the burst rule is the ledger's)."""
    if method == "HEAD":
        return True
    agent = (user_agent or "").lower().strip()
    return not agent or any(s in agent for s in SCANNER_AGENTS)


Answer = Callable[[], Awaitable[Response]]


def tracking_routes(
    settings: Settings,
    ledger: Ledger,
    not_found: Answer,
    unavailable: Callable[[], Response],
    clock: Callable[[], datetime] | None = None,
) -> list[Route]:
    """``/c/`` and ``/o/`` under ``[tracking] url``'s path, for the public server's app."""
    signer = TrackSigner(settings.unsubscribe_secret, "the tracking server")
    path = settings.tracking.path

    def record(found: TrackToken, kind: str, machine: bool) -> bool:
        return ledger.record_track(
            found.campaign_id,
            found.member_id,
            found.link,
            kind,
            machine=machine,
            now=(clock or now_tokyo)(),
        )

    def machine_of(request: Request) -> bool:
        return is_machine(request.method, request.headers.get("user-agent"))

    async def click(request: Request) -> Response:
        found = signer.open(request.path_params["token"])
        if found is None or found.link == OPEN_LINK:
            return await not_found()
        try:
            target = await run_in_threadpool(ledger.link_target, found.campaign_id, found.link)
            if target is None:
                return await not_found()
            await run_in_threadpool(record, found, "click", machine_of(request))
        except BcartnbError as err:
            log.error("クリックを記録できません: %s", err)
            return unavailable()
        return RedirectResponse(target, status_code=302)

    async def opened(request: Request) -> Response:
        found = signer.open(request.path_params["token"])
        if found is None or found.link != OPEN_LINK:
            return await not_found()
        try:
            if not await run_in_threadpool(ledger.campaign_known, found.campaign_id):
                return await not_found()
            await run_in_threadpool(record, found, "open", machine_of(request))
        except BcartnbError as err:
            log.error("開封を記録できません: %s", err)
            return unavailable()
        return Response(GIF, media_type="image/gif")

    return [
        Route(path + "/c/{token}", click, methods=["GET", "HEAD"]),
        Route(path + "/o/{token}", opened, methods=["GET", "HEAD"]),
    ]
