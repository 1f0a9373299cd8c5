"""Raw CallMiner listing records -> typed ``callminer.interactions`` + ``callminer.quarantine``.

A listing is untrusted input: one bad record must never crash a partition nor be
silently dropped. Each record either becomes one interactions row or one quarantine
row (with the reason and the payload exactly as received); only an earlier copy of
a record whose id appears again later in the same listing (page drift) is
superseded, because the last version wins. Nothing here touches the network or
DuckDB, so every rule is unit-testable.

Rules, in the order they are applied (the first failing one is the reason):

1. not a JSON object                         -> ``not an object``
2. ``id`` missing, not a string, or blank    -> ``missing id``
   ``id`` with lone surrogates (not storable)  -> ``invalid id: not valid Unicode text``
3. ``channel`` not voice/chat/email/video    -> ``unknown channel 'fax'`` (case-insensitive,
   surrounding whitespace ignored; stored lower-case)
4. ``startTime`` missing / not ISO 8601 / no UTC offset -> ``unparseable startTime``
5. start outside ``[window.start, window.end)`` -> ``outside window``
6. ``duration`` not a finite number          -> ``non-numeric duration ...``;
   negative                                  -> ``negative duration ...``

Mapped string fields (agentId, ...) take strings verbatim and integers as their
decimal text; any other type leaves the column NULL and the original value is
kept in ``extra`` under its own key, so nothing is lost.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import polars as pl

from callminer_assets.lib.models import CHANNELS, Window
from callminer_assets.lib.tables import INTERACTIONS, QUARANTINE
from callminer_assets.transform.frames import as_utc, clean_text, frame_from_columns, safe_json

# record field -> interactions column, for plain string fields
_STRING_FIELDS: dict[str, str] = {
    "agentId": "agent_id",
    "agentName": "agent_name",
    "direction": "direction",
    "customerId": "customer_id",
    "disposition": "disposition",
    "campaign": "campaign",
    "queue": "queue",
    "mailbox": "mailbox",
}
# record field -> interactions column, stored as JSON text of the value as received
_JSON_FIELDS: dict[str, str] = {"wrapUpCodes": "wrap_up_codes", "contact": "contact"}
_CORE_FIELDS = frozenset({"id", "channel", "startTime", "duration"})
_CHANNELS = frozenset(CHANNELS)
_REPR_LIMIT = 80


@dataclass(frozen=True, slots=True)
class ValidationResult:
    """Valid rows and refused rows of one listing; ``duplicates`` = superseded copies."""

    interactions: pl.DataFrame
    quarantine: pl.DataFrame
    duplicates: int = 0


class _Refused(Exception):
    """A record failed a rule; ``args[0]`` is the reason stored in quarantine."""


def _short_repr(value: Any) -> str:
    text = clean_text(repr(value))
    return text if len(text) <= _REPR_LIMIT else text[: _REPR_LIMIT - 3] + "..."


def readable_id(record: Any) -> str | None:
    """The record's id when it has a usable one (non-blank string), else None."""
    if isinstance(record, Mapping):
        rid = record.get("id")
        if isinstance(rid, str) and rid.strip():
            return rid
    return None


def parse_timestamp(value: Any) -> datetime | None:
    """An ISO 8601 timestamp WITH a UTC offset, as UTC; None for anything else.

    A time without an offset is refused rather than assumed to be UTC: guessing
    would silently move interactions across the date partition boundary.
    """
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        parsed = datetime.fromisoformat(value.strip())
        if parsed.tzinfo is None or parsed.utcoffset() is None:
            return None
        return parsed.astimezone(UTC)
    except (ValueError, OverflowError, TypeError):
        return None


def _duration(record: Mapping[str, Any]) -> float | None:
    value = record.get("duration")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _Refused(f"non-numeric duration {_short_repr(value)}")
    try:
        seconds = float(value)
    except OverflowError:
        raise _Refused(f"non-numeric duration {_short_repr(value)}") from None
    if not math.isfinite(seconds):
        raise _Refused(f"non-numeric duration {_short_repr(value)}")
    if seconds < 0:
        raise _Refused(f"negative duration {_short_repr(value)}")
    return seconds


def _string_field(value: Any) -> str | None:
    """Strings verbatim, integers as text; other types -> None (value kept in extra)."""
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None


def _check(record: Any, window: Window) -> dict[str, Any]:
    """Validate one record and return its interactions row, or raise ``_Refused``."""
    if not isinstance(record, Mapping):
        raise _Refused("not an object")
    rid = readable_id(record)
    if rid is None:
        raise _Refused("missing id")
    if clean_text(rid) != rid:
        raise _Refused("invalid id: not valid Unicode text")
    channel = record.get("channel")
    norm_channel = channel.strip().lower() if isinstance(channel, str) else None
    if norm_channel not in _CHANNELS:
        raise _Refused(f"unknown channel {_short_repr(channel)}")
    start = parse_timestamp(record.get("startTime"))
    if start is None:
        raise _Refused("unparseable startTime")
    if not (window.start <= start < window.end):
        raise _Refused("outside window")
    row: dict[str, Any] = {
        "interaction_id": rid,
        "interaction_date": start.date(),
        "start_time": start,
        "channel": norm_channel,
        "duration_s": _duration(record),
    }
    extra: dict[str, Any] = {}
    for key, value in record.items():
        if key in _CORE_FIELDS:
            continue
        if key in _STRING_FIELDS:
            text = _string_field(value)
            row[_STRING_FIELDS[key]] = text
            if text is None and value is not None:
                extra[key] = value
        elif key in _JSON_FIELDS:
            row[_JSON_FIELDS[key]] = None if value is None else safe_json(value)
        else:
            extra[str(key)] = value
    row["extra"] = safe_json(extra)
    return row


def validate_interactions(
    records: Sequence[Any], window: Window, extracted_at: datetime, *, origin: str
) -> ValidationResult:
    """Split one window's listing into valid interactions and quarantine rows.

    Never raises on record content. Records sharing an id are resolved by position:
    the last one decides (valid -> interactions, invalid -> quarantine) and earlier
    copies are counted in ``duplicates``, so a listing that suffered page drift yields
    the same rows as one that did not.
    """
    extracted = as_utc(extracted_at, "extracted_at")
    window_day: date = as_utc(window.start, "window.start").date()
    last_index: dict[str, int] = {}
    for i, record in enumerate(records):
        rid = readable_id(record)
        if rid is not None:
            last_index[rid] = i

    rows: list[dict[str, Any]] = []
    q_ids: list[str | None] = []
    q_reasons: list[str] = []
    q_payloads: list[str] = []
    duplicates = 0
    for i, record in enumerate(records):
        rid = readable_id(record)
        if rid is not None and last_index[rid] != i:
            duplicates += 1
            continue
        try:
            rows.append(_check(record, window))
        except _Refused as refused:
            q_ids.append(None if rid is None else clean_text(rid))
            q_reasons.append(str(refused.args[0]))
            q_payloads.append(safe_json(record, lossless=True))

    interactions = frame_from_columns(
        INTERACTIONS,
        {
            name: [row.get(name) for row in rows]
            for name in INTERACTIONS.column_names
            if name not in ("extracted_at", "origin")
        }
        | {"extracted_at": [extracted] * len(rows), "origin": [origin] * len(rows)},
    )
    n = len(q_reasons)
    quarantine = frame_from_columns(
        QUARANTINE,
        {
            "interaction_date": [window_day] * n,
            "source": ["interaction"] * n,
            "record_id": q_ids,
            "reason": q_reasons,
            "payload": q_payloads,
            "quarantined_at": [extracted] * n,
        },
    )
    return ValidationResult(interactions, quarantine, duplicates)
