"""Sensors that keep the raw daily partitions fresh without anyone clicking.

* ``callminer_poll_sensor`` (trigger ``poll``): every few minutes, today plus every
  day overlapping ``[cursor - lag window, now)``, because transcripts land late.
  The cursor is the high-water mark (the previous tick's time).
* ``callminer_pending_transcripts_sensor`` (trigger ``pending-retry``): partitions
  whose ``callminer.transcripts`` rows still hold ``pending`` rows, re-requested
  with exponential backoff (capped) for as long as any row stays pending: past the
  give-up window a run marks them ``missing``, and if that run fails they are still
  pending and requested again.
* ``callminer_webhook_inbox_sensor`` (trigger ``webhook``): new events in the SQLite
  inbox become one run request per partition, batched. Events are marked consumed
  on the *next* tick: the cursor holds the ids a tick emitted, and Dagster only
  stores a cursor together with that tick's run requests, so an event is never
  marked consumed before its run request exists (at-least-once).

All three skip a partition that already has a queued or running run of the raw
assets, and derive run keys from their inputs (prefixed per sensor) so a re-evaluated
tick requests nothing twice: the sensor daemon drops a request whose run key already
has a run of the same sensor. Settings come from the environment (see ``SensorSettings``).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg

from callminer_assets.defs.bulk_source import BulkSource
from callminer_assets.defs.keys import (
    INTERACTIONS_KEY,
    QUARANTINE_KEY,
    TRANSCRIPT_QUARANTINE_KEY,
    TRANSCRIPTS_KEY,
    UTTERANCES_KEY,
)
from callminer_assets.defs.partitions import RANGE_END_TAG, RANGE_START_TAG, daily_partitions
from callminer_assets.defs.resources import (
    CallMinerResource,
    SandboxResource,
    WarehouseResource,
)
from callminer_assets.lib.errors import ExportFailed
from callminer_assets.lib.settings import backend_from_env, env_number
from callminer_assets.warehouse.store import Warehouse
from callminer_assets.webhook.inbox import (
    INBOX_ENV,
    Inbox,
    InboxEvent,
    default_inbox_path,
    event_partition_dates,
)

TRIGGER_TAG = "callminer/trigger"
RAW_KEYS: tuple[dg.AssetKey, ...] = (
    INTERACTIONS_KEY,
    QUARANTINE_KEY,
    TRANSCRIPTS_KEY,
    UTTERANCES_KEY,
    TRANSCRIPT_QUARANTINE_KEY,
)
TRANSCRIPT_KEYS: tuple[dg.AssetKey, ...] = (
    TRANSCRIPTS_KEY,
    UTTERANCES_KEY,
    TRANSCRIPT_QUARANTINE_KEY,
)

# "Queued or running": a run in any of these states will still read the source.
ACTIVE_STATUSES = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
]
_PARTITION_TAG = "dagster/partition"

Clock = Callable[[], datetime]


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class SensorSettings:
    """Every knob of the three sensors, read once from the environment."""

    poll_interval_s: int = 300
    poll_lag: timedelta = timedelta(hours=2)
    poll_max_days: int = 7
    pending_interval_s: int = 600
    pending_backoff: timedelta = timedelta(minutes=10)
    pending_backoff_max: timedelta = timedelta(hours=4)
    give_up: timedelta = timedelta(hours=72)
    webhook_interval_s: int = 30
    webhook_batch: int = 500

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> SensorSettings:
        """``CALLMINER_POLL_INTERVAL_SECONDS`` (300), ``CALLMINER_POLL_LAG_HOURS`` (2),
        ``CALLMINER_POLL_MAX_DAYS`` (7), ``CALLMINER_PENDING_INTERVAL_SECONDS`` (600),
        ``CALLMINER_PENDING_BACKOFF_MINUTES`` (10), ``CALLMINER_PENDING_BACKOFF_MAX_MINUTES``
        (240), ``CALLMINER_TRANSCRIPT_GIVE_UP_HOURS`` (72),
        ``CALLMINER_WEBHOOK_SENSOR_INTERVAL_SECONDS`` (30), ``CALLMINER_WEBHOOK_BATCH`` (500).
        A non-number is a ``ConfigError`` naming the variable.
        """
        env = os.environ if env is None else env
        return cls(
            poll_interval_s=int(env_number(env, "CALLMINER_POLL_INTERVAL_SECONDS", 300)),
            poll_lag=timedelta(hours=env_number(env, "CALLMINER_POLL_LAG_HOURS", 2)),
            poll_max_days=int(env_number(env, "CALLMINER_POLL_MAX_DAYS", 7)),
            pending_interval_s=int(env_number(env, "CALLMINER_PENDING_INTERVAL_SECONDS", 600)),
            pending_backoff=timedelta(
                minutes=env_number(env, "CALLMINER_PENDING_BACKOFF_MINUTES", 10)
            ),
            pending_backoff_max=timedelta(
                minutes=env_number(env, "CALLMINER_PENDING_BACKOFF_MAX_MINUTES", 240)
            ),
            give_up=timedelta(hours=env_number(env, "CALLMINER_TRANSCRIPT_GIVE_UP_HOURS", 72)),
            webhook_interval_s=int(
                env_number(env, "CALLMINER_WEBHOOK_SENSOR_INTERVAL_SECONDS", 30)
            ),
            webhook_batch=int(env_number(env, "CALLMINER_WEBHOOK_BATCH", 500)),
        )


# --------------------------------------------------------------------------- helpers


def _valid_keys(keys: Iterable[str], now: datetime) -> list[str]:
    """Keep keys that are partitions of ``daily_partitions`` at ``now``, sorted."""
    wanted = set(keys)
    if not wanted:
        return []
    existing = daily_partitions.get_partition_keys(current_time=now)
    return [k for k in existing if k in wanted]


def _run_partitions(
    instance: dg.DagsterInstance,
    statuses: list[dg.DagsterRunStatus],
    asset_keys: Iterable[dg.AssetKey],
) -> set[str]:
    """Daily partition keys of runs in ``statuses`` that touch any of ``asset_keys``.

    Single-partition runs carry ``dagster/partition``; backfill runs over a range
    (``BackfillPolicy.multi_run``) carry the range's start and end instead.
    """
    wanted = set(asset_keys)
    keys: set[str] = set()
    for run in instance.get_runs(filters=dg.RunsFilter(statuses=statuses)):
        if run.asset_selection is not None and not (set(run.asset_selection) & wanted):
            continue
        tags = run.tags
        if _PARTITION_TAG in tags:
            keys.add(tags[_PARTITION_TAG])
        elif RANGE_START_TAG in tags and RANGE_END_TAG in tags:
            try:
                keys.update(
                    daily_partitions.get_partition_keys_in_range(
                        dg.PartitionKeyRange(tags[RANGE_START_TAG], tags[RANGE_END_TAG])
                    )
                )
            except Exception:  # a range of another partitions definition: not ours
                continue
    return keys


def active_partitions(instance: dg.DagsterInstance, asset_keys: Iterable[dg.AssetKey]) -> set[str]:
    """Daily partition keys with a queued or running run touching any of ``asset_keys``."""
    return _run_partitions(instance, ACTIVE_STATUSES, asset_keys)


def _load_cursor(cursor: str | None) -> dict[str, Any]:
    if not cursor:
        return {}
    try:
        value = json.loads(cursor)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _digest(parts: Iterable[str]) -> str:
    return hashlib.sha256("\n".join(sorted(parts)).encode()).hexdigest()[:16]


# --------------------------------------------------------------------------- polling


def poll_partition_keys(
    cursor_at: datetime | None, now: datetime, lag: timedelta, max_days: int
) -> list[str]:
    """Today plus every day overlapping ``[cursor - lag, now)``, at most ``max_days`` days."""
    start = (cursor_at if cursor_at is not None else now) - lag
    first = max(start.astimezone(UTC).date(), now.date() - timedelta(days=max_days - 1))
    days: list[date] = []
    day = first
    while day <= now.astimezone(UTC).date():
        days.append(day)
        day += timedelta(days=1)
    return [d.isoformat() for d in days]


def build_poll_sensor(
    settings: SensorSettings | None = None, clock: Clock = _utcnow
) -> dg.SensorDefinition:
    """The polling sensor; ``clock`` is injectable so tests can move time."""
    cfg = settings or SensorSettings.from_env()

    @dg.sensor(
        name="callminer_poll_sensor",
        minimum_interval_seconds=cfg.poll_interval_s,
        asset_selection=list(RAW_KEYS),
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=(
            f"Incremental polling: every {cfg.poll_interval_s}s requests today and every UTC day "
            f"overlapping [cursor - {cfg.poll_lag}, now) for the raw CallMiner assets "
            "(transcripts land late). Cursor = high-water mark; skips partitions with a "
            "queued/running run. Tag callminer/trigger=poll."
        ),
        tags={TRIGGER_TAG: "poll"},
    )
    def callminer_poll_sensor(
        context: dg.SensorEvaluationContext, callminer: CallMinerResource, sandbox: SandboxResource
    ) -> dg.SensorResult:
        now = clock().astimezone(UTC)
        state = _load_cursor(context.cursor)
        cursor_at = datetime.fromisoformat(state["hwm"]) if "hwm" in state else None
        if cursor_at is not None and cursor_at > now:
            cursor_at = now  # a clock step backwards must not hide days
        if callminer.backend == "bulk":
            return asyncio.run(_bulk_poll(context, cfg, now, cursor_at, state, callminer, sandbox))
        keys = _valid_keys(
            poll_partition_keys(cursor_at, now, cfg.poll_lag, cfg.poll_max_days), now
        )
        busy = active_partitions(context.instance, RAW_KEYS)
        # One bucket per interval: re-evaluating the same tick yields the same run keys.
        bucket = int(now.timestamp()) // max(cfg.poll_interval_s, 1)
        requests = []
        for key in keys:
            run_key = f"poll|{key}|{bucket}"
            if key in busy:
                continue
            requests.append(
                dg.RunRequest(
                    run_key=run_key,
                    partition_key=key,
                    asset_selection=list(RAW_KEYS),
                    tags={TRIGGER_TAG: "poll"},
                )
            )
        skipped = sorted(set(keys) & busy)
        if skipped:
            context.log.info(f"poll: skipping partitions with a queued/running run: {skipped}")
        new_cursor = json.dumps({"hwm": now.isoformat()})
        if not requests:
            return dg.SensorResult(
                skip_reason=dg.SkipReason(f"nothing to request (window {keys})"),
                cursor=new_cursor,
            )
        return dg.SensorResult(run_requests=requests, cursor=new_cursor)

    return callminer_poll_sensor


async def _bulk_poll(
    context: dg.SensorEvaluationContext,
    cfg: SensorSettings,
    now: datetime,
    cursor_at: datetime | None,
    state: dict[str, Any],
    callminer: CallMinerResource,
    sandbox: SandboxResource,
) -> dg.SensorResult:
    """The bulk backend's poll: a ``NewAndUpdated`` export from ``cursor - lag``, one HTTP
    call per tick (start it; then one history poll per tick, so ticks never block), then
    one run per range of consecutive changed days (one export job each)."""
    source = callminer.source(sandbox, logger=context.log)
    assert isinstance(source, BulkSource)
    job = state.get("job")
    try:
        if not isinstance(job, dict):
            since = (cursor_at or now) - cfg.poll_lag
            since = max(since, now - timedelta(days=cfg.poll_max_days))
            job_id = await source.start_changes(since, now)
            pending = {"id": job_id, "since": since.isoformat(), "until": now.isoformat()}
            started = {"hwm": (cursor_at or now).isoformat(), "job": pending}
            return dg.SensorResult(
                skip_reason=dg.SkipReason(f"started NewAndUpdated export job {job_id}"),
                cursor=json.dumps(started),
            )
        if now - datetime.fromisoformat(job["until"]) > timedelta(
            seconds=callminer.bulk_poll_budget_s
        ):
            context.log.warning(
                f"poll: change export job {job['id']} still running past the poll budget; "
                "left on CallMiner, a new one starts next tick"
            )
            return _drop_job(state, "change export past its budget")
        try:
            days = await source.changed_days(job["id"], datetime.fromisoformat(job["since"]))
        except ExportFailed as exc:
            context.log.warning(f"poll: change export failed, retried next tick: {exc}")
            return _drop_job(state, "change export failed")
    finally:
        await source.aclose()
    if days is None:
        return dg.SensorResult(
            skip_reason=dg.SkipReason(f"export job {job['id']} still running"),
            cursor=json.dumps(state),
        )
    busy = active_partitions(context.instance, RAW_KEYS)
    keys = [k for k in _valid_keys((d.isoformat() for d in days), now) if k not in busy]
    requests = range_requests(keys, f"poll-bulk|{job['id']}", {TRIGGER_TAG: "poll"})
    cursor = json.dumps({"hwm": job["until"]})
    if not requests:
        return dg.SensorResult(
            skip_reason=dg.SkipReason("no changed day to request"), cursor=cursor
        )
    return dg.SensorResult(run_requests=requests, cursor=cursor)


def _drop_job(state: dict[str, Any], reason: str) -> dg.SensorResult:
    """Forget the change export (same high-water mark): the next tick starts a new one."""
    return dg.SensorResult(
        skip_reason=dg.SkipReason(reason),
        cursor=json.dumps({k: v for k, v in state.items() if k != "job"}),
    )


def range_requests(keys: Iterable[str], run_key: str, tags: dict[str, str]) -> list[dg.RunRequest]:
    """One run per range of consecutive days: on the bulk backend each run is one export."""
    days = sorted(date.fromisoformat(k) for k in set(keys))
    ranges: list[list[date]] = []
    for day in days:
        if ranges and day - ranges[-1][-1] == timedelta(days=1):
            ranges[-1].append(day)
        else:
            ranges.append([day])
    return [
        dg.RunRequest(
            run_key=f"{run_key}|{r[0]}|{r[-1]}",
            asset_selection=list(RAW_KEYS),
            tags={**tags, RANGE_START_TAG: r[0].isoformat(), RANGE_END_TAG: r[-1].isoformat()},
        )
        for r in ranges
    ]


# --------------------------------------------------------------------------- pending


@dataclass(frozen=True, slots=True)
class PendingPartition:
    """One partition's pending transcripts as stored."""

    partition_key: str
    pending: int
    oldest_pending_at: datetime | None


def pending_partitions(wh: Warehouse) -> list[PendingPartition]:
    """Partitions with ``pending`` transcripts in the warehouse's latest snapshot.

    A DuckLake read never waits on, nor blocks, a running pipeline; a lake not created yet
    has nothing pending (and is not created by a sensor tick).
    """
    if not wh.exists():
        return []
    rows = wh.query(
        "SELECT CAST(interaction_date AS VARCHAR), count(*), min(first_seen_pending_at) "
        "FROM callminer.transcripts WHERE status = ? GROUP BY 1 ORDER BY 1",
        ["pending"],
    ).rows()
    out = []
    for key, count, oldest in rows:
        if isinstance(oldest, datetime) and oldest.tzinfo is None:
            oldest = oldest.replace(tzinfo=UTC)
        out.append(PendingPartition(str(key), int(count), oldest))
    return out


def build_pending_sensor(
    settings: SensorSettings | None = None, clock: Clock = _utcnow
) -> dg.SensorDefinition:
    """The pending-transcript retry sensor; cursor = per-partition attempts and next retry."""
    cfg = settings or SensorSettings.from_env()

    @dg.sensor(
        name="callminer_pending_transcripts_sensor",
        minimum_interval_seconds=cfg.pending_interval_s,
        asset_selection=list(RAW_KEYS),
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=(
            "Re-fetches transcripts still 'pending' in callminer.transcripts, per partition, with "
            f"exponential backoff ({cfg.pending_backoff} doubling, max {cfg.pending_backoff_max}) "
            f"until they arrive or {cfg.give_up} have passed; a run after that marks them "
            f"missing, and is re-requested (at most every {cfg.pending_backoff_max}) while any "
            "stays pending, e.g. after a failed run. Tag callminer/trigger=pending-retry."
        ),
        tags={TRIGGER_TAG: "pending-retry"},
    )
    def callminer_pending_transcripts_sensor(
        context: dg.SensorEvaluationContext, warehouse: WarehouseResource
    ) -> dg.SensorResult:
        now = clock().astimezone(UTC)
        state: dict[str, Any] = _load_cursor(context.cursor).get("partitions", {})
        found = pending_partitions(warehouse.warehouse())
        valid = set(_valid_keys((p.partition_key for p in found), now))
        pending = {p.partition_key: p for p in found if p.partition_key in valid}
        busy = active_partitions(context.instance, TRANSCRIPT_KEYS)
        new_state: dict[str, Any] = {}
        requests = []
        for key, part in sorted(pending.items()):
            entry = dict(state.get(key, {"attempts": 0}))
            attempts = int(entry.get("attempts", 0))
            next_at = datetime.fromisoformat(entry["next_at"]) if "next_at" in entry else None
            expired = part.oldest_pending_at is not None and now - part.oldest_pending_at > (
                cfg.give_up
            )
            due = next_at is None or now >= next_at
            # Past give-up, a run marks the rows 'missing' and the day drops out; a failed
            # run leaves them pending, so keep re-requesting with the capped backoff.
            if key in busy or not due:
                new_state[key] = entry
                continue
            attempts += 1
            # Exponent capped: retries go on past give-up, and 2**n must not overflow timedelta.
            delay = min(cfg.pending_backoff * (2 ** min(attempts - 1, 30)), cfg.pending_backoff_max)
            entry = {"attempts": attempts, "next_at": (now + delay).isoformat()}
            if expired:
                entry["final"] = True  # this run should turn them 'missing'
            new_state[key] = entry
            requests.append(
                dg.RunRequest(
                    # Same pending episode + attempt -> same key: a re-evaluated tick is a no-op.
                    run_key=f"pending-retry|{key}|{part.oldest_pending_at}|{attempts}",
                    partition_key=key,
                    asset_selection=list(TRANSCRIPT_KEYS),
                    tags={
                        TRIGGER_TAG: "pending-retry",
                        "callminer/attempt": str(attempts),
                        "callminer/past_give_up": str(expired).lower(),
                    },
                )
            )
        # Partitions no longer pending drop out of the cursor: they are resolved.
        new_cursor = json.dumps({"partitions": new_state}, sort_keys=True)
        if not requests:
            reason = (
                f"{len(pending)} partition(s) pending, none due" if pending else "nothing pending"
            )
            return dg.SensorResult(skip_reason=dg.SkipReason(reason), cursor=new_cursor)
        return dg.SensorResult(run_requests=requests, cursor=new_cursor)

    return callminer_pending_transcripts_sensor


# --------------------------------------------------------------------------- webhook


def build_webhook_inbox_sensor(
    settings: SensorSettings | None = None,
    inbox_path: str | os.PathLike[str] | None = None,
    clock: Clock = _utcnow,
) -> dg.SensorDefinition:
    """The inbox sensor; ``inbox_path`` defaults to ``$CALLMINER_WEBHOOK_INBOX`` at tick time."""
    cfg = settings or SensorSettings.from_env()

    @dg.sensor(
        name="callminer_webhook_inbox_sensor",
        minimum_interval_seconds=cfg.webhook_interval_s,
        asset_selection=list(RAW_KEYS),
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=(
            "Real-time events: turns new events stored by `python -m callminer_assets.webhook` "
            f"(SQLite inbox, ${INBOX_ENV}) into one run per affected day, batched "
            f"(up to {cfg.webhook_batch} events per tick), then marks them consumed. "
            "Tag callminer/trigger=webhook."
        ),
        tags={TRIGGER_TAG: "webhook"},
    )
    def callminer_webhook_inbox_sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult:
        now = clock().astimezone(UTC)
        path = Path(inbox_path) if inbox_path is not None else default_inbox_path()
        state = _load_cursor(context.cursor)
        if not path.exists():
            return dg.SensorResult(
                skip_reason=dg.SkipReason(f"no webhook inbox at {path} yet"), cursor=context.cursor
            )
        inbox = Inbox(path)
        # The previous tick's requests are committed (its cursor is): consume its events.
        emitted = [str(i) for i in state.get("emitted", [])]
        if emitted:
            inbox.mark_consumed(emitted)
        events = inbox.unconsumed(cfg.webhook_batch)
        by_key: dict[str, list[InboxEvent]] = {}
        for event in events:
            for key in event_partition_dates(event):
                by_key.setdefault(key, []).append(event)
        valid = set(_valid_keys(by_key, now))
        busy = active_partitions(context.instance, RAW_KEYS)
        started = _run_partitions(
            context.instance,
            [dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED],
            RAW_KEYS,
        )

        requests = []
        deferred: set[str] = set()  # events to keep for a later tick
        for key, key_events in sorted(by_key.items()):
            if key not in valid:
                continue  # outside the partitions definition: nothing to refresh
            if key in started:
                # A run already listing this day may have missed the event: retry later.
                deferred.update(e.event_id for e in key_events)
                continue
            if key in busy:
                continue  # a queued run will list the day after the event arrived
            requests.append(
                dg.RunRequest(
                    run_key=f"webhook|{key}|{_digest(e.event_id for e in key_events)}",
                    partition_key=key,
                    asset_selection=list(RAW_KEYS),
                    tags={TRIGGER_TAG: "webhook", "callminer/events": str(len(key_events))},
                )
            )
        if requests and backend_from_env() == "bulk":
            # One export per range of consecutive days instead of one per day.
            keys = [str(r.partition_key) for r in requests]
            digest = _digest(e.event_id for e in events if e.event_id not in deferred)
            requests = range_requests(keys, f"webhook-bulk|{digest}", {TRIGGER_TAG: "webhook"})
        done = [e.event_id for e in events if e.event_id not in deferred]
        new_cursor = json.dumps({"emitted": done})
        if not requests:
            if done:
                inbox.mark_consumed(done)  # nothing to request for them: consume now
                new_cursor = json.dumps({"emitted": []})
            reason = f"{len(events)} new event(s), no partition to request"
            return dg.SensorResult(skip_reason=dg.SkipReason(reason), cursor=new_cursor)
        context.log.info(f"webhook: {len(events)} event(s) -> {len(requests)} run request(s)")
        return dg.SensorResult(run_requests=requests, cursor=new_cursor)

    return callminer_webhook_inbox_sensor


callminer_poll_sensor = build_poll_sensor()
callminer_pending_transcripts_sensor = build_pending_sensor()
callminer_webhook_inbox_sensor = build_webhook_inbox_sensor()

SENSORS: list[dg.SensorDefinition] = [
    callminer_poll_sensor,
    callminer_pending_transcripts_sensor,
    callminer_webhook_inbox_sensor,
]
