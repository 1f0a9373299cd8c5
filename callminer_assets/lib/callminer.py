"""CallMiner REST client: OAuth client-credentials tokens, interaction listings, transcripts.

Records come back raw (as received, possibly malformed): deciding what is valid is
``transform.validate``'s job, so nothing here drops a record except exact id duplicates
caused by page drift.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime
from typing import Any, NamedTuple
from urllib.parse import quote

import httpx

from callminer_assets.lib.errors import APIError, AuthError, DataError
from callminer_assets.lib.http import AsyncClosing, HttpBase, LoggerLike, gather_progress
from callminer_assets.lib.models import TranscriptFetch, Window
from callminer_assets.lib.settings import (
    MIN_TOKEN_REUSE_S,
    TOKEN_REFRESH_MARGIN_FRACTION,
    BulkSettings,
    CallMinerSettings,
)

ARRAY_KEYS: tuple[str, ...] = ("interactions", "items", "data")
_PENDING_STATUSES = frozenset({"processing", "pending", "queued", "in_progress", "transcribing"})
_NO_PROGRESS_PAGES = 20
_MAX_FAILURE_WARNINGS = 20
"""One warning per failed transcript up to this many, then one summary line."""


def iso_utc(moment: datetime) -> str:
    """``2025-01-15T00:00:00Z``: ISO 8601 in UTC, what the listing's date params expect."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class TokenProvider:
    """Caches the bearer token; one refresh at a time, however many requests need one.

    ``HttpBase`` reads ``cached()`` at send time (after the slot and the rate-limiter turn):
    the token is handed out only while it has more than a margin left
    (``TOKEN_REFRESH_MARGIN_S``, at most ``TOKEN_REFRESH_MARGIN_FRACTION`` of its lifetime),
    so it is still valid when the server reads it; otherwise ``get()`` refreshes it, through
    its own ``HttpBase`` (``auth``). Concurrent refreshes collapse into one (the lock). A
    credentials error is remembered: every later caller fails at once, no stampede.
    """

    def __init__(
        self,
        auth: HttpBase,
        api: HttpBase,
        settings: CallMinerSettings | BulkSettings,
        *,
        path: str = "/oauth/token",
        scope: str | None = None,
    ) -> None:
        self._http = auth
        self._api = api
        self._settings = settings
        self._url = settings.auth_url.rstrip("/") + path
        self._scope = scope
        self.name = auth.describe("POST", self._url)
        self._lock = asyncio.Lock()
        self._token: str | None = None
        self._refresh_at = 0.0
        self._failed: AuthError | None = None
        self.fetched = 0

    def cached(self) -> str | None:
        """The token while it has more than the margin left (raises a remembered AuthError)."""
        return self._current()

    async def get(self) -> str:
        token = self._current()
        if token is not None:
            return token
        async with self._lock:
            token = self._current()
            if token is not None:
                return token
            return await self._fetch()

    async def refresh(self, stale: str | None) -> str:
        """A token other than ``stale``: fetched now unless a concurrent refresh already did."""
        async with self._lock:
            token = self._current()
            if token is not None and token != stale:
                return token
            return await self._fetch()

    def superseded(self, used: str) -> bool:
        """``used`` is older than the token now held: a 401 for it says nothing about ours."""
        return self._token is not None and used != self._token

    def _current(self) -> str | None:
        if self._failed is not None:
            raise self._failed
        if self._token is not None and time.monotonic() < self._refresh_at:
            return self._token
        return None

    async def _fetch(self) -> str:
        name = self.name
        started = time.monotonic()
        form = {
            "grant_type": "client_credentials",
            "client_id": self._settings.client_id,
            "client_secret": self._settings.client_secret,
        }
        if self._scope is not None:
            form["scope"] = self._scope
        response = await self._http.request(
            "POST", self._url, data=form, headers={"Accept": "application/json"}
        )
        self.fetched += 1
        if response.status_code in (400, 401, 403):
            self._failed = AuthError(
                "client credentials refused, check CALLMINER_CLIENT_ID/CALLMINER_CLIENT_SECRET"
                + (f" ({d})" if (d := self._http.redact(_oauth_error(response))[:100]) else ""),
                request=name,
                status_code=response.status_code,
            )
            raise self._failed
        if not response.is_success:
            raise self._http.error_for(response, name, "token request failed")
        body = self._http.json(response, name)
        token = body.get("access_token") if isinstance(body, dict) else None
        if not isinstance(token, str) or not token:
            raise DataError(f"token response has no access_token ({name})")
        # From now on a server echoing this token (an error_description quoting the
        # Authorization header, a 5xx body) has it redacted from every message and log.
        self._http.add_secret(token)
        self._api.add_secret(token)
        expires_in = body.get("expires_in")
        if isinstance(expires_in, bool) or not isinstance(expires_in, int | float):
            expires_in = 3600.0
        # A server sending expires_in <= 0 must not make every request fetch its own token
        # (a 401 on use still triggers exactly one refresh).
        lifetime = float(expires_in) if expires_in > 0 else MIN_TOKEN_REUSE_S
        margin = min(
            self._settings.token_refresh_margin_s, lifetime * TOKEN_REFRESH_MARGIN_FRACTION
        )
        self._token = token
        self._refresh_at = started + lifetime - margin
        self._http.log.debug("fetched an access token (valid %.0f s)", lifetime)
        return token


async def authed_request(
    http: HttpBase, tokens: TokenProvider, method: str, path: str, **kwargs: Any
) -> httpx.Response:
    """A request with a bearer token taken at send time, for every call of a client.

    ``kwargs`` go to ``HttpBase.request`` (params, json, sink...), so retries, backoff,
    ``Retry-After`` and the rate limit apply to every call. A 401 for a token that a
    concurrent refresh has since replaced is sent again with the current one (bounded by
    ``retry.max_attempts``); a 401 for the current token refreshes it once; the refreshed
    token rejected too is an ``AuthError``.
    """
    refreshed = False
    for _ in range(http.retry.max_attempts):
        response = await http.request(method, path, token=tokens, **kwargs)
        if response.status_code != 401:
            return response
        used = response.request.headers.get("Authorization", "").removeprefix("Bearer ")
        if tokens.superseded(used):
            continue
        if refreshed:
            break
        why = http.redact(_oauth_error(response))[:100] or "401"
        http.log.debug("token rejected (%s); refreshing once", why)
        await tokens.refresh(stale=used)
        refreshed = True
    raise AuthError(
        "token rejected again after a refresh",
        request=http.describe(method, path),
        status_code=401,
    )


def _oauth_error(response: httpx.Response) -> str:
    """The OAuth ``error`` code, UNREDACTED and uncut: redact, then cut, before using it."""
    try:
        body = response.json()
    except ValueError:
        return ""
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        return str(body["error"])
    return ""


def http_base(
    settings: CallMinerSettings | BulkSettings,
    url: str,
    concurrency: int,
    transport: httpx.AsyncBaseTransport | None,
    logger: LoggerLike | None,
) -> HttpBase:
    """One CallMiner base (API or token endpoint) with the settings' rate, retries, secret."""
    return HttpBase(
        base_url=url,
        requests_per_second=settings.requests_per_second,
        concurrency=concurrency,
        timeout_s=settings.timeout_s,
        retry=settings.retry,
        transport=transport,
        logger=logger,
        headers={"Accept": "application/json"},
        secrets=(settings.client_secret,),
    )


class CallMinerClient(AsyncClosing):
    """Async CallMiner REST client; satisfies ``source.InteractionSource``.

    Use as ``async with CallMinerClient(settings) as cm: ...`` inside one event loop.
    ``transport`` lets the pipeline run against the in-process sandbox (ASGI transport).
    """

    def __init__(
        self,
        settings: CallMinerSettings,
        transport: httpx.AsyncBaseTransport | None = None,
        logger: LoggerLike | None = None,
        origin: str | None = None,
    ) -> None:
        self.settings = settings
        self.origin = origin or f"rest:{httpx.URL(settings.api_url).host}"
        self.http = http_base(settings, settings.api_url, settings.concurrency, transport, logger)
        # The token endpoint's own base and semaphore; the limiter is shared when the URLs are.
        self.auth_http = http_base(settings, settings.auth_url, 1, transport, logger)
        self.tokens = TokenProvider(self.auth_http, self.http, settings)
        self.log = self.http.log

    async def aclose(self) -> None:
        await self.http.aclose()
        await self.auth_http.aclose()

    async def _get(self, path: str, params: dict[str, Any] | None = None) -> httpx.Response:
        """GET with a bearer token taken at send time (see ``authed_request``)."""
        return await authed_request(self.http, self.tokens, "GET", path, params=params)

    async def prepare(self, days: Sequence[date], *, fresh: bool) -> None:
        """Nothing to do: REST lists each day on demand."""

    def native_tables(self, days: Sequence[date]) -> None:
        """REST has no CallMiner scores or categories."""
        return None

    async def release(self, days: Sequence[date]) -> None:
        """Nothing was kept."""

    async def list_interactions(self, window: Window) -> list[Any]:
        """Every record in ``[window.start, window.end)``, raw, id-duplicates removed (last wins).

        Follows token (``nextPage``) or offset (``offset``/``total`` or bare array)
        pagination as each response shows it. A full page without any marker goes on by
        offset, or fails loudly after token-style pages or when the server ignores offset
        (decision 0011). Records without a usable id, and non-objects, are kept as they are
        (they go to quarantine downstream).
        """
        path = "/v1/interactions"
        name = self.http.describe("GET", path)
        base: dict[str, Any] = {
            "startDate": iso_utc(window.start),
            "endDate": iso_utc(window.end),
            "limit": self.settings.page_size,
        }
        out: list[Any] = []
        position: dict[str, int] = {}
        params = dict(base)
        seen_cursors: set[str] = set()
        previous: list[Any] | None = None
        pages = duplicates = no_progress = repeats = offset = largest = 0
        token_style = probing = False
        while True:
            pages += 1
            if pages > self.settings.max_pages:
                raise DataError(
                    f"listing did not end after {self.settings.max_pages} pages ({name})"
                )
            response = await self._get(path, params)
            if not response.is_success or response.status_code == 204:
                if response.status_code == 204:
                    break
                raise self.http.error_for(response, name, "listing failed")
            body = self.http.json(response, name)
            page = _parse_page(body, name)
            records = page.records
            new = 0
            for record in records:
                key = record.get("id") if isinstance(record, dict) else None
                if isinstance(key, str) and key:
                    if key in position:
                        out[position[key]] = record
                        duplicates += 1
                        continue
                    position[key] = len(out)
                out.append(record)
                new += 1
            self.log.debug("listing page %d: %d records, %d new", pages, len(records), new)
            if probing and records and not new:
                raise DataError(
                    f"listing page {pages - 1} was full without pagination markers and "
                    f"offset={params.get('offset')} returned the same records: the server does "
                    f"not page by offset, the rest of {base['startDate']}..{base['endDate']} "
                    f"cannot be listed ({name}; a CALLMINER_PAGE_SIZE above the day's volume "
                    "avoids it)"
                )
            no_progress = 0 if new else no_progress + 1
            if no_progress >= _NO_PROGRESS_PAGES:
                raise DataError(
                    f"listing repeats itself: {no_progress} pages with nothing new ({name})"
                )
            # Full: as many as asked, or as many as the server's largest page so far (its cap).
            full = bool(records) and len(records) >= min(base["limit"], largest or base["limit"])
            largest = max(largest, len(records))
            probing = False
            if page.cursor is not None:  # token style
                if page.cursor in seen_cursors:
                    raise DataError(f"listing returned the same nextPage cursor twice ({name})")
                seen_cursors.add(page.cursor)
                token_style = True
                params = {**base, "nextPage": page.cursor}
                continue
            if full and not page.marked:
                # Decision 0011: never take an unmarked full page as the last one.
                if token_style:
                    raise DataError(
                        f"listing page {pages} is full ({len(records)} records) but has no "
                        f"nextPage after token-style pages: records after it in "
                        f"{base['startDate']}..{base['endDate']} would be missing ({name})"
                    )
                probing = True  # go on by offset, as for a bare array, until an empty page
            elif not page.offset_style or not records:  # last page, or an empty page
                break
            # A page equal to the previous one is legal once in a while (limit capped at 1 plus
            # one insert during pagination: the same record shifts onto the next page). It is
            # only an error when the server says so (it echoes an offset other than the one we
            # asked for), or when it keeps happening (records without ids, which the
            # no-progress guard above cannot see).
            repeats = repeats + 1 if records == previous else 0
            asked = params.get("offset", 0)
            if repeats and page.echoed is not None and page.echoed != asked:
                raise DataError(
                    f"listing ignores offset: asked for {asked}, got the same page "
                    f"at offset {page.echoed} ({name})"
                )
            if repeats >= _NO_PROGRESS_PAGES:
                raise DataError(
                    f"listing ignores offset: the same page came back {repeats + 1} times ({name})"
                )
            previous = records
            # Our own count, not the server's echo: a server that ignores offset cannot loop us.
            offset += len(records)
            if page.total is not None and offset >= page.total:
                break
            params = {**base, "offset": offset}
        self.log.info(
            "listed %d interactions for %s..%s (%d pages, %d page-drift duplicates merged)",
            len(out),
            base["startDate"],
            base["endDate"],
            pages,
            duplicates,
        )
        return out

    async def fetch_transcripts(self, ids: Iterable[str]) -> list[TranscriptFetch]:
        """One ``TranscriptFetch`` per distinct id (in first-seen order), fetched concurrently.

        A failure of one transcript does not fail the others: a non-auth 4xx (400, 403,
        422...) or an exhausted retry budget (5xx, 429, timeouts, drops) on
        ``GET .../transcript`` gives ``TranscriptFetch(id, "pending")`` for that id plus a
        warning naming the request, so a later run fetches it again. Systemic errors still
        raise: the credentials refused (``invalid_client``), a token rejected again after a
        refresh (``AuthError`` 401), or the token endpoint itself failing.
        """
        unique = list(dict.fromkeys(ids))
        failed: list[str] = []

        async def one(interaction_id: str) -> TranscriptFetch:
            try:
                return await self.fetch_transcript(interaction_id)
            except APIError as exc:
                if self._systemic(exc):
                    raise
                failed.append(interaction_id)
                if len(failed) <= _MAX_FAILURE_WARNINGS:
                    self.log.warning("transcript kept pending for a later run: %s", exc)
                return TranscriptFetch(interaction_id, "pending")

        results = await gather_progress(
            unique, one, log=self.log, what="fetched transcripts", min_step=100
        )
        pending = sum(1 for r in results if r.status == "pending")
        if len(failed) > _MAX_FAILURE_WARNINGS:
            self.log.warning(
                "%d more transcript requests failed; kept pending for a later run",
                len(failed) - _MAX_FAILURE_WARNINGS,
            )
        self.log.info(
            "fetched %d transcripts: %d available, %d pending (%d of them after errors)",
            len(results),
            len(results) - pending,
            pending,
            len(failed),
        )
        return results

    def _systemic(self, exc: APIError) -> bool:
        """Errors no other transcript would escape: credentials, tokens, the token endpoint."""
        if exc.request == self.tokens.name:
            return True
        return isinstance(exc, AuthError) and exc.status_code == 401

    async def fetch_transcript(self, interaction_id: str) -> TranscriptFetch:
        """``available`` with the body, or ``pending`` (404, 202, or a 'processing' body)."""
        path = f"/v1/interactions/{quote(interaction_id, safe='')}/transcript"
        response = await self._get(path)
        status = response.status_code
        if status in (404, 202):
            return TranscriptFetch(interaction_id, "pending")
        if not response.is_success:
            raise self.http.error_for(response, self.http.describe("GET", path), "transcript")
        try:
            body = response.json()
        except ValueError:
            body = None
        if isinstance(body, dict) and "utterances" in body:
            marker = body.get("status")
            if not (isinstance(marker, str) and marker.lower() in _PENDING_STATUSES):
                return TranscriptFetch(interaction_id, "available", body)
        if not (isinstance(body, dict) and isinstance(body.get("status"), str)):
            self.log.warning(
                "transcript body without utterances; treating it as pending (%s)",
                self.http.describe("GET", path),
            )
        return TranscriptFetch(interaction_id, "pending")


class _Page(NamedTuple):
    records: list[Any]
    cursor: str | None  # token style: the next page's cursor
    offset_style: bool  # the body has offset/total, or is a bare array
    total: int | None
    echoed: int | None  # the offset the server says this page starts at
    marked: bool  # any pagination marker at all (nextPage, even null; offset; total; array)


def _parse_page(body: Any, name: str) -> _Page:
    """One listing response, as its pagination markers describe it.

    Token style when ``nextPage`` is set; offset style when the body has ``offset`` or
    ``total`` or is a bare array; ``nextPage: null`` is the last page; a body with none of
    these is ``marked=False`` (what that means for a full page: decision 0011).
    """
    if isinstance(body, list):
        return _Page(body, None, True, None, None, True)
    if not isinstance(body, dict):
        raise DataError(f"listing body is neither an object nor an array ({name})")
    records: list[Any] | None = None
    for key in ARRAY_KEYS:
        value = body.get(key)
        if isinstance(value, list):
            records = value
            break
    if records is None:
        raise DataError(f"listing body has no array under {', '.join(ARRAY_KEYS)} ({name})")
    cursor = body.get("nextPage")
    if isinstance(cursor, int | float) and not isinstance(cursor, bool):
        cursor = str(cursor)
    if isinstance(cursor, str) and cursor:
        return _Page(records, cursor, False, None, None, True)
    total = _int(body.get("total"))
    offset_style = "offset" in body or total is not None
    marked = offset_style or "nextPage" in body
    return _Page(records, None, offset_style, total, _int(body.get("offset")), marked)


def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None
