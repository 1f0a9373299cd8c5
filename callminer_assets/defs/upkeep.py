"""The lake's upkeep as an asset on a daily schedule (on by default): disk use follows the
data, not the number of runs. The logic is ``warehouse/upkeep.py``."""

from datetime import timedelta

import dagster as dg

from callminer_assets.defs.keys import MAINTENANCE_KEY
from callminer_assets.defs.partitions import CALLMINER_POOL, SEMARIZE_POOL
from callminer_assets.defs.resources import WarehouseResource
from callminer_assets.warehouse.upkeep import (
    DEFAULT_FILE_GRACE,
    DEFAULT_SNAPSHOT_RETENTION,
    run_upkeep,
)

UPKEEP_CRON = "30 3 * * *"
"""03:30 UTC: after the night's polling catch-up, before analysts start."""


def prepare_pools(instance: dg.DagsterInstance) -> list[str]:
    """Create the API pools on the instance before any worker claims them (the one-off setup
    runs this asset first): two runs creating a pool at once on PostgreSQL fail one of them,
    because Dagster inserts the row, catches the duplicate and updates in the aborted
    transaction. Returns the pools created."""
    storage = instance.event_log_storage
    if not storage.supports_global_concurrency_limits:
        return []
    existing = storage.get_concurrency_keys()
    missing = [pool for pool in (CALLMINER_POOL, SEMARIZE_POOL) if pool not in existing]
    for pool in missing:
        storage.initialize_concurrency_limit_to_default(pool)
    return missing


class UpkeepConfig(dg.Config):
    """How much history the lake keeps (hours); the defaults suit a daily schedule."""

    snapshot_retention_hours: float = DEFAULT_SNAPSHOT_RETENTION.total_seconds() / 3600
    file_grace_hours: float = DEFAULT_FILE_GRACE.total_seconds() / 3600


@dg.asset(
    key=MAINTENANCE_KEY,
    group_name="warehouse",
    kinds={"ducklake"},
    description=(
        "Expires lake snapshots older than the retention, merges small files and deletes "
        "files nothing references (the first run also creates the tables and the API "
        "pools); metadata: files and bytes before and after."
    ),
)
def maintenance(
    context: dg.AssetExecutionContext, config: UpkeepConfig, warehouse: WarehouseResource
) -> dg.MaterializeResult:
    pools_created = prepare_pools(context.instance)
    report = run_upkeep(
        warehouse.warehouse(),
        snapshot_retention=timedelta(hours=config.snapshot_retention_hours),
        file_grace=timedelta(hours=config.file_grace_hours),
    )
    context.log.info(
        "lake upkeep: %d files / %d bytes -> %d files / %d bytes",
        report.before.files,
        report.before.bytes,
        report.after.files,
        report.after.bytes,
    )
    return dg.MaterializeResult(
        metadata={
            "files_before": report.before.files,
            "files_after": report.after.files,
            "bytes_before": report.before.bytes,
            "bytes_after": report.after.bytes,
            "snapshots_before": report.snapshots_before,
            "snapshots_after": report.snapshots_after,
            "files_merged": report.files_merged,
            "files_written_by_merge": report.files_written_by_merge,
            "old_files_deleted": report.old_files_deleted,
            "orphaned_files_deleted": report.orphaned_files_deleted,
            "pools_created": pools_created,
        }
    )


upkeep_schedule = dg.ScheduleDefinition(
    name="warehouse_upkeep",
    target=dg.AssetSelection.assets(MAINTENANCE_KEY),
    cron_schedule=UPKEEP_CRON,
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Daily lake upkeep: expire snapshots, merge small files, delete unreferenced files.",
)
