"""validate_interactions: every rule, hand-written records, exact rows."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime

import polars as pl
import pytest

from callminer_assets.lib.models import Window
from callminer_assets.lib.tables import INTERACTIONS, QUARANTINE, polars_schema
from callminer_assets.transform.validate import validate_interactions

DAY = date(2025, 1, 15)
WINDOW = Window.for_day(DAY)
NOW = datetime(2025, 1, 16, 3, 0, tzinfo=UTC)


def rec(**over: object) -> dict[str, object]:
    base: dict[str, object] = {
        "id": "INT-20250115-00001",
        "channel": "voice",
        "startTime": "2025-01-15T10:00:00Z",
        "duration": 125.5,
        "agentId": "A-1",
        "agentName": "Ann",
        "direction": "inbound",
        "customerId": "C-1",
        "disposition": "resolved",
        "wrapUpCodes": ["billing", "refund"],
        "campaign": "collections",
        "queue": "q1",
        "contact": {"phone": "+15550100"},
    }
    base.update(over)
    return base


def drop(record: dict[str, object], *keys: str) -> dict[str, object]:
    return {k: v for k, v in record.items() if k not in keys}


def run(*records: object) -> tuple[pl.DataFrame, pl.DataFrame]:
    res = validate_interactions(list(records), WINDOW, NOW, origin="sandbox")
    assert res.interactions.schema == polars_schema(INTERACTIONS)
    assert res.quarantine.schema == polars_schema(QUARANTINE)
    return res.interactions, res.quarantine


def reasons(q: pl.DataFrame) -> list[str]:
    return q.get_column("reason").to_list()


def test_valid_voice_record_maps_every_column() -> None:
    i, q = run(rec(unknownField={"x": 1}, Channel="ignored-case-sensitive-key"))
    assert q.height == 0
    row = i.row(0, named=True)
    assert row == {
        "interaction_id": "INT-20250115-00001",
        "interaction_date": DAY,
        "start_time": datetime(2025, 1, 15, 10, tzinfo=UTC),
        "channel": "voice",
        "agent_id": "A-1",
        "agent_name": "Ann",
        "direction": "inbound",
        "customer_id": "C-1",
        "duration_s": 125.5,
        "disposition": "resolved",
        "wrap_up_codes": '["billing", "refund"]',
        "campaign": "collections",
        "queue": "q1",
        "mailbox": None,
        "contact": '{"phone": "+15550100"}',
        "extra": json.dumps(
            {"unknownField": {"x": 1}, "Channel": "ignored-case-sensitive-key"},
            ensure_ascii=False,
        ),
        "origin": "sandbox",
        "extracted_at": NOW,
    }


def test_email_without_duration_and_agent() -> None:
    r = drop(rec(channel="EMAIL", mailbox="support@acme.test"), "duration", "agentId")
    i, q = run(r)
    assert q.height == 0
    row = i.row(0, named=True)
    assert row["channel"] == "email"
    assert row["duration_s"] is None and row["agent_id"] is None
    assert row["mailbox"] == "support@acme.test"
    assert row["extra"] == "{}"


@pytest.mark.parametrize("channel", ["Voice", "CHAT", "eMail", "video", " chat "])
def test_channel_case_insensitive(channel: str) -> None:
    i, _ = run(rec(channel=channel))
    assert i.get_column("channel").to_list() == [channel.strip().lower()]


def test_offset_converted_to_utc_and_date_is_utc_date() -> None:
    # 2025-01-14 22:30 at -05:00 is 2025-01-15 03:30 UTC: belongs to the 15th
    i, q = run(rec(startTime="2025-01-14T22:30:00-05:00"))
    assert q.height == 0
    assert i.row(0, named=True)["start_time"] == datetime(2025, 1, 15, 3, 30, tzinfo=UTC)
    assert i.row(0, named=True)["interaction_date"] == DAY
    # 2025-01-15 01:00 at +02:00 is the 14th in UTC: outside the window
    _, q = run(rec(startTime="2025-01-15T01:00:00+02:00"))
    assert reasons(q) == ["outside window"]


def test_window_is_half_open() -> None:
    i, q = run(
        rec(id="a", startTime="2025-01-15T00:00:00Z"),
        rec(id="b", startTime="2025-01-16T00:00:00+00:00"),
        rec(id="c", startTime="2025-01-15T23:59:59.999999Z"),
    )
    assert sorted(i.get_column("interaction_id").to_list()) == ["a", "c"]
    assert q.get_column("record_id").to_list() == ["b"]
    assert reasons(q) == ["outside window"]


@pytest.mark.parametrize(
    ("record", "reason", "record_id"),
    [
        ("just a string", "not an object", None),
        (["id", "x"], "not an object", None),
        (None, "not an object", None),
        (42, "not an object", None),
        (drop(rec(), "id"), "missing id", None),
        (rec(id=""), "missing id", None),
        (rec(id="   "), "missing id", None),
        (rec(id=None), "missing id", None),
        (rec(id=123), "missing id", None),
        (rec(channel="fax"), "unknown channel 'fax'", "INT-20250115-00001"),
        (drop(rec(), "channel"), "unknown channel None", "INT-20250115-00001"),
        (rec(channel=7), "unknown channel 7", "INT-20250115-00001"),
        (rec(startTime="yesterday"), "unparseable startTime", "INT-20250115-00001"),
        (rec(startTime="2025-01-15T10:00:00"), "unparseable startTime", "INT-20250115-00001"),
        (rec(startTime="2025-01-15"), "unparseable startTime", "INT-20250115-00001"),
        (rec(startTime=1736935200), "unparseable startTime", "INT-20250115-00001"),
        (drop(rec(), "startTime"), "unparseable startTime", "INT-20250115-00001"),
        (rec(startTime="0001-01-01T00:00:00+01:00"), "unparseable startTime", "INT-20250115-00001"),
        (rec(duration=-1), "negative duration -1", "INT-20250115-00001"),
        (rec(duration="12"), "non-numeric duration '12'", "INT-20250115-00001"),
        (rec(duration=True), "non-numeric duration True", "INT-20250115-00001"),
        (rec(duration=float("nan")), "non-numeric duration nan", "INT-20250115-00001"),
        (rec(duration=10**400), "non-numeric duration", "INT-20250115-00001"),
    ],
)
def test_rules_quarantine_with_reason_and_payload(
    record: object, reason: str, record_id: str | None
) -> None:
    i, q = run(record)
    assert i.height == 0
    assert q.height == 1
    row = q.row(0, named=True)
    assert row["reason"].startswith(reason)
    assert row["record_id"] == record_id
    assert row["source"] == "interaction"
    assert row["interaction_date"] == DAY
    assert row["quarantined_at"] == NOW
    if not (isinstance(record, dict) and record.get("duration") != record.get("duration")):
        assert json.loads(row["payload"]) == record


def test_first_failing_rule_is_the_reason() -> None:
    _, q = run({"channel": "fax", "startTime": "nope"}, rec(channel="fax", startTime="nope"))
    assert reasons(q) == ["missing id", "unknown channel 'fax'"]


def test_unserialisable_payload_uses_repr() -> None:
    class Junk:
        def __repr__(self) -> str:
            return "<junk>"

    _, q = run(Junk(), {"id": "x", "channel": "voice", "startTime": "bad", "obj": Junk()})
    payloads = q.get_column("payload").to_list()
    assert json.loads(payloads[0]) == "<junk>"
    assert "<junk>" in json.loads(payloads[1])
    assert reasons(q) == ["not an object", "unparseable startTime"]


def test_nan_in_payload_still_valid_json() -> None:
    _, q = run(rec(duration=float("inf"), other=float("nan")))
    payload = json.loads(q.row(0, named=True)["payload"])
    assert payload["duration"] == "Infinity" and payload["other"] == "NaN"


def test_duplicates_last_one_wins() -> None:
    res = validate_interactions(
        [
            rec(id="a", agentName="old"),
            rec(id="b"),
            rec(id="a", agentName="new"),
            rec(id="c", channel="fax"),
            rec(id="c"),  # a later valid copy supersedes the invalid one
            rec(id="d"),
            rec(id="d", channel="fax"),  # a later invalid copy supersedes the valid one
        ],
        WINDOW,
        NOW,
        origin="sandbox",
    )
    i = res.interactions.sort("interaction_id")
    assert i.get_column("interaction_id").to_list() == ["a", "b", "c"]
    assert i.row(0, named=True)["agent_name"] == "new"
    assert res.quarantine.get_column("record_id").to_list() == ["d"]
    assert res.duplicates == 3
    assert i.height + res.quarantine.height + res.duplicates == 7


def test_non_string_mapped_fields_kept_in_extra() -> None:
    i, _ = run(rec(agentId=4711, agentName=["x"], queue=None, contact=None, wrapUpCodes=None))
    row = i.row(0, named=True)
    assert row["agent_id"] == "4711"
    assert row["agent_name"] is None
    assert row["queue"] is None and row["contact"] is None and row["wrap_up_codes"] is None
    assert json.loads(row["extra"]) == {"agentName": ["x"]}


HOSTILE = [
    "Robert'); DROP TABLE callminer.interactions;--",
    'quote " and \\ backslash',
    "nul\x00byte",
    "emoji 😀👩‍👩‍👧",
    "RTL \u202eevil\u202c עברית العربية",
    "CJK 中文 日本語 한국어",
    "new\nline\r\ncr\ttab",
    "%s %d {0} $1 ? :param",
]


@pytest.mark.parametrize("text", HOSTILE)
def test_hostile_strings_verbatim(text: str) -> None:
    i, q = run(rec(id=text, agentName=text, disposition=text, contact={"note": text}, x=text))
    assert q.height == 0
    row = i.row(0, named=True)
    assert row["interaction_id"] == text
    assert row["agent_name"] == text
    assert row["disposition"] == text
    assert json.loads(row["contact"]) == {"note": text}
    assert json.loads(row["extra"]) == {"x": text}
    _, q = run(rec(id=text, channel=text))
    assert json.loads(q.row(0, named=True)["payload"])["channel"] == text
    assert q.row(0, named=True)["record_id"] == text


def test_lone_surrogates_cannot_crash() -> None:
    i, q = run(rec(agentName="a\ud800b", x="\udfff"), rec(id="bad\ud800"))
    assert i.row(0, named=True)["agent_name"] == "a\ufffdb"
    assert json.loads(i.row(0, named=True)["extra"]) == {"x": "\ufffd"}  # DuckDB JSON refuses it
    assert reasons(q) == ["invalid id: not valid Unicode text"]
    assert json.loads(q.row(0, named=True)["payload"])["id"] == "bad\ud800"  # lossless


def test_empty_listing() -> None:
    res = validate_interactions([], WINDOW, NOW, origin="sandbox")
    assert res.interactions.height == 0 and res.quarantine.height == 0
    assert res.interactions.columns == INTERACTIONS.column_names


def test_naive_extracted_at_is_a_caller_bug() -> None:
    with pytest.raises(ValueError):
        validate_interactions([], WINDOW, datetime(2025, 1, 16), origin="sandbox")
