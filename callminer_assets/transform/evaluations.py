"""Which (transcript, kit) pairs still need paying for, and the rows runs become.

The warehouse table ``semarize.evaluations`` *is* the record of what has been paid, keyed by
transcript hash, kit, kit version and evaluator: a transcript with a stored row is never sent
again, except once per new kit version when the user re-scores (``python -m callminer_assets
rescore``).
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Collection, Iterable, Mapping, Sequence
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
    evaluator: str,
    *,
    rescore: Collection[str] = (),
) -> list[EvalRequest]:
    """Requests for available transcripts not yet paid for (``kits``: code -> current version).

    Paid = a stored row (succeeded or failed) for the same interaction, transcript hash, kit
    and ``evaluator``: any version of the kit, except for the kits in ``rescore``, where only
    a row of the current version counts (a re-score pays once for the new version).
    """
    available = transcripts.filter(pl.col("status") == "available").join(
        interactions.select("interaction_id", "channel", "campaign", "contact"),
        on="interaction_id",
        how="left",
        suffix="_i",
    )
    # NULL: a row stored before the evaluator column existed; who paid is unknown, and
    # sending it again could bill twice, so it counts as paid (a rescore sends it anyway).
    mine = existing.filter((pl.col("evaluator") == evaluator) | pl.col("evaluator").is_null())
    paid = set(mine.select("interaction_id", "transcript_hash", "kit_code").iter_rows())
    paid_version = set(
        mine.select("interaction_id", "transcript_hash", "kit_code", "kit_version").iter_rows()
    )
    requests = []
    for row in available.iter_rows(named=True):
        key = (row["interaction_id"], row["transcript_hash"])
        for kit_code, kit_version in kits.items():
            if kit_code in rescore:
                if (*key, kit_code, kit_version) in paid_version:
                    continue
            elif (*key, kit_code) in paid:
                continue
            metadata = {
                "interaction_id": row["interaction_id"],
                "channel": row["channel"],
                "campaign": row["campaign"],
            }
            if (region := _region(row["contact"])) is not None:
                metadata["region"] = region
            requests.append(
                EvalRequest(
                    interaction_id=row["interaction_id"],
                    kit_code=kit_code,
                    kit_version=kit_version,
                    transcript_text=row["transcript_text"],
                    metadata=metadata,
                )
            )
    return requests


def _region(contact: str | None) -> str | None:
    """The customer's state or region from CallMiner's contact metadata (consent wording)."""
    try:
        data = json.loads(contact) if contact else None
    except json.JSONDecodeError:
        return None
    if not isinstance(data, dict):
        return None
    value = data.get("region") or data.get("state")
    return value if isinstance(value, str) and value else None


def token_estimate(requests: Sequence[EvalRequest], existing: pl.DataFrame) -> tuple[int, int, int]:
    """(estimated input tokens, requests priced by their own earlier run, runs recorded).

    A request whose transcript (same hash) was already run with the kit, under any version,
    costs what that run cost; any other costs the mean recorded run of its kit. Nothing
    recorded gives 0 runs recorded: the caller says the estimate is unknown.
    """
    runs = (
        existing.filter(pl.col("input_tokens").is_not_null())
        .group_by("interaction_id", "transcript_hash", "kit_code", "run_id")
        .agg(pl.col("input_tokens").first(), pl.col("evaluated_at").max())
        .sort("evaluated_at")
    )
    cost = {
        (i, h, k): t
        for i, h, k, t in runs.select(
            "interaction_id", "transcript_hash", "kit_code", "input_tokens"
        ).iter_rows()
    }
    mean = dict(runs.group_by("kit_code").agg(pl.col("input_tokens").mean()).iter_rows())
    total, exact = 0.0, 0
    for r in requests:
        tokens = cost.get((r.interaction_id, r.transcript_hash, r.kit_code))
        exact += tokens is not None
        total += tokens if tokens is not None else mean.get(r.kit_code) or 0.0
    return round(total), exact, runs.height


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
    outcomes: Iterable[EvalOutcome],
    dates: Mapping[str, date],
    evaluated_at: datetime,
    evaluator: str,
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
            "evaluator": evaluator,
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


def already_paid(
    stored: pl.DataFrame, transcripts: pl.DataFrame, days: Collection[date]
) -> pl.DataFrame:
    """The stored evaluations of ``transcripts``' interactions, each under its current day.

    ``stored`` is read by interaction id, so it may hold rows under another day: CallMiner
    can move an interaction's startTime across midnight, and its runs, paid for under the
    old day, move with it instead of being bought again.
    """
    in_days = pl.col("interaction_date").is_in(list(days))
    moved = (
        stored.filter(~in_days)
        .drop("interaction_date")
        .join(transcripts.select("interaction_id", "interaction_date"), on="interaction_id")
        .select(EVALUATIONS.column_names)
    )
    return pl.concat([stored.filter(in_days), moved])


def work_per_day(
    requests: Iterable[EvalRequest],
    outcomes: Iterable[EvalOutcome],
    dates: Mapping[str, date],
    days: Iterable[date],
) -> dict[date, dict[str, int]]:
    """This run's Semarize work on each of ``days`` (``dates``: interaction id -> day): runs
    started, runs failed and input tokens, for each day's materialisation."""
    work = {day: {"runs_started": 0, "runs_failed": 0, "input_tokens": 0} for day in days}

    def add(interaction_id: str, field: str, amount: int) -> None:
        day = dates.get(interaction_id)
        if day in work:
            work[day][field] += amount

    for request in requests:
        add(request.interaction_id, "runs_started", 1)
    for outcome in outcomes:
        add(outcome.request.interaction_id, "runs_failed", int(outcome.status == "failed"))
        add(outcome.request.interaction_id, "input_tokens", outcome.input_tokens or 0)
    return work


def merge(
    existing: pl.DataFrame, new: pl.DataFrame, transcripts: pl.DataFrame, kits: Sequence[str]
) -> pl.DataFrame:
    """Stored rows still describing the current transcript, plus the new runs' rows.

    A stored run is replaced only by a new run of the same interaction, kit, kit version and
    evaluator: other versions stay beside it (history). Rows for a transcript that has since
    changed are dropped (their replacement is among the new rows).
    """
    current = transcripts.filter(pl.col("status") == "available").select(
        "interaction_id", "transcript_hash"
    )
    key = ["interaction_id", "kit_code", "kit_version", "evaluator"]
    kept = (
        existing.filter(pl.col("kit_code").is_in(list(kits)))
        .join(current, on=["interaction_id", "transcript_hash"], how="semi")
        .join(new.select(key).unique(), on=key, how="anti", nulls_equal=True)
    )
    return pl.concat([kept, new], how="vertical").select(EVALUATIONS.column_names)
