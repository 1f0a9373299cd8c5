"""The three sensors, driven with build_sensor_context against a real Dagster instance,
a real lake on tmp_path and a real SQLite inbox."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl
import pytest
from dagster._core.storage.dagster_run import DagsterRun

from callminer_assets.defs.keys import EVALUATIONS_KEY
from callminer_assets.defs.partitions import RANGE_END_TAG, RANGE_START_TAG
from callminer_assets.defs.resources import CallMinerResource, SandboxResource, WarehouseResource
from callminer_assets.defs.sensors import (
    RAW_KEYS,
    SENSORS,
    TRANSCRIPT_KEYS,
    TRIGGER_TAG,
    SensorSettings,
    build_pending_sensor,
    build_poll_sensor,
    build_webhook_inbox_sensor,
    pending_partitions,
    poll_partition_keys,
)
from callminer_assets.lib.errors import ConfigError
from callminer_assets.lib.tables import TRANSCRIPTS
from callminer_assets.sandbox.app import SandboxConfig
from callminer_assets.sandbox.bulk import BULK_PREFIX
from callminer_assets.sandbox.server import serve
from callminer_assets.warehouse.store import Warehouse
from callminer_assets.webhook.inbox import Inbox
from tests.lake import lake_settings

SETTINGS = SensorSettings()  # defaults: lag 2 h, interval 300 s, backoff 10 min doubling


class Clock:
    """A settable clock for the sensors."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def instance(tmp_path: Path) -> Iterator[dg.DagsterInstance]:
    home = tmp_path / "dagster_home"
    home.mkdir()
    with dg.instance_for_test(temp_dir=str(home)) as inst:
        yield inst


def _tick(
    sensor: dg.SensorDefinition,
    instance: dg.DagsterInstance,
    cursor: str | None,
    **resources: Any,
) -> dg.SensorResult:
    # The poll sensor reads the backend from its resources: REST on the sandbox by default.
    resources.setdefault("callminer", CallMinerResource())
    resources.setdefault("sandbox", SandboxResource())
    context = dg.build_sensor_context(instance=instance, cursor=cursor, resources=resources)
    result = sensor(context)
    assert isinstance(result, dg.SensorResult)
    return result


def _submit(
    instance: dg.DagsterInstance, result: dg.SensorResult, sensor: dg.SensorDefinition
) -> list[str]:
    """Do what the daemon does with the requests: drop a request whose run key already has a
    run of this sensor (``dagster._daemon.sensor.fetch_existing_runs``), create the others as
    runs carrying their tags, not yet started (a QUEUED run would need a code-location
    origin; both count as waiting)."""
    ids = []
    for req in result.run_requests or []:
        if req.run_key and any(
            run.tags.get("dagster/sensor_name") == sensor.name
            for run in instance.get_runs(
                filters=dg.RunsFilter(tags={"dagster/run_key": req.run_key})
            )
        ):
            continue
        run_id = str(uuid.uuid4())
        tags = {
            **req.tags,
            "dagster/partition": str(req.partition_key),
            "dagster/sensor_name": sensor.name,
        }
        if req.run_key:
            tags["dagster/run_key"] = req.run_key
        instance.add_run(
            DagsterRun(
                job_name="__ASSET_JOB",
                run_id=run_id,
                status=dg.DagsterRunStatus.NOT_STARTED,
                tags=tags,
                asset_selection=frozenset(req.asset_selection or RAW_KEYS),
            )
        )
        ids.append(run_id)
    return ids


def _finish(
    instance: dg.DagsterInstance,
    run_ids: list[str],
    event: dg.DagsterEventType = dg.DagsterEventType.RUN_SUCCESS,
) -> None:
    for run_id in run_ids:
        run = instance.get_run_by_id(run_id)
        assert run is not None
        instance.run_storage.handle_run_event(
            run_id, dg.DagsterEvent(event_type_value=event.value, job_name=run.job_name)
        )


def _keys(result: dg.SensorResult) -> list[str]:
    return sorted(str(r.partition_key) for r in result.run_requests or [])


# --------------------------------------------------------------------------- polling


def test_poll_window_days() -> None:
    lag = timedelta(hours=2)
    now = datetime(2025, 3, 10, 1, 0, tzinfo=UTC)
    assert poll_partition_keys(None, now, lag, 7) == ["2025-03-09", "2025-03-10"]
    later = datetime(2025, 3, 10, 5, 0, tzinfo=UTC)
    assert poll_partition_keys(later - timedelta(minutes=5), later, lag, 7) == ["2025-03-10"]
    week = datetime(2025, 3, 1, tzinfo=UTC)
    assert len(poll_partition_keys(week, later, lag, 7)) == 7  # capped after downtime


def test_poll_requests_lag_window_once(instance: dg.DagsterInstance) -> None:
    clock = Clock(datetime(2025, 3, 10, 1, 0, tzinfo=UTC))
    sensor = build_poll_sensor(SETTINGS, clock)

    first = _tick(sensor, instance, None)
    # today, and yesterday because [01:00 - 2 h, 01:00) reaches back into it
    assert _keys(first) == ["2025-03-09", "2025-03-10"]
    for req in first.run_requests or []:
        assert req.tags[TRIGGER_TAG] == "poll"
        assert set(req.asset_selection or []) == set(RAW_KEYS)
    assert first.cursor is not None and "2025-03-10T01:00:00" in first.cursor

    # The same tick evaluated again (daemon retry) gives the same run keys.
    again = _tick(sensor, instance, None)
    assert [r.run_key for r in again.run_requests or []] == [
        r.run_key for r in first.run_requests or []
    ]

    run_ids = _submit(instance, first, sensor)
    # Second tick five minutes later: both partitions have a queued run -> nothing.
    clock.now += timedelta(minutes=5)
    second = _tick(sensor, instance, first.cursor)
    assert _keys(second) == []
    assert second.skip_reason is not None

    # Runs done; re-running the first tick requests the same run keys, which the daemon's
    # own run-key de-duplication (per sensor) drops: no second run.
    _finish(instance, run_ids)
    clock.now = datetime(2025, 3, 10, 1, 0, tzinfo=UTC)
    replay = _tick(sensor, instance, None)
    assert {r.run_key for r in replay.run_requests or []} == {
        r.run_key for r in first.run_requests or []
    }
    assert _submit(instance, replay, sensor) == []

    # 02:30 with cursor 01:05: the lag window still reaches back to 23:05 yesterday.
    clock.now = datetime(2025, 3, 10, 2, 30, tzinfo=UTC)
    third = _tick(sensor, instance, second.cursor)
    assert _keys(third) == ["2025-03-09", "2025-03-10"]
    _finish(instance, _submit(instance, third, sensor))

    # 05:00 with cursor 02:30: the window [00:30, 05:00) is today only.
    clock.now = datetime(2025, 3, 10, 5, 0, tzinfo=UTC)
    fourth = _tick(sensor, instance, third.cursor)
    assert _keys(fourth) == ["2025-03-10"]


def test_poll_skips_partitions_inside_a_running_backfill_range(
    instance: dg.DagsterInstance,
) -> None:
    instance.add_run(
        DagsterRun(
            job_name="__ASSET_JOB",
            run_id=str(uuid.uuid4()),
            status=dg.DagsterRunStatus.STARTED,
            tags={RANGE_START_TAG: "2025-03-01", RANGE_END_TAG: "2025-03-09"},
            asset_selection=frozenset(RAW_KEYS),
        )
    )
    # A running run of some other asset does not block.
    instance.add_run(
        DagsterRun(
            job_name="__ASSET_JOB",
            run_id=str(uuid.uuid4()),
            status=dg.DagsterRunStatus.STARTED,
            tags={"dagster/partition": "2025-03-10"},
            asset_selection=frozenset({EVALUATIONS_KEY}),
        )
    )
    clock = Clock(datetime(2025, 3, 10, 1, 0, tzinfo=UTC))
    result = _tick(build_poll_sensor(SETTINGS, clock), instance, None)
    assert _keys(result) == ["2025-03-10"]


# --------------------------------------------------------------------------- pending


def _transcripts(rows: list[tuple[str, date, str, datetime | None]]) -> pl.DataFrame:
    now = datetime(2025, 3, 10, tzinfo=UTC)
    frame = pl.DataFrame(
        {
            "interaction_id": [r[0] for r in rows],
            "interaction_date": [r[1] for r in rows],
            "channel": ["voice"] * len(rows),
            "status": [r[2] for r in rows],
            "format": [None if r[2] != "available" else "ovts" for r in rows],
            "utterance_count": [0 if r[2] != "available" else 3 for r in rows],
            "transcript_text": [None if r[2] != "available" else "agent: hi" for r in rows],
            "transcript_hash": [None] * len(rows),
            "first_seen_pending_at": [r[3] for r in rows],
            "fetched_at": [now] * len(rows),
        },
        schema_overrides={
            "interaction_date": pl.Date,
            "format": pl.String,
            "utterance_count": pl.Int32,
            "transcript_text": pl.String,
            "transcript_hash": pl.String,
            "first_seen_pending_at": pl.Datetime("us", "UTC"),
            "fetched_at": pl.Datetime("us", "UTC"),
        },
    )
    return frame.select(TRANSCRIPTS.column_names)


def test_pending_transcripts_retried_with_backoff_then_resolved(
    instance: dg.DagsterInstance, tmp_path: Path
) -> None:
    lake = lake_settings(tmp_path / "warehouse")
    wh = Warehouse(lake)
    seen = datetime(2025, 3, 9, 12, 0, tzinfo=UTC)
    d8, d9 = date(2025, 3, 8), date(2025, 3, 9)
    wh.replace(
        TRANSCRIPTS,
        _transcripts(
            [
                ("INT-20250308-00001", d8, "pending", seen),
                ("INT-20250308-00002", d8, "pending", seen),
                ("INT-20250309-00001", d9, "available", None),
            ]
        ),
        {"interaction_date": [d8, d9]},
    )
    resource = WarehouseResource(catalog=lake.catalog, data_path=lake.data_path)
    clock = Clock(datetime(2025, 3, 10, 0, 0, tzinfo=UTC))
    sensor = build_pending_sensor(SETTINGS, clock)

    first = _tick(sensor, instance, None, warehouse=resource)
    assert _keys(first) == ["2025-03-08"]
    req = (first.run_requests or [])[0]
    assert req.tags[TRIGGER_TAG] == "pending-retry"
    assert set(req.asset_selection or []) == set(TRANSCRIPT_KEYS)
    _finish(instance, _submit(instance, first, sensor))

    clock.now += timedelta(minutes=5)  # backoff 10 min: not due yet
    second = _tick(sensor, instance, first.cursor, warehouse=resource)
    assert _keys(second) == []
    clock.now += timedelta(minutes=6)  # due: attempt 2, next wait 20 min
    third = _tick(sensor, instance, second.cursor, warehouse=resource)
    assert _keys(third) == ["2025-03-08"]
    assert (third.run_requests or [])[0].tags["callminer/attempt"] == "2"
    assert (third.run_requests or [])[0].run_key != req.run_key
    _finish(instance, _submit(instance, third, sensor))
    clock.now += timedelta(minutes=15)
    assert _keys(_tick(sensor, instance, third.cursor, warehouse=resource)) == []

    # The transcripts arrive (a run replaced the partition): nothing left to retry.
    wh.replace(
        TRANSCRIPTS,
        _transcripts(
            [
                ("INT-20250308-00001", d8, "available", seen),
                ("INT-20250308-00002", d8, "available", seen),
            ]
        ),
        {"interaction_date": [d8]},
    )
    clock.now += timedelta(hours=1)
    done = _tick(sensor, instance, third.cursor, warehouse=resource)
    assert _keys(done) == []
    assert done.cursor == '{"partitions": {}}'


def test_pending_past_give_up_retried_until_marked_missing(
    instance: dg.DagsterInstance, tmp_path: Path
) -> None:
    lake = lake_settings(tmp_path / "warehouse")
    wh = Warehouse(lake)
    day = date(2025, 3, 1)
    seen = datetime(2025, 3, 1, tzinfo=UTC)
    wh.replace(
        TRANSCRIPTS,
        _transcripts([("INT-20250301-00001", day, "pending", seen)]),
        {"interaction_date": [day]},
    )
    assert [p.partition_key for p in pending_partitions(wh)] == ["2025-03-01"]
    resource = WarehouseResource(catalog=lake.catalog, data_path=lake.data_path)
    # Attempts made before give-up: the backoff has reached its cap (4 h).
    cursor = (
        '{"partitions": {"2025-03-01": {"attempts": 60, "next_at": "2025-03-04T07:00:00+00:00"}}}'
    )
    clock = Clock(seen + timedelta(hours=80))  # give-up window (72 h) has passed
    sensor = build_pending_sensor(SETTINGS, clock)
    final = _tick(sensor, instance, cursor, warehouse=resource)
    assert _keys(final) == ["2025-03-01"]
    assert (final.run_requests or [])[0].tags["callminer/past_give_up"] == "true"
    run_ids = _submit(instance, final, sensor)
    # While that run is queued, nothing more.
    clock.now += timedelta(hours=5)
    waiting = _tick(sensor, instance, final.cursor, warehouse=resource)
    assert _keys(waiting) == []

    # It fails: the row is still pending, so after the capped backoff it is requested again.
    _finish(instance, run_ids, dg.DagsterEventType.RUN_FAILURE)
    clock.now += timedelta(minutes=1)
    again = _tick(sensor, instance, waiting.cursor, warehouse=resource)
    assert _keys(again) == ["2025-03-01"]
    assert _submit(instance, again, sensor)  # a new run key, not de-duplicated away
    clock.now += timedelta(hours=1)
    assert _keys(_tick(sensor, instance, again.cursor, warehouse=resource)) == []

    # The next run succeeds and marks the row missing: the day drops out for good.
    wh.replace(
        TRANSCRIPTS,
        _transcripts([("INT-20250301-00001", day, "missing", seen)]),
        {"interaction_date": [day]},
    )
    clock.now += timedelta(days=1)
    done = _tick(sensor, instance, again.cursor, warehouse=resource)
    assert _keys(done) == []
    assert done.cursor == '{"partitions": {}}'


def test_pending_without_warehouse_is_a_skip(instance: dg.DagsterInstance, tmp_path: Path) -> None:
    lake = lake_settings(tmp_path / "none")
    resource = WarehouseResource(catalog=lake.catalog, data_path=lake.data_path)
    result = _tick(build_pending_sensor(SETTINGS), instance, None, warehouse=resource)
    assert _keys(result) == [] and result.skip_reason is not None
    assert not (tmp_path / "none").exists()  # a sensor tick creates no lake


# --------------------------------------------------------------------------- webhook


def _event(n: int, interaction: str, occurred: str | None) -> dict[str, Any]:
    event: dict[str, Any] = {
        "eventId": f"evt_{n}",
        "type": "interaction.processed",
        "interactionId": interaction,
        "channel": "voice",
    }
    if occurred:
        event["occurredAt"] = occurred
    return event


def test_webhook_events_become_batched_requests_then_consumed(
    instance: dg.DagsterInstance, tmp_path: Path
) -> None:
    inbox = Inbox(tmp_path / "inbox.sqlite3")
    inbox.store(_event(1, "INT-20250309-00001", "2025-03-09T10:00:00Z"))
    inbox.store(_event(2, "INT-20250309-00002", "2025-03-09T11:00:00Z"))
    inbox.store(_event(3, "INT-20250309-00003", "2025-03-10T00:20:00Z"))  # processed after midnight
    inbox.store(_event(4, "INT-20250310-00001", None))
    clock = Clock(datetime(2025, 3, 10, 1, 0, tzinfo=UTC))
    sensor = build_webhook_inbox_sensor(SETTINGS, inbox.path, clock)

    first = _tick(sensor, instance, None)
    assert _keys(first) == ["2025-03-09", "2025-03-10"]  # one run per day, not per event
    tags = {str(r.partition_key): r.tags for r in first.run_requests or []}
    assert tags["2025-03-09"][TRIGGER_TAG] == "webhook"
    assert tags["2025-03-09"]["callminer/events"] == "3"
    # Not consumed until the tick's requests are committed (next tick).
    assert len(inbox.unconsumed()) == 4
    _submit(instance, first, sensor)

    second = _tick(sensor, instance, first.cursor)
    assert _keys(second) == []
    assert inbox.unconsumed() == []

    # A new event while a run of its day is queued: covered by that run, consumed.
    inbox.store(_event(5, "INT-20250310-00002", "2025-03-10T00:50:00Z"))
    third = _tick(sensor, instance, second.cursor)
    assert _keys(third) == []
    assert inbox.unconsumed() == []

    # A replayed eventId is stored once and requests nothing new.
    assert not inbox.store(_event(1, "INT-20250309-00001", "2025-03-09T10:00:00Z"))
    assert _keys(_tick(sensor, instance, third.cursor)) == []


def test_webhook_event_waits_while_its_day_is_being_extracted(
    instance: dg.DagsterInstance, tmp_path: Path
) -> None:
    instance.add_run(
        DagsterRun(
            job_name="__ASSET_JOB",
            run_id=str(uuid.uuid4()),
            status=dg.DagsterRunStatus.STARTED,
            tags={"dagster/partition": "2025-03-10"},
            asset_selection=frozenset(RAW_KEYS),
        )
    )
    inbox = Inbox(tmp_path / "inbox.sqlite3")
    inbox.store(_event(1, "INT-20250310-00001", "2025-03-10T00:30:00Z"))
    clock = Clock(datetime(2025, 3, 10, 1, 0, tzinfo=UTC))
    sensor = build_webhook_inbox_sensor(SETTINGS, inbox.path, clock)
    first = _tick(sensor, instance, None)
    assert _keys(first) == []
    second = _tick(sensor, instance, first.cursor)
    assert [e.event_id for e in inbox.unconsumed()] == ["evt_1"]  # deferred, not lost
    assert _keys(second) == []


def test_webhook_sensor_without_inbox_is_a_skip(
    instance: dg.DagsterInstance, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CALLMINER_WEBHOOK_INBOX", str(tmp_path / "absent.sqlite3"))
    result = _tick(build_webhook_inbox_sensor(SETTINGS), instance, None)
    assert result.skip_reason is not None
    assert not (tmp_path / "absent.sqlite3").exists()


def test_sensors_load_in_definitions() -> None:
    from callminer_assets.defs.callminer.assets import interactions, transcripts
    from callminer_assets.defs.resources import build_resources

    defs = dg.Definitions(
        assets=[interactions, transcripts], sensors=SENSORS, resources=build_resources({})
    )
    repo = defs.get_repository_def()
    names = {s.name for s in repo.sensor_defs}
    assert names == {
        "callminer_poll_sensor",
        "callminer_pending_transcripts_sensor",
        "callminer_webhook_inbox_sensor",
    }
    for sensor in repo.sensor_defs:
        assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
        assert sensor.description


def test_settings_from_env() -> None:
    cfg = SensorSettings.from_env(
        {"CALLMINER_POLL_INTERVAL_SECONDS": "60", "CALLMINER_POLL_LAG_HOURS": "0.5"}
    )
    assert cfg.poll_interval_s == 60
    assert cfg.poll_lag == timedelta(minutes=30)
    with pytest.raises(ConfigError, match="CALLMINER_POLL_LAG_HOURS"):
        SensorSettings.from_env({"CALLMINER_POLL_LAG_HOURS": "soon"})


# --------------------------------------------------------------------------- bulk backend


def test_bulk_webhook_events_become_one_run_per_range_of_days(
    instance: dg.DagsterInstance, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CALLMINER_BACKEND", "bulk")
    inbox = Inbox(tmp_path / "inbox.sqlite3")
    for n, (iid, at) in enumerate(
        [
            ("INT-20250307-00001", "2025-03-07T10:00:00Z"),
            ("INT-20250308-00001", "2025-03-08T10:00:00Z"),
            ("INT-20250309-00001", "2025-03-09T10:00:00Z"),
            ("INT-20250305-00001", "2025-03-05T10:00:00Z"),
        ]
    ):
        inbox.store(_event(n, iid, at))
    clock = Clock(datetime(2025, 3, 10, 1, 0, tzinfo=UTC))
    first = _tick(build_webhook_inbox_sensor(SETTINGS, inbox.path, clock), instance, None)
    ranges = sorted(
        (r.tags[RANGE_START_TAG], r.tags[RANGE_END_TAG]) for r in first.run_requests or []
    )
    assert ranges == [("2025-03-05", "2025-03-05"), ("2025-03-07", "2025-03-09")]


def test_bulk_poll_exports_new_and_updated_then_requests_the_changed_days(
    instance: dg.DagsterInstance, tmp_path: Path
) -> None:
    config = SandboxConfig(seed=4, per_day=5, bulk_job_seconds=60, bulk_clock_speed=60_000)
    clock = Clock(datetime(2025, 3, 10, 1, 0, tzinfo=UTC))
    sensor = build_poll_sensor(SETTINGS, clock)
    with serve(config) as server:
        callminer = CallMinerResource(
            backend="bulk",
            auth_url=server.url,
            api_url=f"{server.url}{BULK_PREFIX}",
            client_id="sandbox",
            client_secret="sandbox",
            tenant_timezone="America/New_York",
            bulk_staging_dir=str(tmp_path / "staging"),
        )
        started = _tick(sensor, instance, None, callminer=callminer)
        assert not started.run_requests
        (job,) = server.state.bulk.jobs.values()
        assert job["Duration"]["SearchMode"] == "NewAndUpdated"
        assert job["Duration"]["Custom"]["StartDate"] == "2025-03-09T00:00:00Z"
        assert job["DataTypes"] == ["Contacts"]
        running = _tick(sensor, instance, started.cursor, callminer=callminer)
        assert running.skip_reason is not None and "still running" in str(running.skip_reason)
        done = _tick(sensor, instance, running.cursor, callminer=callminer)
        # The change feed is deleted at once: nothing of it is stored.
        assert not server.state.bulk.jobs and len(server.state.bulk.deleted) == 2
    (request,) = done.run_requests or []
    assert (request.tags[RANGE_START_TAG], request.tags[RANGE_END_TAG]) == (
        "2025-03-09",
        "2025-03-10",
    )
    assert request.tags[TRIGGER_TAG] == "poll"
    assert done.cursor is not None and "2025-03-10T01:00:00" in done.cursor
    assert "job" not in done.cursor
