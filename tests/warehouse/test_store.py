"""The warehouse door: replace semantics, verbatim strings, publishing past readers."""

from __future__ import annotations

import subprocess
import sys
from datetime import date
from pathlib import Path

import duckdb
import polars as pl
import pytest

from callminer_assets.lib.errors import DataError
from callminer_assets.lib.tables import TABLES, UTTERANCES
from callminer_assets.transform.frames import frame_from_rows
from callminer_assets.warehouse import docs
from callminer_assets.warehouse.store import Warehouse

HOSTILE = 'it\'s "quoted"; DROP TABLE x;-- \x00 😀 مرحبا 中文\n\t'


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


def test_replace_touches_only_its_partition_and_is_idempotent(tmp_path: Path) -> None:
    wh = Warehouse(tmp_path / "w.duckdb")
    d1, d2 = date(2025, 1, 1), date(2025, 1, 2)
    wh.replace(UTTERANCES, _utterances(d1, ["a", "b"]), {"interaction_date": [d1]})
    wh.replace(UTTERANCES, _utterances(d2, ["c"]), {"interaction_date": [d2]})
    for _ in range(2):
        wh.replace(UTTERANCES, _utterances(d1, ["x"]), {"interaction_date": [d1]})
    got = wh.read(UTTERANCES).sort("interaction_id")
    assert got["interaction_id"].to_list() == ["c", "x"]
    assert got["interaction_date"].to_list() == [d2, d1]


def test_hostile_strings_round_trip_verbatim(tmp_path: Path) -> None:
    wh = Warehouse(tmp_path / "w.duckdb")
    d = date(2025, 1, 1)
    wh.replace(UTTERANCES, _utterances(d, [HOSTILE], HOSTILE), {"interaction_date": [d]})
    row = wh.read(UTTERANCES, {"interaction_id": [HOSTILE]}).row(0, named=True)
    assert row["interaction_id"] == HOSTILE and row["text"] == HOSTILE


def test_frame_with_wrong_columns_is_refused(tmp_path: Path) -> None:
    wh = Warehouse(tmp_path / "w.duckdb")
    with pytest.raises(DataError, match="expected"):
        wh.replace(UTTERANCES, pl.DataFrame({"nope": [1]}), {})


def test_publish_succeeds_while_an_analyst_holds_the_file(tmp_path: Path) -> None:
    path = tmp_path / "w.duckdb"
    wh = Warehouse(path)
    d = date(2025, 1, 1)
    wh.replace(UTTERANCES, _utterances(d, ["a"]), {"interaction_date": [d]})
    analyst = duckdb.connect(str(path), read_only=True)
    try:
        wh.replace(UTTERANCES, _utterances(d, ["a", "b", "c"]), {"interaction_date": [d]})
        # The open session keeps its snapshot; a new session (another process, as an
        # analyst's would be: DuckDB shares one instance per file within a process) sees 3.
        assert analyst.execute("SELECT count(*) FROM callminer.utterances").fetchone() == (1,)
        code = (
            "import duckdb,sys; c=duckdb.connect(sys.argv[1], read_only=True);"
            "print(c.execute('SELECT count(*) FROM callminer.utterances').fetchone()[0])"
        )
        out = subprocess.run(
            [sys.executable, "-c", code, str(path)], capture_output=True, text=True, check=True
        )
        assert out.stdout.strip() == "3"
    finally:
        analyst.close()


def test_every_table_and_column_is_documented_in_duckdb(tmp_path: Path) -> None:
    wh = Warehouse(tmp_path / "w.duckdb")
    wh.publish()
    con = duckdb.connect(str(tmp_path / "w.duckdb"), read_only=True)
    rows = con.execute(
        "SELECT schema_name || '.' || table_name, column_name, comment FROM duckdb_columns() "
        "WHERE schema_name IN ('callminer', 'semarize', 'analytics')"
    ).fetchall()
    con.close()
    assert {r[0] for r in rows} == set(TABLES)
    assert all(r[2] for r in rows), [r for r in rows if not r[2]]


def test_docs_tables_md_is_current() -> None:
    committed = (Path(__file__).parents[2] / "docs" / "tables.md").read_text()
    assert committed == docs.render(), (
        "run: python -m callminer_assets.warehouse.docs > docs/tables.md"
    )
