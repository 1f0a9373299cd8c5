"""Bearer tokens are valid when a request leaves, not when it queued (issue 11, item 2)."""

from __future__ import annotations

import asyncio
import time

from conftest import cm_settings
from lib_fake_server import Fake
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from callminer_assets.lib.callminer import CallMinerClient
from callminer_assets.lib.models import TranscriptFetch

BODY = {"interactionId": "x", "format": "plain", "utterances": []}


async def _until_issued(fake: Fake, n: int) -> None:
    deadline = time.monotonic() + 5
    while fake.tokens_issued < n and time.monotonic() < deadline:
        await asyncio.sleep(0.01)


def test_401_for_a_superseded_token_is_sent_again_not_fatal(fake: Fake, fake_url: str) -> None:
    """Y's token is refreshed away twice by others while Y is in flight: Y never fails.

    Z: tok-1 rejected -> refreshes (tok-2). W: tok-1 rejected after tok-2 exists -> sends
    tok-2, rejected -> refreshes (tok-3). Y: tok-1 rejected after tok-2, tok-2 rejected after
    tok-3: both are older than the current token, so Y sends again without refreshing.
    Before the fix Y failed with "token rejected again after a refresh".
    """
    fake.transcripts = {i: (200, BODY) for i in ("Y", "Z", "W")}

    async def hook(request: Request) -> Response | None:
        path = request.url.path
        if not path.endswith("/transcript"):
            return None
        iid = path.split("/")[3]
        number = request.headers.get("authorization", "").split("-")[1]
        rejected = JSONResponse({"error": "invalid_token"}, status_code=401)
        if number == "1":
            if iid != "Z":
                await _until_issued(fake, 2)
            return rejected
        if number == "2" and iid == "W":
            return rejected
        if number == "2" and iid == "Y":
            await _until_issued(fake, 3)
            return rejected
        return None

    fake.hook = hook

    async def go() -> list[TranscriptFetch]:
        async with CallMinerClient(cm_settings(fake_url, concurrency=3)) as cm:
            return await cm.fetch_transcripts(["Y", "Z", "W"])

    got = asyncio.run(go())
    assert [f.status for f in got] == ["available"] * 3
    assert fake.tokens_issued == 3  # Y's two 401s caused no refresh of their own


def test_token_taken_after_the_rate_limit_pause(fake: Fake, fake_url: str) -> None:
    """A 429 pause longer than the token's life: every request still leaves with a live one.

    Concurrency 4, 1-second tokens, ``Retry-After: 2``: the queued requests would all hold an
    expired token if they took it before waiting.
    """
    fake.token_ttl = 1.0
    fake.transcripts = {f"T{i}": (200, BODY) for i in range(8)}
    fake.faults = [(429, {"Retry-After": "2"}, {"error": "rate_limited"})]
    fake.fault_paths = ("/v1/interactions/",)

    async def go() -> list[TranscriptFetch]:
        async with CallMinerClient(cm_settings(fake_url, concurrency=4)) as cm:
            return await cm.fetch_transcripts([f"T{i}" for i in range(8)])

    got = asyncio.run(go())
    assert [f.status for f in got] == ["available"] * 8
    assert [e for e in fake.log if e[3] == 401] == []  # no request left with an expired token
    assert fake.tokens_issued == 2  # one refresh after the pause, shared by all of them
