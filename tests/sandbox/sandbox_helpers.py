"""A tiny retrying client for driving the sandbox over real HTTP in tests."""

from __future__ import annotations

import time
from typing import Any

import httpx

RETRY_STATUSES = {429, 500, 502, 503, 504}


class Api:
    """OAuth + retries (transport errors, 429/5xx, one refresh on 401): what a real client does."""

    def __init__(self, base_url: str, client_id: str = "sandbox", secret: str = "sandbox") -> None:
        self.http = httpx.Client(base_url=base_url, timeout=10)
        self.client_id = client_id
        self.secret = secret
        self.token: str | None = None

    def close(self) -> None:
        self.http.close()

    def fetch_token(self) -> str:
        for _ in range(50):
            try:
                r = self.http.post(
                    "/oauth/token",
                    data={
                        "grant_type": "client_credentials",
                        "client_id": self.client_id,
                        "client_secret": self.secret,
                    },
                )
            except httpx.TransportError:
                continue
            if r.status_code in RETRY_STATUSES:
                continue
            r.raise_for_status()
            self.token = r.json()["access_token"]
            return self.token
        raise AssertionError("no token after 50 tries")

    def get(
        self, path: str, params: dict[str, Any] | None = None, tries: int = 60
    ) -> httpx.Response:
        if self.token is None:
            self.fetch_token()
        for _ in range(tries):
            try:
                r = self.http.get(
                    path, params=params, headers={"Authorization": f"Bearer {self.token}"}
                )
            except httpx.TransportError:
                continue
            if r.status_code in RETRY_STATUSES:
                continue
            if r.status_code == 401:
                self.fetch_token()
                continue
            return r
        raise AssertionError(f"gave up on {path}")

    def list_all(self, start: str, end: str, limit: int = 50) -> tuple[list[Any], list[Any]]:
        """Follow either pagination style; returns (all entries incl. duplicates, pages)."""
        params: dict[str, Any] = {"startDate": start, "endDate": end, "limit": limit}
        entries: list[Any] = []
        pages: list[Any] = []
        offset = 0
        while True:
            r = self.get("/v1/interactions", params)
            assert r.status_code == 200, r.text
            body = r.json()
            pages.append(body)
            if isinstance(body, list):
                rows = body
            else:
                rows = next(body[k] for k in ("interactions", "items", "data") if k in body)
            entries.extend(rows)
            if isinstance(body, dict) and "nextPage" in body:
                if not body["nextPage"]:
                    return entries, pages
                params["nextPage"] = body["nextPage"]
                continue
            if not rows:
                return entries, pages
            offset += len(rows)
            if isinstance(body, dict) and "total" in body and offset >= body["total"]:
                return entries, pages
            params["offset"] = offset


def wait_until(pred: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline
        time.sleep(0.01)
