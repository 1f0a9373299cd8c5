"""SQL text for the few statements DuckDB cannot parameterise (ATTACH, INSTALL, COMMENT ON,
CREATE SECRET): the only place a value is written into SQL."""

from __future__ import annotations


def literal(text: str) -> str:
    """``text`` as a single-quoted SQL string literal."""
    return "'" + text.replace("'", "''") + "'"
