"""Evaluations (one JSON row per brick) -> typed per-interaction scores and compliance findings.

Analysts should not have to parse JSON: ``semarize.evaluations`` is pivoted into one typed
row per interaction (``analytics.interaction_scores``) and one row per compliance rule and
evidence item (``analytics.compliance_findings``), so every failed TCPA item has its quote
and the utterance it points at. Pure: frames in, frames out.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

import polars as pl

from callminer_assets.lib.tables import COMPLIANCE_FINDINGS, INTERACTION_SCORES, polars_schema
from callminer_assets.transform.frames import clean_text

QA_KIT = "qa_compliance"
EQ_KIT = "experience_quality"
AW_KIT = "agent_wellbeing"

# (kit, brick) -> (column, polars dtype). Columns absent from a scored interaction stay NULL.
BRICK_COLUMNS: dict[tuple[str, str], tuple[str, pl.DataType]] = {
    (QA_KIT, "compliance_score"): ("compliance_score", pl.Float64()),
    (QA_KIT, "recording_disclosure"): ("recording_disclosure", pl.Boolean()),
    (QA_KIT, "consent_obtained"): ("consent_obtained", pl.Boolean()),
    (QA_KIT, "prohibited_phrases"): ("prohibited_phrases", pl.Int32()),
    (QA_KIT, "mini_miranda_given"): ("mini_miranda_given", pl.Boolean()),
    (EQ_KIT, "empathy_score"): ("empathy_score", pl.Float64()),
    (EQ_KIT, "resolution_achieved"): ("resolution_achieved", pl.Boolean()),
    (EQ_KIT, "customer_effort"): ("customer_effort", pl.Float64()),
    (EQ_KIT, "brand_alignment"): ("brand_alignment", pl.Float64()),
    (EQ_KIT, "escalation_risk"): ("escalation_risk", pl.Float64()),
    (EQ_KIT, "topic_primary"): ("topic_primary", pl.String()),
    (AW_KIT, "frustration_markers"): ("frustration_markers", pl.Int32()),
    (AW_KIT, "coaching_receptivity"): ("coaching_receptivity", pl.Float64()),
    (AW_KIT, "customer_escalation_requested"): ("customer_escalation_requested", pl.Boolean()),
}

# qa_compliance bricks that are not rules (the aggregate score is not a pass/fail item).
NON_RULE_BRICKS = frozenset({"compliance_score"})

SCORES_SCHEMA: dict[str, pl.DataType] = dict(polars_schema(INTERACTION_SCORES))

FINDINGS_SCHEMA: dict[str, pl.DataType] = dict(polars_schema(COMPLIANCE_FINDINGS))


def decode_json(value: Any) -> Any:
    """Warehouse JSON arrives as text (``'0.9'``, ``'true'``, ``'"billing"'``); decode it once."""
    if value is None:
        return None
    if isinstance(value, str):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


_INT32_MIN, _INT32_MAX = -(2**31), 2**31 - 1


def _typed(value: Any, dtype: pl.DataType) -> Any:
    """Coerce one decoded brick value to its column type; anything unusable becomes NULL."""
    if value is None:
        return None
    if dtype == pl.Boolean():
        return value if isinstance(value, bool) else None
    if isinstance(value, bool) or not isinstance(value, int | float):
        return clean_text(str(value)) if dtype == pl.String() else None
    if not math.isfinite(value):  # 1e400 parses as inf: no column can hold it
        return None
    if dtype == pl.Int32():
        return int(value) if _INT32_MIN <= value <= _INT32_MAX else None
    if dtype == pl.Float64():
        return float(value)
    return clean_text(str(value))


def latest_succeeded_runs(evaluations: pl.DataFrame) -> pl.DataFrame:
    """Brick rows of the latest succeeded run per interaction x kit.

    Failed runs (``brick`` NULL) carry no answers; an interaction re-evaluated after its
    transcript changed, or re-scored under a new kit version, counts with its newest run only
    (the older versions' rows stay in ``semarize.evaluations``).
    """
    ok = evaluations.filter((pl.col("status") == "succeeded") & pl.col("brick").is_not_null())
    if ok.is_empty():
        return ok
    runs = (
        ok.group_by("interaction_id", "kit_code", "run_id")
        .agg(pl.col("evaluated_at").max())
        .sort("evaluated_at", "run_id", nulls_last=False)
        .group_by("interaction_id", "kit_code", maintain_order=True)
        .last()
        .select("interaction_id", "kit_code", "run_id")
    )
    return ok.join(runs, on=["interaction_id", "kit_code", "run_id"], how="inner")


def _interaction_attrs(interactions: pl.DataFrame) -> dict[str, tuple[Any, Any]]:
    if interactions.is_empty():
        return {}
    cols = interactions.select("interaction_id", "agent_id", "channel").unique("interaction_id")
    return {r[0]: (r[1], r[2]) for r in cols.iter_rows()}


def _quality(row: Mapping[str, Any]) -> float | None:
    """Mean of compliance, empathy, resolution (0/1) and 1 - effort; NULL if any is missing."""
    parts = (
        row["compliance_score"],
        row["empathy_score"],
        row["resolution_achieved"],
        row["customer_effort"],
    )
    if any(p is None for p in parts):
        return None
    comp, emp, res, effort = parts
    return (float(comp) + float(emp) + (1.0 if res else 0.0) + (1.0 - float(effort))) / 4.0


def score_interactions(evaluations: pl.DataFrame, interactions: pl.DataFrame) -> pl.DataFrame:
    """One typed row per interaction with at least one succeeded run (INTERACTION_SCORES columns).

    ``interactions`` supplies ``agent_id`` and ``channel`` (NULL when the interaction is
    unknown); a kit that did not succeed leaves its columns NULL.
    """
    runs = latest_succeeded_runs(evaluations)
    attrs = _interaction_attrs(interactions)
    rows: dict[str, dict[str, Any]] = {}
    versions: dict[str, dict[str, str]] = {}
    for iid, idate, kit, version, brick, value in runs.select(
        "interaction_id", "interaction_date", "kit_code", "kit_version", "brick", "value"
    ).iter_rows():
        versions.setdefault(iid, {})[kit] = version
        row = rows.get(iid)
        if row is None:
            agent_id, channel = attrs.get(iid, (None, None))
            row = dict.fromkeys(SCORES_SCHEMA)
            row.update(
                interaction_id=iid, interaction_date=idate, agent_id=agent_id, channel=channel
            )
            rows[iid] = row
        target = BRICK_COLUMNS.get((kit, brick))
        if target is not None:
            col, dtype = target
            row[col] = _typed(decode_json(value), dtype)
    for iid, row in rows.items():
        row["quality_score"] = _quality(row)
        row["kit_versions"] = json.dumps(versions[iid], sort_keys=True)
    return pl.DataFrame(list(rows.values()), schema=SCORES_SCHEMA, orient="row").sort(
        "interaction_id"
    )


def rule_passed(value: Any) -> bool | None:
    """A boolean rule passes when true; a count rule (prohibited phrases) when zero.

    NULL means the rule does not apply (e.g. no mini-Miranda outside collections).
    """
    if value is None:
        return None
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return value == 0
    return None


def compliance_findings(evaluations: pl.DataFrame, interactions: pl.DataFrame) -> pl.DataFrame:
    """One row per interaction x qa_compliance rule x evidence item (COMPLIANCE_FINDINGS).

    A rule with no evidence still gets one row (quote NULL), so "which rules failed" is a
    plain ``WHERE NOT passed`` and every quote Semarize returned is reachable.
    """
    runs = latest_succeeded_runs(evaluations).filter(
        (pl.col("kit_code") == QA_KIT) & ~pl.col("brick").is_in(list(NON_RULE_BRICKS))
    )
    attrs = _interaction_attrs(interactions)
    out: list[tuple[Any, ...]] = []
    for iid, idate, brick, value, evidence in runs.select(
        "interaction_id", "interaction_date", "brick", "value", "evidence"
    ).iter_rows():
        agent_id = attrs.get(iid, (None, None))[0]
        passed = rule_passed(decode_json(value))
        items = decode_json(evidence) or []
        usable = [e for e in items if isinstance(e, dict)] if isinstance(items, list) else []
        if not usable:
            out.append((iid, idate, agent_id, brick, passed, None, None))
        for item in usable:
            idx = item.get("utterance_index")
            out.append(
                (
                    iid,
                    idate,
                    agent_id,
                    brick,
                    passed,
                    item.get("quote"),
                    # stored before quarantine screened it (evaluations): NULL, not a crash
                    _typed(idx, pl.Int32()),
                )
            )
    return pl.DataFrame(out, schema=FINDINGS_SCHEMA, orient="row").sort(
        "interaction_id", "rule", "utterance_index", nulls_last=True
    )
