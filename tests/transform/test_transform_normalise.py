"""normalise_transcripts: each channel's shape, statuses, roles, quarantine, text lines."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from typing import Any

import polars as pl
import pytest

from callminer_assets.lib.models import TranscriptFetch, Window, transcript_hash
from callminer_assets.lib.tables import QUARANTINE, TRANSCRIPTS, UTTERANCES, polars_schema
from callminer_assets.transform.normalise import (
    NormalisedTranscripts,
    keep_or_refresh,
    normalise_transcripts,
    stored_available,
)
from callminer_assets.transform.validate import validate_interactions

DAY = date(2025, 1, 15)
START = datetime(2025, 1, 15, 10, 0, tzinfo=UTC)
NOW = datetime(2025, 1, 15, 12, 0, tzinfo=UTC)
MAILBOX = "Support@Acme.test"


def interactions(*specs: tuple[str, str]) -> pl.DataFrame:
    """An INTERACTIONS frame built through the real validator."""
    records = []
    for iid, channel in specs:
        r: dict[str, Any] = {
            "id": iid,
            "channel": channel,
            "startTime": "2025-01-15T11:00:00+01:00",
        }
        if channel == "email":
            r["mailbox"] = MAILBOX
        records.append(r)
    res = validate_interactions(records, Window.for_day(DAY), NOW, origin="sandbox")
    assert res.quarantine.height == 0
    return res.interactions


def avail(iid: str, utterances: Any, fmt: str = "ovts") -> TranscriptFetch:
    return TranscriptFetch(
        iid, "available", {"interactionId": iid, "format": fmt, "utterances": utterances}
    )


def run(frame: pl.DataFrame, fetches: list[TranscriptFetch], **kw: Any) -> NormalisedTranscripts:
    kw.setdefault("now", NOW)
    out = normalise_transcripts(frame, fetches, **kw)
    assert out.transcripts.schema == polars_schema(TRANSCRIPTS)
    assert out.utterances.schema == polars_schema(UTTERANCES)
    assert out.quarantine.schema == polars_schema(QUARANTINE)
    assert out.transcripts.height == frame.height  # one row per interaction, always
    return out


def utt_rows(out: NormalisedTranscripts) -> list[tuple[Any, ...]]:
    return out.utterances.select("seq", "speaker_role", "start_s", "end_s", "text").rows()


def test_voice_numeric_seconds_and_text() -> None:
    out = run(
        interactions(("v1", "voice")),
        [
            avail(
                "v1",
                [
                    {"speakerRole": "agent", "startTime": 0, "endTime": 3.5, "text": "Hello,\nhi"},
                    {"speakerRole": "Customer", "startTime": 4, "endTime": 6, "text": "Hi\r\n"},
                    {"speakerRole": None, "startTime": 7.25, "text": "?"},
                ],
            )
        ],
    )
    assert utt_rows(out) == [
        (0, "agent", 0.0, 3.5, "Hello,\nhi"),
        (1, "customer", 4.0, 6.0, "Hi\r\n"),
        (2, "unknown", 7.25, None, "?"),
    ]
    t = out.transcripts.row(0, named=True)
    text = "agent: Hello, hi\ncustomer: Hi  \nunknown: ?"
    assert t["status"] == "available" and t["format"] == "ovts"
    assert t["transcript_text"] == text
    assert t["transcript_hash"] == transcript_hash(text)
    assert t["utterance_count"] == 3
    assert t["first_seen_pending_at"] is None
    assert t["fetched_at"] == NOW
    assert t["channel"] == "voice" and t["interaction_date"] == DAY
    assert out.quarantine.height == 0


def test_video_same_as_voice() -> None:
    out = run(
        interactions(("vid", "video")),
        [avail("vid", [{"speakerRole": "agent", "startTime": 1, "endTime": 2, "text": "x"}])],
    )
    assert utt_rows(out) == [(0, "agent", 1.0, 2.0, "x")]


def test_chat_iso_times_relative_to_start_end_may_be_absent() -> None:
    out = run(
        interactions(("c1", "chat")),
        [
            avail(
                "c1",
                [
                    {
                        "speakerRole": "customer",
                        "startTime": "2025-01-15T10:00:05Z",
                        "endTime": "2025-01-15T11:00:09+01:00",
                        "text": "hi",
                    },
                    {"speakerRole": "agent", "startTime": "2025-01-15T10:01:00.5Z", "text": "yo"},
                    {
                        "speakerRole": "agent",
                        "startTime": "junk",
                        "endTime": "2025-01-15T10:02:00",
                        "text": "z",
                    },
                ],
            )
        ],
    )
    assert utt_rows(out) == [
        (0, "customer", 5.0, 9.0, "hi"),
        (1, "agent", 60.5, None, "yo"),
        (2, "agent", None, None, "z"),  # no offset: NULL, not guessed
    ]


def test_email_roles_inferred_from_from_and_to() -> None:
    msgs = [
        {"from": "customer@example.com", "to": ["support@acme.test"], "text": "help"},
        {"from": "Support Team <SUPPORT@acme.test>", "to": ["customer@example.com"], "text": "ok"},
        {"from": "boss@acme.test", "to": ["customer@example.com"], "text": "cc centre"},
        {"from": "someone@else.test", "to": ["other@else.test"], "text": "?"},
        {"from": "customer@example.com", "to": "support@acme.test", "text": "str to"},
        {"speakerRole": "agent", "from": "customer@example.com", "text": "explicit"},
        {"speakerRole": "unknown", "from": "support@acme.test", "text": "infer anyway"},
        {"text": "no addresses"},
        {"from": 5, "to": [None, 7], "text": "junk addresses"},
    ]
    out = run(
        interactions(("e1", "email")),
        [avail("e1", msgs)],
        contact_centre_addresses=["Boss@Acme.test"],
    )
    roles = out.utterances.get_column("speaker_role").to_list()
    assert roles == [
        "customer",
        "agent",
        "agent",
        "unknown",
        "customer",
        "agent",
        "agent",
        "unknown",
        "unknown",
    ]


def test_email_without_mailbox_is_unknown_not_guessed() -> None:
    records = [{"id": "e2", "channel": "email", "startTime": "2025-01-15T10:00:00Z"}]
    frame = validate_interactions(records, Window.for_day(DAY), NOW, origin="sandbox").interactions
    out = run(frame, [avail("e2", [{"from": "a@b.c", "to": ["d@e.f"], "text": "x"}])])
    assert out.utterances.get_column("speaker_role").to_list() == ["unknown"]


def test_role_only_from_speaker_role_on_voice() -> None:
    out = run(
        interactions(("v", "voice")),
        [avail("v", [{"speakerRole": "AGENT ", "text": "a"}, {"speakerRole": "bot", "text": "b"}])],
    )
    assert out.utterances.get_column("speaker_role").to_list() == ["agent", "unknown"]


def test_pending_missing_and_no_fetch() -> None:
    frame = interactions(("p1", "voice"), ("p2", "chat"), ("none", "email"))
    out = run(frame, [TranscriptFetch("p1", "pending"), TranscriptFetch("p2", "pending")])
    t = out.transcripts.sort("interaction_id")
    assert t.get_column("status").to_list() == ["pending", "pending", "pending"]
    assert t.get_column("first_seen_pending_at").to_list() == [NOW] * 3
    assert t.get_column("transcript_text").to_list() == [None] * 3
    assert t.get_column("transcript_hash").to_list() == [None] * 3
    assert t.get_column("utterance_count").to_list() == [0] * 3
    assert t.get_column("fetched_at").to_list() == [None, NOW, NOW]
    assert out.utterances.height == 0

    # a later run keeps the first-seen time, and gives up after the window
    earlier = NOW - timedelta(hours=5)
    previous = out.transcripts.with_columns(
        pl.lit(earlier, dtype=pl.Datetime("us", "UTC")).alias("first_seen_pending_at")
    )
    later = START + timedelta(hours=72, seconds=1)
    out2 = run(frame, [TranscriptFetch("p1", "pending")], now=later, previous=previous)
    t2 = out2.transcripts.sort("interaction_id")
    assert t2.get_column("status").to_list() == ["missing"] * 3
    assert t2.get_column("first_seen_pending_at").to_list() == [earlier] * 3
    # exactly at the window it is still pending (strictly greater gives up)
    out3 = run(frame, [], now=START + timedelta(hours=72), previous=previous)
    assert set(out3.transcripts.get_column("status").to_list()) == {"pending"}
    out4 = run(frame, [], now=START + timedelta(hours=2), give_up_after=timedelta(hours=1))
    assert set(out4.transcripts.get_column("status").to_list()) == {"missing"}


def test_arrived_after_pending_keeps_first_seen() -> None:
    frame = interactions(("p", "voice"))
    first = run(frame, [TranscriptFetch("p", "pending")])
    later = NOW + timedelta(hours=1)
    out = run(frame, [avail("p", [{"text": "x"}])], now=later, previous=first.transcripts)
    row = out.transcripts.row(0, named=True)
    assert row["status"] == "available"
    assert row["first_seen_pending_at"] == NOW and row["fetched_at"] == later


def test_processing_body_is_pending() -> None:
    frame = interactions(("p", "voice"))
    out = run(frame, [TranscriptFetch("p", "available", {"status": "processing"})])
    assert out.transcripts.row(0, named=True)["status"] == "pending"
    assert out.quarantine.height == 0


@pytest.mark.parametrize(
    "payload", [None, {"utterances": "nope"}, {"interactionId": "m"}, {"utterances": {"0": {}}}]
)
def test_malformed_body_quarantined_and_missing(payload: Any) -> None:
    frame = interactions(("m", "voice"))
    out = run(frame, [TranscriptFetch("m", "available", payload)])
    t = out.transcripts.row(0, named=True)
    assert t["status"] == "missing" and t["transcript_text"] is None
    q = out.quarantine.row(0, named=True)
    assert q["source"] == "transcript" and q["record_id"] == "m"
    assert q["reason"] == "malformed transcript: no utterances list"
    assert json.loads(q["payload"]) == payload
    assert q["interaction_date"] == DAY and q["quarantined_at"] == NOW


def test_malformed_utterances_quarantined_rest_kept() -> None:
    bad = ["str", None, {"speakerRole": "agent"}, {"text": 5}, [1]]
    good = [{"speakerRole": "agent", "text": "a"}, {"speakerRole": "customer", "text": "b"}]
    utts = [good[0], *bad, good[1]]
    out = run(interactions(("u", "voice")), [avail("u", utts)])
    assert utt_rows(out) == [(0, "agent", None, None, "a"), (1, "customer", None, None, "b")]
    assert out.transcripts.row(0, named=True)["transcript_text"] == "agent: a\ncustomer: b"
    q = out.quarantine
    assert q.get_column("source").to_list() == ["utterance"] * 5
    assert q.get_column("reason").to_list() == [
        "utterance 1: not an object",
        "utterance 2: not an object",
        "utterance 3: missing text",
        "utterance 4: text is not a string",
        "utterance 5: not an object",
    ]
    assert [json.loads(p) for p in q.get_column("payload").to_list()] == bad


def test_empty_transcript_is_available_with_empty_text() -> None:
    out = run(interactions(("x", "chat")), [avail("x", [])])
    row = out.transcripts.row(0, named=True)
    assert row["status"] == "available" and row["transcript_text"] == ""
    assert row["utterance_count"] == 0 and row["transcript_hash"] == transcript_hash("")


def test_unknown_fetch_ignored_last_fetch_wins() -> None:
    out = run(
        interactions(("a", "voice")),
        [
            avail("zzz", [{"text": "x"}]),
            TranscriptFetch("a", "pending"),
            avail("a", [{"text": "y"}]),
        ],
    )
    assert out.transcripts.get_column("interaction_id").to_list() == ["a"]
    assert out.utterances.get_column("text").to_list() == ["y"]


HOSTILE = [
    "Robert'); DROP TABLE x;--",
    'quote " \\',
    "nul\x00byte",
    "emoji 😀",
    "RTL \u202eevil\u202c עברית",
    "CJK 中文",
    "tab\there",
    "line\nbreak\rcr\u2028ls\x85nel",
]


def test_hostile_text_verbatim_and_line_index_equals_seq() -> None:
    utts = [{"speakerRole": "agent", "text": h} for h in HOSTILE]
    out = run(interactions(("h", "chat")), [avail("h", utts)])
    assert out.utterances.get_column("text").to_list() == HOSTILE
    text = out.transcripts.row(0, named=True)["transcript_text"]
    lines = text.splitlines()
    assert len(lines) == len(HOSTILE) == len(text.split("\n"))
    for seq, line in enumerate(lines):
        assert line.startswith("agent: ")
        assert "\x00" not in HOSTILE[seq] or "\x00" in line  # NUL kept in the text too
    assert "\x00" in out.utterances.get_column("text").to_list()[2]


def test_lone_surrogate_text_is_storable() -> None:
    out = run(interactions(("s", "voice")), [avail("s", [{"text": "a\ud800b"}, "\udfff"])])
    assert out.utterances.get_column("text").to_list() == ["a\ufffdb"]
    assert json.loads(out.quarantine.row(0, named=True)["payload"]) == "\udfff"


def test_empty_inputs() -> None:
    out = run(interactions(), [])
    assert out.transcripts.height == out.utterances.height == out.quarantine.height == 0


def test_keep_or_refresh_keeps_stored_text_unless_a_new_one_arrived() -> None:
    frame = interactions(("kept", "voice"), ("renewed", "chat"), ("waiting", "voice"))
    bad_line = [{"speakerRole": "agent", "text": "old"}, "junk"]
    stored = run(
        frame,
        [
            avail("kept", bad_line),
            avail("renewed", [{"text": "old"}]),
            TranscriptFetch("waiting", "pending"),
        ],
    )
    available = stored_available(frame, stored.transcripts)
    assert available == {"kept", "renewed"}
    # A later run: the API reports "kept" as pending again, "renewed" has a new text,
    # "waiting" has arrived.
    later = NOW + timedelta(hours=1)
    fresh = run(
        frame,
        [
            TranscriptFetch("kept", "pending"),
            avail("renewed", [{"text": "new"}]),
            avail("waiting", [{"text": "here"}]),
        ],
        now=later,
        previous=stored.transcripts,
    )
    out = keep_or_refresh(stored, fresh, available)

    t = {r["interaction_id"]: r for r in out.transcripts.iter_rows(named=True)}
    assert sorted(t) == ["kept", "renewed", "waiting"]  # one row each, never two
    assert {i: r["status"] for i, r in t.items()} == dict.fromkeys(t, "available")
    assert t["kept"]["transcript_text"] == "agent: old" and t["kept"]["fetched_at"] == NOW
    assert t["renewed"]["transcript_text"] == "unknown: new" and t["renewed"]["fetched_at"] == later
    assert sorted(out.utterances.select("interaction_id", "text").rows()) == [
        ("kept", "old"),
        ("renewed", "new"),
        ("waiting", "here"),
    ]
    # The kept transcript keeps its quarantined line; nothing else was refused.
    assert out.quarantine.select("record_id", "source").rows() == [("kept", "utterance")]


def test_keep_or_refresh_replaces_a_refetched_transcript_whole() -> None:
    frame = interactions(("r", "voice"))
    stored = run(frame, [avail("r", [{"text": "a"}, "junk", {"text": "b"}])])
    fresh = run(frame, [avail("r", [{"text": "c"}])], previous=stored.transcripts)
    out = keep_or_refresh(stored, fresh, stored_available(frame, stored.transcripts))
    assert out.utterances.get_column("text").to_list() == ["c"]
    assert out.quarantine.height == 0  # the old version's refused line went with it
    assert out.transcripts.row(0, named=True)["utterance_count"] == 1
