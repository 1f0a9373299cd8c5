"""The warehouse on DuckLake: the project's only door to the lake, one code path for both
configurations (SQLite catalog + local folder, or Postgres catalog + S3).

DuckLake gives snapshot isolation across processes and machines: a replace is one
transaction (readers never see half of it), writers never wait for readers, and an open
session sees each commit on its next query. Two things it does not do, done here: re-run a
transaction that lost a race to another writer (``Transaction conflict`` / SQLite's
``database is locked``), and create the catalog and tables exactly once when several
processes start at the same moment. See ``docs/decisions/0009-warehouse-on-ducklake.md``.
"""

from __future__ import annotations

import fcntl
import logging
import os
import random
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple, TypeVar
from urllib.parse import urlsplit

import duckdb
import polars as pl

from callminer_assets.lib.errors import ConfigError, DataError
from callminer_assets.lib.holdpoint import hold
from callminer_assets.lib.settings import (
    WAREHOUSE_BACKOFF_BASE_S,
    WAREHOUSE_BACKOFF_MAX_S,
    WAREHOUSE_MAX_ATTEMPTS,
    WarehouseSettings,
)
from callminer_assets.lib.tables import TABLES, Table, polars_schema
from callminer_assets.warehouse import extensions
from callminer_assets.warehouse.sql import literal

ALIAS = "warehouse"
"""The name every session attaches the lake under (``USE warehouse``)."""
RETRYABLE = ("Transaction conflict", "database is locked")
"""Errors of a transaction that lost a race with another writer: re-running it succeeds."""
# Creating a fresh catalog from two processes can also collide on the catalog's own tables.
_CREATION_RETRYABLE = (*RETRYABLE, "already exists", "duplicate key")
_log = logging.getLogger("callminer_assets")
T = TypeVar("T")


class Write(NamedTuple):
    """One table's share of a replace: delete the rows matching ``where``, insert ``frame``."""

    table: Table
    frame: pl.DataFrame
    where: Mapping[str, Sequence[Any]]


def attach_sql(settings: WarehouseSettings, *, read_only: bool) -> str:
    """The ATTACH statement of the contract, for ``settings``."""
    options = f"DATA_PATH {literal(settings.data_path)}" + (", READ_ONLY" if read_only else "")
    return f"ATTACH {literal('ducklake:' + settings.catalog)} AS {ALIAS} ({options})"


def s3_secret_sql(env: Mapping[str, str]) -> str:
    """A DuckDB S3 secret from the standard ``AWS_*`` variables (endpoint included)."""
    parts = ["TYPE s3"]
    region = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "us-east-1"
    parts.append(f"REGION {literal(region)}")
    for var, option in (
        ("AWS_ACCESS_KEY_ID", "KEY_ID"),
        ("AWS_SECRET_ACCESS_KEY", "SECRET"),
        ("AWS_SESSION_TOKEN", "SESSION_TOKEN"),
    ):
        if env.get(var):
            parts.append(f"{option} {literal(env[var])}")
    endpoint = env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL")
    if endpoint:
        url = urlsplit(endpoint if "://" in endpoint else f"https://{endpoint}")
        parts.append(f"ENDPOINT {literal(url.netloc)}")
        parts.append("URL_STYLE 'path'")  # S3-compatible stores rarely resolve bucket hosts
        parts.append(f"USE_SSL {'true' if url.scheme == 'https' else 'false'}")
    return f"CREATE OR REPLACE SECRET {ALIAS}_s3 ({', '.join(parts)})"


def _needed_extensions(settings: WarehouseSettings) -> list[str]:
    return ["ducklake", settings.kind] + (["httpfs"] if settings.on_s3 else [])


def _open(settings: WarehouseSettings, *, read_only: bool) -> duckdb.DuckDBPyConnection:
    con = extensions.new_connection()
    try:
        extensions.load(con, _needed_extensions(settings))
        if settings.on_s3:
            con.execute(s3_secret_sql(os.environ))
        sqlite_path = settings.sqlite_path
        if sqlite_path and not read_only and not os.path.exists(sqlite_path):
            # WAL once, at creation (it is a property of the file): readers stop blocking
            # the catalog's writers, measured 2.5-3x faster commits with a reader present.
            Path(sqlite_path).parent.mkdir(parents=True, exist_ok=True)
            with sqlite3.connect(sqlite_path) as created:
                created.execute("PRAGMA journal_mode=WAL")
        con.execute(attach_sql(settings, read_only=read_only))
        con.execute(f"USE {ALIAS}")
    except BaseException:
        con.close()
        raise
    return con


def connect(settings: WarehouseSettings | None = None) -> duckdb.DuckDBPyConnection:
    """Read-only session on the lake (``WAREHOUSE_*``), attached as ``warehouse`` and in use.

    Held open, it sees each commit of the pipeline on its next query; it never makes a
    run wait or fail.
    """
    settings = settings or WarehouseSettings.from_env()
    sqlite_path = settings.sqlite_path
    if sqlite_path and not os.path.exists(sqlite_path):
        raise ConfigError(f"no warehouse catalog at {sqlite_path} yet: run `make run` first")
    return _open(settings, read_only=True)


def _retryable(exc: BaseException, markers: Sequence[str]) -> bool:
    return isinstance(exc, duckdb.Error) and any(m in str(exc) for m in markers)


def _with_retries(
    attempt_once: Callable[[], T], what: str, markers: Sequence[str] = RETRYABLE
) -> T:
    """Run ``attempt_once`` until it succeeds, at most WAREHOUSE_MAX_ATTEMPTS times."""
    for attempt in range(1, WAREHOUSE_MAX_ATTEMPTS + 1):
        try:
            return attempt_once()
        except duckdb.Error as exc:
            if attempt == WAREHOUSE_MAX_ATTEMPTS or not _retryable(exc, markers):
                raise
            delay = min(WAREHOUSE_BACKOFF_MAX_S, WAREHOUSE_BACKOFF_BASE_S * 2 ** (attempt - 1))
            delay *= 0.5 + random.random()  # noqa: S311 - jitter, not security
            reason = next(m for m in markers if m in str(exc))
            _log.warning(
                "warehouse: %s lost a race with another writer (%s), attempt %d/%d; "
                "re-running it in %.2f s",
                what,
                reason,
                attempt,
                WAREHOUSE_MAX_ATTEMPTS,
                delay,
            )
            time.sleep(delay)
    raise AssertionError("unreachable")  # the loop returns or raises


def _in_transaction(
    con: duckdb.DuckDBPyConnection, work: Callable[[duckdb.DuckDBPyConnection], T]
) -> T:
    con.execute("BEGIN TRANSACTION")
    try:
        result = work(con)
        con.execute("COMMIT")
    except BaseException:
        # A failed COMMIT has already ended the transaction; nothing to roll back then.
        try:
            con.execute("ROLLBACK")
        except duckdb.Error:
            pass
        raise
    return result


def _comment_statements(table: Table, columns: Sequence[str] | None = None) -> list[str]:
    """Column docs live in the lake too, so analysts see them in any SQL client."""
    out = (
        []
        if columns is not None
        else [f"COMMENT ON TABLE {table.qualified} IS {literal(table.grain)}"]
    )
    out += [
        f'COMMENT ON COLUMN {table.qualified}."{c.name}" IS {literal(c.doc)}'
        for c in table.columns
        if columns is None or c.name in columns
    ]
    return out


def _schema_statements(con: duckdb.DuckDBPyConnection) -> list[str]:
    """DDL for what the lake lacks: missing tables (partitioned) and missing columns."""
    present: dict[str, set[str]] = {}
    for schema, name, column in con.execute(
        "SELECT schema_name, table_name, column_name FROM duckdb_columns() WHERE database_name = ?",
        [ALIAS],
    ).fetchall():
        present.setdefault(f"{schema}.{name}", set()).add(column)
    statements: list[str] = []
    for qualified, table in TABLES.items():
        have = present.get(qualified)
        if have is None:
            cols = ", ".join(f'"{c.name}" {c.type}' for c in table.columns)
            statements += [
                f"CREATE SCHEMA IF NOT EXISTS {table.schema}",
                f"CREATE TABLE IF NOT EXISTS {qualified} ({cols})",
            ]
            if table.partition_column:
                # One folder per day (or month): a replace deletes whole files, upkeep
                # compacts within a partition, and readers prune by date.
                statements.append(
                    f'ALTER TABLE {qualified} SET PARTITIONED BY ("{table.partition_column}")'
                )
            statements += _comment_statements(table)
            continue
        missing = [c for c in table.columns if c.name not in have]
        statements += [
            f'ALTER TABLE {qualified} ADD COLUMN IF NOT EXISTS "{c.name}" {c.type}' for c in missing
        ]
        statements += _comment_statements(table, [c.name for c in missing]) if missing else []
    return statements


def _ensure_schema(con: duckdb.DuckDBPyConnection) -> None:
    """Create missing tables and columns in one transaction; re-checked on every attempt."""

    def attempt() -> None:
        def work(cur: duckdb.DuckDBPyConnection) -> None:
            for statement in _schema_statements(cur):
                cur.execute(statement)

        if _schema_statements(con):
            _in_transaction(con, work)

    _with_retries(attempt, "creating the warehouse tables", _CREATION_RETRYABLE)


@contextmanager
def _creation_lock(settings: WarehouseSettings) -> Iterator[None]:
    """Serialise catalog creation between processes sharing an embedded (SQLite) lake.

    A Postgres catalog has no file to lock; there the creation is re-checked and retried.
    """
    sqlite_path = settings.sqlite_path
    if sqlite_path is None:
        yield
        return
    lock_path = Path(f"{sqlite_path}.lock")
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


_writers: dict[tuple[int, WarehouseSettings], duckdb.DuckDBPyConnection] = {}
_writers_lock = threading.Lock()


def _writer(settings: WarehouseSettings) -> duckdb.DuckDBPyConnection:
    """This process's read-write lake: opened, created and schema-checked once per process.

    Loading the extensions and attaching costs ~0.4 s, so every step of a run reuses it.
    Keyed by pid: a forked child opens its own.
    """
    key = (os.getpid(), settings)
    with _writers_lock:
        con = _writers.get(key)
        if con is None:
            with _creation_lock(settings):

                def open_once() -> duckdb.DuckDBPyConnection:
                    return _open(settings, read_only=False)

                con = _with_retries(open_once, "opening the warehouse", _CREATION_RETRYABLE)
                try:
                    _ensure_schema(con)
                except BaseException:
                    con.close()
                    raise
            _writers[key] = con
    return con


def _in_clause(table: Table, where: Mapping[str, Sequence[Any]]) -> tuple[str, list[Any]]:
    """``WHERE`` text and parameters for column -> allowed values (empty values = no rows)."""
    clauses, params = [], []
    for column, values in where.items():
        if column not in table.column_names:
            raise DataError(f"{table.qualified} has no column {column!r}")
        values = list(values)
        if any(isinstance(v, str) and "\x00" in v for v in values):
            # DuckLake pushes IN filters into its catalog query as text, where a NUL ends the
            # string (a parser error); list_contains is not pushed down, so it stays exact.
            clauses.append(f'list_contains(?::VARCHAR[], "{column}")')
            params.append(values)
            continue
        clauses.append(f'"{column}" IN ({", ".join("?" for _ in values)})' if values else "FALSE")
        params.extend(values)
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), params


class Warehouse:
    """Typed partition replaces and reads on the configured lake."""

    def __init__(self, settings: WarehouseSettings | None = None) -> None:
        self.settings = settings or WarehouseSettings.from_env()

    def exists(self) -> bool:
        """False only for an embedded lake whose catalog file is not there yet."""
        sqlite_path = self.settings.sqlite_path
        return sqlite_path is None or os.path.exists(sqlite_path)

    @contextmanager
    def connect(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A read-write session on the lake (``USE warehouse``), tables created.

        For work beyond replace/read (upkeep, migrations); wrap writes in
        :meth:`transaction` so they are retried on a lost race.
        """
        cursor = _writer(self.settings).cursor()
        try:
            cursor.execute(f"USE {ALIAS}")
            extensions.quiet(cursor)
            yield cursor
        finally:
            cursor.close()

    def transaction(self, work: Callable[[duckdb.DuckDBPyConnection], T], what: str) -> T:
        """Run ``work`` in one transaction; the whole transaction is re-run on a lost race.

        ``work`` may run more than once, so it must only touch the connection it is given.
        """

        def attempt() -> T:
            with self.connect() as con:
                return _in_transaction(con, work)

        return _with_retries(attempt, what)

    def replace(self, table: Table, frame: pl.DataFrame, where: Mapping[str, Sequence[Any]]) -> int:
        """Delete the rows matching ``where`` (column -> allowed values), insert ``frame``.

        One transaction: readers never see a half-replaced partition, and re-running the
        same write leaves the same rows.
        """
        return self.replace_many([Write(table, frame, where)])

    def replace_many(self, writes: Sequence[Write]) -> int:
        """Several tables' replaces as ONE transaction (e.g. interactions + their quarantine)."""
        prepared = []
        for write in writes:
            if write.frame.columns != write.table.column_names:
                raise DataError(
                    f"frame for {write.table.qualified} has columns {write.frame.columns}, "
                    f"expected {write.table.column_names}"
                )
            clause, params = _in_clause(write.table, write.where)
            prepared.append((write.table.qualified, write.frame.to_arrow(), clause, params))

        def work(con: duckdb.DuckDBPyConnection) -> None:
            for qualified, arrow, clause, params in prepared:
                con.execute(f"DELETE FROM {qualified}{clause}", params)  # noqa: S608 - tables.py names
                hold(f"write:{qualified}")  # the crash test kills the process here
                if arrow.num_rows:
                    con.register("_incoming", arrow)
                    try:
                        con.execute(f"INSERT INTO {qualified} BY NAME SELECT * FROM _incoming")  # noqa: S608
                    finally:
                        con.unregister("_incoming")

        what = "replacing rows of " + ", ".join(q for q, *_ in prepared)
        self.transaction(work, what)
        return sum(w.frame.height for w in writes)

    def query(self, sql: str, params: Sequence[Any] | None = None) -> pl.DataFrame:
        """Run a parameterised read on the latest snapshot."""
        with self.connect() as con:
            return con.execute(sql, list(params or [])).pl()

    def read(self, table: Table, where: Mapping[str, Sequence[Any]] | None = None) -> pl.DataFrame:
        """Rows of one table matching ``where`` (column -> allowed values), schema-typed."""
        clause, params = _in_clause(table, where or {})
        cols = ", ".join(
            f'"{c.name}"::VARCHAR AS "{c.name}"' if c.type == "JSON" else f'"{c.name}"'
            for c in table.columns
        )
        sql = f"SELECT {cols} FROM {table.qualified}{clause}"  # noqa: S608 - tables.py names
        return self.query(sql, params).cast(polars_schema(table))
