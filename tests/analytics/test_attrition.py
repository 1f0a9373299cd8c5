"""Attrition labels, the time-ordered (purged) split, signal vs. shuffled-label control."""

from __future__ import annotations

import json
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from callminer_assets.lib.tables import ATTRITION_MODEL_METRICS, ATTRITION_RISK
from callminer_assets.transform.attrition import (
    FEATURE_COLUMNS,
    NotEnoughHistory,
    conclusion,
    label,
    latest_model_path,
    load_model,
    metrics_frame,
    model_frame,
    save_model,
    score_agents,
    time_split,
    train_attrition_model,
)
from callminer_assets.transform.features import FEATURES_SCHEMA, add_months, month_end

START = date(2024, 1, 1)
N_MONTHS = 18


def synthetic(n_agents: int = 160, seed: int = 7) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Agents whose frustration rises and quality falls in the 3 months before they leave."""
    rng = np.random.default_rng(seed)
    roster, feats = [], []
    end = add_months(START, N_MONTHS)
    for i in range(n_agents):
        hire = START - timedelta(days=int(rng.integers(30, 900)))
        leave = None
        if rng.random() < 0.45:
            leave = START + timedelta(days=int(rng.integers(40, (end - START).days + 150)))
        roster.append((f"AG{i:03d}", f"Agent {i}", "t1", hire, leave))
        base_frus = rng.uniform(0.05, 0.25)
        for k in range(N_MONTHS):
            m = add_months(START, k)
            if leave is not None and leave < m:
                break
            days_to_leave = (leave - month_end(m)).days if leave else 10_000
            stress = 1.0 if 0 < days_to_leave <= 90 else 0.0
            n = int(rng.integers(5, 40))
            feats.append(
                {
                    "agent_id": f"AG{i:03d}",
                    "month": m,
                    "interactions": n,
                    "low_volume": n < 10,
                    "frustration_frequency": float(
                        np.clip(base_frus + 0.3 * stress + rng.normal(0, 0.05), 0, 1)
                    ),
                    "coaching_receptivity": float(
                        np.clip(0.6 - 0.2 * stress + rng.normal(0, 0.1), 0, 1)
                    ),
                    "performance_trend_slope": float(-0.01 * stress + rng.normal(0, 0.004)),
                    "customer_escalation_rate": float(rng.uniform(0, 0.2)),
                    "mean_compliance": float(rng.uniform(0.7, 1.0)),
                    "mean_empathy": float(rng.uniform(0.4, 0.9)),
                    "mean_resolution": float(rng.uniform(0.4, 0.9)),
                    "mean_effort": float(rng.uniform(0.2, 0.6)),
                    "share_voice": 0.6,
                    "share_chat": 0.2,
                    "share_email": 0.15,
                    "share_video": 0.05,
                }
            )
    features = pl.DataFrame(feats, schema=FEATURES_SCHEMA, orient="row")
    roster_df = pl.DataFrame(
        roster,
        schema={
            "agent_id": pl.String,
            "agent_name": pl.String,
            "team": pl.String,
            "hire_date": pl.Date,
            "leave_date": pl.Date,
        },
        orient="row",
    )
    return features, roster_df


OBSERVED = month_end(add_months(START, N_MONTHS - 1))  # data ends with the last month


def test_label_hand_case() -> None:
    features = pl.DataFrame(
        [
            {"agent_id": "X", "month": m, "interactions": 10, "low_volume": False}
            for m in (date(2024, 12, 1), date(2025, 1, 1), date(2025, 3, 1), date(2025, 4, 1))
        ]
    )
    roster = pl.DataFrame(
        {"agent_id": ["X"], "hire_date": [date(2020, 1, 1)], "leave_date": [date(2025, 4, 15)]}
    )
    lab = label(
        model_frame(
            features.with_columns(
                **{
                    c: pl.lit(None, dtype=pl.Float64)
                    for c in FEATURES_SCHEMA
                    if c not in features.columns
                }
            ),
            roster,
        ),
        observed_until=date(2025, 12, 31),
    )
    got = dict(zip(lab["month"].to_list(), lab["label"].to_list(), strict=True))
    # Dec 31 + 90 d = Mar 31 < Apr 15 -> 0; Jan 31 + 90 d = May 1 >= Apr 15 -> 1; March -> 1;
    # April: already gone by Apr 30 -> not a row at all.
    assert got == {date(2024, 12, 1): 0, date(2025, 1, 1): 1, date(2025, 3, 1): 1}
    # a horizon not yet observable is not labelled (unknown, not negative)
    lab2 = label(
        model_frame(
            features.with_columns(
                **{
                    c: pl.lit(None, dtype=pl.Float64)
                    for c in FEATURES_SCHEMA
                    if c not in features.columns
                }
            ),
            roster.with_columns(leave_date=pl.lit(None, dtype=pl.Date)),
        ),
        observed_until=date(2025, 5, 1),
    )
    # Jan 31 + 90 d = May 1 is observable on May 1; Mar 31 + 90 d = Jun 29 is not
    assert lab2["month"].to_list() == [date(2024, 12, 1), date(2025, 1, 1)]


def test_time_split_has_no_leakage() -> None:
    features, roster = synthetic()
    labelled = label(model_frame(features, roster), OBSERVED)
    # the last 3 months cannot be labelled yet
    assert labelled["month"].max() == add_months(START, N_MONTHS - 4)
    split = time_split(labelled, test_fraction=0.3, purge=True)
    assert split.purged
    assert time_split(labelled, test_fraction=0.3).purged  # auto: enough history to purge
    first_test = min(split.test_months)
    assert max(split.train_months) < first_test
    assert max(split.train["month"].to_list()) < min(split.test["month"].to_list())
    for m in split.train_months:  # purged: no training label looks into the test period
        assert month_end(m) + timedelta(days=90) < first_test
    assert set(split.train["month"]).isdisjoint(set(split.test["month"]))
    unpurged = time_split(labelled, test_fraction=0.3, purge=False)
    assert len(unpurged.train_months) > len(split.train_months)
    # a short history (3 labelled months) cannot be purged: auto falls back, still time-ordered
    short = labelled.filter(pl.col("month") < add_months(START, 3))
    fallback = time_split(short, test_fraction=0.3)
    assert not fallback.purged
    assert fallback.train_months == [START, add_months(START, 1)]
    assert fallback.test_months == [add_months(START, 2)]
    with pytest.raises(NotEnoughHistory):
        time_split(short, test_fraction=0.3, purge=True)
    with pytest.raises(NotEnoughHistory):
        time_split(labelled.filter(pl.col("month") == START))


def test_signal_is_learned_and_shuffled_labels_fall_to_chance(tmp_path: Path) -> None:
    features, roster = synthetic()
    trained = train_attrition_model(features, roster, OBSERVED)
    m = trained.metrics
    assert m["roc_auc"] >= 0.75, m
    assert 0 < m["base_rate"] < 1 and m["n_train"] > 0 and m["n_test"] > 0
    assert m["train_months"] < m["test_months"]
    aucs = [
        train_attrition_model(
            features, roster, OBSERVED, shuffle_labels_seed=s, permutations=0
        ).metrics["roc_auc"]
        for s in (1, 2, 3, 4, 5)
    ]
    assert abs(float(np.mean(aucs)) - 0.5) < 0.1, aucs

    mf = metrics_frame(trained)
    assert mf.columns == ATTRITION_MODEL_METRICS.column_names and mf.height == 1

    path = save_model(trained, tmp_path / "models")
    assert path.name == f"attrition-{trained.version}.joblib"
    assert latest_model_path(tmp_path / "models") == path
    loaded = load_model(path)

    risk = score_agents(loaded, features, roster, as_of=OBSERVED)
    assert risk.columns == ATTRITION_RISK.column_names
    latest = add_months(START, N_MONTHS - 1)
    active = features.join(roster, on="agent_id").filter(
        (pl.col("month") == latest)
        & (pl.col("leave_date").is_null() | (pl.col("leave_date") > month_end(latest)))
    )
    assert sorted(risk["agent_id"]) == sorted(active["agent_id"])
    # a roster exported later knows more leavers: who left by its as-of date is not scored
    later = OBSERVED + timedelta(days=60)
    left_since = active.filter(pl.col("leave_date") <= later)["agent_id"].to_list()
    assert left_since  # the synthetic roster has leavers after the data ends
    risk_later = score_agents(loaded, features, roster, as_of=later)
    assert sorted(risk_later["agent_id"]) == sorted(set(active["agent_id"]) - set(left_since))
    assert risk["risk"].is_between(0, 1).all()
    top = json.loads(risk["top_features"][0])
    assert len(top) == 3 and {t["feature"] for t in top} <= set(FEATURE_COLUMNS)
    assert set(risk["model_version"]) == {trained.version}


def test_single_training_month_with_unobserved_change_columns_trains() -> None:
    features, roster = synthetic()
    short = features.filter(pl.col("month") < add_months(START, 6))
    observed = month_end(add_months(START, 5))
    # 3 labelled months; 2 held out -> one training month, where the diffs are all NULL
    trained = train_attrition_model(short, roster, observed, test_fraction=0.6)
    assert trained.metrics["train_months"] == "2024-01..2024-01"
    assert not trained.metrics["purged"]


def test_agents_missing_from_the_roster_are_not_labelled_stayed() -> None:
    features, roster = synthetic()
    # HR's file lacks a fifth of the agents, leavers among them
    missing = roster["agent_id"].gather_every(5).to_list()
    partial = roster.filter(~pl.col("agent_id").is_in(missing))
    trained = train_attrition_model(features, partial, OBSERVED)
    rostered_only = train_attrition_model(
        features.filter(~pl.col("agent_id").is_in(missing)), partial, OBSERVED
    )
    dropped = features.filter(pl.col("agent_id").is_in(missing)).height
    assert dropped > 0 and trained.metrics["n_unrostered_dropped"] == dropped
    # same labelled rows as if they were never there (version ends with the data fingerprint)
    assert trained.version.split("-")[-1] == rostered_only.version.split("-")[-1]
    for k in ("n_train", "n_test", "base_rate", "train_months", "test_months"):
        assert trained.metrics[k] == rostered_only.metrics[k], k
    assert rostered_only.metrics["n_unrostered_dropped"] == 0
    assert "n_unrostered_dropped" not in metrics_frame(trained).columns


def test_the_conclusion_says_plainly_when_the_test_set_is_too_small() -> None:
    m = {
        "roc_auc": 0.64,
        "n_test_positives": 19,
        "roc_auc_ci_low": 0.49,
        "roc_auc_ci_high": 0.78,
        "permutations": 30,
        "permutation_auc_mean": 0.535,
        "permutation_auc_sd": 0.1,
        "permutation_p_value": 0.16,
    }
    assert conclusion(m) == (
        "too small to conclude: only 19 positives in the test set (< 30); the AUC's 95 % "
        "interval includes 0.5; permutation p = 0.16; AUC 0.640 (95 % CI 0.490..0.780), "
        "shuffled-label AUC 0.535 ± 0.100 over 30 shuffles, p = 0.160"
    )
    strong = {**m, "n_test_positives": 40, "roc_auc_ci_low": 0.7, "permutation_p_value": 1 / 31}
    assert conclusion(strong).startswith("better than chance: AUC 0.640")
    assert conclusion({**m, "roc_auc": None}).startswith("no conclusion")
