"""Client behaviour against a scripted contract server over loopback HTTP.

The scripted server stages exact cases (this fault on the next request, that pagination
style) so each test asserts the precise requests sent and records returned.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, date, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import pytest
from conftest import cm_settings, smz_settings
from lib_fake_server import API_KEY, SECRET, Fake
from lib_fake_server import serve as serve_fake
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from callminer_assets.lib.callminer import CallMinerClient
from callminer_assets.lib.errors import (
    AuthError,
    DataError,
    RateLimitError,
    RequestRejected,
    ServerError,
    TransportError,
)
from callminer_assets.lib.http import parse_retry_after
from callminer_assets.lib.models import EvalRequest, Window
from callminer_assets.lib.semarize import SemarizeClient
from callminer_assets.lib.settings import CallMinerSettings, RetryPolicy, SemarizeSettings
from callminer_assets.lib.source import InteractionSource

WINDOW = Window.for_day(date(2025, 1, 15))


def recs(n: int) -> list[dict[str, Any]]:
    return [{"id": f"INT-{i:04d}", "channel": "voice"} for i in range(n)]


def listing(url: str, **kw: Any) -> list[Any]:
    async def go() -> list[Any]:
        async with CallMinerClient(cm_settings(url, **kw)) as cm:
            return await cm.list_interactions(WINDOW)

    return asyncio.run(go())


def calls(fake: Fake, path: str) -> list[tuple[float, str, str, int]]:
    return [e for e in fake.log if e[2] == path]


# --- pagination ---------------------------------------------------------------------------


# A bare array has no key: one case for it, not three.
STYLE_KEYS = [
    (style, key)
    for style in ("token", "offset", "single")
    for key in ("interactions", "items", "data")
] + [("bare", "interactions")]


@pytest.mark.parametrize(("style", "key"), STYLE_KEYS)
def test_each_pagination_style_and_array_key(
    fake: Fake, fake_url: str, style: str, key: str
) -> None:
    fake.records, fake.style, fake.array_key = recs(23), style, key
    got = listing(fake_url, page_size=5)
    # "single" (no markers at all): a full page is never taken as the last (decision 0011)
    assert [r["id"] for r in got] == [r["id"] for r in recs(23)]
    pages = calls(fake, "/v1/interactions")
    # token/offset-with-total stop at the end; a bare array needs one empty page to stop
    assert len(pages) == (6 if style == "bare" else 5)
    assert fake.tokens_issued == 1


def _scripted_listing(fake: Fake, pages: list[dict[str, Any]]) -> None:
    """Answer the n-th listing request with ``pages[n]`` (the last one from then on)."""
    served = 0

    async def hook(request: Request) -> Response | None:
        nonlocal served
        if request.url.path != "/v1/interactions":
            return None
        served += 1
        return JSONResponse(pages[min(served, len(pages)) - 1])

    fake.hook = hook


def test_unmarked_full_page_continues_by_offset_until_empty(fake: Fake, fake_url: str) -> None:
    fake.records, fake.style = recs(10), "single"  # honours offset, never says so
    got = listing(fake_url, page_size=5)
    assert [r["id"] for r in got] == [r["id"] for r in recs(10)]
    assert len(calls(fake, "/v1/interactions")) == 3  # 5 + 5 + the empty page that ends it


def test_unmarked_full_page_on_a_server_ignoring_offset_fails_loudly(
    fake: Fake, fake_url: str
) -> None:
    _scripted_listing(fake, [{"items": recs(5)}])  # the same unmarked page, whatever is asked
    with pytest.raises(DataError) as err:
        listing(fake_url, page_size=5)
    assert "does not page by offset" in str(err.value)
    assert "GET /v1/interactions" in str(err.value)
    assert len(calls(fake, "/v1/interactions")) == 2


def test_unmarked_full_page_after_token_pages_fails_loudly(fake: Fake, fake_url: str) -> None:
    first, second = recs(10)[:5], recs(10)[5:]
    _scripted_listing(fake, [{"interactions": first, "nextPage": "c1"}, {"interactions": second}])
    with pytest.raises(DataError) as err:
        listing(fake_url, page_size=5)
    assert "page 2 is full (5 records) but has no nextPage" in str(err.value)
    assert "GET /v1/interactions" in str(err.value)


def test_explicit_end_markers_end_a_full_page(fake: Fake, fake_url: str) -> None:
    """``nextPage: null`` and ``total`` are markers: a full last page ends the listing."""
    fake.records, fake.style = recs(10), "token"
    assert len(listing(fake_url, page_size=5)) == 10
    assert len(calls(fake, "/v1/interactions")) == 2


def test_server_page_cap_and_short_pages(fake: Fake, fake_url: str) -> None:
    fake.records, fake.style, fake.page_cap, fake.short_every = recs(40), "offset", 7, 2
    got = listing(fake_url, page_size=100)
    assert [r["id"] for r in got] == [r["id"] for r in recs(40)]
    assert len({r["id"] for r in got}) == 40


@pytest.mark.parametrize("style", ["offset", "bare"])
def test_page_drift_duplicates_merged(fake: Fake, fake_url: str, style: str) -> None:
    # after page 1 a record lands in front: page 2 starts with INT-0004 again
    fake.records, fake.style, fake.drift_after_page = recs(12), style, 1
    got = listing(fake_url, page_size=5)
    assert [r["id"] for r in got] == [r["id"] for r in recs(12)]


def test_drift_last_version_wins_and_bad_records_kept(fake: Fake, fake_url: str) -> None:
    fake.style = "offset"
    fake.records = [
        {"id": "A", "v": 1},
        "not an object",
        {"channel": "voice"},
        {"id": "B"},
        {"id": "A", "v": 2},
        {"channel": "voice"},
        None,
    ]
    got = listing(fake_url, page_size=2)
    assert got == [{"id": "A", "v": 2}, "not an object", {"channel": "voice"}, {"id": "B"},
                   {"channel": "voice"}, None]  # fmt: skip


def test_listing_4xx_fails_clearly(fake: Fake, fake_url: str) -> None:
    fake.records = recs(3)
    fake.faults = [(400, {}, {"error": "bad_request", "message": "bad date"})]
    with pytest.raises(RequestRejected) as err:
        listing(fake_url)
    assert "GET /v1/interactions" in str(err.value) and "?" not in str(err.value)


# --- auth -----------------------------------------------------------------------------------


def test_token_reused_across_requests(fake: Fake, fake_url: str) -> None:
    fake.records, fake.style = recs(30), "token"
    listing(fake_url, page_size=3)
    assert fake.tokens_issued == 1
    assert len(calls(fake, "/v1/interactions")) == 10


def test_early_invalid_token_refreshes_once_and_repeats(fake: Fake, fake_url: str) -> None:
    fake.records, fake.style = recs(4), "token"

    async def go() -> list[Any]:
        async with CallMinerClient(cm_settings(fake_url, page_size=2, concurrency=4)) as cm:
            first = await cm.list_interactions(WINDOW)
            fake.reject_tokens.add(cm.tokens._token or "")  # server revokes it early
            # many concurrent requests hit 401 at once: one refresh, not a stampede
            await asyncio.gather(*(cm.fetch_transcripts([f"INT-{i:04d}"]) for i in range(8)))
            return first

    asyncio.run(go())
    assert fake.tokens_issued == 2
    assert len([e for e in fake.log if e[3] == 401]) >= 1


def test_token_rejected_twice_is_auth_error(fake: Fake, fake_url: str) -> None:
    fake.records = recs(2)
    fake.token_ttl = -1  # every token is already expired on the server
    with pytest.raises(AuthError) as err:
        listing(fake_url)
    assert fake.tokens_issued == 2
    assert "GET /v1/interactions" in str(err.value)


def test_invalid_client_fails_fast_without_retry_or_secret(fake: Fake, fake_url: str) -> None:
    fake.echo_secret = True  # a hostile server echoing the secret back
    fake.records = recs(20)
    settings = CallMinerSettings(
        auth_url=fake_url, api_url=fake_url, client_id="cid", client_secret="wrong-" + SECRET
    )

    async def go() -> None:
        async with CallMinerClient(settings) as cm:
            await asyncio.gather(*(cm.fetch_transcript(f"X{i}") for i in range(5)))

    t0 = time.monotonic()
    with pytest.raises(AuthError) as err:
        asyncio.run(go())
    assert time.monotonic() - t0 < 2
    assert len(calls(fake, "/oauth/token")) == 1  # no retry, no stampede
    assert "invalid_client" in str(err.value) and "POST /oauth/token" in str(err.value)
    assert SECRET not in str(err.value) and SECRET not in repr(settings)


# --- faults ---------------------------------------------------------------------------------


def test_5xx_and_drops_retried(fake: Fake, fake_url: str) -> None:
    fake.records, fake.style = recs(6), "token"
    fake.faults = [(503, {}, {}), "drop", (500, {}, {})]
    got = listing(fake_url, page_size=3)
    assert len(got) == 6
    assert [e[3] for e in calls(fake, "/v1/interactions")] == [503, 200, 500, 200, 200]


def test_timeout_retried(fake: Fake, fake_url: str) -> None:
    fake.records, fake.slow_s = recs(2), 1.0
    fake.faults = ["slow"]
    got = listing(fake_url, timeout_s=0.3)
    assert len(got) == 2


def test_retry_bound_gives_clear_error_without_token(
    fake: Fake, fake_url: str, log_lines: tuple[logging.Logger, list[str]]
) -> None:
    logger, lines = log_lines
    fake.records = recs(2)
    fake.faults = [(503, {}, {})] * 10

    async def go() -> None:
        async with CallMinerClient(cm_settings(fake_url), logger=logger) as cm:
            await cm.list_interactions(WINDOW)

    with pytest.raises(ServerError) as err:
        asyncio.run(go())
    msg = str(err.value)
    assert msg == "HTTP 503: server error after 4 attempts (GET /v1/interactions)"
    assert "tok-" not in msg and err.value.__cause__ is None
    assert lines and not [ln for ln in lines if "tok-" in ln or SECRET in ln]


def test_drops_exhausted_is_transport_error(fake: Fake, fake_url: str) -> None:
    fake.faults, fake.fault_paths = ["drop"] * 10, ("/oauth",)
    with pytest.raises(TransportError) as err:
        listing(fake_url)
    assert "POST /oauth/token" in str(err.value)


def test_429_http_date_and_bound(fake: Fake, fake_url: str) -> None:
    fake.records = recs(1)
    # HTTP dates have whole seconds: "now + 2 s" is 1..2 s away once formatted
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=2), usegmt=True)
    fake.faults = [(429, {"Retry-After": when}, {})]
    t0 = time.monotonic()
    assert len(listing(fake_url)) == 1
    assert time.monotonic() - t0 >= 0.9
    fake.faults = [(429, {"Retry-After": "0"}, {})] * 10
    with pytest.raises(RateLimitError):
        listing(fake_url)


def test_parse_retry_after() -> None:
    assert parse_retry_after("3", cap_s=10) == 3
    assert parse_retry_after("999", cap_s=10) == 10
    assert parse_retry_after("-5", cap_s=10) == 0
    assert parse_retry_after("soon", cap_s=10) is None
    assert parse_retry_after(None, cap_s=10) is None
    past = format_datetime(datetime.now(UTC) - timedelta(hours=1), usegmt=True)
    assert parse_retry_after(past, cap_s=10) == 0
    future = format_datetime(datetime.now(UTC) + timedelta(seconds=5), usegmt=True)
    assert 4 <= (parse_retry_after(future, cap_s=10) or 0) <= 6


# --- transcripts ----------------------------------------------------------------------------


def test_transcripts_available_and_pending(fake: Fake, fake_url: str) -> None:
    utt = {"interactionId": "A", "format": "ovts", "utterances": [{"text": "hi"}]}
    fake.transcripts = {
        "A": (200, utt),
        "B": (202, {"status": "processing"}),
        "C": (200, {"status": "processing"}),
        "we/ird?#id": (200, {"utterances": []}),
    }

    async def go() -> list[Any]:
        async with CallMinerClient(cm_settings(fake_url)) as cm:
            assert isinstance(cm, InteractionSource)
            return await cm.fetch_transcripts(["A", "B", "C", "D", "A", "we/ird?#id"])

    got = {t.interaction_id: t for t in asyncio.run(go())}
    assert set(got) == {"A", "B", "C", "D", "we/ird?#id"}
    assert got["A"].status == "available" and got["A"].payload == utt
    assert [got[k].status for k in "BCD"] == ["pending"] * 3
    assert got["we/ird?#id"].status == "available"


# --- Semarize ---------------------------------------------------------------------------------


def req(iid: str, text: str = "agent: hello\ncustomer: hi") -> EvalRequest:
    return EvalRequest(iid, "qa_compliance", "KV-1", text, {"interaction_id": iid})


def evaluate(url: str, requests: list[EvalRequest], **kw: Any) -> list[Any]:
    async def go() -> list[Any]:
        async with SemarizeClient(smz_settings(url, **kw)) as smz:
            return await smz.evaluate_many(requests)

    return asyncio.run(go())


@pytest.mark.parametrize("mode,sync_504", [("sync", False), ("sync", True), ("async", False)])
def test_semarize_modes(fake: Fake, fake_url: str, mode: str, sync_504: bool) -> None:
    fake.sync_504 = sync_504
    out = evaluate(fake_url, [req("A"), req("B", "agent: FAIL"), req("C", "  ")], mode=mode)
    a, b, c = out
    assert a.status == "succeeded" and a.kit_version == "KV-1" and a.input_tokens == 12
    assert a.bricks["score"].value == 0.5 and a.bricks["score"].evidence[0]["utterance_index"] == 0
    assert a.bricks["flag"].value is True and a.bricks["flag"].confidence == 1.0
    assert b.status == "failed" and b.error == "model_error: could not evaluate"
    assert c.status == "failed" and c.error == "empty_transcript: transcript is empty"
    assert fake.billed == 2
    polls = [e for e in fake.log if e[2].startswith("/v1/runs/")]
    assert (len(polls) > 0) == (mode == "async" or sync_504)


def test_semarize_idempotent_resend_and_retry(fake: Fake, fake_url: str) -> None:
    evaluate(fake_url, [req("A")])
    assert fake.billed == 1
    fake.faults = [(503, {}, {}), "drop"]
    again = evaluate(fake_url, [req("A")], mode="async")
    assert again[0].status == "succeeded" and fake.billed == 1


def test_semarize_bad_key(fake: Fake, fake_url: str) -> None:
    settings = SemarizeSettings(api_url=fake_url, api_key="smz_test_wrong", retry=RetryPolicy())

    async def go() -> None:
        async with SemarizeClient(settings) as smz:
            await smz.evaluate_many([req("A")])

    with pytest.raises(AuthError) as err:
        asyncio.run(go())
    assert "POST /v1/runs" in str(err.value) and "smz_test_wrong" not in str(err.value)
    assert API_KEY not in repr(settings)


def test_hostile_pagination_that_never_ends_is_a_data_error(fake: Fake, fake_url: str) -> None:
    from callminer_assets.lib.errors import DataError

    fake.records, fake.style = [{"channel": "voice"}] * 3, "bare"
    real = fake.listing

    async def ignores_offset(request: Any) -> Any:  # always the first page, whatever offset
        request.scope["query_string"] = request.url.query.replace("offset=", "x=").encode()
        return await real(request)

    fake.listing = ignores_offset
    with serve_fake(fake.app()) as url, pytest.raises(DataError) as err:
        listing(url, page_size=2)
    assert "same page" in str(err.value)
