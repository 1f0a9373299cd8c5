"""Per-agent monthly features and the omnichannel consistency report, from typed scores.

The definitions here are the ones documented on the columns of
``analytics.agent_monthly_features`` / ``analytics.channel_consistency`` in
``lib/tables.py``; the tests pin them on a hand-built dataset. Pure: no I/O.
"""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import polars as pl

from callminer_assets.lib.models import CHANNELS
from callminer_assets.lib.tables import AGENT_MONTHLY_FEATURES, CHANNEL_CONSISTENCY, polars_schema

TREND_MONTHS = 3

FEATURES_SCHEMA: dict[str, pl.DataType] = dict(polars_schema(AGENT_MONTHLY_FEATURES))

CONSISTENCY_SCHEMA: dict[str, pl.DataType] = dict(polars_schema(CHANNEL_CONSISTENCY))


def month_start(d: date) -> date:
    return d.replace(day=1)


def add_months(m: date, n: int) -> date:
    """First day of the month ``n`` months after (or before, n < 0) ``m``'s month."""
    idx = m.year * 12 + (m.month - 1) + n
    return date(idx // 12, idx % 12 + 1, 1)


def month_end(m: date) -> date:
    """Last day of ``m``'s month."""
    return add_months(month_start(m), 1) - timedelta(days=1)


def _in_month(month: date) -> pl.Expr:
    m = month_start(month)
    return (pl.col("interaction_date") >= m) & (pl.col("interaction_date") < add_months(m, 1))


def ols_slope(x: np.ndarray, y: np.ndarray) -> float | None:
    """Least-squares slope of y on x; None with fewer than two distinct x."""
    if len(x) < 2 or np.ptp(x) == 0:
        return None
    xm = x - x.mean()
    return float((xm * (y - y.mean())).sum() / (xm * xm).sum())


def performance_trend(scores: pl.DataFrame, month: date) -> pl.DataFrame:
    """Per agent: OLS slope of weekly mean quality_score over the 3 months ending with ``month``.

    Weeks are ISO weeks (Monday start) of ``interaction_date``; x is the week number counted
    from the first week of the window, so the slope is "quality points per week". Weeks
    without a quality score are absent (not zero); fewer than two weeks -> NULL.
    """
    start = add_months(month_start(month), -(TREND_MONTHS - 1))
    end = add_months(month_start(month), 1)
    origin = start - timedelta(days=start.weekday())
    weekly = (
        scores.filter(
            (pl.col("interaction_date") >= start)
            & (pl.col("interaction_date") < end)
            & pl.col("agent_id").is_not_null()
            & pl.col("quality_score").is_not_null()
        )
        .with_columns(week=((pl.col("interaction_date") - origin).dt.total_days() // 7))
        .group_by("agent_id", "week")
        .agg(pl.col("quality_score").mean().alias("q"))
    )
    rows: list[tuple[str, float | None]] = []
    for (agent,), grp in weekly.group_by("agent_id"):
        x = grp["week"].to_numpy().astype(float)
        y = grp["q"].to_numpy().astype(float)
        rows.append((str(agent), ols_slope(x, y)))
    return pl.DataFrame(
        rows,
        schema={"agent_id": pl.String(), "performance_trend_slope": pl.Float64()},
        orient="row",
    )


def agent_monthly_features(
    scores: pl.DataFrame, month: date, min_interactions: int = 10
) -> pl.DataFrame:
    """One row per agent with >= 1 scored interaction in ``month`` (AGENT_MONTHLY_FEATURES).

    ``scores`` should cover the trailing three months (for the trend slope); only the
    month's own rows feed the other features. Means skip NULLs (a kit that failed for an
    interaction does not count as a zero). Agents below ``min_interactions`` are kept and
    flagged ``low_volume`` so a data scientist decides, not the pipeline.
    """
    m = month_start(month)
    rows = scores.filter(_in_month(m) & pl.col("agent_id").is_not_null())
    n = pl.len()
    base = rows.group_by("agent_id").agg(
        n.cast(pl.Int32).alias("interactions"),
        (pl.col("frustration_markers") >= 1).mean().alias("frustration_frequency"),
        pl.col("coaching_receptivity").mean(),
        pl.col("customer_escalation_requested").mean().alias("customer_escalation_rate"),
        pl.col("compliance_score").mean().alias("mean_compliance"),
        pl.col("empathy_score").mean().alias("mean_empathy"),
        pl.col("resolution_achieved").mean().alias("mean_resolution"),
        pl.col("customer_effort").mean().alias("mean_effort"),
        *[((pl.col("channel") == c).sum() / n).alias(f"share_{c}") for c in CHANNELS],
    )
    trend = performance_trend(scores, m)
    out = (
        base.join(trend, on="agent_id", how="left")
        .with_columns(
            month=pl.lit(m, dtype=pl.Date),
            low_volume=pl.col("interactions") < min_interactions,
        )
        .select(list(FEATURES_SCHEMA))
        .cast(FEATURES_SCHEMA)  # type: ignore[arg-type]
        .sort("agent_id")
    )
    return out


def _gap(col: str, higher_is_better: bool) -> pl.Expr:
    """Percent distance to the best channel (0 for the best one; NULL when best is 0)."""
    best = pl.col(col).max() if higher_is_better else pl.col(col).min()
    diff = (best - pl.col(col)) if higher_is_better else (pl.col(col) - best)
    return pl.when(best == 0).then(None).otherwise(diff / best * 100.0)


def channel_consistency(scores: pl.DataFrame, month: date) -> pl.DataFrame:
    """Per channel of ``month``: mean empathy/resolution/effort/brand alignment and gap to the best.

    The best channel is the highest mean (lowest for effort); each gap is in % of the best
    channel's value, so 0 marks the best channel and 12.5 means 12.5 % worse than it.
    """
    m = month_start(month)
    rows = scores.filter(_in_month(m) & pl.col("channel").is_not_null())
    means = rows.group_by("channel").agg(
        pl.len().cast(pl.Int32).alias("interactions"),
        pl.col("empathy_score").mean().alias("mean_empathy"),
        pl.col("resolution_achieved").mean().alias("mean_resolution"),
        pl.col("customer_effort").mean().alias("mean_effort"),
        pl.col("brand_alignment").mean().alias("mean_brand_alignment"),
    )
    return (
        means.with_columns(
            month=pl.lit(m, dtype=pl.Date),
            empathy_gap_pct=_gap("mean_empathy", True),
            resolution_gap_pct=_gap("mean_resolution", True),
            effort_gap_pct=_gap("mean_effort", False),
            brand_alignment_gap_pct=_gap("mean_brand_alignment", True),
        )
        .select(list(CONSISTENCY_SCHEMA))
        .cast(CONSISTENCY_SCHEMA)  # type: ignore[arg-type]
        .sort("channel")
    )


def consistency_markdown(report: pl.DataFrame) -> str:
    """The omnichannel report as a Markdown table (Dagster metadata, README)."""
    if report.is_empty():
        return "_no scored interactions this month_"

    def f(v: float | None, pct: bool = False) -> str:
        if v is None:
            return "–"
        return f"{v:+.1f} %" if pct else f"{v:.3f}"

    lines = [
        "| channel | n | empathy | resolution | effort | brand | empathy gap | resolution gap "
        "| effort gap | brand gap |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in report.iter_rows(named=True):
        lines.append(
            f"| {r['channel']} | {r['interactions']} | {f(r['mean_empathy'])} "
            f"| {f(r['mean_resolution'])} | {f(r['mean_effort'])} | {f(r['mean_brand_alignment'])} "
            f"| {f(r['empathy_gap_pct'], True)} | {f(r['resolution_gap_pct'], True)} "
            f"| {f(r['effort_gap_pct'], True)} | {f(r['brand_alignment_gap_pct'], True)} |"
        )
    return "\n".join(lines)
