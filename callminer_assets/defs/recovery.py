"""Recovery without a human: runs whose process is gone are marked failed, their pool slots freed.

A process killed with SIGKILL (OOM killer, closed laptop, evicted pod) cannot report its own
end: its run stays ``STARTED`` and the pool slots its steps claimed stay taken, so every later
run waits on them forever. Dagster's daemon frees the slots of *finished* runs
(``run_monitoring.free_slots_after_run_end_seconds`` in ``dagster.yaml``) but cannot tell that
a run's process died when it was not started by a run launcher with health checks (the
headless CLI, ``dagster asset materialize``, the default launcher of ``make dev``).

So before a run claims slots (the CLI calls :func:`recover`; every run launched by Dagster goes
through :data:`recovering_executor`) and once a minute in the daemon
(:data:`abandoned_runs_sensor`), runs whose every process has exited are reported failed with
Dagster's ``report_run_failed`` and every slot held by a finished run is released with
``free_concurrency_slots_for_run``. The processes of a run are the pids its own events carry
(``RUN_START``, ``STEP_START``: the run worker and, with the multiprocess executor, each
step's process), compared by start time so a recycled pid does not keep a dead run alive.

This is safe only where the runs' processes are on this host, i.e. a SQLite instance (which
cannot be shared across hosts). On a Postgres instance nothing is judged by pid; use a run
launcher with worker health checks and the daemon's run monitoring there. See
``docs/decisions/0012-recovery-without-a-human.md``.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import dagster as dg
from dagster._core.events import DagsterEventType
from dagster._core.storage.runs.sqlite.sqlite_run_storage import SqliteRunStorage
from dagster._utils.interrupts import check_captured_interrupt

# Runs that may hold slots while their process works. NOT_STARTED/QUEUED runs claim nothing.
_ACTIVE = [dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.CANCELING]
_PROCESS_EVENTS = {DagsterEventType.RUN_START, DagsterEventType.STEP_START}
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


@dataclass
class Recovered:
    """What one pass did: runs marked failed, runs whose slots were released."""

    failed_runs: list[str] = field(default_factory=list)
    freed_runs: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.failed_runs or self.freed_runs)

    def describe(self) -> str:
        return (
            f"recovered: {len(self.failed_runs)} run(s) whose process is gone marked failed, "
            f"pool slots of {len(self.freed_runs)} finished run(s) released"
        )


def _boot_time() -> float | None:
    try:
        with open("/proc/stat") as fh:
            for line in fh:
                if line.startswith("btime "):
                    return float(line.split()[1])
    except OSError:
        pass
    return None


def _started_at(pid: int, boot: float) -> float | None:
    """Wall-clock start of ``pid`` from /proc (None when unknown)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            # the command name may hold spaces: fields after the closing parenthesis
            fields = fh.read().rsplit(")", 1)[1].split()
        return boot + int(fields[19]) / _CLOCK_TICKS
    except (OSError, IndexError, ValueError):
        return None


def process_alive(pid: int, seen_at: float) -> bool:
    """Whether the process that logged an event at ``seen_at`` (epoch s) with ``pid`` still runs.

    A pid alive now but started after the event is another process (pids are recycled).
    """
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: alive
    boot = _boot_time()
    started = _started_at(pid, boot) if boot is not None else None
    if started is None:
        return True
    # /proc start times are in clock ticks since boot: allow a second of rounding
    return started <= seen_at + 1.0


def _processes(instance: dg.DagsterInstance, run_id: str) -> Iterator[tuple[int, float]]:
    for entry in instance.all_logs(run_id, of_type=_PROCESS_EVENTS):
        pid = entry.dagster_event.pid if entry.dagster_event else None
        if pid is not None:
            yield pid, entry.timestamp


def _local(instance: dg.DagsterInstance) -> bool:
    return isinstance(instance.run_storage, SqliteRunStorage)


def _slot_holders(instance: dg.DagsterInstance) -> set[str]:
    """Runs holding a claimed slot or a place in a pool's queue."""
    storage = instance.event_log_storage
    holders = set(storage.get_concurrency_run_ids())  # queued (pending) steps
    for key in storage.get_concurrency_keys():
        holders |= {slot.run_id for slot in storage.get_concurrency_info(key).claimed_slots}
    return holders


def recover(instance: dg.DagsterInstance, keep: frozenset[str] = frozenset()) -> Recovered:
    """Mark runs whose processes are all gone failed, then free the slots of finished runs.

    ``keep``: run ids never touched (the calling run itself). Cheap when nothing is wrong: one
    query for active runs, one per pool.
    """
    done = Recovered()
    if _local(instance):
        for record in instance.get_run_records(dg.RunsFilter(statuses=_ACTIVE)):
            run = record.dagster_run
            if run.run_id in keep:
                continue
            seen = list(_processes(instance, run.run_id))
            if not seen or any(process_alive(pid, at) for pid, at in seen):
                continue  # not started by a process of ours yet, or still working
            pids = ", ".join(str(pid) for pid in sorted({pid for pid, _ in seen}))
            instance.report_run_failed(
                run,
                message=(
                    f"the run's process (pid {pids}) is gone without ending the run (killed); "
                    "marked failed by callminer_assets.defs.recovery so its pool slots are freed"
                ),
            )
            done.failed_runs.append(run.run_id)
    if instance.event_log_storage.supports_global_concurrency_limits:
        for run_id in sorted(_slot_holders(instance) - keep):
            holder = instance.get_run_by_id(run_id)
            if holder is None or holder.is_finished:
                instance.event_log_storage.free_concurrency_slots_for_run(run_id)
                done.freed_runs.append(run_id)
    return done


def _own_runs(instance: dg.DagsterInstance) -> list[dg.DagsterRun]:
    me = os.getpid()
    return [
        r.dagster_run
        for r in instance.get_run_records(dg.RunsFilter(statuses=_ACTIVE))
        if any(pid == me for pid, _ in _processes(instance, r.dagster_run.run_id))
    ]


def stop_waiting_runs_on_signal(instance: dg.DagsterInstance, grace_s: float = 2.0) -> None:
    """Make SIGTERM/SIGINT end an in-process run that waits for a pool slot.

    During a run Dagster only records the signal and raises it when a step starts; a run that
    waits for a slot never starts one, so it would ignore the signal until the slot frees. A
    daemon thread sees a signal left unhandled for ``grace_s``, reports this process's runs
    canceled, frees their slots and exits with 143. A signal during a step is handled by
    Dagster itself (the step fails, the run is marked failed, its slot is released).
    """

    def watch() -> None:
        while True:
            time.sleep(0.25)
            if not check_captured_interrupt():
                continue
            time.sleep(grace_s)
            if not check_captured_interrupt():
                continue  # a step started and raised it: Dagster ends the run
            for run in _own_runs(instance):
                instance.report_run_canceled(run, message="stopped by a signal while waiting")
                instance.event_log_storage.free_concurrency_slots_for_run(run.run_id)
            print("stopped by a signal while waiting for a pool slot; run marked", flush=True)
            os._exit(143)

    threading.Thread(target=watch, name="stop-waiting-runs", daemon=True).start()


class _RecoveringExecutor(dg.Executor):
    """Dagster's default executor, preceded by one :func:`recover` pass (before any claim)."""

    def __init__(self, inner: dg.Executor) -> None:
        self._inner = inner

    def execute(self, plan_context: Any, execution_plan: Any) -> Iterator[dg.DagsterEvent]:
        done = recover(plan_context.instance, keep=frozenset({plan_context.run_id}))
        if done:
            plan_context.log.warning(done.describe())
        yield from self._inner.execute(plan_context, execution_plan)

    @property
    def retries(self) -> Any:
        return self._inner.retries

    @property
    def step_dependency_config(self) -> Any:
        return self._inner.step_dependency_config


_default = dg.multi_or_in_process_executor


@dg.executor(
    name="recovering_executor",
    config_schema=_default.config_schema.as_field(),
    requirements=_default.get_requirements,
)
def recovering_executor(init_context: dg.InitExecutorContext) -> dg.Executor:
    """``multi_or_in_process_executor`` (same config) that first recovers from killed runs."""
    return _RecoveringExecutor(_default.executor_creation_fn(init_context))  # type: ignore[misc]


@dg.sensor(
    name="abandoned_runs_sensor",
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "Marks runs whose process was killed as failed and frees their pool slots, so a killed "
        "run never wedges the runs after it (make dev; the CLI does the same before it starts)."
    ),
)
def abandoned_runs_sensor(context: dg.SensorEvaluationContext) -> dg.SkipReason:
    done = recover(context.instance)
    return dg.SkipReason(done.describe() if done else "no abandoned runs")
