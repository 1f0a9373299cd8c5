"""Shared fixtures for analytics tests: a local Slack look-alike on loopback."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from callminer_assets.analytics.browser import find_chromium


def require_chromium() -> str:
    """Debian's chromium (`.ci/run` installs it): required on CI, a skip elsewhere."""
    path = find_chromium()
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed (.ci/run installs it)")
        pytest.skip("chromium is not installed: apt-get install -y chromium")
    return path


@pytest.fixture
def chromium() -> str:
    return require_chromium()


class Receiver:
    """A tiny Slack look-alike: records JSON bodies, answers ``status``."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.status = 200
        self.on_post: Any = None  # called before answering each POST (e.g. to read the table)
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("Content-Length", 0))
                receiver.bodies.append(json.loads(self.rfile.read(length)))
                if receiver.on_post is not None:
                    receiver.on_post()
                self.send_response(receiver.status)
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/services/T000/B000/secret"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def ids(self) -> list[str]:
        return [
            line.split("*")[1]
            for b in self.bodies
            for line in b["text"].splitlines()[1:]
            if line.startswith("*")
        ]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    r.thread.start()
    try:
        yield r
    finally:
        r.server.shutdown()
        r.server.server_close()
