"""Semarize client: start runs (sync or async), poll them, parse bricks.

Every POST carries the request's ``Idempotency-Key``, so retrying a POST after a timeout
or a 5xx returns the same run instead of paying for a second one.

``evaluate_many`` isolates requests: one run that cannot be resolved this time (5xx or 429
after retries, poll timeout, a malformed body) does not discard the others, which were
paid for. Only a refused key (``AuthError``) stops the batch, and even then the finished
outcomes travel with the error (``EvaluationAborted.completed``).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Iterable, Sequence
from typing import Any
from urllib.parse import quote

import httpx

from callminer_assets.lib.errors import (
    AuthError,
    CallMinerAssetsError,
    DataError,
    PollTimeoutError,
)
from callminer_assets.lib.http import AsyncClosing, HttpBase, LoggerLike, gather_progress
from callminer_assets.lib.models import Brick, EvalOutcome, EvalRequest
from callminer_assets.lib.settings import SemarizeSettings

_TERMINAL = frozenset({"succeeded", "failed"})
_REFUSED = frozenset({400, 422})
_MAX_FAILURE_WARNINGS = 20


class EvalBatch(list[EvalOutcome]):
    """What ``evaluate_many`` returns: a plain list of the *finished* outcomes, in request
    order (succeeded runs, failed runs, refused inputs), plus ``unresolved``.

    ``unresolved`` holds ``(request, reason)`` for every request not evaluated this time
    (no outcome in the list): store the outcomes, leave these unstored, and a later run
    sends them again with the same ``Idempotency-Key`` (the same run, not billed twice).
    """

    def __init__(
        self,
        outcomes: Iterable[EvalOutcome] = (),
        unresolved: Iterable[tuple[EvalRequest, str]] = (),
    ) -> None:
        super().__init__(outcomes)
        self.unresolved: list[tuple[EvalRequest, str]] = list(unresolved)


class EvaluationAborted(AuthError):
    """The key was refused mid-batch (an ``AuthError``): nothing more can be evaluated.

    ``completed`` is the ``EvalBatch`` of the runs that had finished before (already paid
    for: store them); its ``unresolved`` lists every other request.
    """

    def __init__(self, cause: AuthError, completed: EvalBatch) -> None:
        CallMinerAssetsError.__init__(
            self, f"{cause}; {len(completed)} finished outcomes kept in .completed"
        )
        self.request = cause.request
        self.status_code = cause.status_code
        self.completed = completed


def _run_id(response: httpx.Response) -> str | None:
    try:
        body = response.json()
    except ValueError:
        return None
    run_id = body.get("id") if isinstance(body, dict) else None
    return run_id if isinstance(run_id, str) and run_id else None


class SemarizeClient(AsyncClosing):
    """Async Semarize client. ``evaluate_many`` runs requests concurrently (bounded)."""

    def __init__(
        self,
        settings: SemarizeSettings,
        transport: httpx.AsyncBaseTransport | None = None,
        logger: LoggerLike | None = None,
    ) -> None:
        self.settings = settings
        self.http = HttpBase(
            base_url=settings.api_url,
            requests_per_second=settings.requests_per_second,
            concurrency=settings.concurrency,
            timeout_s=settings.timeout_s,
            retry=settings.retry,
            transport=transport,
            logger=logger,
            headers={"Authorization": f"Bearer {settings.api_key}", "Accept": "application/json"},
        )
        self.http.add_secret(settings.api_key)
        self.log = self.http.log

    async def aclose(self) -> None:
        await self.http.aclose()

    async def kits(self) -> dict[str, str]:
        """``GET /v1/kits``: the current version of each kit (code -> version)."""
        name = self.http.describe("GET", "/v1/kits")
        response = await self.http.request("GET", "/v1/kits")
        if not response.is_success:
            raise self.http.error_for(response, name, "listing kits")
        body = self.http.json(response, name)
        listed = body.get("kits") if isinstance(body, dict) else None
        if not isinstance(listed, list):
            raise DataError(f"kits listing without a 'kits' list ({name})")
        versions: dict[str, str] = {}
        for kit in listed:
            code = kit.get("code") if isinstance(kit, dict) else None
            version = kit.get("version") if isinstance(kit, dict) else None
            if not (isinstance(code, str) and code and isinstance(version, str) and version):
                raise DataError(f"a kit without a code and a version ({name})")
            versions[code] = version
        return versions

    async def evaluate_many(self, requests: Sequence[EvalRequest]) -> EvalBatch:
        """Evaluate concurrently; return an ``EvalBatch`` (a list) of the finished outcomes.

        - Finished = a succeeded run, a failed run, or an input refused with 400/422: one
          ``EvalOutcome`` each, in request order.
        - A request that could not be resolved this time (5xx/429/transport after retries,
          ``PollTimeoutError``, a sync 504 still unresolved, ``DataError``, another 4xx)
          has NO outcome; it is in ``batch.unresolved`` as ``(request, reason)`` and a
          warning is logged. Send it again next run (same Idempotency-Key: not re-billed).
        - A refused key (``AuthError``, e.g. 401) raises ``EvaluationAborted`` (an
          ``AuthError``) whose ``.completed`` is the ``EvalBatch`` of what had finished.
        - Anything that is not a ``CallMinerAssetsError`` (a bug) propagates unchanged.
        """
        done: dict[int, EvalOutcome] = {}
        errors: dict[int, str] = {}

        async def one(index: int) -> None:
            request = requests[index]
            try:
                done[index] = await self.evaluate(request)
            except AuthError:
                raise
            except CallMinerAssetsError as exc:
                errors[index] = self.http.redact(str(exc))
                if len(errors) <= _MAX_FAILURE_WARNINGS:
                    self.log.warning(
                        "%s/%s not evaluated this time, retried by a later run: %s",
                        request.interaction_id,
                        request.kit_code,
                        errors[index],
                    )

        try:
            await gather_progress(range(len(requests)), one, log=self.log, what="evaluated")
        except AuthError as exc:
            batch = _batch(requests, done, errors, f"batch aborted: {exc}")
            self.log.warning(
                "semarize key refused: %d finished outcomes kept, %d requests not evaluated",
                len(batch),
                len(batch.unresolved),
            )
            raise EvaluationAborted(exc, batch) from None
        batch = _batch(requests, done, errors, "not evaluated")
        failed = sum(1 for o in batch if o.status == "failed")
        self.log.info(
            "semarize: %d runs finished (%d succeeded, %d failed), %d not evaluated this time",
            len(batch),
            len(batch) - failed,
            failed,
            len(batch.unresolved),
        )
        return batch

    async def evaluate(self, request: EvalRequest) -> EvalOutcome:
        """One run to its end. Raises (``APIError``/``DataError``) when it cannot be resolved."""
        name = self.http.describe("POST", "/v1/runs")
        response = await self._start(request)
        status = response.status_code
        if status in _REFUSED:
            error = self.http.detail(response) or f"HTTP {status}"
            return EvalOutcome(request, "failed", None, request.kit_version, error=error)
        if status == 504 or (response.is_success and not self._complete(response, name)):
            # Queued/running, a sync 504, or a terse 202 for an idempotent re-send (which may
            # already be finished): the full run comes from GET /v1/runs/{id}.
            run_id = _run_id(response)
            if run_id is None:
                raise DataError(f"run accepted without an id ({name})")
            run = await self._poll(run_id, finished=status != 504 and self._terminal(response))
        elif response.is_success:
            run = self.http.json(response, name)
        else:
            raise self.http.error_for(response, name, "run refused")
        return self._outcome(request, run)

    async def _start(self, request: EvalRequest) -> httpx.Response:
        """``POST /v1/runs``; a sync 504 without a run id is re-sent until it resolves.

        A sync 504 means "the run goes on server-side"; when the body names the run it is
        polled, otherwise the same POST (same Idempotency-Key: the same run, not billed
        again) is sent again with poll-style backoff until ``poll_timeout_s``, then
        ``PollTimeoutError`` (the request is "not evaluated this time").
        """
        path = "/v1/runs"
        name = self.http.describe("POST", path)
        sync = self.settings.mode == "sync"
        deadline = time.monotonic() + self.settings.poll_timeout_s
        delay = self.settings.poll_initial_s
        resent = 0
        while True:
            response = await self.http.request(
                "POST",
                path,
                json={
                    "kit_code": request.kit_code,
                    "mode": self.settings.mode,
                    "input": {"transcript": request.transcript_text},
                    "metadata": request.metadata,
                },
                headers={"Idempotency-Key": request.idempotency_key},
                # A sync 504 is an answer ("still running"), not a transient fault.
                accept=lambda r: r.status_code == 504 and (sync or _run_id(r) is not None),
            )
            if response.status_code != 504 or _run_id(response) is not None:
                return response
            wait = delay * random.uniform(0.8, 1.2)
            if time.monotonic() + wait > deadline:
                raise PollTimeoutError(
                    f"sync run still unresolved (504 without a run id, sent {resent + 1} "
                    f"times) after {self.settings.poll_timeout_s:g} s",
                    request=name,
                )
            resent += 1
            self.log.debug("%s: sync 504 without a run id; sending it again (%d)", name, resent)
            await asyncio.sleep(wait)
            delay = min(max(delay, 0.05) * 2, self.settings.poll_max_s)

    def _complete(self, response: httpx.Response, name: str) -> bool:
        """A finished run with its result in this body (not just ``{"id", "status"}``)."""
        body = self.http.json(response, name)
        if not isinstance(body, dict):
            return False
        status = body.get("status")
        return (status == "succeeded" and "bricks" in body) or (
            status == "failed" and "error" in body
        )

    def _terminal(self, response: httpx.Response) -> bool:
        try:
            body = response.json()
        except ValueError:
            return False
        return isinstance(body, dict) and body.get("status") in _TERMINAL

    async def _poll(self, run_id: str, *, finished: bool = False) -> dict[str, Any]:
        """Poll ``GET /v1/runs/{id}`` with capped exponential backoff until it is terminal.

        ``finished=True`` means the run is known to be finished: fetch it without waiting.
        """
        path = f"/v1/runs/{quote(run_id, safe='')}"
        name = self.http.describe("GET", "/v1/runs/{id}")
        delay = self.settings.poll_initial_s
        deadline = time.monotonic() + self.settings.poll_timeout_s
        skip_wait = finished
        while True:
            if not skip_wait:
                await asyncio.sleep(delay * random.uniform(0.8, 1.2))
            skip_wait = False
            response = await self.http.request("GET", path)
            if not response.is_success:
                raise self.http.error_for(response, name, "polling a run")
            run = self.http.json(response, name)
            if not isinstance(run, dict):
                raise DataError(f"run is not an object ({name})")
            if run.get("status") in _TERMINAL:
                return run
            if time.monotonic() > deadline:
                state = self.http.redact(repr(run.get("status")))[:40]
                raise PollTimeoutError(
                    f"run still {state} after {self.settings.poll_timeout_s:g} s",
                    request=name,
                )
            delay = min(max(delay, 0.05) * 2, self.settings.poll_max_s)

    def _outcome(self, request: EvalRequest, run: Any) -> EvalOutcome:
        if not isinstance(run, dict):
            raise DataError("run is not an object (POST /v1/runs)")
        run_id = run.get("id") if isinstance(run.get("id"), str) else None
        version = run.get("kit_version")
        kit_version = version if isinstance(version, str) and version else request.kit_version
        usage = run.get("usage")
        input_tokens = _count(usage.get("input_tokens") if isinstance(usage, dict) else None)
        if run.get("status") == "failed":
            err = run.get("error")
            if isinstance(err, dict):
                text = f"{err.get('code', 'error')}: {err.get('message', '')}"
            else:
                text = f"error: {err}" if err else "error: run failed"
            return EvalOutcome(
                request,
                "failed",
                run_id,
                kit_version,
                error=self.http.redact(text)[:500],
                input_tokens=input_tokens,
            )
        bricks_raw = run.get("bricks")
        bricks = (
            {str(k): parse_brick(v, log=self.log) for k, v in bricks_raw.items()}
            if isinstance(bricks_raw, dict)
            else {}
        )
        return EvalOutcome(
            request, "succeeded", run_id, kit_version, bricks, input_tokens=input_tokens
        )


def _batch(
    requests: Sequence[EvalRequest],
    done: dict[int, EvalOutcome],
    errors: dict[int, str],
    default: str,
) -> EvalBatch:
    return EvalBatch(
        (done[i] for i in range(len(requests)) if i in done),
        ((r, errors.get(i, default)) for i, r in enumerate(requests) if i not in done),
    )


def _count(value: Any) -> int | None:
    """A token count: an int, or an integral float (``1834.0``); anything else is unknown."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def parse_brick(raw: Any, log: LoggerLike | None = None) -> Brick:
    """A Brick from ``{"value", "confidence", "evidence"}``; tolerant of odd shapes.

    A brick that is not an object is its own value (a list stays a list: stored as JSON).
    Evidence items that are objects are kept as received; anything else is dropped and
    counted in a debug log (a single object instead of a list counts as one item).
    """
    if not isinstance(raw, dict):
        return Brick(value=raw, confidence=None)
    conf = raw.get("confidence")
    confidence = (
        float(conf) if isinstance(conf, int | float) and not isinstance(conf, bool) else None
    )
    evidence = raw.get("evidence")
    if evidence is None:
        candidates: list[Any] = []
    elif isinstance(evidence, list):
        candidates = evidence
    else:
        candidates = [evidence]
    items = tuple(e for e in candidates if isinstance(e, dict))
    dropped = len(candidates) - len(items)
    if dropped and log is not None:
        log.debug("brick evidence: dropped %d item(s) that are not objects", dropped)
    return Brick(value=raw.get("value"), confidence=confidence, evidence=items)
