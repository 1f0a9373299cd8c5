"""Review fixes: token redaction, per-item isolation, sync 504 without id, pagination,
Retry-After cap, odd brick shapes. Scripted loopback server (``Fake.hook``) per case."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Iterator
from datetime import date
from typing import Any

import pytest
from conftest import cm_settings, smz_settings
from lib_fake_server import API_KEY, SECRET, Fake
from lib_fake_server import serve as serve_fake
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from callminer_assets.lib import settings as lib_settings
from callminer_assets.lib.callminer import CallMinerClient
from callminer_assets.lib.errors import (
    AuthError,
    DataError,
    RequestRejected,
    ServerError,
)
from callminer_assets.lib.models import EvalRequest, TranscriptFetch, Window
from callminer_assets.lib.semarize import (
    EvalBatch,
    EvaluationAborted,
    SemarizeClient,
    parse_brick,
)
from callminer_assets.lib.settings import RetryPolicy

WINDOW = Window.for_day(date(2025, 1, 15))
Logs = tuple[logging.Logger, list[str]]


@pytest.fixture
def served(fake: Fake) -> Iterator[str]:
    """Like ``fake_url`` but served after the test patched the fake (hooks, wrappers)."""
    with serve_fake(fake.app()) as url:
        yield url


def recs(n: int) -> list[dict[str, Any]]:
    return [{"id": f"INT-{i:04d}", "channel": "voice"} for i in range(n)]


def tokens_of(fake: Fake) -> set[str]:
    return {a.removeprefix("Bearer ") for a in fake.seen_auth if a.startswith("Bearer tok-")}


def assert_clean(fake: Fake, texts: list[str]) -> None:
    tokens = tokens_of(fake)
    assert tokens, "the test should have used at least one token"
    for text in texts:
        assert SECRET not in text and API_KEY not in text, text
        for tok in tokens:
            assert tok not in text and tok[:10] not in text, text


# --- 1. tokens fetched at run time are redacted ---------------------------------------------


def test_echoed_token_redacted_everywhere(fake: Fake, log_lines: Logs) -> None:
    logger, lines = log_lines
    fake.records = recs(2)
    fake.transcripts = {"OK": (200, {"utterances": [{"text": "hi"}]})}
    state = {"listing": 0}

    async def hook(request: Request) -> Response | None:
        auth = request.headers.get("authorization", "")
        path = request.url.path
        if path == "/v1/interactions":
            state["listing"] += 1
            if state["listing"] == 1:  # an invalid_token whose `error` quotes the header
                return JSONResponse({"error": f"invalid_token {auth}"}, status_code=401)
            # the token at the 200-char cut: redact first, then cut
            desc = "x" * 163 + " bad header " + auth + " " + SECRET
            return JSONResponse({"error": "bad_request", "error_description": desc}, 400)
        if path.endswith("/T501/transcript"):  # a non-transient 5xx: its body is used
            return JSONResponse({"error": "oops", "message": f"echo {auth}"}, status_code=501)
        if path.endswith("/T403/transcript"):
            return JSONResponse({"error": "forbidden", "error_description": auth}, 403)
        if path.endswith("/T503/transcript"):
            return JSONResponse({"error": "down", "message": auth}, status_code=503)
        return None

    fake.hook = hook
    errors: list[BaseException] = []
    fetched: list[TranscriptFetch] = []

    async def go() -> None:
        async with CallMinerClient(cm_settings(url), logger=logger) as cm:
            with pytest.raises(RequestRejected) as err:
                await cm.list_interactions(WINDOW)
            errors.append(err.value)
            with pytest.raises(ServerError) as err5:
                await cm.fetch_transcript("T501")
            errors.append(err5.value)
            fetched.extend(await cm.fetch_transcripts(["OK", "T501", "T403", "T503"]))

    with serve_fake(fake.app()) as url:
        asyncio.run(go())
    assert "[reda" in str(errors[0]) and "[redacted]" in str(errors[1])
    assert "GET /v1/interactions" in str(errors[0])
    assert [f.status for f in fetched] == ["available", "pending", "pending", "pending"]
    assert any("token rejected" in ln for ln in lines)
    assert len([ln for ln in lines if "kept pending" in ln]) == 3
    assert fake.tokens_issued == 2
    assert_clean(fake, [*map(str, errors), *map(repr, errors), *lines])


def test_semarize_key_echo_redacted(fake: Fake, served: str, log_lines: Logs) -> None:
    logger, lines = log_lines

    async def hook(request: Request) -> Response | None:
        if request.method == "POST":
            body = await request.json()
            auth = request.headers["authorization"]
            if "REFUSE" in body["input"]["transcript"]:
                msg = "y" * 190 + auth
                return JSONResponse({"error": {"code": "bad", "message": msg}}, 422)
            return JSONResponse({"error": "x", "message": auth}, status_code=505)
        return None

    fake.hook = hook

    async def go() -> EvalBatch:
        async with SemarizeClient(smz_settings(served), logger=logger) as smz:
            return await smz.evaluate_many([req("A", "agent: REFUSE"), req("B")])

    batch = asyncio.run(go())
    assert [o.status for o in batch] == ["failed"]
    assert [r.interaction_id for r, _ in batch.unresolved] == ["B"]
    texts = [o.error or "" for o in batch] + [why for _, why in batch.unresolved] + lines
    for text in texts:
        assert API_KEY not in text and API_KEY[:10] not in text, text


# --- 2. one bad item does not lose the batch --------------------------------------------------


def test_transcript_failures_stay_per_id(fake: Fake, served: str, log_lines: Logs) -> None:
    logger, lines = log_lines
    ok = {"utterances": [{"text": "hi"}]}
    fake.transcripts = {f"T{i}": (200, ok) for i in range(6)}
    fake.transcripts |= {"BAD400": (400, {"error": "bad"}), "NOPE": (403, {"error": "no"})}

    async def hook(request: Request) -> Response | None:
        if request.url.path.endswith("/DOWN/transcript"):
            return JSONResponse({}, status_code=503)
        return None

    fake.hook = hook
    ids = ["T0", "BAD400", "T1", "NOPE", "T2", "DOWN", "T3", "T4", "T5"]

    async def go() -> list[TranscriptFetch]:
        async with CallMinerClient(cm_settings(served), logger=logger) as cm:
            return await cm.fetch_transcripts(ids)

    got = {f.interaction_id: f.status for f in asyncio.run(go())}
    assert list(got) == ids
    assert {k for k, v in got.items() if v == "pending"} == {"BAD400", "NOPE", "DOWN"}
    warned = [ln for ln in lines if "kept pending" in ln]
    assert len(warned) == 3
    assert any("GET /v1/interactions/DOWN/transcript" in ln and "503" in ln for ln in warned)
    assert_clean(fake, lines)


def test_transcript_systemic_errors_still_raise(fake: Fake, fake_url: str) -> None:
    fake.transcripts = {"A": (200, {"utterances": []})}
    fake.token_ttl = -1  # every token rejected: AuthError after the one refresh

    async def go() -> None:
        async with CallMinerClient(cm_settings(fake_url)) as cm:
            await cm.fetch_transcripts(["A", "B"])

    with pytest.raises(AuthError):
        asyncio.run(go())
    fake.token_ttl = 3600.0
    fake.fault_paths, fake.faults = ("/oauth",), [(503, {}, {})] * 10  # token endpoint down
    with pytest.raises(ServerError) as err:
        asyncio.run(go())
    assert "POST /oauth/token" in str(err.value)


def req(iid: str, text: str = "agent: hello\ncustomer: hi") -> EvalRequest:
    return EvalRequest(iid, "qa_compliance", "KV-1", text, {"interaction_id": iid})


def test_evaluate_many_keeps_finished_runs(fake: Fake, served: str, log_lines: Logs) -> None:
    logger, lines = log_lines
    stuck = req("STUCK")
    scripted = {"on": True}

    async def hook(request: Request) -> Response | None:
        if not scripted["on"]:
            return None
        if request.method == "POST":
            text = (await request.json())["input"]["transcript"]
            if "BROKEN" in text:
                return JSONResponse({}, status_code=503)
            if "GARBAGE" in text:
                return JSONResponse([1, 2], status_code=200)
        elif request.url.path == f"/v1/runs/{fake.runs_by_key.get(stuck.idempotency_key)}":
            return JSONResponse({"id": "x", "status": "running"})
        return None

    fake.hook = hook
    requests = [req("A"), req("F", "agent: FAIL"), req("B", "agent: BROKEN"), stuck,
                req("G", "agent: GARBAGE"), req("E", " ")]  # fmt: skip

    async def go() -> EvalBatch:
        settings = smz_settings(served, mode="async", poll_timeout_s=0.3)
        async with SemarizeClient(settings, logger=logger) as smz:
            return await smz.evaluate_many(requests)

    batch = asyncio.run(go())
    assert isinstance(batch, list)
    assert [(o.request.interaction_id, o.status) for o in batch] == [
        ("A", "succeeded"),
        ("F", "failed"),
        ("E", "failed"),
    ]
    reasons = {r.interaction_id: why for r, why in batch.unresolved}
    assert list(reasons) == ["B", "STUCK", "G"]
    assert "HTTP 503" in reasons["B"] and "POST /v1/runs" in reasons["B"]
    assert "still 'running'" in reasons["STUCK"]
    assert "without an id" in reasons["G"]
    assert len([ln for ln in lines if "retried by a later run" in ln]) == 3
    billed = fake.billed
    # next run: the unresolved ones are sent again; STUCK resumes its run, unbilled
    scripted["on"] = False
    again = asyncio.run(go())
    assert [o.request.interaction_id for o in again] == [r.interaction_id for r in requests]
    assert [o.status for o in again] == ["succeeded", "failed", "succeeded", "succeeded",
                                         "succeeded", "failed"]  # fmt: skip
    assert again.unresolved == []
    assert fake.billed == billed + 2  # B and G had never started a run


def test_evaluate_many_auth_error_keeps_completed(fake: Fake, served: str) -> None:
    async def hook(request: Request) -> Response | None:
        if request.method == "POST":
            text = (await request.json())["input"]["transcript"]
            if "REVOKED" in text:
                await asyncio.sleep(0.3)  # the others finish first
                return JSONResponse({"error": {"code": "unauthorized"}}, status_code=401)
            if "LATE" in text:
                await asyncio.sleep(2)
        return None

    fake.hook = hook
    requests = [req("A"), req("R", "agent: REVOKED"), req("F", "agent: FAIL"), req("L", "LATE")]

    async def go() -> None:
        async with SemarizeClient(smz_settings(served)) as smz:
            await smz.evaluate_many(requests)

    t0 = time.monotonic()
    with pytest.raises(EvaluationAborted) as err:
        asyncio.run(go())
    assert time.monotonic() - t0 < 1.5  # LATE was cancelled, not awaited
    assert isinstance(err.value, AuthError) and err.value.status_code == 401
    done = err.value.completed
    assert [(o.request.interaction_id, o.status) for o in done] == [
        ("A", "succeeded"),
        ("F", "failed"),
    ]
    assert [r.interaction_id for r, _ in done.unresolved] == ["R", "L"]
    assert "POST /v1/runs" in str(err.value) and API_KEY not in str(err.value)


# --- 3. sync 504 without a run id --------------------------------------------------------------


def test_sync_504_without_id_resent_same_key(fake: Fake) -> None:
    real = fake.start_run
    keys: list[str | None] = []

    async def hides_id(request: Request) -> Response:
        keys.append(request.headers.get("idempotency-key"))
        response = await real(request)  # the run starts (and is billed) server-side...
        if len(keys) <= 2:  # ...but the first two answers are a bare 504
            return JSONResponse({"error": {"code": "timeout", "message": "slow"}}, 504)
        return response

    fake.start_run = hides_id
    with serve_fake(fake.app()) as url:

        async def go() -> EvalBatch:
            async with SemarizeClient(smz_settings(url, mode="sync")) as smz:
                return await smz.evaluate_many([req("A")])

        batch = asyncio.run(go())
    assert [o.status for o in batch] == ["succeeded"] and batch[0].run_id == "run_1"
    assert len(keys) == 3 and len(set(keys)) == 1 and fake.billed == 1


def test_sync_504_without_id_forever_is_unresolved(fake: Fake, served: str) -> None:
    async def hook(request: Request) -> Response | None:
        if request.method == "POST":
            return JSONResponse({"error": "gateway timeout"}, status_code=504)
        return None

    fake.hook = hook

    async def go() -> EvalBatch:
        settings = smz_settings(served, mode="sync", poll_timeout_s=0.3)
        async with SemarizeClient(settings) as smz:
            return await smz.evaluate_many([req("A")])

    t0 = time.monotonic()
    batch = asyncio.run(go())
    assert time.monotonic() - t0 < 2
    assert list(batch) == [] and "504 without a run id" in batch.unresolved[0][1]
    posts = [e for e in fake.log if e[1] == "POST"]
    assert 2 <= len(posts) <= 12


# --- 4. offset pagination ----------------------------------------------------------------------


def test_same_page_twice_is_legal_live_data(fake: Fake, fake_url: str) -> None:
    # limit capped at 1 and one insert in front after page 1: page 2 repeats page 1
    fake.records, fake.style, fake.page_cap, fake.drift_after_page = recs(3), "offset", 1, 1

    async def go() -> list[Any]:
        async with CallMinerClient(cm_settings(fake_url, page_size=10)) as cm:
            return await cm.list_interactions(WINDOW)

    assert [r["id"] for r in asyncio.run(go())] == [r["id"] for r in recs(3)]


def test_offset_ignored_per_echo_fails_at_once(fake: Fake) -> None:
    fake.records, fake.style = recs(6), "offset"
    real = fake.listing

    async def ignores_offset(request: Any) -> Any:
        request.scope["query_string"] = request.url.query.replace("offset=", "x=").encode()
        return await real(request)

    fake.listing = ignores_offset
    with serve_fake(fake.app()) as url:

        async def go() -> None:
            async with CallMinerClient(cm_settings(url, page_size=2)) as cm:
                await cm.list_interactions(WINDOW)

        with pytest.raises(DataError) as err:
            asyncio.run(go())
    assert "ignores offset" in str(err.value)
    assert len([e for e in fake.log if e[2] == "/v1/interactions"]) == 2


# --- 5. Retry-After cap --------------------------------------------------------------------------


def test_retry_after_cap_is_300_and_warns(fake: Fake, fake_url: str, log_lines: Logs) -> None:
    assert lib_settings.RETRY_AFTER_CAP_S == 300 and RetryPolicy().retry_after_cap_s == 300
    logger, lines = log_lines
    fake.records = recs(1)
    fake.faults = [(429, {"Retry-After": "120"}, {})]
    retry = RetryPolicy(max_attempts=3, backoff_base_s=0.01, retry_after_cap_s=0.3)

    async def go() -> list[Any]:
        async with CallMinerClient(cm_settings(fake_url, retry=retry), logger=logger) as cm:
            return await cm.list_interactions(WINDOW)

    t0 = time.monotonic()
    assert len(asyncio.run(go())) == 1
    assert 0.25 <= time.monotonic() - t0 < 2
    warned = [ln for ln in lines if "Retry-After" in ln]
    assert len(warned) == 1 and "GET /v1/interactions" in warned[0] and "120" in warned[0]


# --- 6. odd brick shapes --------------------------------------------------------------------------


def test_odd_bricks_and_float_token_count(fake: Fake, served: str, log_lines: Logs) -> None:
    logger, lines = log_lines
    run = {
        "id": "run_odd",
        "status": "succeeded",
        "kit_version": "KV-1",
        "bricks": {
            "as_list": [True, 2],
            "bad_evidence": {"value": 1, "evidence": [{"quote": "q"}, "junk", 3]},
            "single": {"value": "x", "evidence": {"quote": "one"}},
        },
        "usage": {"input_tokens": 1834.0},
    }

    async def hook(request: Request) -> Response | None:
        return JSONResponse(run) if request.method == "POST" else None

    fake.hook = hook

    async def go() -> EvalBatch:
        async with SemarizeClient(smz_settings(served), logger=logger) as smz:
            return await smz.evaluate_many([req("A")])

    (out,) = asyncio.run(go())
    assert out.input_tokens == 1834 and isinstance(out.input_tokens, int)
    assert out.bricks["as_list"].value == [True, 2]
    assert out.bricks["bad_evidence"].evidence == ({"quote": "q"},)
    assert out.bricks["single"].evidence == ({"quote": "one"},)
    assert any("dropped 2 item" in ln for ln in lines)
    assert json.dumps(out.bricks["as_list"].value) == "[true, 2]"


def test_parse_brick_shapes() -> None:
    assert parse_brick([1, "a"]).value == [1, "a"]
    assert parse_brick("s").value == "s" and parse_brick(None).value is None
    assert parse_brick({"value": 1, "evidence": "nope"}).evidence == ()
    assert parse_brick({"value": 1, "confidence": True}).confidence is None
