"""A small, complete month of stored rows for the report (every section has data)."""

from __future__ import annotations

import json
from datetime import date, timedelta
from typing import Any

import numpy as np
import polars as pl

from callminer_assets.analytics.report import ReportData
from callminer_assets.lib.models import CHANNELS
from callminer_assets.lib.tables import (
    AGENT_MONTHLY_FEATURES,
    AGENT_ROSTER,
    ATTRITION_RISK,
    COMPLIANCE_FINDINGS,
    INTERACTION_SCORES,
    Table,
    polars_schema,
)
from callminer_assets.transform.features import channel_consistency

MONTH = date(2025, 3, 1)
HOSTILE_QUOTE = '<script>alert("x")</script> & <img src=x onerror=alert(1)>'
RULES = ("recording_disclosure", "consent_obtained", "prohibited_phrases")


def frame(table: Table, rows: list[dict[str, Any]]) -> pl.DataFrame:
    schema = polars_schema(table)
    return pl.DataFrame(
        [{c: r.get(c) for c in schema.names()} for r in rows], schema=schema, orient="row"
    )


def sample(month: date = MONTH, n: int = 60, seed: int = 3) -> ReportData:
    """``n`` interactions over four channels and 12 agents; interaction 0 is the worst."""
    rng = np.random.default_rng(seed)
    scores, findings, interactions = [], [], []
    for i in range(n):
        iid = f"INT-{month:%Y%m}01-{i:05d}"
        day = month + timedelta(days=i % 28)
        channel = CHANNELS[i % len(CHANNELS)]
        agent = f"AG-{i % 12:04d}"
        passed = {r: bool(rng.random() > 0.2) for r in RULES}
        if i == 0:
            passed = dict.fromkeys(RULES, False)
        score = 0.0 if i == 0 else sum(passed.values()) / len(RULES)
        interactions.append({"interaction_date": day, "channel": channel})
        scores.append(
            {
                "interaction_id": iid,
                "interaction_date": day,
                "agent_id": agent,
                "channel": channel,
                "compliance_score": score,
                "empathy_score": float(rng.uniform(0.3, 0.9)),
                "resolution_achieved": bool(rng.random() > 0.3),
                "customer_effort": float(rng.uniform(0.1, 0.6)),
                "brand_alignment": float(rng.uniform(0.4, 0.9)),
            }
        )
        for rule, ok in passed.items():
            quote = None
            if not ok and rule == "prohibited_phrases":
                quote = HOSTILE_QUOTE if i == 0 else "This is your last chance"
            findings.append(
                {
                    "interaction_id": iid,
                    "interaction_date": day,
                    "agent_id": agent,
                    "rule": rule,
                    "passed": ok,
                    "quote": quote,
                    "utterance_index": 4 if quote else None,
                }
            )
    score_frame = frame(INTERACTION_SCORES, scores)
    agents = [f"AG-{k:04d}" for k in range(12)]
    risks = np.linspace(0.6, 0.02, len(agents))
    top = json.dumps(
        [
            {"feature": "frustration_frequency", "value": 0.57, "contribution": 0.3},
            {"feature": "interactions", "value": 7.0, "contribution": 0.1},
            {"feature": "mean_compliance", "value": 0.9, "contribution": -0.05},
        ]
    )
    return ReportData(
        month=month,
        interactions=pl.DataFrame(interactions),
        transcripts=pl.DataFrame(
            {"channel": ["voice", "voice", "chat"], "status": ["available", "pending", "available"]}
        ).with_columns(n=pl.Series([14, 1, 15])),
        quarantined=2,
        scores=score_frame,
        findings=frame(COMPLIANCE_FINDINGS, findings),
        consistency=channel_consistency(score_frame, month),
        features=frame(
            AGENT_MONTHLY_FEATURES,
            [
                {"agent_id": a, "month": month, "interactions": 5, "coaching_receptivity": 0.4}
                for a in agents
            ],
        ),
        risk=frame(
            ATTRITION_RISK,
            [
                {
                    "agent_id": a,
                    "month": month,
                    "risk": float(r),
                    "top_features": top,
                    "model_version": "20250410T000000Z-test",
                }
                for a, r in zip(agents, risks, strict=True)
            ],
        ),
        roster=frame(
            AGENT_ROSTER,
            [
                {"agent_id": a, "agent_name": f"Agent {a[-2:]}", "team": "Team Atlas"}
                for a in agents
            ],
        ),
    )
