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
from pathlib import Path
from typing import Any, Literal

import dagster as dg
import httpx

from callminer_assets.defs.analytics.resources import build_analytics_resource
from callminer_assets.defs.bulk_source import BulkSource
from callminer_assets.lib.errors import ConfigError
from callminer_assets.lib.semarize import SemarizeClient
from callminer_assets.lib.settings import (
    BULK_POLL_BUDGET_S,
    BULK_POLL_INTERVAL_S,
    DEFAULT_WAREHOUSE_CATALOG,
    DEFAULT_WAREHOUSE_DATA_PATH,
    BulkSettings,
    CallMinerSettings,
    Evaluator,
    SemarizeSettings,
    WarehouseSettings,
    backend_from_env,
    env_number,
    evaluator_from_env,
)
from callminer_assets.lib.source import InteractionSource, rest_source
from callminer_assets.sandbox.app import SandboxConfig
from callminer_assets.sandbox.bulk import BULK_PREFIX
from callminer_assets.sandbox.server import embedded_transport
from callminer_assets.warehouse.store import Warehouse

SANDBOX_URL = "http://sandbox.local"
SANDBOX_ORIGIN = "sandbox"
"""``origin`` of rows from the built-in sandbox (a loopback sandbox behind real credentials
is, to the pipeline, a REST host like any other: ``rest:127.0.0.1``)."""
SANDBOX_BULK_POLL_S = 0.02
"""The embedded sandbox's compressed clock finishes an export in ~0.2 s: poll it often."""
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
    backend: Literal["rest", "bulk"] = "rest"
    tenant_timezone: str | None = None
    bulk_poll_interval_s: float = BULK_POLL_INTERVAL_S
    bulk_poll_budget_s: float = BULK_POLL_BUDGET_S
    bulk_staging_dir: str = "data/bulk"

    @property
    def uses_sandbox(self) -> bool:
        return not self.client_id

    def source(self, sandbox: SandboxResource, logger: Any = None) -> InteractionSource:
        """Where interactions come from; assets see only the ``InteractionSource`` protocol."""
        if self.backend == "bulk":
            return self._bulk_source(sandbox, logger)
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
            return rest_source(
                settings, transport=sandbox.transport(), logger=logger, origin=SANDBOX_ORIGIN
            )
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

    def _bulk_source(self, sandbox: SandboxResource, logger: Any) -> BulkSource:
        if self.uses_sandbox:
            cfg = sandbox.config()
            settings = BulkSettings(
                auth_url=SANDBOX_URL,
                api_url=f"{SANDBOX_URL}{BULK_PREFIX}",
                client_id=cfg.client_id,
                client_secret=cfg.client_secret,
                tenant_timezone=self.tenant_timezone or cfg.tenant_timezone,
                poll_interval_s=min(self.bulk_poll_interval_s, SANDBOX_BULK_POLL_S),
                poll_budget_s=self.bulk_poll_budget_s,
                requests_per_second=5000.0,
            )
            return BulkSource(
                settings,
                self.bulk_staging_dir,
                transport=sandbox.transport(),
                logger=logger,
                origin=SANDBOX_ORIGIN,
            )
        settings = BulkSettings(
            auth_url=self.auth_url or "",
            api_url=self.api_url or "",
            client_id=self.client_id or "",
            client_secret=self.client_secret or "",
            tenant_timezone=self.tenant_timezone or "",
            poll_interval_s=self.bulk_poll_interval_s,
            poll_budget_s=self.bulk_poll_budget_s,
        )
        return BulkSource(settings, self.bulk_staging_dir, logger=logger)


class SemarizeResource(dg.ConfigurableResource):
    """Semarize API settings; ``evaluator`` local-kits (or no ``api_key``) means the
    in-process sandbox's Semarize, which scores with the kit files."""

    api_url: str | None = None
    api_key: str | None = None
    requests_per_second: float = 10.0
    concurrency: int = 8
    mode: Literal["sync", "async"] = "sync"
    evaluator: Literal["semarize", "local-kits", "auto"] = "auto"
    """``auto``: semarize with a key, local-kits without (``build_resources`` decides from env)."""

    @property
    def uses_sandbox(self) -> bool:
        return self.evaluator == "local-kits" or not self.api_key

    @property
    def evaluator_name(self) -> Evaluator:
        """What the stored rows say scored them (``evaluator`` column)."""
        return "local-kits" if self.uses_sandbox else "semarize"

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
    """The DuckLake at ``WAREHOUSE_CATALOG`` + ``WAREHOUSE_DATA_PATH``."""

    catalog: str = DEFAULT_WAREHOUSE_CATALOG
    data_path: str = DEFAULT_WAREHOUSE_DATA_PATH
    replace_origin: bool = False
    """``WAREHOUSE_REPLACE_ORIGIN``: let a run replace days holding rows of another origin."""

    def settings(self) -> WarehouseSettings:
        return WarehouseSettings(catalog=self.catalog, data_path=self.data_path)

    def warehouse(self) -> Warehouse:
        return Warehouse(self.settings())


def _secret(env: Mapping[str, str], name: str) -> Any:
    """An EnvVar when set (Dagster masks it), else None (the sandbox)."""
    return dg.EnvVar(name) if env.get(name) else None


def _rate(env: Mapping[str, str], name: str, default: float) -> float:
    """A positive number (requests per second, hours): 0 would stall or mean nothing."""
    return env_number(env, name, default, positive=True)


def _count(env: Mapping[str, str], name: str, default: int) -> int:
    """A positive whole number (concurrency, page size), checked even on the sandbox."""
    return int(env_number(env, name, default, positive=True, integer=True))


def _warehouse_resource(env: Mapping[str, str], lake: WarehouseSettings) -> WarehouseResource:
    """A Postgres catalog string may hold a password: an EnvVar then, like the API keys."""
    catalog: Any = dg.EnvVar("WAREHOUSE_CATALOG") if lake.kind == "postgres" else lake.catalog
    return WarehouseResource(
        catalog=catalog,
        data_path=lake.data_path,
        replace_origin=env.get("WAREHOUSE_REPLACE_ORIGIN", "").lower() in ("1", "true", "yes"),
    )


def build_resources(env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Resources from the environment, validated once at load time."""
    env = os.environ if env is None else env
    # Half-set or malformed credentials fail here, at load, naming the variable.
    backend = backend_from_env(env)
    bulk = BulkSettings.from_env(env) if backend == "bulk" else None
    if backend == "rest":
        CallMinerSettings.from_env(env)
    SemarizeSettings.from_env(env)
    evaluator = evaluator_from_env(env)
    if env.get("SEMARIZE_RESCORE"):
        raise ConfigError(
            "SEMARIZE_RESCORE is gone: re-score explicitly with "
            "`python -m callminer_assets rescore --kit K --start D --end D`"
        )
    lake = WarehouseSettings.from_env(env)
    # Bulk exports are staged beside an embedded lake's catalog (data/bulk by default).
    staging = Path(lake.sqlite_path).parent if lake.sqlite_path else Path("data")
    addresses = [a.strip() for a in env.get("CALLMINER_CONTACT_CENTRE_ADDRESSES", "").split(",")]
    return {
        "sandbox": SandboxResource(
            seed=int(env_number(env, "SANDBOX_SEED", 7, integer=True)),
            per_day=int(env_number(env, "SANDBOX_PER_DAY", 60, positive=True, integer=True)),
        ),
        "callminer": CallMinerResource(
            client_id=_secret(env, "CALLMINER_CLIENT_ID"),
            client_secret=_secret(env, "CALLMINER_CLIENT_SECRET"),
            requests_per_second=_rate(env, "CALLMINER_REQUESTS_PER_SECOND", 20.0),
            concurrency=_count(env, "CALLMINER_CONCURRENCY", 8),
            page_size=_count(env, "CALLMINER_PAGE_SIZE", 100),
            transcript_give_up_hours=_rate(env, "CALLMINER_TRANSCRIPT_GIVE_UP_HOURS", 72.0),
            contact_centre_addresses=[a for a in addresses if a],
            backend=backend,
            auth_url=bulk.auth_url if bulk else env.get("CALLMINER_AUTH_URL") or None,
            api_url=bulk.api_url if bulk else env.get("CALLMINER_API_URL") or None,
            tenant_timezone=bulk.tenant_timezone
            if bulk
            else env.get("CALLMINER_TENANT_TIMEZONE") or None,
            bulk_poll_interval_s=env_number(
                env, "CALLMINER_BULK_POLL_INTERVAL_SECONDS", BULK_POLL_INTERVAL_S
            ),
            bulk_poll_budget_s=env_number(
                env, "CALLMINER_BULK_POLL_BUDGET_SECONDS", BULK_POLL_BUDGET_S
            ),
            bulk_staging_dir=env.get("CALLMINER_BULK_STAGING_DIR") or str(staging / "bulk"),
        ),
        "semarize": SemarizeResource(
            api_url=env.get("SEMARIZE_API_URL") or None,
            api_key=_secret(env, "SEMARIZE_API_KEY"),
            requests_per_second=_rate(env, "SEMARIZE_REQUESTS_PER_SECOND", 10.0),
            concurrency=_count(env, "SEMARIZE_CONCURRENCY", 8),
            mode="async" if env.get("SEMARIZE_MODE") == "async" else "sync",
            evaluator=evaluator,
        ),
        "warehouse": _warehouse_resource(env, lake),
        "analytics": build_analytics_resource(env),
    }
