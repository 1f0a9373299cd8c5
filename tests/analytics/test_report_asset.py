"""`analytics/monthly_report` as Dagster runs it: one materialisation per month with that month's
figures, a file that renders in Chromium, and automation that follows the latest month."""

from __future__ import annotations

import subprocess
from datetime import date, timedelta
from pathlib import Path

import dagster as dg

from callminer_assets.analytics.browser import inspect_page
from callminer_assets.defs.keys import CONSISTENCY_KEY, FEATURES_KEY, REPORT_KEY, SCORES_KEY
from callminer_assets.defs.partitions import monthly_partitions
from callminer_assets.lib.tables import (
    AGENT_MONTHLY_FEATURES,
    AGENT_ROSTER,
    ATTRITION_RISK,
    CHANNEL_CONSISTENCY,
    COMPLIANCE_FINDINGS,
    INTERACTION_SCORES,
    INTERACTIONS,
)
from callminer_assets.warehouse.store import Warehouse
from tests.analytics.conftest import require_chromium
from tests.analytics.report_sample import HOSTILE_QUOTE, frame, sample
from tests.defs.helpers import (
    REPO,
    dagster_materialize,
    env_without_credentials,
    materialize,
    range_tags,
)
from tests.lake import lake_env, lake_settings


def _seed(wh: Warehouse, month: date, n: int) -> None:
    data = sample(month, n=n)
    days = {"interaction_date": data.scores["interaction_date"].unique().to_list()}
    wh.replace(
        INTERACTIONS,
        frame(
            INTERACTIONS,
            data.scores.select("interaction_id", "interaction_date", "channel").to_dicts(),
        ),
        days,
    )
    wh.replace(INTERACTION_SCORES, data.scores, days)
    wh.replace(COMPLIANCE_FINDINGS, data.findings, days)
    wh.replace(CHANNEL_CONSISTENCY, data.consistency, {"month": [month]})
    wh.replace(AGENT_MONTHLY_FEATURES, data.features, {"month": [month]})
    wh.replace(ATTRITION_RISK, data.risk, {})
    wh.replace(AGENT_ROSTER, data.roster, {})


def _materializations(instance: dg.DagsterInstance) -> dict[str, dg.AssetMaterialization]:
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=REPORT_KEY), limit=10
    ).records
    return {str(r.asset_materialization.partition): r.asset_materialization for r in records}


def test_a_range_run_records_each_month_with_its_own_figures(tmp_path: Path) -> None:
    db, reports = lake_settings(tmp_path / "wh"), tmp_path / "reports"
    wh = Warehouse(db)
    _seed(wh, date(2025, 1, 1), n=40)
    _seed(wh, date(2025, 2, 1), n=24)  # risk (stored for the newest month only) is February's
    env = {**lake_env(db), "REPORTS_DIR": str(reports)}
    with dg.instance_for_test() as instance:
        result = materialize(
            instance, env, ["analytics/monthly_report"], tags=range_tags("2025-01-01", "2025-02-01")
        )
        assert result.success
        by_month = _materializations(instance)
    assert sorted(by_month) == ["2025-01-01", "2025-02-01"]  # one each, none range-wide
    jan, feb = by_month["2025-01-01"].metadata, by_month["2025-02-01"].metadata
    assert (jan["interactions"].value, feb["interactions"].value) == (40, 24)
    assert Path(str(jan["path"].value)) == reports / "2025-01.html"
    assert Path(str(feb["path"].value)) == reports / "2025-02.html"
    assert "January 2025" in str(jan["summary"].value)
    assert "scored for 2025-02 only" in str(jan["summary"].value)
    assert "intervene" in str(feb["summary"].value) and feb["agents_scored"].value == 12
    everything = " ".join(str(v.value) for m in (jan, feb) for v in m.values())
    assert "last chance" not in everything and HOSTILE_QUOTE not in everything
    assert sorted(p.name for p in reports.iterdir()) == ["2025-01.html", "2025-02.html"]


def test_the_report_a_data_engineer_materialises_renders_cleanly_in_chromium(
    tmp_path: Path,
) -> None:
    """`dagster asset materialize` in its own process, then the file in a real browser."""
    home = tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text((REPO / "dagster.yaml").read_text())
    db, reports = lake_settings(tmp_path / "wh"), tmp_path / "reports"
    _seed(Warehouse(db), date(2025, 1, 1), n=60)
    env = env_without_credentials(DAGSTER_HOME=str(home), **lake_env(db), REPORTS_DIR=str(reports))
    proc = subprocess.run(  # noqa: S603 - our own command line with fixed arguments
        dagster_materialize("analytics/monthly_report", "2025-01-01"),
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert [p.name for p in reports.iterdir()] == ["2025-01.html"]

    require_chromium()
    page = inspect_page(reports / "2025-01.html", max_height=600)
    assert page.errors == [] and page.requests == []
    assert [c["name"] for c in page.charts] == ["volumes", "compliance", "risk", "consistency"]
    assert page.empty_charts() == []
    assert "Agent Attrition Risk — 90 day window" in page.headings


def test_automation_follows_the_latest_month_down_to_its_report() -> None:
    """A refreshed day of the latest month re-requests its roll-ups and its report."""
    from callminer_assets.definitions import defs

    month = monthly_partitions.get_last_partition_key()
    assert month is not None
    last_day = (date.fromisoformat(month) + timedelta(days=32)).replace(day=1) - timedelta(days=1)
    with dg.instance_for_test() as instance:
        tick = dg.evaluate_automation_conditions(defs=defs, instance=instance)
        instance.report_runless_asset_event(
            dg.AssetMaterialization(SCORES_KEY, partition=last_day.isoformat())
        )
        tick = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=tick.cursor)
        assert tick.get_requested_partitions(FEATURES_KEY) == {month}
        assert tick.get_requested_partitions(CONSISTENCY_KEY) == {month}
        # in the same tick, so in the same run, after them
        assert tick.get_requested_partitions(REPORT_KEY) == {month}
