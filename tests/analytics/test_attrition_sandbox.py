"""The attrition model on the sandbox's own data: real signal, and chance with shuffled labels.

End to end without the network: the generator's interactions and transcripts, evaluated by
the project's kits (what the sandbox's Semarize returns), typed by ``transform.scores``,
aggregated by ``transform.features``, trained by ``transform.attrition`` against the HR
roster as the sandbox exports it. Half the default volume keeps it fast.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl

from callminer_assets.analytics.roster import load_roster
from callminer_assets.kits import evaluate
from callminer_assets.sandbox.generator import Generator, transcript_text
from callminer_assets.transform.attrition import train_attrition_model
from callminer_assets.transform.features import add_months, agent_monthly_features
from callminer_assets.transform.scores import AW_KIT, EQ_KIT, QA_KIT, score_interactions

START, MONTHS, SEED, PER_DAY = date(2025, 1, 1), 6, 7, 30
AS_OF = date(2026, 6, 30)  # the roster export the model is labelled against


def sandbox_scores(g: Generator) -> pl.DataFrame:
    evals: list[dict[str, object]] = []
    inter: list[dict[str, object]] = []
    at = datetime(2026, 1, 1, tzinfo=UTC)
    day = START
    while day < add_months(START, MONTHS):
        records, specs = g.day(day)
        for _, rec in records:
            spec = specs[rec["id"]]
            inter.append(
                {
                    "interaction_id": spec.interaction_id,
                    "agent_id": rec.get("agentId"),
                    "channel": spec.channel,
                }
            )
            text = transcript_text(g._transcript(spec, False), spec.mailbox)
            meta = {
                "interaction_id": spec.interaction_id,
                "channel": spec.channel,
                "campaign": spec.campaign,
            }
            for kit in (QA_KIT, EQ_KIT, AW_KIT):
                for brick, b in evaluate(kit, text, meta).items():
                    evals.append(
                        {
                            "interaction_id": spec.interaction_id,
                            "interaction_date": spec.start.date(),
                            "kit_code": kit,
                            "kit_version": "v1",
                            "run_id": f"{spec.interaction_id}-{kit}",
                            "status": "succeeded",
                            "evaluated_at": at,
                            "brick": brick,
                            "value": json.dumps(b.value),
                            "evidence": json.dumps(list(b.evidence)),
                        }
                    )
        day += timedelta(days=1)
    return score_interactions(pl.DataFrame(evals), pl.DataFrame(inter))


def test_sandbox_attrition_signal_and_shuffled_control(tmp_path: Path) -> None:
    g = Generator(SEED, per_day=PER_DAY)
    scores = sandbox_scores(g)
    features = pl.concat(
        [agent_monthly_features(scores, add_months(START, k)) for k in range(MONTHS)]
    )
    roster, rejects = load_roster(g.write_roster_csv(tmp_path / "agent_roster.csv", as_of=AS_OF))
    assert rejects.is_empty()

    trained = train_attrition_model(features, roster, AS_OF)
    m = trained.metrics
    assert m["train_months"] == "2025-01..2025-04" and m["test_months"] == "2025-05..2025-06"
    assert m["n_test"] > 200 and 0.04 < m["base_rate"] < 0.2, m  # several leavers a month
    assert m["roc_auc"] >= 0.75, m
    assert m["n_test_positives"] == round(m["base_rate"] * m["n_test"])
    assert m["roc_auc_ci_low"] < m["roc_auc"] < m["roc_auc_ci_high"], m
    assert m["permutations"] == 30 and m["permutation_p_value"] < 0.05, m
    assert abs(m["permutation_auc_mean"] - 0.5) < 0.1 and m["permutation_auc_sd"] > 0, m
    print("sandbox model:", m["conclusion"])

    shuffled = [
        train_attrition_model(
            features, roster, AS_OF, shuffle_labels_seed=s, permutations=0
        ).metrics["roc_auc"]
        for s in range(6)
    ]
    assert abs(float(np.mean(shuffled)) - 0.5) < 0.1, shuffled
    assert max(shuffled) < m["roc_auc"], shuffled
    # trained on shuffled labels, the model's own permutation test finds nothing
    control = train_attrition_model(features, roster, AS_OF, shuffle_labels_seed=0).metrics
    assert control["permutation_p_value"] > 0.2, control
    assert control["conclusion"].startswith("too small to conclude"), control["conclusion"]
