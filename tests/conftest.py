"""Fixtures every test package may use."""

from __future__ import annotations

from pathlib import Path

import pytest

from callminer_assets.lib.settings import WarehouseSettings
from tests.lake import lake_env, lake_settings


@pytest.fixture
def lake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> WarehouseSettings:
    """This test's own lake, also set as WAREHOUSE_* for code that reads the environment."""
    settings = lake_settings(tmp_path / "warehouse")
    for name, value in lake_env(settings).items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("DUCKDB_PATH", raising=False)
    return settings
