"""The SQLite inbox on its own: stored once, unconsumed in order, consumed once, WAL + FULL."""

from __future__ import annotations

import sqlite3
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import pytest

from callminer_assets.webhook.inbox import (
    Inbox,
    default_inbox_path,
    event_partition_dates,
    interaction_id_date,
)

T0 = datetime(2025, 2, 1, 12, 0, tzinfo=UTC)


def _ev(n: int, **extra: object) -> dict[str, object]:
    return {
        "eventId": f"evt_{n}",
        "type": "interaction.processed",
        "interactionId": f"INT-20250115-{n:05d}",
        **extra,
    }


def test_store_once_then_consume(tmp_path: Path) -> None:
    inbox = Inbox(tmp_path / "sub" / "inbox.sqlite3")
    assert inbox.store(_ev(1, occurredAt="2025-01-15T10:00:00Z"), received_at=T0)
    assert not inbox.store(_ev(1, occurredAt="2025-01-20T10:00:00Z"), received_at=T0)
    assert inbox.store(_ev(2), received_at=T0.replace(hour=13))
    assert [e.event_id for e in inbox.unconsumed()] == ["evt_1", "evt_2"]
    assert [e.event_id for e in inbox.unconsumed(limit=1)] == ["evt_1"]
    assert inbox.mark_consumed(["evt_1", "evt_missing"]) == 1
    assert inbox.mark_consumed(["evt_1"]) == 0
    assert inbox.mark_consumed([]) == 0
    assert [e.event_id for e in inbox.unconsumed()] == ["evt_2"]
    consumed = inbox.get("evt_1")
    assert consumed is not None and consumed.consumed_at is not None
    assert consumed.partition_date == "2025-01-15"


def test_partition_date_rules(tmp_path: Path) -> None:
    inbox = Inbox(tmp_path / "inbox.sqlite3")
    inbox.store(_ev(1, occurredAt="2025-01-16T01:30:00+05:00"), received_at=T0)  # UTC 15th
    inbox.store(_ev(2, occurredAt=None), received_at=T0)  # id date
    inbox.store({"eventId": "evt_3", "type": "t", "interactionId": "X-1"}, received_at=T0)
    got = {e.event_id: e.partition_date for e in inbox.unconsumed()}
    assert got == {"evt_1": "2025-01-15", "evt_2": "2025-01-15", "evt_3": "2025-02-01"}
    late = Inbox(tmp_path / "inbox.sqlite3")
    late.store(_ev(4, occurredAt="2025-01-16T00:10:00Z"), received_at=T0)
    event = late.get("evt_4")
    assert event is not None
    assert event_partition_dates(event) == {"2025-01-16", "2025-01-15"}
    assert interaction_id_date("INT-20251399-1") is None
    assert interaction_id_date("no-date") is None


def test_pragmas_and_default_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CALLMINER_WEBHOOK_INBOX", str(tmp_path / "env.sqlite3"))
    assert default_inbox_path() == tmp_path / "env.sqlite3"
    monkeypatch.delenv("CALLMINER_WEBHOOK_INBOX")
    assert default_inbox_path() == Path("data/webhook_inbox.sqlite3")
    inbox = Inbox(tmp_path / "env.sqlite3")
    with inbox._connect() as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert conn.execute("PRAGMA synchronous").fetchone() == (2,)  # FULL
    cols = [r[1] for r in sqlite3.connect(inbox.path).execute("PRAGMA table_info(events)")]
    assert cols == [
        "event_id",
        "type",
        "interaction_id",
        "channel",
        "occurred_at",
        "partition_date",
        "received_at",
        "consumed_at",
        "body",
    ]


def test_concurrent_duplicate_deliveries_store_once(tmp_path: Path) -> None:
    inbox = Inbox(tmp_path / "inbox.sqlite3")
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda i: inbox.store(_ev(i % 5)), range(40)))
    assert results.count(True) == 5
    assert inbox.count() == 5
