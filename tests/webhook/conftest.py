"""Fixtures: one real listener subprocess per module, and an HTTP client for it."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from webhook_harness import Listener, start_listener, stop_listener


@pytest.fixture(scope="module")
def listener(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Listener]:
    root = tmp_path_factory.mktemp("webhook")
    running = start_listener(root / "inbox.sqlite3", root / "listener.log")
    try:
        yield running
    finally:
        stop_listener(running)


@pytest.fixture
def client(listener: Listener) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=listener.base_url, timeout=10.0) as c:
        yield c
