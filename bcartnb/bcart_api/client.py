"""The HTTP client: one B-Cart shop's API, within its rate limit, retried, the token kept secret.

B-Cart allows 300 requests per 300 seconds per shop (all apps together) and locks a client
that goes over out for 300 seconds, answering with ``Retry-After``. So every request first
waits for a place in a sliding window (:class:`RateLimiter`), and a 429 waits the
``Retry-After`` it names before trying again; a 5xx or a dropped connection is retried with
exponential backoff (tenacity). The request that is retried is the one that failed: a pull
resumes at the page it was on, never from the start.

The token is sent only in the ``Authorization`` header. It is not in any URL, log line or
exception message: an error text that came from the server is scrubbed of it too.
"""

from __future__ import annotations

import collections
import contextlib
import json
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Final

import httpx
import tenacity

from bcartnb.exceptions import BcartApiError, SettingsError
from bcartnb.settings import BcartSettings

__all__ = ["BcartClient", "RateLimiter"]

#: B-Cart's documented limit: 300 requests in 300 seconds.
RATE_REQUESTS: Final = 300
RATE_WINDOW: Final = 300.0
#: The longest single wait a ``Retry-After`` may ask for (B-Cart's lock-out is 300 s).
MAX_RETRY_AFTER: Final = 600.0
_TOKEN_JA: Final = (
    "プライベートアプリ管理で発行したアクセストークンを環境変数 BCARTNB_BCART_TOKEN"
    "（または .env）に設定してください。"
)


class RateLimiter:
    """At most ``requests`` calls in any ``window`` seconds: a sliding window of send times.

    A dozen lines over a deque: the rate-limit libraries on PyPI bring buckets, backends and
    async APIs for what is one list of timestamps here, and this one takes an injected clock.
    """

    def __init__(
        self,
        requests: int = RATE_REQUESTS,
        window: float = RATE_WINDOW,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if requests < 1 or window <= 0:
            raise ValueError("a rate limit needs at least one request in a positive window")
        self.requests = requests
        self.window = window
        self.clock = clock
        self.sleep = sleep
        self._sent: collections.deque[float] = collections.deque()
        self.waited = 0.0

    @contextlib.contextmanager
    def slot(self) -> Iterator[None]:
        """One request: waits for a place, and counts the request from when its answer came.

        The server counts a request when it arrives, somewhere between our send and its
        answer; stamping the answer's time keeps our window behind the server's, so network
        jitter can only make us slower, never over the limit.
        """
        self.acquire()
        try:
            yield
        finally:
            if self._sent:
                self._sent[-1] = max(self._sent[-1], self.clock())

    def acquire(self) -> None:
        """Wait (if need be) until one more request stays within the limit, and count it."""
        while True:
            now = self.clock()
            while self._sent and self._sent[0] <= now - self.window:
                self._sent.popleft()
            if len(self._sent) < self.requests:
                self._sent.append(now)
                return
            wait = self._sent[0] + self.window - now
            self.waited += wait
            self.sleep(wait)


class _Retryable(Exception):
    """A reply worth trying again (429, 5xx); ``retry_after`` in seconds when the server said."""

    def __init__(self, status: int, retry_after: float | None) -> None:
        super().__init__(status)
        self.status = status
        self.retry_after = retry_after


# a dropped or refused connection, a timeout, a reply cut short: the request may be repeated
_NETWORK: Final = (httpx.NetworkError, httpx.TimeoutException, httpx.RemoteProtocolError)


def _retry_after(value: str | None) -> float | None:
    """``Retry-After`` in seconds (B-Cart sends seconds; an HTTP date is read as "soon")."""
    if value is None:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    if seconds != seconds or seconds < 0:  # NaN or negative
        return None
    return min(seconds, MAX_RETRY_AFTER)


class BcartClient:
    """One shop's B-Cart API: ``get`` and ``patch`` of JSON, limited, retried, token hidden.

    ``transport`` and ``sleep``/``clock`` are for tests (a real local server, no sleeping
    for minutes); ``rate`` is the client-side limiter (B-Cart's 300 per 300 s by default).
    """

    def __init__(
        self,
        settings: BcartSettings,
        *,
        rate: RateLimiter | None = None,
        attempts: int = 6,
        backoff: float = 2.0,
        timeout: float = 30.0,
        sleep: Callable[[float], None] = time.sleep,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if not settings.token:
            raise SettingsError(
                "no B-Cart access token: set BCARTNB_BCART_TOKEN in the environment or .env",
                ja=f"BカートAPIのアクセストークンがありません。{_TOKEN_JA}",
            )
        self.api_url = settings.api_url.rstrip("/")
        self._token = settings.token
        self.sleep = sleep
        self.rate = rate if rate is not None else RateLimiter(sleep=sleep)
        self.attempts = attempts
        self.backoff = backoff
        self.requests = 0
        self.retries = 0
        self._http = httpx.Client(
            base_url=self.api_url + "/",
            headers={"Authorization": f"Bearer {self._token}", "Accept": "application/json"},
            timeout=timeout,
            transport=transport,
            follow_redirects=False,  # a redirect must not carry the token to another host
        )

    def __enter__(self) -> BcartClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def __repr__(self) -> str:
        return f"BcartClient({self.api_url!r})"

    # --- requests -------------------------------------------------------------------------

    def get(self, path: str, params: Mapping[str, Any] | None = None) -> Any:
        """GET ``path`` (relative to ``api_url``) and its JSON; 404 is None."""
        return self._call("GET", path, params=params)

    def patch(self, path: str, body: Any) -> Any:
        """PATCH ``path`` with a JSON body and the reply's JSON.

        Retried like a GET: a PATCH sets absolute values (``mm_flag = 0``), so sending it
        again after a connection dropped mid-answer changes nothing more.
        """
        return self._call("PATCH", path, body=body)

    def _call(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        body: Any = None,
    ) -> Any:
        what = f"{method} {self.api_url}/{path.lstrip('/')}"
        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception_type((_Retryable, *_NETWORK)),
            wait=self._wait,
            stop=tenacity.stop_after_attempt(self.attempts),
            sleep=self.sleep,
            reraise=True,
            before_sleep=self._count_retry,
        )
        try:
            response = retrying(self._send, method, path.lstrip("/"), params, body)
        except _Retryable as err:
            raise BcartApiError(
                f"{what}: HTTP {err.status} after {self.attempts} attempts",
                ja=f"BカートAPIが応答しません（HTTP {err.status}）。"
                "しばらくしてからやり直してください。",
            ) from None
        except _NETWORK as err:
            raise BcartApiError(
                f"{what}: {type(err).__name__}: {self._scrub(str(err))} "
                f"(after {self.attempts} attempts)",
                ja="BカートAPIに接続できません。"
                "ネットワークと [bcart] api_url を確かめてください。",
            ) from None
        except httpx.HTTPError as err:
            raise BcartApiError(
                f"{what}: {type(err).__name__}: {self._scrub(str(err))}",
                ja="BカートAPIへの要求を送れませんでした。",
            ) from None
        return self._json(response, what)

    def _send(
        self, method: str, path: str, params: Mapping[str, Any] | None, body: Any
    ) -> httpx.Response | None:
        with self.rate.slot():
            self.requests += 1
            response = self._http.request(
                method, path, params=dict(params) if params else None, json=body
            )
        status = response.status_code
        if status == 429 or status >= 500:
            raise _Retryable(status, _retry_after(response.headers.get("Retry-After")))
        return response

    def _wait(self, state: tenacity.RetryCallState) -> float:
        err = state.outcome.exception() if state.outcome else None
        if isinstance(err, _Retryable) and err.retry_after is not None:
            return err.retry_after
        return float(min(self.backoff * 2 ** (state.attempt_number - 1), 60.0))

    def _count_retry(self, state: tenacity.RetryCallState) -> None:
        self.retries += 1

    def _json(self, response: httpx.Response | None, what: str) -> Any:
        assert response is not None
        status = response.status_code
        if status == 401:
            raise SettingsError(
                f"{what}: HTTP 401: the access token was refused (expired, revoked or mistyped)",
                ja=f"BカートAPIがアクセストークンを受け付けません（期限切れか誤り）。{_TOKEN_JA}",
            )
        if status == 403:
            raise SettingsError(
                f"{what}: HTTP 403: the token lacks the scope (customers-read / customers-write)",
                ja="アクセストークンに会員の読み取り・書き込みの権限（スコープ）がありません。"
                "プライベートアプリ管理でスコープを付けて発行し直してください。",
            )
        if status == 404:
            return None
        if not 200 <= status < 300:
            raise BcartApiError(
                f"{what}: HTTP {status}: {self._excerpt(response)}",
                ja=f"BカートAPIが要求を受け付けませんでした（HTTP {status}）。",
            )
        try:
            return response.json()
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise BcartApiError(
                f"{what}: the reply is not JSON: {self._excerpt(response)}",
                ja="BカートAPIの応答を読めませんでした（JSONではありません）。",
            ) from err

    def _excerpt(self, response: httpx.Response) -> str:
        text = " ".join(response.text.split())
        text = text if len(text) <= 200 else text[:197] + "..."
        return self._scrub(text) or "(empty)"

    def _scrub(self, text: str) -> str:
        """A server or a library could echo the request: the token never leaves this object."""
        return text.replace(self._token, "***")
