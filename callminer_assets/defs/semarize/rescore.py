"""The ``rescore`` job: the evaluations step (and what reads it) with a kit to re-score.

Launch it from the UI over a partition range, with run config ``rescore_kit`` (and optionally
``rescore_version``); ``python -m callminer_assets rescore`` runs the same selection and config
after printing the cost and asking.
"""

from typing import Any

import dagster as dg

from callminer_assets.defs.keys import (
    COVERAGE_KEY,
    EVALUATIONS_KEY,
    FINDINGS_KEY,
    KIT_DIFF_KEY,
    SCORES_KEY,
)
from callminer_assets.defs.partitions import daily_partitions

RESCORE_SELECTION = dg.AssetSelection.assets(
    EVALUATIONS_KEY, SCORES_KEY, FINDINGS_KEY, KIT_DIFF_KEY, COVERAGE_KEY
)
EVALUATIONS_OP = "semarize__evaluations"


def run_config(kit: str, version: str | None) -> dict[str, Any]:
    """The run config that turns the evaluations step into a re-score of ``kit``."""
    config: dict[str, Any] = {"rescore_kit": kit}
    if version:
        config["rescore_version"] = version
    return {"ops": {EVALUATIONS_OP: {"config": config}}}


rescore_job = dg.define_asset_job(
    "rescore",
    selection=RESCORE_SELECTION,
    partitions_def=daily_partitions,
    config=run_config("qa_compliance", None),
    description=(
        "Re-score stored transcripts with a kit's current version (run config: rescore_kit, "
        "optionally rescore_version), never paying twice for a (transcript, kit, version). "
        "Launch it over a partition range; the evaluations step logs the runs and tokens first. "
        "From a shell, `python -m callminer_assets rescore` prints the estimate and asks."
    ),
)
