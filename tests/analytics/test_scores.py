"""Pivoting semarize.evaluations into typed scores and compliance findings."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from typing import Any

import polars as pl
import pytest

from callminer_assets.lib.tables import COMPLIANCE_FINDINGS, INTERACTION_SCORES
from callminer_assets.transform.scores import (
    FINDINGS_SCHEMA,
    SCORES_SCHEMA,
    compliance_findings,
    score_interactions,
)

D = date(2025, 1, 15)


def ev(
    iid: str,
    kit: str,
    brick: str | None,
    value: Any,
    *,
    run: str,
    at: int = 0,
    status: str = "succeeded",
    evidence: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    return {
        "interaction_id": iid,
        "interaction_date": D,
        "transcript_hash": "h",
        "kit_code": kit,
        "kit_version": "v1",
        "brick": brick,
        "value": None if brick is None else json.dumps(value),
        "confidence": 0.9,
        "evidence": json.dumps(evidence or []),
        "run_id": run,
        "status": status,
        "error": "E500: boom" if status == "failed" else None,
        "input_tokens": 10,
        "evaluated_at": datetime(2025, 1, 16, 0, at, tzinfo=UTC),
    }


def qa(
    iid: str, run: str, score: float, evidence: dict[str, Any] | None = None, **over: Any
) -> list[dict[str, Any]]:
    values: dict[str, Any] = {
        "recording_disclosure": True,
        "disclosure_before_first_customer_turn": True,
        "consent_obtained": True,
        "prohibited_phrases": 0,
        "mini_miranda_given": None,
        "compliance_score": score,
    }
    values.update(over)
    ev_by = evidence or {}
    return [
        ev(iid, "qa_compliance", b, v, run=run, evidence=ev_by.get(b)) for b, v in values.items()
    ]


@pytest.fixture
def frames() -> tuple[pl.DataFrame, pl.DataFrame]:
    rows: list[dict[str, Any]] = []
    # I1: all three kits; two prohibited phrases with evidence; re-evaluated (run r1b wins).
    rows += qa("I1", "r1a", 0.99)
    rows += qa(
        "I1",
        "r1b",
        0.4,
        recording_disclosure=False,
        prohibited_phrases=2,
        evidence={
            "prohibited_phrases": [
                {"quote": "you will go to jail", "utterance_index": 7},
                {"quote": "last chance", "utterance_index": 11},
            ]
        },
    )
    for r in rows:
        if r["run_id"] == "r1b":
            r["evaluated_at"] = datetime(2025, 1, 17, tzinfo=UTC)
    eq = {
        "empathy_score": 0.6,
        "resolution_achieved": True,
        "customer_effort": 0.2,
        "brand_alignment": 0.7,
        "escalation_risk": 0.1,
        "topic_primary": "billing",
    }
    rows += [ev("I1", "experience_quality", b, v, run="e1") for b, v in eq.items()]
    aw = {
        "frustration_markers": 1,
        "coaching_receptivity": 0.5,
        "customer_escalation_requested": False,
    }
    rows += [ev("I1", "agent_wellbeing", b, v, run="w1") for b, v in aw.items()]
    # I2: qa only; experience_quality failed -> its columns NULL.
    rows += qa("I2", "r2", 0.8)
    rows.append(ev("I2", "experience_quality", None, None, run="e2", status="failed"))
    # I3: only a failed run -> not scored at all.
    rows.append(ev("I3", "qa_compliance", None, None, run="r3", status="failed"))
    evaluations = pl.DataFrame(rows)
    interactions = pl.DataFrame(
        {
            "interaction_id": ["I1", "I2", "I3"],
            "agent_id": ["A1", None, "A3"],
            "channel": ["voice", "chat", "email"],
        }
    )
    return evaluations, interactions


def test_scores_exact_columns_and_typed_values(frames: tuple[pl.DataFrame, pl.DataFrame]) -> None:
    scores = score_interactions(*frames)
    assert scores.columns == INTERACTION_SCORES.column_names
    assert dict(scores.schema) == SCORES_SCHEMA
    assert scores["interaction_id"].to_list() == ["I1", "I2"]  # I3 only failed
    i1 = scores.row(0, named=True)
    assert i1["compliance_score"] == 0.4  # the newer run wins
    assert i1["recording_disclosure"] is False
    assert i1["prohibited_phrases"] == 2
    assert i1["mini_miranda_given"] is None
    assert i1["topic_primary"] == "billing"
    assert i1["frustration_markers"] == 1
    assert (i1["agent_id"], i1["channel"]) == ("A1", "voice")
    # quality = mean(0.4, 0.6, 1 (resolved), 1 - 0.2) = 2.8 / 4
    assert i1["quality_score"] == pytest.approx(0.7)
    i2 = scores.row(1, named=True)
    assert i2["compliance_score"] == 0.8
    assert i2["empathy_score"] is None and i2["topic_primary"] is None
    assert i2["coaching_receptivity"] is None
    assert i2["quality_score"] is None
    assert i2["agent_id"] is None and i2["channel"] == "chat"


def test_findings_every_failed_item_has_its_evidence(
    frames: tuple[pl.DataFrame, pl.DataFrame],
) -> None:
    findings = compliance_findings(*frames)
    assert findings.columns == COMPLIANCE_FINDINGS.column_names
    assert dict(findings.schema) == FINDINGS_SCHEMA
    i1 = findings.filter(pl.col("interaction_id") == "I1")
    # 5 rules, prohibited_phrases has two evidence rows; compliance_score is not a rule
    assert sorted(set(i1["rule"])) == [
        "consent_obtained",
        "disclosure_before_first_customer_turn",
        "mini_miranda_given",
        "prohibited_phrases",
        "recording_disclosure",
    ]
    assert i1.height == 6
    failed = i1.filter(pl.col("passed").eq(False))
    assert set(failed["rule"]) == {"recording_disclosure", "prohibited_phrases"}
    phrases = failed.filter(pl.col("rule") == "prohibited_phrases")
    assert phrases.select("quote", "utterance_index").rows() == [
        ("you will go to jail", 7),
        ("last chance", 11),
    ]
    assert i1.filter(pl.col("rule") == "mini_miranda_given")["passed"].to_list() == [None]
    assert findings.filter(pl.col("interaction_id") == "I2")["passed"].drop_nulls().all()


def test_empty_input_gives_empty_typed_frames() -> None:
    from callminer_assets.lib.tables import EVALUATIONS

    empty = pl.DataFrame(schema={c: pl.String for c in EVALUATIONS.column_names})
    inter = pl.DataFrame(
        schema={"interaction_id": pl.String, "agent_id": pl.String, "channel": pl.String}
    )
    assert score_interactions(empty, inter).columns == INTERACTION_SCORES.column_names
    assert compliance_findings(empty, inter).height == 0
