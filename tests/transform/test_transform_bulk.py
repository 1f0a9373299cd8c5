"""Parsing Bulk Export zips: CallMiner's CSV dialect, layouts checked, the REST shapes out."""

from __future__ import annotations

import gzip
import json
import zipfile
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from callminer_assets.lib.errors import DataError
from callminer_assets.lib.models import Window
from callminer_assets.transform import bulk
from callminer_assets.transform.bulk import (
    contact_records,
    native_frames,
    stage_export,
    transcript_fetches,
)

CONTACT_LAYOUT = [
    ("ID", "System.String"),
    ("ClientCaptureDate", "System.DateTime"),
    ("LastModified", "System.DateTime"),
    ("MediaType", "System.String"),
    ("Duration", "System.Double"),
    ("Transcribed", "System.Boolean"),
    ("UDF_Tier", "System.Int32"),
]
CONTACTS = [
    # 20:30 in New York on 1 July is 00:30 UTC on 2 July: the contact belongs to 2 July.
    ["C-1", "07/01/2025 20:30:00", "07/02/2025 01:00:00", "Call", "61.5", "True", "3"],
    ["C-2", "07/02/2025 09:00:00", "07/02/2025 10:00:00", "CHAT", "null", "False", "null"],
    ["C-3", "07/02/2025 10:00:00", "07/02/2025 11:00:00", "Fax", "5", "True", "1"],
    # re-processed in the same export: the newer LastModified wins
    ["C-1", "07/01/2025 20:30:00", "07/03/2025 08:00:00", "Call", "62", "True", "4"],
]
TRANSCRIPT_LAYOUT = [
    ("ContactID", "System.String"),
    ("StartTime", "System.Double"),
    ("SpeakerID", "System.Int32"),
    ("SpeakerName", "System.String"),
    ("Text", "System.String"),
]
TRANSCRIPTS = [
    ["C-1", "0", "1", "Agent", 'Hello, "thanks" for calling,\nhow can I help?'],
    ["C-1", "4.5", "2", "Customer", "My bill, again"],
    ["C-1", "9", "0", "null", "(crosstalk)"],
    ["C-2", "0", "2", "Customer", "hi"],
]
SCORE_LAYOUT = [
    ("ContactID", "System.String"),
    ("ScoreID", "System.String"),
    ("ScoreName", "System.String"),
    ("Score", "System.Double"),
]


def _csv(rows: list[list[str]]) -> bytes:
    def cell(v: str) -> str:
        return '"' + v.replace('"', '""') + '"' if any(c in v for c in ',"\n') else v

    text = "\r\n".join(",".join(cell(v) for v in row) for row in rows) + "\r\n"
    return gzip.compress(("\ufeff" + text).encode("utf-8"))


def write_zip(
    path: Path, types: dict[str, tuple[list[tuple[str, str]], list[list[str]] | None]]
) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for dtype, (layout, rows) in types.items():
            columns = [c for c, _ in layout]
            message = "Success" if rows else "Sorry, we could not find any data for the criteria."
            zf.writestr(
                f"E1_{dtype}_layout.json",
                json.dumps(
                    {
                        "ExportId": "E1",
                        "RecordCount": len(rows or []),
                        "ResultMessage": message,
                        "LayoutEntity": [
                            {"ColumnName": c, "Type": t, "Ordinal": i}
                            for i, (c, t) in enumerate(layout)
                        ],
                    }
                ),
            )
            if rows:
                zf.writestr(f"E1_{dtype}.csv.gz", _csv([columns, *rows]))
    return path


def standard(
    tmp_path: Path, **override: tuple[list[tuple[str, str]], list[list[str]] | None]
) -> Path:
    types = {
        "Contacts": (CONTACT_LAYOUT, CONTACTS),
        "Transcripts_by_speaker": (TRANSCRIPT_LAYOUT, TRANSCRIPTS),
        "Scores": (
            SCORE_LAYOUT,
            [["C-1", "S1", "Quality", "80.5"], ["C-2", "S1", "Quality", "null"]],
        ),
        "Categories": (
            [
                ("ContactID", "System.String"),
                ("CategoryID", "System.String"),
                ("CategoryName", "System.String"),
            ],
            None,
        ),
    }
    return write_zip(tmp_path / "e.zip", {**types, **override})


@pytest.mark.parametrize("block", [bulk.BLOCK_BYTES, 7])
def test_dialect_time_zone_newest_version_and_tenant_columns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, block: int
) -> None:
    # A 7-byte block cuts every record, quoted newlines included, into many parts.
    monkeypatch.setattr(bulk, "BLOCK_BYTES", block)
    staged = stage_export(standard(tmp_path), tmp_path / "s", "America/New_York")
    day2 = contact_records(staged, Window.for_day(date(2025, 7, 2)))
    by_id = {r["id"]: r for r in day2}
    assert set(by_id) == {"C-1", "C-2", "C-3"}  # C-1 moved to its UTC day, once
    assert by_id["C-1"]["startTime"] == "2025-07-02T00:30:00Z"
    assert by_id["C-1"]["duration"] == 62.0 and by_id["C-1"]["UDF_Tier"] == 4  # newest wins
    assert by_id["C-1"]["LastModified"] == "2025-07-03T08:00:00+00:00"
    assert by_id["C-2"]["channel"] == "chat" and by_id["C-2"]["duration"] is None
    assert by_id["C-2"]["UDF_Tier"] is None
    assert by_id["C-3"]["channel"] == "Fax"  # unmapped: validation quarantines it
    assert contact_records(staged, Window.for_day(date(2025, 7, 1))) == []

    fetches = {f.interaction_id: f for f in transcript_fetches(staged, ["C-1", "C-2", "C-9"])}
    assert fetches["C-2"].status == "pending"  # Transcribed False
    assert fetches["C-9"].status == "pending"
    assert fetches["C-1"].payload is not None
    utts = fetches["C-1"].payload["utterances"]
    assert [u["speakerRole"] for u in utts] == ["agent", "customer", "unknown"]
    assert utts[0]["text"] == 'Hello, "thanks" for calling,\nhow can I help?'
    assert fetches["C-1"].payload["format"] == "ovts"

    scores, categories = native_frames(staged, [date(2025, 7, 2)], datetime.now(UTC))
    assert sorted(scores["score"].to_list(), key=str) == [80.5, None]
    assert categories.is_empty()  # "Sorry, we could not find any data": empty, not an error


def test_an_unparseable_capture_date_is_kept_for_quarantine(tmp_path: Path) -> None:
    bad = [["C-4", "31/12/2025 10:00:00", "07/02/2025 11:00:00", "Call", "5", "True", "1"]]
    staged = stage_export(standard(tmp_path, Contacts=(CONTACT_LAYOUT, bad)), tmp_path / "s", "UTC")
    (record,) = contact_records(staged, Window.for_day(date(2025, 7, 2)), include_undated=True)
    assert record["id"] == "C-4" and record["startTime"] is None


@pytest.mark.parametrize(
    ("layout", "rows", "message"),
    [
        (
            [(c, "System.String" if c == "Duration" else t) for c, t in CONTACT_LAYOUT],
            CONTACTS,
            "column 'Duration' changed type to System.String",
        ),
        (
            [(c, t) for c, t in CONTACT_LAYOUT if c != "MediaType"],
            [[v for i, v in enumerate(r) if i != 3] for r in CONTACTS],
            "column 'MediaType' vanished",
        ),
        (
            CONTACT_LAYOUT,
            [[*r[:4], "sixty", *r[5:]] for r in CONTACTS],
            "Contacts: a value does not parse as its layout type",
        ),
        (
            CONTACT_LAYOUT,
            [[*r[:5], "Yes", r[6]] for r in CONTACTS],
            "Contacts: a value does not parse as its layout type",
        ),
    ],
)
def test_a_changed_layout_or_value_is_a_clear_error(
    tmp_path: Path, layout: list[tuple[str, str]], rows: list[list[str]], message: str
) -> None:
    path = standard(tmp_path, Contacts=(layout, rows))
    with pytest.raises(DataError, match=message):
        stage_export(path, tmp_path / "s", "UTC")


def test_header_not_matching_its_layout_is_an_error(tmp_path: Path) -> None:
    path = standard(tmp_path, Scores=(SCORE_LAYOUT, None))
    with zipfile.ZipFile(path, "a") as zf:
        zf.writestr("E1_Scores.csv.gz", _csv([["ContactID", "Score", "ScoreID", "ScoreName"]]))
    with pytest.raises(DataError, match="Scores: the CSV header"):
        stage_export(path, tmp_path / "s", "UTC")


def test_a_missing_data_type_and_a_corrupt_zip_are_errors(tmp_path: Path) -> None:
    path = write_zip(tmp_path / "e.zip", {"Contacts": (CONTACT_LAYOUT, CONTACTS)})
    with pytest.raises(DataError, match="has no Transcripts_by_speaker file"):
        stage_export(path, tmp_path / "s", "UTC")
    cut = tmp_path / "cut.zip"
    cut.write_bytes(standard(tmp_path).read_bytes()[:200])
    with pytest.raises(DataError, match="not a readable zip"):
        stage_export(cut, tmp_path / "s2", "UTC")
