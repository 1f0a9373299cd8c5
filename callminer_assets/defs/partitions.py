"""Partitions: UTC days for everything extracted, months for the roll-ups."""

from __future__ import annotations

import os
import warnings
from datetime import date

import dagster as dg

# backfill_policy is beta but is exactly what we need (see docs/decisions/0003).
warnings.filterwarnings("ignore", category=dg.BetaWarning)

START_DATE = os.environ.get("CALLMINER_START_DATE", "2025-01-01")

# end_offset=1: today is a partition too, so the polling sensor can refresh it.
daily_partitions = dg.DailyPartitionsDefinition(start_date=START_DATE, timezone="UTC", end_offset=1)
monthly_partitions = dg.MonthlyPartitionsDefinition(
    start_date=date.fromisoformat(START_DATE).replace(day=1).isoformat(), timezone="UTC"
)

# A 90-day backfill becomes 3 runs, not 90: each run extracts a range of days.
DAILY_BACKFILL_POLICY = dg.BackfillPolicy.multi_run(max_partitions_per_run=31)
MONTHLY_BACKFILL_POLICY = dg.BackfillPolicy.multi_run(max_partitions_per_run=6)

# Steps that call an API share its pool (limit 1 in dagster.yaml): the client's rate
# limiter is per process, so concurrent runs take turns on an API instead of adding up
# past its rate. Warehouse writes need no pool (DuckLake transactions, retried on conflict).
CALLMINER_POOL = "callminer_api"
SEMARIZE_POOL = "semarize_api"

# Tags that make one run cover a range of partitions (what backfills with a
# BackfillPolicy send); dagster exposes no public constant for them.
RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"
