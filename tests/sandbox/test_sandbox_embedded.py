"""The in-process transport the pipeline uses when no credentials are set."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from callminer_assets.sandbox import SandboxConfig, embedded_transport
from callminer_assets.sandbox.server import embedded_app, state_of


def test_embedded_transport_shares_one_app_and_drops_as_transport_error() -> None:
    cfg = SandboxConfig(seed=3, per_day=20)
    assert embedded_app(cfg) is embedded_app(cfg)

    async def go() -> int:
        async with httpx.AsyncClient(
            transport=embedded_transport(cfg), base_url="http://sandbox"
        ) as c:
            r = await c.post(
                "/oauth/token",
                data={
                    "grant_type": "client_credentials",
                    "client_id": "sandbox",
                    "client_secret": "sandbox",
                },
            )
            h = {"Authorization": f"Bearer {r.json()['access_token']}"}
            q = {"startDate": "2026-01-05", "endDate": "2026-01-06"}
            page = (await c.get("/v1/interactions", params=q, headers=h)).json()
            state_of(embedded_app(cfg)).inject("drop")
            with pytest.raises(httpx.TransportError):
                await c.get("/v1/interactions", params=q, headers=h)
            return len(page["interactions"])

    assert asyncio.run(go()) == 20
    assert state_of(embedded_app(cfg)).tokens_issued >= 1
