"""Typed, frozen values passed between the clients, transforms and assets.

Raw API records stay plain ``dict``/``Any`` until ``transform.validate`` has
looked at them: a record is only trusted once it has been validated.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal

TranscriptStatus = Literal["available", "pending", "missing"]
RunStatus = Literal["succeeded", "failed"]
CHANNELS: tuple[str, ...] = ("voice", "chat", "email", "video")
SPEAKER_ROLES: tuple[str, ...] = ("agent", "customer", "unknown")


@dataclass(frozen=True, slots=True)
class Window:
    """A half-open time window ``[start, end)`` in UTC, e.g. one daily partition."""

    start: datetime
    end: datetime

    @classmethod
    def for_day(cls, day: date) -> Window:
        start = datetime(day.year, day.month, day.day, tzinfo=UTC)
        return cls(start, start + timedelta(days=1))


@dataclass(frozen=True, slots=True)
class TranscriptFetch:
    """What ``GET /v1/interactions/{id}/transcript`` gave: a body, or 'not ready yet'."""

    interaction_id: str
    status: Literal["available", "pending"]
    payload: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class Brick:
    """One typed answer of a kit, with its confidence and evidence."""

    value: Any
    confidence: float | None
    evidence: tuple[dict[str, Any], ...] = ()


def transcript_hash(transcript_text: str) -> str:
    """Content hash of a transcript: a changed transcript is a new thing to evaluate."""
    return hashlib.sha256(transcript_text.encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True)
class EvalRequest:
    """One (transcript, kit) pair to evaluate; ``idempotency_key`` makes retries free."""

    interaction_id: str
    kit_code: str
    kit_version: str
    transcript_text: str
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def transcript_hash(self) -> str:
        return transcript_hash(self.transcript_text)

    @property
    def idempotency_key(self) -> str:
        raw = f"{self.interaction_id}|{self.transcript_hash}|{self.kit_code}|{self.kit_version}"
        return hashlib.sha256(raw.encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True)
class EvalOutcome:
    """The end of one Semarize run: bricks when it succeeded, an error when it failed."""

    request: EvalRequest
    status: RunStatus
    run_id: str | None
    kit_version: str
    bricks: dict[str, Brick] = field(default_factory=dict)
    error: str | None = None
    input_tokens: int | None = None
