"""The Bulk Export backend as users run it: real Dagster runs, a loopback sandbox, real files."""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg
import pytest

from callminer_assets.lib.settings import WarehouseSettings
from callminer_assets.sandbox.app import SandboxConfig
from callminer_assets.sandbox.bulk import BULK_PREFIX
from callminer_assets.sandbox.server import serve
from callminer_assets.warehouse.store import Warehouse
from tests.defs.helpers import (
    EXTRACT,
    env_without_credentials,
    materialize,
    range_tags,
    rows,
    sandbox_env,
)
from tests.lake import lake_env, lake_settings

RAW = [*EXTRACT, "callminer/utterances"]
BULK_EXTRACT = [*RAW, "callminer/native_scores", "callminer/native_categories"]
DAYS = ("2025-01-14", "2025-01-15")
# Fast sandbox clock: an execution "takes 2 minutes", i.e. a few milliseconds.
FAST = {"bulk_job_seconds": 120.0, "bulk_clock_speed": 60_000.0}


def bulk_env(url: str, db: WarehouseSettings, **extra: str) -> dict[str, str]:
    settings = {
        "CALLMINER_BACKEND": "bulk",
        "CALLMINER_API_URL": f"{url}{BULK_PREFIX}",
        "CALLMINER_TENANT_TIMEZONE": "America/New_York",
        "CALLMINER_BULK_POLL_INTERVAL_SECONDS": "0.005",
        "CALLMINER_BULK_POLL_BUDGET_SECONDS": "5",
        "CALLMINER_BULK_STAGING_DIR": str(Path(db.data_path).parent / "staging"),
    }
    return sandbox_env(url, db, **{**settings, **extra})


def _tables(db: WarehouseSettings) -> dict[str, list[tuple[object, ...]]]:
    return {
        "interactions": rows(
            db,
            "SELECT interaction_id, interaction_date, channel FROM callminer.interactions ORDER BY 1",
        ),
        "transcripts": rows(
            db,
            "SELECT interaction_id, status, utterance_count FROM callminer.transcripts ORDER BY 1",
        ),
        "utterances": rows(
            db, "SELECT interaction_id, seq, text FROM callminer.utterances ORDER BY 1, 2"
        ),
    }


def test_same_seed_and_days_give_the_same_tables_through_both_backends(tmp_path: Path) -> None:
    config = SandboxConfig(seed=5, per_day=10, pending_fraction=0.0, **FAST)
    with serve(config) as server:
        got = {}
        for backend in ("rest", "bulk"):
            (tmp_path / backend).mkdir()
            db = lake_settings(tmp_path / backend / "w")
            env = sandbox_env(server.url, db) if backend == "rest" else bulk_env(server.url, db)
            with dg.instance_for_test(temp_dir=str(tmp_path / backend)) as instance:
                result = materialize(instance, env, RAW, tags=range_tags(*DAYS))
            assert result.success
            got[backend] = _tables(db)
    assert len(got["rest"]["interactions"]) == 20
    assert got["rest"]["transcripts"] and got["rest"]["utterances"]
    assert got["bulk"] == got["rest"]


def test_bulk_run_fills_native_tables_keeps_tenant_columns_and_deletes_after_commit(
    tmp_path: Path,
) -> None:
    config = SandboxConfig(seed=6, per_day=8, **FAST)
    db = lake_settings(tmp_path / "w")
    with serve(config) as server, dg.instance_for_test(temp_dir=str(tmp_path)) as instance:
        result = materialize(
            instance, bulk_env(server.url, db), BULK_EXTRACT, tags=range_tags(*DAYS)
        )
        assert result.success
        bulk = server.state.bulk
        # One job for the whole range; its execution and the job deleted after the commit.
        assert len(bulk.deleted) == 2 and not bulk.jobs and not bulk.executions
        assert sum(bulk.downloads.values()) == 1
    assert not any((Path(db.data_path).parent / "staging").iterdir())
    (n_scores,) = rows(db, "SELECT count(*) FROM callminer.native_scores")[0]
    (n_cats,) = rows(db, "SELECT count(*) FROM callminer.native_categories")[0]
    assert n_scores == 16 * 3 and n_cats >= 16
    assert rows(db, "SELECT DISTINCT origin FROM callminer.interactions") == [("bulk:127.0.0.1",)]
    extras = [json.loads(e) for (e,) in rows(db, "SELECT extra FROM callminer.interactions")]
    assert all({"UDF_Region", "UDF_Priority", "LastModified"} <= set(e) for e in extras)
    assert all(isinstance(e["UDF_Priority"], int) for e in extras)


def test_a_run_without_transcripts_deletes_its_export_after_the_interactions_commit(
    tmp_path: Path,
) -> None:
    config = SandboxConfig(seed=12, per_day=4, **FAST)
    db = lake_settings(tmp_path / "w")
    selection = ["callminer/interactions", "callminer/native_scores", "callminer/native_categories"]
    with serve(config) as server, dg.instance_for_test(temp_dir=str(tmp_path)) as instance:
        result = materialize(instance, bulk_env(server.url, db), selection, partition_key=DAYS[0])
        assert result.success
        assert len(server.state.bulk.deleted) == 2 and not server.state.bulk.jobs
    assert not any((Path(db.data_path).parent / "staging").iterdir())
    (n,) = rows(db, "SELECT count(*) FROM callminer.native_scores")[0]
    assert n == 4 * 3


def test_reprocessed_contacts_replace_their_older_version_and_child_rows(tmp_path: Path) -> None:
    config = SandboxConfig(seed=8, per_day=10, **FAST)
    db = lake_settings(tmp_path / "w")
    with serve(config) as server, dg.instance_for_test(temp_dir=str(tmp_path)) as instance:
        env = bulk_env(server.url, db)
        assert materialize(instance, env, BULK_EXTRACT, partition_key=DAYS[0]).success
        before = dict(rows(db, "SELECT interaction_id, utterance_count FROM callminer.transcripts"))
        server.state.bulk.reprocess(rate=0.5)
        assert materialize(instance, env, BULK_EXTRACT, partition_key=DAYS[0]).success
    after = dict(rows(db, "SELECT interaction_id, utterance_count FROM callminer.transcripts"))
    changed = {i for i in before if after[i] != before[i]}
    assert changed and all(after[i] == before[i] - 1 for i in changed)
    # Child rows replaced whole: the utterance table holds exactly the new counts.
    stored = dict(rows(db, "SELECT interaction_id, count(*) FROM callminer.utterances GROUP BY 1"))
    assert stored == {i: n for i, n in after.items() if n}
    cats = rows(
        db,
        "SELECT interaction_id, list(category_id ORDER BY category_id) "
        "FROM callminer.native_categories GROUP BY 1",
    )
    assert {i for i, c in cats if c == ["C-REPROC"]} == changed
    (dupes,) = rows(
        db,
        "SELECT count(*) - count(DISTINCT interaction_id) FROM callminer.interactions",
    )[0]
    assert dupes == 0


@pytest.mark.parametrize(
    ("switch", "value", "message"),
    [
        ("stuck", True, "still InProgress after"),
        ("failed", True, "ended Failed: Export failed: the search exceeded"),
        ("truncated_zip", True, "truncated; the export is kept"),
        ("missing_type", "Transcripts_by_speaker", "has no Transcripts_by_speaker file"),
    ],
)
def test_a_broken_export_fails_clearly_writes_nothing_and_keeps_the_export(
    tmp_path: Path, switch: str, value: object, message: str
) -> None:
    config = SandboxConfig(seed=9, per_day=6, **FAST)
    db = lake_settings(tmp_path / "w")
    with serve(config) as server, dg.instance_for_test(temp_dir=str(tmp_path)) as instance:
        setattr(server.state.bulk.switches, switch, value)
        env = bulk_env(server.url, db, CALLMINER_BULK_POLL_BUDGET_SECONDS="0.3")
        result = materialize(
            instance, env, BULK_EXTRACT, partition_key=DAYS[0], raise_on_error=False
        )
        assert not result.success
        errors = [
            str(e.event_specific_data.error)  # type: ignore[union-attr]
            for e in result.all_events
            if e.is_step_failure
        ]
        assert any(message in e for e in errors), errors
        job_id = next(iter(server.state.bulk.jobs))
        assert any(job_id in e for e in errors) or switch in ("truncated_zip", "missing_type")
        assert server.state.bulk.deleted == [] and server.state.bulk.executions
    if Warehouse(db).exists():
        (n,) = rows(db, "SELECT count(*) FROM callminer.interactions")[0]
        assert n == 0
    staging = Path(db.data_path).parent / "staging"
    assert not staging.exists() or not any(staging.iterdir())


def test_a_failing_delete_is_logged_and_the_run_still_succeeds(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = SandboxConfig(seed=10, per_day=4, **FAST)
    db = lake_settings(tmp_path / "w")
    with serve(config) as server, dg.instance_for_test(temp_dir=str(tmp_path)) as instance:
        server.state.bulk.switches.delete_status = 404
        result = materialize(
            instance, bulk_env(server.url, db), BULK_EXTRACT, partition_key=DAYS[0]
        )
        assert result.success
        logs = "\n".join(str(e) for e in instance.all_logs(result.run_id))
        assert "could not delete the export (left on CallMiner)" in logs
        assert server.state.bulk.jobs
    (n,) = rows(db, "SELECT count(*) FROM callminer.utterances")[0]
    assert n > 0


def test_embedded_sandbox_runs_every_daily_table_with_no_credentials(
    dagster_home: dg.DagsterInstance, lake: WarehouseSettings
) -> None:
    """What ``make run CALLMINER_BACKEND=bulk`` does for its days, without any credential
    (tables that may rightly stay empty on a first run, like alerts or kit diffs, aside)."""
    from callminer_assets.definitions import DAILY_ASSETS

    env = env_without_credentials(CALLMINER_BACKEND="bulk", **lake_env(lake))
    keys = ["/".join(k.path) for k in DAILY_ASSETS]
    result = materialize(dagster_home, env, keys, tags=range_tags(*DAYS))
    assert result.success
    for table in (
        "callminer.interactions",
        "callminer.transcripts",
        "callminer.utterances",
        "callminer.native_scores",
        "callminer.native_categories",
        "semarize.evaluations",
        "analytics.interaction_scores",
        "analytics.compliance_findings",
    ):
        (n,) = rows(lake, f"SELECT count(*) FROM {table}")[0]  # noqa: S608 - constant names
        assert n > 0, table
    assert rows(lake, "SELECT DISTINCT origin FROM callminer.interactions") == [("sandbox",)]
    assert not any((Path(lake.data_path).parent / "bulk").iterdir())  # released after the commit
