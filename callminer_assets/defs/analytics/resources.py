"""Settings of the analytics assets (alerts, roster, model, exports), from the environment."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import dagster as dg

from callminer_assets.analytics.alerts import DEFAULT_THRESHOLD
from callminer_assets.analytics.exports import DEFAULT_EXPORTS_DIR
from callminer_assets.lib.errors import ConfigError
from callminer_assets.lib.settings import env_number

DEFAULT_ROSTER_PATH = "data/agent_roster.csv"
DEFAULT_MODELS_DIR = "data/models"
DEFAULT_REPORTS_DIR = "data/reports"


class AnalyticsResource(dg.ConfigurableResource):
    """Where analytics inputs and outputs live; the Slack URL is a secret (an EnvVar)."""

    slack_webhook_url: str | None = None
    compliance_threshold: float = DEFAULT_THRESHOLD
    min_interactions: int = 10
    roster_path: str = DEFAULT_ROSTER_PATH
    models_dir: str = DEFAULT_MODELS_DIR
    exports_dir: str = DEFAULT_EXPORTS_DIR
    reports_dir: str = DEFAULT_REPORTS_DIR


def build_analytics_resource(env: Mapping[str, str] | None = None) -> AnalyticsResource:
    """``SLACK_WEBHOOK_URL``, ``COMPLIANCE_ALERT_THRESHOLD``, ``FEATURES_MIN_INTERACTIONS``,
    ``AGENT_ROSTER_PATH``, ``MODELS_DIR``, ``EXPORTS_DIR``, ``REPORTS_DIR``: all optional."""
    env = os.environ if env is None else env
    threshold = env_number(env, "COMPLIANCE_ALERT_THRESHOLD", DEFAULT_THRESHOLD)
    if not 0 <= threshold <= 1:
        raise ConfigError(f"COMPLIANCE_ALERT_THRESHOLD must be within 0..1, got {threshold}")
    slack: Any = dg.EnvVar("SLACK_WEBHOOK_URL") if env.get("SLACK_WEBHOOK_URL") else None
    return AnalyticsResource(
        slack_webhook_url=slack,
        compliance_threshold=threshold,
        min_interactions=int(env_number(env, "FEATURES_MIN_INTERACTIONS", 10)),
        roster_path=env.get("AGENT_ROSTER_PATH") or DEFAULT_ROSTER_PATH,
        models_dir=env.get("MODELS_DIR") or DEFAULT_MODELS_DIR,
        exports_dir=env.get("EXPORTS_DIR") or DEFAULT_EXPORTS_DIR,
        reports_dir=env.get("REPORTS_DIR") or DEFAULT_REPORTS_DIR,
    )
