"""Render ``docs/tables.md`` from ``schema.py``, so the table docs cannot drift.

``python -m callminer_assets.warehouse.docs > docs/tables.md``; a test fails
when the committed file is stale.
"""

from __future__ import annotations

from callminer_assets.lib.tables import TABLES


def render() -> str:
    out = [
        "# Warehouse tables",
        "",
        "Generated from `callminer_assets/lib/tables.py` "
        "(`python -m callminer_assets.warehouse.docs > docs/tables.md`). "
        "The same docs are stored as DuckDB comments: "
        "`SELECT table_name, column_name, comment FROM duckdb_columns()`.",
        "",
    ]
    for table in TABLES.values():
        out += [f"## `{table.qualified}`", "", f"Grain: {table.grain}."]
        if table.partition_column:
            out.append(
                f"Partitioned by `{table.partition_column}`: a re-run replaces exactly its rows."
            )
        out += ["", "| column | type | meaning |", "|---|---|---|"]
        out += [f"| `{c.name}` | {c.type} | {c.doc} |" for c in table.columns]
        out.append("")
    return "\n".join(out)


if __name__ == "__main__":
    print(render(), end="")
