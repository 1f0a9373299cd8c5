"""The team's framework against CallMiner's default: per rule, the share CallMiner also flags."""

from __future__ import annotations

from datetime import date

from callminer_assets.lib.tables import COMPLIANCE_FINDINGS, NATIVE_CATEGORIES, NATIVE_SCORES
from callminer_assets.transform.frames import frame_from_rows
from callminer_assets.transform.frameworks import ANY_RULE, framework_coverage

DAY = date(2025, 1, 14)


def _finding(iid: str, rule: str, passed: bool) -> dict[str, object]:
    return {"interaction_id": iid, "interaction_date": DAY, "rule": rule, "passed": passed}


def test_coverage_counts_the_kit_failures_callminer_also_flags() -> None:
    findings = frame_from_rows(
        COMPLIANCE_FINDINGS,
        [
            _finding("A", "recording_disclosure", False),
            _finding("A", "prohibited_phrases", False),
            _finding("B", "recording_disclosure", False),
            _finding("B", "prohibited_phrases", True),
            _finding("C", "recording_disclosure", True),
            _finding("C", "prohibited_phrases", False),
            _finding("D", "recording_disclosure", False),  # no native data: not compared
        ],
    )
    scores = frame_from_rows(
        NATIVE_SCORES,
        [
            {"interaction_id": i, "interaction_date": DAY, "score_name": "compliance", "score": s}
            for i, s in (("A", 40.0), ("B", 90.0), ("C", 95.0))
        ],
    )
    categories = frame_from_rows(
        NATIVE_CATEGORIES,
        [{"interaction_id": "C", "interaction_date": DAY, "category_name": "Threat Language"}],
    )
    out = framework_coverage(
        findings,
        scores,
        categories,
        "qa_compliance",
        {"A": "v2"},
        {"Compliance": 70},
        ["threat language"],
    )
    by_rule = {r["rule"]: r for r in out.iter_rows(named=True)}
    assert set(by_rule) == {"recording_disclosure", "prohibited_phrases", ANY_RULE}
    disclosure = by_rule["recording_disclosure"]
    assert (disclosure["interactions"], disclosure["kit_flags"], disclosure["callminer_flags"]) == (
        3,
        2,
        2,
    )
    assert disclosure["flagged_by_both"] == 1 and disclosure["coverage"] == 0.5  # B is missed
    assert by_rule["prohibited_phrases"]["coverage"] == 1.0  # A (score) and C (category)
    assert by_rule[ANY_RULE]["kit_flags"] == 3 and by_rule[ANY_RULE]["coverage"] == 2 / 3
    assert disclosure["kit_versions"] == '["v2"]'
    empty = framework_coverage(
        findings, scores.clear(), categories.clear(), "qa_compliance", {}, {"Compliance": 70}, []
    )
    assert empty.is_empty()
