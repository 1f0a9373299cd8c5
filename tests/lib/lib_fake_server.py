"""A small scripted CallMiner + Semarize look-alike for edge cases the sandbox may not stage.

It follows the contracts; each test sets exactly the behaviour it needs (a queue of
faults, a pagination style, a hostile echo) and reads ``log`` to see what was sent.
Served over real loopback HTTP with uvicorn (see ``serve``).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

SECRET = "s3cr3t-client-secret"
API_KEY = "smz_test_fake_key"


@dataclass
class Fake:
    records: list[Any] = field(default_factory=list)
    style: str = "token"  # token | offset | bare | single
    array_key: str = "interactions"
    page_cap: int = 1000
    short_every: int = 0  # every n-th page returns one record fewer than asked
    token_ttl: float = 3600.0
    transcripts: dict[str, Any] = field(default_factory=dict)  # id -> (status, body)
    faults: list[Any] = field(
        default_factory=list
    )  # next responses: (status, headers, body) | "drop" | "slow"
    reject_tokens: set[str] = field(default_factory=set)
    drift_after_page: int | None = None  # insert a record at the front after this page
    runs: dict[str, dict[str, Any]] = field(default_factory=dict)
    run_polls_needed: int = 2
    sync_504: bool = False
    billed: int = 0
    runs_by_key: dict[str, str] = field(default_factory=dict)
    log: list[tuple[float, str, str, int]] = field(default_factory=list)
    tokens_issued: int = 0
    seen_auth: list[str] = field(default_factory=list)
    echo_secret: bool = False
    slow_s: float = 2.0
    fault_paths: tuple[str, ...] = ("/v1/",)  # faults apply to these path prefixes only
    # per-request script: return a response to answer with it, None for the normal handling
    hook: Callable[[Request], Awaitable[Response | None]] | None = None

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/oauth/token", self.token, methods=["POST"]),
                Route("/v1/interactions", self.listing),
                Route("/v1/interactions/{iid:path}/transcript", self.transcript),
                Route("/v1/runs", self.start_run, methods=["POST"]),
                Route("/v1/runs/{rid}", self.get_run),
            ]
        )

    async def _fault(self, request: Request) -> Response | None:
        if not self.faults or not request.url.path.startswith(self.fault_paths):
            return None
        fault = self.faults.pop(0)
        if fault == "drop":
            return _Dropped()
        if fault == "slow":
            await asyncio.sleep(self.slow_s)
            return None
        status, headers, body = fault
        return JSONResponse(body, status_code=status, headers=headers)

    def _record(self, request: Request, status: int) -> None:
        self.log.append((time.monotonic(), request.method, request.url.path, status))

    async def _guard(self, request: Request) -> Response | None:
        if self.hook is not None and (scripted := await self.hook(request)) is not None:
            self._record(request, scripted.status_code)
            return scripted
        fault = await self._fault(request)
        if fault is not None:
            self._record(request, fault.status_code)
            return fault
        return None

    def _authorized(self, request: Request) -> str | None:
        auth = request.headers.get("authorization", "")
        self.seen_auth.append(auth)
        token = auth.removeprefix("Bearer ")
        if not token.startswith("tok-") or token in self.reject_tokens:
            return None
        issued = float(token.split("-")[2])
        if time.monotonic() > issued + self.token_ttl:
            return None
        return token

    async def token(self, request: Request) -> Response:
        if (r := await self._guard(request)) is not None:
            return r
        form = {k: v[0] for k, v in parse_qs((await request.body()).decode()).items()}
        if form.get("client_id") != "cid" or form.get("client_secret") != SECRET:
            desc = f"bad secret {form.get('client_secret')}" if self.echo_secret else "bad"
            self._record(request, 401)
            return JSONResponse(
                {"error": "invalid_client", "error_description": desc}, status_code=401
            )
        self.tokens_issued += 1
        self._record(request, 200)
        return JSONResponse(
            {
                "access_token": f"tok-{self.tokens_issued}-{time.monotonic()}",
                "token_type": "Bearer",
                "expires_in": self.token_ttl,
            }
        )

    async def listing(self, request: Request) -> Response:
        if (r := await self._guard(request)) is not None:
            return r
        if self._authorized(request) is None:
            self._record(request, 401)
            return JSONResponse({"error": "invalid_token"}, status_code=401)
        q = request.query_params
        assert q["startDate"].endswith("Z") and q["endDate"].endswith("Z")
        limit = min(int(q["limit"]), self.page_cap)
        if self.style == "token":
            start = int(q.get("nextPage", "0"))
        else:
            start = int(q.get("offset", "0"))
        page_no = len([e for e in self.log if e[2] == "/v1/interactions" and e[3] == 200]) + 1
        n = limit - 1 if self.short_every and page_no % self.short_every == 0 else limit
        page = self.records[start : start + n]
        end = start + len(page)
        self._record(request, 200)
        if self.drift_after_page is not None and page_no == self.drift_after_page:
            self.records.insert(0, {"id": "INT-drift-new", "channel": "voice"})
        if self.style == "bare":
            return JSONResponse(page)
        body: dict[str, Any] = {self.array_key: page}
        if self.style == "token":
            body["nextPage"] = str(end) if end < len(self.records) else None
        elif self.style == "offset":
            body["offset"] = start
            body["total"] = len(self.records)
        return JSONResponse(body)

    async def transcript(self, request: Request) -> Response:
        if (r := await self._guard(request)) is not None:
            return r
        if self._authorized(request) is None:
            self._record(request, 401)
            return JSONResponse({"error": "invalid_token"}, status_code=401)
        iid = request.path_params["iid"]
        status, body = self.transcripts.get(iid, (404, {"error": "not_found"}))
        self._record(request, status)
        return JSONResponse(body, status_code=status)

    async def start_run(self, request: Request) -> Response:
        if (r := await self._guard(request)) is not None:
            return r
        if request.headers.get("authorization") != f"Bearer {API_KEY}":
            self._record(request, 401)
            return JSONResponse({"error": {"code": "unauthorized", "message": "bad key"}}, 401)
        body = await request.json()
        transcript = body["input"]["transcript"]
        if not transcript.strip():
            self._record(request, 422)
            return JSONResponse(
                {"error": {"code": "empty_transcript", "message": "transcript is empty"}}, 422
            )
        key = request.headers.get("idempotency-key")
        if key and key in self.runs_by_key:
            run = self.runs[self.runs_by_key[key]]
        else:
            self.billed += 1
            rid = f"run_{len(self.runs) + 1}"
            fail = "FAIL" in transcript
            run = {
                "id": rid,
                "status": "queued",
                "kit_code": body["kit_code"],
                "kit_version": "KV-1",
                "_polls": 0,
                "_final": {
                    "status": "failed",
                    "error": {"code": "model_error", "message": "could not evaluate"},
                }
                if fail
                else {
                    "status": "succeeded",
                    "bricks": {
                        "score": {
                            "value": 0.5,
                            "confidence": 0.9,
                            "evidence": [{"quote": "hi", "utterance_index": 0}],
                        },
                        "flag": {"value": True, "confidence": 1, "evidence": []},
                    },
                    "usage": {"input_tokens": 12},
                },
            }
            self.runs[rid] = run
            if key:
                self.runs_by_key[key] = rid
        if body["mode"] == "sync" and not self.sync_504:
            run.update(run["_final"])
            self._record(request, 200)
            return JSONResponse(_public(run))
        if body["mode"] == "sync":
            self._record(request, 504)
            return JSONResponse({"error": "timeout", "id": run["id"]}, status_code=504)
        self._record(request, 202)
        return JSONResponse({"id": run["id"], "status": "queued"}, status_code=202)

    async def get_run(self, request: Request) -> Response:
        if (r := await self._guard(request)) is not None:
            return r
        run = self.runs[request.path_params["rid"]]
        run["_polls"] += 1
        if run["_polls"] >= self.run_polls_needed:
            run.update(run["_final"])
        else:
            run["status"] = "running"
        self._record(request, 200)
        return JSONResponse(_public(run))


class _Dropped(Response):
    """Starts a response then dies: uvicorn closes the connection mid-response."""

    def __init__(self) -> None:
        super().__init__(status_code=200)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        raise ConnectionResetError("dropped on purpose")


def _public(run: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in run.items() if not k.startswith("_")}


@contextlib.contextmanager
def serve(app: Starlette) -> Iterator[str]:
    """Run ``app`` on a free loopback port in a thread; yield its base URL."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="critical", lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(5)
        sock.close()
