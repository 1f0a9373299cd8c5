"""``python -m callminer_assets run``: the whole pipeline headless, then a summary.

Runs the same Dagster assets the UI shows, on the instance at ``DAGSTER_HOME``,
as a few range runs (one per month of days, then the months, then the models)
instead of one run per partition.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from datetime import date, timedelta

import dagster as dg

from callminer_assets import rescore
from callminer_assets.defs.partitions import (
    RANGE_END_TAG,
    RANGE_START_TAG,
    daily_partitions,
    monthly_partitions,
)
from callminer_assets.defs.recovery import recover, stop_waiting_runs_on_signal
from callminer_assets.lib.tables import TABLES
from callminer_assets.warehouse.store import connect_published


def _month_chunks(start: date, end: date) -> list[tuple[date, date]]:
    chunks, day = [], start
    while day <= end:
        next_month = (day.replace(day=1) + timedelta(days=32)).replace(day=1)
        last = min(end, next_month - timedelta(days=1))
        chunks.append((day, last))
        day = last + timedelta(days=1)
    return chunks


def _range_tags(first: str, last: str) -> dict[str, str]:
    return {
        RANGE_START_TAG: first,
        RANGE_END_TAG: last,
        "callminer/trigger": "cli",
    }


def _materialize(
    selection: dg.AssetSelection, instance: dg.DagsterInstance, tags: dict[str, str]
) -> bool:
    from callminer_assets.definitions import ALL_ASSETS, defs

    result = dg.materialize(
        ALL_ASSETS,
        instance=instance,
        selection=selection,
        tags=tags,
        resources=dict(defs.resources or {}),
        raise_on_error=False,
    )
    if not result.success:
        print(f"!! run {result.run_id} failed; its logs: `make dev` -> Runs", flush=True)
    return result.success


def _whole_months(chunks: list[tuple[date, date]]) -> list[str]:
    """Monthly partitions the window covers entirely (a half month is not a month's features)."""
    existing = set(monthly_partitions.get_partition_keys())
    return [
        first.isoformat()
        for first, last in chunks
        if first.day == 1 and (last + timedelta(days=1)).day == 1 and first.isoformat() in existing
    ]


def run(start: date, end: date) -> bool:
    """Days (one run per month of days), whole months, the models, the months' reports;
    False on a failure."""
    from callminer_assets.definitions import (
        DAILY_ASSETS,
        MONTHLY_ASSETS,
        REPORT_ASSETS,
        UNPARTITIONED_ASSETS,
    )

    instance = dg.DagsterInstance.get()
    if done := recover(instance):  # a killed earlier run must not wedge this one
        print(f"== {done.describe()}", flush=True)
    stop_waiting_runs_on_signal(instance)
    t0 = time.monotonic()
    chunks = _month_chunks(start, end)
    for first, last in chunks:
        print(f"== days {first} .. {last}", flush=True)
        if not _materialize(
            dg.AssetSelection.assets(*DAILY_ASSETS), instance, _range_tags(str(first), str(last))
        ):
            return False
    months = _whole_months(chunks)
    if len(months) < len(chunks):
        print("== months only partly in the window (or not over yet) get no monthly features")
    if months:
        print(f"== months {months[0]} .. {months[-1]}", flush=True)
        if not _materialize(
            dg.AssetSelection.assets(*MONTHLY_ASSETS), instance, _range_tags(months[0], months[-1])
        ):
            return False
    print("== roster and attrition model", flush=True)
    ok = _materialize(
        dg.AssetSelection.assets(*UNPARTITIONED_ASSETS), instance, {"callminer/trigger": "cli"}
    )
    if ok and months:
        print(f"== monthly reports {months[0]} .. {months[-1]}", flush=True)
        ok = _materialize(
            dg.AssetSelection.assets(*REPORT_ASSETS), instance, _range_tags(months[0], months[-1])
        )
    print(f"== done in {time.monotonic() - t0:.0f} s\n", flush=True)
    return ok


def summary(duckdb_path: str) -> str:
    """Rows per table and the headline numbers, read from the published warehouse."""
    con = connect_published(duckdb_path)
    try:
        present = {
            f"{s}.{n}"
            for s, n in con.execute(
                "SELECT schema_name, table_name FROM duckdb_tables()"
            ).fetchall()
        }
        lines = ["table                                  rows"]
        for name in TABLES:
            if name in present:
                (n,) = con.execute(f"SELECT count(*) FROM {name}").fetchone() or (0,)  # noqa: S608 - names from schema.py
                lines.append(f"{name:<38} {n:>8}")
        if "callminer.transcripts" in present:
            for status, n in con.execute(
                "SELECT status, count(*) FROM callminer.transcripts GROUP BY 1 ORDER BY 1"
            ).fetchall():
                lines.append(f"transcripts {status:<26} {n:>8}")
        if "semarize.evaluations" in present:
            (n,) = con.execute(
                "SELECT count(DISTINCT interaction_id) FROM semarize.evaluations WHERE status = 'succeeded'"
            ).fetchone() or (0,)
            lines.append(f"{'interactions evaluated':<38} {n:>8}")
        if "analytics.interaction_scores" in present:
            lines.append("mean compliance by channel:")
            for channel, mean, n in con.execute(
                "SELECT channel, avg(compliance_score), count(*) FROM analytics.interaction_scores "
                "GROUP BY 1 ORDER BY 1"
            ).fetchall():
                score = "n/a" if mean is None else f"{mean:.3f}"
                lines.append(f"  {channel!s:<8} {score}  ({n} interactions)")
    finally:
        con.close()
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    from callminer_assets.warehouse.store import DEFAULT_DUCKDB_PATH

    parser = argparse.ArgumentParser(
        prog="python -m callminer_assets",
        description="Run the callminer-assets pipeline headless (sandbox unless credentials are set).",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p_run = sub.add_parser(
        "run", help="materialise every asset for a date range, then print a summary"
    )
    p_run.add_argument(
        "--start", type=date.fromisoformat, required=True, help="first UTC day, YYYY-MM-DD"
    )
    p_run.add_argument(
        "--end", type=date.fromisoformat, required=True, help="last UTC day (inclusive)"
    )
    p_sum = sub.add_parser("summary", help="print the warehouse summary only")
    rescore.add_parser(sub)
    for p in (p_run, p_sum):
        p.add_argument(
            "--duckdb",
            default=None,
            help=f"warehouse path (default: $DUCKDB_PATH or {DEFAULT_DUCKDB_PATH})",
        )
    args = parser.parse_args(argv)
    if args.command == "rescore":
        return rescore.command(args)

    import os

    path = args.duckdb or os.environ.get("DUCKDB_PATH") or DEFAULT_DUCKDB_PATH
    if args.duckdb:
        os.environ["DUCKDB_PATH"] = args.duckdb
    ok = True
    if args.command == "run":
        if args.end < args.start:
            parser.error("--end is before --start")
        first = daily_partitions.get_first_partition_key()
        if first and str(args.start) < first:
            parser.error(
                f"--start is before the first partition {first} (set CALLMINER_START_DATE)"
            )
        ok = run(args.start, args.end)
    if not os.path.exists(path):
        parser.exit(
            1,
            f"no warehouse at {path} yet: run `make run` (or `python -m callminer_assets run ...`)\n",
        )
    print(summary(path))
    print(f"\nwarehouse: {os.path.abspath(path)}")
    print(
        'query it:  .venv/bin/python -c "import callminer_assets as ca; '
        "print(ca.connect().sql('SELECT channel, count(*) FROM callminer.interactions GROUP BY 1'))\""
    )
    print("open the UI: make dev  ->  http://127.0.0.1:3000")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
