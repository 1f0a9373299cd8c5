"""Every run says what started it: the ``callminer/trigger`` tag.

Sensors (``poll``, ``pending-retry``, ``webhook``), the automation sensor (``automation``) and
the CLI (``cli``) set it themselves. Runs launched from the UI and backfill runs are tagged
here, by the instance's run coordinator (``dagster.yaml``), which every submitted run passes.
"""

from __future__ import annotations

import dagster as dg

# Dagster's own tags (no public constants): set on backfill runs and on automation runs.
BACKFILL_ID_TAG = "dagster/backfill"
AUTOMATION_CONDITION_TAG = "dagster/from_automation_condition"

TRIGGER_TAG = "callminer/trigger"
TRIGGERS = ("ui", "automation", "poll", "pending-retry", "webhook", "cli", "backfill")


def trigger_of(tags: dict[str, str]) -> str:
    """The trigger of a run submitted without one: a backfill's, automation's, else the UI's."""
    if BACKFILL_ID_TAG in tags:
        return "backfill"
    if AUTOMATION_CONDITION_TAG in tags:
        return "automation"
    return "ui"


class TriggerTaggingRunCoordinator(dg.QueuedRunCoordinator):
    """The queued coordinator (same limits, from ``concurrency: runs:``) that tags a run's
    trigger when the run does not carry one already."""

    def submit_run(self, context: dg.SubmitRunContext) -> dg.DagsterRun:
        run = context.dagster_run
        if TRIGGER_TAG not in run.tags:
            self._instance.add_run_tags(run.run_id, {TRIGGER_TAG: trigger_of(dict(run.tags))})
        return super().submit_run(context)
