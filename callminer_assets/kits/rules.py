"""Deterministic, explainable kit rules over the transcript text.

Each brick is computed from lexicon matches (``lexicon.py``) over the lines of
``"{role}: {text}"`` (line index == utterance index), so every value can be
traced back to quoted evidence. Used by the sandbox's Semarize and by tests.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from callminer_assets.kits import lexicon as lx
from callminer_assets.lib.models import Brick

_ROLES = ("agent", "customer", "unknown")


@dataclass(frozen=True, slots=True)
class Line:
    """One parsed utterance: its index, role, original text and lower-cased text."""

    index: int
    role: str
    text: str
    low: str


def parse_transcript(transcript_text: str) -> list[Line]:
    """Split the Semarize input back into utterances (index == line number)."""
    lines: list[Line] = []
    for i, raw in enumerate(transcript_text.split("\n")):
        role, sep, body = raw.partition(": ")
        if not sep or role not in _ROLES:
            role, body = "unknown", raw
        lines.append(Line(i, role, body, body.lower()))
    return lines


def _find(line: Line, phrases: Iterable[str]) -> dict[str, Any] | None:
    """Evidence item for the first phrase found in ``line``, quoting the original text."""
    for p in phrases:
        pos = line.low.find(p)
        if pos >= 0:
            return {"quote": line.text[pos : pos + len(p)], "utterance_index": line.index}
    return None


def _find_all(lines: Iterable[Line], phrases: Iterable[str]) -> list[dict[str, Any]]:
    """One evidence item per (line, phrase) occurrence: counts are explainable item by item."""
    out: list[dict[str, Any]] = []
    phrases = tuple(phrases)
    for line in lines:
        for p in phrases:
            start = 0
            while (pos := line.low.find(p, start)) >= 0:
                out.append({"quote": line.text[pos : pos + len(p)], "utterance_index": line.index})
                start = pos + len(p)
    return out


def _clamp(x: float) -> float:
    return round(min(1.0, max(0.0, x)), 4)


def _role(lines: list[Line], role: str) -> list[Line]:
    return [ln for ln in lines if ln.role == role]


def _first_substantive_customer(lines: list[Line]) -> int | None:
    """Index of the customer's first turn that is more than a greeting."""
    for ln in lines:
        if ln.role == "customer" and ln.low.strip(" .!,") not in lx.CUSTOMER_GREETINGS:
            return ln.index
    return None


def requires_mini_miranda(metadata: Mapping[str, Any]) -> bool:
    """The collections campaign must give the mini-Miranda (FDCPA), others need not."""
    return str(metadata.get("campaign") or "").strip().lower() == "collections"


def qa_compliance(lines: list[Line], metadata: Mapping[str, Any]) -> dict[str, Brick]:
    """TCPA-style checks: disclosure (and its timing), consent, prohibited phrases, mini-Miranda."""
    agent = _role(lines, "agent")
    disclosure = next((e for ln in agent if (e := _find(ln, lx.RECORDING_DISCLOSURE))), None)
    first_cust = _first_substantive_customer(lines)
    early = disclosure is not None and (
        first_cust is None or disclosure["utterance_index"] < first_cust
    )
    consent_ev: list[dict[str, Any]] = []
    for ln in agent:
        ask = _find(ln, lx.CONSENT_REQUEST)
        if ask is None:
            continue
        for nxt in lines[ln.index + 1 : ln.index + 3]:
            if nxt.role == "customer" and (yes := _find(nxt, lx.CONSENT_AFFIRM)):
                consent_ev = [ask, yes]
                break
        if consent_ev:
            break
    prohibited = _find_all(agent, lx.PROHIBITED)
    needs_mm = requires_mini_miranda(metadata)
    mm_ev = next((e for ln in agent if (e := _find(ln, lx.MINI_MIRANDA))), None)
    mini_miranda = (mm_ev is not None) if needs_mm else None

    weights = {"disclosure": 0.35, "early": 0.15, "consent": 0.25}
    got = {"disclosure": disclosure is not None, "early": early, "consent": bool(consent_ev)}
    if needs_mm:
        weights["mini_miranda"] = 0.25
        got["mini_miranda"] = bool(mini_miranda)
    score = sum(w for k, w in weights.items() if got[k]) / sum(weights.values())
    score -= 0.2 * len(prohibited)
    ev_all = [e for e in (disclosure, mm_ev) if e] + consent_ev + prohibited
    return {
        "recording_disclosure": Brick(
            disclosure is not None,
            0.95 if disclosure else 0.85,
            (disclosure,) if disclosure else (),
        ),
        "disclosure_before_first_customer_turn": Brick(
            early, 0.9 if disclosure else 0.85, (disclosure,) if disclosure else ()
        ),
        "consent_obtained": Brick(bool(consent_ev), 0.9 if consent_ev else 0.8, tuple(consent_ev)),
        "prohibited_phrases": Brick(len(prohibited), 0.97, tuple(prohibited)),
        "mini_miranda_given": Brick(
            mini_miranda, 0.93 if needs_mm else None, (mm_ev,) if (mm_ev and needs_mm) else ()
        ),
        "compliance_score": Brick(_clamp(score), 0.88, tuple(ev_all)),
    }


def _ratio(hits: int, turns: int) -> float:
    return hits / max(1, turns)


def experience_quality(lines: list[Line], metadata: Mapping[str, Any]) -> dict[str, Brick]:
    """Empathy, resolution, effort, brand voice, escalation risk and the main topic."""
    agent = _role(lines, "agent")
    customer = _role(lines, "customer")
    empathy = _find_all(agent, lx.EMPATHY)
    empathy_score = _clamp(_ratio(len(empathy), len(agent)) * 3.5)

    confirm = [e for ln in agent if (e := _find(ln, lx.RESOLUTION_CONFIRM))]
    thanks = [e for ln in customer if (e := _find(ln, lx.RESOLUTION_THANKS))]
    unresolved = [e for ln in lines if (e := _find(ln, lx.UNRESOLVED))]
    resolved = bool(confirm or thanks) and not unresolved
    res_ev = tuple((confirm + thanks) if resolved else unresolved)

    effort = _find_all(customer, lx.CUSTOMER_EFFORT)
    effort_score = _clamp(0.1 + 0.2 * len(effort) + (0.15 if len(lines) > 100 else 0.0))

    brand_pos = _find_all(agent, lx.BRAND_POSITIVE)
    brand_neg = _find_all(agent, lx.BRAND_NEGATIVE)
    brand = _clamp(0.4 + 0.2 * min(len(brand_pos), 3) - 0.25 * len(brand_neg))

    escalation = [e for ln in customer if (e := _find(ln, lx.ESCALATION_REQUEST))]
    frustration = _find_all(agent, lx.FRUSTRATION)
    risk = _clamp(
        0.05
        + (0.45 if escalation else 0.0)
        + 0.3 * effort_score
        + (0.15 if not resolved else 0.0)
        + 0.05 * len(frustration)
    )

    counts = {t: len(_find_all(lines, kw)) for t, kw in lx.TOPIC_KEYWORDS.items()}
    if requires_mini_miranda(metadata):
        counts["collections"] += 1
    topic = max(lx.TOPICS, key=lambda t: counts[t])
    total = sum(counts.values())
    topic_conf = round(counts[topic] / total, 3) if total else 0.2
    topic_ev = tuple(_find_all(lines, lx.TOPIC_KEYWORDS[topic])[:3])
    return {
        "empathy_score": Brick(empathy_score, 0.8, tuple(empathy)),
        "resolution_achieved": Brick(resolved, 0.8 if res_ev else 0.6, res_ev),
        "customer_effort": Brick(effort_score, 0.75, tuple(effort)),
        "brand_alignment": Brick(brand, 0.7, tuple(brand_pos + brand_neg)),
        "escalation_risk": Brick(risk, 0.7, tuple(escalation + effort)),
        "topic_primary": Brick(topic if total else "account", topic_conf, topic_ev),
    }


def agent_wellbeing(lines: list[Line], metadata: Mapping[str, Any]) -> dict[str, Brick]:
    """Frustration markers, openness to coaching practices, escalation requests."""
    agent = _role(lines, "agent")
    customer = _role(lines, "customer")
    frustration = _find_all(agent, lx.FRUSTRATION)
    receptive = _find_all(agent, lx.RECEPTIVE)
    defensive = _find_all(agent, lx.DEFENSIVE)
    receptivity = _clamp(
        0.2 + 4.0 * _ratio(len(receptive), len(agent)) - 2.0 * _ratio(len(defensive), len(agent))
    )
    escalation = [e for ln in customer if (e := _find(ln, lx.ESCALATION_REQUEST))]
    return {
        "frustration_markers": Brick(len(frustration), 0.9, tuple(frustration)),
        "coaching_receptivity": Brick(receptivity, 0.65, tuple(receptive + defensive)),
        "customer_escalation_requested": Brick(bool(escalation), 0.9, tuple(escalation)),
    }


KitRule = Callable[[list[Line], Mapping[str, Any]], dict[str, Brick]]
