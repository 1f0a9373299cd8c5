"""Data-shape checks per channel, queried from the stored tables after the step's writes.

They run inside the asset (``check_specs``) so they see exactly the partition range of
the run, and they read what the warehouse holds, not the frames the step built: a write
that lost rows or a table changed behind the pipeline's back fails them. Blocking checks
stop downstream assets whose results would otherwise be wrong (evaluating a duplicated
interaction bills it twice).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date

import dagster as dg
import polars as pl

from callminer_assets.defs.keys import INTERACTIONS_KEY, TRANSCRIPTS_KEY, UTTERANCES_KEY
from callminer_assets.warehouse.store import Warehouse

_SAMPLE = 5

INTERACTION_CHECKS = [
    dg.AssetCheckSpec(
        "unique_interaction_id",
        asset=INTERACTIONS_KEY,
        blocking=True,
        description=(
            "interaction_id is unique across the whole table. It fails when CallMiner moved an "
            "interaction's startTime to another UTC day: re-run the old day to remove it there."
        ),
    ),
    dg.AssetCheckSpec(
        "duration_shape",
        asset=INTERACTIONS_KEY,
        description="voice/video have a duration > 0; email has none.",
    ),
]

TRANSCRIPT_CHECKS = [
    dg.AssetCheckSpec(
        "every_interaction_has_transcript_row",
        asset=TRANSCRIPTS_KEY,
        blocking=True,
        description=(
            "Every stored interaction of the run's days has a stored transcripts row "
            "(available, pending or missing)."
        ),
    ),
    dg.AssetCheckSpec(
        "timed_channels_shape",
        asset=UTTERANCES_KEY,
        description="voice/video/chat: utterance times known and non-decreasing; agent and customer both speak.",
    ),
    dg.AssetCheckSpec(
        "email_roles_inferred",
        asset=UTTERANCES_KEY,
        description="email: each thread has at least one message whose role was inferred from from/to.",
    ),
]


def _result(name: str, key: dg.AssetKey, bad: list[str], checked: int) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        check_name=name,
        asset_key=key,
        passed=not bad,
        metadata={
            "checked": checked,
            "failing": len(bad),
            "sample": ", ".join(sorted(bad)[:_SAMPLE]),
        },
    )


# Every query reads what is stored for the run's days (after the step's writes), so a write
# that lost or changed rows fails the check. `?::DATE[]` is the run's days.
_DAYS = "interaction_date IN (SELECT unnest(?::DATE[]))"

_DUPLICATED = """
SELECT interaction_id FROM callminer.interactions
WHERE interaction_id IN (
    SELECT interaction_id FROM callminer.interactions
    WHERE interaction_date IN (SELECT unnest(?::DATE[])))
GROUP BY 1 HAVING count(*) > 1
"""
_BAD_DURATION = """
SELECT interaction_id FROM callminer.interactions
WHERE interaction_date IN (SELECT unnest(?::DATE[])) AND (
    (channel IN ('voice', 'video') AND NOT coalesce(duration_s > 0, false))
    OR (channel = 'email' AND duration_s IS NOT NULL))
"""
_WITHOUT_TRANSCRIPT_ROW = """
SELECT i.interaction_id FROM callminer.interactions i
WHERE i.interaction_date IN (SELECT unnest(?::DATE[])) AND NOT EXISTS (
    SELECT 1 FROM callminer.transcripts t
    WHERE t.interaction_id = i.interaction_id AND t.interaction_date = i.interaction_date)
"""
# One row per stored transcript with utterances: its channel and both shape verdicts.
_UTTERANCE_SHAPES = """
WITH u AS (
    SELECT u.interaction_id, u.seq, u.start_s, u.speaker_role, i.channel,
           u.start_s - lag(u.start_s) OVER (PARTITION BY u.interaction_id ORDER BY u.seq) AS step
    FROM callminer.utterances u
    JOIN callminer.interactions i
      ON i.interaction_id = u.interaction_id AND i.interaction_date = u.interaction_date
    WHERE u.interaction_date IN (SELECT unnest(?::DATE[])))
SELECT interaction_id, any_value(channel) AS channel,
       bool_or(start_s IS NULL) OR bool_or(coalesce(step, 0) < 0)
       OR NOT bool_or(speaker_role = 'agent') OR NOT bool_or(speaker_role = 'customer')
         AS timed_bad,
       NOT bool_or(speaker_role <> 'unknown') AS email_bad
FROM u GROUP BY 1
"""


def _ids(wh: Warehouse, sql: str, days: list[date]) -> list[str]:
    ids: list[str] = wh.query(sql, [days])["interaction_id"].to_list()
    return ids


def _count(wh: Warehouse, table: str, days: list[date]) -> int:
    sql = f"SELECT count(*) AS n FROM {table} WHERE {_DAYS}"  # noqa: S608 - constant names
    return int(wh.query(sql, [days])["n"][0])


def interaction_check_results(wh: Warehouse, days: list[date]) -> Iterator[dg.AssetCheckResult]:
    """On the stored table: ids unique across every day, durations shaped per channel."""
    checked = _count(wh, "callminer.interactions", days)
    dupes = _ids(wh, _DUPLICATED, days)
    yield _result("unique_interaction_id", INTERACTIONS_KEY, dupes, checked)
    bad = _ids(wh, _BAD_DURATION, days)
    yield _result("duration_shape", INTERACTIONS_KEY, bad, checked)


def transcript_check_results(wh: Warehouse, days: list[date]) -> Iterator[dg.AssetCheckResult]:
    """On the stored tables: a transcripts row per stored interaction, utterance shapes."""
    missing = _ids(wh, _WITHOUT_TRANSCRIPT_ROW, days)
    yield _result(
        "every_interaction_has_transcript_row",
        TRANSCRIPTS_KEY,
        missing,
        _count(wh, "callminer.interactions", days),
    )
    shapes = wh.query(_UTTERANCE_SHAPES, [days])
    timed = shapes.filter(pl.col("channel").is_in(["voice", "video", "chat"]))
    bad = timed.filter(pl.col("timed_bad"))["interaction_id"].to_list()
    yield _result("timed_channels_shape", UTTERANCES_KEY, bad, timed.height)
    email = shapes.filter(pl.col("channel") == "email")
    bad = email.filter(pl.col("email_bad"))["interaction_id"].to_list()
    yield _result("email_roles_inferred", UTTERANCES_KEY, bad, email.height)
