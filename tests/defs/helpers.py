"""Shared helpers for Dagster-level tests: environment, runs, warehouse reads."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from callminer_assets.defs.partitions import RANGE_END_TAG, RANGE_START_TAG
from callminer_assets.defs.resources import build_resources
from callminer_assets.lib.settings import WarehouseSettings
from callminer_assets.lib.tables import TABLES
from callminer_assets.warehouse.store import connect
from tests.lake import lake_env

REPO = Path(__file__).parents[2]
EXTRACT = ["callminer/interactions", "callminer/transcripts", "semarize/evaluations"]


def sandbox_env(server_url: str, lake: WarehouseSettings, **extra: str) -> dict[str, str]:
    """Environment pointing both APIs at a loopback sandbox, as a user would for real endpoints."""
    return {
        "CALLMINER_AUTH_URL": server_url,
        "CALLMINER_API_URL": server_url,
        "CALLMINER_CLIENT_ID": "sandbox",
        "CALLMINER_CLIENT_SECRET": "sandbox",
        "SEMARIZE_API_URL": server_url,
        "SEMARIZE_API_KEY": "smz_test_sandbox",
        **lake_env(lake),
        # Loopback is fast; tests about the rate limit itself set their own.
        "CALLMINER_REQUESTS_PER_SECOND": "500",
        "SEMARIZE_REQUESTS_PER_SECOND": "500",
        **extra,
    }


def range_tags(first: str, last: str) -> dict[str, Any]:
    return {RANGE_START_TAG: first, RANGE_END_TAG: last}


def all_assets() -> list[dg.AssetsDefinition]:
    from callminer_assets.definitions import ALL_ASSETS

    return ALL_ASSETS


def materialize(
    instance: dg.DagsterInstance, env: dict[str, str], selection: list[str], **kwargs: Any
) -> dg.ExecuteInProcessResult:
    """Run with ``env`` as the process environment (EnvVar secrets resolve at run time)."""
    with pytest.MonkeyPatch.context() as mp:
        for name, value in env.items():
            mp.setenv(name, value)
        return dg.materialize(
            all_assets(),
            instance=instance,
            resources=build_resources(),
            selection=dg.AssetSelection.from_coercible(selection),
            **kwargs,
        )


def rows(
    lake: WarehouseSettings, sql: str, params: list[Any] | None = None
) -> list[tuple[Any, ...]]:
    """Query the lake the way an analyst does (a read-only session)."""
    con = connect(lake)
    try:
        return con.execute(sql, params or []).fetchall()
    finally:
        con.close()


# Columns that record *when* or *which run*, not *what*: they differ between any two runs.
TIMING = {
    "extracted_at",
    "fetched_at",
    "evaluated_at",
    "first_seen_pending_at",
    "run_id",
    "quarantined_at",
}
RAW = [
    "callminer.interactions",
    "callminer.transcripts",
    "callminer.utterances",
    "semarize.evaluations",
]


def snapshot(lake: WarehouseSettings, tables: list[str] = RAW) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of ``tables`` (timing columns aside), sorted: equal means same keys and values."""
    con = connect(lake)
    try:
        out = {}
        for name in tables:
            cols = [f'"{c}"' for c in TABLES[name].column_names if c not in TIMING]
            sql = f"SELECT {', '.join(cols)} FROM {name} ORDER BY ALL"  # noqa: S608 - tables.py names
            out[name] = con.execute(sql).fetchall()
        return out
    finally:
        con.close()


def env_without_credentials(**extra: str) -> dict[str, str]:
    """This process's environment minus CALLMINER_/SEMARIZE_ vars: the embedded sandbox."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CALLMINER_", "SEMARIZE_"))}
    env.update(extra)
    return env


def dagster_materialize(select: str, partition: str) -> list[str]:
    """The `dagster asset materialize` command line a data engineer would type."""
    return [
        sys.executable,
        "-m",
        "dagster",
        "asset",
        "materialize",
        "-m",
        "callminer_assets.definitions",
        "--select",
        select,
        "--partition",
        partition,
    ]
