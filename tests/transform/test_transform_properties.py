"""Hypothesis: hostile listings and transcripts never crash, never lose a record,
and keep hostile strings verbatim."""

from __future__ import annotations

import json
import math
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from callminer_assets.lib.models import TranscriptFetch, Window
from callminer_assets.lib.tables import (
    INTERACTIONS,
    QUARANTINE,
    TRANSCRIPTS,
    UTTERANCES,
    polars_schema,
)
from callminer_assets.transform.normalise import normalise_transcripts
from callminer_assets.transform.validate import readable_id, validate_interactions

DAY = date(2025, 1, 15)
WINDOW = Window.for_day(DAY)
NOW = datetime(2025, 1, 16, 1, tzinfo=UTC)
SETTINGS = settings(
    max_examples=150,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)

HOSTILE = st.sampled_from(
    [
        "'; DROP TABLE callminer.interactions; --",
        '"quoted" \\ back',
        "nul\x00nul",
        "😀👩‍👩‍👧",
        "\u202eRTL עברית العربية",
        "中文 日本語 한국어",
        "line\nbreak\r\ncr\ttab\u2028\x85",
        "",
        " ",
    ]
)
# text Hypothesis generates never holds lone surrogates: those are tested on their own
TEXT = st.one_of(HOSTILE, st.text(max_size=20))
SURROGATE_TEXT = st.one_of(TEXT, st.sampled_from(["\ud800", "a\udfffb", "\udbff\udbff"]))


def json_values(text: st.SearchStrategy[str]) -> st.SearchStrategy[Any]:
    scalars = st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.floats(allow_nan=True, allow_infinity=True),
        text,
    )
    return st.recursive(
        scalars,
        lambda kids: st.lists(kids, max_size=3) | st.dictionaries(text, kids, max_size=3),
        max_leaves=8,
    )


OFFSETS = st.integers(min_value=-14 * 60, max_value=14 * 60).map(
    lambda m: timezone(timedelta(minutes=m))
)
MOMENTS = st.datetimes(
    min_value=datetime(2025, 1, 14), max_value=datetime(2025, 1, 17), timezones=OFFSETS
)


def records(text: st.SearchStrategy[str]) -> st.SearchStrategy[Any]:
    """Near-valid records (each field valid or junk) mixed with arbitrary JSON values."""
    junk = json_values(text)
    near = st.fixed_dictionaries(
        {
            "id": st.one_of(st.sampled_from(["a", "b", "INT-1"]), text, junk),
            "channel": st.one_of(st.sampled_from(["voice", "Chat", "EMAIL", "video", "fax"]), junk),
            "startTime": st.one_of(MOMENTS.map(datetime.isoformat), text, junk),
        },
        optional={
            "duration": st.one_of(st.floats(min_value=-5, max_value=5000), junk),
            "agentId": st.one_of(text, junk),
            "agentName": text,
            "disposition": text,
            "wrapUpCodes": st.lists(text, max_size=3),
            "contact": st.dictionaries(text, text, max_size=3),
            "mailbox": text,
            "queue": junk,
        },
    ).flatmap(
        lambda r: st.dictionaries(text, junk, max_size=3).map(
            lambda extra: {**{k: v for k, v in extra.items() if k not in r}, **r}
        )
    )
    return st.lists(st.one_of(near, near, junk), max_size=12)


CORE_FIELDS = {"id", "channel", "startTime", "duration", "wrapUpCodes", "contact"}
STRING_FIELDS = {"agentId", "agentName", "direction", "customerId", "disposition"} | {
    "campaign",
    "queue",
    "mailbox",
}


def json_clean(value: Any) -> bool:
    """True when ``value`` survives a JSON round trip unchanged (no NaN/inf)."""
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(json_clean(v) for v in value.values())
    if isinstance(value, list):
        return all(json_clean(v) for v in value)
    return True


@SETTINGS
@given(records(TEXT))
def test_listing_conservation_and_verbatim(recs: list[Any]) -> None:
    res = validate_interactions(recs, WINDOW, NOW, origin="sandbox")
    i, q = res.interactions, res.quarantine
    assert i.schema == polars_schema(INTERACTIONS)
    assert q.schema == polars_schema(QUARANTINE)

    # every record ends in exactly one place; only earlier copies of an id are superseded
    ids = [rid for rid in (readable_id(r) for r in recs) if rid is not None]
    assert res.duplicates == len(ids) - len(set(ids))
    assert i.height + q.height + res.duplicates == len(recs)
    assert i.get_column("interaction_id").n_unique() == i.height

    last = {readable_id(r): r for r in recs if readable_id(r) is not None}
    last_pos = {readable_id(r): n for n, r in enumerate(recs) if readable_id(r) is not None}
    for row in i.iter_rows(named=True):
        rec = last[row["interaction_id"]]
        assert row["interaction_id"] == rec["id"]
        assert WINDOW.start <= row["start_time"] < WINDOW.end
        assert row["interaction_date"] == DAY
        assert row["channel"] == rec["channel"].strip().lower()
        for field, col in (("agentName", "agent_name"), ("disposition", "disposition")):
            if isinstance(rec.get(field), str):
                assert row[col] == rec[field]
        if "contact" in rec:
            assert json.loads(row["contact"]) == rec["contact"]
        extra = json.loads(row["extra"])
        for key, value in rec.items():
            if key in STRING_FIELDS:
                # a string field whose value could not be a column is kept in extra
                if value is not None and not isinstance(value, str | int):
                    assert extra[key] == value or not json_clean(value)
            elif key not in CORE_FIELDS and json_clean(value):
                assert extra[key] == value  # unknown fields are never dropped
    # exact bookkeeping: each deciding record is in interactions XOR quarantine, and
    # quarantine rows are the refused deciding records, in input order, as received
    deciding = [
        r for n, r in enumerate(recs) if readable_id(r) is None or last_pos[readable_id(r)] == n
    ]
    i_ids = set(i.get_column("interaction_id").to_list())
    refused = [r for r in deciding if readable_id(r) not in i_ids or readable_id(r) is None]
    assert len(refused) == q.height
    for rec, row in zip(refused, q.iter_rows(named=True), strict=True):
        assert row["source"] == "interaction" and row["reason"]
        assert row["interaction_date"] == DAY
        assert row["record_id"] == readable_id(rec)
        if json_clean(rec):
            assert json.loads(row["payload"]) == rec  # verbatim, hostile strings included
        else:
            json.loads(row["payload"])


@SETTINGS
@given(records(SURROGATE_TEXT))
def test_listing_with_surrogates_is_storable(recs: list[Any]) -> None:
    res = validate_interactions(recs, WINDOW, NOW, origin="sandbox")
    assert res.interactions.height + res.quarantine.height + res.duplicates == len(recs)
    for frame in (res.interactions, res.quarantine):
        for col, dtype in frame.schema.items():
            if dtype.is_(INTERACTIONS_STRING):
                for v in frame.get_column(col).drop_nulls().to_list():
                    v.encode("utf-8")
    for col in ("extra", "contact", "wrap_up_codes"):
        for v in res.interactions.get_column(col).drop_nulls().to_list():
            json.loads(v)


INTERACTIONS_STRING = polars_schema(INTERACTIONS)["interaction_id"]

UTTERANCE = st.one_of(
    st.fixed_dictionaries(
        {"text": TEXT},
        optional={
            "speakerRole": st.one_of(st.sampled_from(["agent", "Customer", "bot", None]), TEXT),
            "startTime": st.one_of(st.floats(0, 500), MOMENTS.map(datetime.isoformat), TEXT),
            "endTime": st.one_of(st.floats(0, 500), MOMENTS.map(datetime.isoformat), TEXT),
            "from": st.one_of(st.sampled_from(["box@acme.test", "c@x.test"]), TEXT),
            "to": st.lists(st.sampled_from(["box@acme.test", "c@x.test"]), max_size=2),
        },
    ),
    json_values(TEXT),
)
CHANNEL_OF = {"v": "voice", "c": "chat", "e": "email", "x": "video"}


@SETTINGS
@given(
    st.dictionaries(
        st.sampled_from(list(CHANNEL_OF)),
        st.one_of(
            st.none(),
            st.just("pending"),
            st.lists(UTTERANCE, max_size=8),
            json_values(TEXT),
        ),
    )
)
def test_transcripts_never_lose_an_utterance(bodies: dict[str, Any]) -> None:
    recs = [
        {
            "id": key,
            "channel": ch,
            "startTime": "2025-01-15T10:00:00Z",
            "mailbox": "Box@Acme.test",
        }
        for key, ch in CHANNEL_OF.items()
    ]
    frame = validate_interactions(recs, WINDOW, NOW, origin="sandbox").interactions
    fetches = []
    for key, body in bodies.items():
        if body == "pending":
            fetches.append(TranscriptFetch(key, "pending"))
        elif body is not None:
            payload = {"utterances": body} if isinstance(body, list) else body
            fetches.append(TranscriptFetch(key, "available", payload))
    out = normalise_transcripts(frame, fetches, now=NOW)
    assert out.transcripts.schema == polars_schema(TRANSCRIPTS)
    assert out.utterances.schema == polars_schema(UTTERANCES)
    assert out.transcripts.height == frame.height
    for row in out.transcripts.iter_rows(named=True):
        iid = row["interaction_id"]
        utts = out.utterances.filter(interaction_id=iid)
        q = out.quarantine.filter(record_id=iid)
        assert row["utterance_count"] == utts.height
        assert utts.get_column("seq").to_list() == list(range(utts.height))
        assert set(utts.get_column("speaker_role").to_list()) <= {"agent", "customer", "unknown"}
        body = bodies.get(iid)
        if row["status"] == "available":
            assert isinstance(body, list) or isinstance(body, dict) and "utterances" in body
            sent = body if isinstance(body, list) else body["utterances"]
            assert utts.height + q.height == len(sent)
            text = row["transcript_text"]
            lines = text.split("\n") if utts.height else []
            assert lines == text.splitlines()  # no stray line breaks
            assert len(lines) == utts.height
            stored = [
                u["text"] for u in sent if isinstance(u, dict) and isinstance(u.get("text"), str)
            ]
            assert utts.get_column("text").to_list() == stored  # verbatim
            for seq, (line, role) in enumerate(
                zip(lines, utts.get_column("speaker_role").to_list(), strict=True)
            ):
                assert line.startswith(f"{role}: "), seq
        else:
            assert utts.height == 0 and row["transcript_text"] is None
            assert row["transcript_hash"] is None
