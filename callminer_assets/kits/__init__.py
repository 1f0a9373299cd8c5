"""The three Semarize kits, defined once: used by the sandbox's Semarize and by analytics.

``KITS`` names each kit's code, version and bricks; ``evaluate`` runs the kit's
deterministic rules (``rules.py``) over the transcript text and returns
``Brick`` values with quoted evidence.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from callminer_assets.kits import rules
from callminer_assets.lib.models import Brick


@dataclass(frozen=True, slots=True)
class Kit:
    """A versioned set of questions; a changed version means re-scoring is possible."""

    code: str
    version: str
    bricks: tuple[str, ...]
    rule: rules.KitRule
    description: str = ""


KITS: dict[str, Kit] = {
    k.code: k
    for k in (
        Kit(
            "qa_compliance",
            "TCPA-v2026.1",
            (
                "recording_disclosure",
                "disclosure_before_first_customer_turn",
                "consent_obtained",
                "prohibited_phrases",
                "mini_miranda_given",
                "compliance_score",
            ),
            rules.qa_compliance,
            "Recording disclosure and timing, consent, prohibited phrases, mini-Miranda.",
        ),
        Kit(
            "experience_quality",
            "EQ-v2026.1",
            (
                "empathy_score",
                "resolution_achieved",
                "customer_effort",
                "brand_alignment",
                "escalation_risk",
                "topic_primary",
            ),
            rules.experience_quality,
            "Customer experience: empathy, resolution, effort, brand voice, risk, topic.",
        ),
        Kit(
            "agent_wellbeing",
            "AW-v2026.1",
            ("frustration_markers", "coaching_receptivity", "customer_escalation_requested"),
            rules.agent_wellbeing,
            "Agent strain and coachability signals.",
        ),
    )
}


def evaluate(
    kit_code: str, transcript_text: str, metadata: Mapping[str, Any] | None = None
) -> dict[str, Brick]:
    """Evaluate one transcript with one kit; raises KeyError for an unknown kit."""
    kit = KITS[kit_code]
    bricks = kit.rule(rules.parse_transcript(transcript_text), metadata or {})
    return {name: bricks[name] for name in kit.bricks}


__all__ = ["KITS", "Kit", "evaluate"]
