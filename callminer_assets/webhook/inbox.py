"""Durable SQLite inbox for CallMiner webhook events.

Why SQLite and not DuckDB: the listener must acknowledge an event within
milliseconds and must never wait on a pipeline run holding the warehouse's
write lock. A separate SQLite file in WAL mode with ``synchronous=FULL`` lets
the listener commit (and fsync) every event before it answers 2xx, while the
inbox sensor reads and marks events consumed concurrently.

``partition_date`` is the daily partition the event most likely touches: the
UTC date of ``occurredAt`` when the event carries a parseable one; otherwise the
date embedded in the interaction id (``INT-YYYYMMDD-…``); otherwise the UTC
date the event was received. The sensor additionally requests the id's date
when it differs (an interaction processed after midnight still belongs to the
day it started): see :func:`event_partition_dates`.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

INBOX_ENV = "CALLMINER_WEBHOOK_INBOX"
DEFAULT_INBOX_PATH = "data/webhook_inbox.sqlite3"

_ID_DATE = re.compile(r"(?<!\d)(\d{4})(\d{2})(\d{2})(?!\d)")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    event_id       TEXT PRIMARY KEY,
    type           TEXT NOT NULL,
    interaction_id TEXT NOT NULL,
    channel        TEXT,
    occurred_at    TEXT,
    partition_date TEXT NOT NULL,
    received_at    TEXT NOT NULL,
    consumed_at    TEXT,
    body           TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_unconsumed
    ON events (received_at) WHERE consumed_at IS NULL;
"""


def default_inbox_path() -> Path:
    """The inbox file: ``$CALLMINER_WEBHOOK_INBOX`` or ``data/webhook_inbox.sqlite3``."""
    return Path(os.environ.get(INBOX_ENV) or DEFAULT_INBOX_PATH)


def parse_timestamp(value: str) -> datetime:
    """Parse an ISO 8601 timestamp (``Z`` accepted); naive values are taken as UTC."""
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    parsed = datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def interaction_id_date(interaction_id: str) -> date | None:
    """The date embedded in an id like ``INT-20250115-00482``, or None."""
    match = _ID_DATE.search(interaction_id)
    if match is None:
        return None
    try:
        return date(int(match.group(1)), int(match.group(2)), int(match.group(3)))
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class InboxEvent:
    """One stored event, as the inbox sensor sees it."""

    event_id: str
    type: str
    interaction_id: str
    channel: str | None
    occurred_at: str | None
    partition_date: str
    received_at: str
    consumed_at: str | None
    body: str


def partition_date_for(event: Mapping[str, Any], received_at: datetime) -> date:
    """The partition an event is filed under (see the module docstring for the order)."""
    occurred = event.get("occurredAt")
    if isinstance(occurred, str):
        try:
            return parse_timestamp(occurred).date()
        except ValueError:
            pass
    from_id = interaction_id_date(str(event.get("interactionId", "")))
    if from_id is not None:
        return from_id
    return received_at.astimezone(UTC).date()


def event_partition_dates(event: InboxEvent) -> set[str]:
    """Every daily partition key (``YYYY-MM-DD``) an event should refresh."""
    keys = {event.partition_date}
    from_id = interaction_id_date(event.interaction_id)
    if from_id is not None:
        keys.add(from_id.isoformat())
    return keys


class Inbox:
    """The ``events`` table in one SQLite file; one short-lived connection per call.

    Short-lived connections keep the object safe to share between threads (the
    listener runs handlers in a thread pool) and hold no lock between calls.
    """

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        self.path = Path(path) if path is not None else default_inbox_path()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as conn:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.executescript(_SCHEMA)

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        conn = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
        try:
            # FULL: the WAL is fsynced at every commit, so an acknowledged event
            # survives a kill or power loss, not only a clean shutdown.
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA busy_timeout=30000")
            yield conn
        finally:
            conn.close()

    def store(self, event: Mapping[str, Any], *, received_at: datetime | None = None) -> bool:
        """Commit one validated event; False when its ``eventId`` was already stored."""
        now = (received_at or datetime.now(UTC)).astimezone(UTC)
        occurred = event.get("occurredAt")
        channel = event.get("channel")
        row = (
            str(event["eventId"]),
            str(event["type"]),
            str(event["interactionId"]),
            channel if isinstance(channel, str) else None,
            occurred if isinstance(occurred, str) else None,
            partition_date_for(event, now).isoformat(),
            now.isoformat(),
            json.dumps(event, separators=(",", ":"), sort_keys=True),
        )
        with self._connect() as conn:
            cur = conn.execute(
                "INSERT INTO events (event_id, type, interaction_id, channel, occurred_at,"
                " partition_date, received_at, body) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (event_id) DO NOTHING",
                row,
            )
            return cur.rowcount == 1

    def unconsumed(self, limit: int = 1000) -> list[InboxEvent]:
        """The oldest events not yet turned into run requests."""
        with self._connect() as conn:
            rows = conn.execute(
                "SELECT event_id, type, interaction_id, channel, occurred_at, partition_date,"
                " received_at, consumed_at, body FROM events WHERE consumed_at IS NULL"
                " ORDER BY received_at, event_id LIMIT ?",
                (int(limit),),
            ).fetchall()
        return [InboxEvent(*row) for row in rows]

    def mark_consumed(self, event_ids: Iterable[str], *, at: datetime | None = None) -> int:
        """Flag events as handled; returns how many were newly marked."""
        ids = list(event_ids)
        if not ids:
            return 0
        stamp = (at or datetime.now(UTC)).astimezone(UTC).isoformat()
        with self._connect() as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                changed = 0
                for event_id in ids:
                    cur = conn.execute(
                        "UPDATE events SET consumed_at = ? WHERE event_id = ? AND consumed_at IS NULL",
                        (stamp, event_id),
                    )
                    changed += cur.rowcount
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        return changed

    def get(self, event_id: str) -> InboxEvent | None:
        """One event by id (used by tests and for debugging)."""
        with self._connect() as conn:
            row = conn.execute(
                "SELECT event_id, type, interaction_id, channel, occurred_at, partition_date,"
                " received_at, consumed_at, body FROM events WHERE event_id = ?",
                (event_id,),
            ).fetchone()
        return InboxEvent(*row) if row else None

    def count(self) -> int:
        """Number of stored events."""
        with self._connect() as conn:
            (n,) = conn.execute("SELECT COUNT(*) FROM events").fetchone()
        return int(n)
