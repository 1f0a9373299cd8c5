"""Asset checks for the analytics tables: pure functions from frames to (passed, metadata)."""

from __future__ import annotations

from typing import Any

import polars as pl

from callminer_assets.lib.models import CHANNELS

UNIT_SCORE_COLUMNS = (
    "compliance_score",
    "empathy_score",
    "customer_effort",
    "brand_alignment",
    "escalation_risk",
    "coaching_receptivity",
    "quality_score",
)
UNIT_FEATURE_COLUMNS = (
    "frustration_frequency",
    "coaching_receptivity",
    "customer_escalation_rate",
    "mean_compliance",
    "mean_empathy",
    "mean_resolution",
    "mean_effort",
    *(f"share_{c}" for c in CHANNELS),
)
Check = tuple[bool, dict[str, Any]]


def _out_of_unit(frame: pl.DataFrame, columns: tuple[str, ...]) -> dict[str, int]:
    bad = {c: int((~frame[c].drop_nulls().is_between(0.0, 1.0)).sum()) for c in columns}
    return {c: n for c, n in bad.items() if n}


def scores_in_range(scores: pl.DataFrame, duplicates: pl.DataFrame) -> Check:
    """Every 0..1 score within 0..1, counts non-negative, one row per interaction.

    ``duplicates`` is read from the warehouse after the write: (interaction_id, rows) for the
    run's interactions that have more than one row in the whole table. A frame built per
    interaction cannot hold duplicates; the table can (an interaction re-dated by CallMiner
    keeps its old row in another day's partition).
    """
    bad = _out_of_unit(scores, UNIT_SCORE_COLUMNS)
    for c in ("prohibited_phrases", "frustration_markers"):
        n = int((scores[c].drop_nulls() < 0).sum())
        if n:
            bad[c] = n
    sample = duplicates["interaction_id"].head(5).to_list() if duplicates.height else []
    return not bad and duplicates.is_empty(), {
        "out_of_range": bad,
        "duplicate_interactions": duplicates.height,
        "duplicate_sample": sample,
    }


def features_in_range(features: pl.DataFrame) -> Check:
    """Shares and means within 0..1, channel shares summing to 1, at least one interaction,
    and a weekly quality slope no steeper than 1 (quality itself lives in 0..1)."""
    bad = _out_of_unit(features, UNIT_FEATURE_COLUMNS)
    if features.height:
        share_sum = features.select(pl.sum_horizontal(f"share_{c}" for c in CHANNELS)).to_series()
        n = int(((share_sum - 1.0).abs() > 1e-9).sum())
        if n:
            bad["share_sum"] = n
        n = int((features["interactions"] < 1).sum())
        if n:
            bad["interactions"] = n
        n = int((features["performance_trend_slope"].drop_nulls().abs() > 1.0).sum())
        if n:
            bad["performance_trend_slope"] = n
    return not bad, {"out_of_range": bad, "rows": features.height}


def model_metrics_present(metrics: pl.DataFrame, version: str) -> Check:
    """The model's row exists with sizes and both ranking metrics filled in."""
    row = metrics.filter(pl.col("model_version") == version)
    if row.is_empty():
        return False, {"model_version": version, "found": False}
    r = row.row(0, named=True)
    missing = [
        k
        for k in ("roc_auc", "average_precision", "base_rate", "n_train", "n_test")
        if r[k] is None
    ]
    ok = not missing and r["n_train"] > 0 and r["n_test"] > 0
    return ok, {"model_version": version, "missing": missing}
