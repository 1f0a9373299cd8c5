"""DuckDB extensions from the pinned PyPI wheels: no network, no home folder, at run time.

DuckDB fetches ``ducklake``, ``sqlite``, ``postgres`` and ``httpfs`` from its own site on
first use, which many networks cannot reach. The ``duckdb-extension-*==1.5.5`` wheels in
pyproject.toml carry the same binaries; the first connection of a process ``INSTALL``s
them from the wheel into a project-local ``extension_directory`` (which also gives them
DuckDB's canonical names, e.g. ``sqlite_scanner``) and every connection ``LOAD``s them from
there. A wheel that is absent falls back to DuckDB's repository. See
``docs/decisions/0009-warehouse-on-ducklake.md``.
"""

from __future__ import annotations

import fcntl
import importlib.util
import logging
import os
import threading
from collections.abc import Iterable
from pathlib import Path

import duckdb

from callminer_assets.warehouse.sql import literal

ENV_EXTENSION_DIRECTORY = "WAREHOUSE_EXTENSION_DIRECTORY"
DEFAULT_EXTENSION_DIRECTORY = "data/duckdb_extensions"
WHEELS = ("ducklake", "sqlite", "postgres", "httpfs")
"""The extensions pinned as ``duckdb-extension-<name>`` wheels in pyproject.toml."""
_log = logging.getLogger("callminer_assets")
_installed: set[tuple[str, str]] = set()
_install_lock = threading.Lock()


def extension_directory() -> Path:
    """Where extensions are installed: project-local, never ``~/.duckdb``."""
    return Path(os.environ.get(ENV_EXTENSION_DIRECTORY) or DEFAULT_EXTENSION_DIRECTORY).resolve()


def wheel_binary(name: str) -> Path | None:
    """The binary ``duckdb-extension-<name>`` ships for this DuckDB version, if installed."""
    spec = importlib.util.find_spec(f"duckdb_extension_{name}")
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        path = Path(location) / "extensions" / f"v{duckdb.__version__}" / f"{name}.duckdb_extension"
        if path.is_file():
            return path
    return None


def new_connection() -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB whose extensions come only from the project-local directory."""
    directory = extension_directory()
    con = duckdb.connect(
        config={
            "extension_directory": str(directory),
            "autoinstall_known_extensions": False,
            "autoload_known_extensions": False,
        }
    )
    quiet(con)
    return con


def quiet(con: duckdb.DuckDBPyConnection) -> None:
    """No progress bar (a per-session setting): a slow INSTALL or scan would draw one into
    run logs and stdout."""
    con.execute("SET enable_progress_bar = false")


def _install(con: duckdb.DuckDBPyConnection, name: str, directory: Path) -> None:
    """Install ``name`` once per directory; a file lock keeps racing processes apart."""
    key = (str(directory), name)
    if key in _installed:
        return
    with _install_lock:
        directory.mkdir(parents=True, exist_ok=True)
        with open(directory / ".install.lock", "a+") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                row = con.execute(
                    "SELECT installed FROM duckdb_extensions() "
                    "WHERE extension_name = ? OR list_contains(aliases, ?)",
                    [name, name],
                ).fetchone()
                if not (row and row[0]):
                    binary = wheel_binary(name)
                    if binary is not None:
                        # INSTALL takes no parameters; the path is the wheel's, quoted.
                        con.execute("INSTALL " + literal(str(binary)))
                    else:
                        _log.warning(
                            "warehouse: no duckdb-extension-%s wheel for DuckDB %s; "
                            "installing %s from DuckDB's repository",
                            name,
                            duckdb.__version__,
                            name,
                        )
                        con.execute(f"INSTALL {name}")
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)
        _installed.add(key)


def load(con: duckdb.DuckDBPyConnection, names: Iterable[str]) -> None:
    """Install (once) and load each extension into ``con``."""
    directory = extension_directory()
    for name in names:
        _install(con, name, directory)
        con.execute(f"LOAD {name}")


def install_statements(names: Iterable[str] = WHEELS) -> list[str]:
    """``INSTALL '<wheel binary>'`` lines for another DuckDB 1.5.5 client (CLI, DBeaver)."""
    out = []
    for name in names:
        binary = wheel_binary(name)
        out.append(f"INSTALL {literal(str(binary))};" if binary else f"INSTALL {name};")
    return out


if __name__ == "__main__":
    # python -m callminer_assets.warehouse.extensions: what to paste into a DuckDB client.
    print("\n".join(install_statements()))
