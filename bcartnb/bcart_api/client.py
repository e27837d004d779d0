"""The HTTP client: one B-Cart shop's API, within its rate limit, retried, the token kept secret.

B-Cart allows 300 requests per 300 seconds per shop (all apps together) and locks a client
that goes over out for 300 seconds, answering with ``Retry-After``. So every request first
waits for a place in a sliding window (:class:`RateLimiter`), and a 429 waits the
``Retry-After`` it names before trying again (without one, it backs off on its own schedule:
:data:`LOCKED_BACKOFF` doubling up to the 300-second lock-out); a 5xx or a dropped
connection is retried with exponential backoff (tenacity). The request that is retried is the
one that failed: a pull resumes at the page it was on, never from the start.

No wait is silent and none is endless: a wait of a second or more is reported second by
second to ``on_wait`` (the pull's progress bar shows the time left), and a request whose
waits would add up to more than ``max_wait`` (:data:`MAX_WAIT`, ten minutes: twice B-Cart's
lock-out) stops at once with :class:`WaitTooLong`, saying when to try again, instead of
sleeping through a ``Retry-After`` of an hour.

The token is sent only in the ``Authorization`` header. It is not in any URL, log line or
exception message: an error text that came from the server goes through
:func:`bcartnb.privacy.scrub`, which removes it in every form a server may echo it.
"""

from __future__ import annotations

import email.utils
import json
import time
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any, Final
from zoneinfo import ZoneInfo

import httpx
import tenacity

from bcartnb.exceptions import BcartApiError, SettingsError
from bcartnb.pacing import SlidingWindows
from bcartnb.privacy import scrub
from bcartnb.settings import BcartSettings

__all__ = ["LOCKED_BACKOFF", "MAX_WAIT", "BcartClient", "RateLimiter", "WaitTooLong"]

#: B-Cart's documented limit: 300 requests in 300 seconds, and a lock-out of 300 seconds.
RATE_REQUESTS: Final = 300
RATE_WINDOW: Final = 300.0
LOCKOUT: Final = 300.0
#: The most one request may wait in all (Retry-After, backoff): twice B-Cart's lock-out. A
#: server asking for longer is not going to answer soon; the pull stops and says when.
MAX_WAIT: Final = 600.0
#: A 429 without ``Retry-After`` waits this long, then twice as long each time, up to
#: :data:`LOCKOUT`: hammering a locked API only extends nothing and wastes requests.
LOCKED_BACKOFF: Final = 15.0
#: Waits this long or longer are reported to ``on_wait`` second by second.
SHOWN_WAIT: Final = 1.0
_TOKYO: Final = ZoneInfo("Asia/Tokyo")
_TOKEN_JA: Final = (
    "プライベートアプリ管理で発行したアクセストークンを環境変数 BCARTNB_BCART_TOKEN"
    "（または .env）に設定してください。"
)


class RateLimiter(SlidingWindows):
    """At most ``requests`` calls in any ``window`` seconds (:class:`bcartnb.pacing.SlidingWindows`,
    the send loop's rule too); :meth:`~bcartnb.pacing.SlidingWindows.slot` stamps each
    request with its answer's time."""

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
        super().__init__([(requests, window)], clock=clock, sleep=sleep)


class WaitTooLong(BcartApiError):
    """The API asked to wait longer than ``max_wait``: stopped now, with when to try again.

    ``retry_at`` is when the API said it would answer (Asia/Tokyo).
    """

    def __init__(self, what: str, seconds: float, retry_at: datetime) -> None:
        when = retry_at.strftime("%H:%M" if retry_at.date() == _now().date() else "%m月%d日 %H:%M")
        until = retry_at.isoformat(timespec="seconds")
        span = f"{seconds:.0f} 秒" if seconds < 120 else f"{seconds / 60:.0f} 分"
        super().__init__(
            f"{what}: the API asks to wait {seconds:.0f} s more (until {until}), "
            "longer than a pull waits",
            ja=f"BカートAPIの利用制限のため、さらに {span}の待機が必要です。"
            f"{when} 以降にもう一度実行してください。",
        )
        self.seconds = seconds
        self.retry_at = retry_at


def _now() -> datetime:
    return datetime.now(_TOKYO)


class _Retryable(Exception):
    """A reply worth trying again (429, 5xx); ``retry_after`` in seconds when the server said."""

    def __init__(self, status: int, retry_after: float | None) -> None:
        super().__init__(status)
        self.status = status
        self.retry_after = retry_after


# a dropped or refused connection, a timeout, a reply cut short: the request may be repeated
_NETWORK: Final = (httpx.NetworkError, httpx.TimeoutException, httpx.RemoteProtocolError)


def _retry_after(value: str | None) -> float | None:
    """``Retry-After`` in seconds (B-Cart sends seconds; an HTTP date is read too).

    None when absent or unreadable: the client then backs off on its own schedule.
    """
    if value is None:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            return None
        seconds = (when - _now()).total_seconds()
        return max(seconds, 0.0)
    if seconds != seconds or seconds < 0:  # NaN or negative
        return None
    return seconds


class BcartClient:
    """One shop's B-Cart API: ``get`` and ``patch`` of JSON, limited, retried, token hidden.

    ``transport`` and ``sleep`` are for tests (a real local server, no sleeping for
    minutes); ``rate`` is the client-side limiter (B-Cart's 300 per 300 s by default);
    ``max_wait`` the most one request waits in all before :class:`WaitTooLong`;
    ``on_wait`` (settable later: the pull's progress bar) hears the seconds left of every
    wait of a second or more, then 0 when it is over.
    """

    def __init__(
        self,
        settings: BcartSettings,
        *,
        rate: RateLimiter | None = None,
        attempts: int = 6,
        backoff: float = 2.0,
        timeout: float = 30.0,
        max_wait: float = MAX_WAIT,
        sleep: Callable[[float], None] = time.sleep,
        transport: httpx.BaseTransport | None = None,
        on_wait: Callable[[float], None] | None = None,
    ) -> None:
        if not settings.token:
            raise SettingsError(
                "no B-Cart access token: set BCARTNB_BCART_TOKEN in the environment or .env",
                ja=f"BカートAPIのアクセストークンがありません。{_TOKEN_JA}",
            )
        self.api_url = settings.api_url.rstrip("/")
        self._token = settings.token
        self.sleep = sleep
        self.on_wait = on_wait
        self.max_wait = max_wait
        self.rate = rate if rate is not None else RateLimiter(sleep=self._pause)
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
            sleep=self._pause,
            reraise=True,
            before_sleep=self._count_retry,
        )
        try:
            response = retrying(self._send, method, path.lstrip("/"), params, body)
        except _TooLong as err:
            raise WaitTooLong(what, err.seconds, _now() + timedelta(seconds=err.seconds)) from None
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
        """How long before the next attempt; :class:`_TooLong` past ``max_wait`` in all."""
        err = state.outcome.exception() if state.outcome else None
        attempt = state.attempt_number - 1
        if isinstance(err, _Retryable) and err.retry_after is not None:
            wait = err.retry_after
        elif isinstance(err, _Retryable) and err.status == 429:  # locked out, no word how long
            wait = min(LOCKED_BACKOFF * 2**attempt, LOCKOUT)
        else:
            wait = float(min(self.backoff * 2**attempt, 60.0))
        if state.idle_for + wait > self.max_wait:
            raise _TooLong(wait)
        return wait

    def _pause(self, seconds: float) -> None:
        """Sleep, telling ``on_wait`` the seconds left, second by second, when it is long."""
        if self.on_wait is None or seconds < SHOWN_WAIT:
            self.sleep(seconds)
            return
        left = seconds
        while left > 0:
            self.on_wait(left)
            step = min(1.0, left)
            self.sleep(step)
            left -= step
        self.on_wait(0.0)

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
        return scrub(text, [self._token])


class _TooLong(Exception):
    """Raised inside the retry loop: the next wait would pass ``max_wait``."""

    def __init__(self, seconds: float) -> None:
        super().__init__(seconds)
        self.seconds = seconds
