"""DuckDB writes: a private working database, published atomically for analysts.

DuckDB lets one process write a file, and a reader holding the file blocks a
writer (and vice versa). So the pipeline never writes the file analysts open:
it writes ``<dir>/.work/<name>`` (one writer at a time, guarded by a lock
file) and, after each write, copies a checkpointed snapshot next to
``DUCKDB_PATH`` and ``os.replace``s it over the published file. Open sessions
keep reading the old inode; new sessions see the new data. See
``docs/decisions/0002-working-copy-and-publish.md``.
"""

from __future__ import annotations

import fcntl
import os
import shutil
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb
import polars as pl

from callminer_assets.lib.errors import DataError
from callminer_assets.lib.holdpoint import hold
from callminer_assets.lib.tables import TABLES, Table, polars_schema


def _ddl(table: Table) -> list[str]:
    cols = ", ".join(f'"{c.name}" {c.type}' for c in table.columns)
    statements = [
        f"CREATE SCHEMA IF NOT EXISTS {table.schema}",
        f"CREATE TABLE IF NOT EXISTS {table.qualified} ({cols})",
    ]
    return statements


def _literal(text: str) -> str:
    # COMMENT ON takes no parameters; the docs are this module's constants, never input.
    return "'" + text.replace("'", "''") + "'"


def _comment_statements(table: Table) -> list[str]:
    """Column docs live in the database too, so analysts see them in any SQL client."""
    out = [f"COMMENT ON TABLE {table.qualified} IS {_literal(table.grain)}"]
    out += [
        f'COMMENT ON COLUMN {table.qualified}."{c.name}" IS {_literal(c.doc)}'
        for c in table.columns
    ]
    return out


DEFAULT_DUCKDB_PATH = "data/callminer.duckdb"


def connect(path: str | os.PathLike[str] | None = None) -> duckdb.DuckDBPyConnection:
    """Read-only session on the published warehouse (``path``, else ``DUCKDB_PATH``)."""
    return connect_published(path or os.environ.get("DUCKDB_PATH") or DEFAULT_DUCKDB_PATH)


def connect_published(path: str | os.PathLike[str]) -> duckdb.DuckDBPyConnection:
    """Read-only session on a published warehouse where ``callminer.interactions`` resolves.

    Opening ``callminer.duckdb`` directly names its catalog ``callminer``, which
    collides with the schema ``callminer``; attaching it as ``warehouse`` avoids that
    whatever the file is called. ATTACH takes no parameters, hence the quoted literal.
    """
    con = duckdb.connect()
    con.execute(f"ATTACH {_literal(str(path))} AS warehouse (READ_ONLY)")
    con.execute("USE warehouse")
    return con


class Warehouse:
    """The project's only door to DuckDB: typed partition replaces and reads."""

    def __init__(self, published_path: str | os.PathLike[str]) -> None:
        self.published_path = Path(published_path).resolve()
        # Named so its catalog never equals a schema: a file called callminer.duckdb would
        # make `callminer.interactions` ambiguous (catalog "callminer" vs schema "callminer").
        self.working_path = (
            self.published_path.parent / ".work" / f"{self.published_path.stem}_working.duckdb"
        )

    def _published_size(self) -> int:
        try:
            return self.published_path.stat().st_size
        except FileNotFoundError:
            return 0

    @contextmanager
    def _locked(self) -> Iterator[None]:
        """Serialise every process that touches the working copy (DuckDB allows one)."""
        self.working_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.working_path.with_suffix(".lock"), "a+") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                # Seed the working copy from the published file (an empty file counts as none).
                if not self.working_path.exists() and self._published_size() > 0:
                    shutil.copyfile(self.published_path, self.working_path)
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    @contextmanager
    def connect(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A read-write connection to the working copy, one writer at a time."""
        with self._locked():
            con = duckdb.connect(str(self.working_path))
            try:
                self._ensure_schema(con)
                yield con
            finally:
                con.close()

    @staticmethod
    def _ensure_schema(con: duckdb.DuckDBPyConnection) -> None:
        existing = {
            f"{s}.{n}"
            for s, n in con.execute(
                "SELECT schema_name, table_name FROM duckdb_tables()"
            ).fetchall()
        }
        for name, table in TABLES.items():
            if name in existing:
                continue
            for stmt in _ddl(table) + _comment_statements(table):
                con.execute(stmt)

    def replace(
        self,
        table: Table,
        frame: pl.DataFrame,
        where: Mapping[str, Sequence[Any]],
        *,
        publish: bool = True,
    ) -> int:
        """Delete the rows matching ``where`` (column -> allowed values), insert ``frame``.

        One transaction: readers of the working copy never see a half-replaced
        partition, and re-running the same write leaves the same rows.
        """
        if frame.columns != table.column_names:
            raise DataError(
                f"frame for {table.qualified} has columns {frame.columns}, "
                f"expected {table.column_names}"
            )
        clauses = []
        params: list[Any] = []
        for column, values in where.items():
            if column not in table.column_names:
                raise DataError(f"{table.qualified} has no column {column!r}")
            values = list(values)
            if not values:
                clauses.append("FALSE")
                continue
            clauses.append(f'"{column}" IN ({", ".join("?" for _ in values)})')
            params.extend(values)
        with self.connect() as con:
            con.execute("BEGIN TRANSACTION")
            try:
                sql = f"DELETE FROM {table.qualified}"  # noqa: S608 - identifiers from schema.py
                if clauses:
                    sql += " WHERE " + " AND ".join(clauses)
                con.execute(sql, params)
                hold(f"write:{table.qualified}")
                if frame.height:
                    con.register("_incoming", frame.to_arrow())
                    con.execute(f"INSERT INTO {table.qualified} BY NAME SELECT * FROM _incoming")  # noqa: S608
                    con.unregister("_incoming")
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise
        if publish:
            self.publish()
        return frame.height

    def query(self, sql: str, params: Sequence[Any] | None = None) -> pl.DataFrame:
        """Run a parameterised read on the working copy (the freshest data)."""
        with self.connect() as con:
            return con.execute(sql, list(params or [])).pl()

    def read(self, table: Table, where: Mapping[str, Sequence[Any]] | None = None) -> pl.DataFrame:
        """Rows of one table matching ``where`` (column -> allowed values), schema-typed."""
        clauses, params = [], []
        for column, values in (where or {}).items():
            if column not in table.column_names:
                raise DataError(f"{table.qualified} has no column {column!r}")
            values = list(values)
            clauses.append(
                f'"{column}" IN ({", ".join("?" for _ in values)})' if values else "FALSE"
            )
            params.extend(values)
        cols = ", ".join(
            f'"{c.name}"::VARCHAR AS "{c.name}"' if c.type == "JSON" else f'"{c.name}"'
            for c in table.columns
        )
        sql = f"SELECT {cols} FROM {table.qualified}"  # noqa: S608 - identifiers from schema.py
        if clauses:
            sql += " WHERE " + " AND ".join(clauses)
        return self.query(sql, params).cast(polars_schema(table))

    def publish(self) -> Path:
        """Copy a checkpointed snapshot of the working copy over the published file, atomically."""
        with self._locked():
            con = duckdb.connect(str(self.working_path))
            try:
                self._ensure_schema(con)
                con.execute("CHECKPOINT")
            finally:
                con.close()
            tmp = self.published_path.with_name(f".{self.published_path.name}.{os.getpid()}.tmp")
            shutil.copyfile(self.working_path, tmp)
            with open(tmp, "rb") as fh:
                os.fsync(fh.fileno())
            os.replace(tmp, self.published_path)
        return self.published_path
