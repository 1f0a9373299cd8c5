"""callminer-assets: CallMiner -> Semarize -> DuckDB as Dagster assets.

``load_features`` is resolved lazily so ``import callminer_assets`` stays cheap.
"""

from __future__ import annotations

from typing import Any

__all__ = ["load_features"]


def __getattr__(name: str) -> Any:
    if name == "load_features":
        from callminer_assets.analytics.exports import load_features

        return load_features
    raise AttributeError(f"module 'callminer_assets' has no attribute {name!r}")
