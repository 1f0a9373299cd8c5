"""Parquet exports for data scientists, one directory per month, and the one-line loader.

Layout: ``<exports_dir>/<dataset>/month=YYYY-MM/part.parquet`` (Hive style, so Spark,
DuckDB and Polars all read it). Each month's file is written to a temp file and renamed
over the old one: re-exporting a month replaces it atomically, never duplicates rows.
"""

from __future__ import annotations

import os
import re
from datetime import date
from pathlib import Path

import polars as pl

from callminer_assets.transform.features import FEATURES_SCHEMA
from callminer_assets.transform.scores import SCORES_SCHEMA

FEATURES_DATASET = "agent_monthly_features"
SCORES_DATASET = "interaction_scores"
DEFAULT_EXPORTS_DIR = "data/exports"
_MONTH_DIR = re.compile(r"^month=(\d{4})-(\d{2})$")

_SCHEMAS: dict[str, dict[str, pl.DataType]] = {
    FEATURES_DATASET: FEATURES_SCHEMA,
    SCORES_DATASET: SCORES_SCHEMA,
}


def exports_dir(path: str | os.PathLike[str] | None = None) -> Path:
    """Explicit path, else ``$EXPORTS_DIR``, else ``data/exports`` (relative to the cwd)."""
    return Path(path or os.environ.get("EXPORTS_DIR") or DEFAULT_EXPORTS_DIR)


def month_path(root: str | os.PathLike[str], dataset: str, month: date) -> Path:
    return Path(root) / dataset / f"month={month:%Y-%m}" / "part.parquet"


def write_month(
    frame: pl.DataFrame, dataset: str, month: date, root: str | os.PathLike[str] | None = None
) -> Path:
    """Write one month of ``dataset``, replacing whatever that month held before."""
    path = month_path(exports_dir(root), dataset, month)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".part.{os.getpid()}.parquet.tmp")
    frame.write_parquet(tmp)
    os.replace(tmp, path)
    for stray in path.parent.iterdir():  # a month holds exactly one part file
        if stray.name != path.name and not stray.name.startswith(".part."):
            stray.unlink()
    return path


def _parse_month(value: str | date) -> date:
    if isinstance(value, date):
        return value.replace(day=1)
    m = re.fullmatch(r"(\d{4})-(\d{2})(?:-\d{2})?", value.strip())
    if not m:
        raise ValueError(f"month must look like 'YYYY-MM', got {value!r}")
    return date(int(m.group(1)), int(m.group(2)), 1)


def load_dataset(
    dataset: str,
    start_month: str | date,
    end_month: str | date,
    exports_dir_: str | os.PathLike[str] | None = None,
) -> pl.DataFrame:
    """All rows of ``dataset`` for months ``start_month..end_month`` inclusive, as Polars."""
    start, end = _parse_month(start_month), _parse_month(end_month)
    root = exports_dir(exports_dir_) / dataset
    files: list[Path] = []
    if root.is_dir():
        for d in sorted(root.iterdir()):
            m = _MONTH_DIR.match(d.name)
            if m and start <= date(int(m.group(1)), int(m.group(2)), 1) <= end:
                part = d / "part.parquet"
                if part.exists():
                    files.append(part)
    if not files:
        return pl.DataFrame(schema=_SCHEMAS.get(dataset, {}))
    return pl.scan_parquet(files, hive_partitioning=False).collect()


def load_features(
    start_month: str | date,
    end_month: str | date,
    exports_dir: str | os.PathLike[str] | None = None,
) -> pl.DataFrame:
    """Per-agent monthly features for ``start_month..end_month`` (inclusive, ``"YYYY-MM"``).

    >>> from callminer_assets import load_features
    >>> df = load_features("2025-01", "2025-06")
    """
    return load_dataset(FEATURES_DATASET, start_month, end_month, exports_dir)


def load_scores(
    start_month: str | date,
    end_month: str | date,
    exports_dir: str | os.PathLike[str] | None = None,
) -> pl.DataFrame:
    """Typed per-interaction scores for ``start_month..end_month`` (inclusive)."""
    return load_dataset(SCORES_DATASET, start_month, end_month, exports_dir)
