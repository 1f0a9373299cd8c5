"""Analytics assets: typed scores, compliance findings and alerts (daily), per-agent features
and channel consistency (monthly), the HR roster, the attrition model and its risk scores.

All logic lives in ``transform/`` and ``analytics/``; these functions only read the
warehouse, call it, write the result and report metadata. Every write replaces exactly
the run's partitions, so re-running is idempotent (alerts add that an interaction is never
alerted twice).
"""

import json
from datetime import date
from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl

from callminer_assets.analytics import exports
from callminer_assets.analytics.alerts import pending_alerts, store_then_deliver
from callminer_assets.analytics.roster import load_roster
from callminer_assets.defs.analytics import checks
from callminer_assets.defs.analytics.automation import ANY_DEP_UPDATED, MONTHLY_ON_UPDATES
from callminer_assets.defs.analytics.resources import DEFAULT_ROSTER_PATH, AnalyticsResource
from callminer_assets.defs.automation import EAGER_AFTER_CHECKS
from callminer_assets.defs.keys import (
    ALERTS_KEY,
    CONSISTENCY_KEY,
    EVALUATIONS_KEY,
    FEATURES_KEY,
    FINDINGS_KEY,
    INTERACTIONS_KEY,
    MODEL_KEY,
    RISK_KEY,
    ROSTER_KEY,
    SCORES_KEY,
)
from callminer_assets.defs.metadata import (
    counts_by,
    materialization,
    partition_days,
    partition_months,
    table_metadata,
)
from callminer_assets.defs.partitions import (
    DAILY_BACKFILL_POLICY,
    MONTHLY_BACKFILL_POLICY,
    daily_partitions,
    monthly_partitions,
)
from callminer_assets.defs.resources import CallMinerResource, SandboxResource, WarehouseResource
from callminer_assets.lib.tables import (
    AGENT_MONTHLY_FEATURES,
    AGENT_ROSTER,
    ATTRITION_MODEL_METRICS,
    ATTRITION_RISK,
    CHANNEL_CONSISTENCY,
    COMPLIANCE_ALERTS,
    COMPLIANCE_FINDINGS,
    EVALUATIONS,
    INTERACTION_SCORES,
    INTERACTIONS,
)
from callminer_assets.transform import attrition
from callminer_assets.transform.features import (
    TREND_MONTHS,
    add_months,
    agent_monthly_features,
    channel_consistency,
    consistency_markdown,
)
from callminer_assets.transform.scores import compliance_findings, score_interactions
from callminer_assets.warehouse.store import Warehouse, Write

GROUP = "analytics"

_DAILY: dict[str, Any] = {
    "partitions_def": daily_partitions,
    "backfill_policy": DAILY_BACKFILL_POLICY,
}
_MONTHLY: dict[str, Any] = {
    "partitions_def": monthly_partitions,
    "backfill_policy": MONTHLY_BACKFILL_POLICY,
}


# Month M's features read M and the two months before it (the trend slope), so each monthly
# partition depends on the daily scores of three months. The offset is in downstream (monthly)
# units: dagster's TimeWindowPartitionMapping applies it to the downstream window before
# aligning to upstream partitions, so "2025-03" -> days 2025-01-01..2025-03-31 (clamped to
# the first day there is; checked in tests/analytics/test_analytics_defs.py).
TREND_SCORES_DEP = dg.AssetDep(
    SCORES_KEY,
    partition_mapping=dg.TimeWindowPartitionMapping(
        start_offset=-(TREND_MONTHS - 1), allow_nonexistent_upstream_partitions=True
    ),
)


def _scores_of_months(wh: Warehouse, first: date, end: date) -> pl.DataFrame:
    """Scores of the interaction days in ``[first, end)`` (whole months)."""
    days = pl.date_range(first, end, closed="left", eager=True).to_list()
    return wh.read(INTERACTION_SCORES, {"interaction_date": days})


# -- daily: scores + findings ------------------------------------------------------------------

SCORE_CHECKS = [
    dg.AssetCheckSpec(
        "scores_in_range",
        asset=SCORES_KEY,
        blocking=True,
        description=(
            "0..1 scores within 0..1, counts >= 0, and (read back from the table after the "
            "write) one row per interaction across all days."
        ),
    )
]


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            SCORES_KEY,
            deps=[EVALUATIONS_KEY, INTERACTIONS_KEY],
            description="One typed row per evaluated interaction, pivoted from the three kits.",
            kinds={"duckdb"},
            group_name=GROUP,
            automation_condition=EAGER_AFTER_CHECKS,
        ),
        dg.AssetSpec(
            FINDINGS_KEY,
            deps=[EVALUATIONS_KEY, INTERACTIONS_KEY],
            description=(
                "One row per interaction x compliance rule x evidence item: every failed TCPA "
                "item with its quote and utterance index."
            ),
            kinds={"duckdb"},
            group_name=GROUP,
            automation_condition=EAGER_AFTER_CHECKS,
        ),
    ],
    check_specs=SCORE_CHECKS,
    **_DAILY,
)
def interaction_scores(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> Any:
    """Pivot the day's evaluations into typed scores and compliance findings."""
    days = partition_days(context)
    where = {"interaction_date": days}
    wh = warehouse.warehouse()
    evaluations = wh.read(EVALUATIONS, where)
    interactions = wh.read(INTERACTIONS, where)
    scores = score_interactions(evaluations, interactions)
    findings = compliance_findings(evaluations, interactions)
    wh.replace_many(
        [Write(INTERACTION_SCORES, scores, where), Write(COMPLIANCE_FINDINGS, findings, where)]
    )
    yield materialization(
        context,
        INTERACTION_SCORES,
        scores,
        asset_key=SCORES_KEY,
        extra=lambda day, part: {
            "per_channel": counts_by(part, "channel"),
            "per_topic": counts_by(part, "topic_primary"),
            "mean_compliance": float(part["compliance_score"].mean() or 0.0),  # type: ignore[arg-type]
        },
    )

    def failed_items(day: date, part: pl.DataFrame) -> dict[str, Any]:
        failed = part.filter(pl.col("passed").eq(False))
        return {
            "failed_items": failed.height,
            "failed_per_rule": counts_by(failed.unique(["interaction_id", "rule"]), "rule"),
        }

    yield materialization(
        context, COMPLIANCE_FINDINGS, findings, asset_key=FINDINGS_KEY, extra=failed_items
    )
    # after the write, on the table: the run's interactions with more than one row anywhere
    duplicates = wh.query(
        "SELECT interaction_id, count(*) AS rows FROM analytics.interaction_scores "
        "WHERE interaction_id IN (SELECT interaction_id FROM analytics.interaction_scores "
        "WHERE interaction_date BETWEEN ? AND ?) GROUP BY 1 HAVING count(*) > 1 ORDER BY 1",
        [days[0], days[-1]],
    )
    passed, meta = checks.scores_in_range(wh.read(INTERACTION_SCORES, where), duplicates)
    yield dg.AssetCheckResult(
        asset_key=SCORES_KEY, check_name="scores_in_range", passed=passed, metadata=meta
    )


# -- daily: alerts -----------------------------------------------------------------------------


@dg.asset(
    key=ALERTS_KEY,
    deps=[SCORES_KEY, FINDINGS_KEY],
    kinds={"duckdb", "slack"},
    group_name=GROUP,
    automation_condition=EAGER_AFTER_CHECKS,
    description=(
        "Interactions below the compliance threshold with failed rules and evidence; posted to "
        "SLACK_WEBHOOK_URL when set; each interaction alerted once."
    ),
    **_DAILY,
)
def compliance_alerts(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource, analytics: AnalyticsResource
) -> dg.MaterializeResult:
    """Raise alerts for new low-compliance interactions; keep (and retry) earlier ones.

    The rows are written before Slack is called and updated after it (see
    ``analytics.alerts``): an alert Slack has seen is always in the table already.
    """
    days = partition_days(context)
    where = {"interaction_date": days}
    wh = warehouse.warehouse()
    existing = wh.read(COMPLIANCE_ALERTS, where)
    alerted = wh.query("SELECT interaction_id FROM analytics.compliance_alerts")
    pending, new = pending_alerts(
        existing,
        alerted["interaction_id"].to_list(),
        wh.read(INTERACTION_SCORES, where),
        wh.read(COMPLIANCE_FINDINGS, where),
        threshold=analytics.compliance_threshold,
    )
    # stored (delivered=false) before anything is posted, then marked delivered
    rows, sent = store_then_deliver(
        pending,
        lambda frame: wh.replace(COMPLIANCE_ALERTS, frame, where),
        analytics.slack_webhook_url,
    )
    if not analytics.slack_webhook_url:
        context.log.info("SLACK_WEBHOOK_URL is not set: alerts written to the table only")
    earlier = existing["interaction_id"].implode()
    waiting = pending.filter(~pl.col("delivered"))["interaction_id"].implode()
    context.log.info(f"{new} new alerts, {sent} delivered")

    def figures(day: date, part: pl.DataFrame) -> dict[str, Any]:
        return {
            "new_alerts": int((~part["interaction_id"].is_in(earlier)).sum()),
            "delivered_this_run": int(
                (part["delivered"] & part["interaction_id"].is_in(waiting)).sum()
            ),
            "undelivered": int((~part["delivered"]).sum()),
            "threshold": analytics.compliance_threshold,
        }

    return materialization(context, COMPLIANCE_ALERTS, rows, extra=figures)


# -- monthly: features + consistency -----------------------------------------------------------

FEATURE_CHECKS = [
    dg.AssetCheckSpec(
        "feature_values_in_range",
        asset=FEATURES_KEY,
        blocking=True,
        description=(
            "On the stored rows of the run's months: shares/means within 0..1, channel shares "
            "sum to 1, at least one interaction, |weekly slope| <= 1."
        ),
    ),
]


@dg.asset(
    key=FEATURES_KEY,
    deps=[TREND_SCORES_DEP],
    kinds={"duckdb", "parquet"},
    group_name=GROUP,
    automation_condition=MONTHLY_ON_UPDATES,
    check_specs=FEATURE_CHECKS,
    description=(
        "Per agent x month behaviour features (definitions in the column docs); low-volume "
        "agents kept and flagged. Also exported as Parquet with the month's scores."
    ),
    **_MONTHLY,
)
def agent_features(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource, analytics: AnalyticsResource
) -> Any:
    """Roll the month's scores (and the trailing 3 months for the trend) up per agent."""
    months = partition_months(context)
    wh = warehouse.warehouse()
    history = _scores_of_months(
        wh, add_months(months[0], -(TREND_MONTHS - 1)), add_months(months[-1], 1)
    )
    frames = []
    for m in months:
        scores = history.filter(
            pl.col("interaction_date").is_between(
                add_months(m, -(TREND_MONTHS - 1)), add_months(m, 1), closed="left"
            )
        )
        month_scores = scores.filter(pl.col("interaction_date") >= m)
        features = agent_monthly_features(scores, m, analytics.min_interactions)
        exports.write_month(features, exports.FEATURES_DATASET, m, analytics.exports_dir)
        exports.write_month(month_scores, exports.SCORES_DATASET, m, analytics.exports_dir)
        frames.append(features)
        context.log.info(f"{m:%Y-%m}: {features.height} agents, {month_scores.height} scores")
    frame = pl.concat(frames, how="vertical")
    wh.replace(AGENT_MONTHLY_FEATURES, frame, {"month": months})
    exports_dir = str(Path(analytics.exports_dir).resolve())
    yield materialization(
        context,
        AGENT_MONTHLY_FEATURES,
        frame,
        by="month",
        extra=lambda month, part: {
            "agents": part["agent_id"].n_unique(),
            "low_volume_agents": int(part["low_volume"].sum()),
            "exports_dir": exports_dir,
        },
    )
    passed, meta = checks.features_in_range(wh.read(AGENT_MONTHLY_FEATURES, {"month": months}))
    yield dg.AssetCheckResult(check_name="feature_values_in_range", passed=passed, metadata=meta)


@dg.asset(
    key=CONSISTENCY_KEY,
    deps=[SCORES_KEY],
    kinds={"duckdb"},
    group_name=GROUP,
    automation_condition=MONTHLY_ON_UPDATES,
    description=(
        "Omnichannel report: mean empathy, resolution, effort and brand alignment per channel "
        "and each channel's gap in % to the best channel."
    ),
    **_MONTHLY,
)
def channel_consistency_report(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource
) -> dg.MaterializeResult:
    """Compare the channels month by month; the Markdown table is in the metadata."""
    months = partition_months(context)
    wh = warehouse.warehouse()
    history = _scores_of_months(wh, months[0], add_months(months[-1], 1))
    frames = [
        channel_consistency(
            history.filter(
                pl.col("interaction_date").is_between(m, add_months(m, 1), closed="left")
            ),
            m,
        )
        for m in months
    ]
    frame = pl.concat(frames, how="vertical")
    wh.replace(CHANNEL_CONSISTENCY, frame, {"month": months})
    return materialization(
        context,
        CHANNEL_CONSISTENCY,
        frame,
        by="month",
        extra=lambda month, part: {"summary": dg.MetadataValue.md(consistency_markdown(part))},
    )


# -- roster, model, risk -----------------------------------------------------------------------


@dg.asset(
    key=ROSTER_KEY,
    kinds={"duckdb", "csv"},
    group_name="callminer",
    description="The HR roster (AGENT_ROSTER_PATH CSV): agent, team, hire and leave dates.",
)
def agent_roster(
    context: dg.AssetExecutionContext,
    warehouse: WarehouseResource,
    analytics: AnalyticsResource,
    callminer: CallMinerResource,
    sandbox: SandboxResource,
) -> dg.MaterializeResult:
    """Load and validate the roster; on the sandbox, (re)write its CSV at the default path.

    The sandbox's roster is deterministic (seed, today), so rewriting it keeps it in step
    with the generator; a roster the user points at is never overwritten.
    """
    path = Path(analytics.roster_path)
    if callminer.uses_sandbox and (not path.exists() or path == Path(DEFAULT_ROSTER_PATH)):
        from callminer_assets.sandbox import write_roster_csv

        write_roster_csv(path, seed=sandbox.seed)
        context.log.info(f"wrote the sandbox roster to {path}")
    if not path.exists():
        raise dg.Failure(f"AGENT_ROSTER_PATH {path} does not exist")
    valid, rejects = load_roster(path)
    for r in rejects.iter_rows(named=True):
        context.log.warning(f"roster row {r['row']} refused: {r['reason']}")
    warehouse.warehouse().replace(AGENT_ROSTER, valid, {})
    return dg.MaterializeResult(
        metadata=table_metadata(
            AGENT_ROSTER,
            valid,
            source=str(path),
            refused=rejects.height,
            refused_reasons=counts_by(rejects, "reason"),
            per_team=counts_by(valid, "team"),
            left=int(valid["leave_date"].is_not_null().sum()),
        )
    )


class AttritionModelConfig(dg.Config):
    """``roster_as_of``: the day the HR roster was exported (ISO date; empty = today, UTC).

    A month's label ("leaves within 90 days after it") is known once month end + 90 days is
    on or before that day, whatever window the interaction data covers.
    """

    roster_as_of: str | None = None


MODEL_CHECKS = [
    dg.AssetCheckSpec(
        "model_metrics_present",
        asset=MODEL_KEY,
        blocking=True,
        description=(
            "The version produced by this run has its metrics row (ROC AUC, average precision, "
            "base rate, sizes). A skipped training (not enough labelled history) reports this "
            "check as failed with severity WARN and the reason: visible, not blocking."
        ),
    )
]


@dg.asset(
    key=MODEL_KEY,
    deps=[FEATURES_KEY, ROSTER_KEY],
    kinds={"scikitlearn", "duckdb"},
    group_name=GROUP,
    automation_condition=ANY_DEP_UPDATED,
    check_specs=MODEL_CHECKS,
    description=(
        "Histogram gradient boosting: leaves within 90 days after the month, from the monthly "
        "features; time-ordered split; saved under data/models/, metrics in the warehouse."
    ),
)
def attrition_model(
    context: dg.AssetExecutionContext,
    config: AttritionModelConfig,
    warehouse: WarehouseResource,
    analytics: AnalyticsResource,
) -> Any:
    """Train on every month whose label the roster can tell, evaluate on the latest ones.

    Not enough labelled history (e.g. a recent window: a month's label needs month end + 90
    days before the roster's as-of date) is a clean skip, not a failure: the materialisation's
    metadata says ``skipped: <reason>``, no model file and no metrics row are written, and the
    ``model_metrics_present`` check is reported as failed with severity WARN and the reason
    (so it is visible without blocking anything or failing ``python -m callminer_assets run``).
    The check passes only when the metrics row of the version this run trained exists.
    """
    wh = warehouse.warehouse()
    features = wh.read(AGENT_MONTHLY_FEATURES)
    roster = wh.read(AGENT_ROSTER)
    as_of = attrition.roster_as_of(config.roster_as_of)
    fingerprint = attrition.inputs_fingerprint(features, roster, as_of)
    kept = _unchanged_model(context, wh, analytics, fingerprint)
    if kept is not None:
        context.log.info(f"inputs unchanged since model {kept}: not retrained")
        yield dg.MaterializeResult(
            metadata={
                "retrained": False,
                "reason": "labelled features and roster unchanged since that version",
                "model_version": kept,
                "inputs_fingerprint": fingerprint,
                "roster_as_of": str(as_of),
            },
            data_version=dg.DataVersion(fingerprint),
        )
        stored = wh.read(ATTRITION_MODEL_METRICS, {"model_version": [kept]})
        passed, meta = checks.model_metrics_present(stored, kept)
        yield dg.AssetCheckResult(check_name="model_metrics_present", passed=passed, metadata=meta)
        return
    try:
        trained = attrition.train_attrition_model(features, roster, as_of)
    except attrition.NotEnoughHistory as exc:
        reason = f"not enough labelled history: {exc} (roster as of {as_of})"
        context.log.warning(f"attrition model not trained: {reason}")
        yield dg.MaterializeResult(
            metadata={
                "skipped": reason,
                "roster_as_of": str(as_of),
                "feature_rows": features.height,
            }
        )
        yield dg.AssetCheckResult(
            check_name="model_metrics_present",
            passed=False,
            severity=dg.AssetCheckSeverity.WARN,
            metadata={"skipped": reason},
        )
        return
    path = attrition.save_model(trained, analytics.models_dir)
    metrics = attrition.metrics_frame(trained)
    wh.replace(ATTRITION_MODEL_METRICS, metrics, {"model_version": [trained.version]})
    m = trained.metrics
    importance = attrition.contributions(
        trained, attrition.matrix(features_for_importance(features, roster))
    )
    mean_abs = dict(
        sorted(
            zip(
                trained.feature_columns, abs(importance).mean(axis=0).round(4).tolist(), strict=True
            ),
            key=lambda kv: -kv[1],
        )[:8]
    )
    yield dg.MaterializeResult(
        data_version=dg.DataVersion(fingerprint),
        metadata={
            "retrained": True,
            "inputs_fingerprint": fingerprint,
            "model_version": m["model_version"],
            "model_path": dg.MetadataValue.path(str(path.resolve())),
            "conclusion": m["conclusion"],
            "roc_auc": m["roc_auc"],
            "roc_auc_95ci": dg.MetadataValue.json([m["roc_auc_ci_low"], m["roc_auc_ci_high"]]),
            "n_test_positives": m["n_test_positives"],
            "permutation_p_value": m["permutation_p_value"],
            "permutation_auc_mean_sd": dg.MetadataValue.json(
                [m["permutation_auc_mean"], m["permutation_auc_sd"]]
            ),
            "average_precision": m["average_precision"],
            "base_rate": m["base_rate"],
            "n_train": m["n_train"],
            "n_test": m["n_test"],
            "train_months": m["train_months"],
            "test_months": m["test_months"],
            "purged_split": m["purged"],
            "unrostered_rows_dropped": m["n_unrostered_dropped"],
            "roster_as_of": str(as_of),
            "mean_abs_contribution": dg.MetadataValue.json(mean_abs),
        },
    )
    stored = wh.read(ATTRITION_MODEL_METRICS, {"model_version": [trained.version]})
    passed, meta = checks.model_metrics_present(stored, trained.version)
    yield dg.AssetCheckResult(check_name="model_metrics_present", passed=passed, metadata=meta)


def _unchanged_model(
    context: dg.AssetExecutionContext,
    wh: Warehouse,
    analytics: AnalyticsResource,
    fingerprint: str,
) -> str | None:
    """The version the last materialisation trained from these very inputs, if its file and
    metrics row are still there (else None: train)."""
    event = context.instance.get_latest_materialization_event(MODEL_KEY)
    meta = event.asset_materialization.metadata if event and event.asset_materialization else {}
    previous, version = meta.get("inputs_fingerprint"), meta.get("model_version")
    if previous is None or version is None or previous.value != fingerprint:
        return None
    kept = str(version.value)
    on_disk = attrition.model_path(analytics.models_dir, kept).exists()
    stored = wh.read(ATTRITION_MODEL_METRICS, {"model_version": [kept]})
    return kept if on_disk and stored.height else None


def features_for_importance(features: pl.DataFrame, roster: pl.DataFrame) -> pl.DataFrame:
    """The latest month's rows, as the model sees them (for the global importance summary)."""
    frame = attrition.model_frame(features, roster)
    return frame.filter(pl.col("month") == frame["month"].max()) if frame.height else frame


@dg.asset(
    key=RISK_KEY,
    deps=[MODEL_KEY, FEATURES_KEY, ROSTER_KEY],
    kinds={"duckdb"},
    group_name=GROUP,
    automation_condition=ANY_DEP_UPDATED,
    description=(
        "Attrition risk of every active agent for the latest month, with the features that "
        "contributed most (change in risk when replaced by the training median)."
    ),
)
def attrition_risk(
    context: dg.AssetExecutionContext,
    config: AttritionModelConfig,
    warehouse: WarehouseResource,
    analytics: AnalyticsResource,
) -> dg.MaterializeResult:
    """Score the latest month with the newest saved model; agents who left by the roster's
    as-of date are not scored. No model yet (training skipped so far) is a clean skip: the
    metadata says ``skipped: <reason>`` and the table is left as it is."""
    path = attrition.latest_model_path(analytics.models_dir)
    if path is None:
        reason = f"no attrition model under {analytics.models_dir} yet"
        context.log.warning(f"attrition risk not scored: {reason}")
        return dg.MaterializeResult(metadata={"skipped": reason})
    trained = attrition.load_model(path)
    wh = warehouse.warehouse()
    as_of = attrition.roster_as_of(config.roster_as_of)
    risk = attrition.score_agents(
        trained, wh.read(AGENT_MONTHLY_FEATURES), wh.read(AGENT_ROSTER), as_of=as_of
    )
    wh.replace(ATTRITION_RISK, risk, {})
    top = [
        {"agent_id": a, "risk": round(r, 3), "top": [t["feature"] for t in json.loads(tf)]}
        for a, r, tf in risk.select("agent_id", "risk", "top_features").head(10).iter_rows()
    ]
    return dg.MaterializeResult(
        metadata=table_metadata(
            ATTRITION_RISK,
            risk,
            model_version=trained.version,
            roster_as_of=str(as_of),
            month=str(risk["month"][0]) if risk.height else "",
            agents_above_50pct=int((risk["risk"] > 0.5).sum()),
            highest_risk=top,
        )
    )


ANALYTICS_ASSETS = [
    interaction_scores,
    compliance_alerts,
    agent_features,
    channel_consistency_report,
    agent_roster,
    attrition_model,
    attrition_risk,
]
DAILY_KEYS = [SCORES_KEY, FINDINGS_KEY, ALERTS_KEY]
MONTHLY_KEYS = [FEATURES_KEY, CONSISTENCY_KEY]
UNPARTITIONED_KEYS = [ROSTER_KEY, MODEL_KEY, RISK_KEY]
