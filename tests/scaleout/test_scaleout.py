"""The scale-out configuration, really run: DuckLake catalog and Dagster storage in a real
PostgreSQL, data files in a real (local) S3, runs as separate `dagster` processes.

This is what a Kubernetes deployment does (one process per run, nothing shared but the
servers), minus Kubernetes: deploy/dagster.yaml verbatim, deploy/env.example's variables.
"""

from __future__ import annotations

import subprocess
import time
from datetime import date
from typing import Any

import boto3
import dagster as dg
import pytest

import callminer_assets
from callminer_assets.defs.keys import INTERACTIONS_KEY, MAINTENANCE_KEY
from callminer_assets.defs.partitions import CALLMINER_POOL, SEMARIZE_POOL
from callminer_assets.defs.resources import build_resources
from callminer_assets.defs.upkeep import maintenance
from tests.defs.helpers import REPO, dagster_materialize
from tests.scaleout.conftest import ScaleOut

DAILY = ",".join(
    [
        "callminer/interactions",
        "callminer/quarantine",
        "callminer/transcripts",
        "callminer/utterances",
        "semarize/evaluations",
    ]
)
# The daily tables these runs write.
TABLES_WRITTEN = [
    "callminer.interactions",
    "callminer.transcripts",
    "callminer.utterances",
    "semarize.evaluations",
]
RUN_TIMEOUT_S = 400
# Each `dagster` process loads the code location and attaches the lake over the network;
# on a busy 2-core machine one run takes 1-2 minutes.
pytestmark = pytest.mark.timeout(1200)


NO_RETENTION = {
    "ops": {
        "warehouse__maintenance": {"config": {"snapshot_retention_hours": 0, "file_grace_hours": 0}}
    }
}


def _upkeep(deployment: ScaleOut, run_config: dict[str, Any] | None = None) -> dict[str, Any]:
    """Materialise warehouse/maintenance in this process, on the deployment's instance."""
    with dg.DagsterInstance.from_config(str(deployment.home)) as instance:
        result = dg.materialize(
            [maintenance], instance=instance, resources=build_resources(), run_config=run_config
        )
        assert result.success
        return {
            k: v.value
            for k, v in result.asset_materializations_for_node("warehouse__maintenance")[
                0
            ].metadata.items()
        }


@pytest.fixture
def deployment(scaleout: ScaleOut, monkeypatch: pytest.MonkeyPatch) -> ScaleOut:
    """The one-off setup of README's "Scale-out", before any worker starts: the Dagster
    schema (loading the instance migrates it) and the lake's tables (a first upkeep)."""
    for name, value in scaleout.env.items():
        monkeypatch.setenv(name, value)
    _upkeep(scaleout)
    return scaleout


def test_the_one_off_setup_creates_the_api_pools(deployment: ScaleOut) -> None:
    """Two workers' first steps creating a pool at once on PostgreSQL fail one run (a race in
    Dagster): the setup's first upkeep creates them, so no worker has to."""
    with dg.DagsterInstance.from_config(str(deployment.home)) as instance:
        storage = instance.event_log_storage
        assert {CALLMINER_POOL, SEMARIZE_POOL} <= set(storage.get_concurrency_keys())
        assert storage.get_concurrency_info(CALLMINER_POOL).slot_count == 1
    assert _upkeep(deployment)["pools_created"] == []  # already there: nothing to create


def _launch(deployment: ScaleOut, day: str, select: str = DAILY) -> subprocess.Popen[str]:
    return subprocess.Popen(  # noqa: S603 - our own CLI with fixed arguments
        dagster_materialize(select, day),
        cwd=REPO,
        env=deployment.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _finish(proc: subprocess.Popen[str]) -> None:
    _, stderr = proc.communicate(timeout=RUN_TIMEOUT_S)
    assert proc.returncode == 0, stderr[-4000:]


def _per_day(day: date) -> dict[str, tuple[int, int]]:
    """Per table: (rows of ``day``, distinct rows of ``day``), read as an analyst does."""
    con = callminer_assets.connect()
    try:
        out = {}
        for table in TABLES_WRITTEN:
            row = con.execute(
                f"SELECT (SELECT count(*) FROM {table} WHERE interaction_date = $1),"  # noqa: S608
                f" (SELECT count(*) FROM (SELECT DISTINCT * FROM {table}"  # noqa: S608
                " WHERE interaction_date = $1))",
                [day],
            ).fetchone()
            assert row is not None
            out[table] = (int(row[0]), int(row[1]))
        return out
    finally:
        con.close()


def _ids(day: date) -> list[Any]:
    con = callminer_assets.connect()
    try:
        return con.execute(
            "SELECT interaction_id FROM callminer.interactions WHERE interaction_date = ?"
            " ORDER BY 1",
            [day],
        ).fetchall()
    finally:
        con.close()


def _objects(deployment: ScaleOut) -> int:
    s3 = boto3.client("s3", endpoint_url=deployment.env["AWS_ENDPOINT_URL"])
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=deployment.bucket, Prefix="lake/")
    return sum(page.get("KeyCount", 0) for page in pages)


def test_two_days_at_once_land_completely_and_a_rerun_changes_nothing(
    deployment: ScaleOut,
) -> None:
    per_day = int(deployment.env["SANDBOX_PER_DAY"])
    days = [date(2025, 2, 3), date(2025, 2, 4)]
    procs = [_launch(deployment, str(day)) for day in days]  # two workers, same moment
    for proc in procs:
        _finish(proc)

    landed = {day: _per_day(day) for day in days}
    for day in days:
        interactions, distinct = landed[day]["callminer.interactions"]
        assert interactions == distinct == per_day, (day, landed[day])
        for table, (count, distinct_rows) in landed[day].items():
            assert count == distinct_rows > 0, (day, table)  # present, nothing doubled
        assert landed[day]["callminer.transcripts"][0] == per_day
        ids = _ids(day)
        assert len(set(ids)) == len(ids) == per_day

    # Both runs and their partitions are in the shared Dagster storage (PostgreSQL).
    with dg.DagsterInstance.from_config(str(deployment.home)) as instance:
        runs = [r for r in instance.get_runs() if "dagster/partition" in r.tags]
        assert sorted(r.tags["dagster/partition"] for r in runs) == [str(d) for d in days]
        assert {r.status for r in runs} == {dg.DagsterRunStatus.SUCCESS}
        assert instance.get_materialized_partitions(INTERACTIONS_KEY) == {str(d) for d in days}
    assert _objects(deployment) > 0  # the data files are on S3

    ids_before = _ids(days[0])
    _finish(_launch(deployment, str(days[0])))  # re-run the first day
    assert _ids(days[0]) == ids_before
    assert {day: _per_day(day) for day in days} == landed

    # Upkeep on S3 (no retention): back to the files the data needs, data unchanged.
    grown = _objects(deployment)
    meta = _upkeep(deployment, NO_RETENTION)
    assert meta["files_before"] == grown > meta["files_after"] == _objects(deployment)
    assert meta["old_files_deleted"] == grown - meta["files_after"]
    with dg.DagsterInstance.from_config(str(deployment.home)) as instance:
        assert instance.get_latest_materialization_event(MAINTENANCE_KEY) is not None
    assert {day: _per_day(day) for day in days} == landed


def test_an_open_analyst_session_sees_the_next_commit(deployment: ScaleOut) -> None:
    first, second = date(2025, 2, 10), date(2025, 2, 11)
    _finish(_launch(deployment, str(first), "callminer/interactions,callminer/quarantine"))
    per_day = int(deployment.env["SANDBOX_PER_DAY"])

    analyst = callminer_assets.connect()  # held open for the whole test
    try:
        count = "SELECT count(*) FROM callminer.interactions WHERE interaction_date = ?"
        assert analyst.execute(count, [first]).fetchone() == (per_day,)
        proc = _launch(deployment, str(second), "callminer/interactions,callminer/quarantine")
        deadline = time.monotonic() + RUN_TIMEOUT_S
        queries = 0
        while proc.poll() is None and time.monotonic() < deadline:
            # Busy, not just open: a real scan each time, and never a half-written day.
            (seen,) = analyst.execute(count, [second]).fetchone() or (None,)
            assert seen in (0, per_day)
            queries += 1
            time.sleep(0.3)
        _finish(proc)
        assert queries > 0
        # The same connection, its next query: the new day is there.
        assert analyst.execute(count, [second]).fetchone() == (per_day,)
        assert analyst.execute(count, [first]).fetchone() == (per_day,)
    finally:
        analyst.close()
