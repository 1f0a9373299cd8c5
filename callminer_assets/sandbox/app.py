"""One Starlette app serving both the CallMiner and the Semarize contracts, with faults.

Why one app: the pipeline (and its tests) need a single loopback port or ASGI
transport that behaves like both real services, including every documented
variant and failure, deterministically from a seed. Faults are drawn per
request from ``(seed, request counter)``; a faulted request fails wholesale
(no listing ever loses a record, no faulted run is billed) so a correct,
retrying client always converges.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import email.utils
import hashlib
import json
import random
import secrets
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qs

import httpx
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from callminer_assets.kits import Kit, current_kits, evaluate
from callminer_assets.lib.models import transcript_hash
from callminer_assets.sandbox.bulk import BULK_PREFIX, BulkState, bulk_routes, bulk_switches
from callminer_assets.sandbox.generator import DEFAULT_SEED, Generator, _h, _u

Pagination = Literal["token", "offset", "bare"]
ArrayKey = Literal["interactions", "items", "data"]
FaultMode = Literal["none", "transport", "hostile"]
PendingStyle = Literal["mixed", "404", "202", "200"]

#: Transport faults drawn when ``faults`` is ``transport`` or ``hostile``.
TRANSPORT_FAULTS: tuple[str, ...] = (
    "429",
    "429-date",
    "500",
    "502",
    "503",
    "504",
    "drop",
    "slow",
    "invalid_token",
)
#: Faults only ever injected on purpose (``state.inject``), never drawn at random.
INJECTABLE_FAULTS: tuple[str, ...] = (*TRANSPORT_FAULTS, "429-bare")
MAX_WINDOW_DAYS = 400


@dataclass(frozen=True, slots=True)
class SandboxConfig:
    """Every switch of the sandbox; ``None`` rates take a default that depends on ``faults``."""

    seed: int = DEFAULT_SEED
    per_day: int = 200
    pagination: Pagination = "token"
    array_key: ArrayKey = "interactions"
    max_page_size: int = 100
    faults: FaultMode = "none"
    fault_rate: float = 0.1  # share of requests hit by a transport fault (faults != none)
    fault_kinds: tuple[str, ...] = TRANSPORT_FAULTS
    token_ttl: float = 3600.0  # seconds a bearer token lives
    rate_limit: float | None = None  # requests per second per service (sliding 1 s window)
    latency_ms: int = 0  # added to every request
    slow_ms: int = 300  # extra delay of a "slow" fault
    retry_after_s: int = 1  # Retry-After of 429s
    client_id: str = "sandbox"
    client_secret: str = "sandbox"
    semarize_key: str = "smz_test_sandbox"
    short_page_rate: float = 0.1  # pages cut short below the limit (always, as the contract allows)
    drift_rate: float | None = None  # page-drift duplicates; default 0 / 0.1 with faults
    pending_fraction: float = (
        0.03  # transcripts pending for their first ``pending_fetches`` fetches
    )
    pending_fetches: int = 1
    pending_lag_s: float = 900.0  # transcripts of interactions that ended less ago are pending
    pending_style: PendingStyle = "mixed"  # 404 / 202 processing / 200 processing
    failed_run_rate: float | None = None  # Semarize runs that fail; default 0 / 0.03 with faults
    sync_timeout_rate: float | None = None  # sync runs answered 504 + id; default 0 / 0.05
    async_polls: int = 1  # polls answered "running" before a run is finished
    malformed: bool | None = None  # malformed records + hostile strings; default: faults=hostile
    bulk_job_seconds: float = 120.0  # sandbox seconds a Bulk Export execution takes
    bulk_clock_speed: float = 600.0  # sandbox seconds per real second (compressible clock)
    bulk_faults: tuple[str, ...] = ()  # BULK_FAULTS names switched on at start
    bulk_repeat: int = 1  # large downloads: every contact exported this many times
    tenant_timezone: str = "America/New_York"  # zone of the export's ClientCaptureDate

    @property
    def transport_faults(self) -> bool:
        return self.faults in ("transport", "hostile")

    @property
    def hostile(self) -> bool:
        return self.faults == "hostile" if self.malformed is None else self.malformed


def busiest_second(times: Iterable[float]) -> int:
    """Largest number of ``times`` inside any sliding 1-second window (what a limit caps)."""
    ordered = sorted(times)
    best = j = 0
    for i, t in enumerate(ordered):
        while ordered[j] <= t - 1.0:
            j += 1
        best = max(best, i - j + 1)
    return best


SEMARIZE_PATHS = ("/v1/runs", "/v1/kits")
#: What a long-running (or embedded) sandbox keeps in memory: the newest runs with their
#: results (~3 KB each; a 7-day run at 1,000 interactions a day starts ~20,000) and the
#: newest request-log entries (the oldest half goes at the cap). Idempotency keys and the
#: billing ledger are kept whole (the contract's 24 h; what tests check for double pay).
RUNS_KEPT = 25_000
REQUEST_LOG_KEPT = 20_000


def service_of(path: str) -> str:
    """Which API a path belongs to, for the request log and each API's own rate limit: both
    share the sandbox's one port, and counting Semarize's kit listing against CallMiner let a
    CallMiner second read 16 against 15 when the two clients each kept their own limit."""
    return "semarize" if path.startswith(SEMARIZE_PATHS) else "callminer"


def _default(value: float | None, with_faults: float, faults_on: bool) -> float:
    if value is not None:
        return value
    return with_faults if faults_on else 0.0


@dataclass
class FaultSwitches:
    """Mutable fault settings; tests flip these at runtime (``state.faults.transport = False``)."""

    transport: bool
    hostile: bool
    rate: float
    kinds: tuple[str, ...]
    drift_rate: float
    short_page_rate: float
    failed_run_rate: float
    sync_timeout_rate: float
    pending_fraction: float
    pending_fetches: int
    pending_lag_s: float
    latency_ms: int
    slow_ms: int
    retry_after_s: int
    rate_limit: float | None
    token_ttl: float
    async_polls: int
    forced: list[tuple[str, str | None]] = field(default_factory=list)

    @classmethod
    def from_config(cls, c: SandboxConfig) -> FaultSwitches:
        on = c.transport_faults
        return cls(
            transport=on,
            hostile=c.hostile,
            rate=c.fault_rate,
            kinds=tuple(c.fault_kinds),
            drift_rate=_default(c.drift_rate, 0.1, on),
            short_page_rate=c.short_page_rate,
            failed_run_rate=_default(c.failed_run_rate, 0.03, on),
            sync_timeout_rate=_default(c.sync_timeout_rate, 0.05, on),
            pending_fraction=c.pending_fraction,
            pending_fetches=c.pending_fetches,
            pending_lag_s=c.pending_lag_s,
            latency_ms=c.latency_ms,
            slow_ms=c.slow_ms,
            retry_after_s=c.retry_after_s,
            rate_limit=c.rate_limit,
            token_ttl=c.token_ttl,
            async_polls=c.async_polls,
        )


class DroppedConnection(httpx.RemoteProtocolError):
    """Raised inside the app to drop the connection mid-response (a transport error client-side).

    Under uvicorn the headers are out, so the server closes the socket; under an
    ``httpx.ASGITransport`` the exception reaches the client as an httpx transport error.
    """

    def __init__(self) -> None:
        super().__init__("sandbox dropped the connection")


@dataclass
class SandboxState:
    """What tests can read and change: request log, billing, tokens, runs, fault switches."""

    config: SandboxConfig
    generator: Generator
    faults: FaultSwitches
    #: one dict per request: method, path, status (0 = dropped), time, service, fault, and
    #: token_left_s (seconds the bearer token had left when the request arrived, negative =
    #: sent expired; None without a token issued here). Never the token itself.
    request_log: list[dict[str, Any]] = field(default_factory=list)
    #: runs started (and billed) per (transcript_hash, kit_code)
    billing: Counter[tuple[str, str]] = field(default_factory=Counter)
    runs_started: int = 0
    tokens_issued: int = 0
    transcript_fetches: Counter[str] = field(default_factory=Counter)
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    tokens: dict[str, float] = field(default_factory=dict, repr=False)
    #: expiry of every token issued, revoked or not: what ``token_left_s`` is measured against
    token_expiry: dict[str, float] = field(default_factory=dict, repr=False)
    runs: dict[str, dict[str, Any]] = field(default_factory=dict, repr=False)
    idempotency: dict[str, str] = field(default_factory=dict, repr=False)
    request_count: int = 0
    #: the Bulk Export API's jobs, executions and switches (``sandbox.bulk``)
    bulk: BulkState = field(default_factory=BulkState)
    #: test hook: rewrites each run as served (hostile results: out-of-range values)
    run_rewrite: Callable[[dict[str, Any]], dict[str, Any]] | None = field(default=None, repr=False)
    _recent: dict[str, deque[float]] = field(default_factory=dict, repr=False)
    _windows: dict[tuple[str, str, bool], list[Any]] = field(default_factory=dict, repr=False)

    # -- helpers for tests ----------------------------------------------------------------------
    def inject(self, kind: str, times: int = 1, path: str | None = None) -> None:
        """Force ``kind`` (an INJECTABLE_FAULTS name) on the next ``times`` requests under ``path``."""
        if kind not in INJECTABLE_FAULTS:
            raise ValueError(f"unknown fault {kind!r}; choose from {INJECTABLE_FAULTS}")
        self.faults.forced.extend([(kind, path)] * times)

    def revoke_tokens(self) -> None:
        """Invalidate every issued token (the next API call gets 401 invalid_token)."""
        self.tokens.clear()

    def billed(self, transcript_text_or_hash: str, kit_code: str) -> int:
        """How many runs were billed for this (transcript, kit); accepts text or its hash."""
        h = transcript_text_or_hash
        if len(h) != 64 or any(ch not in "0123456789abcdef" for ch in h):
            h = transcript_hash(h)
        return self.billing[(h, kit_code)]

    def statuses(self, path_prefix: str = "") -> list[int]:
        """Statuses of the logged requests under ``path_prefix``, in order."""
        return [e["status"] for e in self.request_log if e["path"].startswith(path_prefix)]

    def busiest_second(self, service: str | None = None) -> int:
        """Most requests that arrived in any sliding 1-second window (per service or all)."""
        return busiest_second(
            e["time"] for e in self.request_log if service is None or e["service"] == service
        )

    def expired_sends(self) -> list[dict[str, Any]]:
        """Logged requests that arrived with a token already past its expiry."""
        return [
            e
            for e in self.request_log
            if e.get("token_left_s") is not None and e["token_left_s"] <= 0
        ]

    def reset_log(self) -> None:
        self.request_log.clear()

    # -- internals ------------------------------------------------------------------------------
    def _take_forced(self, path: str) -> str | None:
        for i, (kind, prefix) in enumerate(self.faults.forced):
            if prefix is None or path.startswith(prefix):
                del self.faults.forced[i]
                return kind
        return None

    def _limited(self, service: str) -> bool:
        """Sliding 1-second window: refuse when ``rate_limit`` requests were accepted in it."""
        limit = self.faults.rate_limit
        if not limit:
            return False
        now = time.monotonic()
        q = self._recent.setdefault(service, deque())
        while q and now - q[0] >= 1.0:
            q.popleft()
        if len(q) >= limit:
            return True
        q.append(now)
        return False


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return JSONResponse(body, status_code=status, headers=headers)


def _err(status: int, error: str, description: str) -> Response:
    return _json({"error": error, "error_description": description}, status)


def _smz_err(status: int, code: str, message: str, **extra: Any) -> Response:
    return _json({"error": {"code": code, "message": message}, **extra}, status)


class _FaultMiddleware:
    """Logs every request and injects latency, rate limiting and transport faults."""

    def __init__(self, app: ASGIApp, state: SandboxState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        st = self.state
        f = st.faults
        path: str = scope["path"]
        st.request_count += 1
        rng = random.Random(_h(st.config.seed, "request", st.request_count))
        service = service_of(path)
        entry: dict[str, Any] = {
            "method": scope["method"],
            "path": path,
            "status": None,
            "time": time.time(),
            "service": service,
            "fault": None,
            "token_left_s": None,
        }
        bearer = _bearer_from_scope(scope)
        expiry = st.token_expiry.get(bearer) if bearer else None
        if expiry is not None:
            entry["token_left_s"] = round(expiry - time.monotonic(), 3)
        if len(st.request_log) >= REQUEST_LOG_KEPT:  # a long-running server must not grow
            del st.request_log[: REQUEST_LOG_KEPT // 2]
        st.request_log.append(entry)

        async def logged_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                entry["status"] = message["status"]
            await send(message)

        if f.latency_ms:
            await asyncio.sleep(f.latency_ms / 1000)
        if path not in ("/oauth/token", "/connect/token") and st._limited(service):
            entry["fault"] = "rate_limit"
            await self._respond_429(scope, receive, logged_send, date_form=False)
            return
        kind = st._take_forced(path)
        if kind is None and f.transport and f.kinds and rng.random() < f.rate:
            kind = f.kinds[rng.randrange(len(f.kinds))]
        if kind == "invalid_token" and not path.startswith(("/v1/interactions", BULK_PREFIX)):
            kind = None
        if kind is not None:
            entry["fault"] = kind
            if kind == "slow":
                await asyncio.sleep(f.slow_ms / 1000)
            elif kind == "429-bare":  # CallMiner documents no Retry-After
                await _json({"error": "rate_limited"}, 429)(scope, receive, logged_send)
                return
            elif kind in ("429", "429-date"):
                await self._respond_429(scope, receive, logged_send, date_form=kind == "429-date")
                return
            elif kind in ("500", "502", "503", "504"):
                msg = {"500": "internal_error", "502": "bad_gateway", "503": "unavailable"}
                resp = _json({"error": msg.get(kind, "gateway_timeout")}, int(kind))
                await resp(scope, receive, logged_send)
                return
            elif kind == "invalid_token":
                auth = _bearer_from_scope(scope)
                if auth:
                    st.tokens.pop(auth, None)
                resp = _err(401, "invalid_token", "the access token was revoked")
                await resp(scope, receive, logged_send)
                return
            elif kind == "drop":
                entry["status"] = 0
                await send(
                    {
                        "type": "http.response.start",
                        "status": 200,
                        "headers": [
                            (b"content-type", b"application/json"),
                            (b"content-length", b"4096"),
                        ],
                    }
                )
                raise DroppedConnection()
        await self.app(scope, receive, logged_send)

    async def _respond_429(
        self, scope: Scope, receive: Receive, send: Send, date_form: bool
    ) -> None:
        wait = self.state.faults.retry_after_s
        if date_form:
            retry = email.utils.formatdate(time.time() + wait, usegmt=True)
        else:
            retry = str(wait)
        resp = _json({"error": "rate_limited"}, 429, {"Retry-After": retry})
        await resp(scope, receive, send)


def _bearer_from_scope(scope: Scope) -> str | None:
    for k, v in scope.get("headers", []):
        if k == b"authorization":
            val = v.decode("latin-1")
            if val[:7].lower() == "bearer ":
                return val[7:].strip()
    return None


def _bearer(request: Request) -> str | None:
    val = request.headers.get("authorization", "")
    return val[7:].strip() if val[:7].lower() == "bearer " else None


def _parse_dt(raw: str | None) -> datetime | None:
    if not raw:
        return None
    try:
        dt = datetime.fromisoformat(raw.strip().replace(" ", "+"))
    except ValueError:
        try:
            d = date.fromisoformat(raw.strip())
        except ValueError:
            return None
        dt = datetime(d.year, d.month, d.day)
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


def _encode_token(offset: int, start: datetime, end: datetime) -> str:
    raw = json.dumps({"o": offset, "s": start.isoformat(), "e": end.isoformat()}, sort_keys=True)
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _decode_token(token: str, start: datetime, end: datetime) -> int | None:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        data = json.loads(raw)
        if data["s"] != start.isoformat() or data["e"] != end.isoformat():
            return None
        return int(data["o"])
    except (ValueError, KeyError, TypeError, binascii.Error):
        return None


def kit_view(kit: Kit) -> dict[str, Any]:
    """A kit as ``GET /v1/kits`` lists it; ``updated_at`` is when its file last changed."""
    changed = datetime.fromtimestamp(Path(kit.source).stat().st_mtime, UTC)
    return {
        "code": kit.code,
        "version": kit.version,
        "updated_at": changed.isoformat(timespec="seconds"),
        "bricks": list(kit.bricks),
    }


def create_app(config: SandboxConfig | None = None) -> Starlette:
    """Build the sandbox app; ``app.state.sandbox`` is its ``SandboxState``."""
    cfg = config or SandboxConfig()
    gen = Generator(cfg.seed, cfg.per_day)
    st = SandboxState(
        config=cfg,
        generator=gen,
        faults=FaultSwitches.from_config(cfg),
        bulk=BulkState(
            bulk_switches(
                cfg.bulk_faults,
                job_seconds=cfg.bulk_job_seconds,
                clock_speed=cfg.bulk_clock_speed,
                repeat=cfg.bulk_repeat,
                tenant_timezone=cfg.tenant_timezone,
            )
        ),
    )

    def callminer_auth(request: Request) -> Response | None:
        tok = _bearer(request)
        if tok is None:
            return _err(401, "invalid_token", "missing bearer token")
        exp = st.tokens.get(tok)
        if exp is None or time.monotonic() >= exp:
            st.tokens.pop(tok, None)
            return _err(401, "invalid_token", "the access token is invalid or expired")
        return None

    async def token(request: Request) -> Response:
        form = {
            k: v[0] for k, v in parse_qs((await request.body()).decode("utf-8", "replace")).items()
        }
        cid, secret = form.get("client_id"), form.get("client_secret")
        basic = request.headers.get("authorization", "")
        if basic[:6].lower() == "basic " and cid is None:
            try:
                cid, _, secret = base64.b64decode(basic[6:]).decode().partition(":")
            except (ValueError, binascii.Error):
                cid = secret = None
        if form.get("grant_type") != "client_credentials":
            return _err(400, "unsupported_grant_type", "grant_type must be client_credentials")
        if not (
            cid is not None
            and secret is not None
            and secrets.compare_digest(cid, st.config.client_id)
            and secrets.compare_digest(secret, st.config.client_secret)
        ):
            return _err(401, "invalid_client", "client authentication failed")
        tok = secrets.token_urlsafe(24)
        ttl = st.faults.token_ttl
        st.tokens[tok] = time.monotonic() + ttl
        if len(st.token_expiry) >= 100_000:  # a long-running server must not grow forever
            st.token_expiry.clear()
        st.token_expiry[tok] = st.tokens[tok]
        st.tokens_issued += 1
        expires_in: float | int = int(ttl) if float(ttl).is_integer() else ttl
        return _json({"access_token": tok, "token_type": "Bearer", "expires_in": expires_in})

    def window_records(start: datetime, end: datetime, hostile: bool) -> list[Any]:
        key = (start.isoformat(), end.isoformat(), hostile)
        if key in st._windows:
            return st._windows[key]
        out: list[Any] = []
        d = start.date()
        while datetime(d.year, d.month, d.day, tzinfo=UTC) < end:
            day_start = datetime(d.year, d.month, d.day, tzinfo=UTC)
            for t, rec in gen.day(d, hostile)[0]:
                if (start <= t < end) if t is not None else (start <= day_start < end):
                    out.append(rec)
            d += timedelta(days=1)
        if len(st._windows) > 256:
            st._windows.clear()
        st._windows[key] = out
        return out

    def virtual(records: list[Any], wkey: str) -> list[Any]:
        """Offset pagination over a live listing: some records show up again a bit later."""
        rate = st.faults.drift_rate
        if not rate:
            return records
        out: list[Any] = []
        later: dict[int, list[Any]] = {}
        for i, rec in enumerate(records):
            out.append(rec)
            out.extend(later.pop(i, []))
            if _u(st.config.seed, "drift", wkey, i) < rate:
                later.setdefault(min(i + 3, len(records) - 1), []).append(rec)
        for rest in later.values():
            out.extend(rest)
        return out

    def page_size(limit: int, wkey: str, offset: int) -> int:
        if (
            limit > 1
            and _u(st.config.seed, "short", wkey, offset, limit) < st.faults.short_page_rate
        ):
            return 1 + _h(st.config.seed, "shortlen", wkey, offset) % (limit - 1)
        return limit

    async def interactions(request: Request) -> Response:
        if (denied := callminer_auth(request)) is not None:
            return denied
        q = request.query_params
        start, end = _parse_dt(q.get("startDate")), _parse_dt(q.get("endDate"))
        if start is None or end is None:
            return _err(400, "invalid_request", "startDate and endDate (ISO 8601) are required")
        if end < start or (end - start) > timedelta(days=MAX_WINDOW_DAYS):
            return _err(400, "invalid_request", f"window must be 0..{MAX_WINDOW_DAYS} days")
        try:
            limit = int(q.get("limit", st.config.max_page_size))
        except ValueError:
            return _err(400, "invalid_request", "limit must be an integer")
        if limit < 1:
            return _err(400, "invalid_request", "limit must be >= 1")
        limit = min(limit, st.config.max_page_size)
        records = window_records(start, end, st.faults.hostile)
        wkey = f"{start.isoformat()}|{end.isoformat()}"
        key = st.config.array_key
        if st.config.pagination == "token":
            offset = 0
            if q.get("nextPage"):
                got = _decode_token(q["nextPage"], start, end)
                if got is None:
                    return _err(400, "invalid_request", "nextPage does not belong to this query")
                offset = got
            size = page_size(limit, wkey, offset)
            page = records[offset : offset + size]
            if (
                offset > 0
                and page
                and _u(st.config.seed, "drift", wkey, offset) < st.faults.drift_rate
            ):
                page = [records[offset - 1], *page]
            nxt = offset + size
            token_ = _encode_token(nxt, start, end) if nxt < len(records) else None
            return _json({key: page, "nextPage": token_})
        try:
            offset = int(q.get("offset", 0))
        except ValueError:
            return _err(400, "invalid_request", "offset must be an integer")
        if offset < 0:
            return _err(400, "invalid_request", "offset must be >= 0")
        vrecs = virtual(records, wkey)
        page = vrecs[offset : offset + page_size(limit, wkey, offset)]
        if st.config.pagination == "bare":
            return _json(page)
        return _json({key: page, "offset": offset, "total": len(vrecs), "limit": limit})

    async def transcript(request: Request) -> Response:
        if (denied := callminer_auth(request)) is not None:
            return denied
        iid = request.path_params["interaction_id"]
        hostile = st.faults.hostile
        spec = gen.spec(iid, hostile)
        if spec is None:
            return _err(404, "not_found", "no such interaction")
        st.transcript_fetches[iid] += 1
        f = st.faults
        ended = spec.start + timedelta(seconds=spec.duration)
        pending = st.clock() < ended + timedelta(seconds=f.pending_lag_s)
        if (
            not pending
            and _u(st.config.seed, "pending", iid) < f.pending_fraction
            and st.transcript_fetches[iid] <= f.pending_fetches
        ):
            pending = True
        if pending:
            style: str = st.config.pending_style
            if style == "mixed":
                style = ("404", "202", "200")[_h(st.config.seed, "pstyle", iid) % 3]
            if style == "404":
                return _err(404, "not_found", "transcript not available yet")
            return _json({"interactionId": iid, "status": "processing"}, int(style))
        body = gen.transcript(iid, hostile)
        return _json(body)

    def semarize_auth(request: Request) -> Response | None:
        tok = _bearer(request)
        if tok is None or not secrets.compare_digest(tok, st.config.semarize_key):
            return _smz_err(401, "unauthorized", "invalid API key")
        return None

    def run_view(run: dict[str, Any]) -> dict[str, Any]:
        view = {k: run[k] for k in ("id", "status", "kit_code", "kit_version", "metadata")}
        view["created_at"] = run["created_at"]
        if run["status"] == "succeeded":
            view["bricks"] = run["bricks"]
            view["usage"] = run["usage"]
        elif run["status"] == "failed":
            view["error"] = run["error"]
            view["usage"] = run["usage"]
        return view if st.run_rewrite is None else st.run_rewrite(view)

    def finish(run: dict[str, Any]) -> None:
        run["status"] = run["final_status"]

    def new_run(
        run_id: str,
        kits: dict[str, Kit],
        kit_code: str,
        text: str,
        th: str,
        metadata: dict[str, Any],
    ) -> dict[str, Any]:
        """A queued run and its (deterministic) outcome, decided now."""
        f = st.faults
        run: dict[str, Any] = {
            "id": run_id,
            "status": "queued",
            "kit_code": kit_code,
            "kit_version": kits[kit_code].version,
            "metadata": metadata,
            "created_at": st.clock().isoformat(timespec="seconds"),
            "usage": {"input_tokens": max(1, len(text) // 4)},
            "polls_left": f.async_polls,
        }
        if _u(st.config.seed, "fail", th, kit_code) < f.failed_run_rate:
            run["final_status"] = "failed"
            run["error"] = {"code": "evaluation_failed", "message": "the model could not evaluate"}
        else:
            bricks = evaluate(kit_code, text, metadata, kits)
            run["final_status"] = "succeeded"
            run["bricks"] = {
                k: {"value": b.value, "confidence": b.confidence, "evidence": list(b.evidence)}
                for k, b in bricks.items()
            }
        return run

    def remember(run: dict[str, Any], idem: str | None) -> dict[str, Any]:
        """Keep the newest ``RUNS_KEPT`` runs (a long-running or embedded server must not grow
        with every run ever started); an idempotency key outlives its run's payload."""
        st.runs[run["id"]] = run
        if len(st.runs) > RUNS_KEPT:
            del st.runs[next(iter(st.runs))]
        if idem:
            st.idempotency[idem] = run["id"]
        return run

    async def start_run(request: Request) -> Response:
        if (denied := semarize_auth(request)) is not None:
            return denied
        try:
            body = json.loads(await request.body())
        except (ValueError, UnicodeDecodeError):
            return _smz_err(400, "invalid_json", "the body is not JSON")
        if not isinstance(body, dict):
            return _smz_err(400, "invalid_request", "the body must be an object")
        kit_code = body.get("kit_code")
        kits = current_kits()
        if kit_code not in kits:
            return _smz_err(422, "unknown_kit", "unknown kit_code")
        mode = body.get("mode", "async")
        if mode not in ("sync", "async"):
            return _smz_err(400, "invalid_request", "mode must be sync or async")
        inp = body.get("input")
        text = inp.get("transcript") if isinstance(inp, dict) else None
        if not isinstance(text, str):
            return _smz_err(422, "invalid_input", "input.transcript must be a string")
        if not text.strip():
            return _smz_err(422, "empty_transcript", "the transcript is empty")
        raw_metadata = body.get("metadata")
        metadata: dict[str, Any] = raw_metadata if isinstance(raw_metadata, dict) else {}
        idem = request.headers.get("idempotency-key")
        th = transcript_hash(text)
        if idem and idem in st.idempotency:
            run_id = st.idempotency[idem]
            prev = st.runs.get(run_id)
            if prev is None:  # dropped from memory since: the same run again, not billed
                prev = remember(new_run(run_id, kits, kit_code, text, th, metadata), None)
                finish(prev)
            if mode == "sync":
                finish(prev)
                return _json(run_view(prev))
            return _json(run_view(prev), 202)  # the same run, as it stands now
        st.runs_started += 1
        st.billing[(th, kit_code)] += 1
        n = st.runs_started
        run_id = (
            "run_"
            + hashlib.sha256(f"{st.config.seed}|{n}|{th}|{kit_code}".encode()).hexdigest()[:20]
        )
        run = remember(new_run(run_id, kits, kit_code, text, th, metadata), idem)
        if mode == "async":
            return _json({"id": run_id, "status": "queued"}, 202)
        if _u(st.config.seed, "sync504", th, kit_code, n) < st.faults.sync_timeout_rate:
            run["status"] = "running"
            return _smz_err(504, "timeout", "the run is still going; poll it", id=run_id)
        finish(run)
        return _json(run_view(run))

    async def get_run(request: Request) -> Response:
        if (denied := semarize_auth(request)) is not None:
            return denied
        run = st.runs.get(request.path_params["run_id"])
        if run is None:
            return _smz_err(404, "not_found", "no such run")
        if run["status"] in ("queued", "running"):
            if run["polls_left"] > 0:
                run["polls_left"] -= 1
                run["status"] = "running"
            else:
                finish(run)
        return _json(run_view(run))

    async def list_kits(request: Request) -> Response:
        if (denied := semarize_auth(request)) is not None:
            return denied
        return _json({"kits": [kit_view(k) for k in current_kits().values()]})

    app = Starlette(
        routes=[
            Route("/oauth/token", token, methods=["POST"]),
            Route("/v1/interactions", interactions, methods=["GET"]),
            Route("/v1/interactions/{interaction_id}/transcript", transcript, methods=["GET"]),
            Route("/v1/kits", list_kits, methods=["GET"]),
            Route("/v1/runs", start_run, methods=["POST"]),
            Route("/v1/runs/{run_id}", get_run, methods=["GET"]),
            *bulk_routes(st),
        ],
        middleware=[Middleware(_FaultMiddleware, state=st)],
    )
    app.state.sandbox = st
    return app


__all__ = [
    "INJECTABLE_FAULTS",
    "TRANSPORT_FAULTS",
    "DroppedConnection",
    "FaultSwitches",
    "SandboxConfig",
    "SandboxState",
    "create_app",
]
