"""The real listener over loopback HTTP: every status code, and what lands in the inbox."""

from __future__ import annotations

import json
import signal
import socket
import sqlite3
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
from webhook_harness import SECRET, Listener, now_ts, start_listener, stop_listener

from callminer_assets.webhook.app import MAX_BODY_BYTES, sign
from callminer_assets.webhook.inbox import Inbox


def _event(**overrides: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "eventId": f"evt_{uuid.uuid4().hex}",
        "type": "interaction.processed",
        "interactionId": "INT-20250115-00482",
        "channel": "voice",
        "occurredAt": "2025-01-15T23:30:00-02:00",
    }
    event.update(overrides)
    return event


def _post(
    client: httpx.Client,
    body: bytes,
    *,
    secret: str | None = SECRET,
    ts: int | None = None,
    signature: str | bytes | None = None,
) -> httpx.Response:
    stamp = str(now_ts() if ts is None else ts)
    headers: dict[bytes, bytes] = {
        b"Content-Type": b"application/json",
        b"X-CallMiner-Timestamp": stamp.encode(),
    }
    if signature is not None:
        headers[b"X-CallMiner-Signature"] = (
            signature if isinstance(signature, bytes) else signature.encode()
        )
    elif secret is not None:
        headers[b"X-CallMiner-Signature"] = sign(secret, stamp, body).encode()
    return client.post("/callminer/events", content=body, headers=headers)


def _rows(inbox: Path) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(inbox)
    try:
        return conn.execute("SELECT event_id, body FROM events ORDER BY event_id").fetchall()
    finally:
        conn.close()


def _ids(inbox: Path) -> set[str]:
    return {row[0] for row in _rows(inbox)}


def test_healthz(client: httpx.Client) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}


def test_signed_event_is_stored_with_its_partition(
    client: httpx.Client, listener: Listener
) -> None:
    event = _event()
    resp = _post(client, json.dumps(event).encode())
    assert resp.status_code == 200
    assert resp.json() == {"stored": True, "eventId": event["eventId"]}
    stored = Inbox(listener.inbox).get(event["eventId"])
    assert stored is not None
    assert stored.interaction_id == "INT-20250115-00482"
    assert stored.channel == "voice"
    assert stored.type == "interaction.processed"
    assert stored.occurred_at == "2025-01-15T23:30:00-02:00"
    assert stored.partition_date == "2025-01-16"  # UTC date of occurredAt
    assert stored.consumed_at is None
    assert json.loads(stored.body) == event


def test_event_without_occurred_at_files_under_the_id_date(
    client: httpx.Client, listener: Listener
) -> None:
    event = _event(interactionId="INT-20250301-00001")
    del event["occurredAt"]
    assert _post(client, json.dumps(event).encode()).status_code == 200
    stored = Inbox(listener.inbox).get(event["eventId"])
    assert stored is not None and stored.partition_date == "2025-03-01"


def test_replayed_event_is_stored_once(client: httpx.Client, listener: Listener) -> None:
    event = _event()
    first = _post(client, json.dumps(event).encode())
    again = _post(client, json.dumps(event).encode())
    changed = _post(client, json.dumps({**event, "channel": "chat"}).encode())
    assert [r.status_code for r in (first, again, changed)] == [200, 200, 200]
    assert [r.json()["stored"] for r in (first, again, changed)] == [True, False, False]
    rows = [r for r in _rows(listener.inbox) if r[0] == event["eventId"]]
    assert len(rows) == 1
    assert json.loads(rows[0][1])["channel"] == "voice"  # the first delivery wins


def test_unsigned_and_wrongly_signed_are_401(client: httpx.Client, listener: Listener) -> None:
    before = _ids(listener.inbox)
    body = json.dumps(_event()).encode()
    ts = now_ts()
    good = sign(SECRET, ts, body)
    cases = {
        "unsigned": _post(client, body, secret=None),
        "no timestamp": client.post(
            "/callminer/events", content=body, headers={"X-CallMiner-Signature": good}
        ),
        "wrong secret": _post(client, body, secret="not-the-secret"),
        "tampered body": _post(client, body.replace(b"voice", b"chat!"), ts=ts, signature=good),
        "other timestamp": _post(client, body, ts=ts - 1, signature=good),
        "no prefix": _post(client, body, ts=ts, signature=good.removeprefix("sha256=")),
        "garbage": _post(client, body, signature="sha256=zz"),
        "non-ascii": _post(client, body, signature="sha256=\u00e9\u00e9".encode("latin-1")),
        "bad timestamp": client.post(
            "/callminer/events",
            content=body,
            headers={"X-CallMiner-Timestamp": "soon", "X-CallMiner-Signature": good},
        ),
    }
    assert {name: r.status_code for name, r in cases.items()} == dict.fromkeys(cases, 401)
    assert _ids(listener.inbox) == before


def test_stale_or_future_timestamp_is_401(client: httpx.Client, listener: Listener) -> None:
    before = _ids(listener.inbox)
    body = json.dumps(_event()).encode()
    assert _post(client, body, ts=now_ts() - 6 * 60).status_code == 401
    assert _post(client, body, ts=now_ts() + 6 * 60).status_code == 401
    assert _ids(listener.inbox) == before
    assert _post(client, body, ts=now_ts() - 4 * 60).status_code == 200  # inside the window


def test_malformed_bodies_are_400(client: httpx.Client, listener: Listener) -> None:
    before = _ids(listener.inbox)
    bad: list[bytes] = [
        b"not json",
        b"\xff\xfe",
        b"[]",
        b'"evt"',
        json.dumps({k: v for k, v in _event().items() if k != "eventId"}).encode(),
        json.dumps(_event(eventId=42)).encode(),
        json.dumps(_event(eventId="")).encode(),
        json.dumps(_event(type=None)).encode(),
        json.dumps({k: v for k, v in _event().items() if k != "interactionId"}).encode(),
        json.dumps(_event(channel=["voice"])).encode(),
        json.dumps(_event(occurredAt="yesterday")).encode(),
    ]
    codes = [_post(client, body).status_code for body in bad]
    assert codes == [400] * len(bad)
    assert _ids(listener.inbox) == before


def _raw_request(base_url: str, head: bytes, body: bytes = b"") -> int:
    """Send raw bytes and return the status code (lets us lie about Content-Length)."""
    url = urlsplit(base_url)
    with socket.create_connection((url.hostname, url.port), timeout=10) as sock:
        sock.sendall(head + body)
        data = b""
        while b"\r\n" not in data:
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
    return int(data.split(b" ", 2)[1])


def test_oversize_bodies_are_413(client: httpx.Client, listener: Listener) -> None:
    before = _ids(listener.inbox)
    ts = str(now_ts())
    big = json.dumps(_event(padding="x" * MAX_BODY_BYTES)).encode()
    # 1. declared too large: answered from the headers alone, no body sent at all
    head = (
        b"POST /callminer/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"X-CallMiner-Timestamp: " + ts.encode() + b"\r\n"
        b"X-CallMiner-Signature: " + sign(SECRET, ts, big).encode() + b"\r\n"
        b"Content-Length: " + str(len(big)).encode() + b"\r\n\r\n"
    )
    assert _raw_request(listener.base_url, head) == 413

    # 2. chunked, no Content-Length: cut off while streaming
    def chunks() -> Iterator[bytes]:
        for i in range(0, len(big), 64 * 1024):
            yield big[i : i + 64 * 1024]

    resp = client.post(
        "/callminer/events",
        content=chunks(),
        headers={"X-CallMiner-Timestamp": ts, "X-CallMiner-Signature": sign(SECRET, ts, big)},
    )
    assert resp.status_code == 413
    assert _ids(listener.inbox) == before


def test_body_of_exactly_one_mib_is_accepted(client: httpx.Client, listener: Listener) -> None:
    event = _event(padding="")
    size = len(json.dumps(event).encode())
    event["padding"] = "x" * (MAX_BODY_BYTES - size)
    body = json.dumps(event).encode()
    assert len(body) == MAX_BODY_BYTES
    assert _post(client, body).status_code == 200
    assert event["eventId"] in _ids(listener.inbox)


def test_logs_never_show_secret_or_signature(client: httpx.Client, listener: Listener) -> None:
    body = json.dumps(_event()).encode()
    ts = now_ts()
    signature = sign(SECRET, ts, body)
    assert _post(client, body, ts=ts, signature=signature).status_code == 200
    assert _post(client, body, ts=ts, signature=signature[:-1] + "0").status_code in (401, 200)
    text = listener.log.read_text()
    assert SECRET not in text
    assert signature.removeprefix("sha256=") not in text
    assert "signature mismatch" in text or "stored" in text


def test_acknowledged_event_survives_sigkill(tmp_path: Path) -> None:
    inbox = tmp_path / "inbox.sqlite3"
    log = tmp_path / "listener.log"
    first = start_listener(inbox, log)
    event = _event()
    try:
        with httpx.Client(base_url=first.base_url, timeout=10.0) as c:
            resp = _post(c, json.dumps(event).encode())
        assert resp.status_code == 200
        first.proc.send_signal(signal.SIGKILL)  # no clean shutdown, no checkpoint
        first.proc.wait(timeout=5)
    finally:
        stop_listener(first)
    assert first.proc.returncode == -signal.SIGKILL

    conn = sqlite3.connect(inbox)  # a fresh reader recovers the WAL
    try:
        rows = conn.execute(
            "SELECT event_id, partition_date, consumed_at FROM events WHERE event_id = ?",
            (event["eventId"],),
        ).fetchall()
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    finally:
        conn.close()
    assert rows == [(event["eventId"], "2025-01-16", None)]

    second = start_listener(inbox, log)  # restart on the same inbox: the replay is a duplicate
    try:
        with httpx.Client(base_url=second.base_url, timeout=10.0) as c:
            again = _post(c, json.dumps(event).encode())
        assert again.status_code == 200 and again.json()["stored"] is False
    finally:
        stop_listener(second)
    assert Inbox(inbox).count() == 1


def test_refuses_to_start_without_secret(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "callminer_assets.webhook",
            "--port",
            "0",
            "--inbox",
            str(tmp_path / "i.sqlite3"),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
    )
    assert done.returncode == 2
    assert "CALLMINER_WEBHOOK_SECRET is not set" in done.stderr
    assert not (tmp_path / "i.sqlite3").exists()


def test_help_documents_flags_and_env() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "callminer_assets.webhook", "--help"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0
    for word in (
        "--port",
        "--host",
        "--inbox",
        "CALLMINER_WEBHOOK_SECRET",
        "CALLMINER_WEBHOOK_INBOX",
        "/callminer/events",
        "413",
    ):
        assert word in done.stdout
    # The sensor it names is the one Dagster knows.
    from callminer_assets.defs.sensors import callminer_webhook_inbox_sensor

    assert f"`{callminer_webhook_inbox_sensor.name}`" in done.stdout
