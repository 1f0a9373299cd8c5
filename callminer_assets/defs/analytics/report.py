"""``analytics/monthly_report``: one self-contained HTML file per month under ``REPORTS_DIR``.

Reads stored tables through the Warehouse, builds the page with ``analytics.report`` (pure)
and writes ``<REPORTS_DIR>/YYYY-MM.html``. A run over several months records one
materialisation per month, each with that month's path and figures.
"""

import time
from datetime import date
from pathlib import Path

import dagster as dg
import polars as pl

from callminer_assets.analytics.report import Report, ReportData, build_report
from callminer_assets.defs.analytics.assets import GROUP
from callminer_assets.defs.analytics.automation import MONTHLY_ON_UPDATES
from callminer_assets.defs.analytics.resources import AnalyticsResource
from callminer_assets.defs.keys import (
    CONSISTENCY_KEY,
    COVERAGE_KEY,
    EVALUATION_QUARANTINE_KEY,
    FEATURES_KEY,
    FINDINGS_KEY,
    INTERACTIONS_KEY,
    KIT_DIFF_KEY,
    QUARANTINE_KEY,
    REPORT_KEY,
    RISK_KEY,
    ROSTER_KEY,
    SCORES_KEY,
    TRANSCRIPT_QUARANTINE_KEY,
    TRANSCRIPTS_KEY,
)
from callminer_assets.defs.metadata import partition_months
from callminer_assets.defs.partitions import MONTHLY_BACKFILL_POLICY, monthly_partitions
from callminer_assets.defs.resources import WarehouseResource
from callminer_assets.lib.tables import (
    AGENT_MONTHLY_FEATURES,
    AGENT_ROSTER,
    ATTRITION_RISK,
    CHANNEL_CONSISTENCY,
    COMPLIANCE_FINDINGS,
    FRAMEWORK_COVERAGE,
    INTERACTION_SCORES,
    INTERACTIONS,
    KIT_VERSION_DIFF,
    QUARANTINE,
    TRANSCRIPTS,
)
from callminer_assets.transform.features import add_months
from callminer_assets.warehouse.store import Warehouse


def read_month(wh: Warehouse, month: date) -> ReportData:
    """The stored rows one month's report shows (only the columns it needs where it can)."""
    end = add_months(month, 1)
    window = [month, end]
    days = {"interaction_date": pl.date_range(month, end, closed="left", eager=True).to_list()}
    between = "WHERE interaction_date >= ? AND interaction_date < ?"
    return ReportData(
        month=month,
        interactions=wh.query(
            f"SELECT interaction_date, channel FROM {INTERACTIONS.qualified} {between}",  # noqa: S608 - names from lib/tables.py
            window,
        ),
        transcripts=wh.query(
            f"SELECT channel, status, count(*) AS n FROM {TRANSCRIPTS.qualified} {between} "  # noqa: S608
            "GROUP BY ALL",
            window,
        ),
        quarantined=int(
            wh.query(f"SELECT count(*) AS n FROM {QUARANTINE.qualified} {between}", window)["n"][0]  # noqa: S608
        ),
        scores=wh.read(INTERACTION_SCORES, days),
        findings=wh.read(COMPLIANCE_FINDINGS, days),
        consistency=wh.read(CHANNEL_CONSISTENCY, {"month": [month]}),
        features=wh.read(AGENT_MONTHLY_FEATURES, {"month": [month]}),
        risk=wh.read(ATTRITION_RISK),
        roster=wh.read(AGENT_ROSTER),
        kit_diff=wh.read(KIT_VERSION_DIFF, days),
        coverage=wh.read(FRAMEWORK_COVERAGE, days),
    )


def write_report(report: Report, reports_dir: str | Path) -> Path:
    """``<reports_dir>/YYYY-MM.html``, replaced atomically (a browser never sees half a file)."""
    path = Path(reports_dir) / f"{report.month:%Y-%m}.html"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".html.tmp")
    tmp.write_text(report.html, encoding="utf-8")
    tmp.replace(path)
    return path


@dg.asset(
    key=REPORT_KEY,
    deps=[
        INTERACTIONS_KEY,
        TRANSCRIPTS_KEY,
        QUARANTINE_KEY,
        TRANSCRIPT_QUARANTINE_KEY,
        EVALUATION_QUARANTINE_KEY,
        SCORES_KEY,
        FINDINGS_KEY,
        KIT_DIFF_KEY,
        COVERAGE_KEY,
        CONSISTENCY_KEY,
        FEATURES_KEY,
        RISK_KEY,
        ROSTER_KEY,
    ],
    kinds={"html"},
    group_name=GROUP,
    partitions_def=monthly_partitions,
    backfill_policy=MONTHLY_BACKFILL_POLICY,
    automation_condition=MONTHLY_ON_UPDATES,
    description=(
        "The month's report as one offline HTML file (REPORTS_DIR/YYYY-MM.html): volumes, "
        "compliance by rule and channel with the worst interactions' evidence, frameworks "
        "compared (when kit versions or CallMiner's native scores differ), the attrition risk "
        "panel, omnichannel consistency."
    ),
)
def monthly_report(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource, analytics: AnalyticsResource
) -> dg.MaterializeResult:
    """Render and write each month of the run; metadata holds counts and our ids, never quotes.

    Each month's materialisation carries its own path and figures (decision 0017).
    """
    wh = warehouse.warehouse()
    for month in partition_months(context):
        t0 = time.perf_counter()
        report = build_report(read_month(wh, month))
        path = write_report(report, analytics.reports_dir)
        seconds = time.perf_counter() - t0
        context.log.info(
            f"{month:%Y-%m}: {path} ({path.stat().st_size // 1024} KiB, {seconds:.1f} s)"
        )
        context.add_asset_metadata(
            {
                "path": dg.MetadataValue.path(str(path.resolve())),
                "summary": dg.MetadataValue.md(report.summary_markdown()),
                "size_kib": round(path.stat().st_size / 1024, 1),
                "render_seconds": round(seconds, 2),
                **{k: v for k, v in report.counts.items() if v is not None},
            },
            partition_key=f"{month:%Y-%m-%d}",
        )
    return dg.MaterializeResult()
