"""Which runs to pay for, and how hostile run results become storable rows."""

from __future__ import annotations

from datetime import UTC, date, datetime

import duckdb
import polars as pl

from callminer_assets.lib.models import Brick, EvalOutcome, EvalRequest
from callminer_assets.lib.tables import EVALUATIONS, INTERACTIONS, TRANSCRIPTS
from callminer_assets.transform import evaluations as ev
from callminer_assets.transform.frames import frame_from_rows
from callminer_assets.transform.scores import score_interactions

DAY = date(2025, 1, 14)
KITS = {"qa_compliance": "TCPA-v2026.1", "agent_wellbeing": "AW-v2026.1"}


def _transcripts(*texts: str) -> pl.DataFrame:
    return frame_from_rows(
        TRANSCRIPTS,
        [
            {
                "interaction_id": f"I{n}",
                "interaction_date": DAY,
                "channel": "voice",
                "status": "available" if text else "pending",
                "transcript_text": text or None,
                "transcript_hash": ev.EvalRequest("x", "k", "v", text).transcript_hash
                if text
                else None,
            }
            for n, text in enumerate(texts)
        ],
    )


def _interactions(n: int) -> pl.DataFrame:
    return frame_from_rows(
        INTERACTIONS,
        [
            {
                "interaction_id": f"I{i}",
                "interaction_date": DAY,
                "channel": "voice",
                "agent_id": "A1",
            }
            for i in range(n)
        ],
    )


def test_only_unpaid_pairs_are_planned_and_a_changed_transcript_is_new() -> None:
    transcripts = _transcripts("agent: hi", "agent: hello", "")
    first = ev.plan_requests(transcripts, _interactions(3), frame_from_rows(EVALUATIONS, []), KITS)
    assert {(r.interaction_id, r.kit_code) for r in first} == {
        (i, k) for i in ("I0", "I1") for k in KITS
    }  # the pending transcript (I2) is not sent
    paid = ev.outcome_rows(
        [EvalOutcome(r, "succeeded", "run", r.kit_version, {"b": Brick(1, 0.9)}) for r in first],
        {"I0": DAY, "I1": DAY},
        datetime.now(UTC),
    )
    assert ev.plan_requests(transcripts, _interactions(3), paid, KITS) == []
    changed = _transcripts("agent: hi", "agent: hello, changed", "")
    again = ev.plan_requests(changed, _interactions(3), paid, KITS)
    assert {(r.interaction_id, r.kit_code) for r in again} == {("I1", k) for k in KITS}
    assert len(ev.plan_requests(transcripts, _interactions(3), paid, KITS, rescore=True)) == 4


def test_hostile_run_results_are_storable_and_typed_safely(tmp_path: object) -> None:
    request = EvalRequest("I0", "qa_compliance", "TCPA-v2026.1", "agent: hi")
    outcome = EvalOutcome(
        request,
        "succeeded",
        "run_\ud800",
        "TCPA-\ud800",
        {
            "topic_primary": Brick(
                "bill\ud800ing", 0.5, ({"quote": "\ud800", "utterance_index": 0},)
            ),
            "prohibited_phrases": Brick(1e12, 0.9),
            "compliance_score": Brick(float("inf"), None),
            "consent_obtained": Brick({"unexpected": ["object"]}, 0.1),
        },
    )
    experience = EvalOutcome(
        EvalRequest("I0", "experience_quality", "EQ-v2026.1", "agent: hi"),
        "succeeded",
        "run_2",
        "EQ-v2026.1",
        {
            "topic_primary": Brick(
                "bill\ud800ing", 0.5, ({"quote": "\ud800", "utterance_index": 0},)
            )
        },
    )
    rows = ev.outcome_rows([outcome, experience], {"I0": DAY}, datetime.now(UTC))
    con = duckdb.connect()
    con.execute("CREATE TABLE e (value JSON, evidence JSON, run_id VARCHAR, kit_version VARCHAR)")
    con.register("rows", rows.to_arrow())
    con.execute("INSERT INTO e SELECT value, evidence, run_id, kit_version FROM rows")
    assert con.execute("SELECT count(*) FROM e").fetchone() == (5,)

    scores = score_interactions(rows, _interactions(1))
    row = scores.row(0, named=True)
    assert row["prohibited_phrases"] is None  # 1e12 does not fit the INTEGER column
    assert row["compliance_score"] is None  # inf is no score
    assert row["consent_obtained"] is None  # an object is no boolean
    assert row["topic_primary"] == "bill\ufffding"


def test_runs_paid_under_another_day_move_with_a_moved_interaction() -> None:
    """An interaction whose startTime moved to another day is not paid for again."""
    transcripts = _transcripts("agent: hi")  # now on DAY
    request = ev.plan_requests(
        transcripts, _interactions(1), frame_from_rows(EVALUATIONS, []), KITS
    )
    old_day = date(2025, 1, 13)
    paid = ev.outcome_rows(
        [EvalOutcome(r, "succeeded", "run", r.kit_version, {"b": Brick(1, 0.9)}) for r in request],
        {"I0": old_day},
        datetime.now(UTC),
    )
    moved = ev.redate(paid, transcripts)
    assert moved["interaction_date"].unique().to_list() == [DAY]
    assert ev.plan_requests(transcripts, _interactions(1), moved, KITS) == []
    kept = ev.merge(moved, frame_from_rows(EVALUATIONS, []), transcripts, list(KITS))
    assert kept.height == len(KITS)
