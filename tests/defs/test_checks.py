"""The checks read what is stored, so a write that loses or corrupts rows fails them.

Each test runs the real assets with ``dg.materialize`` twice: as they are (the check
passes) and with the warehouse write of one table tampered with (rows dropped, a value
out of range) so the stored table differs from the frame the step built. A check computed
on the step's own frame would pass both times; these fail the second time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl
import pytest

from callminer_assets.lib.tables import AGENT_MONTHLY_FEATURES, EVALUATIONS, TRANSCRIPTS, Table
from callminer_assets.warehouse.store import Warehouse, Write
from tests.defs.helpers import env_without_credentials, materialize, range_tags
from tests.lake import lake_env, lake_settings

DAY = "2025-01-14"
RAW = ["callminer/interactions", "callminer/transcripts", "callminer/utterances"]


@contextmanager
def tampered(table: Table, change: Callable[[pl.DataFrame], pl.DataFrame]) -> Iterator[None]:
    """Every write of ``table`` stores ``change(frame)`` instead of ``frame``.

    Patches ``replace_many``, which every write goes through (``replace`` included).
    """
    many = Warehouse.replace_many

    def replace_many(self: Warehouse, writes: Sequence[Write]) -> int:
        changed = [w._replace(frame=change(w.frame)) if w.table is table else w for w in writes]
        return many(self, changed)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(Warehouse, "replace_many", replace_many)
        yield


def _env(tmp_path: Path) -> dict[str, str]:
    return env_without_credentials(
        **lake_env(lake_settings(tmp_path / "w")),
        SANDBOX_PER_DAY="6",
        AGENT_ROSTER_PATH=str(tmp_path / "roster.csv"),
        EXPORTS_DIR=str(tmp_path / "exports"),
        MODELS_DIR=str(tmp_path / "models"),
    )


def _check(result: dg.ExecuteInProcessResult, name: str) -> dg.AssetCheckEvaluation:
    (found,) = [e for e in result.get_asset_check_evaluations() if e.check_name == name]
    return found


def _failing(evaluation: dg.AssetCheckEvaluation, key: str) -> Any:
    return evaluation.metadata[key].value


def test_every_interaction_has_transcript_row_fails_when_stored_rows_are_missing(
    dagster_home: dg.DagsterInstance, tmp_path: Path
) -> None:
    env = _env(tmp_path)
    clean = materialize(dagster_home, env, RAW, partition_key=DAY)
    check = _check(clean, "every_interaction_has_transcript_row")
    assert check.passed and _failing(check, "failing") == 0

    with tampered(TRANSCRIPTS, lambda frame: frame.slice(2)):
        result = materialize(dagster_home, env, RAW, partition_key=DAY, raise_on_error=False)
    check = _check(result, "every_interaction_has_transcript_row")
    assert not check.passed
    assert _failing(check, "failing") == 2 and _failing(check, "checked") == 6


def test_covers_every_available_transcript_fails_when_a_kits_rows_are_missing(
    dagster_home: dg.DagsterInstance, tmp_path: Path
) -> None:
    env = _env(tmp_path)
    selection = [*RAW, "semarize/evaluations"]
    clean = materialize(dagster_home, env, selection, partition_key=DAY)
    check = _check(clean, "covers_every_available_transcript")
    assert check.passed and _failing(check, "uncovered") == 0

    def drop_one_run(frame: pl.DataFrame) -> pl.DataFrame:
        first = frame.row(0, named=True)
        one = (pl.col("interaction_id") == first["interaction_id"]) & (
            pl.col("kit_code") == first["kit_code"]
        )
        return frame.filter(~one)

    with tampered(EVALUATIONS, drop_one_run):
        result = materialize(
            dagster_home,
            env,
            ["semarize/evaluations"],
            partition_key=DAY,
            raise_on_error=False,
        )
    check = _check(result, "covers_every_available_transcript")
    assert not check.passed and _failing(check, "uncovered") == 1


def test_feature_values_in_range_fails_on_a_stored_value_out_of_range(
    dagster_home: dg.DagsterInstance, tmp_path: Path
) -> None:
    env = _env(tmp_path)
    daily = [
        *RAW,
        "semarize/evaluations",
        "analytics/interaction_scores",
        "analytics/compliance_findings",
    ]
    days = materialize(dagster_home, env, daily, tags=range_tags("2025-01-14", "2025-01-15"))
    assert days.success
    features = ["analytics/agent_monthly_features"]
    clean = materialize(dagster_home, env, features, partition_key="2025-01-01")
    assert _check(clean, "feature_values_in_range").passed

    def corrupt(frame: pl.DataFrame) -> pl.DataFrame:
        return frame.with_columns(
            pl.when(pl.int_range(pl.len()) == 0)
            .then(1.5)
            .otherwise(pl.col("share_voice"))
            .alias("share_voice")
        )

    with tampered(AGENT_MONTHLY_FEATURES, corrupt):
        result = materialize(
            dagster_home, env, features, partition_key="2025-01-01", raise_on_error=False
        )
    check = _check(result, "feature_values_in_range")
    assert not check.passed
    assert _failing(check, "out_of_range")["share_voice"] == 1
