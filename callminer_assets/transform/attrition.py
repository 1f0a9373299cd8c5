"""Attrition model: "does this agent leave within 90 days after the month?" from monthly features.

Honesty rules, because a leaky model looks great and is useless:
- the label for month M is observable only once ``end(M) + 90 days`` is on or before the
  roster's as-of date: the HR roster is a current file that knows every leave up to the day it
  was exported (``roster_as_of``, default today in UTC), whatever window the interaction data
  covers. Younger months are not labelled (unknown, not negative) and never trained on;
- agents who already left by the end of M are not "at risk" in M and are dropped;
- agent-months of agents missing from the roster (no hire date) are dropped from training:
  without a roster entry "no leave date" means "unknown", not "stayed". How many were dropped
  is reported (``TrainedModel.metrics["n_unrostered_dropped"]``, the asset's metadata);
- the split is by time: every test month is strictly after every train month, and training
  months whose 90-day label window reaches into the test period are purged, so no leave event
  seen in the test period informs training;
- explanations are one-at-a-time "median replacement" contributions: the change in predicted
  risk when a feature is replaced by its training median. Not SHAP, not additive, but
  simple to explain and true to the model.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import polars as pl
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import average_precision_score, roc_auc_score
from threadpoolctl import threadpool_limits

from callminer_assets.lib.models import CHANNELS
from callminer_assets.lib.tables import ATTRITION_MODEL_METRICS, ATTRITION_RISK, polars_schema
from callminer_assets.transform.features import add_months, month_end

HORIZON_DAYS = 90
PERMUTATIONS = 30
"""Label shuffles (each a refit) behind the permutation p-value; 1/31 is its smallest value."""
BOOTSTRAP = 1000
"""Resamples of the test set behind the ROC AUC's 95 % interval."""
MIN_TEST_POSITIVES = 30
"""Fewer leavers than this in the test set and one AUC says little: the model says so."""


def _single_thread() -> threadpool_limits:
    """OpenMP threads for a few hundred rows cost more than they save, and on a busy machine
    (Dagster running other steps) their spin-waiting turns a 50 ms fit into seconds."""
    return threadpool_limits(limits=1, user_api="openmp")


FEATURE_COLUMNS: tuple[str, ...] = (
    "interactions",
    "low_volume",
    "frustration_frequency",
    "coaching_receptivity",
    "performance_trend_slope",
    "customer_escalation_rate",
    "mean_compliance",
    "mean_empathy",
    "mean_resolution",
    "mean_effort",
    *(f"share_{c}" for c in CHANNELS),
    # derived here, not stored in the features table:
    "tenure_days",
    "frustration_change",
    "receptivity_change",
)

METRICS_SCHEMA: dict[str, pl.DataType] = dict(polars_schema(ATTRITION_MODEL_METRICS))

RISK_SCHEMA: dict[str, pl.DataType] = dict(polars_schema(ATTRITION_RISK))


class NotEnoughHistory(ValueError):
    """Too few labelled months (or one class only) to train and test honestly."""


def model_frame(features: pl.DataFrame, roster: pl.DataFrame) -> pl.DataFrame:
    """Features + roster dates + derived columns, one row per agent-month, ready for X.

    Derived: ``tenure_days`` at month end, and month-over-month changes of frustration
    frequency and coaching receptivity (NULL for an agent's first month).
    """
    dates = roster.select(
        "agent_id", pl.col("hire_date").cast(pl.Date), pl.col("leave_date").cast(pl.Date)
    )
    return (
        features.join(dates, on="agent_id", how="left")
        .sort("agent_id", "month")
        .with_columns(
            month_end=pl.col("month").dt.month_end(),
            low_volume=pl.col("low_volume").cast(pl.Float64),
        )
        .with_columns(
            tenure_days=(pl.col("month_end") - pl.col("hire_date"))
            .dt.total_days()
            .cast(pl.Float64),
            frustration_change=pl.col("frustration_frequency").diff().over("agent_id"),
            receptivity_change=pl.col("coaching_receptivity").diff().over("agent_id"),
        )
    )


def roster_as_of(value: date | str | None = None) -> date:
    """The day the HR roster describes: ``value`` (a date or ISO text), else today in UTC."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return datetime.now(UTC).date()
    if isinstance(value, str):
        return date.fromisoformat(value.strip()[:10])
    return value


def label(
    frame: pl.DataFrame, observed_until: date, horizon_days: int = HORIZON_DAYS
) -> pl.DataFrame:
    """Add ``label`` (leaves in (month end, month end + horizon]) on observable, active rows.

    ``observed_until`` is the roster's as-of date: leaves up to that day are known. Rows whose
    horizon ends after it are dropped (their label is unknown, not negative); rows of agents
    who left on or before the month end are dropped (already gone).
    """
    horizon = pl.col("month_end") + pl.duration(days=horizon_days)
    return (
        frame.filter(horizon <= pl.lit(observed_until, dtype=pl.Date))
        .filter(pl.col("leave_date").is_null() | (pl.col("leave_date") > pl.col("month_end")))
        .with_columns(
            label=(pl.col("leave_date").is_not_null() & (pl.col("leave_date") <= horizon)).cast(
                pl.Int8
            )
        )
    )


@dataclass(frozen=True)
class Split:
    train: pl.DataFrame
    test: pl.DataFrame
    train_months: list[date]
    test_months: list[date]
    purged: bool


def time_split(
    labelled: pl.DataFrame,
    test_fraction: float = 0.3,
    horizon_days: int = HORIZON_DAYS,
    purge: bool | None = None,
) -> Split:
    """Last ``test_fraction`` of the labelled months (at least one) are the test set.

    Every test month is strictly after every train month. With ``purge``, training months
    whose label window (month end + horizon) reaches the first test month are dropped too,
    so a leave event inside the test period never labels a training row. ``purge=None``
    purges when that still leaves training data with both classes, and otherwise falls back
    to the plain time split (short histories, e.g. six months of sandbox data); the choice
    is reported in ``Split.purged`` and the metrics table.
    """
    months = sorted(labelled["month"].unique().to_list())
    if len(months) < 2:
        raise NotEnoughHistory(f"need >= 2 labelled months, have {len(months)}")
    n_test = max(1, math.ceil(len(months) * test_fraction))
    test_months = months[-n_test:]
    first_test = test_months[0]
    plain = months[:-n_test]
    purged_months = [m for m in plain if month_end(m) + timedelta(days=horizon_days) < first_test]
    if purge is None:
        usable = labelled.filter(pl.col("month").is_in(purged_months))["label"].n_unique()
        purge = bool(purged_months) and usable == 2
    train_months = purged_months if purge else plain
    if not train_months:
        raise NotEnoughHistory(
            f"no training month left before {first_test} after purging the {horizon_days}-day "
            f"label window; labelled months: {months[0]}..{months[-1]}"
        )
    train = labelled.filter(pl.col("month").is_in(train_months))
    test = labelled.filter(pl.col("month").is_in(test_months))
    return Split(train, test, train_months, test_months, purge)


def matrix(frame: pl.DataFrame) -> np.ndarray:
    """X as float64 with NaN for missing values (the model handles NaN natively)."""
    return frame.select(pl.col(c).cast(pl.Float64) for c in FEATURE_COLUMNS).to_numpy()


@dataclass
class TrainedModel:
    """What is saved with joblib: the estimator plus what is needed to use it honestly."""

    version: str
    model: HistGradientBoostingClassifier
    feature_columns: tuple[str, ...]
    medians: dict[str, float]
    metrics: dict[str, Any] = field(default_factory=dict)


def _nanmedian(values: np.ndarray) -> float:
    """Median ignoring NaN; 0.0 for an all-missing column (the model never saw a value)."""
    finite = values[~np.isnan(values)]
    return float(np.median(finite)) if finite.size else 0.0


def _month_range(months: list[date]) -> str:
    return f"{months[0]:%Y-%m}..{months[-1]:%Y-%m}" if months else ""


def _fingerprint(frame: pl.DataFrame) -> str:
    payload = frame.select("agent_id", "month", "label").sort("agent_id", "month").write_csv()
    return hashlib.sha256(payload.encode()).hexdigest()[:8]


def inputs_fingerprint(
    features: pl.DataFrame, roster: pl.DataFrame, as_of: date | None = None
) -> str:
    """A hash of exactly what training would learn from (every labelled row, features and
    label): equal fingerprints train the same model, so it need not be trained again."""
    frame = model_frame(features, roster)
    labelled = label(frame.filter(pl.col("hire_date").is_not_null()), roster_as_of(as_of))
    payload = labelled.sort("agent_id", "month").write_csv()
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def train_attrition_model(
    features: pl.DataFrame,
    roster: pl.DataFrame,
    as_of: date | None = None,
    *,
    test_fraction: float = 0.3,
    purge: bool | None = None,
    shuffle_labels_seed: int | None = None,
    permutations: int = PERMUTATIONS,
    now: datetime | None = None,
) -> TrainedModel:
    """Label, split by time, fit a histogram gradient-boosting classifier, score the test set.

    ``as_of`` is the roster's as-of date (default: today, UTC), which decides which months
    have an observable label. ``shuffle_labels_seed`` permutes the training labels: the negative control whose AUC
    must fall to chance (used by the tests; never in production). ``permutations`` label
    shuffles (refits) give the AUC's permutation p-value; 0 skips the test.
    """
    frame = model_frame(features, roster)
    unrostered = int(frame["hire_date"].is_null().sum())
    labelled = label(frame.filter(pl.col("hire_date").is_not_null()), roster_as_of(as_of))
    split = time_split(labelled, test_fraction=test_fraction, purge=purge)
    y_train = split.train["label"].to_numpy()
    if shuffle_labels_seed is not None:
        y_train = np.random.default_rng(shuffle_labels_seed).permutation(y_train)
    if len(set(y_train.tolist())) < 2:
        raise NotEnoughHistory("training labels have a single class")
    x_train = matrix(split.train)
    # a column never observed in training (e.g. month-over-month changes when training has a
    # single month) carries no information and breaks histogram binning: make it constant
    x_train[:, np.isnan(x_train).all(axis=0)] = 0.0
    y_test = split.test["label"].to_numpy()
    x_test = matrix(split.test)
    with _single_thread():
        model = _model().fit(x_train, y_train)
        proba = model.predict_proba(x_test)[:, 1] if split.test.height else np.array([])
    two_classes = len(set(y_test.tolist())) == 2
    auc = float(roc_auc_score(y_test, proba)) if two_classes else None
    low, high = _bootstrap_interval(y_test, proba) if two_classes else (None, None)
    perm = (
        _permutation_test(x_train, y_train, x_test, y_test, auc, permutations)
        if auc is not None and permutations
        else {}
    )
    trained_at = (now or datetime.now(UTC)).astimezone(UTC)
    version = f"{trained_at:%Y%m%dT%H%M%SZ}-{_fingerprint(labelled)}"
    medians = {c: _nanmedian(x_train[:, j]) for j, c in enumerate(FEATURE_COLUMNS)}
    metrics: dict[str, Any] = {
        "model_version": version,
        "trained_at": trained_at,
        "train_months": _month_range(split.train_months),
        "test_months": _month_range(split.test_months),
        "purged": split.purged,
        "n_train": int(split.train.height),
        "n_test": int(split.test.height),
        "base_rate": float(y_test.mean()) if y_test.size else None,
        "roc_auc": auc,
        "average_precision": float(average_precision_score(y_test, proba)) if two_classes else None,
        "n_test_positives": int(y_test.sum()),
        "roc_auc_ci_low": low,
        "roc_auc_ci_high": high,
        "permutations": len(perm.get("aucs", [])),
        "permutation_auc_mean": perm.get("mean"),
        "permutation_auc_sd": perm.get("sd"),
        "permutation_p_value": perm.get("p"),
        # not a warehouse column: reported in the asset metadata
        "n_unrostered_dropped": unrostered,
    }
    metrics["conclusion"] = conclusion(metrics)
    return TrainedModel(version, model, FEATURE_COLUMNS, medians, metrics)


def _model() -> HistGradientBoostingClassifier:
    # small data (a few hundred agent-months, tens of leavers): shallow trees, large leaves,
    # strong L2 and feature subsampling generalise better than a deeper, faster learner
    return HistGradientBoostingClassifier(
        max_iter=100,
        learning_rate=0.05,
        max_depth=2,
        min_samples_leaf=40,
        l2_regularization=10.0,
        max_features=0.5,
        random_state=0,
    )


def _bootstrap_interval(y: np.ndarray, proba: np.ndarray) -> tuple[float, float]:
    """2.5th and 97.5th percentiles of the AUC over resamples of the test set (with both
    classes; a resample with one class has no AUC and is drawn again)."""
    rng = np.random.default_rng(0)
    aucs: list[float] = []
    while len(aucs) < BOOTSTRAP:
        idx = rng.integers(0, y.size, y.size)
        if 0 < y[idx].sum() < y.size:
            aucs.append(float(roc_auc_score(y[idx], proba[idx])))
    low, high = np.percentile(aucs, [2.5, 97.5])
    return float(low), float(high)


def _permutation_test(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    observed: float,
    n: int,
) -> dict[str, Any]:
    """Refit on ``n`` shufflings of the training labels: the AUCs chance gives this test set.

    p = (1 + shuffles scoring >= the observed AUC) / (1 + n), the usual permutation p-value.
    """
    rng = np.random.default_rng(1)
    aucs = []
    with _single_thread():
        for _ in range(n):
            y = rng.permutation(y_train)
            proba = _model().fit(x_train, y).predict_proba(x_test)[:, 1]
            aucs.append(float(roc_auc_score(y_test, proba)))
    arr = np.array(aucs)
    return {
        "aucs": aucs,
        "mean": float(arr.mean()),
        "sd": float(arr.std(ddof=1)) if n > 1 else 0.0,
        "p": float((1 + (arr >= observed).sum()) / (1 + n)),
    }


def conclusion(m: dict[str, Any]) -> str:
    """What the test set lets one say, in a sentence: 'too small to conclude' and why, or not."""
    auc = m.get("roc_auc")
    if auc is None:
        return "no conclusion: the test set holds one class only"
    reasons = []
    if m["n_test_positives"] < MIN_TEST_POSITIVES:
        reasons.append(
            f"only {m['n_test_positives']} positives in the test set (< {MIN_TEST_POSITIVES})"
        )
    if m["roc_auc_ci_low"] is not None and m["roc_auc_ci_low"] <= 0.5:
        reasons.append("the AUC's 95 % interval includes 0.5")
    p = m.get("permutation_p_value")
    if p is not None and p > 0.05:
        reasons.append(f"permutation p = {p:.2f}")
    figures = f"AUC {auc:.3f} (95 % CI {m['roc_auc_ci_low']:.3f}..{m['roc_auc_ci_high']:.3f})"
    if p is not None:
        figures += (
            f", shuffled-label AUC {m['permutation_auc_mean']:.3f} ± "
            f"{m['permutation_auc_sd']:.3f} over {m['permutations']} shuffles, p = {p:.3f}"
        )
    if reasons:
        return f"too small to conclude: {'; '.join(reasons)}; {figures}"
    return f"better than chance: {figures}"


def metrics_frame(trained: TrainedModel) -> pl.DataFrame:
    """One ATTRITION_MODEL_METRICS row for the trained model."""
    row = {k: trained.metrics.get(k) for k in METRICS_SCHEMA}
    return pl.DataFrame([row], schema=METRICS_SCHEMA, orient="row")


def model_path(models_dir: str | Path, version: str) -> Path:
    """``<models_dir>/attrition-<version>.joblib``; versions never overwrite each other."""
    return Path(models_dir) / f"attrition-{version}.joblib"


def save_model(trained: TrainedModel, models_dir: str | Path) -> Path:
    """Write ``model_path(models_dir, trained.version)`` atomically."""
    path = model_path(models_dir, trained.version)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".joblib.tmp")
    joblib.dump(trained, tmp)
    tmp.replace(path)
    return path


def load_model(path: str | Path) -> TrainedModel:
    obj = joblib.load(path)
    if not isinstance(obj, TrainedModel):
        raise TypeError(f"{path} does not hold a TrainedModel")
    return obj


def latest_model_path(models_dir: str | Path) -> Path | None:
    """Newest saved model (versions start with a UTC timestamp, so they sort by time)."""
    paths = sorted(Path(models_dir).glob("attrition-*.joblib"))
    return paths[-1] if paths else None


def contributions(trained: TrainedModel, x: np.ndarray) -> np.ndarray:
    """risk(x) - risk(x with feature j set to its training median), for every row and feature."""
    out = np.zeros_like(x, dtype=float)
    with _single_thread():
        base = trained.model.predict_proba(x)[:, 1]
        for j, col in enumerate(trained.feature_columns):
            x_j = x.copy()
            x_j[:, j] = trained.medians[col]
            out[:, j] = base - trained.model.predict_proba(x_j)[:, 1]
    return out


def score_agents(
    trained: TrainedModel,
    features: pl.DataFrame,
    roster: pl.DataFrame,
    month: date | None = None,
    top_k: int = 3,
    *,
    as_of: date | str | None = None,
) -> pl.DataFrame:
    """Risk for every agent still employed with features in ``month`` (default: latest).

    "Still employed": no leave date, or one after both the month end and the roster's as-of
    date ``as_of`` (default today, UTC); someone who has already left is nobody to retain.

    ``top_features`` is a JSON list of the ``top_k`` features with the largest absolute
    median-replacement contribution: ``{"feature", "value", "contribution"}`` (positive =
    this value raises the risk compared with a typical agent).
    """
    frame = model_frame(features, roster)
    if frame.is_empty():
        return pl.DataFrame(schema=RISK_SCHEMA)
    target = month or frame["month"].max()
    observed = pl.lit(roster_as_of(as_of), dtype=pl.Date)
    rows = frame.filter(pl.col("month") == target).filter(
        pl.col("leave_date").is_null()
        | ((pl.col("leave_date") > pl.col("month_end")) & (pl.col("leave_date") > observed))
    )
    if rows.is_empty():
        return pl.DataFrame(schema=RISK_SCHEMA)
    x = matrix(rows)
    with _single_thread():
        risk = trained.model.predict_proba(x)[:, 1]
    contrib = contributions(trained, x)
    tops: list[str] = []
    for i in range(x.shape[0]):
        order = np.argsort(-np.abs(contrib[i]))[:top_k]
        tops.append(
            json.dumps(
                [
                    {
                        "feature": trained.feature_columns[j],
                        "value": None if np.isnan(x[i, j]) else round(float(x[i, j]), 4),
                        "contribution": round(float(contrib[i, j]), 4),
                    }
                    for j in order
                ]
            )
        )
    return pl.DataFrame(
        {
            "agent_id": rows["agent_id"],
            "month": rows["month"],
            "risk": risk,
            "top_features": tops,
            "model_version": [trained.version] * rows.height,
        },
        schema=RISK_SCHEMA,
    ).sort("risk", descending=True)


__all__ = [
    "FEATURE_COLUMNS",
    "HORIZON_DAYS",
    "NotEnoughHistory",
    "TrainedModel",
    "add_months",
    "contributions",
    "label",
    "latest_model_path",
    "load_model",
    "metrics_frame",
    "model_frame",
    "roster_as_of",
    "save_model",
    "score_agents",
    "time_split",
    "train_attrition_model",
]
