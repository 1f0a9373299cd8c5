"""Dagster metadata every materialisation carries: counts, a preview, the table.

The event log is not a store of customer data: by default the preview shows numbers, dates,
codes and record keys, and every other text cell as its length only (``‹42 chars›``):
no customer id, contact field, email address, utterance or transcript text. Set
``METADATA_PREVIEW=full`` (a developer on the sandbox) to see every value.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from datetime import date, timedelta
from typing import Any

import dagster as dg
import polars as pl

from callminer_assets.lib.tables import QUARANTINE, Table

PREVIEW_ROWS = 5
_PREVIEW_CHARS = 60
PREVIEW_ENV = "METADATA_PREVIEW"
# Text columns whose values are vocabularies, codes, hashes or record keys: shown in previews.
SHOWN_TEXT = frozenset(
    {
        "interaction_id",
        "agent_id",
        "channel",
        "direction",
        "disposition",
        "wrap_up_codes",
        "campaign",
        "queue",
        "source",
        "record_id",
        "reason",
        "status",
        "format",
        "transcript_hash",
        "speaker_role",
        "score_id",
        "score_name",
        "category_id",
        "category_name",
        "kit_code",
        "kit_version",
        "brick",
        "run_id",
        "topic_primary",
        "rule",
        "failed_rules",
        "team",
        "model_version",
        "train_months",
        "test_months",
        "top_features",
        "evaluator",
        "origin",
    }
)


def full_previews() -> bool:
    return os.environ.get(PREVIEW_ENV, "").strip().lower() == "full"


def redacted(frame: pl.DataFrame) -> pl.DataFrame:
    """``frame`` with every text (or nested) column outside SHOWN_TEXT replaced by its length."""
    hidden = []
    for name, dtype in frame.schema.items():
        if name in SHOWN_TEXT:
            continue
        if dtype == pl.String:
            hidden.append(pl.format("‹{} chars›", pl.col(name).str.len_chars()).alias(name))
        elif dtype.is_nested() or dtype == pl.Binary:
            hidden.append(
                pl.when(pl.col(name).is_null())
                .then(None)
                .otherwise(pl.lit("‹redacted›"))
                .alias(name)
            )
    return frame.with_columns(hidden) if hidden else frame


def markdown_preview(frame: pl.DataFrame, rows: int = PREVIEW_ROWS) -> str:
    """A small Markdown table (redacted unless METADATA_PREVIEW=full); long cells are cut."""
    head = frame.head(rows) if full_previews() else redacted(frame.head(rows))
    if head.is_empty():
        return "_no rows_"

    def cell(value: Any) -> str:
        text = "" if value is None else f"{value:.4g}" if isinstance(value, float) else str(value)
        text = text.replace("|", "\\|").replace("\n", " ").replace("\x00", "")
        return text if len(text) <= _PREVIEW_CHARS else text[: _PREVIEW_CHARS - 1] + "…"

    lines = ["| " + " | ".join(head.columns) + " |", "|" + "---|" * len(head.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in head.iter_rows()]
    return "\n".join(lines)


def counts_by(frame: pl.DataFrame, column: str) -> dict[str, int]:
    if frame.is_empty() or column not in frame.columns:
        return {}
    counted = frame.group_by(column).len().sort(column, nulls_last=True)
    return {str(k): int(n) for k, n in counted.iter_rows()}


def table_metadata(table: Table, frame: pl.DataFrame, **extra: Any) -> dict[str, Any]:
    """Row count, table name and preview, plus per-asset extras (counts per channel...)."""
    meta: dict[str, Any] = {
        "dagster/row_count": dg.MetadataValue.int(frame.height),
        "dagster/table_name": table.qualified,
        "table": dg.MetadataValue.text(table.qualified),
        "preview": dg.MetadataValue.md(markdown_preview(frame)),
    }
    for key, value in extra.items():
        value = round(value, 4) if isinstance(value, float) else value
        meta[key] = dg.MetadataValue.json(value) if isinstance(value, dict | list) else value
    return meta


Extra = Callable[[date, pl.DataFrame], Mapping[str, Any]]
"""Per-asset figures of one partition: its day (or month) and its rows."""


def materialization(
    context: dg.AssetExecutionContext,
    table: Table,
    frame: pl.DataFrame,
    *,
    asset_key: dg.AssetKey | None = None,
    by: str = "interaction_date",
    extra: Extra | None = None,
) -> dg.MaterializeResult:
    """``table``'s materialisation from the rows ``frame`` the run wrote, per partition.

    Over a range of partitions (a backfill run, the CLI's runs of several days) each
    partition's event gets the figures of its own rows (column ``by``) through
    ``add_asset_metadata(partition_key=...)``; the result itself carries none, because
    Dagster copies a result's metadata onto every partition of the range (decision 0017).
    """
    keys = context.partition_keys
    parts = {}
    if len(keys) > 1 and not frame.is_empty():
        parts = {d: f for (d,), f in frame.partition_by(by, as_dict=True).items()}

    def metadata(day: date, part: pl.DataFrame) -> dict[str, Any]:
        return table_metadata(table, part, **(extra(day, part) if extra else {}))

    if len(keys) == 1:
        return dg.MaterializeResult(
            asset_key=asset_key, metadata=metadata(date.fromisoformat(keys[0]), frame)
        )
    for key in keys:
        day = date.fromisoformat(key)
        context.add_asset_metadata(
            metadata(day, parts.get(day, frame.clear())), asset_key=asset_key, partition_key=key
        )
    return dg.MaterializeResult(asset_key=asset_key)


def quarantine_materialization(
    context: dg.AssetExecutionContext, asset_key: dg.AssetKey, rows: pl.DataFrame
) -> dg.MaterializeResult:
    """One writer's rows of ``callminer.quarantine`` (``asset_key``), counted per reason."""
    return materialization(
        context,
        QUARANTINE,
        rows,
        asset_key=asset_key,
        extra=lambda day, part: {"per_reason": counts_by(part, "reason")},
    )


def partition_days(context: dg.AssetExecutionContext) -> list[date]:
    """The UTC days of this run: one partition or a backfill range of several."""
    window = context.partition_time_window
    day, end = window.start.date(), window.end.date()
    days = []
    while day < end:
        days.append(day)
        day += timedelta(days=1)
    return days


def partition_months(context: dg.AssetExecutionContext) -> list[date]:
    """First days of the UTC months of this run: one monthly partition or a range of several."""
    window = context.partition_time_window
    month, end = window.start.date().replace(day=1), window.end.date()
    months = []
    while month < end:
        months.append(month)
        month = (month + timedelta(days=32)).replace(day=1)
    return months
