"""Whole-pipeline runs against a misbehaving loopback sandbox: same data, nothing leaked."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import dagster as dg
import pytest

from callminer_assets.lib.settings import WarehouseSettings
from callminer_assets.lib.tables import TABLES
from callminer_assets.sandbox.app import SandboxConfig
from callminer_assets.sandbox.generator import Generator
from callminer_assets.sandbox.server import serve
from callminer_assets.warehouse.store import connect
from tests.defs.helpers import EXTRACT, materialize, rows, sandbox_env, snapshot
from tests.lake import lake_settings

DAY = date(2025, 3, 4)


def _run(
    tmp_path: Path, name: str, config: SandboxConfig, **env: str
) -> tuple[WarehouseSettings, dg.ExecuteInProcessResult, object]:
    (tmp_path / name).mkdir()
    db = lake_settings(tmp_path / name / "lake")
    with dg.instance_for_test(temp_dir=str(tmp_path / name)) as instance, serve(config) as server:
        result = materialize(
            instance, sandbox_env(server.url, db, **env), EXTRACT, partition_key=str(DAY)
        )
        logs = "\n".join(str(e) for e in instance.all_logs(result.run_id))
        return db, result, (server.state, logs)


def test_transport_faults_change_nothing_but_timing(tmp_path: Path) -> None:
    base = {"seed": 5, "per_day": 16, "pending_fraction": 0.0, "failed_run_rate": 0.0}
    clean_db, clean, _ = _run(tmp_path, "clean", SandboxConfig(**base))
    faulty_cfg = SandboxConfig(
        **base, faults="transport", fault_rate=0.25, token_ttl=2.0, drift_rate=0.3, max_page_size=5
    )
    faulty_db, faulty, (state, _) = _run(tmp_path, "faulty", faulty_cfg, CALLMINER_PAGE_SIZE="5")
    assert clean.success and faulty.success
    faults = [e["fault"] for e in state.request_log if e.get("fault")]  # type: ignore[attr-defined]
    assert len(faults) >= 5, "the faulty run met too few faults to prove anything"
    assert snapshot(faulty_db) == snapshot(clean_db)


def test_hostile_records_are_quarantined_and_valid_ones_land_verbatim(tmp_path: Path) -> None:
    config = SandboxConfig(
        seed=9, per_day=40, faults="hostile", fault_rate=0.0, pending_fraction=0.0
    )
    db, result, _ = _run(tmp_path, "hostile", config)
    assert result.success
    listed = Generator(seed=9, per_day=40).interactions(DAY, hostile=True)
    valid = {
        r["id"]: r for r in Generator(seed=9, per_day=40).interactions(DAY) if isinstance(r, dict)
    }
    landed = dict(rows(db, "SELECT interaction_id, agent_name FROM callminer.interactions"))
    assert set(landed) == set(valid)
    # Hostile strings (quotes, SQL, NUL, emoji, RTL, CJK) survive byte for byte.
    hostile_rows = {r["id"]: r for r in listed if isinstance(r, dict) and r.get("id") in valid}
    for iid, rec in hostile_rows.items():
        assert landed[iid] == rec.get("agentName")
    quarantined = rows(
        db, "SELECT reason, payload FROM callminer.quarantine WHERE source = 'interaction'"
    )
    assert len(quarantined) == len(listed) - len(valid) > 0
    assert all(reason for reason, _ in quarantined)
    reasons = " ".join(r for r, _ in quarantined)
    for expected in ("missing id", "unknown channel", "unparseable startTime", "not an object"):
        assert expected in reasons


SECRET = "cs-Very$ecret'value"
API_KEY = "smz_test_K3y-never-to-be-seen"


def test_no_secret_or_token_in_logs_metadata_or_warehouse(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    config = SandboxConfig(
        seed=2,
        per_day=6,
        client_secret=SECRET,
        semarize_key=API_KEY,
        faults="transport",
        fault_rate=0.2,
        token_ttl=1.0,
    )
    db, result, (state, logs) = _run(
        tmp_path,
        "secrets",
        config,
        CALLMINER_CLIENT_SECRET=SECRET,
        SEMARIZE_API_KEY=API_KEY,
    )
    assert result.success
    tokens = list(state.tokens)  # type: ignore[attr-defined]
    assert state.tokens_issued >= 1  # type: ignore[attr-defined]
    out, err = capfd.readouterr()
    metadata = "\n".join(str(e.event_specific_data) for e in result.all_events)
    assert "dagster/row_count" in metadata
    con = connect(db)
    try:
        dump = "\n".join(
            str(con.execute(f"SELECT * FROM {name}").fetchall())  # noqa: S608 - schema.py names
            for name in TABLES
            if con.execute(
                "SELECT count(*) FROM duckdb_tables() WHERE database_name = current_database()"
                " AND schema_name || '.' || table_name = ?",
                [name],
            ).fetchone()[0]  # type: ignore[index]
        )
    finally:
        con.close()
    for haystack in (logs, out, err, metadata, dump, str(state.request_log)):  # type: ignore[attr-defined]
        for needle in (SECRET, API_KEY, *tokens):
            assert needle not in haystack


@pytest.mark.serial
def test_a_partition_run_stays_under_both_configured_rates(tmp_path: Path) -> None:
    """Concurrency up to the limit, never above it, for CallMiner and Semarize alike."""
    config = SandboxConfig(seed=3, per_day=20, rate_limit=15, pending_fraction=0.0)
    db, result, (state, _) = _run(
        tmp_path,
        "rated",
        config,
        CALLMINER_REQUESTS_PER_SECOND="15",
        SEMARIZE_REQUESTS_PER_SECOND="15",
    )
    assert result.success
    log = state.request_log  # type: ignore[attr-defined]
    assert len([e for e in log if e["service"] == "semarize"]) >= 60  # enough to hit the limit
    assert [e for e in log if e["status"] == 429] == []
    assert state.busiest_second("callminer") <= 15  # type: ignore[attr-defined]
    assert state.busiest_second("semarize") <= 15  # type: ignore[attr-defined]
    assert rows(db, "SELECT count(*) FROM callminer.interactions") == [(20,)]
