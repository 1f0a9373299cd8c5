"""Which runs to pay for, and how hostile run results become storable rows."""

from __future__ import annotations

from datetime import UTC, date, datetime

import duckdb
import polars as pl

from callminer_assets.lib.models import Brick, EvalOutcome, EvalRequest
from callminer_assets.lib.tables import EVALUATIONS, INTERACTIONS, TRANSCRIPTS
from callminer_assets.transform import evaluations as ev
from callminer_assets.transform.frames import frame_from_rows
from callminer_assets.transform.scores import compliance_findings, score_interactions

DAY = date(2025, 1, 14)
KITS = {"qa_compliance": "TCPA-v2026.1", "agent_wellbeing": "AW-v2026.1"}
LOCAL = "local-kits"


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
    first = ev.plan_requests(
        transcripts, _interactions(3), frame_from_rows(EVALUATIONS, []), KITS, LOCAL
    )
    assert {(r.interaction_id, r.kit_code) for r in first} == {
        (i, k) for i in ("I0", "I1") for k in KITS
    }  # the pending transcript (I2) is not sent
    paid = ev.outcome_rows(
        [EvalOutcome(r, "succeeded", "run", r.kit_version, {"b": Brick(1, 0.9)}) for r in first],
        {"I0": DAY, "I1": DAY},
        datetime.now(UTC),
        LOCAL,
    )
    assert ev.plan_requests(transcripts, _interactions(3), paid, KITS, LOCAL) == []
    changed = _transcripts("agent: hi", "agent: hello, changed", "")
    again = ev.plan_requests(changed, _interactions(3), paid, KITS, LOCAL)
    assert {(r.interaction_id, r.kit_code) for r in again} == {("I1", k) for k in KITS}
    # a new version alone re-sends nothing; a re-score of that kit sends it once per transcript
    bumped = {**KITS, "qa_compliance": "TCPA-v2026.2"}
    assert ev.plan_requests(transcripts, _interactions(3), paid, bumped, LOCAL) == []
    rescore = ev.plan_requests(
        transcripts, _interactions(3), paid, bumped, LOCAL, rescore=["qa_compliance"]
    )
    assert {(r.interaction_id, r.kit_code, r.kit_version) for r in rescore} == {
        ("I0", "qa_compliance", "TCPA-v2026.2"),
        ("I1", "qa_compliance", "TCPA-v2026.2"),
    }
    # local-kits rows were never paid at Semarize; rows from before the column are kept as paid
    assert len(ev.plan_requests(transcripts, _interactions(3), paid, KITS, "semarize")) == 4
    legacy = paid.with_columns(pl.lit(None, pl.String).alias("evaluator"))
    assert ev.plan_requests(transcripts, _interactions(3), legacy, KITS, "semarize") == []


def test_a_new_version_is_stored_beside_the_old_and_the_estimate_uses_recorded_usage() -> None:
    transcripts = _transcripts("agent: hi", "agent: hello")
    interactions = _interactions(2)
    kits = {"qa_compliance": "v1"}
    first = ev.plan_requests(
        transcripts, interactions, frame_from_rows(EVALUATIONS, []), kits, LOCAL
    )
    old = ev.outcome_rows(
        [
            EvalOutcome(
                r,
                "succeeded",
                f"r-{r.interaction_id}",
                "v1",
                {"b": Brick(0, 1)},
                input_tokens=100 + n,
            )
            for n, r in enumerate(first)
        ],
        {"I0": DAY, "I1": DAY},
        datetime(2025, 1, 14, tzinfo=UTC),
        LOCAL,
    )
    again = ev.plan_requests(
        transcripts, interactions, old, {"qa_compliance": "v2"}, LOCAL, rescore=["qa_compliance"]
    )
    assert ev.token_estimate(again, old) == (100 + 101, 2, 2)
    assert ev.token_estimate(again, frame_from_rows(EVALUATIONS, []))[2] == 0
    new = ev.outcome_rows(
        [
            EvalOutcome(r, "succeeded", f"s-{r.interaction_id}", "v2", {"b": Brick(1, 1)})
            for r in again[:1]
        ],
        {"I0": DAY, "I1": DAY},
        datetime(2025, 1, 15, tzinfo=UTC),
        LOCAL,
    )
    merged = ev.merge(old, new, transcripts, ["qa_compliance"])
    assert sorted(merged.select("interaction_id", "kit_version").rows()) == [
        ("I0", "v1"),
        ("I0", "v2"),
        ("I1", "v1"),
    ]
    scores = score_interactions(merged, interactions)
    assert dict(scores.select("interaction_id", "kit_versions").rows()) == {
        "I0": '{"qa_compliance": "v2"}',
        "I1": '{"qa_compliance": "v1"}',
    }


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
    rows = ev.outcome_rows([outcome, experience], {"I0": DAY}, datetime.now(UTC), LOCAL)
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
        transcripts, _interactions(1), frame_from_rows(EVALUATIONS, []), KITS, LOCAL
    )
    old_day = date(2025, 1, 13)
    paid = ev.outcome_rows(
        [EvalOutcome(r, "succeeded", "run", r.kit_version, {"b": Brick(1, 0.9)}) for r in request],
        {"I0": old_day},
        datetime.now(UTC),
        LOCAL,
    )
    moved = ev.already_paid(paid, transcripts, [DAY])
    assert moved["interaction_date"].unique().to_list() == [DAY]
    assert ev.plan_requests(transcripts, _interactions(1), moved, KITS, LOCAL) == []
    kept = ev.merge(moved, frame_from_rows(EVALUATIONS, []), transcripts, list(KITS))
    assert kept.height == len(KITS)


def test_values_no_column_can_hold_are_screened_into_quarantine() -> None:
    request = EvalRequest("I0", "qa_compliance", "TCPA-v2026.1", "agent: hi")
    bricks = {
        "nan": Brick(True, float("nan")),
        "inf": Brick(True, float("inf")),
        "fine": Brick(True, 0.9, ({"quote": "q", "utterance_index": 3},)),
        "half": Brick(True, 0.9, ({"quote": "q", "utterance_index": 2.5},)),
        "negative": Brick(True, 0.9, ({"quote": "q", "utterance_index": -1},)),
        "text": Brick(True, 0.9, ({"quote": "q", "utterance_index": "3"},)),
    }
    outcome = EvalOutcome(request, "succeeded", "run_9", "TCPA-v2026.1", bricks)
    (kept,), refused = ev.screen([outcome], {"I0": DAY}, datetime.now(UTC))
    assert {b: kept.bricks[b].confidence for b in ("nan", "inf", "fine")} == {
        "nan": None,
        "inf": None,
        "fine": 0.9,
    }
    indexes = {
        b: kept.bricks[b].evidence[0]["utterance_index"] for b in bricks if b not in ("nan", "inf")
    }
    assert indexes == {"fine": 3, "half": None, "negative": None, "text": None}
    assert sorted(refused["reason"].to_list()) == [
        "qa_compliance/half: evidence utterance_index 2.5 is not a whole number",
        "qa_compliance/inf: confidence inf is not a finite number in 0..1",
        "qa_compliance/nan: confidence nan is not a finite number in 0..1",
        "qa_compliance/negative: evidence utterance_index -1 out of range 0..2147483647 (INTEGER)",
        "qa_compliance/text: evidence utterance_index '3' is not a number",
    ]
    assert set(refused["record_id"]) == {"run_9"} and set(refused["source"]) == {"evaluation"}
    rows = ev.outcome_rows([kept], {"I0": DAY}, datetime.now(UTC), LOCAL)
    assert rows.height == len(bricks)


def test_findings_from_an_unscreened_stored_index_do_not_overflow() -> None:
    """Rows stored before screening existed: the finding lands with utterance_index NULL."""
    request = EvalRequest("I0", "qa_compliance", "TCPA-v2026.1", "agent: hi")
    evidence = ({"quote": "q", "utterance_index": 2**31},)
    outcome = EvalOutcome(
        request,
        "succeeded",
        "run_1",
        "TCPA-v2026.1",
        {"recording_disclosure": Brick(False, 0.9, evidence)},
    )
    stored = ev.outcome_rows([outcome], {"I0": DAY}, datetime.now(UTC), LOCAL)
    findings = compliance_findings(stored, _interactions(1))
    assert findings.select("quote", "utterance_index").rows() == [("q", None)]


def test_work_per_day_counts_each_day_on_its_own() -> None:
    other = date(2025, 1, 16)
    dates = {"a": DAY, "b": other}
    requests = [EvalRequest(i, kit, "v1", "agent: hi") for i in ("a", "b") for kit in ("k1", "k2")]
    outcomes = [
        EvalOutcome(requests[0], "succeeded", "r0", "v1", {}, input_tokens=100),
        EvalOutcome(requests[1], "failed", "r1", "v1", {}, input_tokens=None),
        EvalOutcome(requests[2], "succeeded", "r2", "v1", {}, input_tokens=7),
    ]
    assert ev.work_per_day(requests, outcomes, dates, [DAY, other]) == {
        DAY: {"runs_started": 2, "runs_failed": 1, "input_tokens": 100},
        other: {"runs_started": 2, "runs_failed": 0, "input_tokens": 7},
    }
