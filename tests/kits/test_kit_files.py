"""Kits as data: loading, KITS_DIR overrides, normalised matching, and one-line errors."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from callminer_assets.kits import KitError, current_kits, evaluate, load_kits, packaged_kits
from callminer_assets.kits.loader import PACKAGED_DIR, normalise

CALL = "\n".join(
    [
        "customer: Hi",
        "agent: Thank you for calling. THIS call -- may be   RECORDED!",
        "customer: I'd like to know about my bill.",
        "agent: Do you consent to this being recorded?",
        "customer: Yes, I agree.",
        "agent: Honestly, you have NO choice.",
    ]
)


def _copy_defaults(tmp_path: Path) -> Path:
    folder = tmp_path / "kits"
    shutil.copytree(PACKAGED_DIR, folder)
    return folder


def _edit(path: Path, change: dict[str, object]) -> None:
    raw = yaml.safe_load(path.read_text())
    raw.update(change)
    path.write_text(yaml.safe_dump(raw, sort_keys=False))


def test_normalise_maps_back_to_the_original_text() -> None:
    norm, where = normalise("  Yes,  I'm -- FINE. ")
    assert norm == "yes i m fine"
    assert "  Yes,  I'm -- FINE. "[where[0] : where[-1] + 1] == "Yes,  I'm -- FINE"


def test_matching_ignores_case_punctuation_and_whitespace_and_quotes_the_original() -> None:
    bricks = evaluate("qa_compliance", CALL, {"campaign": "retention"})
    assert bricks["recording_disclosure"].evidence == (
        {"quote": "THIS call -- may be   RECORDED", "utterance_index": 1},
    )
    assert bricks["disclosure_before_first_customer_turn"].value is True  # "Hi" is a greeting
    assert bricks["prohibited_phrases"].value == 1
    assert bricks["prohibited_phrases"].evidence[0]["quote"] == "you have NO choice"
    assert bricks["consent_obtained"].value is False  # "yes, I agree" is not in the kit
    assert bricks["mini_miranda_given"].value is None  # not a collections call


def test_kits_dir_overrides_a_packaged_kit_with_regional_consent_and_patterns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = _copy_defaults(tmp_path)
    path = folder / "qa_compliance.yaml"
    raw = yaml.safe_load(path.read_text())
    raw["version"] = "TCPA-v2026.2"
    consent = next(r for r in raw["rules"] if r["brick"] == "consent_obtained")
    consent["by_region"] = {"CA": {"request": ["do you consent to"], "response": ["yes, i agree"]}}
    prohibited = next(r for r in raw["rules"] if r["brick"] == "prohibited_phrases")
    prohibited["patterns"] = [r"\bhonestly\b"]
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    monkeypatch.setenv("KITS_DIR", str(folder))
    kits = current_kits()
    assert kits["qa_compliance"].version == "TCPA-v2026.2"
    assert kits["experience_quality"].version == packaged_kits()["experience_quality"].version
    california = evaluate("qa_compliance", CALL, {"region": "ca"})
    elsewhere = evaluate("qa_compliance", CALL, {"region": "NY"})
    assert california["consent_obtained"].value is True
    assert [e["utterance_index"] for e in california["consent_obtained"].evidence] == [3, 4]
    assert elsewhere["consent_obtained"].value is False
    assert california["prohibited_phrases"].value == 2  # the phrase and the pattern
    # weights 0.35 + 0.15 + 0.25 (no mini-Miranda outside collections), 0.2 off per phrase
    assert california["compliance_score"].value == 0.6
    assert elsewhere["compliance_score"].value == round(0.5 / 0.75 - 0.4, 4)


@pytest.mark.parametrize(
    ("change", "rule", "problem"),
    [
        ({"version": ""}, "field version", "'version' must be a non-empty string"),
        ({"engine": "magic"}, "field engine", "must be one of"),
        (
            {"rules": [{"brick": "prohibited_phrases", "type": "count", "phrases": [3]}]},
            "rule prohibited_phrases",
            "'phrases' must be a list of strings",
        ),
        (
            {"rules": [{"brick": "x", "type": "phrase", "phrases": ["a"], "patterns": ["("]}]},
            "rule x",
            "pattern '(' does not compile",
        ),
        (
            {"rules": [{"brick": "early", "type": "before", "of": "nothing"}]},
            "rule early",
            "'of' must name an earlier phrase rule",
        ),
    ],
)
def test_a_malformed_kit_is_one_line_naming_file_rule_and_problem(
    tmp_path: Path, change: dict[str, object], rule: str, problem: str
) -> None:
    folder = _copy_defaults(tmp_path)
    path = folder / "qa_compliance.yaml"
    _edit(path, change)
    with pytest.raises(KitError) as info:
        load_kits(folder)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"kit file {path}: {rule}: ")
    assert problem in message


def test_broken_yaml_and_duplicate_codes_are_one_line(tmp_path: Path) -> None:
    folder = tmp_path / "kits"
    folder.mkdir()
    (folder / "bad.yaml").write_text("code: [unclosed\n  version: x")
    with pytest.raises(KitError, match=r"^kit file .*bad\.yaml: file: not readable YAML") as info:
        load_kits(folder)
    assert "\n" not in str(info.value)
    (folder / "bad.yaml").unlink()
    shutil.copy(PACKAGED_DIR / "agent_wellbeing.yaml", folder / "a.yaml")
    shutil.copy(PACKAGED_DIR / "agent_wellbeing.yaml", folder / "b.yaml")
    with pytest.raises(KitError, match=r"b\.yaml: field code: 'agent_wellbeing' is also defined"):
        load_kits(folder)


def test_an_engine_kit_must_name_the_phrase_lists_its_engine_reads(tmp_path: Path) -> None:
    folder = _copy_defaults(tmp_path)
    path = folder / "agent_wellbeing.yaml"
    raw = yaml.safe_load(path.read_text())
    del raw["phrases"]["receptive"]
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(KitError, match=r"agent_wellbeing\.yaml: phrases receptive: missing"):
        load_kits(folder)
