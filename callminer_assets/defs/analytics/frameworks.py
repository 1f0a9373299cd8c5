"""Frameworks compared (daily): a kit's versions with each other, the team's kit with CallMiner's.

The logic is ``transform.frameworks``; these assets read the warehouse, call it and write.
"""

import json
from datetime import date
from typing import Any

import dagster as dg
import polars as pl

from callminer_assets.defs.automation import EAGER_AFTER_CHECKS
from callminer_assets.defs.keys import (
    COVERAGE_KEY,
    EVALUATIONS_KEY,
    FINDINGS_KEY,
    INTERACTIONS_KEY,
    KIT_DIFF_KEY,
    SCORES_KEY,
)
from callminer_assets.defs.metadata import counts_by, materialization, partition_days
from callminer_assets.defs.partitions import DAILY_BACKFILL_POLICY, daily_partitions
from callminer_assets.defs.resources import WarehouseResource
from callminer_assets.kits import current_kits
from callminer_assets.lib.tables import (
    COMPLIANCE_FINDINGS,
    EVALUATIONS,
    FRAMEWORK_COVERAGE,
    INTERACTION_SCORES,
    INTERACTIONS,
    KIT_VERSION_DIFF,
    NATIVE_CATEGORIES,
    NATIVE_SCORES,
)
from callminer_assets.transform.frameworks import ANY_RULE, framework_coverage, kit_version_diff
from callminer_assets.transform.scores import QA_KIT

_DAILY: dict[str, Any] = {
    "partitions_def": daily_partitions,
    "backfill_policy": DAILY_BACKFILL_POLICY,
    "kinds": {"duckdb"},
    "group_name": "analytics",
    "automation_condition": EAGER_AFTER_CHECKS,
}


@dg.asset(
    key=KIT_DIFF_KEY,
    deps=[EVALUATIONS_KEY, INTERACTIONS_KEY],
    description=(
        "Per interaction and rule, the verdicts under a kit's two latest versions, where they "
        "differ: what a kit change (e.g. a new prohibited phrase) changed."
    ),
    **_DAILY,
)
def kit_version_diff_asset(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource
) -> dg.MaterializeResult:
    days = partition_days(context)
    where = {"interaction_date": days}
    wh = warehouse.warehouse()
    diff = kit_version_diff(wh.read(EVALUATIONS, where), wh.read(INTERACTIONS, where))
    wh.replace(KIT_VERSION_DIFF, diff, where)
    return materialization(
        context,
        KIT_VERSION_DIFF,
        diff,
        extra=lambda day, part: {
            "interactions_changed": part["interaction_id"].n_unique(),
            "per_rule": counts_by(part, "rule"),
        },
    )


@dg.asset(
    key=COVERAGE_KEY,
    # Reads callminer.native_scores/native_categories too, but does not declare them: on the
    # REST backend they are never materialised, and a step skipped for a missing input only
    # after an upstream failure hangs Dagster's in-process executor (decision 0017). The
    # interactions step writes them before anything this reads.
    deps=[FINDINGS_KEY, SCORES_KEY],
    description=(
        "Per rule of the team's qa_compliance kit: of the interactions it fails, how many "
        "CallMiner's own scoring flags too (Bulk Export backend; empty without native scores, "
        "read from callminer.native_scores and native_categories)."
    ),
    **_DAILY,
)
def framework_coverage_asset(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource
) -> dg.MaterializeResult:
    days = partition_days(context)
    where = {"interaction_date": days}
    wh = warehouse.warehouse()
    flags = current_kits()[QA_KIT].callminer_flags
    scores = wh.read(INTERACTION_SCORES, where)
    versions = {
        iid: json.loads(v).get(QA_KIT)
        for iid, v in scores.select("interaction_id", "kit_versions").iter_rows()
        if v
    }
    coverage = framework_coverage(
        wh.read(COMPLIANCE_FINDINGS, where),
        wh.read(NATIVE_SCORES, where),
        wh.read(NATIVE_CATEGORIES, where),
        QA_KIT,
        versions,
        flags.scores_below,
        flags.categories,
    )
    wh.replace(FRAMEWORK_COVERAGE, coverage, where)
    if coverage.is_empty():
        context.log.info("no CallMiner native scores for these days: nothing to compare")

    def figures(day: date, part: pl.DataFrame) -> dict[str, Any]:
        overall = part.filter(part["rule"] == ANY_RULE)
        flagged = int(overall["kit_flags"].sum() or 0)
        both = int(overall["flagged_by_both"].sum() or 0)
        return {
            "kit_failures": flagged,
            "also_flagged_by_callminer": both,
            "callminer_coverage": round(both / flagged, 4) if flagged else None,
        }

    return materialization(context, FRAMEWORK_COVERAGE, coverage, extra=figures)


FRAMEWORK_ASSETS = [kit_version_diff_asset, framework_coverage_asset]
FRAMEWORK_KEYS = [KIT_DIFF_KEY, COVERAGE_KEY]
