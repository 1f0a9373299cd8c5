"""Two partition runs of different days, started at the same moment as separate processes
on one Dagster instance and one lake: both land completely, and the API pools keep the
request rate measured at the server within the configured limit."""

from __future__ import annotations

import subprocess
from pathlib import Path

import dagster as dg
import pytest

from callminer_assets.sandbox.app import SandboxConfig
from callminer_assets.sandbox.server import serve
from tests.defs.helpers import REPO, dagster_materialize, env_without_credentials, rows, sandbox_env
from tests.lake import lake_settings

RATE = 15  # requests per second per API: configured in the client and enforced by the server
PER_DAY = 20  # x 3 kits = 60 Semarize calls a day: each run alone reaches the limit
DAYS = ["2025-02-03", "2025-02-04"]


@pytest.mark.serial
@pytest.mark.timeout(600)  # two Dagster CLI runs on 2 shared cores
def test_two_days_at_once_both_land_and_each_api_stays_within_its_rate(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text((REPO / "dagster.yaml").read_text())
    # Create the instance's storage once, as `dagster dev` or the daemon would have:
    # two processes creating a fresh SQLite instance at once race on its migrations.
    dg.DagsterInstance.from_config(str(home)).dispose()
    lake = lake_settings(tmp_path / "warehouse")
    config = SandboxConfig(seed=11, per_day=PER_DAY, rate_limit=RATE, pending_fraction=0.0)
    with serve(config) as server:
        env = env_without_credentials(DAGSTER_HOME=str(home))
        env.update(
            sandbox_env(
                server.url,
                lake,
                CALLMINER_REQUESTS_PER_SECOND=str(RATE),
                SEMARIZE_REQUESTS_PER_SECOND=str(RATE),
            )
        )
        select = "callminer/interactions,callminer/transcripts,semarize/evaluations"
        procs = [
            subprocess.Popen(  # noqa: S603 - our own CLI with fixed arguments
                dagster_materialize(select, day),
                cwd=REPO,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
            )
            for day in DAYS
        ]
        errors = [p.communicate(timeout=400)[1] for p in procs]
        log = list(server.state.request_log)
    assert [p.returncode for p in procs] == [0, 0], [e[-3000:] for e in errors]

    landed = rows(
        lake,
        "SELECT CAST(interaction_date AS VARCHAR), count(*), count(DISTINCT interaction_id) "
        "FROM callminer.interactions GROUP BY 1 ORDER BY 1",
    )
    assert landed == [(day, PER_DAY, PER_DAY) for day in DAYS]
    evaluated = rows(
        lake,
        "SELECT CAST(interaction_date AS VARCHAR), count(DISTINCT interaction_id) "
        "FROM semarize.evaluations WHERE status = 'succeeded' GROUP BY 1 ORDER BY 1",
    )
    assert evaluated == [(day, PER_DAY) for day in DAYS]

    semarize_calls = [e for e in log if e["service"] == "semarize"]
    assert len(semarize_calls) >= 2 * 3 * PER_DAY  # both runs really called the API
    for service in ("callminer", "semarize"):
        assert server.state.busiest_second(service) <= RATE, service
    assert [e for e in log if e["status"] == 429] == []
