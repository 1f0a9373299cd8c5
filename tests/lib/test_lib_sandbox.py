"""The clients against the project's sandbox over real loopback HTTP, faults switched on.

Each test asserts what came back (exact id sets, no duplicates, statuses) and what was
sent (the sandbox's request log: token counts, retries, requests per second).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime
from typing import Any

import pytest
from conftest import FAST_RETRY

from callminer_assets.lib.callminer import CallMinerClient
from callminer_assets.lib.errors import AuthError, ServerError
from callminer_assets.lib.models import EvalRequest, TranscriptFetch, Window
from callminer_assets.lib.semarize import SemarizeClient
from callminer_assets.lib.settings import CallMinerSettings, SemarizeSettings
from callminer_assets.sandbox.app import SandboxConfig
from callminer_assets.sandbox.generator import transcript_text
from callminer_assets.sandbox.server import SandboxServer, serve

DAY = date(2025, 1, 15)
WINDOW = Window.for_day(DAY)
SECRET = "cs-7Hq2-secret"
KEY = "smz_test_k3y-9x"


def config(**kw: Any) -> SandboxConfig:
    base: dict[str, Any] = {
        "per_day": 40,
        "client_secret": SECRET,
        "semarize_key": KEY,
        "pending_fraction": 0.0,
        "retry_after_s": 1,
        "max_page_size": 7,
    }
    base.update(kw)
    return SandboxConfig(**base)


@pytest.fixture
def sandbox(request: pytest.FixtureRequest) -> Iterator[SandboxServer]:
    marker = request.node.get_closest_marker("sandbox")
    with serve(config(**(marker.kwargs if marker else {}))) as server:
        yield server


def cm(server: SandboxServer, logger: logging.Logger | None = None, **kw: Any) -> CallMinerClient:
    kw.setdefault("requests_per_second", 500.0)
    kw.setdefault("retry", FAST_RETRY)
    kw.setdefault("page_size", 10)
    settings = CallMinerSettings(
        auth_url=server.url, api_url=server.url, client_id="sandbox", client_secret=SECRET, **kw
    )
    return CallMinerClient(settings, logger=logger)


def smz(server: SandboxServer, **kw: Any) -> SemarizeClient:
    kw.setdefault("requests_per_second", 500.0)
    kw.setdefault("retry", FAST_RETRY)
    kw.setdefault("poll_initial_s", 0.01)
    kw.setdefault("poll_max_s", 0.05)
    return SemarizeClient(SemarizeSettings(api_url=server.url, api_key=KEY, **kw))


def expected_ids(server: SandboxServer, hostile: bool = False) -> list[str]:
    start, end = WINDOW.start, WINDOW.end
    return [
        rec["id"]
        for t, rec in server.state.generator.day(DAY, hostile)[0]
        if t is not None and start <= t < end
    ]


def ids_of(records: list[Any]) -> list[str]:
    return [r["id"] for r in records]


async def list_and_fetch(client: CallMinerClient) -> tuple[list[Any], list[TranscriptFetch]]:
    async with client:
        records = await client.list_interactions(WINDOW)
        fetched = await client.fetch_transcripts(r["id"] for r in records)
        return records, fetched


# --- listing --------------------------------------------------------------------------------


# A bare array has no key: one case for it, not three.
@pytest.mark.parametrize(
    ("pagination", "array_key"),
    [(p, k) for p in ("token", "offset") for k in ("interactions", "items", "data")]
    + [("bare", "interactions")],
)
def test_listing_each_style_and_key(pagination: str, array_key: str) -> None:
    with serve(config(pagination=pagination, array_key=array_key, short_page_rate=0.3)) as srv:
        records = asyncio.run(_list(srv))
        assert ids_of(records) == expected_ids(srv)
        pages = [e for e in srv.state.request_log if e["path"] == "/v1/interactions"]
        assert len(pages) >= len(records) // 7  # server cap 7 < page_size 10 was honoured
        assert srv.state.tokens_issued == 1


async def _list(srv: SandboxServer, **kw: Any) -> list[Any]:
    async with cm(srv, **kw) as client:
        return await client.list_interactions(WINDOW)


@pytest.mark.parametrize("pagination", ["token", "offset", "bare"])
def test_page_drift_duplicates_removed(pagination: str) -> None:
    with serve(config(pagination=pagination, drift_rate=0.3)) as srv:
        records = asyncio.run(_list(srv))
        assert ids_of(records) == expected_ids(srv)


def test_hostile_records_kept_raw_for_quarantine() -> None:
    with serve(config(faults="hostile", fault_rate=0.0, drift_rate=0.2)) as srv:
        records = asyncio.run(_list(srv))
        sent = [rec for t, rec in srv.state.generator.day(DAY, True)[0]]
        good = [r for r in records if isinstance(r, dict) and isinstance(r.get("id"), str)]
        assert len({r["id"] for r in good}) == len(good)  # no duplicate ids
        assert len(records) == len(sent)  # malformed records kept, nothing dropped
        assert all(r in sent for r in records)


# --- auth -----------------------------------------------------------------------------------


# 2 s tokens are used for 1.5 s (margin 25 %): a listing must take over 0.5 s between reading
# its token and reaching the server to arrive expired, which a busy CI worker does not reach
# (at 0.6 s tokens the margin was 0.15 s, and a loaded machine crossed it).
@pytest.mark.sandbox(token_ttl=2.0)
def test_short_token_ttl_refreshed_before_expiry(sandbox: SandboxServer) -> None:
    async def go() -> None:
        async with cm(sandbox, page_size=20) as client:
            t0 = time.monotonic()
            while time.monotonic() - t0 < 4.5:
                await client.list_interactions(WINDOW)
                await asyncio.sleep(0.05)

    asyncio.run(go())
    assert 3 <= sandbox.state.tokens_issued <= 4
    assert 401 not in sandbox.state.statuses("/v1/")


def test_token_reused_and_early_invalid_token(sandbox: SandboxServer) -> None:
    st = sandbox.state
    records, fetched = asyncio.run(list_and_fetch(cm(sandbox)))
    assert st.tokens_issued == 1 and len(fetched) == len(records) == 40
    # an early invalid_token: one refresh, the request repeated, nothing lost
    st.reset_log()
    st.inject("invalid_token", times=1, path="/v1/interactions")
    records2 = asyncio.run(_list(sandbox))
    assert ids_of(records2) == ids_of(records)
    assert st.statuses("/v1/interactions").count(401) == 1
    assert st.tokens_issued == 3  # one per client + one refresh


def test_revoked_tokens_one_refresh_no_stampede(sandbox: SandboxServer) -> None:
    st = sandbox.state

    async def go() -> list[TranscriptFetch]:
        async with cm(sandbox, concurrency=8) as client:
            records = await client.list_interactions(WINDOW)
            st.revoke_tokens()
            return await client.fetch_transcripts(r["id"] for r in records)

    fetched = asyncio.run(go())
    assert all(f.status == "available" for f in fetched) and len(fetched) == 40
    assert st.tokens_issued == 2


def test_invalid_client_fails_fast(sandbox: SandboxServer) -> None:
    settings = CallMinerSettings(
        auth_url=sandbox.url, api_url=sandbox.url, client_id="sandbox", client_secret="nope"
    )

    async def go() -> None:
        async with CallMinerClient(settings) as client:
            await client.fetch_transcripts(["INT-20250115-00001", "INT-20250115-00002"])

    with pytest.raises(AuthError) as err:
        asyncio.run(go())
    assert sandbox.state.statuses() == [401]  # one token request, never retried
    assert "invalid_client" in str(err.value) and "nope" not in str(err.value)


# --- transport faults -------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["429", "429-date", "500", "502", "503", "504", "drop", "slow"])
def test_each_transport_fault_retried(sandbox: SandboxServer, kind: str) -> None:
    st = sandbox.state
    times = 1 if kind.startswith("429") else 2
    st.inject(kind, times=times, path="/v1/interactions")
    t0 = time.monotonic()
    records = asyncio.run(_list(sandbox, timeout_s=0.25))
    elapsed = time.monotonic() - t0
    assert ids_of(records) == expected_ids(sandbox)
    faulted = [e for e in st.request_log if e["fault"] == kind]
    assert len(faulted) == times
    if kind.startswith("429"):
        assert elapsed >= 1.0  # Retry-After honoured (seconds or HTTP date)


def test_429_pauses_the_whole_client(sandbox: SandboxServer) -> None:
    st = sandbox.state

    async def go() -> None:
        async with cm(sandbox, concurrency=2) as client:
            records = await client.list_interactions(WINDOW)
            st.inject("429", times=1, path="/v1/interactions/")
            await client.fetch_transcripts(r["id"] for r in records)

    asyncio.run(go())
    log = st.request_log
    t429 = next(e["time"] for e in log if e["fault"] == "429")
    after = [e for e in log if e["time"] > t429 and e["path"].endswith("/transcript")]
    early = [e for e in after if e["time"] - t429 < 0.95]
    assert len(early) <= 1  # only the one already in flight; everyone else waited
    assert len(after) >= 40


def test_mixed_transport_faults_converge(log_lines: tuple[logging.Logger, list[str]]) -> None:
    logger, lines = log_lines
    with serve(config(pagination="offset")) as clean:
        ref_records, ref_fetched = asyncio.run(list_and_fetch(cm(clean)))
    kinds = ("429", "500", "502", "503", "504", "drop", "slow", "invalid_token")
    faulty = config(pagination="offset", faults="transport", fault_rate=0.3, fault_kinds=kinds,
                    drift_rate=0.2, token_ttl=1.0, slow_ms=400, retry_after_s=0)  # fmt: skip
    with serve(faulty) as srv:
        records, fetched = asyncio.run(list_and_fetch(_patient(srv, logger)))
        assert ids_of(records) == ids_of(ref_records)
        assert {f.interaction_id: f.payload for f in fetched} == {
            f.interaction_id: f.payload for f in ref_fetched
        }
        faults = {e["fault"] for e in srv.state.request_log if e["fault"]}
        assert {"drop", "invalid_token"} <= faults
        assert lines
        assert not [ln for ln in lines if SECRET in ln or any(t in ln for t in srv.state.tokens)]


def _patient(srv: SandboxServer, logger: logging.Logger) -> CallMinerClient:
    from callminer_assets.lib.settings import RetryPolicy

    retry = RetryPolicy(max_attempts=10, backoff_base_s=0.01, backoff_max_s=0.05)
    return cm(srv, logger, timeout_s=0.3, retry=retry)


def test_retry_bound_clear_error_without_secrets(
    sandbox: SandboxServer, log_lines: tuple[logging.Logger, list[str]]
) -> None:
    logger, lines = log_lines
    st = sandbox.state
    st.inject("503", times=10, path="/v1/interactions/")
    client = cm(sandbox, logger)

    async def go() -> list[TranscriptFetch]:
        async with client:
            return await client.fetch_transcripts(["INT-20250115-00001"])

    # one transcript's exhausted retries: kept pending for a later run, with a clear warning
    assert asyncio.run(go()) == [TranscriptFetch("INT-20250115-00001", "pending")]
    warned = [ln for ln in lines if "kept pending" in ln]
    assert warned == [
        "transcript kept pending for a later run: HTTP 503: server error after 4 attempts"
        " (GET /v1/interactions/INT-20250115-00001/transcript)"
    ]
    token = client.tokens._token or "?"
    for text in lines:
        assert SECRET not in text and token not in text
    assert len([ln for ln in lines if "retrying" in ln]) == 3

    # a single fetch still raises the typed error
    st.inject("503", times=10, path="/v1/interactions/")

    async def one() -> None:
        async with cm(sandbox, logger) as c:
            await c.fetch_transcript("INT-20250115-00001")

    with pytest.raises(ServerError) as err:
        asyncio.run(one())
    assert "server error after 4 attempts" in str(err.value)


# --- transcripts ------------------------------------------------------------------------------


@pytest.mark.sandbox(pending_fraction=1.0, pending_fetches=1, pending_style="mixed")
def test_pending_transcripts_then_available(sandbox: SandboxServer) -> None:
    async def go() -> tuple[list[TranscriptFetch], list[TranscriptFetch]]:
        async with cm(sandbox) as client:
            records = await client.list_interactions(WINDOW)
            ids = [r["id"] for r in records]
            return await client.fetch_transcripts(ids), await client.fetch_transcripts(ids)

    first, second = asyncio.run(go())
    assert {f.status for f in first} == {"pending"} and all(f.payload is None for f in first)
    assert {f.status for f in second} == {"available"}
    assert all(f.payload and "utterances" in f.payload for f in second)
    assert {404, 202, 200} <= set(sandbox.state.statuses("/v1/interactions/"))


# --- Semarize ---------------------------------------------------------------------------------


def eval_requests(srv: SandboxServer, n: int = 6) -> list[EvalRequest]:
    _, fetched = asyncio.run(list_and_fetch(cm(srv)))
    out = []
    for f in fetched[:n]:
        assert f.payload is not None
        text = transcript_text(f.payload)
        md = {"interaction_id": f.interaction_id, "channel": "voice", "campaign": "inbound_care"}
        out.append(EvalRequest(f.interaction_id, "qa_compliance", "TCPA-v2026.1", text, md))
    return out


@pytest.mark.parametrize(
    "mode,cfg",
    [
        ("sync", {}),
        ("sync", {"sync_timeout_rate": 1.0, "async_polls": 2}),
        ("async", {"async_polls": 3}),
    ],
)
def test_semarize_modes_and_idempotency(mode: str, cfg: dict[str, Any]) -> None:
    with serve(config(**cfg)) as srv:
        st = srv.state
        reqs = eval_requests(srv)

        async def go() -> list[Any]:
            async with smz(srv, mode=mode) as client:
                return await client.evaluate_many(reqs)

        out = asyncio.run(go())
        assert [o.request for o in out] == reqs
        assert all(o.status == "succeeded" and o.run_id for o in out)
        assert all(o.kit_version == "TCPA-v2026.1" and o.input_tokens for o in out)
        assert "compliance_score" in out[0].bricks
        polled = [e for e in st.request_log if e["path"].startswith("/v1/runs/")]
        assert bool(polled) == (mode == "async" or "sync_timeout_rate" in cfg)
        assert st.runs_started == len(reqs)
        # re-sending (a retry, a re-materialisation) with the same keys bills nothing new
        st.inject("503", times=1, path="/v1/runs")
        again = asyncio.run(go())
        assert st.runs_started == len(reqs)
        assert all(st.billed(r.transcript_text, r.kit_code) == 1 for r in reqs)
        assert [(o.run_id, o.bricks) for o in again] == [(o.run_id, o.bricks) for o in out]


@pytest.mark.sandbox(failed_run_rate=1.0)
def test_semarize_failed_and_refused(sandbox: SandboxServer) -> None:
    reqs = eval_requests(sandbox, 2)
    empty = EvalRequest("INT-x", "qa_compliance", "TCPA-v2026.1", "   ", {})

    async def go() -> list[Any]:
        async with smz(sandbox, mode="async") as client:
            return await client.evaluate_many([*reqs, empty])

    out = asyncio.run(go())
    assert [o.status for o in out] == ["failed"] * 3
    assert out[0].error == "evaluation_failed: the model could not evaluate" and out[0].run_id
    assert out[2].error == "empty_transcript: the transcript is empty" and out[2].run_id is None
    assert sandbox.state.statuses("/v1/runs").count(422) == 1  # refused once, not retried


def test_semarize_bad_key(sandbox: SandboxServer) -> None:
    settings = SemarizeSettings(api_url=sandbox.url, api_key="smz_test_wrong")
    req = EvalRequest("INT-1", "qa_compliance", "TCPA-v2026.1", "agent: hi", {})

    async def go() -> None:
        async with SemarizeClient(settings) as client:
            await client.evaluate_many([req])

    with pytest.raises(AuthError) as err:
        asyncio.run(go())
    assert "smz_test_wrong" not in str(err.value) and sandbox.state.statuses() == [401]


# --- rate -------------------------------------------------------------------------------------


@pytest.mark.sandbox(rate_limit=20, per_day=60, latency_ms=5)
def test_never_above_configured_rate(sandbox: SandboxServer) -> None:
    records, fetched = asyncio.run(
        list_and_fetch(cm(sandbox, requests_per_second=20, concurrency=8, page_size=100))
    )
    assert len(fetched) == len(records) == 60
    log = sandbox.state.request_log
    assert not [e for e in log if e["fault"] == "rate_limit"]
    assert sandbox.state.busiest_second() <= 20  # token request included
    # and the limiter is not idle: ~70 requests at 20/s take ~3.x s, not much more
    span = max(e["time"] for e in log) - min(e["time"] for e in log)
    assert span < 4.5


def test_window_is_iso_utc(sandbox: SandboxServer) -> None:
    w = Window(datetime(2025, 1, 15, tzinfo=UTC), datetime(2025, 1, 15, 12, tzinfo=UTC))
    got = asyncio.run(_list_window(sandbox, w))
    assert 0 < len(got) < 40


async def _list_window(srv: SandboxServer, w: Window) -> list[Any]:
    async with cm(srv) as client:
        return await client.list_interactions(w)
