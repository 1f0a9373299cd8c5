"""The HR roster CSV (``AGENT_ROSTER_PATH``) -> validated ``callminer.agent_roster`` rows.

The roster comes from HR, not CallMiner, so it is checked like any other input: one row
per agent, ISO dates, a leave date not before the hire date. Refused rows are returned
with a reason instead of silently dropped or crashing the run.
"""

from __future__ import annotations

import os
from datetime import date
from pathlib import Path
from typing import Any

import polars as pl

from callminer_assets.lib.errors import DataError
from callminer_assets.lib.tables import AGENT_ROSTER, polars_schema

ROSTER_SCHEMA: dict[str, pl.DataType] = dict(polars_schema(AGENT_ROSTER))

REJECTS_SCHEMA: dict[str, pl.DataType] = {
    "row": pl.Int32(),
    "record_id": pl.String(),
    "reason": pl.String(),
}
REQUIRED = ("agent_id", "hire_date")


def _date(value: str | None) -> date | None:
    if value is None or not value.strip():
        return None
    return date.fromisoformat(value.strip()[:10])


def validate_roster(raw: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(valid ROSTER rows, refused rows with reasons) from the CSV read as strings."""
    missing = [c for c in REQUIRED if c not in raw.columns]
    if missing:
        raise DataError(f"roster CSV lacks column(s) {missing}; has {raw.columns}")
    good: list[dict[str, Any]] = []
    bad: list[tuple[int, str | None, str]] = []
    seen: set[str] = set()
    for i, rec in enumerate(raw.iter_rows(named=True), start=2):  # row 1 is the header
        agent_id = (rec.get("agent_id") or "").strip()
        if not agent_id:
            bad.append((i, None, "missing agent_id"))
            continue
        if agent_id in seen:
            bad.append((i, agent_id, "duplicate agent_id"))
            continue
        try:
            hire, leave = _date(rec.get("hire_date")), _date(rec.get("leave_date"))
        except ValueError:
            bad.append((i, agent_id, "unparseable hire_date/leave_date"))
            continue
        if hire is None:
            bad.append((i, agent_id, "missing hire_date"))
            continue
        if leave is not None and leave < hire:
            bad.append((i, agent_id, f"leave_date {leave} before hire_date {hire}"))
            continue
        seen.add(agent_id)
        good.append(
            {
                "agent_id": agent_id,
                "agent_name": (rec.get("agent_name") or rec.get("name") or "").strip() or None,
                "team": (rec.get("team") or "").strip() or None,
                "hire_date": hire,
                "leave_date": leave,
            }
        )
    valid = pl.DataFrame(good, schema=ROSTER_SCHEMA, orient="row").sort("agent_id")
    rejects = pl.DataFrame(bad, schema=REJECTS_SCHEMA, orient="row")
    return valid, rejects


def load_roster(path: str | os.PathLike[str]) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Read the CSV at ``path`` (all columns as text) and validate it."""
    raw = pl.read_csv(Path(path), infer_schema=False)
    return validate_roster(raw)
