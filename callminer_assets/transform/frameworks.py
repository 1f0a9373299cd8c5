"""Frameworks compared: one kit's versions with each other, and the team's kit with CallMiner's.

``kit_version_diff``: per interaction and rule, the verdicts of the two latest versions of a
kit, where they differ (what a kit change changed). ``framework_coverage``: per rule of the
team's compliance kit, how many of the interactions it fails CallMiner's own scoring flags too
(the kit file's ``callminer_flags`` says what counts as a CallMiner flag). Pure.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping
from typing import Any

import polars as pl

from callminer_assets.lib.tables import FRAMEWORK_COVERAGE, KIT_VERSION_DIFF, polars_schema
from callminer_assets.transform.scores import decode_json

ANY_RULE = "(any rule)"


def _versions(ok: pl.DataFrame) -> pl.DataFrame:
    """Per interaction x kit x evaluator: the latest run of each version, newest version last."""
    return (
        ok.group_by("interaction_id", "kit_code", "evaluator", "kit_version", "run_id")
        .agg(pl.col("evaluated_at").max())
        .sort("evaluated_at", "run_id")
        .group_by("interaction_id", "kit_code", "evaluator", "kit_version", maintain_order=True)
        .last()
    )


def kit_version_diff(evaluations: pl.DataFrame, interactions: pl.DataFrame) -> pl.DataFrame:
    """Rows (KIT_VERSION_DIFF) where a rule's verdict differs between a kit's two latest versions."""
    schema = polars_schema(KIT_VERSION_DIFF)
    ok = evaluations.filter((pl.col("status") == "succeeded") & pl.col("brick").is_not_null())
    if ok.is_empty():
        return pl.DataFrame(schema=schema)
    runs = _versions(ok)
    agents = dict(interactions.select("interaction_id", "agent_id").iter_rows())
    values = {
        (iid, run, brick): value
        for iid, run, brick, value in ok.select(
            "interaction_id", "run_id", "brick", "value"
        ).iter_rows()
    }
    dates = dict(ok.select("interaction_id", "interaction_date").iter_rows())
    out: list[dict[str, Any]] = []
    for (iid, kit, evaluator), group in runs.group_by(
        "interaction_id", "kit_code", "evaluator", maintain_order=True
    ):
        if group.height < 2:
            continue
        (old_v, old_run), (new_v, new_run) = group.select("kit_version", "run_id").rows()[-2:]
        bricks = {b for (i, r, b) in values if i == iid and r in (old_run, new_run)}
        for brick in sorted(bricks):
            before = values.get((iid, old_run, brick))
            after = values.get((iid, new_run, brick))
            if decode_json(before) == decode_json(after):
                continue
            out.append(
                {
                    "interaction_id": iid,
                    "interaction_date": dates[iid],
                    "agent_id": agents.get(iid),
                    "kit_code": kit,
                    "evaluator": evaluator,
                    "rule": brick,
                    "from_version": old_v,
                    "to_version": new_v,
                    "from_value": before,
                    "to_value": after,
                }
            )
    return pl.DataFrame(out, schema=schema, orient="row").sort("interaction_id", "kit_code", "rule")


def callminer_flagged(
    native_scores: pl.DataFrame,
    native_categories: pl.DataFrame,
    scores_below: Mapping[str, float],
    categories: Collection[str],
) -> set[str]:
    """Interactions CallMiner's own scoring flags: a named score below its threshold, or a hit
    of a named category (names compared case-insensitively)."""
    below = {k.casefold(): v for k, v in scores_below.items()}
    cats = {c.casefold() for c in categories}
    flagged = {
        iid
        for iid, name, score in native_scores.select(
            "interaction_id", "score_name", "score"
        ).iter_rows()
        if name is not None
        and score is not None
        and name.casefold() in below
        and score < below[name.casefold()]
    }
    flagged |= {
        iid
        for iid, name in native_categories.select("interaction_id", "category_name").iter_rows()
        if name is not None and name.casefold() in cats
    }
    return flagged


def framework_coverage(
    findings: pl.DataFrame,
    native_scores: pl.DataFrame,
    native_categories: pl.DataFrame,
    kit_code: str,
    kit_versions: Mapping[str, str],
    scores_below: Mapping[str, float],
    categories: Collection[str],
) -> pl.DataFrame:
    """Per day x rule (FRAMEWORK_COVERAGE), over interactions with both the kit's verdicts and
    CallMiner's native data: how many fail the rule, how many CallMiner flags, how many both.

    ``findings`` are ``analytics.compliance_findings`` rows; ``kit_versions`` maps each
    interaction to the kit version its findings came from.
    """
    schema = polars_schema(FRAMEWORK_COVERAGE)
    native = set(native_scores["interaction_id"].to_list()) | set(
        native_categories["interaction_id"].to_list()
    )
    rows = findings.filter(pl.col("interaction_id").is_in(list(native))).unique(
        ["interaction_id", "rule"]
    )
    if rows.is_empty():
        return pl.DataFrame(schema=schema)
    flagged = callminer_flagged(native_scores, native_categories, scores_below, categories)
    out: list[dict[str, Any]] = []
    for (day,), frame in rows.group_by("interaction_date", maintain_order=True):
        evaluated = set(frame["interaction_id"].to_list())
        failing: dict[str, set[str]] = {}
        for iid, rule, passed in frame.select("interaction_id", "rule", "passed").iter_rows():
            failing.setdefault(rule, set())
            if passed is False:
                failing[rule].add(iid)
                failing.setdefault(ANY_RULE, set()).add(iid)
        failing.setdefault(ANY_RULE, set())
        versions = sorted({kit_versions.get(i) or "" for i in evaluated} - {""})
        cm = flagged & evaluated
        for rule, ids in sorted(failing.items()):
            both = len(ids & cm)
            out.append(
                {
                    "interaction_date": day,
                    "kit_code": kit_code,
                    "kit_versions": json.dumps(versions),
                    "rule": rule,
                    "interactions": len(evaluated),
                    "kit_flags": len(ids),
                    "callminer_flags": len(cm),
                    "flagged_by_both": both,
                    "coverage": both / len(ids) if ids else None,
                }
            )
    return pl.DataFrame(out, schema=schema, orient="row").sort("interaction_date", "rule")
