"""Reading optional numeric settings from the environment, with a clear error."""

from __future__ import annotations

from collections.abc import Mapping

from callminer_assets.lib.errors import ConfigError


def env_number(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    try:
        return float(raw) if raw else default
    except ValueError as exc:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from exc
