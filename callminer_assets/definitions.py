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
    EVALUATIONS_KEY,
    INTERACTIONS_KEY,
    NATIVE_CATEGORIES_KEY,
    NATIVE_SCORES_KEY,
    QUARANTINE_KEY,
    REPORT_KEY,
    TRANSCRIPTS_KEY,
    UTTERANCES_KEY,
)
from callminer_assets.defs.partitions import daily_partitions, monthly_partitions
from callminer_assets.defs.recovery import abandoned_runs_sensor, recovering_executor
from callminer_assets.defs.resources import build_resources
from callminer_assets.defs.semarize.assets import evaluations
from callminer_assets.defs.semarize.rescore import rescore_job
from callminer_assets.defs.sensors import SENSORS

# Grouped by partitioning: the named jobs below (and `python -m callminer_assets run`).
DAILY_ASSETS: list[dg.AssetKey] = [
    INTERACTIONS_KEY,
    QUARANTINE_KEY,
    TRANSCRIPTS_KEY,
    UTTERANCES_KEY,
    NATIVE_SCORES_KEY,
    NATIVE_CATEGORIES_KEY,
    EVALUATIONS_KEY,
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
]

# Named jobs, so headless runs read well on the Runs page (decision 0015): the CLI runs one
# partition per run of these; the UI can launch them too.
DAILY_JOB = dg.define_asset_job(
    "daily_pipeline",
    selection=dg.AssetSelection.assets(*DAILY_ASSETS),
    partitions_def=daily_partitions,
    description="One UTC day end to end: interactions, transcripts, evaluations, scores, alerts.",
)
MONTHLY_JOB = dg.define_asset_job(
    "monthly_rollups",
    selection=dg.AssetSelection.assets(*MONTHLY_ASSETS),
    partitions_def=monthly_partitions,
    description="One month's agent features and channel consistency.",
)
MODELS_JOB = dg.define_asset_job(
    "roster_and_models",
    selection=dg.AssetSelection.assets(*UNPARTITIONED_ASSETS),
    description="The HR roster, the attrition model and its risk scores.",
)
REPORTS_JOB = dg.define_asset_job(
    "monthly_report",
    selection=dg.AssetSelection.assets(*REPORT_ASSETS),
    partitions_def=monthly_partitions,
    description="One month's offline HTML report (after the models, for the risk panel).",
)

defs = dg.Definitions(
    assets=ALL_ASSETS,
    jobs=[DAILY_JOB, MONTHLY_JOB, MODELS_JOB, REPORTS_JOB],
    sensors=[*SENSORS, automation_sensor, abandoned_runs_sensor],
    executor=recovering_executor,
    jobs=[rescore_job],
    resources=build_resources(),
)
