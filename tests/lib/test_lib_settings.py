"""Settings: env parsing, start-up errors, secrets never in repr."""

from __future__ import annotations

import pytest

from callminer_assets.lib.errors import ConfigError
from callminer_assets.lib.settings import (
    BulkSettings,
    CallMinerSettings,
    SemarizeSettings,
    backend_from_env,
    evaluator_from_env,
)

ENV = {
    "CALLMINER_AUTH_URL": "https://auth.example",
    "CALLMINER_API_URL": "https://api.example",
    "CALLMINER_CLIENT_ID": "id-1",
    "CALLMINER_CLIENT_SECRET": "very-secret",
    "CALLMINER_REQUESTS_PER_SECOND": "12.5",
    "CALLMINER_CONCURRENCY": "4",
    "SEMARIZE_API_URL": "https://smz.example",
    "SEMARIZE_API_KEY": "smz_live_abc",
}


def test_from_env_reads_everything_and_hides_secrets() -> None:
    cm = CallMinerSettings.from_env(ENV)
    smz = SemarizeSettings.from_env(ENV)
    assert cm is not None and smz is not None
    assert (cm.requests_per_second, cm.concurrency, cm.client_id) == (12.5, 4, "id-1")
    assert "very-secret" not in repr(cm) and "smz_live_abc" not in repr(smz)


def test_unset_means_sandbox() -> None:
    assert CallMinerSettings.from_env({}) is None
    assert SemarizeSettings.from_env({}) is None


@pytest.mark.parametrize(
    "drop", ["CALLMINER_AUTH_URL", "CALLMINER_API_URL", "CALLMINER_CLIENT_SECRET"]
)
def test_partial_callminer_config_is_a_clear_error(drop: str) -> None:
    env = {k: v for k, v in ENV.items() if k != drop}
    with pytest.raises(ConfigError, match=drop):
        CallMinerSettings.from_env(env)


def test_bad_values_rejected_at_start() -> None:
    with pytest.raises(ConfigError, match="CALLMINER_CONCURRENCY"):
        CallMinerSettings.from_env({**ENV, "CALLMINER_CONCURRENCY": "lots"})
    with pytest.raises(ConfigError):
        CallMinerSettings.from_env({**ENV, "CALLMINER_REQUESTS_PER_SECOND": "0"})
    with pytest.raises(ConfigError, match="SEMARIZE_API_URL"):
        SemarizeSettings.from_env({"SEMARIZE_API_KEY": "k"})
    with pytest.raises(ConfigError):
        SemarizeSettings(api_url="u", api_key="k", mode="batch")  # type: ignore[arg-type]


def test_who_evaluates_is_explicit_when_callminer_is_live() -> None:
    live = {k: v for k, v in ENV.items() if not k.startswith("SEMARIZE_")}
    assert evaluator_from_env({}) == "local-kits"  # sandbox CallMiner: local kits by default
    assert evaluator_from_env(ENV) == "semarize"
    assert evaluator_from_env({**live, "SEMARIZE_EVALUATOR": "local-kits"}) == "local-kits"
    with pytest.raises(ConfigError) as info:
        evaluator_from_env(live)
    assert "\n" not in str(info.value)
    assert "SEMARIZE_API_KEY" in str(info.value) and "SEMARIZE_EVALUATOR=local-kits" in str(
        info.value
    )
    with pytest.raises(ConfigError, match="SEMARIZE_EVALUATOR=semarize but SEMARIZE_API_KEY"):
        evaluator_from_env({"SEMARIZE_EVALUATOR": "semarize"})
    with pytest.raises(ConfigError, match="must be semarize or local-kits"):
        evaluator_from_env({"SEMARIZE_EVALUATOR": "gpt"})


def test_bulk_settings_from_region_with_overrides_and_a_required_time_zone() -> None:
    base = {
        "CALLMINER_CLIENT_ID": "cid",
        "CALLMINER_CLIENT_SECRET": "s",
        "CALLMINER_TENANT_TIMEZONE": "Europe/London",
    }
    us = BulkSettings.from_env(base)
    assert us is not None and us.api_url == "https://api.callminer.net/bulkexport"
    assert us.auth_url == "https://idp.callminer.net"
    assert (us.poll_interval_s, us.poll_budget_s) == (60.0, 7200.0)
    uk = BulkSettings.from_env({**base, "CALLMINER_REGION": "uk"})
    assert uk is not None and uk.api_url == "https://apiuk.callminer.net/bulkexport"
    assert uk.auth_url == "https://idpuk.callminer.net"
    local = BulkSettings.from_env(
        {**base, "CALLMINER_API_URL": "http://127.0.0.1:9/bulkexport", "CALLMINER_REGION": "CA"}
    )
    assert local is not None and local.api_url == "http://127.0.0.1:9/bulkexport"
    assert local.auth_url == "https://idpca.callminer.net"
    assert BulkSettings.from_env({}) is None
    with pytest.raises(ConfigError, match="CALLMINER_TENANT_TIMEZONE"):
        BulkSettings.from_env({k: v for k, v in base.items() if "TIMEZONE" not in k})
    with pytest.raises(ConfigError, match="not a known time zone"):
        BulkSettings.from_env({**base, "CALLMINER_TENANT_TIMEZONE": "Mars/Olympus"})
    with pytest.raises(ConfigError, match="CALLMINER_REGION"):
        BulkSettings.from_env({**base, "CALLMINER_REGION": "EU"})
    with pytest.raises(ConfigError, match="CALLMINER_BACKEND"):
        backend_from_env({"CALLMINER_BACKEND": "ftp"})
    assert (
        backend_from_env({}) == "rest" and backend_from_env({"CALLMINER_BACKEND": "Bulk"}) == "bulk"
    )
