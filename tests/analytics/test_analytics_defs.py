"""The analytics assets as Dagster runs them, on a seeded warehouse (no upstream, no network)."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl
import pytest

from callminer_assets.defs.analytics.assets import ANALYTICS_ASSETS
from callminer_assets.defs.analytics.resources import build_analytics_resource
from callminer_assets.defs.resources import build_resources
from callminer_assets.transform.frames import polars_schema
from callminer_assets.warehouse.schema import (
    AGENT_MONTHLY_FEATURES,
    EVALUATIONS,
    INTERACTIONS,
)
from callminer_assets.warehouse.store import Warehouse
from tests.analytics.test_attrition import synthetic

DAY = date(2025, 1, 2)


def _frame(table: Any, rows: list[dict[str, Any]]) -> pl.DataFrame:
    schema = polars_schema(table)
    full = [{c: r.get(c) for c in schema.names()} for r in rows]
    return pl.DataFrame(full, schema=schema, orient="row")


def _seed_day(wh: Warehouse) -> None:
    inter, evs = [], []
    for i, (score, disclosure) in enumerate(((0.4, False), (0.9, True), (0.5, True))):
        iid = f"INT-20250102-{i:05d}"
        inter.append(
            {
                "interaction_id": iid,
                "interaction_date": DAY,
                "agent_id": "AG001",
                "channel": "voice",
                "start_time": datetime(2025, 1, 2, 10, tzinfo=UTC),
            }
        )
        bricks = {
            ("qa_compliance", "compliance_score"): score,
            ("qa_compliance", "recording_disclosure"): disclosure,
            ("qa_compliance", "prohibited_phrases"): 0 if score > 0.45 else 1,
            ("experience_quality", "empathy_score"): 0.7,
            ("experience_quality", "resolution_achieved"): True,
            ("experience_quality", "customer_effort"): 0.3,
            ("experience_quality", "brand_alignment"): 0.6,
            ("agent_wellbeing", "frustration_markers"): i,
            ("agent_wellbeing", "coaching_receptivity"): 0.5,
            ("agent_wellbeing", "customer_escalation_requested"): False,
        }
        for (kit, brick), value in bricks.items():
            evidence = (
                [{"quote": "shut up", "utterance_index": 4}]
                if brick == "prohibited_phrases" and value
                else []
            )
            evs.append(
                {
                    "interaction_id": iid,
                    "interaction_date": DAY,
                    "kit_code": kit,
                    "kit_version": "v1",
                    "brick": brick,
                    "value": json.dumps(value),
                    "evidence": json.dumps(evidence),
                    "run_id": f"{iid}-{kit}",
                    "status": "succeeded",
                    "evaluated_at": datetime(2025, 1, 3, tzinfo=UTC),
                }
            )
    wh.replace(INTERACTIONS, _frame(INTERACTIONS, inter), {"interaction_date": [DAY]})
    wh.replace(EVALUATIONS, _frame(EVALUATIONS, evs), {"interaction_date": [DAY]})


def _run(
    instance: dg.DagsterInstance, env: dict[str, str], selection: list[str], **kw: Any
) -> dg.ExecuteInProcessResult:
    with pytest.MonkeyPatch.context() as mp:
        for k, v in env.items():
            mp.setenv(k, v)
        resources = {**build_resources(), "analytics": build_analytics_resource()}
        return dg.materialize(
            ANALYTICS_ASSETS,
            instance=instance,
            resources=resources,
            selection=dg.AssetSelection.from_coercible(selection),
            **kw,
        )


def test_daily_monthly_and_model_assets(tmp_path: Path) -> None:
    db = tmp_path / "wh" / "callminer.duckdb"
    env = {
        "DUCKDB_PATH": str(db),
        "EXPORTS_DIR": str(tmp_path / "exports"),
        "MODELS_DIR": str(tmp_path / "models"),
        "AGENT_ROSTER_PATH": str(tmp_path / "roster.csv"),
    }
    wh = Warehouse(db)
    _seed_day(wh)
    with dg.instance_for_test() as instance:
        for _ in range(2):  # re-running the day: same rows, alerts not duplicated
            r = _run(
                instance,
                env,
                [
                    "analytics/interaction_scores",
                    "analytics/compliance_findings",
                    "analytics/compliance_alerts",
                ],
                partition_key="2025-01-02",
            )
            assert r.success
            assert all(c.passed for c in r.get_asset_check_evaluations())
        assert wh.query("SELECT count(*) AS n FROM analytics.interaction_scores")["n"][0] == 3
        alerts = wh.query(
            "SELECT interaction_id, failed_rules, delivered FROM analytics.compliance_alerts ORDER BY 1"
        )
        assert alerts["interaction_id"].to_list() == ["INT-20250102-00000", "INT-20250102-00002"]
        assert json.loads(alerts["failed_rules"][0]) == [
            "prohibited_phrases",
            "recording_disclosure",
        ]
        assert not alerts["delivered"].any()

        r = _run(
            instance,
            env,
            ["analytics/agent_monthly_features", "analytics/channel_consistency"],
            partition_key="2025-01-01",
        )
        assert r.success and all(c.passed for c in r.get_asset_check_evaluations())
        feats = wh.query("SELECT * FROM analytics.agent_monthly_features")
        assert feats["interactions"].to_list() == [3] and feats["low_volume"].to_list() == [True]
        assert feats["frustration_frequency"][0] == pytest.approx(2 / 3)
        assert (tmp_path / "exports/agent_monthly_features/month=2025-01/part.parquet").exists()
        assert (tmp_path / "exports/interaction_scores/month=2025-01/part.parquet").exists()

        # model + risk on a synthetic feature history (18 months) with its roster
        features, roster = synthetic()
        wh.replace(AGENT_MONTHLY_FEATURES, features, {})
        roster.write_csv(tmp_path / "roster.csv")
        r = _run(
            instance,
            env,
            ["callminer/agent_roster", "analytics/attrition_model", "analytics/attrition_risk"],
        )
        assert r.success and all(c.passed for c in r.get_asset_check_evaluations())
        metrics = wh.query("SELECT * FROM analytics.attrition_model_metrics")
        assert metrics.height == 1 and metrics["roc_auc"][0] > 0.75
        assert len(list((tmp_path / "models").glob("attrition-*.joblib"))) == 1
        risk = wh.query("SELECT * FROM analytics.attrition_risk")
        assert risk.height > 0 and risk["month"].n_unique() == 1
