"""Semarize client: start runs (sync or async), poll them, parse bricks.

Every POST carries the request's ``Idempotency-Key``, so retrying a POST after a timeout
or a 5xx returns the same run instead of paying for a second one.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Sequence
from types import TracebackType
from typing import Any
from urllib.parse import quote

import httpx

from callminer_assets.lib.errors import DataError, PollTimeoutError
from callminer_assets.lib.http import HttpBase, LoggerLike, error_detail, gather_progress
from callminer_assets.lib.models import Brick, EvalOutcome, EvalRequest
from callminer_assets.lib.settings import SemarizeSettings

_TERMINAL = frozenset({"succeeded", "failed"})
_REFUSED = frozenset({400, 422})


def _run_id(response: httpx.Response) -> str | None:
    try:
        body = response.json()
    except ValueError:
        return None
    run_id = body.get("id") if isinstance(body, dict) else None
    return run_id if isinstance(run_id, str) and run_id else None


class SemarizeClient:
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
            secrets=(settings.api_key,),
        )
        self.log = self.http.log

    async def __aenter__(self) -> SemarizeClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self.http.aclose()

    async def evaluate_many(self, requests: Sequence[EvalRequest]) -> list[EvalOutcome]:
        """One outcome per request, in order. Refused inputs and failed runs are outcomes;
        a bad key (AuthError) or an exhausted retry budget raises."""
        outcomes = await gather_progress(requests, self.evaluate, log=self.log, what="evaluated")
        failed = sum(1 for o in outcomes if o.status == "failed")
        self.log.info(
            "semarize: %d runs, %d succeeded, %d failed",
            len(outcomes),
            len(outcomes) - failed,
            failed,
        )
        return outcomes

    async def evaluate(self, request: EvalRequest) -> EvalOutcome:
        path = "/v1/runs"
        name = self.http.describe("POST", path)
        mode = self.settings.mode
        response = await self.http.request(
            "POST",
            path,
            json={
                "kit_code": request.kit_code,
                "mode": mode,
                "input": {"transcript": request.transcript_text},
                "metadata": request.metadata,
            },
            headers={"Idempotency-Key": request.idempotency_key},
            # A sync 504 that names its run is an answer ("still running, poll me"), not a fault.
            accept=lambda r: r.status_code == 504 and _run_id(r) is not None,
        )
        status = response.status_code
        if status in _REFUSED:
            error = self.http.redact(error_detail(response)) or f"HTTP {status}"
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
                raise PollTimeoutError(
                    f"run still {run.get('status')!r} after {self.settings.poll_timeout_s:.0f} s",
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
        tokens = usage.get("input_tokens") if isinstance(usage, dict) else None
        input_tokens = tokens if isinstance(tokens, int) and not isinstance(tokens, bool) else None
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
            {str(k): parse_brick(v) for k, v in bricks_raw.items()}
            if isinstance(bricks_raw, dict)
            else {}
        )
        return EvalOutcome(
            request, "succeeded", run_id, kit_version, bricks, input_tokens=input_tokens
        )


def parse_brick(raw: Any) -> Brick:
    """A Brick from ``{"value", "confidence", "evidence"}``; tolerant of odd shapes."""
    if not isinstance(raw, dict):
        return Brick(
            value=raw if isinstance(raw, str | int | float | bool) else None, confidence=None
        )
    conf = raw.get("confidence")
    confidence = (
        float(conf) if isinstance(conf, int | float) and not isinstance(conf, bool) else None
    )
    evidence = raw.get("evidence")
    items = tuple(e for e in evidence if isinstance(e, dict)) if isinstance(evidence, list) else ()
    return Brick(value=raw.get("value"), confidence=confidence, evidence=items)
