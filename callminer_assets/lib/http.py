"""The retrying, rate-limited async HTTP base shared by the CallMiner and Semarize clients.

One ``HttpBase`` per API: one ``httpx.AsyncClient``, one rate limiter and one concurrency
semaphore shared by every request to that API (listing, transcripts, token refreshes,
retries), so the configured rate holds for the whole client, not per call site.

Order of a request: semaphore -> rate limiter (also honours a 429 pause) -> auth header
-> send. The bearer token is taken last, once the request may really leave, so a request
that waited seconds for its slot or a ``Retry-After`` pause never leaves with a token that
expired in the queue. When no valid token is cached, the request gives its rate-limiter turn
back while one is fetched (the token request may need a turn of the same limiter), then
queues for a new turn; the token endpoint has its own ``HttpBase`` and semaphore.
"""

from __future__ import annotations

import asyncio
import email.utils
import fcntl
import hashlib
import logging
import math
import os
import tempfile
import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol, Self, TypeVar

import httpx
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential_jitter,
)

from callminer_assets.lib.errors import (
    AuthError,
    DataError,
    HTTPStatusError,
    RateLimitError,
    RequestRejected,
    ServerError,
    TransportError,
)
from callminer_assets.lib.settings import RATE_WINDOW_MARGIN_S, RetryPolicy

T = TypeVar("T")
ItemT = TypeVar("ItemT")

_NOT_TRANSIENT_5XX = frozenset({501, 505})
_DEFAULT_LOGGER = logging.getLogger("callminer_assets.lib")


class LoggerLike(Protocol):
    """Anything with stdlib-logger methods: ``logging.Logger`` or Dagster's ``context.log``."""

    def debug(self, msg: str, *args: Any) -> Any: ...
    def info(self, msg: str, *args: Any) -> Any: ...
    def warning(self, msg: str, *args: Any) -> Any: ...


class BearerToken(Protocol):
    """Where a request's bearer token comes from (``callminer.TokenProvider``)."""

    def cached(self) -> str | None:
        """The token if it may be sent now, else ``None``; never waits."""
        ...

    async def get(self) -> str:
        """A token that may be sent now, fetching one if needed."""
        ...


class _Slot:
    """One send in the limiter's window; ``at`` is ``None`` until the bytes really leave."""

    __slots__ = ("acquired", "at")

    def __init__(self, acquired: float) -> None:
        self.acquired = acquired
        self.at: float | None = None

    @classmethod
    def stamped(cls, at: float) -> _Slot:
        slot = cls(at)
        slot.at = at
        return slot


class SendLedger:
    """The send times of one API, shared by every process on this machine (a small file).

    Dagster's API pools let one step at a time talk to an API, but the step that takes the
    pool over runs in a new process whose window starts empty: without this it could send a
    whole second's worth while the server still counts the previous step's last second.
    Stamps are wall-clock seconds, one per line, appended (O_APPEND keeps lines whole);
    ``recent`` trims the file under a lock.
    """

    def __init__(self, path: Path, period: float) -> None:
        self.path, self.period = path, period

    @classmethod
    def for_api(cls, api: str, rate: float, period: float) -> SendLedger:
        digest = hashlib.sha256(f"{api}|{rate}".encode()).hexdigest()[:16]
        folder = Path(tempfile.gettempdir()) / "callminer-assets-rate"
        folder.mkdir(parents=True, exist_ok=True)
        return cls(folder / f"{digest}.log", period)

    def recent(self) -> list[float]:
        """Sends of the last ``period`` seconds by any process, on this process's monotonic clock."""
        with open(self.path, "a+") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                fh.seek(0)
                wall, mono = time.time(), time.monotonic()
                kept = []
                for line in fh.read().splitlines():
                    try:
                        stamp = float(line)
                    except ValueError:
                        continue
                    if stamp > wall - self.period:
                        kept.append(stamp)
                fh.seek(0)
                fh.truncate()
                fh.write("".join(f"{stamp:.6f}\n" for stamp in kept))
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)
        return [mono - (wall - stamp) for stamp in kept]

    def record(self, at: float) -> None:
        """Add one send made at monotonic time ``at``."""
        stamp = time.time() - (time.monotonic() - at)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, f"{stamp:.6f}\n".encode())
        finally:
            os.close(fd)


class SlidingWindowLimiter:
    """At most ``floor(rate)`` sends in any window of one second, plus a client-wide pause.

    A sliding log rather than aiolimiter's leaky bucket: a leaky bucket lets a full burst
    plus a refill land in the same second (up to ~2x the rate), and the contract says
    "never faster than configured" in *any* one-second window. Each slot is stamped when
    the request headers are actually written (httpcore's ``trace`` hook), not when the slot
    was granted: a request that first waits for a new TCP connection would otherwise reach
    the server late, bunched with the ones granted after it. Until then a slot counts as
    "now". Waiters are served FIFO (asyncio.Lock is fair). ``pause()`` makes every later
    request wait, which is how one 429 slows the whole client rather than one request.
    """

    def __init__(
        self, rate: float, *, margin_s: float = RATE_WINDOW_MARGIN_S, api: str | None = None
    ) -> None:
        self.capacity = max(1, math.floor(rate))
        # For rate < 1 (e.g. 0.5/s) one request per 1/rate seconds.
        self.period = max(1.0, self.capacity / rate) + margin_s
        self.ledger = SendLedger.for_api(api, rate, self.period) if api else None
        self._slots: list[_Slot] = []
        self._lock = asyncio.Lock()
        self._lock_loop: asyncio.AbstractEventLoop | None = None
        self._paused_until = 0.0

    def _loop_lock(self) -> asyncio.Lock:
        """A lock for the running loop. The limiter outlives ``asyncio.run`` calls (one per
        asset step), so a new loop gets a new lock, and slots still unstamped from a
        finished loop (requests that never left) stop holding capacity."""
        loop = asyncio.get_running_loop()
        if self._lock_loop is not loop:
            self._lock, self._lock_loop = asyncio.Lock(), loop
            if self.ledger is None:
                self._slots = [s for s in self._slots if s.at is not None]
            else:  # a new step: the machine's recent sends (ours included) fill the window
                self._slots = [_Slot.stamped(at) for at in self.ledger.recent()]
        return self._lock

    def pause(self, seconds: float) -> None:
        """Hold every request not yet sent for ``seconds`` (never shortens a longer pause)."""
        self._paused_until = max(self._paused_until, time.monotonic() + seconds)

    async def acquire(self) -> _Slot:
        """Wait for a free slot; call ``sent(slot)`` when the request goes out (or failed)."""
        async with self._loop_lock():
            while True:
                now = time.monotonic()
                horizon = now - self.period
                self._slots = [s for s in self._slots if s.at is None or s.at > horizon]
                wait = self._paused_until - now
                if len(self._slots) >= self.capacity:
                    stamped = [s.at for s in self._slots if s.at is not None]
                    # all in flight and unstamped: look again shortly
                    free_at = min(stamped) + self.period if stamped else now + 0.005
                    wait = max(wait, free_at - now)
                if wait <= 0:
                    slot = _Slot(now)
                    self._slots.append(slot)
                    return slot
                await asyncio.sleep(wait)

    def release(self, slot: _Slot) -> None:
        """Give back a slot whose request never left (its token could not be had)."""
        if slot.at is None and slot in self._slots:
            self._slots.remove(slot)

    def sent(self, slot: _Slot, at: float | None = None) -> None:
        """Stamp the slot with its real send time (default: when it was granted)."""
        if slot.at is None:
            slot.at = slot.acquired if at is None else at
            if self.ledger is not None:
                self.ledger.record(slot.at)


_LIMITERS: dict[tuple[str, float], SlidingWindowLimiter] = {}


def shared_limiter(api: str, rate: float) -> SlidingWindowLimiter:
    """The process's one limiter for ``api`` at ``rate``: the listing step and the
    transcript step that follows it (separate clients, separate event loops) share one
    window, so the rate holds across them too, not just within one client; its
    ``SendLedger`` carries the window over to the next process that takes the API's pool."""
    key = (api, rate)
    if key not in _LIMITERS:
        _LIMITERS[key] = SlidingWindowLimiter(rate, api=api)
    return _LIMITERS[key]


def parse_retry_after(value: str | None, *, cap_s: float) -> float | None:
    """``Retry-After`` as seconds (delta-seconds or an HTTP date), clamped to ``[0, cap_s]``."""
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        # HTTP dates have 1-second resolution: round up so we never come back early.
        seconds = math.ceil((when - datetime.now(UTC)).total_seconds())
    if math.isnan(seconds):
        return None
    return min(max(seconds, 0.0), cap_s)


@dataclass(slots=True)
class HttpStats:
    """Counters for progress logs and tests: how many sends, retries, 429s."""

    sent: int = 0
    retries: int = 0
    throttled: int = 0
    by_status: dict[int, int] = field(default_factory=dict)


class _Retryable(Exception):
    """Internal: this attempt failed transiently; tenacity decides whether to try again."""

    def __init__(self, kind: str, status_code: int | None = None) -> None:
        super().__init__(kind)
        self.kind = kind
        self.status_code = status_code


def redact(text: str, secrets: Iterable[str]) -> str:
    """Remove any secret a (hostile) server might echo back before it reaches a message."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "[redacted]")
    return text


class AsyncClosing(ABC):
    """``async with client:`` closes the client's connections however the block ends."""

    @abstractmethod
    async def aclose(self) -> None: ...

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


class HttpBase:
    """One API's async client: shared rate limit, bounded concurrency, bounded retries."""

    def __init__(
        self,
        *,
        base_url: str,
        requests_per_second: float,
        concurrency: int,
        timeout_s: float,
        retry: RetryPolicy,
        transport: httpx.AsyncBaseTransport | None = None,
        logger: LoggerLike | None = None,
        headers: Mapping[str, str] | None = None,
        secrets: Iterable[str] = (),
    ) -> None:
        self.retry = retry
        self.log: LoggerLike = logger or _DEFAULT_LOGGER
        self.stats = HttpStats()
        self.limiter = shared_limiter(base_url, requests_per_second)
        self._semaphore = asyncio.Semaphore(concurrency)
        self._secrets: list[str] = []
        for secret in secrets:
            self.add_secret(secret)
        self._client = httpx.AsyncClient(
            base_url=base_url,
            timeout=timeout_s,
            transport=transport,
            headers=dict(headers or {}),
            follow_redirects=False,
            limits=httpx.Limits(
                max_connections=concurrency + 2, max_keepalive_connections=concurrency + 2
            ),
        )
        self._wait_backoff = wait_exponential_jitter(
            multiplier=retry.backoff_base_s, max=retry.backoff_max_s, jitter=retry.backoff_base_s
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    def add_secret(self, value: str | None) -> None:
        """Redact ``value`` from every later message (tokens fetched at run time, keys)."""
        if value and value not in self._secrets:
            # Longest first, so a secret containing another is removed whole.
            self._secrets.append(value)
            self._secrets.sort(key=len, reverse=True)

    def redact(self, text: str) -> str:
        return redact(text, self._secrets)

    def detail(self, response: httpx.Response, limit: int = 200) -> str:
        """The body's error code and message, redacted *before* it is cut to ``limit``
        (cutting first could leave half a token that no longer matches)."""
        return self.redact(error_detail(response, limit=None))[:limit]

    def describe(self, method: str, url: str) -> str:
        """``"METHOD /path"``: no host, no query string (it could carry a cursor or a key)."""
        parsed = httpx.URL(url)
        if parsed.is_absolute_url:
            path = parsed.path
        else:
            path = self._client.base_url.path.rstrip("/") + "/" + parsed.path.lstrip("/")
        return f"{method.upper()} {path}"

    async def request(
        self,
        method: str,
        url: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        data: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        token: BearerToken | None = None,
        accept: Callable[[httpx.Response], bool] | None = None,
        sink: Callable[[httpx.Response], Awaitable[None]] | None = None,
    ) -> httpx.Response:
        """Send with retries; return any response that is not transient (incl. 4xx).

        429, 5xx (except 501/505), timeouts and dropped connections are retried up to
        ``retry.max_attempts``; then a typed error naming ``METHOD /path`` is raised.
        ``accept(response)`` may claim a 5xx as a real answer (Semarize's 504 with a run id).
        ``token`` is read on every attempt, after the attempt has its concurrency slot and
        its rate-limiter turn, so the token is one valid when the bytes leave.
        ``sink(response)`` streams a successful body (a multi-GB download) instead of
        loading it; a connection lost mid-body is retried like any other, and the sink
        starts over (it must truncate whatever it wrote).
        """
        name = self.describe(method, url)
        attempts = self.retry.max_attempts
        retrying = AsyncRetrying(
            stop=stop_after_attempt(attempts),
            retry=retry_if_exception_type(_Retryable),
            wait=self._wait,
            reraise=True,
            before_sleep=lambda rs: self._before_sleep(rs, name),
        )
        try:
            async for attempt in retrying:
                with attempt:
                    number = attempt.retry_state.attempt_number
                    return await self._attempt(
                        method, url, number, params, json, data, headers, token, accept, sink
                    )
        except _Retryable as exc:
            after = f"after {attempts} attempt{'s' if attempts != 1 else ''}"
            if exc.status_code == 429:
                raise RateLimitError(
                    f"still rate limited {after}", request=name, status_code=429
                ) from None
            if exc.status_code is not None:
                raise ServerError(
                    f"server error {after}", request=name, status_code=exc.status_code
                ) from None
            raise TransportError(f"{exc.kind} {after}", request=name) from None
        raise AssertionError("unreachable: tenacity either returns or raises")  # pragma: no cover

    async def _attempt(
        self,
        method: str,
        url: str,
        number: int,
        params: Mapping[str, Any] | None,
        json: Any,
        data: Mapping[str, Any] | None,
        headers: Mapping[str, str] | None,
        token: BearerToken | None,
        accept: Callable[[httpx.Response], bool] | None,
        sink: Callable[[httpx.Response], Awaitable[None]] | None = None,
    ) -> httpx.Response:
        hdrs = dict(headers or {})
        async with self._semaphore:
            slot, bearer = await self._turn(token)
            if bearer is not None:
                hdrs["Authorization"] = f"Bearer {bearer}"
            self.stats.sent += 1

            async def trace(event: str, info: Mapping[str, Any]) -> None:
                if event.endswith("send_request_headers.started"):
                    self.limiter.sent(slot, time.monotonic())

            try:
                built = self._client.build_request(
                    method,
                    url,
                    params=params,
                    json=json,
                    data=data,
                    headers=hdrs,
                    extensions={"trace": trace},
                )
                response = await self._client.send(built, stream=sink is not None)
                if sink is not None:
                    try:
                        if response.is_success:
                            await sink(response)
                        else:
                            await response.aread()
                    finally:
                        await response.aclose()
            except httpx.TimeoutException as exc:
                raise _Retryable(f"timeout ({type(exc).__name__})") from None
            except httpx.TransportError as exc:
                raise _Retryable(f"connection failed ({type(exc).__name__})") from None
            finally:
                # No trace (in-process ASGI transport) or failed before sending: granted time.
                self.limiter.sent(slot)
        status = response.status_code
        self.stats.by_status[status] = self.stats.by_status.get(status, 0) + 1
        if status == 429:
            self.stats.throttled += 1
            cap = self.retry.retry_after_cap_s
            delay = parse_retry_after(response.headers.get("Retry-After"), cap_s=math.inf)
            if delay is not None and delay > cap:
                self.log.warning(
                    "%s: server asked to wait %.0f s (Retry-After), waiting only %.0f s (cap)",
                    self.describe(method, url),
                    delay,
                    cap,
                )
                delay = cap
            if delay is None:
                delay = min(self.retry.backoff_max_s, self.retry.backoff_base_s * 2 ** (number - 1))
            self.limiter.pause(delay)
            raise _Retryable("rate limited", 429)
        if status >= 500 and status not in _NOT_TRANSIENT_5XX:
            if accept is None or not accept(response):
                raise _Retryable("server error", status)
        return response

    async def _turn(self, token: BearerToken | None) -> tuple[_Slot, str | None]:
        """A rate-limiter turn, then a token valid for this send.

        Without a valid cached token the turn is given back while one is fetched: the token
        request may share this limiter, and holding turns while waiting for it could take
        every turn it needs. Then the request queues again, so the token is read at send.
        """
        while True:
            slot = await self.limiter.acquire()
            if token is None:
                return slot, None
            try:
                bearer = token.cached()
            except BaseException:
                self.limiter.release(slot)
                raise
            if bearer is not None:
                return slot, bearer
            self.limiter.release(slot)
            await token.get()

    def _wait(self, state: RetryCallState) -> float:
        # A 429 already paused the whole limiter for Retry-After; no extra per-request sleep.
        outcome = state.outcome
        exc = outcome.exception() if outcome is not None else None
        if isinstance(exc, _Retryable) and exc.status_code == 429:
            return 0.0
        return float(self._wait_backoff(state))

    def _before_sleep(self, state: RetryCallState, name: str) -> None:
        self.stats.retries += 1
        outcome = state.outcome
        exc = outcome.exception() if outcome is not None else None
        why = f"HTTP {exc.status_code}" if isinstance(exc, _Retryable) and exc.status_code else exc
        self.log.debug(
            "retrying %s after %s (attempt %d of %d)",
            name,
            why,
            state.attempt_number + 1,
            self.retry.max_attempts,
        )

    def error_for(self, response: httpx.Response, name: str, what: str = "") -> HTTPStatusError:
        """The typed error for a non-success response; the body's error code, redacted."""
        status = response.status_code
        detail = self.detail(response)
        message = " ".join(p for p in (what, detail) if p) or response.reason_phrase or "error"
        if status in (401, 403):
            return AuthError(message, request=name, status_code=status)
        if status == 429:
            return RateLimitError(message, request=name, status_code=status)
        if status >= 500:
            return ServerError(message, request=name, status_code=status)
        return RequestRejected(message, request=name, status_code=status)

    def json(self, response: httpx.Response, name: str) -> Any:
        """The body as JSON, or a DataError naming the request."""
        try:
            return response.json()
        except ValueError:
            raise DataError(f"response is not JSON ({name})") from None


def error_detail(response: httpx.Response, limit: int | None = 200) -> str:
    """``"code: message"`` from an error body (OAuth or Semarize style), single-line.

    NOT redacted: use ``HttpBase.detail`` for anything that reaches a message or a log.
    """
    try:
        body = response.json()
    except ValueError:
        return ""
    code: Any = None
    message: Any = None
    if isinstance(body, dict):
        err = body.get("error")
        if isinstance(err, dict):
            code, message = err.get("code"), err.get("message")
        else:
            code = err
            message = body.get("error_description") or body.get("message") or body.get("detail")
    parts = [str(p) for p in (code, message) if p not in (None, "")]
    text = ": ".join(parts).replace("\n", " ").replace("\r", " ")
    return text if limit is None else text[:limit]


async def gather_progress(
    items: Sequence[ItemT],
    fn: Callable[[ItemT], Awaitable[T]],
    *,
    log: LoggerLike,
    what: str,
    min_step: int = 50,
) -> list[T]:
    """``fn`` over ``items`` concurrently (the client bounds it), logging every ~10 %."""
    done = 0
    step = max(min_step, len(items) // 10)

    async def one(item: ItemT) -> T:
        nonlocal done
        result = await fn(item)
        done += 1
        if done % step == 0:
            log.info("%s %d of %d", what, done, len(items))
        return result

    return await gather_all(one(i) for i in items)


async def gather_all(coros: Iterable[Coroutine[Any, Any, T]]) -> list[T]:
    """``gather`` that cancels the siblings when one fails, and raises that error (no group)."""
    tasks = [asyncio.ensure_future(c) for c in coros]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
