"""The Dagster code location: every asset, check, sensor and resource of the project.

``dagster dev -m callminer_assets.definitions`` or
``dagster asset materialize -m callminer_assets.definitions --select ... --partition 2025-01-14``.
"""

from __future__ import annotations

import dagster as dg

from callminer_assets.defs.analytics.assets import (
    ANALYTICS_ASSETS,
    DAILY_KEYS,
    MONTHLY_KEYS,
    UNPARTITIONED_KEYS,
)
from callminer_assets.defs.analytics.frameworks import FRAMEWORK_ASSETS, FRAMEWORK_KEYS
from callminer_assets.defs.analytics.report import monthly_report
from callminer_assets.defs.automation import automation_sensor
from callminer_assets.defs.callminer.assets import interactions, transcripts
from callminer_assets.defs.keys import (
    EVALUATION_QUARANTINE_KEY,
    EVALUATIONS_KEY,
    INTERACTIONS_KEY,
    NATIVE_CATEGORIES_KEY,
    NATIVE_SCORES_KEY,
    QUARANTINE_KEY,
    REPORT_KEY,
    TRANSCRIPT_QUARANTINE_KEY,
    TRANSCRIPTS_KEY,
    UTTERANCES_KEY,
)
from callminer_assets.defs.partitions import daily_partitions, monthly_partitions
from callminer_assets.defs.recovery import abandoned_runs_sensor, recovering_executor
from callminer_assets.defs.resources import build_resources
from callminer_assets.defs.semarize.assets import evaluations
from callminer_assets.defs.semarize.rescore import rescore_job
from callminer_assets.defs.sensors import SENSORS
from callminer_assets.defs.upkeep import maintenance, upkeep_schedule

# Grouped by partitioning: the named jobs below (and `python -m callminer_assets run`).
DAILY_ASSETS: list[dg.AssetKey] = [
    INTERACTIONS_KEY,
    QUARANTINE_KEY,
    TRANSCRIPTS_KEY,
    UTTERANCES_KEY,
    TRANSCRIPT_QUARANTINE_KEY,
    NATIVE_SCORES_KEY,
    NATIVE_CATEGORIES_KEY,
    EVALUATIONS_KEY,
    EVALUATION_QUARANTINE_KEY,
    *DAILY_KEYS,
    *FRAMEWORK_KEYS,
]
MONTHLY_ASSETS: list[dg.AssetKey] = list(MONTHLY_KEYS)
UNPARTITIONED_ASSETS: list[dg.AssetKey] = list(UNPARTITIONED_KEYS)
# Monthly, but read the attrition risk too: run after the model.
REPORT_ASSETS: list[dg.AssetKey] = [REPORT_KEY]

ALL_ASSETS: list[dg.AssetsDefinition] = [
    interactions,
    transcripts,
    evaluations,
    *ANALYTICS_ASSETS,
    monthly_report,
    *FRAMEWORK_ASSETS,
    maintenance,
]

# Named jobs, so headless runs read well on the Runs page (decision 0015): the CLI runs one
# partition per run of these; the UI can launch them too.


def _job(
    name: str,
    keys: list[dg.AssetKey],
    partitions: dg.PartitionsDefinition | None,
    description: str,
) -> dg.UnresolvedAssetJobDefinition:
    return dg.define_asset_job(
        name,
        selection=dg.AssetSelection.assets(*keys),
        partitions_def=partitions,
        description=description,
    )


DAILY_JOB = _job(
    "daily_pipeline",
    DAILY_ASSETS,
    daily_partitions,
    "One UTC day end to end: interactions, transcripts, evaluations, scores, alerts.",
)
MONTHLY_JOB = _job(
    "monthly_rollups",
    MONTHLY_ASSETS,
    monthly_partitions,
    "One month's agent features and channel consistency.",
)
MODELS_JOB = _job(
    "roster_and_models",
    UNPARTITIONED_ASSETS,
    None,
    "The HR roster, the attrition model and its risk scores.",
)
REPORTS_JOB = _job(
    "monthly_report",
    REPORT_ASSETS,
    monthly_partitions,
    "One month's offline HTML report (after the models, for the risk panel).",
)

defs = dg.Definitions(
    assets=ALL_ASSETS,
    jobs=[DAILY_JOB, MONTHLY_JOB, MODELS_JOB, REPORTS_JOB, rescore_job],
    sensors=[*SENSORS, automation_sensor, abandoned_runs_sensor],
    schedules=[upkeep_schedule],
    executor=recovering_executor,
    resources=build_resources(),
)
