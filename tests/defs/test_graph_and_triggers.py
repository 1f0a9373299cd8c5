"""The graph follows the data, and every run says what started it (``callminer/trigger``)."""

from __future__ import annotations

import dagster as dg
import pytest

from callminer_assets.defs.automation import automation_sensor
from callminer_assets.defs.triggers import TRIGGER_TAG, TriggerTaggingRunCoordinator


def _parents(key: str) -> set[str]:
    from callminer_assets.definitions import defs

    graph = defs.resolve_asset_graph()
    return {p.to_user_string() for p in graph.get(dg.AssetKey(key.split("/"))).parent_keys}


def test_lineage_follows_what_each_asset_reads() -> None:
    assert _parents("callminer/utterances") == {"callminer/transcripts"}
    assert _parents("callminer/transcripts") == {"callminer/interactions"}
    assert _parents("semarize/evaluations") == {"callminer/transcripts", "callminer/interactions"}
    # each writer of callminer.quarantine has its own asset, drawn from what it read
    assert _parents("callminer/transcript_quarantine") == {"callminer/transcripts"}
    assert _parents("semarize/evaluation_quarantine") == {"callminer/transcripts"}
    quarantines = {
        "callminer/quarantine",
        "callminer/transcript_quarantine",
        "semarize/evaluation_quarantine",
    }
    assert quarantines <= _parents("analytics/monthly_report")  # the report counts them all


def test_the_instance_tags_ui_backfill_and_automation_runs(
    dagster_home: dg.DagsterInstance, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Tagged before Dagster's queued coordinator enqueues the run (that part needs a code
    server's run origin, so it is replaced here by a recorder)."""
    from callminer_assets.definitions import defs

    enqueued: list[str] = []

    def enqueue(self: dg.QueuedRunCoordinator, context: dg.SubmitRunContext) -> dg.DagsterRun:
        enqueued.append(context.dagster_run.run_id)
        return context.dagster_run

    monkeypatch.setattr(dg.QueuedRunCoordinator, "submit_run", enqueue)
    coordinator = dagster_home.run_coordinator
    assert isinstance(coordinator, TriggerTaggingRunCoordinator)  # from the repo's dagster.yaml
    job = defs.resolve_job_def("roster_and_models")
    cases = {
        "ui": {},
        "backfill": {"dagster/backfill": "bf1"},
        "automation": {"dagster/from_automation_condition": "true"},
        "poll": {TRIGGER_TAG: "poll"},  # a sensor's own tag is kept
    }
    for expected, tags in cases.items():
        run = dagster_home.create_run_for_job(job_def=job, tags=tags)
        coordinator.submit_run(dg.SubmitRunContext(run, workspace=None))  # type: ignore[arg-type]
        stored = dagster_home.get_run_by_id(run.run_id)
        assert stored is not None and stored.tags[TRIGGER_TAG] == expected
        assert enqueued[-1] == run.run_id


def test_automation_runs_carry_their_trigger() -> None:
    assert automation_sensor.run_tags[TRIGGER_TAG] == "automation"
