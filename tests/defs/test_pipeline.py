"""The pipeline as users run it: real Dagster runs, a real lake on tmp_path, the sandbox."""

from __future__ import annotations

import os
import subprocess
from datetime import date
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from callminer_assets.defs.resources import build_resources
from callminer_assets.lib.errors import ConfigError
from callminer_assets.lib.settings import WarehouseSettings
from callminer_assets.lib.tables import INTERACTIONS, TABLES
from callminer_assets.sandbox.app import SandboxConfig
from callminer_assets.sandbox.generator import Generator
from callminer_assets.sandbox.server import serve
from callminer_assets.warehouse.store import Warehouse
from tests.defs.helpers import (
    EXTRACT,
    REPO,
    dagster_materialize,
    env_without_credentials,
    materialize,
    range_tags,
    rows,
    sandbox_env,
)
from tests.lake import READ_FIRST_VALUE, fresh_python


def test_definitions_load_and_every_asset_owns_a_documented_table() -> None:
    from callminer_assets.definitions import defs

    keys = {"/".join(k.path) for k in defs.resolve_asset_graph().get_all_asset_keys()}
    # The model asset's table holds its metrics; the model itself is a file under data/models.
    owned = {
        "analytics/attrition_model": "analytics/attrition_model_metrics",
        # the other writers' rows of the quarantine table (one producer per asset key)
        "callminer/transcript_quarantine": "callminer/quarantine",
        "semarize/evaluation_quarantine": "callminer/quarantine",
    }
    keys.remove("analytics/monthly_report")  # a file per month under data/reports, no table
    keys.remove("warehouse/maintenance")  # upkeep of the lake itself, no table
    tables = {name.replace(".", "/") for name in TABLES}
    assert {owned.get(k, k) for k in keys} == tables


def test_credentials_half_set_is_a_clear_config_error() -> None:
    with pytest.raises(ConfigError, match="CALLMINER_API_URL"):
        build_resources({"CALLMINER_CLIENT_ID": "x", "CALLMINER_AUTH_URL": "http://a"})


def test_live_callminer_without_a_semarize_key_fails_before_any_request(
    dagster_home: dg.DagsterInstance, lake: WarehouseSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    with serve(SandboxConfig(seed=3, per_day=2)) as server:
        env = sandbox_env(server.url, lake)
        del env["SEMARIZE_API_KEY"], env["SEMARIZE_API_URL"]
        with pytest.raises(ConfigError) as info:
            materialize(dagster_home, env, EXTRACT, tags=range_tags("2025-01-14", "2025-01-14"))
        assert "\n" not in str(info.value) and "SEMARIZE_EVALUATOR=local-kits" in str(info.value)
        assert server.state.request_log == []
        env["SEMARIZE_EVALUATOR"] = "local-kits"  # chosen explicitly: scored by the kit files
        assert materialize(
            dagster_home,
            env,
            [*EXTRACT, "semarize/evaluations"],
            tags=range_tags("2025-01-14", "2025-01-14"),
        ).success
        assert rows(lake, "SELECT DISTINCT evaluator FROM semarize.evaluations") == [
            ("local-kits",)
        ]
        assert server.state.runs_started == 0  # nothing was sent to (or billed by) Semarize


def test_a_set_duckdb_path_stops_the_load_naming_its_replacement() -> None:
    with pytest.raises(ConfigError, match="WAREHOUSE_CATALOG and WAREHOUSE_DATA_PATH"):
        build_resources({"DUCKDB_PATH": "data/callminer.duckdb"})


def test_two_days_land_exactly_the_listed_ids_and_rerun_replaces(
    dagster_home: dg.DagsterInstance, lake: WarehouseSettings
) -> None:
    # No late transcripts here: a transcript arriving between runs is rightly evaluated then.
    config = SandboxConfig(seed=11, per_day=12, pending_fraction=0.0)
    with serve(config) as server:
        env = sandbox_env(server.url, lake)
        result = materialize(
            dagster_home, env, EXTRACT, tags=range_tags("2025-01-14", "2025-01-15")
        )
        assert result.success
        billed_after_first = server.state.runs_started
        _each_day_has_its_own_figures(result, lake, ["2025-01-14", "2025-01-15"])

        gen = Generator(seed=11, per_day=12)
        for day in (date(2025, 1, 14), date(2025, 1, 15)):
            expected = {r["id"] for r in gen.interactions(day) if isinstance(r, dict)}
            got = {
                r[0]
                for r in rows(
                    lake,
                    "SELECT interaction_id FROM callminer.interactions WHERE interaction_date = ?",
                    [day],
                )
            }
            assert got == expected and len(got) > 0

        before = rows(
            lake,
            "SELECT (SELECT count(*) FROM callminer.interactions),"
            " (SELECT count(*) FROM callminer.utterances),"
            " (SELECT count(*) FROM semarize.evaluations)",
        )
        # Re-materialise one of the two days: same rows, nothing doubled, nothing paid again.
        again = materialize(dagster_home, env, EXTRACT, partition_key="2025-01-14")
        assert again.success
        assert server.state.runs_started == billed_after_first
        assert set(server.state.billing.values()) == {1}
        after = rows(
            lake,
            "SELECT (SELECT count(*) FROM callminer.interactions),"
            " (SELECT count(*) FROM callminer.utterances),"
            " (SELECT count(*) FROM semarize.evaluations)",
        )
        assert after == before
        dupes = rows(
            lake,
            "SELECT interaction_id FROM callminer.interactions GROUP BY 1 HAVING count(*) > 1",
        )
        assert dupes == []
        evaluated = rows(
            lake,
            "SELECT count(DISTINCT (interaction_id, kit_code)) FROM semarize.evaluations",
        )[0][0]
        available = rows(
            lake, "SELECT count(*) FROM callminer.transcripts WHERE status = 'available'"
        )[0][0]
        assert evaluated == 3 * available


def _each_day_has_its_own_figures(
    result: dg.ExecuteInProcessResult, lake: WarehouseSettings, days: list[str]
) -> None:
    """A range run (a backfill) records each partition's own rows, not the run's total."""
    tables = {
        "callminer/interactions": "callminer.interactions",
        "callminer/transcripts": "callminer.transcripts",
        "semarize/evaluations": "semarize.evaluations",
    }
    events = [
        e.step_materialization_data.materialization
        for e in result.get_asset_materialization_events()
    ]
    seen = 0
    for m in events:
        table = tables.get(m.asset_key.to_user_string())
        if table is None:
            continue
        assert m.partition in days
        stored = rows(
            lake,
            f"SELECT count(*) FROM {table} WHERE interaction_date = ?",  # noqa: S608 - fixed names
            [date.fromisoformat(str(m.partition))],
        )[0][0]
        assert m.metadata["dagster/row_count"].value == stored
        seen += 1
    assert seen == len(tables) * len(days)  # a run-wide total (2 days' rows) would fail above


def test_materialisation_metadata_is_useful(
    dagster_home: dg.DagsterInstance, lake: WarehouseSettings
) -> None:
    with serve(SandboxConfig(seed=3, per_day=10)) as server:
        result = materialize(
            dagster_home,
            sandbox_env(server.url, lake),
            ["callminer/interactions", "callminer/transcripts"],
            partition_key="2025-02-03",
        )
    assert result.success
    by_key = {
        "/".join(m.asset_key.path): m.metadata
        for m in result.asset_materializations_for_node("interactions")
    }
    meta = by_key["callminer/interactions"]
    assert meta["dagster/row_count"].value == 10
    assert meta["dagster/table_name"].value == "callminer.interactions"
    assert sum(meta["per_channel"].value.values()) == 10
    assert "| interaction_id |" in meta["preview"].value
    tmeta = {
        "/".join(m.asset_key.path): m.metadata
        for m in result.asset_materializations_for_node("transcripts")
    }["callminer/transcripts"]
    assert "pending" in tmeta and "per_status" in tmeta


CONTRACT_SQL = (
    "ATTACH 'ducklake:sqlite:data/warehouse.sqlite' AS warehouse "
    "(DATA_PATH 'data/lake/', READ_ONLY); USE warehouse; "
    "SELECT count(*) FROM callminer.interactions"
)


def test_dagster_cli_creates_the_default_lake_and_the_contract_sql_reads_it(
    tmp_path: Path,
) -> None:
    """A data engineer's `dagster asset materialize` in a project folder with no lake yet;
    then, in a fresh process, the exact ATTACH SQL of the contract (default paths)."""
    home = tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text((REPO / "dagster.yaml").read_text())
    project = tmp_path / "project"
    project.mkdir()
    env = env_without_credentials(DAGSTER_HOME=str(home), SANDBOX_PER_DAY="8")
    for name in ("WAREHOUSE_CATALOG", "WAREHOUSE_DATA_PATH", "DUCKDB_PATH"):
        env.pop(name, None)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    proc = subprocess.run(
        dagster_materialize("callminer/interactions,callminer/transcripts", "2025-01-14"),
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "built-in sandbox" in proc.stderr
    assert (project / "data" / "warehouse.sqlite").is_file()
    assert fresh_python(READ_FIRST_VALUE, CONTRACT_SQL, env=env, cwd=project).strip() == "8"


def test_stored_transcripts_survive_an_api_calling_them_pending_again(
    dagster_home: dg.DagsterInstance, lake: WarehouseSettings
) -> None:
    """Re-runs keep what is stored; even a forced refetch that meets 'processing' loses nothing."""
    with serve(SandboxConfig(seed=8, per_day=10, pending_fraction=0.0)) as server:
        env = sandbox_env(server.url, lake)
        assert materialize(dagster_home, env, EXTRACT, partition_key="2025-01-20").success
        counts = "SELECT status, count(*) FROM callminer.transcripts GROUP BY 1"
        before = rows(lake, counts)
        utterances = rows(lake, "SELECT count(*) FROM callminer.utterances")
        paid = server.state.runs_started
        fetches = sum(server.state.transcript_fetches.values())

        # A plain re-run fetches nothing already stored.
        assert materialize(dagster_home, env, EXTRACT, partition_key="2025-01-20").success
        assert sum(server.state.transcript_fetches.values()) == fetches

        # Now the API answers 'processing' for everything, and the user forces a refetch.
        server.state.faults.pending_fraction = 1.0
        server.state.faults.pending_fetches = 1000
        log_start = len(server.state.request_log)
        again = materialize(
            dagster_home,
            env,
            EXTRACT,
            partition_key="2025-01-20",
            run_config={"ops": {"transcripts": {"config": {"refetch_available": True}}}},
        )
        assert again.success
        assert sum(server.state.transcript_fetches.values()) == fetches + 10
        answered = [
            e["status"]
            for e in server.state.request_log[log_start:]
            if e["path"].endswith("/transcript")
        ]
        assert len(answered) == 10 and any(s in (404, 202) for s in answered)
        assert rows(lake, counts) == before == [("available", 10)]
        assert rows(lake, "SELECT count(*) FROM callminer.utterances") == utterances
        assert server.state.runs_started == paid


def test_an_interaction_stored_under_two_days_fails_the_blocking_check(
    dagster_home: dg.DagsterInstance, lake: WarehouseSettings
) -> None:
    """CallMiner moved a startTime across midnight: the id is now under two days."""
    with serve(SandboxConfig(seed=6, per_day=5, pending_fraction=0.0)) as server:
        env = sandbox_env(server.url, lake)
        assert materialize(dagster_home, env, EXTRACT, partition_key="2025-01-21").success
        wh = Warehouse(lake)
        moved = wh.read(INTERACTIONS, {"interaction_date": [date(2025, 1, 21)]}).head(1)
        wh.replace(
            INTERACTIONS,
            moved.with_columns(interaction_date=pl.lit(date(2025, 1, 20))),
            {"interaction_date": [date(2025, 1, 20)]},
        )
        again = materialize(
            dagster_home, env, EXTRACT, partition_key="2025-01-21", raise_on_error=False
        )
    checks = {e.check_name: e.passed for e in again.get_asset_check_evaluations()}
    assert checks["unique_interaction_id"] is False
    # Blocking: the run stops there; nothing is evaluated on top of the duplicate.
    assert not again.success
    started = {e.step_key for e in again.all_events if e.event_type_value == "STEP_START"}
    assert "semarize__evaluations" not in started


@pytest.mark.timeout(120)  # ~35 s; before the fix the in-process executor spun 3 min and more
def test_a_failed_evaluations_step_ends_the_daily_run_instead_of_hanging(
    dagster_home: dg.DagsterInstance, lake: WarehouseSettings
) -> None:
    """In-process, a step that becomes skippable only after an upstream failure was never
    processed and the run spun forever (framework_coverage on the REST backend)."""
    from callminer_assets.definitions import DAILY_ASSETS

    with serve(SandboxConfig(seed=5, per_day=4)) as server:
        result = materialize(
            dagster_home,
            sandbox_env(server.url, lake, SEMARIZE_API_KEY="smz_wrong"),
            [key.to_user_string() for key in DAILY_ASSETS],  # the daily job's steps
            tags=range_tags("2025-01-06", "2025-01-07"),
            raise_on_error=False,
        )
    assert not result.success
    failed = [e.step_key for e in result.all_events if e.is_step_failure]
    assert failed == ["semarize__evaluations"]
    assert rows(lake, "SELECT count(*) FROM callminer.interactions")[0][0] == 8  # kept
