"""Fixtures for the lib client tests: a scripted fake over real loopback HTTP, fast retries."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
from lib_fake_server import API_KEY, SECRET, Fake, serve

from callminer_assets.lib.settings import CallMinerSettings, RetryPolicy, SemarizeSettings

FAST_RETRY = RetryPolicy(
    max_attempts=4, backoff_base_s=0.01, backoff_max_s=0.05, retry_after_cap_s=2.0
)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "sandbox(**config): SandboxConfig fields for a test")


@pytest.fixture
def fake() -> Fake:
    return Fake()


@pytest.fixture
def fake_url(fake: Fake) -> Iterator[str]:
    with serve(fake.app()) as url:
        yield url


def cm_settings(url: str, **kw: object) -> CallMinerSettings:
    kw.setdefault("requests_per_second", 200.0)
    kw.setdefault("retry", FAST_RETRY)
    return CallMinerSettings(
        auth_url=url,
        api_url=url,
        client_id="cid",
        client_secret=SECRET,
        **kw,  # type: ignore[arg-type]
    )


def smz_settings(url: str, **kw: object) -> SemarizeSettings:
    kw.setdefault("requests_per_second", 200.0)
    kw.setdefault("retry", FAST_RETRY)
    kw.setdefault("poll_initial_s", 0.01)
    kw.setdefault("poll_max_s", 0.05)
    return SemarizeSettings(api_url=url, api_key=API_KEY, **kw)  # type: ignore[arg-type]


class ListHandler(logging.Handler):
    """Collects formatted log lines so tests can search them for secrets."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@pytest.fixture
def log_lines() -> Iterator[tuple[logging.Logger, list[str]]]:
    logger = logging.getLogger("test.lib.client")
    logger.setLevel(logging.DEBUG)
    handler = ListHandler()
    logger.addHandler(handler)
    try:
        yield logger, handler.lines
    finally:
        logger.removeHandler(handler)
