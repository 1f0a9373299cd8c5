"""Which (transcript, kit) pairs still need paying for, and the rows runs become.

The warehouse table ``semarize.evaluations`` *is* the record of what has been
paid: a pair with a stored row for the same transcript hash is never sent
again unless the user asks to re-score.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import date, datetime

import polars as pl

from callminer_assets.lib.models import EvalOutcome, EvalRequest
from callminer_assets.lib.tables import EVALUATIONS
from callminer_assets.transform.frames import clean_text, frame_from_rows, safe_json


def plan_requests(
    transcripts: pl.DataFrame,
    interactions: pl.DataFrame,
    existing: pl.DataFrame,
    kits: Mapping[str, str],
    *,
    rescore: bool = False,
) -> list[EvalRequest]:
    """Requests for available transcripts not yet evaluated with each kit (``kits``: code -> version)."""
    available = transcripts.filter(pl.col("status") == "available").join(
        interactions.select("interaction_id", "channel", "campaign"),
        on="interaction_id",
        how="left",
        suffix="_i",
    )
    paid = (
        set()
        if rescore
        else {
            (i, h, k)
            for i, h, k in existing.select(
                "interaction_id", "transcript_hash", "kit_code"
            ).iter_rows()
        }
    )
    requests = []
    for row in available.iter_rows(named=True):
        for kit_code, kit_version in kits.items():
            if (row["interaction_id"], row["transcript_hash"], kit_code) in paid:
                continue
            requests.append(
                EvalRequest(
                    interaction_id=row["interaction_id"],
                    kit_code=kit_code,
                    kit_version=kit_version,
                    transcript_text=row["transcript_text"],
                    metadata={
                        "interaction_id": row["interaction_id"],
                        "channel": row["channel"],
                        "campaign": row["campaign"],
                    },
                )
            )
    return requests


def _text(value: str | None) -> str | None:
    """Server-supplied text, storable whatever it holds (lone surrogates become U+FFFD)."""
    return None if value is None else clean_text(str(value))


def outcome_rows(
    outcomes: Iterable[EvalOutcome], dates: Mapping[str, date], evaluated_at: datetime
) -> pl.DataFrame:
    """One row per brick of each succeeded run; one row (brick NULL) per failed run."""
    rows = []
    for o in outcomes:
        base = {
            "interaction_id": o.request.interaction_id,
            "interaction_date": dates[o.request.interaction_id],
            "transcript_hash": o.request.transcript_hash,
            "kit_code": o.request.kit_code,
            "kit_version": _text(o.kit_version),
            "run_id": _text(o.run_id),
            "status": o.status,
            "error": _text(o.error),
            "input_tokens": o.input_tokens,
            "evaluated_at": evaluated_at,
        }
        if o.status != "succeeded" or not o.bricks:
            rows.append(
                {**base, "brick": None, "value": None, "confidence": None, "evidence": None}
            )
            continue
        for name, brick in o.bricks.items():
            rows.append(
                {
                    **base,
                    "brick": clean_text(name),
                    "value": safe_json(brick.value),
                    "confidence": brick.confidence,
                    "evidence": safe_json(list(brick.evidence)),
                }
            )
    return frame_from_rows(EVALUATIONS, rows)


def redate(elsewhere: pl.DataFrame, transcripts: pl.DataFrame) -> pl.DataFrame:
    """Evaluations stored under another day for interactions now in ``transcripts``' days.

    CallMiner can move an interaction's startTime across midnight: its runs were paid for
    under the old day, so they move with it instead of being bought again.
    """
    return (
        elsewhere.drop("interaction_date")
        .join(transcripts.select("interaction_id", "interaction_date"), on="interaction_id")
        .select(EVALUATIONS.column_names)
    )


def merge(
    existing: pl.DataFrame, new: pl.DataFrame, transcripts: pl.DataFrame, kits: Sequence[str]
) -> pl.DataFrame:
    """Stored rows still describing the current transcript, plus the new runs' rows.

    A stored (interaction, kit) pair is replaced when a new run covers it;
    rows for a transcript that has since changed are dropped (their
    replacement is among the new rows).
    """
    current = transcripts.filter(pl.col("status") == "available").select(
        "interaction_id", "transcript_hash"
    )
    replaced = new.select("interaction_id", "kit_code").unique()
    kept = (
        existing.filter(pl.col("kit_code").is_in(list(kits)))
        .join(current, on=["interaction_id", "transcript_hash"], how="semi")
        .join(replaced, on=["interaction_id", "kit_code"], how="anti")
    )
    return pl.concat([kept, new], how="vertical").select(EVALUATIONS.column_names)
