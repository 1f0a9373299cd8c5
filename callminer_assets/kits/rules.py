"""Deterministic, explainable engines that turn a kit file's rules into bricks.

Each brick is computed from phrase matches over the lines of ``"{role}: {text}"`` (line
index == utterance index), on normalised text (``loader.normalise``), so every value can be
traced back to quoted evidence. The ``compliance`` engine is entirely data (rule types
``phrase``, ``before``, ``request_response``, ``count`` and a weighted score); the
``experience`` and ``wellbeing`` engines keep their arithmetic here and read what to listen
for from the kit file. Used by the sandbox's Semarize and by tests.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from callminer_assets.kits.loader import ROLES, Kit, PhraseSet, Rule, normalise
from callminer_assets.lib.models import Brick

Evidence = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Line:
    """One parsed utterance: its index, role, original text, normalised text and index map."""

    index: int
    role: str
    text: str
    norm: str
    where: tuple[int, ...]

    def quote(self, start: int, end: int) -> Evidence:
        """The original text behind ``norm[start:end]``, with the utterance index."""
        return {
            "quote": self.text[self.where[start] : self.where[end - 1] + 1],
            "utterance_index": self.index,
        }


def parse_transcript(transcript_text: str) -> list[Line]:
    """Split the Semarize input back into utterances (index == line number)."""
    lines: list[Line] = []
    for i, raw in enumerate(transcript_text.split("\n")):
        role, sep, body = raw.partition(": ")
        if not sep or role not in ROLES:
            role, body = "unknown", raw
        norm, where = normalise(body)
        lines.append(Line(i, role, body, norm, tuple(where)))
    return lines


def _find(line: Line, ps: PhraseSet) -> Evidence | None:
    """Evidence for the first phrase (then pattern) found in ``line``."""
    for p in ps.normalised:
        pos = line.norm.find(p)
        if pos >= 0:
            return line.quote(pos, pos + len(p))
    for rx in ps.patterns:
        if (m := rx.search(line.norm)) and m.end() > m.start():
            return line.quote(m.start(), m.end())
    return None


def _find_all(lines: Iterable[Line], ps: PhraseSet) -> list[Evidence]:
    """One evidence item per (line, phrase) occurrence: counts are explainable item by item."""
    out: list[Evidence] = []
    for line in lines:
        for p in ps.normalised:
            start = 0
            while (pos := line.norm.find(p, start)) >= 0:
                out.append(line.quote(pos, pos + len(p)))
                start = pos + len(p)
        for rx in ps.patterns:
            out += [
                line.quote(m.start(), m.end())
                for m in rx.finditer(line.norm)
                if m.end() > m.start()
            ]
    return out


def _first(lines: Iterable[Line], ps: PhraseSet) -> Evidence | None:
    return next((e for ln in lines if (e := _find(ln, ps))), None)


def _clamp(x: float) -> float:
    return round(min(1.0, max(0.0, x)), 4)


def _role(lines: list[Line], role: str | None) -> list[Line]:
    return lines if role is None else [ln for ln in lines if ln.role == role]


def _first_substantive_customer(lines: list[Line], greetings: frozenset[str]) -> int | None:
    """Index of the customer's first turn that is more than a greeting."""
    for ln in lines:
        if ln.role == "customer" and ln.norm not in greetings:
            return ln.index
    return None


def _consent(rule: Rule, lines: list[Line], metadata: Mapping[str, Any]) -> list[Evidence]:
    """A request by ``speaker`` answered yes by the customer within ``within`` turns."""
    assert rule.match is not None and rule.response is not None
    ask_ps, yes_ps = rule.by_region.get(
        normalise(str(metadata.get("region") or ""))[0], (rule.match, rule.response)
    )
    for ln in _role(lines, rule.speaker):
        ask = _find(ln, ask_ps)
        if ask is None:
            continue
        for nxt in lines[ln.index + 1 : ln.index + 1 + rule.within]:
            if nxt.role == "customer" and (yes := _find(nxt, yes_ps)):
                return [ask, yes]
    return []


def compliance(kit: Kit, lines: list[Line], metadata: Mapping[str, Any]) -> dict[str, Brick]:
    """The kit's rules in order, then its weighted score (see the kit file for the rules)."""
    out: dict[str, Brick] = {}
    found: dict[str, Evidence | None] = {}
    penalty = 0.0
    evidence: list[Evidence] = []
    for rule in kit.rules:
        lo, hi = rule.confidence
        if not rule.applies(metadata):
            out[rule.brick] = Brick(None, None, ())
            continue
        if rule.type == "phrase":
            assert rule.match is not None
            ev = found[rule.brick] = _first(_role(lines, rule.speaker), rule.match)
            out[rule.brick] = Brick(ev is not None, lo if ev else hi, (ev,) if ev else ())
            evidence += [ev] if ev else []
        elif rule.type == "before":
            assert rule.of is not None
            target = found.get(rule.of)
            if out[rule.of].value is None:
                out[rule.brick] = Brick(None, None, ())
                continue
            first = _first_substantive_customer(lines, rule.greetings)
            early = target is not None and (first is None or target["utterance_index"] < first)
            out[rule.brick] = Brick(early, lo if target else hi, (target,) if target else ())
        elif rule.type == "request_response":
            pair = _consent(rule, lines, metadata)
            out[rule.brick] = Brick(bool(pair), lo if pair else hi, tuple(pair))
            evidence += pair
        else:  # count
            assert rule.match is not None
            hits = _find_all(_role(lines, rule.speaker), rule.match)
            out[rule.brick] = Brick(len(hits), lo if hits else hi, tuple(hits))
            penalty += rule.penalty * len(hits)
            evidence += hits
    if kit.score is not None:
        weights = {b: w for b, w in kit.score.weights.items() if out[b].value is not None}
        total = sum(weights.values())
        passed = sum(w for b, w in weights.items() if out[b].value is True)
        value = (passed / total if total else 1.0) - penalty
        out[kit.score.brick] = Brick(_clamp(value), kit.score.confidence, tuple(evidence))
    return out


def _ratio(hits: int, turns: int) -> float:
    return hits / max(1, turns)


def experience(kit: Kit, lines: list[Line], metadata: Mapping[str, Any]) -> dict[str, Brick]:
    """Empathy, resolution, effort, brand voice, escalation risk and the main topic."""
    ph = kit.phrases
    agent = _role(lines, "agent")
    customer = _role(lines, "customer")
    empathy = _find_all(agent, ph["empathy"])
    empathy_score = _clamp(_ratio(len(empathy), len(agent)) * 3.5)

    confirm = [e for ln in agent if (e := _find(ln, ph["resolution_confirm"]))]
    thanks = [e for ln in customer if (e := _find(ln, ph["resolution_thanks"]))]
    unresolved = [e for ln in lines if (e := _find(ln, ph["unresolved"]))]
    resolved = bool(confirm or thanks) and not unresolved
    res_ev = tuple((confirm + thanks) if resolved else unresolved)

    effort = _find_all(customer, ph["customer_effort"])
    effort_score = _clamp(0.1 + 0.2 * len(effort) + (0.15 if len(lines) > 100 else 0.0))

    brand_pos = _find_all(agent, ph["brand_positive"])
    brand_neg = _find_all(agent, ph["brand_negative"])
    brand = _clamp(0.4 + 0.2 * min(len(brand_pos), 3) - 0.25 * len(brand_neg))

    escalation = [e for ln in customer if (e := _find(ln, ph["escalation_request"]))]
    frustration = _find_all(agent, ph["frustration"])
    risk = _clamp(
        0.05
        + (0.45 if escalation else 0.0)
        + 0.3 * effort_score
        + (0.15 if not resolved else 0.0)
        + 0.05 * len(frustration)
    )

    counts = {t: len(_find_all(lines, kw)) for t, kw in kit.topics.items()}
    implied = kit.campaign_topics.get(normalise(str(metadata.get("campaign") or ""))[0])
    if implied is not None:
        counts[implied] += 1
    topic = max(kit.topics, key=lambda t: counts[t])
    total = sum(counts.values())
    topic_conf = round(counts[topic] / total, 3) if total else 0.2
    topic_ev = tuple(_find_all(lines, kit.topics[topic])[:3])
    fallback = "account" if "account" in kit.topics else next(iter(kit.topics))
    return {
        "empathy_score": Brick(empathy_score, 0.8, tuple(empathy)),
        "resolution_achieved": Brick(resolved, 0.8 if res_ev else 0.6, res_ev),
        "customer_effort": Brick(effort_score, 0.75, tuple(effort)),
        "brand_alignment": Brick(brand, 0.7, tuple(brand_pos + brand_neg)),
        "escalation_risk": Brick(risk, 0.7, tuple(escalation + effort)),
        "topic_primary": Brick(topic if total else fallback, topic_conf, topic_ev),
    }


def wellbeing(kit: Kit, lines: list[Line], metadata: Mapping[str, Any]) -> dict[str, Brick]:
    """Frustration markers, openness to coaching practices, escalation requests."""
    ph = kit.phrases
    agent = _role(lines, "agent")
    customer = _role(lines, "customer")
    frustration = _find_all(agent, ph["frustration"])
    receptive = _find_all(agent, ph["receptive"])
    defensive = _find_all(agent, ph["defensive"])
    receptivity = _clamp(
        0.2 + 4.0 * _ratio(len(receptive), len(agent)) - 2.0 * _ratio(len(defensive), len(agent))
    )
    escalation = [e for ln in customer if (e := _find(ln, ph["escalation_request"]))]
    return {
        "frustration_markers": Brick(len(frustration), 0.9, tuple(frustration)),
        "coaching_receptivity": Brick(receptivity, 0.65, tuple(receptive + defensive)),
        "customer_escalation_requested": Brick(bool(escalation), 0.9, tuple(escalation)),
    }


EngineFn = Callable[[Kit, list[Line], Mapping[str, Any]], dict[str, Brick]]


@dataclass(frozen=True, slots=True)
class Engine:
    """What an engine computes and which named phrase lists a kit file must give it."""

    run: EngineFn
    bricks: tuple[str, ...] = ()
    phrase_lists: tuple[str, ...] = ()
    needs_topics: bool = False


ENGINES: dict[str, Engine] = {
    "compliance": Engine(compliance),
    "experience": Engine(
        experience,
        (
            "empathy_score",
            "resolution_achieved",
            "customer_effort",
            "brand_alignment",
            "escalation_risk",
            "topic_primary",
        ),
        (
            "empathy",
            "resolution_confirm",
            "resolution_thanks",
            "unresolved",
            "customer_effort",
            "brand_positive",
            "brand_negative",
            "escalation_request",
            "frustration",
        ),
        needs_topics=True,
    ),
    "wellbeing": Engine(
        wellbeing,
        ("frustration_markers", "coaching_receptivity", "customer_escalation_requested"),
        ("frustration", "receptive", "defensive", "escalation_request"),
    ),
}
