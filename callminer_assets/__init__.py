"""callminer-assets: CallMiner -> Semarize -> DuckDB as Dagster assets.

``connect`` and ``load_features`` are resolved lazily so ``import callminer_assets``
stays cheap (no Dagster, no Polars until used).
"""

from __future__ import annotations

from typing import Any

__all__ = ["connect", "load_features"]


def __getattr__(name: str) -> Any:
    if name == "load_features":
        from callminer_assets.analytics.exports import load_features

        return load_features
    if name == "connect":
        from callminer_assets.warehouse.store import connect

        return connect
    raise AttributeError(f"module 'callminer_assets' has no attribute {name!r}")
