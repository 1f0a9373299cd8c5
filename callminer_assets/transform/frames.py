"""Typed Polars frames for warehouse tables, plus the text/JSON helpers every transform needs.

``warehouse.schema`` declares DuckDB types; this module is the one place that maps
them to Polars dtypes, so a frame built here lands in DuckDB without casts or
surprises. Frames are built column-wise (one ``pl.Series`` per column): building
them row by row with ``pl.concat`` is orders of magnitude slower.

Text has to survive two hostile things on its way to DuckDB:

* lone UTF-16 surrogates (``"\\ud800"`` is legal JSON and ``json.loads`` keeps it),
  which no UTF-8 store can hold and DuckDB's JSON parser refuses even escaped:
  ``clean_text`` and ``to_json`` replace them with U+FFFD; only quarantine payloads
  (a VARCHAR column) keep them losslessly as ``\\ud800`` escapes (``lossless=True``);
* non-finite floats (``NaN``/``Infinity`` are accepted by ``json.loads`` but are not
  JSON): ``to_json`` writes them as the strings ``"NaN"``, ``"Infinity"``,
  ``"-Infinity"`` so DuckDB's JSON type accepts the text.

NUL bytes are kept verbatim: DuckDB VARCHAR stores them (checked via Arrow and via
bound parameters), and ``json.dumps`` escapes them as ``\\u0000`` in JSON text.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import polars as pl

from callminer_assets.lib.tables import POLARS_TYPES, Table, polars_schema

_SURROGATE = re.compile("[\ud800-\udfff]")


def empty_frame(table: Table) -> pl.DataFrame:
    """A zero-row frame with exactly ``table``'s columns and dtypes."""
    return pl.DataFrame(schema=polars_schema(table))


def frame_from_columns(table: Table, columns: Mapping[str, Sequence[Any]]) -> pl.DataFrame:
    """Build a typed frame from one list per column (the fast path).

    Missing columns are filled with NULL; a column ``table`` does not declare is a
    programming error (``ValueError``), as the warehouse refuses extra columns.
    """
    unknown = set(columns) - set(table.column_names)
    if unknown:
        raise ValueError(f"columns not in {table.qualified}: {sorted(unknown)}")
    lengths = {len(v) for v in columns.values()}
    if len(lengths) > 1:
        raise ValueError(f"columns of unequal length for {table.qualified}: {sorted(lengths)}")
    height = lengths.pop() if lengths else 0
    series = []
    for col in table.columns:
        dtype = POLARS_TYPES[col.type]
        values = columns.get(col.name)
        if values is None:
            series.append(pl.Series(col.name, [None] * height, dtype=dtype))
        else:
            series.append(pl.Series(col.name, values, dtype=dtype, strict=True))
    return pl.DataFrame(series)


def frame_from_rows(table: Table, rows: Iterable[Mapping[str, Any]]) -> pl.DataFrame:
    """Build a typed frame from dict rows (missing keys are NULL, unknown keys an error)."""
    names = table.column_names
    known = set(names)
    cols: dict[str, list[Any]] = {n: [] for n in names}
    for row in rows:
        if not known.issuperset(row):
            raise ValueError(f"columns not in {table.qualified}: {sorted(set(row) - known)}")
        for n in names:
            cols[n].append(row.get(n))
    return frame_from_columns(table, cols)


def clean_text(value: str) -> str:
    """``value`` unchanged unless it holds lone surrogates (not storable as UTF-8)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return _SURROGATE.sub("\ufffd", value)
    return value


def _finite(value: Any) -> Any:
    """Replace non-finite floats (not representable in JSON) by their JSON-ish spelling."""
    if isinstance(value, float):
        if math.isfinite(value):
            return value
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def to_json(value: Any, *, lossless: bool = False) -> str:
    """Strict JSON text of ``value`` for a JSON column; raises ``TypeError`` for junk.

    Non-ASCII text stays readable (``ensure_ascii=False``). Lone surrogates become
    U+FFFD (DuckDB's JSON type refuses them), or with ``lossless`` ``\\uXXXX``
    escapes, which are valid UTF-8 but only fit a VARCHAR column.
    """
    try:
        text = json.dumps(value, ensure_ascii=False, allow_nan=False)
    except ValueError:  # NaN / Infinity somewhere inside
        value = _finite(value)
        text = json.dumps(value, ensure_ascii=False, allow_nan=False)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        if lossless:
            return json.dumps(value, ensure_ascii=True, allow_nan=False)
        return _SURROGATE.sub("\ufffd", text)
    return text


def safe_json(value: Any, *, lossless: bool = False) -> str:
    """JSON text of ``value`` (e.g. a record as received, for quarantine); never raises.

    Values JSON cannot represent (a Python object, a tuple key, a cycle) are stored
    as the JSON string of their ``repr``, so the result is always valid JSON.
    """
    try:
        return to_json(value, lossless=lossless)
    except (TypeError, ValueError, RecursionError):
        try:
            rep = repr(value)
        except Exception:  # a hostile __repr__ must not crash the partition
            rep = f"<unrepresentable {type(value).__name__}>"
        return json.dumps(rep, ensure_ascii=True)


def as_utc(moment: datetime, name: str = "datetime") -> datetime:
    """``moment`` in UTC; a naive datetime is a caller bug, not something to guess about."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware, got {moment!r}")
    return moment.astimezone(UTC)
