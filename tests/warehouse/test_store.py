"""The warehouse door on DuckLake: replace semantics, one transaction, retries, readers that
see commits of other processes, creation races, extensions from the wheels."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from datetime import date
from pathlib import Path

import duckdb
import polars as pl
import pytest

from callminer_assets.lib.errors import ConfigError, DataError
from callminer_assets.lib.settings import WarehouseSettings
from callminer_assets.lib.tables import INTERACTIONS, TABLES, UTTERANCES
from callminer_assets.transform.frames import frame_from_rows
from callminer_assets.warehouse import docs, extensions, store
from callminer_assets.warehouse.store import Warehouse, Write, connect
from tests.lake import READ_FIRST_VALUE, fresh_python, lake_env

HOSTILE = 'it\'s "quoted"; DROP TABLE x;-- \x00 😀 مرحبا 中文\n\t'
REPO = Path(__file__).parents[2]


def _utterances(day: date, ids: list[str], text: str = "hi") -> pl.DataFrame:
    return frame_from_rows(
        UTTERANCES,
        [
            {
                "interaction_id": i,
                "interaction_date": day,
                "seq": n,
                "speaker_role": "agent",
                "start_s": float(n),
                "end_s": None,
                "text": text,
            }
            for n, i in enumerate(ids)
        ],
    )


def _python(code: str, lake: WarehouseSettings, *args: str) -> str:
    """``code`` in a fresh interpreter with the lake configured, as another process would."""
    return fresh_python(code, *args, env={**os.environ, **lake_env(lake)}, cwd=REPO)


def test_replace_touches_only_its_partition_and_is_idempotent(lake: WarehouseSettings) -> None:
    wh = Warehouse(lake)
    d1, d2 = date(2025, 1, 1), date(2025, 1, 2)
    wh.replace(UTTERANCES, _utterances(d1, ["a", "b"]), {"interaction_date": [d1]})
    wh.replace(UTTERANCES, _utterances(d2, ["c"]), {"interaction_date": [d2]})
    for _ in range(2):
        wh.replace(UTTERANCES, _utterances(d1, ["x"]), {"interaction_date": [d1]})
    got = wh.read(UTTERANCES).sort("interaction_id")
    assert got["interaction_id"].to_list() == ["c", "x"]
    assert got["interaction_date"].to_list() == [d2, d1]


def test_hostile_strings_round_trip_verbatim(lake: WarehouseSettings) -> None:
    wh = Warehouse(lake)
    d = date(2025, 1, 1)
    wh.replace(UTTERANCES, _utterances(d, [HOSTILE], HOSTILE), {"interaction_date": [d]})
    row = wh.read(UTTERANCES, {"interaction_id": [HOSTILE]}).row(0, named=True)
    assert row["interaction_id"] == HOSTILE and row["text"] == HOSTILE


def test_frame_with_wrong_columns_is_refused(lake: WarehouseSettings) -> None:
    wh = Warehouse(lake)
    with pytest.raises(DataError, match="expected"):
        wh.replace(UTTERANCES, pl.DataFrame({"nope": [1]}), {})


def test_replace_many_is_one_transaction(lake: WarehouseSettings) -> None:
    """A write that fails half way (malformed JSON for a JSON column) changes no table."""
    wh = Warehouse(lake)
    d = date(2025, 1, 1)
    wh.replace(UTTERANCES, _utterances(d, ["kept"]), {"interaction_date": [d]})
    bad = frame_from_rows(
        INTERACTIONS, [{"interaction_id": "i", "interaction_date": d, "extra": "{not json"}]
    )
    with pytest.raises(duckdb.Error):
        wh.replace_many(
            [
                Write(UTTERANCES, _utterances(d, ["new"]), {"interaction_date": [d]}),
                Write(INTERACTIONS, bad, {"interaction_date": [d]}),
            ]
        )
    assert wh.read(UTTERANCES)["interaction_id"].to_list() == ["kept"]
    assert wh.read(INTERACTIONS).height == 0


def test_a_transaction_that_loses_a_race_is_rerun_whole(
    lake: WarehouseSettings, caplog: pytest.LogCaptureFixture
) -> None:
    """Another writer commits a replace of the same table mid-transaction: the commit is
    refused (``database is locked`` on a SQLite catalog: the snapshot cannot be upgraded;
    ``Transaction conflict`` on Postgres); the whole transaction runs again and lands."""
    wh = Warehouse(lake)
    d1, d2 = date(2025, 1, 1), date(2025, 1, 2)
    wh.replace(UTTERANCES, _utterances(d1, ["a"]), {"interaction_date": [d1]})
    wh.replace(UTTERANCES, _utterances(d2, ["b"]), {"interaction_date": [d2]})
    rival = store._open(lake, read_only=False)  # a second, independent writer
    attempts = []

    def work(con: duckdb.DuckDBPyConnection) -> None:
        attempts.append(1)
        con.execute("DELETE FROM callminer.utterances WHERE interaction_date = ?", [d1])
        if len(attempts) == 1:
            rival.execute("BEGIN")
            rival.execute("DELETE FROM callminer.utterances WHERE interaction_date = ?", [d2])
            rival.execute("COMMIT")
        con.register("_f", _utterances(d1, ["a2"]).to_arrow())
        con.execute("INSERT INTO callminer.utterances BY NAME SELECT * FROM _f")

    try:
        with caplog.at_level("WARNING", logger="callminer_assets"):
            wh.transaction(work, "test replace")
    finally:
        rival.close()
    assert len(attempts) == 2
    assert "lost a race" in caplog.text
    assert any(marker in caplog.text for marker in store.RETRYABLE)
    # Both writes landed: the rival's (day 2 gone) and the re-run one (day 1 replaced).
    assert wh.read(UTTERANCES)["interaction_id"].to_list() == ["a2"]


CONCURRENT_WRITER = """
import sys
from datetime import date, timedelta
from callminer_assets.lib.tables import UTTERANCES
from callminer_assets.warehouse.store import Warehouse
from tests.warehouse.test_store import _utterances
worker = int(sys.argv[1])
wh = Warehouse()
for n in range(12):
    day = date(2025, 1, 1) + timedelta(days=worker * 6 + n % 6)
    wh.replace(UTTERANCES, _utterances(day, [f"{day}-{k}" for k in range(50)]),
               {"interaction_date": [day]})
"""


def test_writers_in_separate_processes_on_a_fresh_lake_lose_nothing(
    lake: WarehouseSettings,
) -> None:
    """Two processes create the (absent) lake at the same moment, then replace days of the
    same table over and over: no error, every day exactly once."""
    env = {**os.environ, **lake_env(lake)}
    procs = [
        subprocess.Popen(  # noqa: S603 - fixed code
            [sys.executable, "-c", CONCURRENT_WRITER, str(w)],
            env=env,
            cwd=REPO,
            stderr=subprocess.PIPE,
            text=True,
        )
        for w in (0, 1)
    ]
    errors = [p.communicate(timeout=240)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errors
    counts = Warehouse(lake).query(
        "SELECT interaction_date, count(*) AS n FROM callminer.utterances GROUP BY 1"
    )
    assert counts.height == 12 and set(counts["n"]) == {50}


def test_an_open_session_sees_another_process_commit_on_its_next_query(
    lake: WarehouseSettings,
) -> None:
    d = date(2025, 1, 1)
    Warehouse(lake).replace(UTTERANCES, _utterances(d, ["a"]), {"interaction_date": [d]})
    analyst = connect(lake)
    try:
        count = "SELECT count(*) FROM callminer.utterances"
        assert analyst.execute(count).fetchone() == (1,)
        _python(
            "from datetime import date\n"
            "from callminer_assets.lib.tables import UTTERANCES\n"
            "from callminer_assets.warehouse.store import Warehouse\n"
            "from tests.warehouse.test_store import _utterances\n"
            "d = date(2025, 1, 1)\n"
            "Warehouse().replace(UTTERANCES, _utterances(d, ['a', 'b', 'c']),"
            " {'interaction_date': [d]})\n",
            lake,
        )
        assert analyst.execute(count).fetchone() == (3,)
        with pytest.raises(duckdb.Error, match="read-only|read only"):
            analyst.execute("DELETE FROM callminer.utterances")
    finally:
        analyst.close()


def test_the_contract_attach_sql_works_in_a_fresh_process(lake: WarehouseSettings) -> None:
    d = date(2025, 1, 1)
    Warehouse(lake).replace(UTTERANCES, _utterances(d, ["a", "b"]), {"interaction_date": [d]})
    sql = store.attach_sql(lake, read_only=True)
    count = "SELECT count(*) FROM callminer.utterances"
    assert sql == (
        f"ATTACH 'ducklake:{lake.catalog}' AS warehouse (DATA_PATH '{lake.data_path}', READ_ONLY)"
    )
    assert _python(READ_FIRST_VALUE, lake, f"{sql}; USE warehouse; {count}").strip() == "2"


def test_catalog_in_wal_mode_and_daily_tables_partitioned_by_day(
    lake: WarehouseSettings,
) -> None:
    d = date(2025, 1, 1)
    Warehouse(lake).replace(UTTERANCES, _utterances(d, ["a"] * 20), {"interaction_date": [d]})
    assert lake.sqlite_path
    with sqlite3.connect(lake.sqlite_path) as con:
        assert con.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    folder = Path(lake.data_path) / "callminer" / "utterances" / "interaction_date=2025-01-01"
    assert list(folder.glob("*.parquet"))


def test_every_table_and_column_is_documented_in_the_lake(lake: WarehouseSettings) -> None:
    with Warehouse(lake).connect():
        pass  # creating the tables is the first connection's job
    con = connect(lake)
    try:
        rows = con.execute(
            "SELECT schema_name || '.' || table_name, column_name, comment FROM duckdb_columns() "
            "WHERE database_name = 'warehouse'"
        ).fetchall()
        tables = con.execute(
            "SELECT schema_name || '.' || table_name, comment FROM duckdb_tables() "
            "WHERE database_name = 'warehouse'"
        ).fetchall()
    finally:
        con.close()
    assert {r[0] for r in rows} == set(TABLES)
    assert all(r[2] for r in rows), [r for r in rows if not r[2]]
    assert all(comment for _, comment in tables)


def test_a_column_added_to_tables_py_is_added_to_an_existing_lake(
    lake: WarehouseSettings,
) -> None:
    """An older lake (table without its newest column) gains the column on first use."""
    con = store._open(lake, read_only=False)
    try:
        cols = ", ".join(f'"{c.name}" {c.type}' for c in UTTERANCES.columns[:-1])
        con.execute("CREATE SCHEMA callminer")
        con.execute(f"CREATE TABLE callminer.utterances ({cols})")
    finally:
        con.close()
    d = date(2025, 1, 1)
    Warehouse(lake).replace(UTTERANCES, _utterances(d, ["a"]), {"interaction_date": [d]})
    assert Warehouse(lake).read(UTTERANCES).columns == UTTERANCES.column_names


def test_duckdb_path_is_a_one_line_config_error() -> None:
    with pytest.raises(ConfigError) as err:
        WarehouseSettings.from_env({"DUCKDB_PATH": "data/callminer.duckdb"})
    message = str(err.value)
    assert "\n" not in message
    assert "WAREHOUSE_CATALOG" in message and "WAREHOUSE_DATA_PATH" in message


def test_reading_a_lake_that_does_not_exist_says_so(tmp_path: Path) -> None:
    settings = WarehouseSettings(catalog=f"sqlite:{tmp_path / 'none.sqlite'}")
    with pytest.raises(ConfigError, match="make run"):
        connect(settings)
    assert not Warehouse(settings).exists()


def test_extensions_come_from_the_wheels_into_the_project_directory(tmp_path: Path) -> None:
    """A fresh process with an empty HOME and a new extension directory: no network, nothing
    written to the home folder, every extension installed from its wheel."""
    home = tmp_path / "home"
    home.mkdir()
    code = (
        "from callminer_assets.warehouse import extensions\n"
        "con = extensions.new_connection()\n"
        "extensions.load(con, ['ducklake', 'sqlite', 'postgres', 'httpfs'])\n"
        'for row in con.execute("SELECT extension_name, install_path, installed_from '
        "FROM duckdb_extensions() WHERE loaded AND install_mode = 'CUSTOM_PATH'\").fetchall():\n"
        "    print('|'.join(row))\n"
    )
    env = {
        **os.environ,
        "HOME": str(home),
        extensions.ENV_EXTENSION_DIRECTORY: str(tmp_path / "ext"),
    }
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    ).stdout
    loaded = {line.split("|")[0]: line.split("|")[1:] for line in out.splitlines()}
    assert set(loaded) == {"ducklake", "sqlite_scanner", "postgres_scanner", "httpfs"}
    for install_path, installed_from in loaded.values():
        assert install_path.startswith(str(tmp_path / "ext"))
        assert "duckdb_extension_" in installed_from  # the wheel's binary
    assert not (home / ".duckdb").exists()


def test_s3_secret_from_the_standard_aws_variables() -> None:
    sql = store.s3_secret_sql(
        {
            "AWS_ACCESS_KEY_ID": "AKID",
            "AWS_SECRET_ACCESS_KEY": "se'cret",
            "AWS_REGION": "eu-west-2",
            "AWS_ENDPOINT_URL": "http://127.0.0.1:5123",
        }
    )
    assert "KEY_ID 'AKID'" in sql and "SECRET 'se''cret'" in sql
    assert "REGION 'eu-west-2'" in sql and "ENDPOINT '127.0.0.1:5123'" in sql
    assert "USE_SSL false" in sql and "URL_STYLE 'path'" in sql
    # A DuckDB with httpfs accepts it as written.
    con = extensions.new_connection()
    try:
        extensions.load(con, ["httpfs"])
        con.execute(sql)
        assert con.execute(
            "SELECT count(*) FROM duckdb_secrets() WHERE type = 's3'"
        ).fetchone() == (1,)
    finally:
        con.close()


def test_docs_tables_md_is_current() -> None:
    committed = (Path(__file__).parents[2] / "docs" / "tables.md").read_text()
    assert committed == docs.render(), (
        "run: python -m callminer_assets.warehouse.docs > docs/tables.md"
    )
