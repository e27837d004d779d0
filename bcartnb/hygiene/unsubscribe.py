"""The one-click unsubscribe server (RFC 8058): ``bcartnb unsubscribe-server``.

Each campaign mail's ``List-Unsubscribe`` URL ends in a signed token
(:mod:`bcartnb.mailtokens.tokens`). This small Starlette app, run by uvicorn behind the shop's
HTTPS reverse proxy, answers that URL:

``POST <prefix><token>``
    The mailbox provider's one-click request (body ``List-Unsubscribe=One-Click``) or the
    button on our own page (any body): the address the mail went to is put on the ledger's
    suppression list at once (reason ``unsubscribed``, source ``unsubscribe-server``, with the
    campaign and member; :meth:`~bcartnb.ledger.Ledger.record_unsubscribe`), and 200 with a
    Japanese page that says which of three things happened, each true:
    「配信を停止しました」 (listed now), 「すでに配信停止済みです」 (already listed: a repeat,
    or two requests at once; nothing changed) or 「配信を再び停止しました」 (listed before,
    taken off by ``bcartnb unsuppress`` since, and now listed again with a new event: the
    member asked again).
``GET <prefix><token>`` (and HEAD)
    A Japanese page with one button, a plain form POST to the same URL (or, for an address
    already listed, the 「すでに配信停止済みです」 page without one): a GET never
    unsubscribes, because link scanners and previews fetch every URL in a mail (RFC 8058 §4).
    Each page names the shop (``[shop] name``, else ``from_name``) and the masked address it
    stops (``t***@example.co.jp``), never the whole address, and ends with a link back to the
    shop and a contact line (:mod:`bcartnb.hygiene.unsubscribe_pages`).
Anything else
    A malformed, truncated, forged or foreign token, or a mail the ledger does not know: 404
    with a fixed page that repeats nothing of the request; another method: 405; a body over
    :data:`MAX_BODY_BYTES`: 413. Nothing changes for any of them.

Every answer of the app carries a strict Content-Security-Policy (no script, no external
resource, the one inline style by its hash, forms only to this origin, no framing),
``X-Frame-Options``, ``Referrer-Policy: no-referrer`` (the token never leaves in a Referer),
``nosniff`` and ``Cache-Control: no-store``; a request the HTTP layer cannot read (malformed,
too large, too slow) gets a fixed plain-text 400, 408 or 431 instead, with no page and
nothing of the request. No login, no cookies. uvicorn's access log is off, so the tokens
in request paths are not written to a log; what was unsubscribed is logged without the
address, in Japanese like uvicorn's own lines (:mod:`bcartnb.hygiene.server_log`). Slow
and idle clients cannot hold the server: the head and body deadlines and the connection queue
of :mod:`bcartnb.hygiene.http_guard` (settings ``[hygiene] server_*``).

The ledger is the same SQLite file the campaigns use (WAL, one ``BEGIN IMMEDIATE`` a write),
opened once at start; requests run its calls in worker threads, so several at once each
succeed, and a campaign's next round withholds the address
(:meth:`~bcartnb.ledger.Ledger.withhold_suppressed`).
"""

from __future__ import annotations

import contextlib
import logging
import re
import signal
import socket
import sys
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import datetime
from typing import TYPE_CHECKING, Final

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bcartnb.exceptions import BcartnbError, SettingsError, TransportError
from bcartnb.hygiene.tracking_server import Tracker, tracking_routes
from bcartnb.hygiene.unsubscribe_pages import (
    SECURITY_HEADERS,
    ShopFooter,
    confirm_page,
    page,
    result_page,
)
from bcartnb.ledger.suppressions import HygieneEvent, UnsubscribeState
from bcartnb.mailtokens import TokenSigner, UnsubscribeToken
from bcartnb.privacy import mask_address
from bcartnb.quota import now_tokyo
from bcartnb.templates import UNSUBSCRIBE_TOKEN_FIELD

if TYPE_CHECKING:
    import uvicorn

    from bcartnb.ledger import Ledger
    from bcartnb.settings import Settings

__all__ = [
    "DEFAULT_PORT",
    "MAX_BODY_BYTES",
    "SOURCE",
    "create_app",
    "event_for",
    "make_server",
    "prefix_from_settings",
    "serve",
]

DEFAULT_PORT: Final = 8026
#: The largest POST body taken: a one-click body is 26 bytes, a multipart one a few hundred.
MAX_BODY_BYTES: Final = 8 * 1024
#: The suppression list's ``source`` for what this server listed.
SOURCE: Final = "unsubscribe-server"

log = logging.getLogger("bcartnb.unsubscribe")

_PREFIX_RE: Final = re.compile(r"/(?:[A-Za-z0-9._~-]+/)*")
_URL_RE: Final = re.compile(
    r"https?://[^/{}\s]+(?P<path>/(?:[^{}?#\s]*/)?)\{\{\s*" + UNSUBSCRIBE_TOKEN_FIELD + r"\s*\}\}"
)


async def _not_found(request: Request, exc: Exception) -> Response:
    return await _not_found_page()


async def _not_found_page() -> Response:
    return page(
        "ページが見つかりません",
        "<p>このリンクは無効です。メールに記載のリンクをもう一度お確かめください。</p>",
        404,
    )


async def _not_allowed(request: Request, exc: Exception) -> Response:
    response = page("この操作はできません", "<p>このページでは使えない操作です。</p>", 405)
    if isinstance(exc, HTTPException) and exc.headers:
        response.headers.update(exc.headers)
    return response


def _too_large() -> HTMLResponse:
    return page("リクエストが大きすぎます", "<p>送信内容が大きすぎます。</p>", 413)


def _unavailable() -> HTMLResponse:
    response = page(
        "ただいま混み合っています",
        "<p>お手数ですが、しばらくしてからもう一度お試しください。</p>",
        503,
    )
    response.headers["Retry-After"] = "30"
    return response


class _SecurityHeaders:
    """Adds :data:`SECURITY_HEADERS` to every response, the framework's own errors included."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers[name] = value
            await send(message)

        await self.app(scope, receive, send_with_headers)


def event_for(found: UnsubscribeToken, at: datetime, how: str) -> HygieneEvent:
    """The hygiene event an accepted token records: keyed by its campaign and member, so the
    same mail's unsubscribe is recorded once however often it arrives."""
    return HygieneEvent(
        key=f"one-click:{found.campaign_id}:{found.member_id}",
        kind="unsubscribed",
        address=found.address,
        at=at,
        source=SOURCE,
        campaign_id=found.campaign_id,
        member_id=found.member_id,
        detail=how,
    )


#: What the mailbox provider's one-click POST carries (RFC 8058 §3.1), as form data.
_ONE_CLICK: Final = b"list-unsubscribe=one-click"


async def _read_body(request: Request) -> bytes | None:
    """The POST body, or None as soon as it is over :data:`MAX_BODY_BYTES` (nothing read past).

    Raises ClientDisconnect when the client went away or was cut off by the body deadline.
    """
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        return None
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            return None
    return bytes(body)


def _how(body: bytes) -> str:
    """How the request came, for the list's ``detail``: the provider's one-click POST, or the
    button on our confirmation page (whatever else a POST carries is accepted the same)."""
    return "one-click (RFC 8058)" if _ONE_CLICK in body.lower() else "confirmation page"


def create_app(
    settings: Settings,
    ledger: Ledger,
    *,
    prefix: str = "/",
    clock: Callable[[], datetime] | None = None,
) -> Starlette:
    """The ASGI app answering ``<prefix><token>``; ``ledger`` stays open while it serves.

    Refuses to build (SettingsError) without the secret or with a prefix that is not a
    plain path from ``/`` to ``/``.
    """
    signer = TokenSigner(settings.unsubscribe_secret, "the unsubscribe server")
    prefix = _check_prefix(prefix)
    shop = ShopFooter.of(settings)

    def address_of(campaign_id: str, member_id: int) -> str | None:
        return ledger.delivery_address(campaign_id, member_id)

    def record(found: UnsubscribeToken, how: str) -> UnsubscribeState:
        now = (clock or now_tokyo)()
        return ledger.record_unsubscribe(event_for(found, now, how), now=now)

    async def unsubscribe(request: Request) -> Response:
        token = request.path_params["token"]
        try:
            found = await run_in_threadpool(signer.open, token, address_of)
        except BcartnbError as err:  # the ledger locked or gone: say so, change nothing
            log.error("配信停止を確認できません: %s", err)
            return _unavailable()
        if found is None:
            return await _not_found_page()
        if request.method != "POST":
            try:
                state = await run_in_threadpool(ledger.unsubscribe_state, found.address)
            except BcartnbError as err:
                log.error("配信停止を確認できません: %s", err)
                return _unavailable()
            return confirm_page(shop, mask_address(found.address), state)
        try:
            body = await _read_body(request)
        except ClientDisconnect:  # gone, or cut off by the body deadline: nothing recorded
            return Response(status_code=400)
        if body is None:
            return _too_large()
        try:
            before = await run_in_threadpool(record, found, _how(body))
        except BcartnbError as err:
            log.error("配信停止を記録できません: %s", err)
            return _unavailable()
        if before != "listed":
            again = "（再度）" if before == "unsuppressed" else ""
            log.info(
                "配信停止%s: キャンペーン %s 会員 %s", again, found.campaign_id, found.member_id
            )
        return result_page(shop, mask_address(found.address), before)

    async def not_found() -> Response:
        return await _not_found_page()

    tracker = Tracker(ledger, settings.tracking.retention_days, clock)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        tracker.writer.start()  # the retention purge runs first
        try:
            yield
        finally:
            await run_in_threadpool(tracker.writer.close)  # nothing queued is lost

    tracking = tracking_routes(settings, tracker, not_found, _unavailable, clock)
    app = Starlette(
        routes=[*tracking, Route(prefix + "{token}", unsubscribe, methods=["GET", "POST"])],
        exception_handlers={404: _not_found, 405: _not_allowed},
        middleware=[Middleware(_SecurityHeaders)],
        lifespan=lifespan,
    )
    # A path with a trailing slash is not redirected to the one without: that redirect echoed the
    # request's path back in Location (found by the forged-token property with the token "0/").
    app.router.redirect_slashes = False
    app.state.tracker = tracker
    return app


def _check_prefix(prefix: str) -> str:
    if not prefix.startswith("/"):
        prefix = "/" + prefix
    if not prefix.endswith("/"):
        prefix += "/"
    if not _PREFIX_RE.fullmatch(prefix) or "/../" in prefix or "/./" in prefix:
        raise SettingsError(
            f"unsubscribe server prefix must be a plain path such as /mail/stop/, not {prefix!r}",
            ja="配信停止サーバーのパス（--prefix）は /mail/stop/ のような形にしてください"
            f"（{prefix!r} ではなく）。",
        )
    return prefix


def prefix_from_settings(settings: Settings) -> str:
    """The path in front of the token in ``unsubscribe_url``: where the proxy forwards it.

    ``https://shop.example.co.jp/mail/stop/{{ unsubscribe_token }}`` → ``/mail/stop/``. A
    setting without the token as the URL's last path segment is refused: its links would
    never reach this server.
    """
    url = settings.unsubscribe_url or ""
    found = _URL_RE.fullmatch(url.strip())
    if found is None:
        raise SettingsError(
            "unsubscribe_url must end in /{{ unsubscribe_token }} for the unsubscribe server "
            f"(for example https://shop.example.co.jp/mail/stop/{{{{ unsubscribe_token }}}}), "
            f"not {url!r}; or give --prefix",
            ja="設定の unsubscribe_url を https://…/{{ unsubscribe_token }} の形にしてください"
            f"（配信停止サーバーはURLの最後の部分でトークンを受け取ります。今は {url!r}）。",
        )
    return _check_prefix(found.group("path"))


#: How long a thread holds the GIL when another wants it, in the server process (s).
_SWITCH_INTERVAL: Final = 0.0005

#: Connections the kernel holds before they are accepted (capped by net.core.somaxconn): a
#: burst of one-click POSTs after a campaign waits there instead of retrying its SYN.
_BACKLOG: Final = 1024


def _listen(host: str, port: int) -> socket.socket:
    try:
        family, kind, proto, _, addr = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        sock = socket.socket(family, kind, proto)
    except OSError as err:
        raise TransportError(
            f"unsubscribe server {host}:{port}: cannot listen: {err.strerror or err}",
            ja=f"配信停止サーバーを {host}:{port} で起動できません。",
        ) from err
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(addr)
        sock.listen(_BACKLOG)
    except OSError as err:
        sock.close()
        raise TransportError(
            f"unsubscribe server {host}:{port}: cannot listen: {err.strerror or err}",
            ja=f"配信停止サーバーを {host}:{port} で起動できません"
            "（ポートが使用中か、使えないアドレスです）。",
        ) from err
    return sock


def serve(
    settings: Settings,
    *,
    host: str = "127.0.0.1",
    port: int | None = None,
    prefix: str | None = None,
    ready: Callable[[str, str], None] | None = None,
) -> None:
    """Serve until interrupted (Ctrl-C, SIGTERM): what ``bcartnb unsubscribe-server`` runs.

    Every setting is checked and the port bound before the first request, so a bad secret,
    prefix or busy port is a one-line error. ``ready(address, prefix)`` is called once
    listening. Starlette and uvicorn are imported by the server only, never by a campaign.
    """
    from bcartnb.ledger import Ledger

    port = DEFAULT_PORT if port is None else port
    path = _check_prefix(prefix) if prefix is not None else prefix_from_settings(settings)
    TokenSigner(settings.unsubscribe_secret, "the unsubscribe server")
    sock = _listen(host, port)
    # No other thread may keep the GIL long while the event loop has answers to send (the
    # click writer's thread hands batches to its process; the pool runs the unsubscribe
    # pages' ledger calls): every socket send lets one in, by default for up to 5 ms.
    sys.setswitchinterval(_SWITCH_INTERVAL)
    with Ledger.open(settings=settings) as ledger:
        server = make_server(settings, ledger, prefix=path)
        try:
            with _stopped_quietly(server):  # before the banner: from then on a stop is clean
                if ready is not None:
                    bound = sock.getsockname()
                    ready(f"{bound[0]}:{bound[1]}", path)
                server.run(sockets=[sock])
        finally:
            sock.close()


def make_server(
    settings: Settings,
    ledger: Ledger,
    *,
    prefix: str = "/",
    log_level: str = "info",
    clock: Callable[[], datetime] | None = None,
) -> uvicorn.Server:
    """The uvicorn server :func:`serve` runs (``server.run(sockets=[...])``), tests too.

    No ``limit_concurrency``: uvicorn counts idle connections against it and answers 503.
    Instead the guard's deadlines and connection queue (:mod:`bcartnb.hygiene.http_guard`)
    from ``[hygiene] server_*``; requests past the app's thread pool (40) wait for a thread.
    The app's lifespan starts the click writer and, on a clean stop, writes what it holds.
    """
    import uvicorn

    from bcartnb.hygiene.http_guard import MAX_HEAD_BYTES, ServerLimits, guarded_protocol
    from bcartnb.hygiene.server_log import log_config

    hygiene = settings.hygiene
    limits = ServerLimits(
        header_timeout=hygiene.server_header_timeout,
        body_timeout=hygiene.server_body_timeout,
        connections=hygiene.server_connections,
    )
    config = uvicorn.Config(
        create_app(settings, ledger, prefix=prefix, clock=clock),
        http=guarded_protocol(limits),
        ws="none",
        lifespan="on",  # the click writer: started, and flushed on a clean stop
        access_log=False,  # request paths hold tokens
        server_header=False,
        proxy_headers=False,
        timeout_keep_alive=5,
        h11_max_incomplete_event_size=MAX_HEAD_BYTES,  # the guard refuses a whole one too
        log_config=log_config(),  # Japanese lines on stderr, ours and uvicorn's alike
        log_level=log_level,
    )
    return uvicorn.Server(config)


@contextlib.contextmanager
def _stopped_quietly(server: uvicorn.Server) -> Iterator[None]:
    """Ctrl-C and SIGTERM stop the server cleanly, and then the command ends with 0.

    uvicorn handles both signals itself (a graceful shutdown), then raises the signal again
    for the handler that was there before it: this one, instead of Python's
    KeyboardInterrupt or the default SIGTERM death (exit 143 under systemd). It asks uvicorn
    for the same graceful stop, so a signal that comes after the banner but before uvicorn
    has taken the signals over (while it starts) stops it too: it was ignored, and the
    server then ran on.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, frame: object) -> None:
        server.should_exit = True  # uvicorn's own handler does no more; it checks it on start

    stops = (signal.SIGINT, signal.SIGTERM)
    before = {sig: signal.signal(sig, stop) for sig in stops}
    try:
        yield
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)
