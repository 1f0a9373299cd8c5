"""Semarize evaluations: every available transcript x kit, paid for once per kit version.

Run config ``rescore_kit`` (the ``rescore`` job, ``python -m callminer_assets rescore``) makes
the step re-score that kit only, at its current version: transcripts already scored with that
version are not sent again, older versions' rows stay beside the new ones.
"""

import asyncio
from collections.abc import Sequence
from datetime import UTC, date, datetime
from typing import Any

import dagster as dg
import polars as pl

from callminer_assets.defs.automation import EAGER_AFTER_CHECKS
from callminer_assets.defs.keys import (
    EVALUATION_QUARANTINE_KEY,
    EVALUATIONS_KEY,
    INTERACTIONS_KEY,
    TRANSCRIPTS_KEY,
)
from callminer_assets.defs.metadata import (
    counts_by,
    materialization,
    partition_days,
    quarantine_materialization,
)
from callminer_assets.defs.partitions import DAILY_BACKFILL_POLICY, SEMARIZE_POOL, daily_partitions
from callminer_assets.defs.resources import SandboxResource, SemarizeResource, WarehouseResource
from callminer_assets.lib.models import EvalRequest
from callminer_assets.lib.semarize import EvalBatch, EvaluationAborted
from callminer_assets.lib.tables import EVALUATIONS, INTERACTIONS, QUARANTINE, TRANSCRIPTS
from callminer_assets.transform import evaluations as ev
from callminer_assets.warehouse.store import Warehouse, Write

EVALUATION_CHECKS = [
    dg.AssetCheckSpec(
        "covers_every_available_transcript",
        asset=EVALUATIONS_KEY,
        blocking=True,
        description="Every available transcript has a row for every kit (succeeded or failed).",
    )
]


# A request left unresolved (Semarize down past the retry budget) retries the step this
# many times, this far apart; each attempt stores what finished, so nothing paid is lost.
UNRESOLVED_RETRIES = 2
UNRESOLVED_RETRY_WAIT_S = 30


class EvaluationsConfig(dg.Config):
    """Launchpad / run config: leave empty for ordinary runs."""

    rescore_kit: str | None = None
    """Re-score this kit at its current version (``GET /v1/kits``); other kits are left alone."""
    rescore_version: str | None = None
    """The version the re-score expects; the step fails if Semarize reports another."""


def kit_versions(semarize: SemarizeResource, sandbox: SandboxResource, log: Any) -> dict[str, str]:
    """The current version of each kit, as Semarize (or the local kits) reports it."""

    async def listing() -> dict[str, str]:
        async with semarize.client(sandbox, logger=log) as client:
            return await client.kits()

    return asyncio.run(listing())


def plan_kits(versions: dict[str, str], config: EvaluationsConfig) -> dict[str, str]:
    """The kits this run evaluates: all of them, or the one being re-scored (checked)."""
    kit = config.rescore_kit
    if kit is None:
        return versions
    if kit not in versions:
        raise dg.Failure(f"rescore: no kit {kit!r} (kits: {', '.join(sorted(versions))})")
    if config.rescore_version and config.rescore_version != versions[kit]:
        raise dg.Failure(
            f"rescore: {kit} is at version {versions[kit]}, not {config.rescore_version}"
        )
    return {kit: versions[kit]}


_UNCOVERED = """
SELECT t.interaction_id, k.kit_code
FROM callminer.transcripts t CROSS JOIN (SELECT unnest(?::VARCHAR[]) AS kit_code) k
WHERE t.status = 'available' AND t.interaction_date IN (SELECT unnest(?::DATE[]))
  AND NOT EXISTS (SELECT 1 FROM semarize.evaluations e
                  WHERE e.interaction_id = t.interaction_id AND e.kit_code = k.kit_code)
"""


def _coverage(wh: Warehouse, days: list[date], kits: list[str]) -> dg.AssetCheckResult:
    """Queried from the stored tables after the write: available transcripts x kits without
    a stored run (succeeded or failed)."""
    uncovered = wh.query(_UNCOVERED, [kits, days])
    expected = wh.query(
        "SELECT count(*) AS n FROM callminer.transcripts WHERE status = 'available' "
        "AND interaction_date IN (SELECT unnest(?::DATE[]))",
        [days],
    )["n"][0] * len(kits)
    return dg.AssetCheckResult(
        check_name="covers_every_available_transcript",
        passed=uncovered.is_empty(),
        metadata={
            "expected": int(expected),
            "uncovered": uncovered.height,
            "uncovered_per_kit": counts_by(uncovered, "kit_code"),
        },
    )


async def _evaluate(
    semarize: SemarizeResource, sandbox: SandboxResource, requests: Sequence[EvalRequest], log: Any
) -> EvalBatch:
    async with semarize.client(sandbox, logger=log) as client:
        return await client.evaluate_many(requests)


def _refused_write(
    wh: Warehouse, refused: pl.DataFrame, frame: pl.DataFrame, where: dict[str, Any]
) -> Write:
    """Quarantine rows of this step: the stored ones of runs still kept, plus ``refused``.

    Runs already paid for are not fetched again, so their quarantined values must survive a
    re-run; rows of runs that were replaced (re-scored, transcript changed) go with them.
    """
    q_where = {**where, "source": ["evaluation"]}
    kept_runs = frame.select(pl.coalesce("run_id", "interaction_id")).to_series()
    stored = wh.read(QUARANTINE, q_where).filter(
        pl.col("record_id").is_in(kept_runs.implode())
        & ~pl.col("record_id").is_in(refused["record_id"].implode())
    )
    return Write(QUARANTINE, pl.concat([stored, refused]), q_where)


@dg.multi_asset(
    name="semarize__evaluations",
    specs=[
        dg.AssetSpec(
            EVALUATIONS_KEY,
            deps=[TRANSCRIPTS_KEY, INTERACTIONS_KEY],
            kinds={"duckdb"},
            group_name="semarize",
            automation_condition=EAGER_AFTER_CHECKS,
            description=(
                "One row per interaction x kit x kit version x brick. A transcript already "
                "scored with a kit (by the same evaluator) is never sent again; the rescore "
                "job scores it once per new kit version, beside the old rows."
            ),
        ),
        dg.AssetSpec(
            EVALUATION_QUARANTINE_KEY,
            deps=[TRANSCRIPTS_KEY],
            kinds={"duckdb"},
            group_name="semarize",
            automation_condition=EAGER_AFTER_CHECKS,
            skippable=True,
            description=(
                "Semarize values refused (out of range, malformed): the rows of "
                "callminer.quarantine with source evaluation."
            ),
        ),
    ],
    partitions_def=daily_partitions,
    backfill_policy=DAILY_BACKFILL_POLICY,
    pool=SEMARIZE_POOL,
    check_specs=EVALUATION_CHECKS,
    can_subset=True,
)
def evaluations(
    context: dg.AssetExecutionContext,
    config: EvaluationsConfig,
    semarize: SemarizeResource,
    sandbox: SandboxResource,
    warehouse: WarehouseResource,
) -> Any:
    """Send only unevaluated transcripts to Semarize and store every brick with its evidence."""
    evaluator = semarize.evaluator_name
    if semarize.uses_sandbox:
        context.log.info("evaluator local-kits: the kit files score transcripts (not paid)")
    versions = kit_versions(semarize, sandbox, context.log)
    kits = plan_kits(versions, config)
    days = partition_days(context)
    wh = warehouse.warehouse()
    where = {"interaction_date": days}
    transcripts = wh.read(TRANSCRIPTS, where)
    interactions = wh.read(INTERACTIONS, where)
    # One read by id: this run's rows, plus rows paid under another day (moved interactions).
    # Rows of interactions no longer listed are not needed: the replace below drops them.
    stored = wh.read(EVALUATIONS, {"interaction_id": transcripts["interaction_id"].to_list()})
    existing = ev.already_paid(stored, transcripts, days)
    rescore = [config.rescore_kit] if config.rescore_kit else []
    requests = ev.plan_requests(
        transcripts, interactions, existing, kits, evaluator, rescore=rescore
    )
    tokens, _, recorded = ev.token_estimate(requests, existing)
    estimate = f"~{tokens:,} input tokens" if recorded else "tokens unknown (no usage recorded)"
    context.log.info(
        f"{len(requests)} runs to start ({transcripts.height} transcripts, kits "
        f"{', '.join(f'{k} {v}' for k, v in kits.items())}; {estimate}; the rest already paid)"
    )
    aborted: EvaluationAborted | None = None
    try:
        batch = (
            asyncio.run(_evaluate(semarize, sandbox, requests, context.log))
            if requests
            else EvalBatch()
        )
    except EvaluationAborted as exc:  # the key was refused: keep what was already paid for
        batch, aborted = exc.completed, exc
    dates = dict(transcripts.select("interaction_id", "interaction_date").iter_rows())
    now = datetime.now(UTC)
    outcomes, refused = ev.screen(batch, dates, now)
    new = ev.outcome_rows(outcomes, dates, now, evaluator)
    frame = ev.merge(existing, new, transcripts, list(versions))
    # One transaction: stored runs are never fetched again, so their quarantined values are
    # stored with them or not at all, even if the process dies half way.
    refused_write = _refused_write(wh, refused, frame, where)
    wh.replace_many([refused_write, Write(EVALUATIONS, frame, where)])
    selected = context.selected_asset_keys
    # the check belongs to the evaluations asset: only with it (Dagster refuses others)
    coverage = [_coverage(wh, days, list(kits))] if EVALUATIONS_KEY in selected else []
    if aborted is not None:
        yield from coverage
        raise aborted
    if batch.unresolved:
        reasons = counts_by(pl.DataFrame({"reason": [r for _, r in batch.unresolved]}), "reason")
        message = (
            f"{len(batch.unresolved)} of {len(requests)} runs not resolved "
            f"({len(batch)} stored); a retry sends them with the same Idempotency-Key"
        )
        yield from coverage  # reported (failing) before the step retries or fails
        if context.retry_number < UNRESOLVED_RETRIES:
            context.log.warning(message)
            raise dg.RetryRequested(
                max_retries=UNRESOLVED_RETRIES, seconds_to_wait=UNRESOLVED_RETRY_WAIT_S
            )
        raise dg.Failure(description=message, metadata={"unresolved_reasons": reasons})
    work = ev.work_per_day(requests, batch, dates, days)

    def figures(day: date, part: pl.DataFrame) -> dict[str, Any]:
        runs = part.select("interaction_id", "kit_code", "status").unique()
        return {
            **work[day],
            "per_status": counts_by(runs, "status"),
            "per_kit": counts_by(runs, "kit_code"),
            "evaluator": evaluator,
            "kit_versions": dict(kits),
        }

    if EVALUATIONS_KEY in selected:
        yield materialization(context, EVALUATIONS, frame, asset_key=EVALUATIONS_KEY, extra=figures)
        yield from coverage
    if EVALUATION_QUARANTINE_KEY in selected:
        yield quarantine_materialization(context, EVALUATION_QUARANTINE_KEY, refused_write.frame)
