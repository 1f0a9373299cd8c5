"""The analytics assets as Dagster runs them, on a seeded warehouse (no upstream, no network)."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl
import pytest

from callminer_assets.defs.analytics.assets import ANALYTICS_ASSETS, agent_features
from callminer_assets.defs.analytics.resources import build_analytics_resource
from callminer_assets.defs.keys import FEATURES_KEY, RISK_KEY, SCORES_KEY
from callminer_assets.defs.partitions import (
    RANGE_END_TAG,
    RANGE_START_TAG,
    daily_partitions,
    monthly_partitions,
)
from callminer_assets.defs.resources import build_resources
from callminer_assets.lib.tables import (
    AGENT_MONTHLY_FEATURES,
    COMPLIANCE_ALERTS,
    EVALUATIONS,
    INTERACTION_SCORES,
    INTERACTIONS,
    polars_schema,
)
from callminer_assets.warehouse.store import Warehouse
from tests.analytics.conftest import Receiver
from tests.analytics.test_attrition import synthetic
from tests.defs.helpers import materialize
from tests.lake import lake_env, lake_settings

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
    return materialize(instance, env, selection, **kw)


def test_daily_monthly_and_model_assets(tmp_path: Path) -> None:
    db = lake_settings(tmp_path / "wh")
    env = {
        **lake_env(db),
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


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {
        **lake_env(lake_settings(tmp_path / "wh")),
        "EXPORTS_DIR": str(tmp_path / "exports"),
        "MODELS_DIR": str(tmp_path / "models"),
        "AGENT_ROSTER_PATH": str(tmp_path / "roster.csv"),
        **extra,
    }


def test_too_little_history_skips_model_and_risk_cleanly(tmp_path: Path) -> None:
    env = _env(tmp_path)
    wh = Warehouse(lake_settings(tmp_path / "wh"))
    features, roster = synthetic(n_agents=20)
    # a recent window: two months of features, a roster exported right after them
    recent = features.filter(pl.col("month") >= date(2025, 5, 1))
    wh.replace(AGENT_MONTHLY_FEATURES, recent, {})
    roster.write_csv(tmp_path / "roster.csv")
    config = {"roster_as_of": "2025-07-05"}
    with dg.instance_for_test() as instance:
        r = _run(
            instance,
            env,
            ["callminer/agent_roster", "analytics/attrition_model", "analytics/attrition_risk"],
            run_config={
                "ops": {
                    "analytics__attrition_model": {"config": config},
                    "analytics__attrition_risk": {"config": config},
                }
            },
        )
        assert r.success
        by_key = {
            e.asset_key: e.step_materialization_data.materialization.metadata
            for e in r.get_asset_materialization_events()
        }
        model_meta = by_key[dg.AssetKey(["analytics", "attrition_model"])]
        assert "need >= 2 labelled months" in model_meta["skipped"].value
        assert "skipped" in by_key[dg.AssetKey(["analytics", "attrition_risk"])]
        (check,) = r.get_asset_check_evaluations()
        assert check.check_name == "model_metrics_present" and not check.passed
        assert check.severity == dg.AssetCheckSeverity.WARN
        assert "need >= 2 labelled months" in check.metadata["skipped"].value
    assert not list((tmp_path / "models").glob("*.joblib"))
    assert wh.query("SELECT count(*) AS n FROM analytics.attrition_model_metrics")["n"][0] == 0
    assert wh.query("SELECT count(*) AS n FROM analytics.attrition_risk")["n"][0] == 0


def test_duplicate_score_rows_in_the_table_fail_the_check(tmp_path: Path) -> None:
    env = _env(tmp_path)
    wh = Warehouse(lake_settings(tmp_path / "wh"))
    _seed_day(wh)
    with dg.instance_for_test() as instance:
        scores = ["analytics/interaction_scores", "analytics/compliance_findings"]
        assert _run(instance, env, scores, partition_key="2025-01-02").success
        # CallMiner re-dated an interaction: its old row stays in the other day's partition
        old = wh.read(INTERACTION_SCORES).head(1).with_columns(interaction_date=date(2025, 1, 1))
        wh.replace(INTERACTION_SCORES, old, {"interaction_date": [date(2025, 1, 1)]})
        r = _run(instance, env, scores, partition_key="2025-01-02", raise_on_error=False)
        (check,) = r.get_asset_check_evaluations()
        assert check.check_name == "scores_in_range" and not check.passed
        assert check.metadata["duplicate_interactions"].value == 1


def test_features_depend_on_three_months_of_days_and_run_as_a_range(tmp_path: Path) -> None:
    mapping = agent_features.get_partition_mapping_for_dep(SCORES_KEY)
    assert mapping is not None
    march = monthly_partitions.subset_with_partition_keys(["2025-03-01"])
    upstream = mapping.get_upstream_mapped_partitions_result_for_partitions(
        march, monthly_partitions, daily_partitions
    ).partitions_subset.get_partition_keys()
    assert (upstream[0], upstream[-1], len(upstream)) == ("2025-01-01", "2025-03-31", 90)
    # the first month has no months before it: clamped, not an error
    jan = monthly_partitions.subset_with_partition_keys(["2025-01-01"])
    result = mapping.get_upstream_mapped_partitions_result_for_partitions(
        jan, monthly_partitions, daily_partitions
    )
    assert len(result.partitions_subset.get_partition_keys()) == 31
    # a day's scores feed that month's features and the next two months' trends
    day = daily_partitions.subset_with_partition_keys(["2025-01-02"])
    down = mapping.get_downstream_partitions_for_partitions(
        day, daily_partitions, monthly_partitions
    ).get_partition_keys()
    assert list(down) == ["2025-01-01", "2025-02-01", "2025-03-01"]

    # as `python -m callminer_assets run` does it: the days, then one range run of the months
    env = _env(tmp_path)
    wh = Warehouse(lake_settings(tmp_path / "wh"))
    _seed_day(wh)
    with dg.instance_for_test() as instance:
        scores = ["analytics/interaction_scores", "analytics/compliance_findings"]
        assert _run(instance, env, scores, partition_key="2025-01-02").success
        r = _run(
            instance,
            env,
            ["analytics/agent_monthly_features", "analytics/channel_consistency"],
            tags={RANGE_START_TAG: "2025-01-01", RANGE_END_TAG: "2025-03-01"},
        )
        assert r.success
    feats = wh.query("SELECT agent_id, month, interactions FROM analytics.agent_monthly_features")
    assert feats.rows() == [("AG001", date(2025, 1, 1), 3)]  # no scores in Feb, Mar: no rows


def test_alerts_are_in_the_table_before_slack_sees_them(tmp_path: Path, receiver: Receiver) -> None:
    env = _env(tmp_path, SLACK_WEBHOOK_URL=receiver.url)
    wh = Warehouse(lake_settings(tmp_path / "wh"))
    _seed_day(wh)
    at_post: list[pl.DataFrame] = []
    receiver.on_post = lambda: at_post.append(wh.read(COMPLIANCE_ALERTS))
    keys = [
        "analytics/interaction_scores",
        "analytics/compliance_findings",
        "analytics/compliance_alerts",
    ]
    with dg.instance_for_test() as instance:
        for _ in range(2):
            assert _run(instance, env, keys, partition_key="2025-01-02").success
    assert len(receiver.bodies) == 1  # the re-run posts nothing
    (stored,) = at_post
    assert stored["interaction_id"].to_list() == ["INT-20250102-00000", "INT-20250102-00002"]
    assert not stored["delivered"].any()
    assert wh.read(COMPLIANCE_ALERTS)["delivered"].all()


def test_model_is_requested_after_one_features_month_though_others_are_missing() -> None:
    resources = {**build_resources(), "analytics": build_analytics_resource()}
    defs = dg.Definitions(assets=ANALYTICS_ASSETS, resources=resources)
    model, risk = dg.AssetKey(["analytics", "attrition_model"]), RISK_KEY
    with dg.instance_for_test() as instance:
        first = dg.evaluate_automation_conditions(defs=defs, instance=instance)
        assert first.get_num_requested(model) == 0
        instance.report_runless_asset_event(
            dg.AssetMaterialization(FEATURES_KEY, partition="2025-03-01")
        )
        second = dg.evaluate_automation_conditions(
            defs=defs, instance=instance, cursor=first.cursor
        )
        assert second.get_num_requested(model) == 1
        assert second.get_num_requested(risk) == 1  # with the model, in the same tick
        # handled: nothing new upstream, nothing requested again
        third = dg.evaluate_automation_conditions(
            defs=defs, instance=instance, cursor=second.cursor
        )
        assert third.get_num_requested(model) == 0


def test_the_model_retrains_only_when_its_inputs_change(tmp_path: Path) -> None:
    env = _env(tmp_path)
    wh = Warehouse(lake_settings(tmp_path / "wh"))
    features, roster = synthetic()
    wh.replace(AGENT_MONTHLY_FEATURES, features, {})
    roster.write_csv(tmp_path / "roster.csv")
    selection = ["callminer/agent_roster", "analytics/attrition_model"]

    def model_run(instance: dg.DagsterInstance) -> dict[str, Any]:
        r = _run(instance, env, selection)
        assert r.success and all(c.passed for c in r.get_asset_check_evaluations())
        (event,) = [
            e
            for e in r.get_asset_materialization_events()
            if e.asset_key.path[-1] == "attrition_model"
        ]
        meta = event.step_materialization_data.materialization.metadata
        return {k: v.value for k, v in meta.items()}

    with dg.instance_for_test() as instance:
        first = model_run(instance)
        assert first["retrained"] is True
        again = model_run(instance)  # same features, same roster: the same model, kept
        assert again["retrained"] is False and again["model_version"] == first["model_version"]
        assert len(list((tmp_path / "models").glob("attrition-*.joblib"))) == 1
        changed = features.with_columns(pl.col("interactions") + 1)
        wh.replace(AGENT_MONTHLY_FEATURES, changed, {})
        third = model_run(instance)
        assert third["retrained"] is True and third["model_version"] != first["model_version"]
        assert third["inputs_fingerprint"] != first["inputs_fingerprint"]
