"""deploy/dagster.yaml as shipped: a real instance on PostgreSQL, same limits as local."""

from __future__ import annotations

import dagster as dg
import pytest
import yaml
from dagster_postgres import PostgresEventLogStorage, PostgresRunStorage

from tests.defs.helpers import REPO
from tests.scaleout.conftest import ScaleOut


def test_deploy_instance_stores_runs_in_postgres(
    scaleout: ScaleOut, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in scaleout.env.items():
        monkeypatch.setenv(name, value)
    with dg.DagsterInstance.from_config(str(scaleout.home)) as instance:
        assert isinstance(instance.run_storage, PostgresRunStorage)
        assert isinstance(instance.event_log_storage, PostgresEventLogStorage)
        run = instance.create_run_for_job(dg.GraphDefinition("noop").to_job(), run_id=None)
        assert instance.get_run_by_id(run.run_id) is not None
    # A second instance on the same config (what another worker loads) sees the run.
    with dg.DagsterInstance.from_config(str(scaleout.home)) as other:
        assert other.get_run_by_id(run.run_id) is not None


def test_deploy_limits_match_the_local_instance() -> None:
    deploy = yaml.safe_load((REPO / "deploy" / "dagster.yaml").read_text())
    local = yaml.safe_load((REPO / "dagster.yaml").read_text())
    for section in ("concurrency", "run_monitoring", "run_coordinator"):
        assert deploy[section] == local[section], section
    assert deploy["storage"]["postgres"]["postgres_db"]["scheme"] == "postgresql+psycopg2"
