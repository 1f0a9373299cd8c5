"""The monthly report: one self-contained HTML file per month, built from stored tables.

Pure: frames in, HTML text out (the asset reads the warehouse and writes the file). Charts
are Vega-Lite specs (altair) rendered to SVG here by vl-convert's embedded engine, so the file
runs no JavaScript, loads nothing from the network and opens offline, in a mail client or
printed (docs/decisions/0016-monthly-report.md). Every string from the data is escaped by the
template (autoescape) or by Vega's SVG writer: transcripts quote customers verbatim.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from importlib import resources
from typing import Any

import altair as alt
import jinja2
import polars as pl
import vl_convert

from callminer_assets.lib.models import CHANNELS

# Risk tiers, as probabilities a team lead can read: about 8 % of agents leave within 90 days
# of a month (the sandbox's test base rate; contact centres report 5-10 %), so "watch" starts
# near twice that and "intervene" near four times (docs/decisions/0016).
INTERVENE_RISK = 0.30
WATCH_RISK = 0.15
WORST_INTERACTIONS = 10
RISK_ROWS = 25
SHOWN_ROWS = 5  # rows of a long table shown open; the rest sit in a <details> below it
RISK_SHOWN_ROWS = 10

_TIER_COLOURS = {"intervene": "#c0392b", "watch": "#e6a117", "healthy": "#2e8b57"}
_DRIVER_LABELS = {
    "interactions": "interactions",
    "low_volume": "low volume",
    "frustration_frequency": "frustration frequency",
    "coaching_receptivity": "coaching receptivity",
    "performance_trend_slope": "performance trend",
    "customer_escalation_rate": "escalation requests",
    "mean_compliance": "compliance",
    "mean_empathy": "empathy",
    "mean_resolution": "resolution",
    "mean_effort": "customer effort",
    "tenure_days": "tenure",
    "frustration_change": "frustration change",
    "receptivity_change": "receptivity change",
}
_ORDER = {c: i for i, c in enumerate(CHANNELS)}
_GAP_METRICS = {
    "empathy_gap_pct": "empathy",
    "resolution_gap_pct": "resolution",
    "effort_gap_pct": "effort",
    "brand_alignment_gap_pct": "brand alignment",
}


@dataclass(frozen=True)
class ReportData:
    """What one month's report reads: rows of stored tables (see the asset)."""

    month: date
    interactions: pl.DataFrame  # interaction_date, channel: the month's valid interactions
    transcripts: pl.DataFrame  # channel, status, n
    quarantined: int
    scores: pl.DataFrame  # analytics.interaction_scores of the month
    findings: pl.DataFrame  # analytics.compliance_findings of the month
    consistency: pl.DataFrame  # analytics.channel_consistency of the month
    features: pl.DataFrame  # analytics.agent_monthly_features of the month
    risk: pl.DataFrame  # analytics.attrition_risk (the newest scored month)
    roster: pl.DataFrame  # callminer.agent_roster
    # analytics.kit_version_diff and analytics.framework_coverage of the month (may be empty)
    kit_diff: pl.DataFrame = field(default_factory=pl.DataFrame)
    coverage: pl.DataFrame = field(default_factory=pl.DataFrame)


@dataclass(frozen=True)
class Report:
    month: date
    html: str
    counts: dict[str, Any]  # counts and our own ids only: safe for Dagster metadata

    def summary_markdown(self) -> str:
        c = self.counts
        lines = [f"**{self.month:%B %Y}**", ""]
        lines.append(
            f"- {c['interactions']} interactions, {c['evaluated']} evaluated, "
            f"{c['transcripts_pending']} transcripts pending, {c['quarantined']} quarantined"
        )
        lines.append(
            f"- compliance: {c['failed_interactions']} interactions failed at least one rule "
            f"(mean score {_num(c['mean_compliance'])})"
        )
        if c["risk_month"] == f"{self.month:%Y-%m}":
            lines.append(
                f"- attrition risk ({c['model_version']}): {c['intervene']} intervene, "
                f"{c['watch']} watch, {c['healthy']} healthy"
            )
        else:
            lines.append(f"- attrition risk: scored for {c['risk_month'] or 'no month'} only")
        if c["best_empathy_channel"]:
            lines.append(
                f"- omnichannel: best empathy on {c['best_empathy_channel']}, widest gap "
                f"{_num(c['widest_empathy_gap_pct'], 1)} %"
            )
        return "\n".join(lines)


def _num(value: float | None, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _plain(value: float | None) -> str:
    """A driver's value as a reader wants it: 7, not 7.00; 0.57, not 0.5714."""
    if value is None:
        return ""
    return str(int(value)) if float(value).is_integer() else f"{value:.2f}"


def tier(risk: float) -> str:
    """intervene / watch / healthy, from the 90-day leaving probability."""
    if risk >= INTERVENE_RISK:
        return "intervene"
    if risk >= WATCH_RISK:
        return "watch"
    return "healthy"


# -- tables ------------------------------------------------------------------------------------


def volumes(data: ReportData) -> pl.DataFrame:
    """Per channel: interactions, transcripts by status, evaluated; plus a total row."""
    base = pl.DataFrame({"channel": list(CHANNELS)})
    inter = data.interactions.group_by("channel").agg(pl.len().alias("interactions"))
    status = (
        data.transcripts.pivot(on="status", index="channel", values="n", aggregate_function="sum")
        if data.transcripts.height
        else pl.DataFrame(schema={"channel": pl.String})
    )
    for s in ("available", "pending", "missing"):
        if s not in status.columns:
            status = status.with_columns(pl.lit(0, dtype=pl.Int64).alias(s))
    evaluated = data.scores.group_by("channel").agg(pl.len().alias("evaluated"))
    frame = (
        base.join(inter, on="channel", how="left")
        .join(status.select("channel", "available", "pending", "missing"), on="channel", how="left")
        .join(evaluated, on="channel", how="left")
        .fill_null(0)
        .cast(
            {c: pl.Int64 for c in ("interactions", "available", "pending", "missing", "evaluated")}
        )
    )
    total = frame.select(pl.lit("all").alias("channel"), pl.exclude("channel").sum())
    return pl.concat([frame, total])


def daily_volumes(data: ReportData) -> pl.DataFrame:
    return (
        data.interactions.group_by("interaction_date", "channel")
        .agg(pl.len().alias("interactions"))
        .sort("interaction_date", "channel")
    )


def _rule_outcomes(data: ReportData) -> pl.DataFrame:
    """One row per interaction x rule that applies (passed not NULL), with the channel."""
    channels = data.scores.select("interaction_id", "channel")
    return (
        data.findings.filter(pl.col("passed").is_not_null())
        .unique(["interaction_id", "rule"])
        .join(channels, on="interaction_id", how="inner")
        .select("interaction_id", "rule", "channel", "passed")
    )


def compliance_by_rule_channel(data: ReportData) -> pl.DataFrame:
    """rule x channel: interactions the rule applied to, how many failed, the pass rate."""
    return (
        _rule_outcomes(data)
        .group_by("rule", "channel")
        .agg(
            pl.len().alias("applicable"),
            (~pl.col("passed")).sum().cast(pl.Int64).alias("failed"),
            pl.col("passed").mean().alias("pass_rate"),
        )
        .sort("rule", "channel")
    )


def worst_interactions(data: ReportData, n: int = WORST_INTERACTIONS) -> list[dict[str, Any]]:
    """The ``n`` lowest compliance scores, each with its failed rules and evidence quotes."""
    failed = data.findings.filter(pl.col("passed").eq(False)).sort(
        "rule", "utterance_index", nulls_last=True
    )
    # ties on the score (many are 0): more failed rules first, then those with quotes
    per = failed.group_by("interaction_id").agg(
        pl.col("rule").n_unique().alias("n_failed"), pl.col("quote").count().alias("n_quotes")
    )
    worst = (
        data.scores.filter(pl.col("compliance_score").is_not_null())
        .join(per, on="interaction_id", how="left")
        .with_columns(pl.col("n_failed", "n_quotes").fill_null(0))
        .sort(
            ["compliance_score", "n_failed", "n_quotes", "interaction_id"],
            descending=[False, True, True, False],
        )
        .head(n)
        .drop("n_failed", "n_quotes")
    )
    rows = []
    for r in worst.iter_rows(named=True):
        mine = failed.filter(pl.col("interaction_id") == r["interaction_id"])
        quotes = [
            {"rule": q["rule"], "quote": q["quote"], "utterance_index": q["utterance_index"]}
            for q in mine.filter(pl.col("quote").is_not_null()).iter_rows(named=True)
        ]
        rows.append(
            {
                **r,
                "failed_rules": sorted(set(mine["rule"].to_list())),
                "quotes": quotes,
            }
        )
    return rows


def _drivers(top_features: str | None) -> list[dict[str, Any]]:
    items = json.loads(top_features) if top_features else []
    return [
        {
            "label": _DRIVER_LABELS.get(t["feature"], t["feature"].replace("_", " ")),
            "value": _plain(t.get("value")),
            "raises": (t.get("contribution") or 0) > 0,
            "contribution": t.get("contribution") or 0.0,
        }
        for t in items
    ]


def risk_panel(data: ReportData) -> pl.DataFrame:
    """Agents of the report's month ranked by risk, with receptivity, tier and drivers.

    Empty unless the stored risk scores are this month's (the risk table holds the newest
    scored month only).
    """
    risk = data.risk.filter(pl.col("month") == data.month)
    features = data.features.select("agent_id", "interactions", "coaching_receptivity")
    roster = data.roster.select("agent_id", "agent_name", "team")
    return (
        risk.join(features, on="agent_id", how="left")
        .join(roster, on="agent_id", how="left")
        .sort(["risk", "agent_id"], descending=[True, False])
        .with_columns(
            rank=pl.int_range(1, pl.len() + 1),
            tier=pl.col("risk").map_elements(tier, return_dtype=pl.String),
        )
    )


def kit_changes(diff: pl.DataFrame) -> pl.DataFrame:
    """Per kit, evaluator, rule and version pair: the interactions whose verdict changed."""
    if diff.is_empty():
        return diff
    keys = ["kit_code", "evaluator", "rule", "from_version", "to_version"]
    return (
        diff.group_by(keys)
        .agg(pl.col("interaction_id").n_unique().alias("interactions"))
        .sort(["interactions", *keys], descending=[True, *([False] * len(keys))])
    )


def coverage_by_rule(coverage: pl.DataFrame) -> pl.DataFrame:
    """The month's days summed per rule: the kit's failures, CallMiner's flags, both."""
    if coverage.is_empty():
        return coverage
    counts = ["interactions", "kit_flags", "callminer_flags", "flagged_by_both"]
    return (
        coverage.group_by("rule")
        .agg(pl.col(c).sum().cast(pl.Int64) for c in counts)
        .with_columns(
            coverage=pl.when(pl.col("kit_flags") > 0).then(
                pl.col("flagged_by_both") / pl.col("kit_flags")
            )
        )
        .sort(pl.col("rule").str.starts_with("("), "rule")
    )


def best_channels(consistency: pl.DataFrame) -> dict[str, str]:
    """Metric -> the channel with gap 0 (the best one), for marking it in the table."""
    out = {}
    for col, label in _GAP_METRICS.items():
        best = consistency.filter(pl.col(col) == 0)
        if best.height:
            out[label] = best["channel"][0]
    return out


def widest_gaps(consistency: pl.DataFrame) -> list[dict[str, Any]]:
    """Per metric: the best channel and the channel furthest behind it, with the gap in %."""
    out = []
    for col, label in _GAP_METRICS.items():
        ranked = consistency.filter(pl.col(col).is_not_null()).sort(col)
        if ranked.height < 2:
            continue
        out.append(
            {
                "metric": label,
                "best": ranked["channel"][0],
                "worst": ranked["channel"][-1],
                "gap_pct": float(ranked[col][-1]),
            }
        )
    return out


# -- charts ------------------------------------------------------------------------------------

_CONFIG: dict[str, Any] = {
    "font": "Helvetica, Arial, sans-serif",
    "view": {"stroke": None},
    "axis": {"labelFontSize": 11, "titleFontSize": 11, "grid": False},
    "legend": {"labelFontSize": 11, "titleFontSize": 11},
}


def _svg(chart: alt.TopLevelMixin) -> str:
    spec = chart.to_dict()
    spec["config"] = {**_CONFIG, **spec.get("config", {})}
    svg: str = vl_convert.vegalite_to_svg(spec)
    return svg


def _rows(frame: pl.DataFrame) -> list[dict[str, Any]]:
    """JSON-safe rows for inline chart data (dates as ISO text)."""
    rows: list[dict[str, Any]] = json.loads(frame.write_json())
    return rows


def volume_chart(daily: pl.DataFrame) -> str:
    data = alt.Data(values=_rows(daily))
    return _svg(
        alt.Chart(data, width=620, height=180)
        .mark_bar()
        .encode(
            x=alt.X("interaction_date:T", title=None, timeUnit="utcyearmonthdate"),
            y=alt.Y("sum(interactions):Q", title="interactions"),
            color=alt.Color("channel:N", sort=list(CHANNELS), title="channel"),
        )
    )


def compliance_chart(by_rule: pl.DataFrame) -> str:
    data = alt.Data(values=_rows(by_rule))
    base = alt.Chart(data, width=alt.Step(90), height=alt.Step(34)).encode(
        x=alt.X(
            "channel:N", sort=list(CHANNELS), title=None, axis=alt.Axis(orient="top", labelAngle=0)
        ),
        y=alt.Y("rule:N", title=None, axis=alt.Axis(labelLimit=320)),
    )
    cells = base.mark_rect().encode(
        color=alt.Color(
            "pass_rate:Q",
            title="pass rate",
            scale=alt.Scale(scheme="redyellowgreen", domain=[0.5, 1.0], clamp=True),
        )
    )
    labels = base.mark_text(fontSize=12).encode(
        text=alt.Text("pass_rate:Q", format=".0%"), color=alt.value("black")
    )
    return _svg(cells + labels)


def consistency_chart(consistency: pl.DataFrame) -> str:
    long = consistency.unpivot(
        index="channel", on=list(_GAP_METRICS), variable_name="metric", value_name="gap_pct"
    ).with_columns(pl.col("metric").replace(_GAP_METRICS))
    data = alt.Data(values=_rows(long))
    return _svg(
        alt.Chart(data, width=190, height=150)
        .mark_bar()
        .encode(
            x=alt.X("channel:N", sort=list(CHANNELS), title=None, axis=alt.Axis(labelAngle=0)),
            y=alt.Y("gap_pct:Q", title="% behind the best channel"),
            color=alt.Color("channel:N", sort=list(CHANNELS), legend=None),
            column=alt.Column("metric:N", title=None, sort=list(_GAP_METRICS.values())),
        )
    )


def risk_chart(panel: pl.DataFrame) -> str:
    top = panel.head(RISK_SHOWN_ROWS + SHOWN_ROWS).select("agent_id", "risk", "tier")
    data = alt.Data(values=_rows(top))
    bars = (
        alt.Chart(data, width=420, height=alt.Step(16))
        .mark_bar()
        .encode(
            y=alt.Y("agent_id:N", sort="-x", title=None),
            x=alt.X(
                "risk:Q", title="risk of leaving within 90 days", scale=alt.Scale(domain=[0, 1])
            ),
            color=alt.Color(
                "tier:N",
                scale=alt.Scale(domain=list(_TIER_COLOURS), range=list(_TIER_COLOURS.values())),
                title="tier",
            ),
        )
    )
    marks = (
        alt.Chart(alt.Data(values=[{"x": WATCH_RISK}, {"x": INTERVENE_RISK}]))
        .mark_rule(strokeDash=[4, 3], color="#555")
        .encode(x="x:Q")
    )
    return _svg(bars + marks)


# -- the page ----------------------------------------------------------------------------------


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True
    )
    env.filters["num"] = _num
    env.filters["pct"] = lambda v, d=0: "–" if v is None else f"{v * 100:.{d}f} %"
    env.filters["gap"] = lambda v: "–" if v is None else ("best" if v == 0 else f"{v:.1f} %")
    return env


def _template() -> jinja2.Template:
    text = resources.files(__package__).joinpath("report.html.j2").read_text(encoding="utf-8")
    return _environment().from_string(text)


def build_report(data: ReportData, generated_at: datetime | None = None) -> Report:
    """Tables, charts and the page for ``data.month``; charts only where there are rows."""
    vol = volumes(data)
    daily = daily_volumes(data)
    by_rule = compliance_by_rule_channel(data)
    worst = worst_interactions(data)
    panel = risk_panel(data)
    changes = kit_changes(data.kit_diff)
    covered = coverage_by_rule(data.coverage)
    consistency = data.consistency.sort(pl.col("channel").replace_strict(_ORDER, default=99))
    risk_month = str(data.risk["month"].max())[:7] if data.risk.height else ""  # YYYY-MM
    outcomes = _rule_outcomes(data)
    failed_interactions = outcomes.filter(~pl.col("passed"))["interaction_id"].n_unique()
    tiers = panel["tier"].value_counts() if panel.height else pl.DataFrame()
    tier_counts = {t: 0 for t in _TIER_COLOURS} | (
        {k: int(v) for k, v in tiers.iter_rows()} if tiers.height else {}
    )
    widest = consistency["empathy_gap_pct"].max() if consistency.height else None
    best = best_channels(consistency)
    total = vol.filter(pl.col("channel") == "all").row(0, named=True)
    mean_compliance = data.scores["compliance_score"].mean() if data.scores.height else None
    counts: dict[str, Any] = {
        "month": f"{data.month:%Y-%m}",
        "interactions": total["interactions"],
        "evaluated": total["evaluated"],
        "transcripts_pending": total["pending"],
        "transcripts_missing": total["missing"],
        "quarantined": data.quarantined,
        "failed_interactions": failed_interactions,
        "mean_compliance": None if mean_compliance is None else round(float(mean_compliance), 3),  # type: ignore[arg-type]
        "risk_month": risk_month,
        "model_version": str(data.risk["model_version"][0]) if data.risk.height else "",
        "agents_scored": panel.height,
        **tier_counts,
        "best_empathy_channel": best.get("empathy", ""),
        "widest_empathy_gap_pct": None if widest is None else round(float(widest), 1),  # type: ignore[arg-type]
        "kit_changed_interactions": (
            data.kit_diff["interaction_id"].n_unique() if data.kit_diff.height else 0
        ),
    }
    charts = {
        "volumes": volume_chart(daily) if daily.height else "",
        "compliance": compliance_chart(by_rule) if by_rule.height else "",
        "consistency": consistency_chart(consistency) if consistency.height else "",
        "risk": risk_chart(panel) if panel.height else "",
    }
    html = _template().render(
        month=data.month,
        generated_at=(generated_at or datetime.now(UTC)).strftime("%Y-%m-%d %H:%M UTC"),
        counts=counts,
        volumes=vol.to_dicts(),
        channels=list(CHANNELS),
        by_rule=_rule_matrix(by_rule),
        worst=worst,
        panel=[
            {**r, "drivers": _drivers(r["top_features"])}
            for r in panel.head(RISK_ROWS).iter_rows(named=True)
        ],
        shown=SHOWN_ROWS,
        risk_shown=RISK_SHOWN_ROWS,
        panel_more=max(panel.height - RISK_ROWS, 0),
        consistency=consistency.to_dicts(),
        best=best,
        widest=widest_gaps(consistency),
        charts=charts,
        kit_changes=changes.to_dicts(),
        coverage=covered.to_dicts(),
        tier_colours=_TIER_COLOURS,
        thresholds={"intervene": INTERVENE_RISK, "watch": WATCH_RISK},
    )
    return Report(month=data.month, html=html, counts=counts)


def _rule_matrix(by_rule: pl.DataFrame) -> list[dict[str, Any]]:
    """One row per rule: per channel ``(failed, applicable, pass_rate)`` or None."""
    out = []
    for (rule,), group in by_rule.group_by(["rule"], maintain_order=True):
        cells = {r["channel"]: r for r in group.iter_rows(named=True)}
        applicable = int(group["applicable"].sum())
        failed = int(group["failed"].sum())
        out.append(
            {
                "rule": rule,
                "cells": cells,
                "failed": failed,
                "applicable": applicable,
                "pass_rate": 1 - failed / applicable if applicable else None,
            }
        )
    return out
