"""Two days plus their month, in process, then every SQL query of the README."""

from __future__ import annotations

import re
from pathlib import Path

import dagster as dg

from callminer_assets.definitions import DAILY_ASSETS, MONTHLY_ASSETS
from callminer_assets.lib.settings import WarehouseSettings
from callminer_assets.sandbox.app import SandboxConfig
from callminer_assets.sandbox.generator import Generator
from callminer_assets.sandbox.server import serve
from callminer_assets.warehouse.store import connect
from tests.defs.helpers import REPO, materialize, range_tags, rows, sandbox_env


def _keys(keys: list[dg.AssetKey]) -> list[str]:
    return ["/".join(k.path) for k in keys]


def _readme_sql() -> list[str]:
    text = (REPO / "README.md").read_text()
    blocks = re.findall(r"```sql\n(.*?)```", text, flags=re.S)
    statements = [stmt.strip() for block in blocks for stmt in block.split(";") if stmt.strip()]
    # The README's ATTACH/USE lines (default paths) are what ``connect`` has already done;
    # tests/defs/test_pipeline.py runs them verbatim on a default-path lake.
    return [s for s in statements if not s.upper().startswith(("ATTACH", "USE"))]


def test_two_days_and_their_month_then_the_readme_queries(
    dagster_home: dg.DagsterInstance, lake: WarehouseSettings, tmp_path: Path
) -> None:
    env = {
        "AGENT_ROSTER_PATH": str(tmp_path / "roster.csv"),
        "EXPORTS_DIR": str(tmp_path / "exports"),
        "MODELS_DIR": str(tmp_path / "models"),
    }
    # The roster comes from HR in real life; here the sandbox's CSV stands in for it.
    Generator(seed=4, per_day=30).write_roster_csv(tmp_path / "roster.csv")
    with serve(SandboxConfig(seed=4, per_day=30)) as server:
        env = sandbox_env(server.url, lake, **env)
        days = materialize(
            dagster_home, env, _keys(DAILY_ASSETS), tags=range_tags("2025-01-14", "2025-01-15")
        )
        assert days.success
    month = materialize(dagster_home, env, _keys(MONTHLY_ASSETS), partition_key="2025-01-01")
    assert month.success
    roster = materialize(dagster_home, env, ["callminer/agent_roster"])
    assert roster.success

    for table in (
        "callminer.interactions",
        "callminer.utterances",
        "semarize.evaluations",
        "analytics.interaction_scores",
        "analytics.compliance_findings",
        "analytics.agent_monthly_features",
        "analytics.channel_consistency",
        "callminer.agent_roster",
    ):
        (n,) = rows(lake, f"SELECT count(*) FROM {table}")[0]  # noqa: S608 - constant names
        assert n > 0, table
    features_month = rows(lake, "SELECT DISTINCT month FROM analytics.agent_monthly_features")
    assert [str(m) for (m,) in features_month] == ["2025-01-01"]
    assert (tmp_path / "exports").exists()

    statements = _readme_sql()
    assert len(statements) >= 6
    con = connect(lake)
    try:
        for sql in statements:
            con.execute(sql).fetchall()
    finally:
        con.close()
