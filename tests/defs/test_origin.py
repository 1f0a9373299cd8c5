"""``origin`` on every interaction; a day never silently mixes two origins (issue 11, item 4)."""

from __future__ import annotations

import dagster as dg

from callminer_assets.lib.settings import WarehouseSettings
from callminer_assets.sandbox.app import SandboxConfig
from callminer_assets.sandbox.server import serve
from tests.defs.helpers import env_without_credentials, materialize, rows, sandbox_env
from tests.lake import lake_env

DAY, OTHER_DAY = "2025-01-14", "2025-01-15"
SELECT = ["callminer/interactions"]


def _origins(db: WarehouseSettings, day: str) -> list[tuple[object, ...]]:
    return rows(
        db,
        "SELECT origin, count(*) FROM callminer.interactions WHERE interaction_date = ? GROUP BY 1",
        [day],
    )


def test_a_day_of_one_origin_refuses_another_unless_told_to_replace(
    dagster_home: dg.DagsterInstance, lake: WarehouseSettings
) -> None:
    embedded = env_without_credentials(**lake_env(lake), SANDBOX_PER_DAY="8")
    assert materialize(dagster_home, embedded, SELECT, partition_key=DAY).success
    assert _origins(lake, DAY) == [("sandbox", 8)]

    with serve(SandboxConfig(seed=11, per_day=5)) as server:
        live = sandbox_env(server.url, lake)  # credentials set: a REST host
        refused = materialize(dagster_home, live, SELECT, partition_key=DAY, raise_on_error=False)
        assert not refused.success
        (failure,) = refused.get_step_failure_events()
        cause = failure.step_failure_data.error.cause  # type: ignore[union-attr]
        assert cause is not None and cause.message == (
            f"callminer_assets.lib.errors.OriginConflict: {DAY} already holds callminer.interactions from origin 'sandbox', "
            "this run's origin is 'rest:127.0.0.1': refusing to mix them "
            "(WAREHOUSE_REPLACE_ORIGIN=true replaces those days)\n"
        )
        assert server.state.request_log == []  # refused before any request
        assert _origins(lake, DAY) == [("sandbox", 8)]  # nothing written

        # a day without rows of another origin is no conflict
        assert materialize(dagster_home, live, SELECT, partition_key=OTHER_DAY).success
        assert _origins(lake, OTHER_DAY) == [("rest:127.0.0.1", 5)]

        replace = {**live, "WAREHOUSE_REPLACE_ORIGIN": "true"}
        assert materialize(dagster_home, replace, SELECT, partition_key=DAY).success
    assert _origins(lake, DAY) == [("rest:127.0.0.1", 5)]
    assert _origins(lake, OTHER_DAY) == [("rest:127.0.0.1", 5)]
