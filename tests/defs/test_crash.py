"""Killed with SIGKILL at several moments, then run again with no manual step: same warehouse.

Each case starts a real partition run in its own process group (``dagster asset
materialize`` on an instance configured by the repo's ``dagster.yaml``, against a loopback
sandbox with 300 ms latency), kills the whole group with SIGKILL at a known moment, checks
that the kill left the run ``STARTED`` with its pool slot taken (what used to wedge every
later run), then runs the same command again. The re-run must succeed on its own and leave
the raw tables equal, on keys and values, to a clean run's (timing columns aside).

Kill moments: two are seen from the sandbox's request log (mid-transcripts: some
transcript requests arrived, not all; mid-evaluations: likewise for Semarize runs), two are
hold points (``lib/holdpoint.py``): the process stops right before its first warehouse
write, or inside a write's transaction (rows deleted, new ones not yet inserted).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pytest

from callminer_assets.sandbox.app import SandboxConfig
from callminer_assets.sandbox.generator import Generator
from callminer_assets.sandbox.server import SandboxServer, serve
from tests.defs.helpers import (
    EXTRACT,
    RAW,
    REPO,
    dagster_materialize,
    materialize,
    sandbox_env,
    snapshot,
)
from tests.lake import lake_settings

DAY = "2025-02-11"
PER_DAY = 16
KITS = 3
CONFIG = SandboxConfig(
    seed=13, per_day=PER_DAY, pending_fraction=0.0, failed_run_rate=0.0, latency_ms=300
)
TABLES = [*RAW, "callminer.quarantine"]
SELECT = ",".join([*EXTRACT, "callminer/quarantine", "callminer/utterances"])
KILL_DEADLINE_S = 180
# The headless CLI with Dagster's event stream on stdout (the waiting test reads it).
_CLI = [sys.executable, "-m", "callminer_assets", "run", "--verbose"]
# Two dagster processes per case; on a busy 2-core machine one can take two minutes.
pytestmark = pytest.mark.timeout(900)


@dataclass(frozen=True)
class KillPoint:
    """When to kill: a hold point reached, or ``count`` requests under ``path`` arrived."""

    hold: str | None = None
    path: str | None = None
    count: int = 0
    total: int = 0

    def reached(self, server: SandboxServer, marker: Path) -> bool:
        if self.hold:
            return marker.exists()
        return self._seen(server) >= self.count

    def _seen(self, server: SandboxServer) -> int:
        log = list(server.state.request_log)
        return sum(1 for e in log if self.path and self.path in e["path"] and e["method"] != "")

    def was_mid_way(self, server: SandboxServer) -> bool:
        """A request-log kill left requests unsent: the step was really cut in the middle."""
        return self.hold is not None or self._seen(server) < self.total


KILL_POINTS = {
    "before-first-write": KillPoint(hold="interactions:before-first-write"),
    "mid-transcripts": KillPoint(path="/transcript", count=5, total=PER_DAY),
    "mid-evaluations": KillPoint(path="/v1/runs", count=12, total=PER_DAY * KITS),
    "during-a-write": KillPoint(hold="write:callminer.utterances"),
}


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[tuple[object, ...]]]:
    """The warehouse of one uninterrupted run of the same partition, same sandbox data."""
    root = tmp_path_factory.mktemp("clean")
    lake = lake_settings(root)
    with dg.instance_for_test(temp_dir=str(root)) as instance, serve(CONFIG) as server:
        result = materialize(
            instance, sandbox_env(server.url, lake), SELECT.split(","), partition_key=DAY
        )
        assert result.success
    return snapshot(lake, TABLES)


@pytest.fixture
def home(tmp_path: Path) -> Path:
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text((REPO / "dagster.yaml").read_text())
    return home


def _env(tmp_path: Path, home: Path, server: SandboxServer, **extra: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("CALLMINER_", "SEMARIZE_"))}
    return {
        **base,
        **sandbox_env(server.url, lake_settings(tmp_path)),
        "DAGSTER_HOME": str(home),
        "AGENT_ROSTER_PATH": str(tmp_path / "roster.csv"),
        "EXPORTS_DIR": str(tmp_path / "exports"),
        "MODELS_DIR": str(tmp_path / "models"),
        **extra,
    }


def _start(cmd: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    # Its own process group: the kill takes the run worker and any step process with it.
    return subprocess.Popen(  # noqa: S603 - our own CLI with fixed arguments
        cmd,
        cwd=REPO,
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def _kill_when(proc: subprocess.Popen[bytes], reached: Callable[[], bool], log: Path) -> None:
    deadline = time.monotonic() + KILL_DEADLINE_S
    while not reached():
        assert proc.poll() is None, (
            f"the run ended before the kill point:\n{log.read_text()[-3000:]}"
        )
        assert time.monotonic() < deadline, "kill point not reached in time"
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)


def _wedged(home: Path) -> Iterator[str]:
    """Runs left STARTED with a pool slot taken: what the kill leaves behind."""
    with dg.DagsterInstance.from_config(str(home)) as instance:
        storage = instance.event_log_storage
        holders = {
            slot.run_id
            for key in storage.get_concurrency_keys()
            for slot in storage.get_concurrency_info(key).claimed_slots
        }
        for run in instance.get_runs():
            if run.status == dg.DagsterRunStatus.STARTED and run.run_id in holders:
                yield run.run_id


def _statuses(home: Path) -> list[dg.DagsterRunStatus]:
    with dg.DagsterInstance.from_config(str(home)) as instance:
        return sorted((r.status for r in instance.get_runs()), key=str)


def _rerun(cmd: list[str], env: dict[str, str]) -> tuple[subprocess.CompletedProcess[str], float]:
    t0 = time.monotonic()
    proc = subprocess.run(  # noqa: S603 - our own CLI with fixed arguments
        cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600
    )
    return proc, time.monotonic() - t0


@pytest.mark.parametrize("point", list(KILL_POINTS))
def test_a_partition_run_killed_then_run_again_equals_a_clean_run(
    point: str, tmp_path: Path, home: Path, clean: dict[str, list[tuple[object, ...]]]
) -> None:
    kill = KILL_POINTS[point]
    marker = tmp_path / "held"
    cmd = dagster_materialize(SELECT, DAY)
    with serve(CONFIG) as server:
        env = _env(tmp_path, home, server)
        held = {"CALLMINER_HOLD_AT": kill.hold or "", "CALLMINER_HOLD_FILE": str(marker)}
        log = tmp_path / "killed.log"
        proc = _start(cmd, {**env, **held}, log)
        _kill_when(proc, lambda: kill.reached(server, marker), log)
        assert kill.was_mid_way(server), "the kill came after the step had sent everything"
        assert list(_wedged(home)), "the kill left nothing to recover from"

        rerun, seconds = _rerun(cmd, env)

    assert rerun.returncode == 0, rerun.stderr[-4000:]
    assert "1 run(s) whose process is gone marked failed" in rerun.stderr
    print(f"kill point {point}: re-run recovered and finished in {seconds:.1f} s")
    assert _statuses(home) == [dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.SUCCESS]
    assert not list(_wedged(home))
    assert snapshot(lake_settings(tmp_path), TABLES) == clean


def test_make_run_killed_and_started_again_recovers(
    tmp_path: Path, home: Path, clean: dict[str, list[tuple[object, ...]]]
) -> None:
    """The headless CLI (``make run``'s path), killed inside its evaluations write."""
    Generator(seed=CONFIG.seed, per_day=PER_DAY).write_roster_csv(tmp_path / "roster.csv")
    cmd = [sys.executable, "-m", "callminer_assets", "run", "--start", DAY, "--end", DAY]
    marker = tmp_path / "held"
    with serve(CONFIG) as server:
        env = _env(tmp_path, home, server)
        held = {
            "CALLMINER_HOLD_AT": "write:semarize.evaluations",
            "CALLMINER_HOLD_FILE": str(marker),
        }
        log = tmp_path / "killed.log"
        _kill_when(_start(cmd, {**env, **held}, log), marker.exists, log)
        assert list(_wedged(home))

        rerun, seconds = _rerun(cmd, env)

    assert rerun.returncode == 0, (rerun.stdout + rerun.stderr)[-4000:]
    assert "recovered: 1 run(s) whose process is gone marked failed" in rerun.stdout
    print(f"make run path: re-run recovered and finished in {seconds:.1f} s")
    assert not list(_wedged(home))
    assert snapshot(lake_settings(tmp_path), TABLES) == clean


def test_sigterm_ends_a_cli_run_waiting_for_a_slot(tmp_path: Path, home: Path) -> None:
    """A run queued behind another one's pool slot stops within seconds of SIGTERM, marked."""
    from callminer_assets.defs.callminer.assets import interactions

    pool = interactions.op.pool
    assert pool, "the interactions step is in no pool: nothing to wait for"
    with dg.DagsterInstance.from_config(str(home)) as instance:
        instance.event_log_storage.set_concurrency_slots(pool, 1)
    Generator(seed=CONFIG.seed, per_day=PER_DAY).write_roster_csv(tmp_path / "roster.csv")
    marker = tmp_path / "held"
    with serve(CONFIG) as server:
        env = _env(tmp_path, home, server)
        holder_log, waiter_log = tmp_path / "holder.log", tmp_path / "waiter.log"
        holder = _start(
            [*_CLI, "--start", DAY, "--end", DAY],
            {
                **env,
                "CALLMINER_HOLD_AT": "interactions:before-first-write",
                "CALLMINER_HOLD_FILE": str(marker),
            },
            holder_log,
        )
        try:
            _wait_for(marker.exists, holder_log)
            waiter = _start(
                [*_CLI, "--start", "2025-02-12", "--end", "2025-02-12"],
                env,
                waiter_log,
            )
            _wait_for(lambda: "blocked by limit" in waiter_log.read_text(), waiter_log)
            t0 = time.monotonic()
            waiter.send_signal(signal.SIGTERM)
            code = waiter.wait(timeout=60)
            stopped_in = time.monotonic() - t0
        finally:
            os.killpg(holder.pid, signal.SIGKILL)
            holder.wait(timeout=30)
    assert code == 143, waiter_log.read_text()[-3000:]
    assert stopped_in < 15
    print(f"SIGTERM while waiting for a slot: stopped in {stopped_in:.1f} s")
    with dg.DagsterInstance.from_config(str(home)) as instance:
        statuses = {r.status for r in instance.get_runs()}
        assert dg.DagsterRunStatus.CANCELED in statuses
        waiting = instance.event_log_storage.get_concurrency_info(pool).pending_steps
        canceled = {
            r.run_id for r in instance.get_runs() if r.status == dg.DagsterRunStatus.CANCELED
        }
        assert not [s for s in waiting if s.run_id in canceled]


def _wait_for(reached: Callable[[], bool], log: Path) -> None:
    deadline = time.monotonic() + KILL_DEADLINE_S
    while not reached():
        assert time.monotonic() < deadline, log.read_text()[-3000:]
        time.sleep(0.05)
