"""A local B-Cart API for the tests: a real HTTP server (Starlette on uvicorn, in a thread).

It follows the shapes in bcartnb/bcart_api/__init__.py: ``GET /api/v1/customers`` paged by
``limit``/``offset`` (at most 100), ``GET /api/v1/customer_customs``, ``PATCH
/api/v1/customers`` with ``{"customers": [{"id": ..., field: value}]}``, and ``GET
/api/v1/orders`` as bcartnb/bcart_api/orders.py describes it (``complete=1``,
``updated_at_min``). It checks the
Bearer token (401 otherwise), enforces a rate limit with a lock-out and ``Retry-After``
(configurable, so a test takes a second, not five minutes), can drop a connection in the
middle of a page or answer 5xx, and records every request and every PATCH body.

Hostile modes, each a field: ``ignore_offset`` (the first page forever), ``repeat_offsets``
(answer an earlier page again), ``endless`` (fresh members on every page, never a short one),
``total`` (announce a count, true or not), ``fail_429``/``retry_after`` (a 429 storm, with
any ``Retry-After`` or none, also on the lock-out), ``lock_offsets`` (a 429 at one page),
``stall_offsets`` (hold a page for a
long time), ``fail_with`` (answer error statuses) and ``echo`` (quote the Authorization
header in error bodies, in any encoding the test gives).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import math
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Route

TOKEN = "test-token-7f3a9c1e5b2d4a6f8e0c1b3d5f7a9c2e"


@dataclass
class FakeBcart:
    """The shop's state and the server's behaviour; tests change the fields between calls."""

    customers: list[dict[str, Any]] = field(default_factory=list)
    customs: list[dict[str, Any]] = field(default_factory=list)
    #: each with its order_products and updated_at ("YYYY-MM-DD HH:MM:SS", for updated_at_min)
    orders: list[dict[str, Any]] = field(default_factory=list)
    token: str = TOKEN
    rate_requests: int = 1000
    rate_window: float = 60.0
    lockout: float = 1.0
    end_with_404: bool = False  # a page past the end: 404 instead of an empty list
    drop_offsets: set[int] = field(default_factory=set)  # drop the connection once there
    fail_5xx: int = 0  # answer the next N requests with 503 ...
    unavailable_retry_after: str | None = None  # ... with this Retry-After (None: without)
    echo_token_on_error: bool = False  # a hostile server quoting the request in its errors
    echo: Callable[[str], str] | None = None  # ...quoting it in this form (the header's value)
    fail_with: list[int] = field(default_factory=list)  # answer the next requests so
    redirect_to: str | None = None  # customer_customs answers 302 to this URL
    ignore_offset: bool = False  # GET /customers always answers the first page
    ignore_since: bool = False  # GET /orders answers every order, whatever updated_at_min says
    repeat_offsets: dict[int, int] = field(default_factory=dict)  # offset -> page served
    endless: bool = False  # every page full of members never seen before
    total: int | None = None  # announce {"total": n} in every page
    fail_429: int = 0  # answer the next N requests with 429 ...
    retry_after: str | None = "1"  # ... with this Retry-After (None: no header at all)
    lockout_retry_after: bool = True  # the rate limit's lock-out names its Retry-After
    stall_offsets: dict[int, float] = field(default_factory=dict)  # offset -> seconds held
    lock_offsets: dict[int, str] = field(default_factory=dict)  # offset -> one 429 with this
    requests: list[tuple[str, str, str]] = field(default_factory=list)
    patches: list[Any] = field(default_factory=list)
    locked: int = 0  # answers 429 given
    dropped: int = 0
    _sent: collections.deque[float] = field(default_factory=collections.deque)
    _locked_until: float = 0.0

    # --- the rules -------------------------------------------------------------------------

    def _gate(self, request: Request) -> Response | None:
        now = time.monotonic()
        self.requests.append((request.method, request.url.path, request.url.query))
        if now < self._locked_until:
            return self._too_many(math.ceil(self._locked_until - now))
        while self._sent and self._sent[0] <= now - self.rate_window:
            self._sent.popleft()
        self._sent.append(now)
        if len(self._sent) > self.rate_requests:
            self._locked_until = now + self.lockout
            self._sent.clear()
            return self._too_many(math.ceil(self.lockout))
        if self.fail_429:
            self.fail_429 -= 1
            self.locked += 1
            headers = {} if self.retry_after is None else {"Retry-After": self.retry_after}
            return JSONResponse({"message": "Too Many Requests"}, 429, headers)
        if request.headers.get("authorization") != f"Bearer {self.token}":
            return self._refuse(request, "Unauthenticated.", 401)
        if self.fail_5xx:
            self.fail_5xx -= 1
            refused = self._refuse(request, "Service Unavailable", 503)
            if self.unavailable_retry_after is not None:
                refused.headers["Retry-After"] = self.unavailable_retry_after
            return refused
        if self.fail_with:
            return self._refuse(request, "Refused", self.fail_with.pop(0))
        return None

    def _too_many(self, wait: int) -> Response:
        self.locked += 1
        headers = {"Retry-After": str(wait)} if self.lockout_retry_after else {}
        return JSONResponse({"message": "Too Many Requests"}, 429, headers)

    def _refuse(self, request: Request, message: str, status: int) -> Response:
        body = {"message": message}
        auth = request.headers.get("authorization", "")
        if self.echo is not None:
            body["request"] = self.echo(auth)
        elif self.echo_token_on_error:
            body["request"] = auth
        return JSONResponse(body, status)

    def _page(self, offset: int, limit: int) -> list[dict[str, Any]]:
        if self.endless:  # a member nobody has seen, for every place asked
            return [
                {"id": 10**9 + offset + i, "email": f"e{offset + i}@example.jp"}
                for i in range(limit)
            ]
        if self.ignore_offset:
            offset = 0
        offset = self.repeat_offsets.get(offset, offset)
        return self.customers[offset : offset + limit]

    async def customers_get(self, request: Request) -> Response:
        refused = self._gate(request)
        if refused is not None:
            return refused
        limit = min(int(request.query_params.get("limit", "20")), 100)
        offset = int(request.query_params.get("offset", "0"))
        page = self._page(offset, limit)
        if offset in self.lock_offsets:
            self.locked += 1
            headers = {"Retry-After": self.lock_offsets.pop(offset)}
            return JSONResponse({"message": "Too Many Requests"}, 429, headers)
        if offset in self.stall_offsets:
            await asyncio.sleep(self.stall_offsets.pop(offset))
        if offset in self.drop_offsets:
            self.drop_offsets.discard(offset)
            self.dropped += 1
            return StreamingResponse(_cut_short(page), media_type="application/json")
        if not page and offset > 0 and self.end_with_404:
            return JSONResponse({"message": "Not Found"}, 404)
        reply: dict[str, Any] = {"customers": page}
        if self.total is not None:
            reply["total"] = self.total
        return JSONResponse(reply)

    async def orders_get(self, request: Request) -> Response:
        """``GET /orders`` (shapes in bcartnb/bcart_api/orders.py): pages by ``limit``/``offset``,
        ``updated_at_min`` keeps the orders whose ``updated_at`` is not earlier, and only
        ``complete=1`` brings ``order_products``. The hostile modes that make sense here:
        ``ignore_offset``, ``drop_offsets``, ``lock_offsets``, ``stall_offsets``, the gate's."""
        refused = self._gate(request)
        if refused is not None:
            return refused
        query = request.query_params
        limit = min(int(query.get("limit", "20")), 100)
        offset = 0 if self.ignore_offset else int(query.get("offset", "0"))
        since = None if self.ignore_since else query.get("updated_at_min")
        chosen = [o for o in self.orders if since is None or o.get("updated_at", "") >= since]
        page = chosen[offset : offset + limit]
        if query.get("complete") != "1":
            page = [{k: v for k, v in o.items() if k != "order_products"} for o in page]
        if offset in self.lock_offsets:
            self.locked += 1
            headers = {"Retry-After": self.lock_offsets.pop(offset)}
            return JSONResponse({"message": "Too Many Requests"}, 429, headers)
        if offset in self.stall_offsets:
            await asyncio.sleep(self.stall_offsets.pop(offset))
        if offset in self.drop_offsets:
            self.drop_offsets.discard(offset)
            self.dropped += 1
            return StreamingResponse(_cut_short(page), media_type="application/json")
        if not page and offset > 0 and self.end_with_404:
            return JSONResponse({"message": "Not Found"}, 404)
        return JSONResponse({"orders": page})

    async def customs_get(self, request: Request) -> Response:
        refused = self._gate(request)
        if refused is not None:
            return refused
        if self.redirect_to:
            return RedirectResponse(self.redirect_to, 302)
        return JSONResponse({"customer_customs": self.customs})

    async def customers_patch(self, request: Request) -> Response:
        refused = self._gate(request)
        if refused is not None:
            return refused
        body = await request.json()
        self.patches.append(body)
        by_id = {c["id"]: c for c in self.customers}
        updated = []
        for item in body.get("customers", []):
            member = by_id.get(item.get("id"))
            if member is None:
                return JSONResponse({"message": f"customer {item.get('id')} not found"}, 422)
            member.update({k: v for k, v in item.items() if k != "id"})
            updated.append(member)
        return JSONResponse({"customers": updated})

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/api/v1/customers", self.customers_get, methods=["GET"]),
                Route("/api/v1/customers", self.customers_patch, methods=["PATCH"]),
                Route("/api/v1/customer_customs", self.customs_get, methods=["GET"]),
                Route("/api/v1/orders", self.orders_get, methods=["GET"]),
            ]
        )


async def _cut_short(page: list[dict[str, Any]]) -> AsyncIterator[bytes]:
    """Half a page, then the connection goes: a reply cut off mid-body."""
    text = json.dumps({"customers": page}).encode()
    yield text[: len(text) // 2]
    await asyncio.sleep(0.01)
    raise ConnectionResetError("dropped by the test server")


@contextlib.contextmanager
def serve(fake: FakeBcart) -> Iterator[str]:
    """Run the fake on 127.0.0.1 (a free port) and give its api_url; stopped on exit."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        fake.app(), log_level="critical", lifespan="off", ws="none", access_log=False
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the local B-Cart API did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}/api/v1"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()
