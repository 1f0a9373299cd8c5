"""frames: typed frames for every table, JSON/text helpers, and a DuckDB round trip."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta, timezone

import duckdb
import polars as pl
import pytest

from callminer_assets.lib.models import TranscriptFetch, Window
from callminer_assets.lib.tables import INTERACTIONS, TABLES, UTTERANCES, Table
from callminer_assets.transform.frames import (
    clean_text,
    empty_frame,
    frame_from_columns,
    frame_from_rows,
    polars_schema,
    safe_json,
    to_json,
)
from callminer_assets.transform.normalise import normalise_transcripts
from callminer_assets.transform.validate import validate_interactions


@pytest.mark.parametrize("table", list(TABLES.values()), ids=list(TABLES))
def test_empty_frame_matches_every_table(table: Table) -> None:
    frame = empty_frame(table)
    assert frame.columns == table.column_names
    assert frame.height == 0
    assert frame.schema == polars_schema(table)


def test_frame_from_rows_types_and_nulls() -> None:
    plus5 = timezone(timedelta(hours=5))
    frame = frame_from_rows(
        UTTERANCES,
        [
            {"interaction_id": "a", "interaction_date": date(2025, 1, 15), "seq": 0, "text": "x"},
            {"interaction_id": "b", "seq": 1, "start_s": 1, "end_s": 2.5},
        ],
    )
    assert frame.schema == polars_schema(UTTERANCES)
    assert frame.rows() == [
        ("a", date(2025, 1, 15), 0, None, None, None, "x"),
        ("b", None, 1, None, 1.0, 2.5, None),
    ]
    ts = frame_from_rows(
        INTERACTIONS, [{"start_time": datetime(2025, 1, 15, 5, tzinfo=plus5)}]
    ).get_column("start_time")
    assert ts.to_list() == [datetime(2025, 1, 15, 0, tzinfo=UTC)]


def test_unknown_columns_are_an_error() -> None:
    with pytest.raises(ValueError, match="not in"):
        frame_from_rows(UTTERANCES, [{"nope": 1}])
    with pytest.raises(ValueError, match="not in"):
        frame_from_columns(UTTERANCES, {"nope": [1]})
    with pytest.raises(ValueError, match="unequal"):
        frame_from_columns(UTTERANCES, {"seq": [1], "text": []})


def test_json_helpers() -> None:
    assert to_json({"a": "é😀\x00"}) == '{"a": "é😀\\u0000"}'
    assert json.loads(to_json([float("nan"), float("-inf")])) == ["NaN", "-Infinity"]
    assert json.loads(to_json({"k\ud800": "\ud800"})) == {"k\ufffd": "\ufffd"}
    assert json.loads(to_json("\ud800", lossless=True)) == "\ud800"
    to_json("\ud800", lossless=True).encode("utf-8")  # valid UTF-8
    assert json.loads(safe_json(object()))  # repr as a JSON string
    cyclic: list[object] = []
    cyclic.append(cyclic)
    assert json.loads(safe_json(cyclic)) == "[[...]]"
    assert clean_text("ok\x00") == "ok\x00"
    assert clean_text("a\udc80") == "a\ufffd"


def test_frames_land_in_duckdb_verbatim(tmp_path: object) -> None:
    """DuckDB accepts our VARCHAR (NUL included) and JSON text via Arrow, unchanged."""
    hostile = "x'\"; DROP\x00 😀 \u202e עב 中文\n\t"
    records = [
        {
            "id": hostile,
            "channel": "Chat",
            "startTime": "2025-01-15T10:00:00Z",
            "agentName": hostile,
            "contact": {"n": hostile, "nan": float("nan")},
            "weird": "\ud800",
        },
        {"id": "q", "channel": "fax", "payload": hostile, "s": "\udfff"},
        "junk",
    ]
    now = datetime(2025, 1, 16, tzinfo=UTC)
    res = validate_interactions(records, Window.for_day(date(2025, 1, 15)), now, origin="sandbox")
    norm = normalise_transcripts(
        res.interactions,
        [TranscriptFetch(hostile, "available", {"utterances": [{"text": hostile}, 5]})],
        now=now,
    )
    con = duckdb.connect()
    frames = {
        "interactions": res.interactions,
        "quarantine": pl.concat([res.quarantine, norm.quarantine]),
        "transcripts": norm.transcripts,
        "utterances": norm.utterances,
    }
    for name, frame in frames.items():
        table = TABLES[f"callminer.{name}"]
        cols = ", ".join(f'"{c.name}" {c.type}' for c in table.columns)
        con.execute(f"CREATE TABLE {name} ({cols})")
        arrow = frame.to_arrow()  # noqa: F841 (read by DuckDB's replacement scan)
        con.execute(f"INSERT INTO {name} SELECT * FROM arrow")  # noqa: S608 (fixed names)
        back = con.execute(f"SELECT * FROM {name}").pl()  # noqa: S608 (fixed names)
        assert back.rows() == frame.rows(), name
    assert con.execute("SELECT text FROM utterances").fetchall() == [(hostile,)]
    assert con.execute("SELECT contact->>'n' FROM interactions").fetchall() == [(hostile,)]
