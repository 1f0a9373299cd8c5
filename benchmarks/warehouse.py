"""Warehouse benchmark: what a partition replace costs on a big lake, through ``Warehouse.replace``.

Builds two embedded lakes (SQLite catalog + Parquet folder) of synthetic
``callminer.interactions`` rows, ``--rows-per-day`` a day: one of ``--small-days`` days and
one of ``--days`` days, loaded in month-sized replaces (as range runs write). Then:

- ``replace_ratio_365_vs_10``: median time of one day's replace on the big lake over the
  same on the small one (1.0 = a write costs what it writes, not what the lake holds);
- ``bulk_rows_per_s``: rows per second of the month-sized loads;
- ``copy_cost_removed_s``: what the old warehouse paid after every write: copying its
  single DuckDB file. Measured by copying (and fsyncing) a DuckDB file holding the big
  lake's rows, as the old ``Warehouse.publish`` did;
- ``disk_mb_after_100_reruns``: the small lake's data folder after ``--reruns`` replaces of
  one day and one upkeep pass (no retention), against its size before them.

The last line printed is machine-readable:
``warehouse: replace_ratio_365_vs_10=X.XX bulk_rows_per_s=N copy_cost_removed_s=X.XX
disk_mb_after_100_reruns=X.X``
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl

from callminer_assets.lib.settings import WarehouseSettings
from callminer_assets.lib.tables import INTERACTIONS, Table, polars_schema
from callminer_assets.warehouse.store import Warehouse
from callminer_assets.warehouse.upkeep import footprint, run_upkeep

FIRST_DAY = date(2025, 1, 1)
WORDS = [f"{w}{n}" for w in ("queue", "agent", "billing", "support", "sales") for n in range(8)]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows-per-day", type=int, default=50_000)
    p.add_argument("--days", type=int, default=365, help="days in the big lake")
    p.add_argument("--small-days", type=int, default=10, help="days in the small lake")
    p.add_argument("--days-per-load", type=int, default=31, help="days per bulk replace")
    p.add_argument("--repeats", type=int, default=9, help="timed replaces per lake")
    p.add_argument("--reruns", type=int, default=100, help="replaces of one day before upkeep")
    p.add_argument("--workdir", type=Path, default=None, help="default: a temp dir, removed")
    return p.parse_args(argv)


def synthetic_days(table: Table, days: list[date], rows_per_day: int, seed: int) -> pl.DataFrame:
    """``rows_per_day`` rows per day with plausible widths: ids, codes, JSON, times, numbers."""
    rng = np.random.default_rng(seed)
    n = rows_per_day * len(days)
    day_index = np.repeat(np.arange(len(days)), rows_per_day)
    day_col = pl.Series(days).gather(day_index)
    midnight = pl.Series([datetime(d.year, d.month, d.day, tzinfo=UTC) for d in days]).gather(
        day_index
    )
    seq = pl.Series(np.tile(np.arange(rows_per_day), len(days)))
    cols: dict[str, pl.Series] = {}
    for column in table.columns:
        name, kind = column.name, column.type
        if name == table.partition_column:
            values = day_col
        elif kind == "VARCHAR" and name.endswith("_id"):
            stamp, number = day_col.dt.strftime("%Y%m%d"), seq.cast(pl.String).str.zfill(6)
            values = pl.select(
                pl.concat_str([pl.lit(name[:3].upper()), stamp, number], separator="-")
            ).to_series()
        elif kind == "VARCHAR":
            values = pl.Series(WORDS).gather(rng.integers(0, len(WORDS), n))
        elif kind == "JSON":
            codes = pl.Series(rng.integers(0, 1000, n)).cast(pl.String)
            values = pl.select(
                pl.concat_str([pl.lit('{"code": '), codes, pl.lit(', "source": "bench"}')])
            ).to_series()
        elif kind == "TIMESTAMPTZ":
            offsets = pl.Series(rng.integers(0, 86_400_000_000, n)).cast(pl.Duration("us"))
            values = midnight + offsets
        elif kind == "DOUBLE":
            values = pl.Series(rng.gamma(2.0, 150.0, n))
        elif kind in ("INTEGER", "BIGINT"):
            values = pl.Series(rng.integers(0, 10_000, n))
        elif kind == "BOOLEAN":
            values = pl.Series(rng.random(n) < 0.5)
        else:
            raise ValueError(f"no synthetic values for {kind}")
        cols[name] = values.alias(name)
    return pl.DataFrame(cols).cast(polars_schema(table))


def lake(root: Path) -> Warehouse:
    return Warehouse(
        WarehouseSettings(catalog=f"sqlite:{root / 'warehouse.sqlite'}", data_path=f"{root}/lake/")
    )


def load(wh: Warehouse, days: list[date], args: argparse.Namespace) -> tuple[int, float]:
    """Month-sized replaces, as range runs write; (rows, seconds spent in replace)."""
    rows, spent = 0, 0.0
    for start in range(0, len(days), args.days_per_load):
        chunk = days[start : start + args.days_per_load]
        frame = synthetic_days(INTERACTIONS, chunk, args.rows_per_day, seed=start)
        t0 = time.perf_counter()
        rows += wh.replace(INTERACTIONS, frame, {"interaction_date": chunk})
        spent += time.perf_counter() - t0
    return rows, spent


def median_s(action: Callable[[], object], repeats: int) -> float:
    timings = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        action()
        timings.append(time.perf_counter() - t0)
    return statistics.median(timings)


def replace_day_s(lakes: list[Warehouse], day: date, args: argparse.Namespace) -> list[float]:
    """Median time of replacing ``day`` in each lake, taking turns so both see the same
    background load (the frame is built once, outside the timing)."""
    frame = synthetic_days(INTERACTIONS, [day], args.rows_per_day, seed=99)
    timings: list[list[float]] = [[] for _ in lakes]
    for _ in range(args.repeats):
        for wh, spent in zip(lakes, timings, strict=True):
            t0 = time.perf_counter()
            wh.replace(INTERACTIONS, frame, {"interaction_date": [day]})
            spent.append(time.perf_counter() - t0)
    return [statistics.median(spent) for spent in timings]


def copy_cost_s(wh: Warehouse, workdir: Path, repeats: int) -> tuple[float, int]:
    """The old publish: copy + fsync of a single DuckDB file holding the same rows."""
    old = workdir / "old_single_file.duckdb"
    with wh.connect() as con:
        con.execute(f"ATTACH '{old}' AS old_file")  # ATTACH takes no parameters; our own path
        con.execute("CREATE SCHEMA old_file.callminer")
        con.execute(
            "CREATE TABLE old_file.callminer.interactions AS SELECT * FROM warehouse.callminer.interactions"
        )
        con.execute("DETACH old_file")
    copy = workdir / "old_single_file.copy.duckdb"

    def publish() -> None:
        shutil.copyfile(old, copy)
        with open(copy, "rb") as fh:
            os.fsync(fh.fileno())

    cost = median_s(publish, repeats)
    size = old.stat().st_size
    old.unlink()
    copy.unlink()
    return cost, size


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bench-warehouse-"))
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        days = [FIRST_DAY + timedelta(days=n) for n in range(args.days)]
        small, big = lake(workdir / "small"), lake(workdir / "big")
        load(small, days[: args.small_days], args)
        with small.connect() as con:
            loaded = footprint(con, small.settings.data_path)
        rows, spent = load(big, days, args)
        bulk_rows_per_s = rows / spent
        print(f"bulk: {rows} rows in {spent:.1f} s in replaces of {args.days_per_load} days")

        day = days[args.small_days // 2]
        small_s, big_s = replace_day_s([small, big], day, args)
        ratio = big_s / small_s
        print(
            f"replace one day ({args.rows_per_day} rows): {small_s:.3f} s on {args.small_days} days,"
            f" {big_s:.3f} s on {args.days} days"
        )

        copy_s, old_bytes = copy_cost_s(big, workdir, 3)
        print(f"old publish: copying a {old_bytes / 1e6:.0f} MB DuckDB file takes {copy_s:.2f} s")

        frame = synthetic_days(INTERACTIONS, [day], args.rows_per_day, seed=7)
        for _ in range(args.reruns):
            small.replace(INTERACTIONS, frame, {"interaction_date": [day]})
        report = run_upkeep(small, snapshot_retention=timedelta(0), file_grace=timedelta(0))
        (kept,) = small.query("SELECT count(*) FROM callminer.interactions").row(0)
        if kept != args.small_days * args.rows_per_day:
            raise RuntimeError(f"upkeep lost rows: {kept} left")
        print(
            f"small lake: {loaded.bytes / 1e6:.1f} MB loaded, {report.before.bytes / 1e6:.1f} MB"
            f" after {args.reruns} more reruns of one day, {report.after.bytes / 1e6:.1f} MB"
            f" after upkeep ({report.old_files_deleted} files deleted)"
        )
        print(
            f"warehouse: replace_ratio_{args.days}_vs_{args.small_days}={ratio:.2f}"
            f" bulk_rows_per_s={bulk_rows_per_s:.0f} copy_cost_removed_s={copy_s:.2f}"
            f" disk_mb_after_{args.reruns}_reruns={report.after.bytes / 1e6:.1f}"
        )
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
