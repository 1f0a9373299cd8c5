"""A private lake per test: the embedded configuration (SQLite catalog + folder) on tmp_path."""

from __future__ import annotations

from pathlib import Path

from callminer_assets.lib.settings import WarehouseSettings


def lake_settings(root: Path) -> WarehouseSettings:
    """The embedded configuration under ``root`` (nothing is created until first use)."""
    return WarehouseSettings(
        catalog=f"sqlite:{root / 'warehouse.sqlite'}", data_path=f"{root}/lake/"
    )


def lake_env(settings: WarehouseSettings) -> dict[str, str]:
    """The environment variables a user sets for ``settings``."""
    return {"WAREHOUSE_CATALOG": settings.catalog, "WAREHOUSE_DATA_PATH": settings.data_path}
