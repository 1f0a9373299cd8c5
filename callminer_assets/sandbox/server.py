"""Ways to run the sandbox: a real loopback uvicorn server, or an in-process ASGI transport.

Tests and the pipeline's "no credentials" mode need the same app either over
real HTTP (to see real transport errors) or embedded (no port, no thread).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from typing import Any

import httpx
import uvicorn
from starlette.applications import Starlette

from callminer_assets.sandbox.app import DroppedConnection, SandboxConfig, SandboxState, create_app


class _HideDrops(logging.Filter):
    """Deliberately dropped connections are not server errors worth a traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not isinstance(exc, DroppedConnection)


def quiet_dropped_connections() -> None:
    """Install the filter once on uvicorn's error logger."""
    log = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, _HideDrops) for f in log.filters):
        log.addFilter(_HideDrops())


class SandboxServer(str):
    """The base URL (a ``str``, so it works wherever a URL does) plus ``.app`` and ``.state``."""

    app: Starlette
    state: SandboxState
    port: int

    def __new__(cls, url: str, app: Starlette, port: int) -> SandboxServer:
        obj = super().__new__(cls, url)
        obj.app = app
        obj.state = app.state.sandbox
        obj.port = port
        return obj

    @property
    def url(self) -> str:
        return str(self)


@contextmanager
def serve(
    config: SandboxConfig | None = None, port: int = 0, log_level: str = "warning"
) -> Iterator[SandboxServer]:
    """Run the sandbox on 127.0.0.1 in a background thread; yields its base URL (+ app, state)."""
    quiet_dropped_connections()
    app = create_app(config or SandboxConfig())
    ucfg = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        log_level=log_level,
        access_log=False,
        lifespan="off",
        timeout_graceful_shutdown=2,
    )
    server = uvicorn.Server(ucfg)
    thread = threading.Thread(target=server.run, name="sandbox-uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            raise RuntimeError(f"sandbox server did not start on port {port}")
        time.sleep(0.005)
    bound = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield SandboxServer(f"http://127.0.0.1:{bound}", app, bound)
    finally:
        server.should_exit = True
        thread.join(timeout=5)


@lru_cache(maxsize=8)
def embedded_app(config: SandboxConfig | None = None) -> Starlette:
    """One process-wide app per config, so tokens, runs and billing persist across clients."""
    return create_app(config or SandboxConfig())


def embedded_transport(config: SandboxConfig | None = None) -> httpx.ASGITransport:
    """An httpx transport straight into the (cached) sandbox app: no port, no thread."""
    return httpx.ASGITransport(app=embedded_app(config or SandboxConfig()))


def state_of(app_or_server: Any) -> SandboxState:
    """The ``SandboxState`` of an app or a ``SandboxServer``."""
    if isinstance(app_or_server, SandboxServer):
        return app_or_server.state
    st: SandboxState = app_or_server.state.sandbox
    return st


__all__ = ["SandboxServer", "embedded_app", "embedded_transport", "serve", "state_of"]
