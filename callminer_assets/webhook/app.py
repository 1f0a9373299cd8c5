"""The CallMiner webhook listener: verify, bound, validate, store durably, then acknowledge.

Order of checks, cheapest first, so an unauthenticated caller cannot make us
buffer a large body: signature headers present and timestamp fresh (401) ->
declared ``Content-Length`` (413) -> body streamed with a hard cap (413) ->
HMAC over ``"<timestamp>.<raw body>"`` compared in constant time (401) ->
event shape (400) -> committed to the SQLite inbox -> 200.

Nothing here logs the secret, the signature header or the body.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import time
from collections.abc import Callable
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from callminer_assets.lib.errors import ConfigError
from callminer_assets.webhook.inbox import Inbox, parse_timestamp

SECRET_ENV = "CALLMINER_WEBHOOK_SECRET"
EVENTS_PATH = "/callminer/events"
SIGNATURE_HEADER = "x-callminer-signature"
TIMESTAMP_HEADER = "x-callminer-timestamp"
MAX_BODY_BYTES = 1024 * 1024  # 1 MiB: larger bodies get 413
MAX_SKEW_SECONDS = 5 * 60  # timestamps further off than this get 401
_MAX_FIELD_LEN = 512

log = logging.getLogger(__name__)


def secret_from_env() -> str:
    """The shared secret, or a ConfigError naming the variable (never its value)."""
    secret = os.environ.get(SECRET_ENV, "")
    if not secret.strip():
        raise ConfigError(
            f"{SECRET_ENV} is not set: the webhook listener refuses to start without the "
            "shared secret it verifies X-CallMiner-Signature with"
        )
    return secret


def sign(secret: str, timestamp: str | int, body: bytes) -> str:
    """The ``X-CallMiner-Signature`` value for a body (used by tests and the sandbox)."""
    mac = hmac.new(secret.encode("utf-8"), f"{timestamp}.".encode() + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def validate_event(payload: Any) -> str | None:
    """None when ``payload`` is a CallMiner event, else the reason it is not."""
    if not isinstance(payload, dict):
        return "body is not a JSON object"
    for key in ("eventId", "type", "interactionId"):
        value = payload.get(key)
        if not isinstance(value, str) or not value.strip():
            return f"{key} must be a non-empty string"
        if len(value) > _MAX_FIELD_LEN:
            return f"{key} is too long"
    channel = payload.get("channel")
    if channel is not None and not isinstance(channel, str):
        return "channel must be a string"
    occurred = payload.get("occurredAt")
    if occurred is not None:
        if not isinstance(occurred, str):
            return "occurredAt must be an ISO 8601 string"
        try:
            parse_timestamp(occurred)
        except ValueError:
            return "occurredAt is not ISO 8601"
    return None


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


class _TooLarge(Exception):
    pass


async def _read_capped(request: Request, limit: int) -> bytes:
    """Read the body, stopping as soon as it exceeds ``limit`` (never buffers more)."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _TooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def create_app(
    *,
    secret: str | None = None,
    inbox: Inbox | None = None,
    clock: Callable[[], float] = time.time,
    max_body_bytes: int = MAX_BODY_BYTES,
    max_skew_seconds: int = MAX_SKEW_SECONDS,
) -> Starlette:
    """Build the listener; ``secret`` defaults to ``$CALLMINER_WEBHOOK_SECRET`` (required)."""
    key = (secret if secret is not None else secret_from_env()).encode("utf-8")
    if not key.strip():
        raise ConfigError(f"{SECRET_ENV} is empty")
    store = inbox if inbox is not None else Inbox()

    async def receive_event(request: Request) -> Response:
        signature = request.headers.get(SIGNATURE_HEADER)
        timestamp = request.headers.get(TIMESTAMP_HEADER)
        if not signature or not timestamp:
            log.warning("webhook rejected: unsigned request")
            return _error(401, "missing signature or timestamp")
        try:
            ts = int(timestamp.strip())
        except ValueError:
            log.warning("webhook rejected: unreadable timestamp")
            return _error(401, "bad timestamp")
        if abs(clock() - ts) > max_skew_seconds:
            log.warning("webhook rejected: timestamp outside the %ss window", max_skew_seconds)
            return _error(401, "stale timestamp")

        declared = request.headers.get("content-length")
        if declared is not None:
            try:
                if int(declared) > max_body_bytes:
                    log.warning("webhook rejected: declared body over %s bytes", max_body_bytes)
                    return _error(413, "body too large")
            except ValueError:
                return _error(400, "bad Content-Length")
        try:
            body = await _read_capped(request, max_body_bytes)
        except _TooLarge:
            log.warning("webhook rejected: streamed body over %s bytes", max_body_bytes)
            return _error(413, "body too large")
        except ClientDisconnect:
            return Response(status_code=400)

        expected = sign(key.decode("utf-8"), timestamp.strip(), body).encode("ascii")
        given = signature.strip().lower().encode("utf-8", errors="replace")
        if not hmac.compare_digest(expected, given):
            log.warning("webhook rejected: signature mismatch")
            return _error(401, "bad signature")

        try:
            payload = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            return _error(400, "body is not JSON")
        reason = validate_event(payload)
        if reason is not None:
            log.warning("webhook rejected: %s", reason)
            return _error(400, reason)

        # Blocking sqlite commit (fsync) off the event loop; answer only after it returned.
        stored = await run_in_threadpool(store.store, payload)
        log.info("webhook event %s %s", payload["eventId"], "stored" if stored else "duplicate")
        return JSONResponse({"stored": stored, "eventId": payload["eventId"]}, status_code=200)

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    app = Starlette(
        routes=[
            Route(EVENTS_PATH, receive_event, methods=["POST"]),
            Route("/healthz", healthz, methods=["GET"]),
        ]
    )
    app.state.inbox = store
    return app
