"""A Semarize answer its columns cannot hold is quarantined, never a crash (issue 11, item 7)."""

from __future__ import annotations

import copy
from typing import Any

import dagster as dg

from callminer_assets.lib.settings import WarehouseSettings
from callminer_assets.sandbox.app import SandboxConfig
from callminer_assets.sandbox.server import serve
from tests.defs.helpers import EXTRACT, materialize, rows, sandbox_env

DAY = "2025-01-14"
SCORES = ["analytics/interaction_scores", "analytics/compliance_findings"]


def _hostile(run: dict[str, Any]) -> dict[str, Any]:
    """qa_compliance runs come back with an index beyond INTEGER and a confidence beyond 0..1."""
    if run.get("kit_code") != "qa_compliance" or "bricks" not in run:
        return run
    run = copy.deepcopy(run)
    bricks = run["bricks"]
    bricks["recording_disclosure"]["evidence"] = [{"quote": "recorded", "utterance_index": 2**31}]
    bricks["consent_obtained"]["confidence"] = 7.5
    run["usage"] = {"input_tokens": 2**70}
    return run


def test_out_of_range_semarize_values_are_quarantined_and_findings_still_land(
    dagster_home: dg.DagsterInstance, lake: WarehouseSettings
) -> None:
    with serve(SandboxConfig(seed=11, per_day=6, pending_fraction=0.0)) as server:
        server.state.run_rewrite = _hostile
        env = sandbox_env(server.url, lake)
        assert materialize(dagster_home, env, EXTRACT + SCORES, partition_key=DAY).success
        runs = server.state.runs_started
        # a re-run pays for nothing and keeps the quarantined values of the runs it keeps
        assert materialize(dagster_home, env, EXTRACT + SCORES, partition_key=DAY).success
        assert server.state.runs_started == runs

    scored = rows(
        lake, "SELECT count(*) FROM semarize.evaluations WHERE kit_code = 'qa_compliance'"
    )
    assert scored[0][0] > 0
    reasons = rows(
        lake,
        "SELECT reason, count(*) FROM callminer.quarantine WHERE source = 'evaluation' "
        "GROUP BY 1 ORDER BY 1",
    )
    runs_scored = rows(
        lake,
        "SELECT count(DISTINCT run_id) FROM semarize.evaluations "
        "WHERE kit_code = 'qa_compliance' AND status = 'succeeded'",
    )[0][0]
    assert reasons == [
        (
            "qa_compliance/consent_obtained: confidence 7.5 is not a finite number in 0..1",
            runs_scored,
        ),
        ("qa_compliance/input_tokens: input_tokens out of range for BIGINT", runs_scored),
        (
            "qa_compliance/recording_disclosure: evidence utterance_index 2147483648 out of "
            "range 0..2147483647 (INTEGER)",
            runs_scored,
        ),
    ]
    # the quarantine row names the run and keeps the value as received
    assert rows(
        lake,
        "SELECT count(*) FROM callminer.quarantine q JOIN semarize.evaluations e "
        "ON q.record_id = e.run_id AND e.brick = 'recording_disclosure' "
        "WHERE q.source = 'evaluation' AND q.payload LIKE '%2147483648%'",
    ) == [(runs_scored,)]
    # stored as NULL; the findings land with the quote and no utterance
    assert rows(
        lake,
        "SELECT count(*) FROM semarize.evaluations WHERE brick = 'consent_obtained' "
        "AND confidence IS NOT NULL",
    ) == [(0,)]
    assert rows(
        lake,
        "SELECT count(*), count(utterance_index) FROM analytics.compliance_findings "
        "WHERE rule = 'recording_disclosure' AND quote = 'recorded'",
    ) == [(runs_scored, 0)]
