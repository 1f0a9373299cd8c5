"""Compliance alerts: selection, evidence, Slack delivery to a real local HTTP receiver, dedup."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from typing import Any

import polars as pl
import pytest

from callminer_assets.analytics.alerts import (
    ALERTS_SCHEMA,
    partition_alerts,
    pending_alerts,
    select_alerts,
    store_then_deliver,
)
from callminer_assets.lib.tables import COMPLIANCE_ALERTS
from callminer_assets.transform.scores import FINDINGS_SCHEMA, SCORES_SCHEMA
from tests.analytics.conftest import Receiver

D = date(2025, 1, 15)


def _scores() -> pl.DataFrame:
    rows = []
    for iid, score in (("I1", 0.4), ("I2", 0.69), ("I3", 0.7), ("I4", 0.95), ("I5", None)):
        r: dict[str, Any] = dict.fromkeys(SCORES_SCHEMA)
        r.update(
            interaction_id=iid,
            interaction_date=D,
            agent_id="A1",
            channel="voice",
            compliance_score=score,
        )
        rows.append(r)
    return pl.DataFrame(rows, schema=SCORES_SCHEMA, orient="row")


def _findings() -> pl.DataFrame:
    rows = [
        ("I1", D, "A1", "recording_disclosure", False, None, None),
        ("I1", D, "A1", "prohibited_phrases", False, "you will go to jail", 7),
        ("I1", D, "A1", "prohibited_phrases", False, "last chance", 11),
        ("I1", D, "A1", "consent_obtained", True, "yes you may", 3),
        ("I2", D, "A1", "consent_obtained", False, None, None),
    ]
    return pl.DataFrame(rows, schema=FINDINGS_SCHEMA, orient="row")


def _empty() -> pl.DataFrame:
    return pl.DataFrame(schema=ALERTS_SCHEMA)


NOW = datetime(2025, 1, 16, 6, tzinfo=UTC)


def test_select_alerts_threshold_rules_and_evidence() -> None:
    a = select_alerts(_scores(), _findings(), already_alerted=[], now=NOW)
    assert a.columns == COMPLIANCE_ALERTS.column_names
    assert a["interaction_id"].to_list() == ["I1", "I2"]  # 0.7 is not below 0.7; NULL never alerts
    i1 = a.row(0, named=True)
    assert json.loads(i1["failed_rules"]) == ["prohibited_phrases", "recording_disclosure"]
    ev = json.loads(i1["evidence"])
    assert {"rule": "prohibited_phrases", "quote": "last chance", "utterance_index": 11} in ev
    assert all(e["rule"] != "consent_obtained" for e in ev)  # passed rules are not evidence
    assert i1["delivered"] is False and i1["alerted_at"] == NOW
    assert select_alerts(_scores(), _findings(), already_alerted=["I1"])[
        "interaction_id"
    ].to_list() == ["I2"]
    assert select_alerts(_scores(), _findings(), [], threshold=0.5)["interaction_id"].to_list() == [
        "I1"
    ]


def test_alerted_once_however_often_the_partition_reruns(receiver: Receiver) -> None:
    rows, new, sent = partition_alerts(_empty(), [], _scores(), _findings(), receiver.url, now=NOW)
    assert (new, sent) == (2, 2)
    assert rows["delivered"].to_list() == [True, True]
    assert len(receiver.bodies) == 1 and receiver.ids() == ["I1", "I2"]
    assert "last chance" in receiver.bodies[0]["text"]

    # re-run: the table (rows) already holds I1, I2 -> nothing new, nothing posted, rows kept
    for _ in range(3):
        again, new2, sent2 = partition_alerts(
            rows,
            rows["interaction_id"].to_list(),
            _scores(),
            _findings(),
            receiver.url,
            now=datetime(2025, 1, 17, tzinfo=UTC),
        )
        assert (new2, sent2) == (0, 0)
        assert again.equals(rows)  # alerted_at keeps the first time
    assert len(receiver.bodies) == 1


def test_failed_delivery_is_recorded_and_retried_once(receiver: Receiver) -> None:
    receiver.status = 500
    rows, new, sent = partition_alerts(_empty(), [], _scores(), _findings(), receiver.url, now=NOW)
    assert (new, sent) == (2, 0) and rows["delivered"].to_list() == [False, False]
    receiver.status = 200
    rows2, new2, sent2 = partition_alerts(
        rows, rows["interaction_id"], _scores(), _findings(), receiver.url
    )
    assert (new2, sent2) == (0, 2) and rows2["delivered"].all()
    rows3, _, sent3 = partition_alerts(
        rows2, rows2["interaction_id"], _scores(), _findings(), receiver.url
    )
    assert sent3 == 0 and len(receiver.bodies) == 2  # one failed POST, one successful retry


def test_no_webhook_still_writes_rows(receiver: Receiver) -> None:
    rows, new, sent = partition_alerts(_empty(), [], _scores(), _findings(), None, now=NOW)
    assert (new, sent) == (2, 0) and not rows["delivered"].any()
    assert receiver.bodies == []


def test_unreachable_webhook_does_not_fail_the_run() -> None:
    rows, _, sent = partition_alerts(
        _empty(), [], _scores(), _findings(), "http://127.0.0.1:9/hook", now=NOW
    )
    assert sent == 0 and rows.height == 2


def test_alerts_are_stored_before_they_are_posted(receiver: Receiver) -> None:
    table: list[pl.DataFrame] = []  # every write of the partition, in order
    seen_at_post: list[pl.DataFrame] = []
    receiver.on_post = lambda: seen_at_post.append(table[-1])
    rows, new, sent = partition_alerts(
        _empty(), [], _scores(), _findings(), receiver.url, now=NOW, write=table.append
    )
    assert (new, sent) == (2, 2) and len(receiver.bodies) == 1
    # when Slack got the message, both alerts were already in the table, not yet delivered
    (at_post,) = seen_at_post
    assert at_post["interaction_id"].to_list() == ["I1", "I2"]
    assert not at_post["delivered"].any()
    # then the same rows were written again, delivered
    assert len(table) == 2 and table[-1].equals(rows) and rows["delivered"].all()


def test_a_failed_write_posts_nothing(receiver: Receiver) -> None:
    rows, _ = pending_alerts(_empty(), [], _scores(), _findings(), now=NOW)

    def broken(_: pl.DataFrame) -> None:
        raise OSError("disk full")

    with pytest.raises(OSError):
        store_then_deliver(rows, broken, receiver.url)
    assert receiver.bodies == []
    # the next run finds nothing stored: the alerts are new again and posted once
    table: list[pl.DataFrame] = []
    again, sent = store_then_deliver(rows, table.append, receiver.url)
    assert sent == 2 and len(receiver.bodies) == 1 and table[-1]["delivered"].all()


def test_nothing_to_deliver_writes_once(receiver: Receiver) -> None:
    table: list[pl.DataFrame] = []
    partition_alerts(_empty(), [], _scores(), _findings(), None, now=NOW, write=table.append)
    assert len(table) == 1 and not table[0]["delivered"].any() and receiver.bodies == []
