"""The upkeep asset and its schedule, as Dagster runs them (embedded lake)."""

from __future__ import annotations

from datetime import date
from typing import Any

import dagster as dg

from callminer_assets.defs.keys import MAINTENANCE_KEY
from callminer_assets.defs.resources import build_resources
from callminer_assets.defs.upkeep import maintenance
from callminer_assets.lib.settings import WarehouseSettings
from callminer_assets.lib.tables import QUARANTINE
from callminer_assets.transform.frames import frame_from_rows
from callminer_assets.warehouse.store import Warehouse
from tests.lake import lake_env

NO_RETENTION = {
    "ops": {
        "warehouse__maintenance": {"config": {"snapshot_retention_hours": 0, "file_grace_hours": 0}}
    }
}


def test_maintenance_reports_files_and_bytes_before_and_after(lake: WarehouseSettings) -> None:
    wh = Warehouse(lake)
    day = date(2025, 3, 1)
    # More rows than DuckLake inlines into the catalog, so each replace writes a file.
    frame = frame_from_rows(
        QUARANTINE,
        [{"interaction_date": day, "source": "interaction", "reason": "test"}] * 50,
    )
    for _ in range(3):
        wh.replace(QUARANTINE, frame, {"interaction_date": [day]})

    result = dg.materialize(
        [maintenance], resources=build_resources(lake_env(lake)), run_config=NO_RETENTION
    )

    assert result.success
    materialization = result.asset_materializations_for_node("warehouse__maintenance")[0]
    meta: dict[str, Any] = {k: v.value for k, v in materialization.metadata.items()}
    assert (meta["files_before"], meta["files_after"]) == (3, 1)
    assert meta["bytes_after"] < meta["bytes_before"]
    assert meta["old_files_deleted"] == 2
    assert meta["snapshots_after"] < meta["snapshots_before"]


def test_upkeep_schedule_is_on_by_default_and_targets_maintenance() -> None:
    from callminer_assets.definitions import defs

    schedule = defs.resolve_schedule_def("warehouse_upkeep")
    assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING
    assert (schedule.cron_schedule, schedule.execution_timezone) == ("30 3 * * *", "UTC")
    job = defs.resolve_job_def(schedule.job_name)
    assert job.asset_layer.selected_asset_keys == {MAINTENANCE_KEY}
