"""Transcripts in each channel's shape -> ``callminer.transcripts`` + ``callminer.utterances``.

Every valid interaction gets exactly one transcripts row, whatever happened to its
transcript, so "which transcripts are we still waiting for" is a plain query:

* ``available``: the body was usable; its utterances are in ``callminer.utterances``
  and ``transcript_text``/``transcript_hash`` are what Semarize evaluates.
* ``pending``: not ready yet (or not fetched in this run); fetched again on a later
  run. ``first_seen_pending_at`` comes from ``previous`` so the give-up clock does
  not restart on every run.
* ``missing``: we gave up. Either ``now - start_time > give_up_after`` while still
  pending, or the body arrived but is malformed (``utterances`` absent or not a
  list). A malformed body is quarantined (source ``transcript``) and marked
  ``missing`` at once rather than ``pending``: fetching the same broken body again
  would not help, the payload is kept for a human, and any later
  re-materialisation that fetches a good body replaces the row.

A single malformed utterance (not an object, ``text`` missing or not a string) is
quarantined (source ``utterance``) and skipped; the rest of the transcript is kept
and ``seq`` numbers the stored utterances only, so line ``i`` of
``transcript_text`` is always the utterance with ``seq == i``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from email.utils import parseaddr
from functools import lru_cache
from typing import Any

import polars as pl

from callminer_assets.lib.models import TranscriptFetch, transcript_hash
from callminer_assets.lib.tables import QUARANTINE, TRANSCRIPTS, UTTERANCES
from callminer_assets.transform.frames import as_utc, clean_text, frame_from_columns, safe_json
from callminer_assets.transform.validate import parse_timestamp

DEFAULT_GIVE_UP_AFTER = timedelta(hours=72)
_ROLES = {"agent": "agent", "customer": "customer"}
# Every character str.splitlines() breaks on: a line break inside an utterance
# would shift every later line index away from its utterance's seq.
_LINE_BREAKS = re.compile("[\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029]")


@dataclass(frozen=True, slots=True)
class NormalisedTranscripts:
    """One run's transcripts (one row per interaction), utterances and refused pieces."""

    transcripts: pl.DataFrame
    utterances: pl.DataFrame
    quarantine: pl.DataFrame


def transcript_line(role: str, text: str) -> str:
    """One ``role: text`` line of ``transcript_text`` (line breaks become spaces)."""
    return f"{role}: {_LINE_BREAKS.sub(' ', text)}"


def _address(value: Any) -> str | None:
    """The bare, lower-cased e-mail address of ``"Name <a@b>"`` or ``"a@b"``."""
    return _parse_address(value) if isinstance(value, str) else None


@lru_cache(maxsize=4096)
def _parse_address(value: str) -> str | None:
    # cached: a thread repeats the same few addresses, and parseaddr is slow
    addr = parseaddr(value)[1] or value
    addr = addr.strip().lower()
    return addr or None


def _recipients(value: Any) -> list[str]:
    items = value if isinstance(value, list) else [value]
    return [a for a in (_address(v) for v in items) if a]


def speaker_role(utterance: Mapping[str, Any], channel: str, contact_centre: frozenset[str]) -> str:
    """agent / customer / unknown: ``speakerRole`` when it says so, else inferred for email.

    Email: sent from a contact-centre address (the interaction's mailbox or a
    configured one) -> agent; else sent to one -> customer; else unknown. Nothing
    is guessed: no address match means ``unknown``.
    """
    given = utterance.get("speakerRole")
    if isinstance(given, str):
        role = _ROLES.get(given.strip().lower())
        if role:
            return role
    if channel == "email" and contact_centre:
        sender = _address(utterance.get("from"))
        if sender is not None and sender in contact_centre:
            return "agent"
        if any(a in contact_centre for a in _recipients(utterance.get("to"))):
            return "customer"
    return "unknown"


def offset_seconds(value: Any, start: datetime) -> float | None:
    """Seconds from the interaction start: numbers as-is (voice/video), ISO times
    (chat/email) minus ``start``; anything else (absent, junk, no offset) is NULL."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        try:
            seconds = float(value)
        except OverflowError:
            return None
        return seconds if math.isfinite(seconds) else None
    moment = parse_timestamp(value)
    if moment is None:
        return None
    return (moment - start).total_seconds()


def _previous_index(previous: pl.DataFrame | None) -> dict[str, tuple[Any, Any]]:
    """interaction_id -> (first_seen_pending_at, fetched_at) from earlier rows."""
    if previous is None or previous.is_empty() or "interaction_id" not in previous.columns:
        return {}
    ids = previous.get_column("interaction_id").to_list()
    n = len(ids)
    firsts = (
        previous.get_column("first_seen_pending_at").to_list()
        if "first_seen_pending_at" in previous.columns
        else [None] * n
    )
    fetched = (
        previous.get_column("fetched_at").to_list()
        if "fetched_at" in previous.columns
        else [None] * n
    )
    return dict(zip(ids, zip(firsts, fetched, strict=True), strict=True))


def _is_processing(payload: Mapping[str, Any]) -> bool:
    return "utterances" not in payload and payload.get("status") == "processing"


def normalise_transcripts(
    interactions: pl.DataFrame,
    fetches: Sequence[TranscriptFetch],
    *,
    now: datetime,
    give_up_after: timedelta = DEFAULT_GIVE_UP_AFTER,
    previous: pl.DataFrame | None = None,
    contact_centre_addresses: Collection[str] = (),
) -> NormalisedTranscripts:
    """Normalise fetched transcripts for ``interactions`` (an INTERACTIONS frame).

    Fetches for ids not in ``interactions`` are ignored (they are not valid
    interactions); when an id was fetched twice the last fetch wins. ``previous``
    is the partition's earlier TRANSCRIPTS rows (only ``interaction_id``,
    ``first_seen_pending_at`` and optionally ``fetched_at`` are read).
    """
    now = as_utc(now, "now")
    by_id: dict[str, TranscriptFetch] = {f.interaction_id: f for f in fetches}
    prev = _previous_index(previous)
    configured = frozenset(a for a in (_address(x) for x in contact_centre_addresses) if a)

    t: dict[str, list[Any]] = {name: [] for name in TRANSCRIPTS.column_names}
    u: dict[str, list[Any]] = {name: [] for name in UTTERANCES.column_names}
    q: dict[str, list[Any]] = {name: [] for name in QUARANTINE.column_names}

    def refuse(day: date, source: str, rid: str, reason: str, payload: Any) -> None:
        q["interaction_date"].append(day)
        q["source"].append(source)
        q["record_id"].append(rid)
        q["reason"].append(reason)
        q["payload"].append(safe_json(payload, lossless=True))
        q["quarantined_at"].append(now)

    cols = ("interaction_id", "interaction_date", "start_time", "channel", "mailbox")
    for iid, day, start, channel, mailbox in interactions.select(cols).iter_rows():
        fetch = by_id.get(iid)
        first_pending, prev_fetched = prev.get(iid, (None, None))
        status = "pending"
        fmt: str | None = None
        text: str | None = None
        count = 0
        fetched_at = prev_fetched if fetch is None else now
        payload = fetch.payload if fetch is not None else None

        if fetch is not None and fetch.status == "available":
            if isinstance(payload, Mapping) and _is_processing(payload):
                pass  # the client should have said pending; treat it as such
            elif not isinstance(payload, Mapping) or not isinstance(
                payload.get("utterances"), list
            ):
                refuse(day, "transcript", iid, "malformed transcript: no utterances list", payload)
                status = "missing"
            else:
                status = "available"
                fmt_value = payload.get("format")
                fmt = clean_text(fmt_value) if isinstance(fmt_value, str) else None
                contact_centre = configured
                mailbox_addr = _address(mailbox)
                if mailbox_addr:
                    contact_centre = configured | {mailbox_addr}
                lines: list[str] = []
                for pos, utt in enumerate(payload["utterances"]):
                    if not isinstance(utt, Mapping):
                        refuse(day, "utterance", iid, f"utterance {pos}: not an object", utt)
                        continue
                    raw = utt.get("text")
                    if not isinstance(raw, str):
                        why = "missing text" if raw is None else "text is not a string"
                        refuse(day, "utterance", iid, f"utterance {pos}: {why}", utt)
                        continue
                    body = clean_text(raw)
                    role = speaker_role(utt, channel, contact_centre)
                    u["interaction_id"].append(iid)
                    u["interaction_date"].append(day)
                    u["seq"].append(count)
                    u["speaker_role"].append(role)
                    u["start_s"].append(offset_seconds(utt.get("startTime"), start))
                    u["end_s"].append(offset_seconds(utt.get("endTime"), start))
                    u["text"].append(body)
                    lines.append(transcript_line(role, body))
                    count += 1
                text = "\n".join(lines)

        if status == "pending":
            if first_pending is None:
                first_pending = now
            if now - start > give_up_after:
                status = "missing"

        t["interaction_id"].append(iid)
        t["interaction_date"].append(day)
        t["channel"].append(channel)
        t["status"].append(status)
        t["format"].append(fmt)
        t["utterance_count"].append(count)
        t["transcript_text"].append(text)
        t["transcript_hash"].append(None if text is None else transcript_hash(text))
        t["first_seen_pending_at"].append(first_pending)
        t["fetched_at"].append(fetched_at)

    return NormalisedTranscripts(
        transcripts=frame_from_columns(TRANSCRIPTS, t),
        utterances=frame_from_columns(UTTERANCES, u),
        quarantine=frame_from_columns(QUARANTINE, q),
    )


def stored_available(interactions: pl.DataFrame, previous: pl.DataFrame) -> set[str]:
    """Ids of ``interactions`` whose stored transcript is ``available``: a normal run
    fetches only the others (pending, missing, never seen)."""
    return set(
        previous.filter(
            (pl.col("status") == "available")
            & pl.col("interaction_id").is_in(interactions["interaction_id"].implode())
        )["interaction_id"].to_list()
    )


def keep_or_refresh(
    stored: NormalisedTranscripts, fresh: NormalisedTranscripts, available: Collection[str]
) -> NormalisedTranscripts:
    """The days' tables after a run: ``fresh`` everywhere, except that a transcript stored
    as ``available`` stays as stored (with its utterances and quarantine rows) unless this
    run brought an ``available`` one for it. So an API briefly reporting a finished
    transcript as pending again never costs its text or its evaluations, and a refetch
    that did bring a (possibly changed) text replaces the old one whole."""
    refreshed = fresh.transcripts.filter(pl.col("status") == "available")["interaction_id"]
    kept = list(set(available) - set(refreshed.to_list()))
    is_kept = pl.col("interaction_id").is_in(kept)
    record_kept = pl.col("record_id").is_in(kept)
    return NormalisedTranscripts(
        transcripts=pl.concat(
            [stored.transcripts.filter(is_kept), fresh.transcripts.filter(~is_kept)]
        ),
        utterances=pl.concat(
            [stored.utterances.filter(is_kept), fresh.utterances.filter(~is_kept)]
        ),
        quarantine=pl.concat(
            [stored.quarantine.filter(record_kept), fresh.quarantine.filter(~record_kept)]
        ),
    )
