"""Parquet exports: layout, idempotent overwrite per month, the one-line loader."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import polars as pl
import pytest

from callminer_assets.analytics.exports import (
    FEATURES_DATASET,
    SCORES_DATASET,
    load_scores,
    write_month,
)
from callminer_assets.transform.features import FEATURES_SCHEMA


def _features(month: date, agents: list[str], n: int) -> pl.DataFrame:
    rows = []
    for a in agents:
        r = dict.fromkeys(FEATURES_SCHEMA)
        r.update(agent_id=a, month=month, interactions=n, low_volume=n < 10)
        rows.append(r)
    return pl.DataFrame(rows, schema=FEATURES_SCHEMA, orient="row")


def test_layout_overwrite_and_loader(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "exports"
    for m, n in ((date(2025, 1, 1), 5), (date(2025, 2, 1), 6), (date(2025, 3, 1), 7)):
        write_month(_features(m, ["A", "B"], n), FEATURES_DATASET, m, root)
    # re-export February with different content: replaced, not appended
    write_month(_features(date(2025, 2, 1), ["A"], 60), FEATURES_DATASET, date(2025, 2, 1), root)
    write_month(_features(date(2025, 2, 1), ["A"], 60), FEATURES_DATASET, date(2025, 2, 1), root)

    files = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
    assert files == [
        "agent_monthly_features/month=2025-01/part.parquet",
        "agent_monthly_features/month=2025-02/part.parquet",
        "agent_monthly_features/month=2025-03/part.parquet",
    ]

    from callminer_assets import load_features  # the documented one-liner

    df = load_features("2025-02", "2025-03", exports_dir=root)
    assert dict(df.schema) == FEATURES_SCHEMA
    assert df.sort("month", "agent_id").select("agent_id", "month", "interactions").rows() == [
        ("A", date(2025, 2, 1), 60),
        ("A", date(2025, 3, 1), 7),
        ("B", date(2025, 3, 1), 7),
    ]
    monkeypatch.setenv("EXPORTS_DIR", str(root))
    assert load_features("2025-01", "2025-01").height == 2
    assert load_features("2026-01", "2026-12").height == 0
    assert load_scores("2025-01", "2025-12").height == 0
    assert SCORES_DATASET == "interaction_scores"
    with pytest.raises(ValueError):
        load_features("January", "2025-02")
