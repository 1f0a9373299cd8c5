"""``migrate-warehouse``: an old single-file DuckDB warehouse keeps its history in the lake."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import date
from pathlib import Path

import duckdb
import pytest

from callminer_assets.lib.errors import ConfigError
from callminer_assets.lib.settings import WarehouseSettings
from callminer_assets.lib.tables import AGENT_ROSTER, UTTERANCES
from callminer_assets.warehouse.migrate import migrate
from callminer_assets.warehouse.store import Warehouse
from tests.lake import lake_env
from tests.warehouse.test_store import _utterances

REPO = Path(__file__).parents[2]


def _old_warehouse(path: Path) -> None:
    """A file as the pre-lake pipeline left it: utterances of two days (without the newest
    column, as an older release would have), and a roster."""
    con = duckdb.connect()
    try:
        # The default name's trap: opened directly, catalog "callminer" shadows the schema.
        con.execute(f"ATTACH '{path}' AS old")
        con.execute("USE old")
        con.execute("CREATE SCHEMA callminer")
        old_cols = UTTERANCES.columns[:-1]
        cols = ", ".join(f'"{c.name}" {c.type}' for c in old_cols)
        con.execute(f"CREATE TABLE callminer.utterances ({cols})")
        for day, ids in ((date(2025, 1, 1), ["a", "b"]), (date(2025, 1, 2), ["c"])):
            frame = _utterances(day, ids).select([c.name for c in old_cols])
            con.register("f", frame.to_arrow())
            con.execute("INSERT INTO callminer.utterances SELECT * FROM f")
            con.unregister("f")
        cols = ", ".join(f'"{c.name}" {c.type}' for c in AGENT_ROSTER.columns)
        con.execute(f"CREATE TABLE callminer.agent_roster ({cols})")
        con.execute("INSERT INTO callminer.agent_roster (agent_id) VALUES ('AG1'), ('AG2')")
    finally:
        con.close()


def test_cli_copies_an_old_file_into_the_lake_and_a_rerun_changes_nothing(
    tmp_path: Path, lake: WarehouseSettings
) -> None:
    old = tmp_path / "callminer.duckdb"
    _old_warehouse(old)
    wh = Warehouse(lake)
    # The lake already holds a later day, and a stale copy of day 1: day 1 is replaced.
    wh.replace(UTTERANCES, _utterances(date(2025, 1, 3), ["d"]), {"interaction_date": []})
    wh.replace(UTTERANCES, _utterances(date(2025, 1, 1), ["stale"]), {"interaction_date": []})
    command = [sys.executable, "-m", "callminer_assets", "migrate-warehouse", str(old)]
    env = {**os.environ, **lake_env(lake)}
    for _ in range(2):
        out = subprocess.run(
            command, cwd=REPO, env=env, capture_output=True, text=True, timeout=120, check=True
        ).stdout
        assert "callminer.utterances" in out and "3 rows" in out
        assert "left NULL: text" in out
        got = wh.query(
            "SELECT interaction_id, text FROM callminer.utterances ORDER BY interaction_id"
        ).rows()
        assert got == [("a", None), ("b", None), ("c", None), ("d", "hi")]
        roster = wh.query("SELECT agent_id FROM callminer.agent_roster ORDER BY 1").rows()
        assert roster == [("AG1",), ("AG2",)]


def test_migrating_a_missing_file_is_a_config_error(
    tmp_path: Path, lake: WarehouseSettings
) -> None:
    with pytest.raises(ConfigError, match="not a DuckDB file"):
        migrate(tmp_path / "nope.duckdb", Warehouse(lake))
