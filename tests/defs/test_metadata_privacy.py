"""No customer data in Dagster's event log by default; ``METADATA_PREVIEW=full`` shows it.

A real run of the daily assets on a real instance, then every stored event of the run
(serialised as the event log stores it: messages, metadata, check results) is searched for
each customer id, contact field and utterance text the run loaded into the warehouse.
"""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg
import pytest
from dagster._serdes import serialize_value

from callminer_assets.definitions import DAILY_ASSETS
from callminer_assets.lib.settings import WarehouseSettings
from tests.defs.helpers import env_without_credentials, materialize, rows
from tests.lake import lake_env, lake_settings

DAY = "2025-01-14"


def _event_log(instance: dg.DagsterInstance, run_id: str) -> str:
    return "\n".join(serialize_value(e) for e in instance.all_logs(run_id))


def _customer_data(db: WarehouseSettings) -> set[str]:
    """Customer ids, contact fields (names, phones, addresses) and what customers and agents said."""
    found: set[str] = set()
    for customer_id, contact, mailbox in rows(
        db, "SELECT customer_id, contact::VARCHAR, mailbox FROM callminer.interactions"
    ):
        found |= {customer_id, mailbox} - {None}
        found |= {str(v) for v in json.loads(contact or "{}").values() if len(str(v)) >= 5}
    found |= {
        text for (text,) in rows(db, "SELECT text FROM callminer.utterances") if len(text) >= 15
    }
    return found


def _leaks(
    instance: dg.DagsterInstance, result: dg.ExecuteInProcessResult, db: WarehouseSettings
) -> set[str]:
    log = _event_log(instance, result.run_id)
    assert "dagster/row_count" in log and "preview" in log  # the metadata is there
    return {needle for needle in _customer_data(db) if needle in log}


def test_the_event_log_holds_no_customer_data_unless_full_previews_are_asked_for(
    dagster_home: dg.DagsterInstance, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = lake_settings(tmp_path / "w")
    env = env_without_credentials(**lake_env(db), SANDBOX_PER_DAY="12")
    env.pop("METADATA_PREVIEW", None)
    monkeypatch.delenv("METADATA_PREVIEW", raising=False)
    keys = ["/".join(k.path) for k in DAILY_ASSETS]
    result = materialize(dagster_home, env, keys, partition_key=DAY)
    assert result.success
    kinds = {k for (k,) in rows(db, "SELECT DISTINCT channel FROM callminer.interactions")}
    assert len(_customer_data(db)) > 50 and len(kinds) >= 3  # enough to search for

    assert _leaks(dagster_home, result, db) == set()

    # The same search finds them when full previews are turned on: it is not blind.
    full = materialize(dagster_home, {**env, "METADATA_PREVIEW": "full"}, keys, partition_key=DAY)
    assert full.success
    assert _leaks(dagster_home, full, db)
