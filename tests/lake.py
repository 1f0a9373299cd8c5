"""A private lake per test: the embedded configuration (SQLite catalog + folder) on tmp_path."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

from callminer_assets.lib.settings import WarehouseSettings


def lake_settings(root: Path) -> WarehouseSettings:
    """The embedded configuration under ``root`` (nothing is created until first use)."""
    return WarehouseSettings(
        catalog=f"sqlite:{root / 'warehouse.sqlite'}", data_path=f"{root}/lake/"
    )


def lake_env(settings: WarehouseSettings) -> dict[str, str]:
    """The environment variables a user sets for ``settings``."""
    return {"WAREHOUSE_CATALOG": settings.catalog, "WAREHOUSE_DATA_PATH": settings.data_path}


READ_FIRST_VALUE = (
    "import sys\n"
    "from callminer_assets.warehouse import extensions\n"
    "con = extensions.new_connection()\n"
    "extensions.load(con, ['ducklake', 'sqlite'])\n"
    "print(con.sql(sys.argv[1]).fetchone()[0])\n"
)
"""Python for a fresh process: run the SQL in argv[1] (ATTACH included) with nothing but the
wheels' extensions, print the first value."""


def fresh_python(code: str, *args: str, env: Mapping[str, str], cwd: Path) -> str:
    """``code`` in a new interpreter (another process, as an analyst's would be); its stdout."""
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        env=dict(env),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
