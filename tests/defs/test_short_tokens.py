"""2-second tokens, 5-second Retry-After pauses, concurrency 8: every partition loads first time.

Over loopback HTTP against the sandbox; its request log records how long each request's token
had left when it arrived, so "no request sent with an expired token" is read from the server.
"""

from __future__ import annotations

import dagster as dg

from callminer_assets.lib.settings import WarehouseSettings
from callminer_assets.sandbox.app import SandboxConfig
from callminer_assets.sandbox.server import serve
from tests.defs.helpers import materialize, rows, sandbox_env

DAYS = ["2025-02-03", "2025-02-04"]
PER_DAY = 12


def test_short_tokens_and_long_pauses_load_every_partition_first_time(
    dagster_home: dg.DagsterInstance, lake: WarehouseSettings
) -> None:
    config = SandboxConfig(
        seed=11,
        per_day=PER_DAY,
        token_ttl=2.0,
        retry_after_s=5,
        faults="transport",
        fault_kinds=("429",),
        fault_rate=0.1,
        drift_rate=0.0,
        pending_fraction=0.0,
        pending_lag_s=0.0,
    )
    with serve(config) as srv:
        state = srv.state
        env = sandbox_env(srv.url, lake, CALLMINER_CONCURRENCY="8")
        for day in DAYS:
            # a pause at the start of the transcripts: the other seven wait 5 s behind it
            state.inject("429", times=1, path="/v1/interactions/")
            result = materialize(
                dagster_home,
                env,
                ["callminer/interactions", "callminer/transcripts"],
                partition_key=day,
                raise_on_error=False,
            )
            assert result.success, f"partition {day} failed on its first try"
        log = state.request_log
    paused = [e for e in log if e["status"] == 429]
    assert len(paused) >= len(DAYS), "too few Retry-After pauses to prove anything"
    assert state.tokens_issued >= 2, "tokens should have expired during the pauses"
    api = [e for e in log if e["service"] == "callminer" and e["path"] != "/oauth/token"]
    assert all(e["token_left_s"] is not None for e in api)
    assert state.expired_sends() == []
    assert [e for e in log if e["status"] == 401] == []
    stored = rows(lake, "SELECT status, count(*) FROM callminer.transcripts GROUP BY 1")
    assert stored == [("available", PER_DAY * len(DAYS))]
