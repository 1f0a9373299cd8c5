"""Fixtures for Dagster-level tests: a private DAGSTER_HOME and warehouse per test."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from callminer_assets.defs.partitions import RANGE_END_TAG, RANGE_START_TAG

REPO = Path(__file__).parents[2]


@pytest.fixture
def dagster_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dg.DagsterInstance]:
    """A real instance on disk, configured by the repo's dagster.yaml."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    with dg.instance_for_test(temp_dir=str(home)) as instance:
        yield instance


@pytest.fixture
def duckdb_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "warehouse" / "callminer.duckdb"
    path.parent.mkdir()
    monkeypatch.setenv("DUCKDB_PATH", str(path))
    return path


def sandbox_env(server_url: str, duckdb_path: Path, **extra: str) -> dict[str, str]:
    """Environment pointing both APIs at a loopback sandbox, as a user would for real endpoints."""
    return {
        "CALLMINER_AUTH_URL": server_url,
        "CALLMINER_API_URL": server_url,
        "CALLMINER_CLIENT_ID": "sandbox",
        "CALLMINER_CLIENT_SECRET": "sandbox",
        "SEMARIZE_API_URL": server_url,
        "SEMARIZE_API_KEY": "smz_test_sandbox",
        "DUCKDB_PATH": str(duckdb_path),
        **extra,
    }


def range_tags(first: str, last: str) -> dict[str, Any]:
    return {
        RANGE_START_TAG: first,
        RANGE_END_TAG: last,
    }
