"""Recovery from killed runs, on a real instance configured by the repo's dagster.yaml.

The runs here are real run records with real events and real pool slots; only their
processes are stand-ins (a process that has exited, or this test process), so each case is
exact and fast. The whole path (a pipeline killed with SIGKILL, then run again) is in
``test_crash.py``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import dagster as dg
from dagster._core.events import DagsterEvent, DagsterEventType
from dagster._core.test_utils import create_run_for_test

from callminer_assets.defs.recovery import abandoned_runs_sensor, process_alive, recover

POOL = "callminer_api"


def _exited_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])  # noqa: S603 - fixed arguments
    proc.wait()
    return proc.pid


def _started_run(instance: dg.DagsterInstance, pid: int, step: str = "interactions") -> str:
    """A STARTED run whose RUN_START event was logged by ``pid``, holding a slot of POOL."""
    run = create_run_for_test(instance, job_name="__ASSET_JOB")
    for kind in (DagsterEventType.RUN_START, DagsterEventType.STEP_START):
        instance.report_dagster_event(
            DagsterEvent(
                event_type_value=kind.value,
                job_name=run.job_name,
                step_key=step if kind == DagsterEventType.STEP_START else None,
                pid=pid,
            ),
            run_id=run.run_id,
        )
    assert instance.event_log_storage.claim_concurrency_slot(POOL, run.run_id, step).is_claimed
    return run.run_id


def _holders(instance: dg.DagsterInstance) -> set[str]:
    info = instance.event_log_storage.get_concurrency_info(POOL)
    return {s.run_id for s in info.claimed_slots}


def test_a_run_whose_process_is_gone_is_failed_and_its_slot_freed_a_live_one_is_kept(
    dagster_home: dg.DagsterInstance,
) -> None:
    instance = dagster_home
    instance.event_log_storage.set_concurrency_slots(POOL, 2)
    dead = _started_run(instance, _exited_pid())
    alive = _started_run(instance, os.getpid())
    assert _holders(instance) == {dead, alive}

    done = recover(instance)

    assert done.failed_runs == [dead] and dead in done.freed_runs
    assert instance.get_run_by_id(dead).status == dg.DagsterRunStatus.FAILURE  # type: ignore[union-attr]
    assert instance.get_run_by_id(alive).status == dg.DagsterRunStatus.STARTED  # type: ignore[union-attr]
    assert _holders(instance) == {alive}
    failure = instance.all_logs(dead, of_type=DagsterEventType.RUN_FAILURE)[0]
    assert "is gone" in failure.message
    assert not recover(instance)  # nothing left to do: a second pass changes nothing


def test_the_calling_run_is_never_touched(dagster_home: dg.DagsterInstance) -> None:
    instance = dagster_home
    instance.event_log_storage.set_concurrency_slots(POOL, 1)
    mine = _started_run(instance, _exited_pid())
    assert not recover(instance, keep=frozenset({mine}))
    assert _holders(instance) == {mine}


def test_slots_left_by_a_finished_run_are_released(dagster_home: dg.DagsterInstance) -> None:
    """E.g. a run marked failed by an operator or run monitoring while its slot stayed taken."""
    instance = dagster_home
    instance.event_log_storage.set_concurrency_slots(POOL, 1)
    run_id = _started_run(instance, os.getpid())
    instance.report_run_failed(instance.get_run_by_id(run_id))  # type: ignore[arg-type]
    done = recover(instance)
    assert done.failed_runs == [] and done.freed_runs == [run_id]
    assert _holders(instance) == set()


def test_a_recycled_pid_does_not_keep_a_dead_run_alive() -> None:
    me = os.getpid()
    assert process_alive(me, time.time())
    # this process started after an event logged a minute before it: another process's pid
    started = time.time() - time.monotonic()  # no later than boot; our start is later
    assert not process_alive(me, started - 60) or not os.path.exists("/proc/self/stat")
    assert not process_alive(_exited_pid(), time.time())


def test_the_daemon_sensor_recovers_and_says_so(dagster_home: dg.DagsterInstance) -> None:
    instance = dagster_home
    instance.event_log_storage.set_concurrency_slots(POOL, 1)
    dead = _started_run(instance, _exited_pid())
    result = abandoned_runs_sensor(dg.build_sensor_context(instance=instance))
    assert isinstance(result, dg.SkipReason)
    assert "1 run(s) whose process is gone marked failed" in (result.skip_message or "")
    assert instance.get_run_by_id(dead).status == dg.DagsterRunStatus.FAILURE  # type: ignore[union-attr]
    assert _holders(instance) == set()
