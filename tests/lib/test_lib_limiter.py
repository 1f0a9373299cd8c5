"""The send ledger: a step that takes an API's pool over in a new process inherits the window."""

from __future__ import annotations

import asyncio
import time
import uuid

from callminer_assets.lib.http import SlidingWindowLimiter


async def _send(limiter: SlidingWindowLimiter, n: int) -> list[float]:
    times = []
    for _ in range(n):
        slot = await limiter.acquire()
        limiter.sent(slot, time.monotonic())
        times.append(time.monotonic())
    return times


def test_a_new_limiter_for_the_same_api_waits_out_the_previous_ones_sends() -> None:
    api = f"http://ledger-test-{uuid.uuid4().hex}"  # its own ledger file
    first = SlidingWindowLimiter(5, api=api)  # stands for the step that held the pool
    asyncio.run(_send(first, 5))
    start = time.monotonic()
    second = SlidingWindowLimiter(5, api=api)  # the next process: an empty window of its own
    asyncio.run(_send(second, 1))
    # its first send had to wait until the first limiter's burst left the one-second window
    assert time.monotonic() - start >= 0.8


def test_without_an_api_a_limiter_keeps_only_its_own_window() -> None:
    api_less = SlidingWindowLimiter(5)
    asyncio.run(_send(api_less, 5))
    other = SlidingWindowLimiter(5)
    start = time.monotonic()
    asyncio.run(_send(other, 1))
    assert time.monotonic() - start < 0.5
