"""Upkeep keeps disk use bounded by the data, not by the number of re-runs."""

from __future__ import annotations

import os
import time
from datetime import date, timedelta
from pathlib import Path

import polars as pl

from callminer_assets.lib.settings import WarehouseSettings
from callminer_assets.lib.tables import QUARANTINE
from callminer_assets.transform.frames import frame_from_rows
from callminer_assets.warehouse.store import Warehouse
from callminer_assets.warehouse.upkeep import run_upkeep

DAYS = [date(2025, 1, 1) + timedelta(days=n) for n in range(3)]
RERUNS = 20


def _day(day: date, rows: int = 200) -> pl.DataFrame:
    return frame_from_rows(
        QUARANTINE,
        [
            {
                "interaction_date": day,
                "source": "interaction",
                "record_id": f"INT-{day:%Y%m%d}-{n:05d}",
                "reason": "unknown channel 'fax'",
                "payload": f'{{"id": {n}, "channel": "fax"}}',
            }
            for n in range(rows)
        ],
    )


def _replace(wh: Warehouse, day: date) -> None:
    wh.replace(QUARANTINE, _day(day), {"interaction_date": [day]})


def _disk(wh: Warehouse) -> tuple[int, int]:
    files = [p for p in Path(wh.settings.data_path).rglob("*") if p.is_file()]
    return len(files), sum(p.stat().st_size for p in files)


def test_reruns_then_upkeep_keep_disk_at_one_copy(lake: WarehouseSettings) -> None:
    wh = Warehouse(lake)
    for day in DAYS:
        _replace(wh, day)
    once_files, once_bytes = _disk(wh)
    assert once_files == len(DAYS)  # one file per daily partition

    for _ in range(RERUNS):
        for day in DAYS:
            _replace(wh, day)
    grown_files, grown_bytes = _disk(wh)
    assert grown_files == len(DAYS) * (RERUNS + 1)  # DuckLake keeps every replaced file

    report = run_upkeep(wh, snapshot_retention=timedelta(0), file_grace=timedelta(0))

    assert (report.before.files, report.before.bytes) == (grown_files, grown_bytes)
    assert (report.after.files, report.after.bytes) == _disk(wh)
    assert report.after.files == once_files
    assert report.after.bytes <= 1.2 * once_bytes  # not RERUNS-fold
    assert report.old_files_deleted == grown_files - once_files
    assert report.snapshots_after == 1 < report.snapshots_before
    # The data itself is untouched: each day once, complete.
    counts = wh.query(
        "SELECT interaction_date, count(*), count(DISTINCT record_id) FROM callminer.quarantine"
        " GROUP BY 1 ORDER BY 1"
    )
    assert counts.rows() == [(day, 200, 200) for day in DAYS]


def test_upkeep_keeps_the_retention_window_and_fresh_files(lake: WarehouseSettings) -> None:
    """Default policy right after re-runs: recent snapshots stay readable (time travel)."""
    wh = Warehouse(lake)
    _replace(wh, DAYS[0])
    _replace(wh, DAYS[0])
    before = _disk(wh)
    report = run_upkeep(wh)  # 1 day of snapshots, 1 hour of grace
    assert _disk(wh) == before == (report.after.files, report.after.bytes)
    assert report.snapshots_after == report.snapshots_before
    assert report.old_files_deleted == 0


def test_upkeep_deletes_old_orphans_only(lake: WarehouseSettings) -> None:
    """A file no snapshot knows (a writer killed mid-write) goes once it is old enough."""
    wh = Warehouse(lake)
    _replace(wh, DAYS[0])
    folder = next(Path(wh.settings.data_path).rglob("*.parquet")).parent
    old, fresh = folder / "ducklake-orphan-old.parquet", folder / "ducklake-orphan-new.parquet"
    old.write_bytes(b"PAR1")
    fresh.write_bytes(b"PAR1")
    two_days_ago = time.time() - 2 * 86400
    os.utime(old, (two_days_ago, two_days_ago))

    report = run_upkeep(wh)

    assert report.orphaned_files_deleted == 1
    assert not old.exists() and fresh.exists()
    assert wh.query("SELECT count(*) AS n FROM callminer.quarantine")["n"].item() == 200
