"""Client settings and every retry/rate constant, in one place (like openai-python's ``_constants.py``).

Settings are frozen dataclasses so a resource can build them once and hand them to
clients without anyone mutating them mid-run. Secrets are ``repr=False`` so a settings
object can be printed or logged without leaking them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from callminer_assets.lib.errors import ConfigError

# --- retry / rate constants: change them here, nowhere else -------------------------------
MAX_ATTEMPTS = 8
"""Total attempts per request (first try + retries) for 429, 5xx, timeouts, dropped links."""
BACKOFF_BASE_S = 0.5
"""First backoff after a transient failure; doubles per attempt (plus jitter)."""
BACKOFF_MAX_S = 30.0
"""No single backoff sleeps longer than this."""
RETRY_AFTER_CAP_S = 300.0
"""A server asking for a longer ``Retry-After`` is obeyed only this far (with a warning naming
the request), then retried: long enough to respect any sane rate-limit window, short enough
that a broken header cannot park a run for hours."""
TOKEN_REFRESH_MARGIN_S = 60.0
"""A token is put on a request (at send time, after its slot and rate-limiter turn) only while
it has more than this left; otherwise it is refreshed first. Capped by the fraction below."""
TOKEN_REFRESH_MARGIN_FRACTION = 0.25
"""The margin is at most this share of the token's lifetime: a 2-second token is used for
1.5 s, so its last 0.5 s cover the way from the client to the server's check."""
MIN_TOKEN_REUSE_S = 1.0
"""Lifetime assumed when a server says ``expires_in <= 0`` (no token storms)."""
RATE_WINDOW_MARGIN_S = 0.1
"""Extra spacing on the 1-second rate window for jitter between our send stamp and the
server's arrival stamp (decision 0008): at 0.05 s a sandbox sharing the client's process
under a parallel test run still saw 21 requests in a second against 20, once."""
MAX_PAGES = 100_000
"""A listing longer than this is a server bug (e.g. a cursor that never ends)."""
POLL_INITIAL_S = 0.5
POLL_MAX_S = 5.0
POLL_TIMEOUT_S = 900.0
BULK_POLL_INTERVAL_S = 60.0
"""CallMiner asks Bulk Export clients to poll an execution no more often than this."""
BULK_POLL_BUDGET_S = 7200.0
"""An export still ``InProgress`` after this long is given up (the job is kept, named)."""
BULK_SCOPE = "https://callminer.net/auth/platform-bulkexport"
#: CALLMINER_REGION -> (Bulk Export API base, identity provider)
BULK_REGIONS: dict[str, tuple[str, str]] = {
    "US": ("https://api.callminer.net/bulkexport", "https://idp.callminer.net"),
    "USF": ("https://apif.callminer.net/bulkexport", "https://idpf.callminer.net"),
    "UK": ("https://apiuk.callminer.net/bulkexport", "https://idpuk.callminer.net"),
    "AUS": ("https://apiaus.callminer.net/bulkexport", "https://idpaus.callminer.net"),
    "CA": ("https://apica.callminer.net/bulkexport", "https://idpca.callminer.net"),
    "EW": ("https://apiew.callminer.net/bulkexport", "https://idpew.callminer.net"),
}
WAREHOUSE_MAX_ATTEMPTS = 12
"""Attempts per warehouse transaction (first try + retries) when DuckLake reports a
``Transaction conflict`` (two writers replaced rows of the same table) or the SQLite catalog
says ``database is locked``: neither is retried by DuckLake itself, both succeed on a rerun."""
WAREHOUSE_BACKOFF_BASE_S = 0.05
"""First wait before re-running a conflicted warehouse transaction; doubles (plus jitter)."""
WAREHOUSE_BACKOFF_MAX_S = 2.0
"""No single wait between warehouse transaction attempts is longer than this."""


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How hard to retry transient failures; tests shrink the waits, production keeps defaults."""

    max_attempts: int = MAX_ATTEMPTS
    backoff_base_s: float = BACKOFF_BASE_S
    backoff_max_s: float = BACKOFF_MAX_S
    retry_after_cap_s: float = RETRY_AFTER_CAP_S

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ConfigError("max_attempts must be >= 1")
        if min(self.backoff_base_s, self.backoff_max_s, self.retry_after_cap_s) < 0:
            raise ConfigError("backoff and Retry-After caps must be >= 0")


def _check_rate(rps: float, concurrency: int, timeout_s: float, what: str) -> None:
    if not rps > 0:
        raise ConfigError(f"{what}_REQUESTS_PER_SECOND must be > 0, got {rps!r}")
    if concurrency < 1:
        raise ConfigError(f"{what}_CONCURRENCY must be >= 1, got {concurrency!r}")
    if not timeout_s > 0:
        raise ConfigError(f"{what} timeout must be > 0, got {timeout_s!r}")


@dataclass(frozen=True, slots=True)
class CallMinerSettings:
    """Where and how fast to talk to CallMiner."""

    auth_url: str
    api_url: str
    client_id: str
    client_secret: str = field(repr=False)
    requests_per_second: float = 20.0
    concurrency: int = 8
    page_size: int = 100
    timeout_s: float = 30.0
    token_refresh_margin_s: float = TOKEN_REFRESH_MARGIN_S
    max_pages: int = MAX_PAGES
    retry: RetryPolicy = field(default_factory=RetryPolicy)

    def __post_init__(self) -> None:
        _check_rate(self.requests_per_second, self.concurrency, self.timeout_s, "CALLMINER")
        if self.page_size < 1:
            raise ConfigError(f"page_size must be >= 1, got {self.page_size!r}")
        if not (self.auth_url and self.api_url and self.client_id and self.client_secret):
            raise ConfigError("CallMiner settings need auth_url, api_url, client_id, client_secret")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> CallMinerSettings | None:
        """Settings from ``CALLMINER_*``; ``None`` when no client id is set (= use the sandbox).

        A partial configuration is a ConfigError at start, naming the missing variables.
        """
        env = os.environ if env is None else env
        if not env.get("CALLMINER_CLIENT_ID"):
            return None
        names = (
            "CALLMINER_AUTH_URL",
            "CALLMINER_API_URL",
            "CALLMINER_CLIENT_ID",
            "CALLMINER_CLIENT_SECRET",
        )
        missing = [n for n in names if not env.get(n)]
        if missing:
            raise ConfigError(
                f"CALLMINER_CLIENT_ID is set but {', '.join(missing)} "
                f"{'are not: set them' if len(missing) > 1 else 'is not: set it'} too, or unset "
                "CALLMINER_CLIENT_ID "
                "to use the built-in sandbox"
            )
        return cls(
            auth_url=env["CALLMINER_AUTH_URL"],
            api_url=env["CALLMINER_API_URL"],
            client_id=env["CALLMINER_CLIENT_ID"],
            client_secret=env["CALLMINER_CLIENT_SECRET"],
            requests_per_second=env_number(
                env, "CALLMINER_REQUESTS_PER_SECOND", 20.0, positive=True
            ),
            concurrency=int(
                env_number(env, "CALLMINER_CONCURRENCY", 8, positive=True, integer=True)
            ),
        )


Backend = Literal["rest", "bulk"]


def backend_from_env(env: Mapping[str, str] | None = None) -> Backend:
    """``CALLMINER_BACKEND``: ``rest`` (default) or ``bulk``; anything else is a ConfigError."""
    env = os.environ if env is None else env
    value = (env.get("CALLMINER_BACKEND") or "rest").strip().lower()
    if value not in ("rest", "bulk"):
        raise ConfigError(f"CALLMINER_BACKEND must be rest or bulk, got {value!r}")
    return "bulk" if value == "bulk" else "rest"


def tenant_timezone(env: Mapping[str, str]) -> str:
    """``CALLMINER_TENANT_TIMEZONE`` (an IANA zone), required by the bulk backend: the export's
    ClientCaptureDate is tenant-local, and guessing the zone would move contacts across days."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    zone = (env.get("CALLMINER_TENANT_TIMEZONE") or "").strip()
    if not zone:
        raise ConfigError(
            "CALLMINER_BACKEND=bulk needs CALLMINER_TENANT_TIMEZONE (e.g. America/New_York)"
        )
    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"CALLMINER_TENANT_TIMEZONE is not a known time zone: {zone!r}") from None
    return zone


@dataclass(frozen=True, slots=True)
class BulkSettings:
    """Where and how to talk to CallMiner's Bulk Export API, and how long to wait for it."""

    auth_url: str
    api_url: str
    client_id: str
    client_secret: str = field(repr=False)
    tenant_timezone: str = "UTC"
    poll_interval_s: float = BULK_POLL_INTERVAL_S
    poll_budget_s: float = BULK_POLL_BUDGET_S
    requests_per_second: float = 5.0
    concurrency: int = 2
    timeout_s: float = 120.0
    token_refresh_margin_s: float = TOKEN_REFRESH_MARGIN_S
    scope: str = BULK_SCOPE
    retry: RetryPolicy = field(default_factory=RetryPolicy)

    def __post_init__(self) -> None:
        _check_rate(self.requests_per_second, self.concurrency, self.timeout_s, "CALLMINER")
        if not (self.auth_url and self.api_url and self.client_id and self.client_secret):
            raise ConfigError("Bulk Export settings need hosts, client id and client secret")
        if self.poll_interval_s < 0 or not self.poll_budget_s > 0:
            raise ConfigError("bulk poll interval must be >= 0 and its budget > 0")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> BulkSettings | None:
        """Settings from ``CALLMINER_*`` when ``CALLMINER_CLIENT_ID`` is set, else ``None``.

        Hosts come from ``CALLMINER_REGION`` (US, USF, UK, AUS, CA, EW; default US);
        ``CALLMINER_API_URL`` / ``CALLMINER_AUTH_URL`` override them.
        """
        env = os.environ if env is None else env
        if not env.get("CALLMINER_CLIENT_ID"):
            return None
        if not env.get("CALLMINER_CLIENT_SECRET"):
            raise ConfigError("CALLMINER_CLIENT_ID is set but CALLMINER_CLIENT_SECRET is not")
        region = (env.get("CALLMINER_REGION") or "US").strip().upper()
        if region not in BULK_REGIONS:
            raise ConfigError(
                f"CALLMINER_REGION must be one of {', '.join(BULK_REGIONS)}, got {region!r}"
            )
        api, idp = BULK_REGIONS[region]
        return cls(
            auth_url=env.get("CALLMINER_AUTH_URL") or idp,
            api_url=env.get("CALLMINER_API_URL") or api,
            client_id=env["CALLMINER_CLIENT_ID"],
            client_secret=env["CALLMINER_CLIENT_SECRET"],
            tenant_timezone=tenant_timezone(env),
            poll_interval_s=env_number(
                env, "CALLMINER_BULK_POLL_INTERVAL_SECONDS", BULK_POLL_INTERVAL_S
            ),
            poll_budget_s=env_number(env, "CALLMINER_BULK_POLL_BUDGET_SECONDS", BULK_POLL_BUDGET_S),
        )


@dataclass(frozen=True, slots=True)
class SemarizeSettings:
    """Where and how fast to talk to Semarize, and how to wait for runs."""

    api_url: str
    api_key: str = field(repr=False)
    requests_per_second: float = 10.0
    concurrency: int = 8
    mode: Literal["sync", "async"] = "sync"
    timeout_s: float = 60.0
    poll_initial_s: float = POLL_INITIAL_S
    poll_max_s: float = POLL_MAX_S
    poll_timeout_s: float = POLL_TIMEOUT_S
    retry: RetryPolicy = field(default_factory=RetryPolicy)

    def __post_init__(self) -> None:
        _check_rate(self.requests_per_second, self.concurrency, self.timeout_s, "SEMARIZE")
        if self.mode not in ("sync", "async"):
            raise ConfigError(f"Semarize mode must be 'sync' or 'async', got {self.mode!r}")
        if not (self.api_url and self.api_key):
            raise ConfigError("Semarize settings need api_url and api_key")
        if min(self.poll_initial_s, self.poll_max_s) < 0 or not self.poll_timeout_s > 0:
            raise ConfigError("Semarize poll intervals must be >= 0 and the timeout > 0")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> SemarizeSettings | None:
        """Settings from ``SEMARIZE_*``; ``None`` when no key is set (= use the sandbox)."""
        env = os.environ if env is None else env
        if not env.get("SEMARIZE_API_KEY"):
            return None
        if not env.get("SEMARIZE_API_URL"):
            raise ConfigError(
                "SEMARIZE_API_KEY is set but SEMARIZE_API_URL is not: set it too, or unset "
                "SEMARIZE_API_KEY to use the built-in sandbox"
            )
        return cls(
            api_url=env["SEMARIZE_API_URL"],
            api_key=env["SEMARIZE_API_KEY"],
            requests_per_second=env_number(
                env, "SEMARIZE_REQUESTS_PER_SECOND", 10.0, positive=True
            ),
            concurrency=int(
                env_number(env, "SEMARIZE_CONCURRENCY", 8, positive=True, integer=True)
            ),
        )


Evaluator = Literal["semarize", "local-kits"]
EVALUATORS: tuple[Evaluator, ...] = ("semarize", "local-kits")


def evaluator_from_env(env: Mapping[str, str] | None = None) -> Evaluator:
    """Who scores transcripts: ``semarize`` (a key is set) or ``local-kits`` (the kit files).

    Local kits are the default only while CallMiner is the sandbox too: with a live CallMiner
    backend and no Semarize key they must be chosen (``SEMARIZE_EVALUATOR=local-kits``), so
    real transcripts are never scored by a stand-in silently. Checked before any request.
    """
    env = os.environ if env is None else env
    chosen = (env.get("SEMARIZE_EVALUATOR") or "").strip().lower()
    has_key = bool(env.get("SEMARIZE_API_KEY"))
    if chosen and chosen not in EVALUATORS:
        raise ConfigError(f"SEMARIZE_EVALUATOR must be semarize or local-kits, got {chosen!r}")
    if chosen == "local-kits":
        return "local-kits"
    if has_key:
        return "semarize"
    if chosen == "semarize":
        raise ConfigError("SEMARIZE_EVALUATOR=semarize but SEMARIZE_API_KEY is not set")
    if env.get("CALLMINER_CLIENT_ID"):
        raise ConfigError(
            "CallMiner is live (CALLMINER_CLIENT_ID is set) but SEMARIZE_API_KEY is not: set the "
            "key, or SEMARIZE_EVALUATOR=local-kits to score real transcripts with the local kits"
        )
    return "local-kits"


DEFAULT_WAREHOUSE_CATALOG = "sqlite:data/warehouse.sqlite"
DEFAULT_WAREHOUSE_DATA_PATH = "data/lake/"


@dataclass(frozen=True, slots=True)
class WarehouseSettings:
    """Where the DuckLake lives: a catalog (``sqlite:FILE`` or ``postgres:DSN``) + a data path.

    ``data_path`` is passed to DuckLake verbatim (a local folder or ``s3://bucket/prefix/``):
    the catalog records it at creation and every ATTACH must name the same string.
    """

    catalog: str = field(default=DEFAULT_WAREHOUSE_CATALOG, repr=False)
    data_path: str = DEFAULT_WAREHOUSE_DATA_PATH

    def __post_init__(self) -> None:
        if not self.catalog.startswith(("sqlite:", "postgres:")):
            raise ConfigError("WAREHOUSE_CATALOG must start with 'sqlite:' or 'postgres:'")
        if not self.data_path:
            raise ConfigError("WAREHOUSE_DATA_PATH must not be empty")
        if not self.data_path.endswith("/"):
            object.__setattr__(self, "data_path", self.data_path + "/")

    @property
    def kind(self) -> Literal["sqlite", "postgres"]:
        return "sqlite" if self.catalog.startswith("sqlite:") else "postgres"

    @property
    def sqlite_path(self) -> str | None:
        """The catalog file of an embedded lake; None for Postgres."""
        return self.catalog.removeprefix("sqlite:") if self.kind == "sqlite" else None

    @property
    def on_s3(self) -> bool:
        return self.data_path.startswith("s3://")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> WarehouseSettings:
        """``WAREHOUSE_CATALOG`` / ``WAREHOUSE_DATA_PATH``; the retired ``DUCKDB_PATH`` is an error."""
        env = os.environ if env is None else env
        if env.get("DUCKDB_PATH"):
            raise ConfigError(
                "DUCKDB_PATH is no longer used: the warehouse is a DuckLake, set "
                "WAREHOUSE_CATALOG and WAREHOUSE_DATA_PATH instead (copy an old file with "
                "`python -m callminer_assets migrate-warehouse OLD.duckdb`)"
            )
        return cls(
            catalog=env.get("WAREHOUSE_CATALOG") or DEFAULT_WAREHOUSE_CATALOG,
            data_path=env.get("WAREHOUSE_DATA_PATH") or DEFAULT_WAREHOUSE_DATA_PATH,
        )


def env_number(
    env: Mapping[str, str],
    name: str,
    default: float,
    *,
    positive: bool = False,
    integer: bool = False,
) -> float:
    """An optional numeric environment variable; a bad value is a one-line ConfigError.

    The message names the variable, what it must be and the fix (a rate of 0 or a negative
    concurrency is refused here, at load, not discovered mid-run).
    """
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    kind = "whole number" if integer else "number"
    fix = f"set e.g. {name}={default:g}, or unset it for the default {default:g}"
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a {kind}: {fix}") from None
    if (integer and not value.is_integer()) or (positive and not value > 0):
        wanted = f"a {'positive ' if positive else ''}{kind}"
        raise ConfigError(f"{name}={raw!r} must be {wanted}: {fix}")
    return value
