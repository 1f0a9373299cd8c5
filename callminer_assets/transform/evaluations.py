"""Which (transcript, kit) pairs still need paying for, and the rows runs become.

The warehouse table ``semarize.evaluations`` *is* the record of what has been
paid: a pair with a stored row for the same transcript hash is never sent
again unless the user asks to re-score.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping, Sequence
from datetime import date, datetime
from typing import Any

import polars as pl

from callminer_assets.lib.models import Brick, EvalOutcome, EvalRequest
from callminer_assets.lib.tables import EVALUATIONS, QUARANTINE
from callminer_assets.transform.frames import clean_text, frame_from_rows, safe_json

INT32_MAX = 2**31 - 1
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


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


def _utterance_index_problem(value: Any) -> str | None:
    """Why ``value`` cannot be an ``INTEGER`` utterance position, or ``None`` if it can."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        return f"evidence utterance_index {value!r:.40} is not a number"
    if isinstance(value, float) and not value.is_integer():
        return f"evidence utterance_index {value!r:.40} is not a whole number"
    if not 0 <= value <= INT32_MAX:
        return f"evidence utterance_index {value!r:.40} out of range 0..{INT32_MAX} (INTEGER)"
    return None


def _screen_brick(brick: Brick) -> tuple[Brick, list[str]]:
    """The brick with every value its columns cannot hold set to NULL, and why."""
    reasons: list[str] = []
    confidence = brick.confidence
    if confidence is not None and not (math.isfinite(confidence) and 0 <= confidence <= 1):
        reasons.append(f"confidence {confidence!r:.40} is not a finite number in 0..1")
        confidence = None
    evidence = []
    for item in brick.evidence:
        problem = _utterance_index_problem(item.get("utterance_index"))
        if problem is not None:
            reasons.append(problem)
            item = {**item, "utterance_index": None}
        evidence.append(item)
    return Brick(brick.value, confidence, tuple(evidence)), reasons


def screen(
    outcomes: Iterable[EvalOutcome], dates: Mapping[str, date], quarantined_at: datetime
) -> tuple[list[EvalOutcome], pl.DataFrame]:
    """Outcomes whose values all fit their warehouse columns, plus quarantine rows.

    A hostile or broken Semarize answer (an ``utterance_index`` of 2**31, a NaN confidence,
    a token count beyond BIGINT) must not crash the step or the findings built from it: the
    offending value is stored as NULL, and the brick as received lands in
    ``callminer.quarantine`` (source ``evaluation``, ``record_id`` = the run id) with its
    reason. The rest of the run is kept: it was paid for.
    """
    kept: list[EvalOutcome] = []
    rows: list[dict[str, Any]] = []
    for o in outcomes:
        refused: list[tuple[str, Any, list[str]]] = []  # (what, as received, reasons)
        tokens = o.input_tokens
        if tokens is not None and not INT64_MIN <= tokens <= INT64_MAX:
            refused.append(("input_tokens", tokens, ["input_tokens out of range for BIGINT"]))
            tokens = None
        bricks = {}
        for name, brick in o.bricks.items():
            bricks[name], reasons = _screen_brick(brick)
            if reasons:
                refused.append((clean_text(name), dataclasses.asdict(brick), reasons))
        kept.append(dataclasses.replace(o, bricks=bricks, input_tokens=tokens))
        iid, kit = o.request.interaction_id, o.request.kit_code
        rows.extend(
            {
                "interaction_date": dates[iid],
                "source": "evaluation",
                "record_id": _text(o.run_id) or iid,
                "reason": f"{kit}/{what}: " + "; ".join(reasons),
                "payload": safe_json(
                    {"interaction_id": iid, "kit_code": kit, what: received}, lossless=True
                ),
                "quarantined_at": quarantined_at,
            }
            for what, received, reasons in refused
        )
    return kept, frame_from_rows(QUARANTINE, rows)


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
