"""Extraction assets: interactions (+ quarantine), transcripts (+ utterances).

Each run handles one day or a backfill range of days; every write replaces
exactly those days' rows, so re-running is idempotent.
"""

import asyncio
from collections.abc import Callable, Iterator, Sequence
from contextlib import aclosing
from datetime import UTC, date, datetime, timedelta
from typing import Any

import dagster as dg
import polars as pl

from callminer_assets.defs.callminer.checks import (
    INTERACTION_CHECKS,
    TRANSCRIPT_CHECKS,
    interaction_check_results,
    transcript_check_results,
)
from callminer_assets.defs.keys import (
    INTERACTIONS_KEY,
    NATIVE_CATEGORIES_KEY,
    NATIVE_SCORES_KEY,
    QUARANTINE_KEY,
    TRANSCRIPT_QUARANTINE_KEY,
    TRANSCRIPTS_KEY,
    UTTERANCES_KEY,
)
from callminer_assets.defs.metadata import (
    counts_by,
    materialization,
    partition_days,
    quarantine_materialization,
)
from callminer_assets.defs.partitions import CALLMINER_POOL, DAILY_BACKFILL_POLICY, daily_partitions
from callminer_assets.defs.resources import (
    CallMinerResource,
    SandboxResource,
    WarehouseResource,
)
from callminer_assets.lib.errors import OriginConflict
from callminer_assets.lib.holdpoint import hold
from callminer_assets.lib.models import TranscriptFetch, Window
from callminer_assets.lib.tables import (
    INTERACTIONS,
    NATIVE_CATEGORIES,
    NATIVE_SCORES,
    QUARANTINE,
    TRANSCRIPTS,
    UTTERANCES,
)
from callminer_assets.transform.normalise import (
    NormalisedTranscripts,
    keep_or_refresh,
    normalise_transcripts,
    stored_available,
)
from callminer_assets.transform.validate import validate_interactions
from callminer_assets.warehouse.store import Warehouse, Write

_COMMON: dict[str, Any] = {
    "partitions_def": daily_partitions,
    "backfill_policy": DAILY_BACKFILL_POLICY,
    "pool": CALLMINER_POOL,
}


def _announce_source(context: dg.AssetExecutionContext, callminer: CallMinerResource) -> None:
    if callminer.uses_sandbox:
        context.log.info(
            "CALLMINER_CLIENT_ID is not set: using the built-in sandbox (synthetic data)"
        )


def refuse_other_origin(wh: Warehouse, days: list[date], origin: str) -> None:
    """Raise ``OriginConflict`` when ``days`` already hold interactions of another origin.

    A warehouse never silently mixes sandbox and live rows (or two tenants): the run stops
    before any request, naming both origins, unless told to replace them.
    """
    found = wh.query(
        "SELECT interaction_date, coalesce(origin, 'unknown') AS origin "
        "FROM callminer.interactions "
        "WHERE interaction_date IN (SELECT unnest(?::DATE[])) AND origin IS DISTINCT FROM ? "
        "ORDER BY 1 LIMIT 1",
        [days, origin],
    )
    if found.height:
        day, other = found.row(0)
        raise OriginConflict(
            f"{day} already holds callminer.interactions from origin {other!r}, this run's "
            f"origin is {origin!r}: refusing to mix them "
            "(WAREHOUSE_REPLACE_ORIGIN=true replaces those days)"
        )


async def _list_days(
    callminer: CallMinerResource,
    sandbox: SandboxResource,
    days: list[date],
    log: Any,
    guard: Callable[[str], None],
) -> tuple[str, dict[date, list[Any]], tuple[pl.DataFrame, pl.DataFrame] | None]:
    """The source's origin, each day's raw records (one export for all of them on the bulk
    backend), and CallMiner's own scores and categories when the backend has them.
    ``guard(origin)`` runs before any request."""
    async with aclosing(callminer.source(sandbox, logger=log)) as source:
        guard(source.origin)
        await source.prepare(days, fresh=True)
        listings = await asyncio.gather(
            *(source.list_interactions(Window.for_day(day)) for day in days)
        )
        native = source.native_tables(days)
    return source.origin, dict(zip(days, listings, strict=True)), native


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            INTERACTIONS_KEY,
            description="One row per valid CallMiner interaction of the UTC day.",
            kinds={"duckdb"},
            group_name="callminer",
        ),
        dg.AssetSpec(
            QUARANTINE_KEY,
            description="Records refused at validation, with the reason and the payload as received.",
            kinds={"duckdb"},
            group_name="callminer",
            skippable=True,
        ),
        dg.AssetSpec(
            NATIVE_SCORES_KEY,
            description="CallMiner's own scores per interaction (Bulk Export backend only).",
            kinds={"duckdb"},
            group_name="callminer",
            skippable=True,
        ),
        dg.AssetSpec(
            NATIVE_CATEGORIES_KEY,
            description="CallMiner's own category hits per interaction (Bulk Export backend only).",
            kinds={"duckdb"},
            group_name="callminer",
            skippable=True,
        ),
    ],
    check_specs=INTERACTION_CHECKS,
    can_subset=True,
    **_COMMON,
)
def interactions(
    context: dg.AssetExecutionContext,
    callminer: CallMinerResource,
    sandbox: SandboxResource,
    warehouse: WarehouseResource,
) -> Any:
    """List each day's window, validate every record, land valid rows and quarantine the rest."""
    _announce_source(context, callminer)
    days = partition_days(context)
    extracted_at = datetime.now(UTC)
    wh = warehouse.warehouse()

    def guard(origin: str) -> None:
        if warehouse.replace_origin:
            context.log.warning(f"WAREHOUSE_REPLACE_ORIGIN is set: writing origin {origin!r}")
        else:
            refuse_other_origin(wh, days, origin)

    origin, listings, native = asyncio.run(_list_days(callminer, sandbox, days, context.log, guard))
    valid, refused = [], []
    for day, records in listings.items():
        result = validate_interactions(records, Window.for_day(day), extracted_at, origin=origin)
        valid.append(result.interactions)
        refused.append(result.quarantine)
        context.log.info(
            f"{day}: {len(records)} listed, {result.interactions.height} valid, "
            f"{result.quarantine.height} quarantined"
        )
    frame = pl.concat(valid, how="vertical")
    quarantine = pl.concat(refused, how="vertical")
    hold("interactions:before-first-write")
    selected = context.selected_asset_keys
    # One transaction; refused records are stored even when only quarantine was selected.
    writes = [Write(QUARANTINE, quarantine, {"interaction_date": days, "source": ["interaction"]})]
    if INTERACTIONS_KEY in selected:
        writes.insert(0, Write(INTERACTIONS, frame, {"interaction_date": days}))
    natives: list[dg.MaterializeResult] = []
    if native is not None:
        native_writes, natives = _native_writes(context, native, days, selected)
        writes += native_writes
    wh.replace_many(writes)
    if TRANSCRIPTS_KEY not in context.job_def.asset_layer.selected_asset_keys:
        # No transcripts step will read the export in this run: it is done with now.
        asyncio.run(_release(callminer, sandbox, days, context.log))
    yield from natives
    if INTERACTIONS_KEY in selected:
        refused_per_day = counts_by(quarantine, "interaction_date")
        yield materialization(
            context,
            INTERACTIONS,
            frame,
            asset_key=INTERACTIONS_KEY,
            extra=lambda day, part: {
                "per_channel": counts_by(part, "channel"),
                "quarantined": refused_per_day.get(str(day), 0),
            },
        )
    if QUARANTINE_KEY in selected:
        yield quarantine_materialization(context, QUARANTINE_KEY, quarantine)
    yield from _selected(context, interaction_check_results(wh, days))


def _native_writes(
    context: dg.AssetExecutionContext,
    native: tuple[pl.DataFrame, pl.DataFrame],
    days: list[date],
    selected: Any,
) -> tuple[list[Write], list[dg.MaterializeResult]]:
    """CallMiner's own scores and categories, replaced per day in the interactions'
    transaction, and their materialisations."""
    writes: list[Write] = []
    results: list[dg.MaterializeResult] = []
    for key, table, frame in (
        (NATIVE_SCORES_KEY, NATIVE_SCORES, native[0]),
        (NATIVE_CATEGORIES_KEY, NATIVE_CATEGORIES, native[1]),
    ):
        if key in selected:
            writes.append(Write(table, frame, {"interaction_date": days}))
            results.append(materialization(context, table, frame, asset_key=key))
    return writes, results


class TranscriptsConfig(dg.Config):
    """Run config of ``callminer/transcripts``."""

    refetch_available: bool = False
    """Fetch transcripts already stored as available again (e.g. after CallMiner re-transcribed)."""


async def _fetch(
    callminer: CallMinerResource,
    sandbox: SandboxResource,
    days: list[date],
    ids: list[str],
    log: Any,
) -> list[TranscriptFetch]:
    async with aclosing(callminer.source(sandbox, logger=log)) as source:
        await source.prepare(days, fresh=False)
        return list(await source.fetch_transcripts(ids))


async def _release(
    callminer: CallMinerResource, sandbox: SandboxResource, days: list[date], log: Any
) -> None:
    async with aclosing(callminer.source(sandbox, logger=log)) as source:
        await source.release(days)


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            TRANSCRIPTS_KEY,
            deps=[INTERACTIONS_KEY],
            description="One row per interaction: available, pending (fetched again later) or missing.",
            kinds={"duckdb"},
            group_name="callminer",
        ),
        dg.AssetSpec(
            UTTERANCES_KEY,
            deps=[TRANSCRIPTS_KEY],  # split out of the transcripts the same step fetched
            description="One row per utterance, normalised across voice, chat, email and video.",
            kinds={"duckdb"},
            group_name="callminer",
        ),
        dg.AssetSpec(
            TRANSCRIPT_QUARANTINE_KEY,
            deps=[TRANSCRIPTS_KEY],
            description=(
                "Transcripts and utterances refused at normalisation: the rows of "
                "callminer.quarantine with source transcript or utterance."
            ),
            kinds={"duckdb"},
            group_name="callminer",
            skippable=True,
        ),
    ],
    check_specs=TRANSCRIPT_CHECKS,
    can_subset=True,
    **_COMMON,
)
def transcripts(
    context: dg.AssetExecutionContext,
    config: TranscriptsConfig,
    callminer: CallMinerResource,
    sandbox: SandboxResource,
    warehouse: WarehouseResource,
) -> Any:
    """Fetch the transcripts not yet stored concurrently and normalise them per channel.

    Transcripts already ``available`` are kept as stored (with their utterances), so a
    re-run or a pending-retry run fetches only what is missing, and a transcript that
    an API briefly reports as pending again never loses its data or its evaluations.
    ``refetch_available`` fetches everything again (to pick up changed transcripts).
    """
    _announce_source(context, callminer)
    days = partition_days(context)
    wh = warehouse.warehouse()
    where: dict[str, Sequence[Any]] = {"interaction_date": days}
    frame = wh.read(INTERACTIONS, where)
    previous = wh.read(TRANSCRIPTS, where)
    stored = stored_available(frame, previous)
    # A bulk export already holds every transcript (and a re-processed contact's new one):
    # "fetching" them again is free, and replaces an older version's utterances whole.
    refetch = config.refetch_available or callminer.backend == "bulk"
    to_fetch = frame if refetch else frame.filter(~pl.col("interaction_id").is_in(list(stored)))
    ids = to_fetch["interaction_id"].to_list()
    context.log.info(
        f"{len(days)} day(s): fetching {len(ids)} transcripts, "
        f"{len(stored)} already stored as available"
    )
    fetches = asyncio.run(_fetch(callminer, sandbox, days, ids, context.log)) if ids else []
    fresh = normalise_transcripts(
        to_fetch,
        fetches,
        now=datetime.now(UTC),
        give_up_after=timedelta(hours=callminer.transcript_give_up_hours),
        previous=previous,
        contact_centre_addresses=callminer.contact_centre_addresses,
    )
    quarantine_where = {**where, "source": ["transcript", "utterance"]}
    kept = NormalisedTranscripts(
        previous, wh.read(UTTERANCES, where), wh.read(QUARANTINE, quarantine_where)
    )
    result = keep_or_refresh(kept, fresh, stored)
    selected = context.selected_asset_keys
    writes = []
    if UTTERANCES_KEY in selected:
        writes.append(Write(UTTERANCES, result.utterances, where))
    writes.append(Write(QUARANTINE, result.quarantine, quarantine_where))
    if TRANSCRIPTS_KEY in selected:
        writes.append(Write(TRANSCRIPTS, result.transcripts, where))
    # One transaction: a stored `available` transcript (kept as is by the next run) always
    # has its utterances and quarantine rows, even if the process dies half way.
    wh.replace_many(writes)
    # Only now, with everything committed, may the source drop its copy (bulk: the export).
    asyncio.run(_release(callminer, sandbox, days, context.log))
    if TRANSCRIPTS_KEY in selected:
        refused_per_day = counts_by(result.quarantine, "interaction_date")

        def transcript_figures(day: date, part: pl.DataFrame) -> dict[str, Any]:
            status = counts_by(part, "status")
            return {
                "per_status": status,
                "per_channel": counts_by(part, "channel"),
                "pending": status.get("pending", 0),
                "missing": status.get("missing", 0),
                "quarantined": refused_per_day.get(str(day), 0),
            }

        yield materialization(
            context,
            TRANSCRIPTS,
            result.transcripts.drop("transcript_text"),
            asset_key=TRANSCRIPTS_KEY,
            extra=transcript_figures,
        )
    if UTTERANCES_KEY in selected:
        yield materialization(
            context,
            UTTERANCES,
            result.utterances,
            asset_key=UTTERANCES_KEY,
            extra=lambda day, part: {"per_role": counts_by(part, "speaker_role")},
        )
    if TRANSCRIPT_QUARANTINE_KEY in selected:
        yield quarantine_materialization(context, TRANSCRIPT_QUARANTINE_KEY, result.quarantine)
    yield from _selected(context, transcript_check_results(wh, days))


def _selected(
    context: dg.AssetExecutionContext, results: Iterator[dg.AssetCheckResult]
) -> Iterator[dg.AssetCheckResult]:
    """Only the checks of this (possibly subset) run: Dagster refuses unselected ones."""
    keys = context.selected_asset_check_keys
    for result in results:
        if dg.AssetCheckKey(result.asset_key, result.check_name) in keys:  # type: ignore[arg-type]
            yield result
