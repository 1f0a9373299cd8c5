"""The kits: fixed names/versions, explainable values, evidence that points at the right line."""

from __future__ import annotations

import pytest

from callminer_assets.kits import current_kits, evaluate
from callminer_assets.kits.lexicon import HOSTILE_STRINGS

GOOD = "\n".join(
    [
        "customer: Hello?",
        "agent: Thank you for calling Northwind Telecom. Please note this call may be recorded.",
        "agent: I must tell you this is an attempt to collect a debt.",
        "customer: I got a letter about an overdue balance.",
        "agent: Do you consent to discuss your account today?",
        "customer: Yes, I consent.",
        "agent: I'm sorry to hear that. We can offer a payment plan.",
        "agent: That's been resolved now. Is there anything else I can help with?",
        "customer: Thanks, that's sorted.",
    ]
)
BAD = "\n".join(
    [
        "agent: Hello.",
        "customer: I want to cancel my contract, I already told you.",
        "agent: As I already said, you have no choice. This is your last chance.",
        "customer: Let me speak to a manager.",
        "agent: Please calm down. This call may be recorded.",
        "agent: I'm afraid you'll need to call back.",
    ]
)


def test_kit_registry() -> None:
    assert {k: v.version for k, v in current_kits().items()} == {
        "qa_compliance": "TCPA-v2026.1",
        "experience_quality": "EQ-v2026.1",
        "agent_wellbeing": "AW-v2026.1",
    }
    for kit in current_kits().values():
        assert set(evaluate(kit.code, GOOD, {"campaign": "collections"})) == set(kit.bricks)
    with pytest.raises(KeyError):
        evaluate("nope", GOOD, {})


def test_qa_compliance_good_and_bad() -> None:
    good = evaluate("qa_compliance", GOOD, {"campaign": "collections", "channel": "voice"})
    assert good["recording_disclosure"].value is True
    assert good["recording_disclosure"].evidence[0] == {
        "quote": "this call may be recorded",
        "utterance_index": 1,
    }
    assert (
        good["disclosure_before_first_customer_turn"].value is True
    )  # "Hello?" is not substantive
    assert good["consent_obtained"].value is True
    assert [e["utterance_index"] for e in good["consent_obtained"].evidence] == [4, 5]
    assert good["mini_miranda_given"].value is True
    assert good["prohibited_phrases"].value == 0
    assert good["compliance_score"].value == 1.0
    bad = evaluate("qa_compliance", BAD, {"campaign": "collections"})
    assert bad["recording_disclosure"].value is True
    assert bad["disclosure_before_first_customer_turn"].value is False
    assert bad["consent_obtained"].value is False
    assert bad["mini_miranda_given"].value is False
    assert bad["prohibited_phrases"].value == 2 == len(bad["prohibited_phrases"].evidence)
    assert {e["utterance_index"] for e in bad["prohibited_phrases"].evidence} == {2}
    assert bad["compliance_score"].value == 0.0
    other = evaluate("qa_compliance", BAD, {"campaign": "retention"})
    assert other["mini_miranda_given"].value is None


def test_experience_and_wellbeing() -> None:
    good = evaluate("experience_quality", GOOD, {"campaign": "collections"})
    bad = evaluate("experience_quality", BAD, {})
    assert good["resolution_achieved"].value is True and bad["resolution_achieved"].value is False
    assert good["empathy_score"].value > bad["empathy_score"].value
    assert bad["customer_effort"].value > good["customer_effort"].value
    assert bad["escalation_risk"].value > good["escalation_risk"].value
    assert (
        good["topic_primary"].value == "collections"
        and bad["topic_primary"].value == "cancellation"
    )
    assert 0 <= good["brand_alignment"].value <= 1
    w = evaluate("agent_wellbeing", BAD, {})
    assert w["frustration_markers"].value == 2
    assert [e["utterance_index"] for e in w["frustration_markers"].evidence] == [2, 4]
    assert w["customer_escalation_requested"].value is True
    assert 0 <= w["coaching_receptivity"].value <= 1


def test_hostile_and_degenerate_text_never_crashes() -> None:
    text = "\n".join(f"customer: {s}" for s in HOSTILE_STRINGS) + "\nno role here\n\n:"
    for code in current_kits():
        bricks = evaluate(code, text, {"campaign": None})
        assert all(
            b.value is None or isinstance(b.value, bool | int | float | str)
            for b in bricks.values()
        )
    assert evaluate("qa_compliance", "", {})["compliance_score"].value == 0.0
