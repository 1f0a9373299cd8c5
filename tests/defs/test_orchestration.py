"""Orchestration end to end: analysts never blocked, real backfills, declarative downstream, tags.

Every test has its own ``tmp_path`` (DAGSTER_HOME + lake) and a tiny sandbox
(2-3 interactions per day), so the file stays well under two minutes on 2 cores.
"""

from __future__ import annotations

import dataclasses
import logging
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import yaml
from dagster._core.execution.backfill import BulkActionStatus, PartitionBackfill
from dagster._core.remote_origin import InProcessCodeLocationOrigin
from dagster._core.test_utils import (
    InProcessTestWorkspaceLoadTarget,
    create_test_daemon_workspace_context,
)
from dagster._core.types.loadable_target_origin import LoadableTargetOrigin
from dagster._core.utils import make_new_backfill_id
from dagster._core.workspace.context import WorkspaceProcessContext
from dagster._daemon.backfill import execute_backfill_iteration
from dagster._daemon.run_coordinator.queued_run_coordinator_daemon import (
    QueuedRunCoordinatorDaemon,
)

from callminer_assets.defs.callminer.assets import (
    INTERACTIONS_KEY,
    QUARANTINE_KEY,
    TRANSCRIPTS_KEY,
    UTTERANCES_KEY,
    interactions,
    transcripts,
)
from callminer_assets.defs.partitions import DAILY_BACKFILL_POLICY, daily_partitions
from callminer_assets.defs.resources import build_resources
from callminer_assets.defs.semarize.assets import EVALUATIONS_KEY, evaluations
from callminer_assets.defs.sensors import SENSORS, TRIGGER_TAG
from callminer_assets.lib.settings import WarehouseSettings
from callminer_assets.sandbox.app import SandboxConfig
from callminer_assets.sandbox.server import SandboxServer, serve
from callminer_assets.warehouse.store import connect
from tests.defs.helpers import (
    REPO,
    dagster_materialize,
    env_without_credentials,
    rows,
    sandbox_env,
)
from tests.lake import lake_env, lake_settings

# The daily assets a backfill covers here (the analytics assets have their own tests).
BACKFILL_KEYS = [INTERACTIONS_KEY, QUARANTINE_KEY, TRANSCRIPTS_KEY, UTTERANCES_KEY, EVALUATIONS_KEY]
BACKFILL_TAG = "backfill"
_LOG = logging.getLogger("test_orchestration")


# --------------------------------------------------------------------------- helpers


# --------------------------------------------------------------------------- 1. analysts


@pytest.mark.timeout(480)  # a Dagster CLI run in a subprocess on 2 shared cores
def test_a_session_held_open_sees_a_cli_run_commit_on_its_next_query(tmp_path: Path) -> None:
    """An analyst's read-only ``callminer_assets.connect()`` session stays open (and keeps
    querying) while ``dagster asset materialize`` runs in another process: the run
    succeeds, every query sees a whole snapshot (never half a day), and the next query on
    the SAME connection after the run sees the new day."""
    home = tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text((REPO / "dagster.yaml").read_text())
    lake = lake_settings(tmp_path / "warehouse")
    env = env_without_credentials(DAGSTER_HOME=str(home), SANDBOX_PER_DAY="3", **lake_env(lake))
    first = dg.materialize(
        [interactions],
        selection=[INTERACTIONS_KEY],
        partition_key="2025-01-14",
        resources=build_resources(env),
    )
    assert first.success

    analyst = connect(lake)
    try:
        count_sql = "SELECT count(*) FROM callminer.interactions"
        (before,) = analyst.execute(count_sql).fetchone() or (0,)
        assert before == 3
        proc = subprocess.Popen(  # noqa: S603 - our own CLI with fixed arguments
            dagster_materialize(
                "callminer/interactions,callminer/transcripts,semarize/evaluations", "2025-01-15"
            ),
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        seen = set()
        deadline = time.monotonic() + 240
        while proc.poll() is None and time.monotonic() < deadline:
            # A real scan of the lake each time: the session is busy, not just open.
            analyst.execute(
                "SELECT count(*), sum(length(interaction_id)) FROM callminer.interactions"
                " CROSS JOIN range(20000)"
            ).fetchone()
            (n,) = analyst.execute(count_sql).fetchone() or (0,)
            seen.add(n)
            time.sleep(0.2)  # leave the 2 CI cores to the run
        _, stderr = proc.communicate(timeout=60)
        assert proc.returncode == 0, stderr[-3000:]
        assert seen and seen <= {before, before + 3}  # whole snapshots only
        # The same connection, next query: the run's commit is there.
        assert analyst.execute(count_sql).fetchone() == (before + 3,)
        day = analyst.execute(
            "SELECT count(*) FROM callminer.transcripts WHERE interaction_date = DATE '2025-01-15'"
        ).fetchone()
        assert day == (3,)
    finally:
        analyst.close()


# --------------------------------------------------------------------------- 2+3. backfills


@dg.definitions
def backfill_defs() -> dg.Definitions:
    """The code location the backfill test's daemons load: the project's daily extraction
    assets with resources read from the environment *at load time* (the loopback sandbox).

    ``in_process_executor`` only because the runs are launched synchronously inside the
    test process (SyncInMemoryRunLauncher); the assets, policies and pools are the real ones.
    """
    return dg.Definitions(
        assets=[interactions, transcripts, evaluations],
        resources=build_resources(),
        executor=dg.in_process_executor,
    )


@contextmanager
def _daemon_instance(home: Path) -> Iterator[tuple[dg.DagsterInstance, WorkspaceProcessContext]]:
    """A real instance configured by the repo's dagster.yaml (queued runs, tag limit for
    backfills, one step per API pool), whose runs execute synchronously when launched."""
    home.mkdir()
    overrides = yaml.safe_load((REPO / "dagster.yaml").read_text())
    with dg.instance_for_test(
        overrides=overrides, temp_dir=str(home), synchronous_run_launcher=True
    ) as instance:
        origin = LoadableTargetOrigin(
            module_name=__name__, attribute="backfill_defs", working_directory=str(REPO)
        )
        target = InProcessTestWorkspaceLoadTarget(InProcessCodeLocationOrigin(origin))
        with create_test_daemon_workspace_context(target, instance) as context:
            yield instance, context


def _launch(
    instance: dg.DagsterInstance,
    context: WorkspaceProcessContext,
    partition_keys: list[str] | None = None,
    from_backfill: PartitionBackfill | None = None,
) -> str:
    """What the UI's "Materialize 90 partitions" (or "re-execute from failure") submits."""
    tags = {TRIGGER_TAG: BACKFILL_TAG}
    backfill_id = make_new_backfill_id()
    if from_backfill is not None:
        data = from_backfill.asset_backfill_data
        assert data is not None
        backfill = PartitionBackfill.from_asset_graph_subset(
            backfill_id=backfill_id,
            backfill_timestamp=time.time(),
            tags=tags,
            dynamic_partitions_store=instance,
            asset_graph_subset=data.failed_and_downstream_subset,
            title=None,
            description=None,
            run_config=None,
        )
    else:
        backfill = PartitionBackfill.from_asset_partitions(
            backfill_id=backfill_id,
            asset_graph=context.create_request_context().asset_graph,
            partition_names=partition_keys,
            asset_selection=BACKFILL_KEYS,
            backfill_timestamp=time.time(),
            tags=tags,
            dynamic_partitions_store=instance,
            all_partitions=False,
            title=None,
            description=None,
            run_config=None,
        )
    instance.add_backfill(backfill)
    return backfill_id


def _drive(
    instance: dg.DagsterInstance,
    context: WorkspaceProcessContext,
    backfill_id: str,
    after_first_launch: Callable[[], None] | None = None,
) -> PartitionBackfill:
    """Tick the backfill daemon and the run-queue daemon until the backfill is done."""
    launches = 0
    for _ in range(30):
        for error in execute_backfill_iteration(context, _LOG):
            assert error is None or not hasattr(error, "message"), error
        for _ in QueuedRunCoordinatorDaemon(interval_seconds=1).run_iteration(context):
            pass
        launches += 1
        if launches == 1 and after_first_launch is not None:
            after_first_launch()
        backfill = instance.get_backfill(backfill_id)
        assert backfill is not None
        if backfill.status != BulkActionStatus.REQUESTED:
            return backfill
    raise AssertionError(f"backfill {backfill_id} did not finish")


def _runs(instance: dg.DagsterInstance, backfill_id: str) -> list[dg.DagsterRun]:
    return list(instance.get_runs(filters=dg.RunsFilter(tags={"dagster/backfill": backfill_id})))


def _evaluated_days(db: WarehouseSettings) -> set[str]:
    return {
        str(r[0])
        for r in rows(
            db, "SELECT DISTINCT CAST(interaction_date AS VARCHAR) FROM semarize.evaluations"
        )
    }


def _rotate_semarize_key(server: SandboxServer, key: str) -> None:
    """Make every Semarize call answer 401 (or accept again): a non-retryable failure."""
    server.state.config = dataclasses.replace(server.state.config, semarize_key=key)


@pytest.mark.timeout(600)  # ~290 s alone on 2 busy cores: the default 300 s is too tight
def test_90_day_backfill_is_three_runs_and_a_failed_half_relaunch_pays_nothing_twice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The REAL backfill path: ``PartitionBackfill`` (what the UI submits) driven by the
    backfill daemon's and the run-queue daemon's own iteration functions, against an
    instance configured by the repo's dagster.yaml; runs execute synchronously in-process.

    Semarize starts refusing (401) after the first run-queue tick, so the backfill fails
    part-way; re-executing it from failure runs only the failed partitions' missing
    assets, and a further full 90-day launch starts no Semarize run at all.
    """
    db = lake_settings(tmp_path / "warehouse")
    days = list(daily_partitions.get_partition_keys()[:90])
    per_run = DAILY_BACKFILL_POLICY.max_partitions_per_run or len(days)
    max_runs = -(-len(days) // per_run)  # ceil
    assert max_runs == 3
    with serve(SandboxConfig(seed=5, per_day=2, pending_fraction=0.0)) as server:
        for name, value in sandbox_env(server.url, db).items():
            monkeypatch.setenv(name, value)
        good_key = server.state.config.semarize_key
        with _daemon_instance(tmp_path / "home") as (instance, context):
            # 1. The first launch fails part-way: Semarize refuses after the first queue tick.
            first_id = _launch(instance, context, days)
            first = _drive(
                instance,
                context,
                first_id,
                after_first_launch=lambda: _rotate_semarize_key(server, "rotated"),
            )
            first_runs = _runs(instance, first_id)
            assert first.status == BulkActionStatus.COMPLETED_FAILED
            assert 1 < len(first_runs) <= max_runs
            assert all(r.tags[TRIGGER_TAG] == BACKFILL_TAG for r in first_runs)
            failed = [r for r in first_runs if r.status == dg.DagsterRunStatus.FAILURE]
            assert len(failed) >= 1 and len(failed) < len(first_runs)
            done_days = _evaluated_days(db)
            assert 0 < len(done_days) < len(days)
            # Raw data of every day landed; only the Semarize side is missing.
            assert rows(db, "SELECT count(DISTINCT interaction_date) FROM callminer.interactions")[
                0
            ][0] == len(days)
            paid_before = server.state.runs_started
            assert paid_before == 3 * 2 * len(done_days)

            # 2. Re-execute from failure: only the missing evaluations, paid once.
            _rotate_semarize_key(server, good_key)
            retry_id = _launch(instance, context, from_backfill=first)
            retry = _drive(instance, context, retry_id)
            assert retry.status == BulkActionStatus.COMPLETED_SUCCESS
            retry_runs = _runs(instance, retry_id)
            assert 1 <= len(retry_runs) <= len(failed)
            for run in retry_runs:
                assert run.asset_selection == {EVALUATIONS_KEY}
            assert _evaluated_days(db) == set(days)
            missing = len(days) - len(done_days)
            assert server.state.runs_started == paid_before + 3 * 2 * missing
            assert set(server.state.billing.values()) == {1}

            # 3. A second full launch: at most 3 runs, not one new Semarize run.
            paid = server.state.runs_started
            again_id = _launch(instance, context, days)
            again = _drive(instance, context, again_id)
            assert again.status == BulkActionStatus.COMPLETED_SUCCESS
            assert len(_runs(instance, again_id)) <= max_runs
            assert server.state.runs_started == paid
            assert set(server.state.billing.values()) == {1}
            assert len(server.state.billing) == 3 * 2 * len(days)


# --------------------------------------------------------------------------- 4. automation


BLOCKING_UPSTREAM_CHECKS = [
    (INTERACTIONS_KEY, "unique_interaction_id"),
    (TRANSCRIPTS_KEY, "every_interaction_has_transcript_row"),
]


def _report(instance: dg.DagsterInstance, partition: str, checks_pass: bool = True) -> None:
    """What a raw run of ``partition`` records: materialisations, then its blocking checks."""
    for key in (INTERACTIONS_KEY, TRANSCRIPTS_KEY):
        instance.report_runless_asset_event(dg.AssetMaterialization(key, partition=partition))
    for key, check in BLOCKING_UPSTREAM_CHECKS:
        instance.report_runless_asset_event(
            dg.AssetCheckEvaluation(
                asset_key=key,
                check_name=check,
                passed=checks_pass or key != TRANSCRIPTS_KEY,
                severity=dg.AssetCheckSeverity.ERROR,
            )
        )


def _requested(result: Any, key: dg.AssetKey) -> set[str]:
    return set(result.get_requested_partitions(key))


def test_evaluations_follow_fresh_raw_partitions_by_automation_condition(
    tmp_path: Path,
) -> None:
    """``semarize/evaluations`` requests a partition once its raw upstream is materialised."""
    today = datetime.now(UTC).date().isoformat()
    defs = dg.Definitions(
        assets=[interactions, transcripts, evaluations], resources=build_resources({})
    )
    (tmp_path / "home").mkdir()
    with dg.instance_for_test(temp_dir=str(tmp_path / "home")) as instance:
        first = dg.evaluate_automation_conditions(
            defs=defs, instance=instance, asset_selection=dg.AssetSelection.keys(EVALUATIONS_KEY)
        )
        assert first.total_requested == 0  # nothing upstream yet
        _report(instance, today)
        second = dg.evaluate_automation_conditions(
            defs=defs,
            instance=instance,
            asset_selection=dg.AssetSelection.keys(EVALUATIONS_KEY),
            cursor=first.cursor,
        )
        assert _requested(second, EVALUATIONS_KEY) == {today}


def test_evaluations_follow_an_older_refreshed_day_but_not_a_failed_check(
    tmp_path: Path,
) -> None:
    """A sensor refresh of yesterday (lag window, webhook, pending retry) flows through,
    and a failed blocking check upstream holds evaluations back."""
    _assert_older_day_and_blocking_check(tmp_path, evaluations)


def _assert_older_day_and_blocking_check(tmp_path: Path, target: dg.AssetsDefinition) -> None:
    yesterday = (datetime.now(UTC) - timedelta(days=1)).date().isoformat()
    defs = dg.Definitions(assets=[interactions, transcripts, target], resources=build_resources({}))
    selection = dg.AssetSelection.keys(EVALUATIONS_KEY)
    for check_passed in (True, False):
        home = tmp_path / f"home-{check_passed}"
        home.mkdir()
        with dg.instance_for_test(temp_dir=str(home)) as instance:
            cursor = dg.evaluate_automation_conditions(
                defs=defs, instance=instance, asset_selection=selection
            ).cursor
            _report(instance, yesterday, checks_pass=check_passed)
            result = dg.evaluate_automation_conditions(
                defs=defs, instance=instance, asset_selection=selection, cursor=cursor
            )
            expected = {yesterday} if check_passed else set()
            assert _requested(result, EVALUATIONS_KEY) == expected, check_passed


# --------------------------------------------------------------------------- 5. tags


def test_every_sensor_names_its_trigger_in_a_run_tag() -> None:
    """Sensors and their run requests carry ``callminer/trigger`` (values asserted per
    request in test_sensors.py). UI backfills carry Dagster's own ``dagster/backfill`` tag,
    which dagster.yaml limits to 2 runs at a time (the backfill test depends on it)."""
    assert {s.name: s.tags.get(TRIGGER_TAG) for s in SENSORS} == {
        "callminer_poll_sensor": "poll",
        "callminer_pending_transcripts_sensor": "pending-retry",
        "callminer_webhook_inbox_sensor": "webhook",
    }
    for sensor in SENSORS:
        assert sensor.description and TRIGGER_TAG in sensor.description
