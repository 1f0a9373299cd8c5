"""Real-time path end to end: a signed CallMiner event reaches the warehouse.

signed POST -> listener (subprocess, loopback) -> SQLite inbox -> inbox sensor tick
-> the run it requests, executed -> the interaction is in DuckDB.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from datetime import date
from pathlib import Path

import dagster as dg
import httpx

from callminer_assets.defs.sensors import build_webhook_inbox_sensor
from callminer_assets.lib.settings import WarehouseSettings
from callminer_assets.sandbox.app import SandboxConfig
from callminer_assets.sandbox.generator import Generator
from callminer_assets.sandbox.server import serve
from callminer_assets.webhook.app import sign
from tests.defs.helpers import EXTRACT, materialize, rows, sandbox_env

SECRET = "realtime-test-secret"  # a test value, not a credential
DAY = "2025-02-11"


def _start_listener(inbox: Path) -> tuple[subprocess.Popen[str], str]:
    env = {**os.environ, "CALLMINER_WEBHOOK_SECRET": SECRET}
    proc = subprocess.Popen(
        [sys.executable, "-m", "callminer_assets.webhook", "--port", "0", "--inbox", str(inbox)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    line: list[str] = []
    reader = threading.Thread(target=lambda: line.append(proc.stdout.readline()), daemon=True)  # type: ignore[union-attr]
    reader.start()
    reader.join(timeout=20)
    assert line and "http://" in line[0], line
    url = line[0].split("listening on ", 1)[1].split()[0]
    return proc, url


def test_a_signed_event_flows_from_the_listener_to_the_warehouse(
    dagster_home: dg.DagsterInstance, lake: WarehouseSettings, tmp_path: Path
) -> None:
    config = SandboxConfig(seed=12, per_day=6, pending_fraction=0.0)
    interaction = next(
        r["id"]
        for r in Generator(seed=12, per_day=6).interactions(date.fromisoformat(DAY))
        if isinstance(r, dict)
    )
    inbox = tmp_path / "inbox.sqlite3"
    proc, url = _start_listener(inbox)
    try:
        body = json.dumps(
            {
                "eventId": "evt_e2e_1",
                "type": "interaction.processed",
                "interactionId": interaction,
                "channel": "voice",
                "occurredAt": f"{DAY}T10:00:00Z",
            }
        ).encode()
        ts = str(int(time.time()))
        answer = httpx.post(
            url,
            content=body,
            headers={
                "Content-Type": "application/json",
                "X-CallMiner-Timestamp": ts,
                "X-CallMiner-Signature": sign(SECRET, ts, body),
            },
            timeout=10,
        )
        assert answer.status_code in (200, 202), answer.text
    finally:
        proc.terminate()
        proc.wait(timeout=10)

    sensor = build_webhook_inbox_sensor(inbox_path=inbox)
    tick = sensor(dg.build_sensor_context(instance=dagster_home))
    assert isinstance(tick, dg.SensorResult)
    requests = tick.run_requests or []
    assert [r.partition_key for r in requests] == [DAY]
    assert requests[0].tags["callminer/trigger"] == "webhook"

    with serve(config) as server:
        run = materialize(
            dagster_home,
            sandbox_env(server.url, lake),
            EXTRACT,
            partition_key=requests[0].partition_key,
            tags=dict(requests[0].tags),
        )
    assert run.success
    assert dagster_home.get_run_by_id(run.run_id).tags["callminer/trigger"] == "webhook"  # type: ignore[union-attr]
    landed = rows(
        lake,
        "SELECT t.status FROM callminer.interactions i "
        "JOIN callminer.transcripts t USING (interaction_id) WHERE i.interaction_id = ?",
        [interaction],
    )
    assert landed == [("available",)]
