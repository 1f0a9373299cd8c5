"""Dagster resources: the only place settings become clients.

With no ``CALLMINER_CLIENT_ID`` (or no ``SEMARIZE_API_KEY``) the resource talks
to the built-in sandbox in-process, so a fresh clone runs end to end offline.
Secrets are ``EnvVar``s (see ``build_resources``): Dagster shows their names,
never their values.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any, Literal

import dagster as dg
import httpx

from callminer_assets.defs.analytics.resources import build_analytics_resource
from callminer_assets.lib.semarize import SemarizeClient
from callminer_assets.lib.settings import CallMinerSettings, SemarizeSettings, env_number
from callminer_assets.lib.source import InteractionSource, rest_source
from callminer_assets.sandbox.app import SandboxConfig
from callminer_assets.sandbox.server import embedded_transport
from callminer_assets.warehouse.store import DEFAULT_DUCKDB_PATH, Warehouse

SANDBOX_URL = "http://sandbox.local"
_log = logging.getLogger("callminer_assets")


class SandboxResource(dg.ConfigurableResource):
    """The built-in CallMiner/Semarize look-alike used when no credentials are set."""

    seed: int = 7
    per_day: int = 60

    def config(self) -> SandboxConfig:
        return SandboxConfig(seed=self.seed, per_day=self.per_day)

    def transport(self) -> httpx.AsyncBaseTransport:
        return embedded_transport(self.config())


class CallMinerResource(dg.ConfigurableResource):
    """CallMiner REST API settings; ``client_id`` unset means the in-process sandbox."""

    auth_url: str | None = None
    api_url: str | None = None
    client_id: str | None = None
    client_secret: str | None = None
    requests_per_second: float = 20.0
    concurrency: int = 8
    page_size: int = 100
    transcript_give_up_hours: float = 72.0
    contact_centre_addresses: list[str] = []

    @property
    def uses_sandbox(self) -> bool:
        return not self.client_id

    def source(self, sandbox: SandboxResource, logger: Any = None) -> InteractionSource:
        """Where interactions come from; assets see only the ``InteractionSource`` protocol."""
        if self.uses_sandbox:
            settings = CallMinerSettings(
                auth_url=SANDBOX_URL,
                api_url=SANDBOX_URL,
                client_id=sandbox.config().client_id,
                client_secret=sandbox.config().client_secret,
                requests_per_second=max(self.requests_per_second, 5000.0),
                concurrency=max(self.concurrency, 16),
                page_size=self.page_size,
            )
            return rest_source(settings, transport=sandbox.transport(), logger=logger)
        settings = CallMinerSettings(
            auth_url=self.auth_url or "",
            api_url=self.api_url or "",
            client_id=self.client_id or "",
            client_secret=self.client_secret or "",
            requests_per_second=self.requests_per_second,
            concurrency=self.concurrency,
            page_size=self.page_size,
        )
        return rest_source(settings, logger=logger)


class SemarizeResource(dg.ConfigurableResource):
    """Semarize API settings; ``api_key`` unset means the in-process sandbox."""

    api_url: str | None = None
    api_key: str | None = None
    requests_per_second: float = 10.0
    concurrency: int = 8
    mode: Literal["sync", "async"] = "sync"
    rescore: bool = False

    @property
    def uses_sandbox(self) -> bool:
        return not self.api_key

    def client(self, sandbox: SandboxResource, logger: Any = None) -> SemarizeClient:
        if self.uses_sandbox:
            settings = SemarizeSettings(
                api_url=SANDBOX_URL,
                api_key=sandbox.config().semarize_key,
                requests_per_second=max(self.requests_per_second, 5000.0),
                concurrency=max(self.concurrency, 16),
                mode=self.mode,
            )
            return SemarizeClient(settings, transport=sandbox.transport(), logger=logger)
        settings = SemarizeSettings(
            api_url=self.api_url or "",
            api_key=self.api_key or "",
            requests_per_second=self.requests_per_second,
            concurrency=self.concurrency,
            mode=self.mode,
        )
        return SemarizeClient(settings, logger=logger)


class WarehouseResource(dg.ConfigurableResource):
    """The DuckDB warehouse at ``DUCKDB_PATH`` (published copy; writes go to a working copy)."""

    duckdb_path: str = DEFAULT_DUCKDB_PATH

    def warehouse(self) -> Warehouse:
        return Warehouse(self.duckdb_path)


def _secret(env: Mapping[str, str], name: str) -> Any:
    """An EnvVar when set (Dagster masks it), else None (the sandbox)."""
    return dg.EnvVar(name) if env.get(name) else None


def build_resources(env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Resources from the environment, validated once at load time."""
    env = os.environ if env is None else env
    # Half-set or malformed credentials fail here, at load, naming the variable.
    CallMinerSettings.from_env(env)
    SemarizeSettings.from_env(env)
    addresses = [a.strip() for a in env.get("CALLMINER_CONTACT_CENTRE_ADDRESSES", "").split(",")]
    return {
        "sandbox": SandboxResource(
            seed=int(env_number(env, "SANDBOX_SEED", 7)),
            per_day=int(env_number(env, "SANDBOX_PER_DAY", 60)),
        ),
        "callminer": CallMinerResource(
            auth_url=env.get("CALLMINER_AUTH_URL") or None,
            api_url=env.get("CALLMINER_API_URL") or None,
            client_id=_secret(env, "CALLMINER_CLIENT_ID"),
            client_secret=_secret(env, "CALLMINER_CLIENT_SECRET"),
            requests_per_second=env_number(env, "CALLMINER_REQUESTS_PER_SECOND", 20.0),
            concurrency=int(env_number(env, "CALLMINER_CONCURRENCY", 8)),
            page_size=int(env_number(env, "CALLMINER_PAGE_SIZE", 100)),
            transcript_give_up_hours=env_number(env, "CALLMINER_TRANSCRIPT_GIVE_UP_HOURS", 72.0),
            contact_centre_addresses=[a for a in addresses if a],
        ),
        "semarize": SemarizeResource(
            api_url=env.get("SEMARIZE_API_URL") or None,
            api_key=_secret(env, "SEMARIZE_API_KEY"),
            requests_per_second=env_number(env, "SEMARIZE_REQUESTS_PER_SECOND", 10.0),
            concurrency=int(env_number(env, "SEMARIZE_CONCURRENCY", 8)),
            mode="async" if env.get("SEMARIZE_MODE") == "async" else "sync",
            rescore=env.get("SEMARIZE_RESCORE", "").lower() in ("1", "true", "yes"),
        ),
        "warehouse": WarehouseResource(duckdb_path=env.get("DUCKDB_PATH") or DEFAULT_DUCKDB_PATH),
        "analytics": build_analytics_resource(env),
    }
