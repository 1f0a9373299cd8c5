"""``python -m callminer_assets migrate-warehouse OLD.duckdb``: keep the history of a
warehouse written before the lake (one DuckDB file, ``DUCKDB_PATH``).

Every table of ``lib/tables.py`` found in the old file is copied in ONE lake transaction:
a partitioned table replaces exactly the partitions the old file holds, an unpartitioned
one is replaced whole, and columns the old file predates are left NULL. Running it twice
leaves the same rows.
"""

from __future__ import annotations

import os
from pathlib import Path

import duckdb

from callminer_assets.lib.errors import ConfigError
from callminer_assets.lib.tables import TABLES, Table
from callminer_assets.warehouse.sql import literal
from callminer_assets.warehouse.store import Warehouse

OLD = "old_warehouse"


def _copy_table(con: duckdb.DuckDBPyConnection, table: Table, old_columns: set[str]) -> int:
    common = ", ".join(f'"{c}"' for c in table.column_names if c in old_columns)
    source = f"{OLD}.{table.qualified}"
    part = table.partition_column
    if part and part in old_columns:
        con.execute(
            f'DELETE FROM {table.qualified} WHERE "{part}" IN (SELECT "{part}" FROM {source})'  # noqa: S608 - tables.py names
        )
    else:
        con.execute(f"DELETE FROM {table.qualified}")  # noqa: S608 - tables.py names
    con.execute(f"INSERT INTO {table.qualified} ({common}) SELECT {common} FROM {source}")  # noqa: S608
    (n,) = con.execute(f"SELECT count(*) FROM {source}").fetchone() or (0,)  # noqa: S608
    return int(n)


def migrate(old: str | os.PathLike[str], warehouse: Warehouse | None = None) -> str:
    """Copy ``old`` into the configured lake; a report of what was copied."""
    path = Path(old)
    if not path.is_file():
        raise ConfigError(f"migrate-warehouse: {path} is not a DuckDB file")
    wh = warehouse or Warehouse()
    with wh.connect() as con:
        # ATTACH takes no parameters; attached once, every cursor of the process sees it.
        con.execute(f"ATTACH {literal(str(path.resolve()))} AS {OLD} (READ_ONLY)")
        try:
            found: dict[str, set[str]] = {}
            for schema, name, column in con.execute(
                "SELECT schema_name, table_name, column_name FROM duckdb_columns() "
                "WHERE database_name = ?",
                [OLD],
            ).fetchall():
                found.setdefault(f"{schema}.{name}", set()).add(column)
            tables = [t for q, t in TABLES.items() if q in found]
            copied: dict[str, int] = {}

            def work(cur: duckdb.DuckDBPyConnection) -> None:
                copied.clear()
                for table in tables:
                    copied[table.qualified] = _copy_table(cur, table, found[table.qualified])

            wh.transaction(work, f"migrating {path.name}")
        finally:
            con.execute(f"DETACH {OLD}")
    lines = [f"copied from {path} into the lake:"]
    for table in tables:
        missing = [c for c in table.column_names if c not in found[table.qualified]]
        note = f"  (new, left NULL: {', '.join(missing)})" if missing else ""
        lines.append(f"  {table.qualified:<38} {copied[table.qualified]:>8} rows{note}")
    if not tables:
        lines.append("  nothing: no warehouse table in that file")
    return "\n".join(lines)
