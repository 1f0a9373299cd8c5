"""Kit files -> validated ``Kit`` values; one line naming file, rule and problem otherwise.

The packaged defaults (``kits/defaults/*.yaml``) load first; a file in ``KITS_DIR`` with the
same ``code`` replaces the default, a new code adds a kit. Phrases are kept as written (the
sandbox generator speaks them) and normalised for matching (``normalise``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from callminer_assets.lib.errors import ConfigError

PACKAGED_DIR = Path(__file__).parent / "defaults"
ROLES = ("agent", "customer", "unknown")
RULE_TYPES = ("phrase", "before", "request_response", "count")
ANCHORS = ("first_substantive_customer_turn",)


class KitError(ConfigError):
    """A kit file that cannot be used; the message is one line: file, rule, problem."""


def normalise(text: str) -> tuple[str, list[int]]:
    """Case-folded words separated by single spaces, plus each character's source index.

    Punctuation and whitespace runs become one space, so "Yes,  I consent." matches the
    phrase "yes, i consent"; the index map turns a match back into the original quote.
    """
    out: list[str] = []
    where: list[int] = []
    gap = False
    for i, ch in enumerate(text):
        if not ch.isalnum():
            gap = True
            continue
        if gap and out:
            out.append(" ")
            where.append(i)
        gap = False
        for folded in ch.casefold():
            out.append(folded)
            where.append(i)
    return "".join(out), where


@dataclass(frozen=True, slots=True)
class PhraseSet:
    """Phrases as written, their normalised forms, and regular expressions (on normalised text)."""

    phrases: tuple[str, ...]
    normalised: tuple[str, ...]
    patterns: tuple[re.Pattern[str], ...] = ()


@dataclass(frozen=True, slots=True)
class Rule:
    """One compliance rule = one brick (see ``rules.compliance`` for each type's meaning)."""

    brick: str
    type: str
    speaker: str | None = None
    match: PhraseSet | None = None
    response: PhraseSet | None = None
    by_region: Mapping[str, tuple[PhraseSet, PhraseSet]] = field(default_factory=dict)
    within: int = 2
    of: str | None = None
    greetings: frozenset[str] = frozenset()
    when: Mapping[str, frozenset[str]] = field(default_factory=dict)
    penalty: float = 0.0
    confidence: tuple[float, float] = (0.9, 0.8)

    def applies(self, metadata: Mapping[str, Any]) -> bool:
        """``when: {campaign: [collections]}``: the rule holds only for those values."""
        return all(
            normalise(str(metadata.get(key) or ""))[0] in allowed
            for key, allowed in self.when.items()
        )


@dataclass(frozen=True, slots=True)
class Score:
    """The weighted aggregate brick: passed weight / applicable weight, minus count penalties."""

    brick: str
    weights: Mapping[str, float]
    confidence: float


@dataclass(frozen=True, slots=True)
class CallMinerFlags:
    """What counts as CallMiner's default scoring flagging an interaction (framework_coverage)."""

    scores_below: Mapping[str, float] = field(default_factory=dict)
    categories: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Kit:
    """A versioned framework; a changed version makes re-scoring possible, never automatic."""

    code: str
    version: str
    bricks: tuple[str, ...]
    engine: str
    description: str = ""
    source: str = ""
    rules: tuple[Rule, ...] = ()
    score: Score | None = None
    phrases: Mapping[str, PhraseSet] = field(default_factory=dict)
    topics: Mapping[str, PhraseSet] = field(default_factory=dict)
    campaign_topics: Mapping[str, str] = field(default_factory=dict)
    callminer_flags: CallMinerFlags = field(default_factory=CallMinerFlags)


class _Reader:
    """Reads one file's parsed YAML, raising ``KitError`` with the file and the rule."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def fail(self, where: str, problem: str) -> KitError:
        return KitError(f"kit file {self.path}: {where}: {problem}")

    def text(self, raw: Mapping[str, Any], key: str, where: str) -> str:
        value = raw.get(key)
        if not isinstance(value, str) or not value.strip():
            raise self.fail(where, f"'{key}' must be a non-empty string")
        return value.strip()

    def number(self, value: Any, where: str, what: str, low: float, high: float) -> float:
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not low <= value <= high
        ):
            raise self.fail(where, f"{what} must be a number in {low:g}..{high:g}, got {value!r}")
        return float(value)

    def phrases(self, raw: Any, where: str, key: str, patterns: Any = None) -> PhraseSet:
        if raw is None and patterns:
            raw = []
        if not isinstance(raw, list) or not all(isinstance(p, str) for p in raw):
            raise self.fail(where, f"'{key}' must be a list of strings")
        normal = tuple(normalise(p)[0] for p in raw)
        if "" in normal:
            raise self.fail(where, f"'{key}' has a phrase with no letters or digits")
        compiled = []
        for p in patterns or []:
            try:
                compiled.append(re.compile(str(p)))
            except re.error as exc:
                raise self.fail(where, f"pattern {p!r} does not compile: {exc}") from None
        if not normal and not compiled:
            raise self.fail(where, f"'{key}' is empty")
        return PhraseSet(tuple(raw), normal, tuple(compiled))

    def mapping(self, raw: Any, where: str, key: str) -> Mapping[str, Any]:
        if raw is None:
            return {}
        if not isinstance(raw, dict):
            raise self.fail(where, f"'{key}' must be a mapping")
        return raw

    def rule(self, raw: Any, index: int, seen: Mapping[str, Rule]) -> Rule:
        if not isinstance(raw, dict) or not isinstance(raw.get("brick"), str):
            raise self.fail(f"rule #{index + 1}", "a rule is a mapping with a 'brick' name")
        name = raw["brick"]
        where = f"rule {name}"
        if name in seen:
            raise self.fail(where, "brick defined twice")
        kind = raw.get("type")
        if kind not in RULE_TYPES:
            raise self.fail(where, f"type must be one of {', '.join(RULE_TYPES)}, got {kind!r}")
        speaker = raw.get("speaker")
        if speaker is not None and speaker not in ROLES:
            raise self.fail(where, f"speaker must be one of {', '.join(ROLES)}, got {speaker!r}")
        conf = raw.get("confidence", [0.9, 0.8])
        if not isinstance(conf, list) or len(conf) != 2:
            raise self.fail(where, "confidence must be [when found, when not found]")
        confidence = (
            self.number(conf[0], where, "confidence", 0, 1),
            self.number(conf[1], where, "confidence", 0, 1),
        )
        when = {
            str(k): frozenset(normalise(str(v))[0] for v in self._list(vals, where, f"when.{k}"))
            for k, vals in self.mapping(raw.get("when"), where, "when").items()
        }
        rule = Rule(name, kind, speaker, confidence=confidence, when=when)
        if kind in ("phrase", "count"):
            match = self.phrases(raw.get("phrases"), where, "phrases", raw.get("patterns"))
            penalty = self.number(raw.get("penalty", 0), where, "penalty", 0, 1)
            return replace(rule, match=match, penalty=penalty)
        if kind == "request_response":
            regions = {}
            for region, v in self.mapping(raw.get("by_region"), where, "by_region").items():
                at = f"{where} region {region}"
                if not isinstance(v, dict):
                    raise self.fail(at, "must be a mapping with 'request' and 'response'")
                regions[normalise(str(region))[0]] = (
                    self.phrases(v.get("request"), at, "request"),
                    self.phrases(v.get("response"), at, "response"),
                )
            within = raw.get("within", 2)
            if isinstance(within, bool) or not isinstance(within, int) or within < 1:
                raise self.fail(
                    where, f"within must be a whole number of turns >= 1, got {within!r}"
                )
            return replace(
                rule,
                match=self.phrases(raw.get("request"), where, "request"),
                response=self.phrases(raw.get("response"), where, "response"),
                by_region=regions,
                within=within,
            )
        of = raw.get("of")
        target = seen.get(of) if isinstance(of, str) else None
        if target is None or target.type != "phrase":
            raise self.fail(where, f"'of' must name an earlier phrase rule, got {of!r}")
        if raw.get("before") not in ANCHORS:
            raise self.fail(where, f"'before' must be one of {', '.join(ANCHORS)}")
        greetings = self._list(raw.get("greetings", []), where, "greetings")
        return replace(rule, of=of, greetings=frozenset(normalise(str(g))[0] for g in greetings))

    def flags(self, raw: Any) -> CallMinerFlags:
        where = "field callminer_flags"
        flags = self.mapping(raw, where, "callminer_flags")
        below = {
            str(name): self.number(v, where, f"threshold of {name}", -1e12, 1e12)
            for name, v in self.mapping(flags.get("scores_below"), where, "scores_below").items()
        }
        categories = self._list(flags.get("categories", []), where, "categories")
        return CallMinerFlags(below, tuple(str(c) for c in categories))

    def _list(self, raw: Any, where: str, key: str) -> list[Any]:
        if not isinstance(raw, list):
            raise self.fail(where, f"'{key}' must be a list")
        return raw

    def kit(self) -> Kit:
        from callminer_assets.kits.rules import ENGINES

        try:
            raw = yaml.safe_load(self.path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise self.fail("file", f"not readable YAML ({first})") from None
        if not isinstance(raw, dict):
            raise self.fail("file", "the top level must be a mapping")
        code = self.text(raw, "code", "field code")
        if not re.fullmatch(r"[a-z][a-z0-9_]*", code):
            raise self.fail("field code", f"{code!r} is not a lower_snake_case name")
        version = self.text(raw, "version", "field version")
        engine = raw.get("engine")
        if engine not in ENGINES:
            raise self.fail("field engine", f"must be one of {', '.join(ENGINES)}, got {engine!r}")
        description = str(raw.get("description") or "")
        common = {
            "code": code,
            "version": version,
            "engine": engine,
            "description": description,
            "callminer_flags": self.flags(raw.get("callminer_flags")),
        }
        if engine == "compliance":
            return self._compliance(raw, common)
        spec = ENGINES[engine]
        bricks = tuple(self._list(raw.get("bricks"), "field bricks", "bricks"))
        unknown = [b for b in bricks if b not in spec.bricks]
        if unknown or not bricks:
            raise self.fail(
                "field bricks",
                f"{engine} computes {', '.join(spec.bricks)}; got {unknown or 'none'}",
            )
        lists = self.mapping(raw.get("phrases"), "field phrases", "phrases")
        missing = [n for n in spec.phrase_lists if n not in lists]
        if missing:
            raise self.fail(f"phrases {missing[0]}", f"missing (the {engine} engine needs it)")
        phrases = {n: self.phrases(v, f"phrases {n}", n) for n, v in lists.items()}
        topics = {
            t: self.phrases(v, f"topic {t}", t)
            for t, v in self.mapping(raw.get("topics"), "field topics", "topics").items()
        }
        if spec.needs_topics and not topics:
            raise self.fail("field topics", f"the {engine} engine needs at least one topic")
        campaign_topics = {
            normalise(str(c))[0]: str(t)
            for c, t in self.mapping(
                raw.get("campaign_topics"), "field campaign_topics", "x"
            ).items()
        }
        stray = [t for t in campaign_topics.values() if t not in topics]
        if stray:
            raise self.fail("field campaign_topics", f"unknown topic {stray[0]!r}")
        return Kit(
            **common,
            bricks=bricks,
            source=str(self.path),
            phrases=phrases,
            topics=topics,
            campaign_topics=campaign_topics,
        )

    def _compliance(self, raw: Mapping[str, Any], common: Mapping[str, Any]) -> Kit:
        rules: dict[str, Rule] = {}
        for i, r in enumerate(self._list(raw.get("rules"), "field rules", "rules")):
            rule = self.rule(r, i, rules)
            rules[rule.brick] = rule
        if not rules:
            raise self.fail("field rules", "a compliance kit needs at least one rule")
        score_raw = self.mapping(raw.get("score"), "score", "score")
        score = None
        if score_raw:
            name = self.text(score_raw, "brick", "score")
            where = f"rule {name}"
            if name in rules:
                raise self.fail(where, "the score brick has the name of a rule")
            weights = {}
            for brick, w in self.mapping(score_raw.get("weights"), where, "weights").items():
                target = rules.get(brick)
                if target is None or target.type == "count":
                    raise self.fail(where, f"weight for {brick!r}, which is not a yes/no rule")
                weights[brick] = self.number(w, where, f"weight of {brick}", 0, 100)
            conf = self.number(score_raw.get("confidence", 0.88), where, "confidence", 0, 1)
            score = Score(name, weights, conf)
        bricks = tuple(rules) + ((score.brick,) if score else ())
        return Kit(
            **common, bricks=bricks, source=str(self.path), rules=tuple(rules.values()), score=score
        )


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())


def _load_folder(folder: Path) -> dict[str, Kit]:
    kits: dict[str, Kit] = {}
    for path in _files(folder):
        kit = _Reader(path).kit()
        if kit.code in kits:
            raise KitError(
                f"kit file {path}: field code: {kit.code!r} is also defined in {kits[kit.code].source}"
            )
        kits[kit.code] = kit
    return kits


@lru_cache(maxsize=8)
def _load(kits_dir: str | None, _signature: tuple[tuple[str, int, int], ...]) -> dict[str, Kit]:
    kits = _load_folder(PACKAGED_DIR)
    if kits_dir:
        kits.update(_load_folder(Path(kits_dir)))
    return kits


def load_kits(kits_dir: str | os.PathLike[str] | None = None) -> dict[str, Kit]:
    """Packaged kits overridden by ``kits_dir``; re-read when a file there changes."""
    folder = str(kits_dir) if kits_dir else None
    signature: tuple[tuple[str, int, int], ...] = ()
    if folder:
        path = Path(folder)
        if not path.is_dir():
            raise KitError(f"KITS_DIR {folder}: field folder: not a directory")
        signature = tuple((p.name, (st := p.stat()).st_mtime_ns, st.st_size) for p in _files(path))
    return _load(folder, signature)


def current_kits(env: Mapping[str, str] | None = None) -> dict[str, Kit]:
    """The kits in force: packaged defaults overridden by ``$KITS_DIR``."""
    env = os.environ if env is None else env
    return load_kits(env.get("KITS_DIR") or None)


def packaged_kits() -> dict[str, Kit]:
    """The defaults shipped in the package (what the sandbox generator speaks)."""
    return load_kits(None)
