"""Upkeep of the lake: expire old snapshots, merge small files, delete unreferenced files.

DuckLake never deletes a data file on its own: a replaced day's files stay behind for
time travel, so re-running a day 100 times would keep 100 copies of it. Upkeep bounds
disk use by the data plus what the retention window keeps:

1. ``ducklake_expire_snapshots``: snapshots older than the retention window go; the files
   only they referenced are scheduled for deletion.
2. ``ducklake_merge_adjacent_files``: small files of one partition become one (DuckLake
   keeps each snapshot's view of them, so time travel is unaffected).
3. ``ducklake_cleanup_old_files``: files scheduled for deletion longer ago than the grace
   period are deleted (the grace protects queries still scanning them).
4. ``ducklake_delete_orphaned_files``: files in the data path that the catalog does not
   know (e.g. of a writer killed mid-transaction), older than the grace period.

Each step is its own transaction, retried like every write when it races a writer.
See ``docs/decisions/0010-scale-out-and-upkeep.md``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import duckdb

from callminer_assets.warehouse.store import ALIAS, Warehouse

DEFAULT_SNAPSHOT_RETENTION = timedelta(days=1)
"""Time travel kept: a bad run of yesterday can still be read back (and undone)."""
DEFAULT_FILE_GRACE = timedelta(hours=1)
"""No query or writer transaction of this pipeline runs that long, so none still needs a
file that has been unreferenced for that long."""


@dataclass(frozen=True, slots=True)
class Footprint:
    """What the lake's data path holds: files and bytes, as listed by the file system or S3."""

    files: int
    bytes: int


@dataclass(frozen=True, slots=True)
class UpkeepReport:
    before: Footprint
    after: Footprint
    snapshots_before: int
    snapshots_after: int
    files_merged: int
    files_written_by_merge: int
    old_files_deleted: int
    orphaned_files_deleted: int


def footprint(con: duckdb.DuckDBPyConnection, data_path: str) -> Footprint:
    """Count and size every file under ``data_path`` (sizes only: no file is read)."""
    pattern = data_path.rstrip("/") + "/**"
    # read_blob refuses a pattern that matches nothing, as on a lake with no data yet.
    (listed,) = con.execute("SELECT count(*) FROM glob(?)", [pattern]).fetchone() or (0,)
    if not listed:
        return Footprint(0, 0)
    files, size = con.execute(
        "SELECT count(*), coalesce(sum(size), 0) FROM read_blob(?)", [pattern]
    ).fetchone() or (0, 0)
    return Footprint(int(files), int(size))


def _snapshots(con: duckdb.DuckDBPyConnection) -> int:
    (count,) = con.execute("SELECT count(*) FROM ducklake_snapshots(?)", [ALIAS]).fetchone() or (0,)
    return int(count)


def run_upkeep(
    warehouse: Warehouse,
    *,
    snapshot_retention: timedelta = DEFAULT_SNAPSHOT_RETENTION,
    file_grace: timedelta = DEFAULT_FILE_GRACE,
) -> UpkeepReport:
    """Expire, merge, clean up (see the module doc); the footprint before and after."""
    data_path = warehouse.settings.data_path
    with warehouse.connect() as con:
        before, snapshots_before = footprint(con, data_path), _snapshots(con)

    def call(sql: str, params: list[object], what: str) -> list[tuple[object, ...]]:
        return warehouse.transaction(lambda c: c.execute(sql, params).fetchall(), what)

    call(
        "CALL ducklake_expire_snapshots(?, older_than => ?)",
        [ALIAS, datetime.now(UTC) - snapshot_retention],
        "expiring old snapshots",
    )
    merged = call("CALL ducklake_merge_adjacent_files(?)", [ALIAS], "merging small files")
    # The grace counts from now: files the two steps above just unreferenced count too.
    delete_before = datetime.now(UTC) - file_grace
    old = call(
        "CALL ducklake_cleanup_old_files(?, older_than => ?)",
        [ALIAS, delete_before],
        "deleting files of expired snapshots",
    )
    orphans = call(
        "CALL ducklake_delete_orphaned_files(?, older_than => ?)",
        [ALIAS, delete_before],
        "deleting orphaned files",
    )
    with warehouse.connect() as con:
        after, snapshots_after = footprint(con, data_path), _snapshots(con)
    # merge_adjacent_files answers (schema, table, files processed, files created) per table.
    return UpkeepReport(
        before=before,
        after=after,
        snapshots_before=snapshots_before,
        snapshots_after=snapshots_after,
        files_merged=sum(int(row[2]) for row in merged),  # type: ignore[call-overload]
        files_written_by_merge=sum(int(row[3]) for row in merged),  # type: ignore[call-overload]
        old_files_deleted=len(old),
        orphaned_files_deleted=len(orphans),
    )
