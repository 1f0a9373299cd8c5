"""``python -m callminer_assets rescore``: re-score stored transcripts with a kit's new version.

An explicit, costed action: first the number of runs it will start and an estimate of their
input tokens from the usage already recorded, then (only with ``--yes``, or a "y" at the
prompt) the Dagster job ``rescore``'s assets over range runs of at most ``CHUNK_DAYS`` days.
Each range stores what it paid for, so an interrupted re-score resumes where it stopped and
a second one starts no runs: the evaluations step keys what was paid by (transcript hash,
kit, kit version, evaluator).
"""

from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import dagster as dg

from callminer_assets.defs.partitions import RANGE_END_TAG, RANGE_START_TAG
from callminer_assets.defs.semarize.rescore import RESCORE_SELECTION, run_config
from callminer_assets.lib.errors import ConfigError
from callminer_assets.lib.tables import EVALUATIONS, INTERACTIONS, TRANSCRIPTS

CHUNK_DAYS = 31
"""Days per range run: a failure loses at most this much progress (the rest is stored)."""


@dataclass(frozen=True, slots=True)
class Plan:
    """What a re-score would do: runs to start and their estimated input tokens."""

    kit: str
    version: str
    evaluator: str
    days: list[date]
    runs: int
    tokens: int
    priced_exactly: int
    recorded_runs: int

    def describe(self) -> str:
        span = f"{self.days[0]} .. {self.days[-1]}" if self.days else "no days"
        if not self.runs:
            cost = "nothing to pay"
        elif self.recorded_runs:
            cost = (
                f"about {self.tokens:,} input tokens (estimated from the usage already recorded: "
                f"{self.priced_exactly} of {self.runs} priced by the transcript's own earlier run, "
                f"the rest at the kit's mean)"
            )
        else:
            cost = "input tokens unknown (no usage recorded yet)"
        return (
            f"rescore {self.kit} at version {self.version} ({self.evaluator}), {span}: "
            f"{self.runs} runs to start, {cost}"
        )


def _days(start: date, end: date) -> list[date]:
    return [start + timedelta(days=n) for n in range((end - start).days + 1)]


def plan(kit: str, version: str | None, start: date, end: date, resources: dict[str, Any]) -> Plan:
    """Count the runs the re-score would start, from the stored data; starts nothing.

    Raises ``ConfigError`` for an unknown kit or a ``version`` that is not the current one.
    """
    from callminer_assets.defs.semarize.assets import EvaluationsConfig, kit_versions, plan_kits
    from callminer_assets.transform import evaluations as ev

    semarize, sandbox = resources["semarize"], resources["sandbox"]
    log = logging.getLogger("callminer_assets.rescore")
    try:
        kits = plan_kits(
            kit_versions(semarize, sandbox, log),
            EvaluationsConfig(rescore_kit=kit, rescore_version=version),
        )
    except dg.Failure as exc:
        raise ConfigError(str(exc.description)) from None
    days = _days(start, end)
    wh = resources["warehouse"].warehouse()
    where = {"interaction_date": days}
    existing = wh.read(EVALUATIONS, where)
    requests = ev.plan_requests(
        wh.read(TRANSCRIPTS, where),
        wh.read(INTERACTIONS, where),
        existing,
        kits,
        semarize.evaluator_name,
        rescore=[kit],
    )
    tokens, exact, recorded = ev.token_estimate(requests, existing)
    return Plan(
        kit, kits[kit], semarize.evaluator_name, days, len(requests), tokens, exact, recorded
    )


def execute(p: Plan, resources: dict[str, Any], instance: dg.DagsterInstance) -> bool:
    """The re-score as range runs of at most ``CHUNK_DAYS`` days; False when a run failed."""
    from callminer_assets.definitions import ALL_ASSETS

    for i in range(0, len(p.days), CHUNK_DAYS):
        first, last = str(p.days[i]), str(p.days[min(i + CHUNK_DAYS, len(p.days)) - 1])
        print(f"== rescore {p.kit} {first} .. {last}", flush=True)
        result = dg.materialize(
            ALL_ASSETS,
            instance=instance,
            selection=RESCORE_SELECTION,
            resources=resources,
            run_config=run_config(p.kit, p.version),
            tags={RANGE_START_TAG: first, RANGE_END_TAG: last, "callminer/trigger": "rescore"},
            raise_on_error=False,
        )
        if not result.success:
            print(
                f"!! run {result.run_id} failed; run the same command again to resume "
                "(what was stored is not paid again)",
                flush=True,
            )
            return False
    return True


def arguments(p: argparse.ArgumentParser) -> None:
    """The ``rescore`` subcommand's options (registered in ``callminer_assets.cli``)."""
    p.add_argument("--kit", required=True, help="kit code, e.g. qa_compliance")
    p.add_argument("--version", help="the version you expect to be current (checked)")
    p.add_argument("--start", type=date.fromisoformat, required=True, help="first UTC day")
    p.add_argument("--end", type=date.fromisoformat, required=True, help="last UTC day")
    p.add_argument("--yes", action="store_true", help="start the runs without asking")


def _confirmed(yes: bool) -> bool:
    if yes:
        return True
    if not sys.stdin.isatty():
        print("nothing started: add --yes to start these runs")
        return False
    answer = input("start them? [y/N] ").strip().lower()
    if answer not in ("y", "yes"):
        print("nothing started")
        return False
    return True


def command(args: argparse.Namespace) -> int:
    """The ``rescore`` subcommand: plan, print, ask, execute; 0 when done, 1 failed, 2 refused."""
    if args.end < args.start:
        print("error: --end is before --start", file=sys.stderr)
        return 2
    try:
        from callminer_assets.defs.resources import build_resources

        resources = build_resources()
        p = plan(args.kit, args.version, args.start, args.end, resources)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(p.describe(), flush=True)
    if p.runs == 0:
        print("nothing to re-score: every transcript already has this version")
        return 0
    if not _confirmed(args.yes):
        return 0
    ok = execute(p, resources, dg.DagsterInstance.get())
    left = plan(args.kit, p.version, args.start, args.end, resources)
    print(f"== rescore done: {p.runs - left.runs} of {p.runs} runs stored, {left.runs} left")
    return 0 if ok and left.runs == 0 else 1
