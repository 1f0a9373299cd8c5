"""Data-shape checks per channel, computed on the frames a run just wrote.

They run inside the asset (``check_specs``) so they see exactly the partition
range of the run. Blocking checks stop downstream assets whose results would
otherwise be wrong (evaluating a duplicated interaction bills it twice).
"""

from __future__ import annotations

from collections.abc import Iterator

import dagster as dg
import polars as pl

from callminer_assets.defs.keys import INTERACTIONS_KEY, TRANSCRIPTS_KEY, UTTERANCES_KEY

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
        description="One transcripts row per interaction (available, pending or missing).",
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


def interaction_check_results(
    interactions: pl.DataFrame, stored_elsewhere: list[str]
) -> Iterator[dg.AssetCheckResult]:
    """``stored_elsewhere``: ids of this run also stored under another day (see the asset)."""
    dupes = interactions.filter(pl.col("interaction_id").is_duplicated())["interaction_id"]
    yield _result(
        "unique_interaction_id",
        INTERACTIONS_KEY,
        sorted(set(dupes.to_list()) | set(stored_elsewhere)),
        interactions.height,
    )
    timed = pl.col("channel").is_in(["voice", "video"])
    bad = interactions.filter(
        (timed & ~(pl.col("duration_s").fill_null(0) > 0))
        | ((pl.col("channel") == "email") & pl.col("duration_s").is_not_null())
    )["interaction_id"]
    yield _result("duration_shape", INTERACTIONS_KEY, bad.to_list(), interactions.height)


def transcript_check_results(
    interactions: pl.DataFrame, transcripts: pl.DataFrame, utterances: pl.DataFrame
) -> Iterator[dg.AssetCheckResult]:
    missing_rows = interactions.join(transcripts, on="interaction_id", how="anti")["interaction_id"]
    yield _result(
        "every_interaction_has_transcript_row",
        TRANSCRIPTS_KEY,
        missing_rows.to_list(),
        interactions.height,
    )

    with_channel = utterances.join(
        interactions.select("interaction_id", "channel"), on="interaction_id", how="inner"
    )
    timed = with_channel.filter(pl.col("channel").is_in(["voice", "video", "chat"])).sort(
        "interaction_id", "seq"
    )
    per_transcript = timed.group_by("interaction_id").agg(
        pl.col("start_s").is_null().any().alias("unknown_time"),
        (pl.col("start_s").diff().fill_null(0) < 0).any().alias("goes_back"),
        (pl.col("speaker_role") == "agent").any().alias("agent"),
        (pl.col("speaker_role") == "customer").any().alias("customer"),
    )
    bad = per_transcript.filter(
        pl.col("unknown_time") | pl.col("goes_back") | ~pl.col("agent") | ~pl.col("customer")
    )["interaction_id"]
    yield _result("timed_channels_shape", UTTERANCES_KEY, bad.to_list(), per_transcript.height)

    email = with_channel.filter(pl.col("channel") == "email")
    per_thread = email.group_by("interaction_id").agg(
        (pl.col("speaker_role") != "unknown").any().alias("inferred"),
    )
    bad = per_thread.filter(~pl.col("inferred"))["interaction_id"]
    yield _result("email_roles_inferred", UTTERANCES_KEY, bad.to_list(), per_thread.height)
