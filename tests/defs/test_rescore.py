"""A kit changes the same day: a new prohibited phrase and version, then an explicit re-score.

Real parts: the Dagster assets in process, the embedded sandbox's Semarize (local kits read
from a temporary KITS_DIR), a warehouse in tmp_path, and the CLI command itself.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import dagster as dg
import pytest
import yaml

from callminer_assets.cli import main
from callminer_assets.definitions import DAILY_ASSETS
from callminer_assets.defs.semarize.rescore import run_config
from callminer_assets.kits.loader import PACKAGED_DIR, normalise
from callminer_assets.lib.settings import WarehouseSettings
from callminer_assets.sandbox.app import SandboxConfig
from callminer_assets.sandbox.server import embedded_app, state_of
from tests.defs.helpers import materialize, range_tags, rows

SEED, PER_DAY = 1414, 10
DAYS = ("2025-01-14", "2025-01-15")
PHRASE = "tell me what the lights show"  # an agent line of technical calls, not prohibited yet
OLD, NEW = "TCPA-v2026.1", "TCPA-v2026.2"


def _kits_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "kits"
    shutil.copytree(PACKAGED_DIR, folder)
    path = folder / "qa_compliance.yaml"
    raw = yaml.safe_load(path.read_text())
    raw["version"] = NEW
    prohibited = next(r for r in raw["rules"] if r["brick"] == "prohibited_phrases")
    prohibited["phrases"].append(PHRASE)
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return folder


def _rescore(capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, str, str]:
    code = main(["rescore", "--kit", "qa_compliance", "--start", DAYS[0], "--end", DAYS[1], *extra])
    out, err = capsys.readouterr()
    return code, out, err


def test_a_new_kit_version_is_rescored_once_beside_the_old_rows(
    dagster_home: dg.DagsterInstance,
    lake: WarehouseSettings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    env = {"SANDBOX_SEED": str(SEED), "SANDBOX_PER_DAY": str(PER_DAY)}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    keys = ["/".join(k.path) for k in DAILY_ASSETS]
    assert materialize(dagster_home, env, keys, tags=range_tags(*DAYS)).success
    billing = state_of(embedded_app(SandboxConfig(seed=SEED, per_day=PER_DAY))).billing
    texts = [
        t
        for (t,) in rows(
            lake,
            "SELECT transcript_text FROM callminer.transcripts WHERE status = 'available'",
        )
    ]
    qa = "SELECT count(*) FROM semarize.evaluations WHERE kit_code = 'qa_compliance' AND kit_version = ?"
    (old_rows,) = rows(lake, qa, [OLD])[0]
    assert rows(lake, "SELECT DISTINCT evaluator FROM semarize.evaluations") == [("local-kits",)]
    before = dict(billing)
    assert texts and all(v == 1 for v in before.values())

    monkeypatch.setenv("KITS_DIR", str(_kits_dir(tmp_path)))
    # without --yes: the count and the estimate, and nothing started
    code, out, _ = _rescore(capsys)
    assert code == 0
    assert f"rescore qa_compliance at version {NEW} (local-kits)" in out
    assert f"{len(texts)} runs to start" in out and "input tokens" in out
    assert "nothing started" in out
    assert dict(billing) == before

    code, out, _ = _rescore(capsys, "--yes", "--version", NEW)
    assert code == 0, out
    assert f"{len(texts)} of {len(texts)} runs stored, 0 left" in out
    from callminer_assets.lib.models import transcript_hash

    for text in texts:  # the new version once per transcript; the other kits untouched
        h = transcript_hash(text)
        assert billing[(h, "qa_compliance")] == 2
        assert billing[(h, "experience_quality")] == billing[(h, "agent_wellbeing")] == 1
    assert rows(lake, qa, [OLD])[0] == (old_rows,)
    assert rows(lake, qa, [NEW])[0] == (old_rows,)  # same bricks, one row each
    versions = rows(
        lake,
        "SELECT DISTINCT kit_versions->>'$.qa_compliance' FROM analytics.interaction_scores",
    )
    assert versions == [(NEW,)]

    after = dict(billing)
    code, out, _ = _rescore(capsys, "--yes")
    assert code == 0 and "0 runs to start" in out and dict(billing) == after

    said = {
        iid
        for iid, text in rows(
            lake,
            "SELECT interaction_id, text FROM callminer.utterances WHERE speaker_role = 'agent'",
        )
        if normalise(PHRASE)[0] in normalise(text)[0]
    }
    diff = rows(
        lake,
        "SELECT DISTINCT interaction_id FROM analytics.kit_version_diff "
        "WHERE rule = 'prohibited_phrases' AND from_version = ? AND to_version = ?",
        [OLD, NEW],
    )
    assert 0 < len(said) < len(texts)
    assert {iid for (iid,) in diff} == said
    assert {
        iid for (iid,) in rows(lake, "SELECT interaction_id FROM analytics.kit_version_diff")
    } == said


def test_a_version_that_is_not_current_is_refused_in_one_line(
    dagster_home: dg.DagsterInstance,
    lake: WarehouseSettings,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("SANDBOX_PER_DAY", "2")
    code, _, err = _rescore(capsys, "--version", "TCPA-v1999", "--yes")
    assert code == 2
    assert err.strip() == f"error: rescore: qa_compliance is at version {OLD}, not TCPA-v1999"


def test_the_rescore_job_runs_from_its_launchpad_config(
    dagster_home: dg.DagsterInstance, lake: WarehouseSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The UI path: the job with its default run config, over one partition of stored data."""
    monkeypatch.setenv("SANDBOX_PER_DAY", "3")
    monkeypatch.setenv("SANDBOX_SEED", str(SEED + 1))
    keys = ["/".join(k.path) for k in DAILY_ASSETS]
    env = {"SANDBOX_PER_DAY": "3", "SANDBOX_SEED": str(SEED + 1)}
    assert materialize(dagster_home, env, keys, tags=range_tags(DAYS[0], DAYS[0])).success
    from callminer_assets.definitions import ALL_ASSETS
    from callminer_assets.defs.resources import build_resources
    from callminer_assets.defs.semarize.rescore import rescore_job

    job = dg.Definitions(
        assets=ALL_ASSETS, jobs=[rescore_job], resources=build_resources()
    ).resolve_job_def("rescore")
    started = state_of(embedded_app(SandboxConfig(seed=SEED + 1, per_day=3))).runs_started
    result = job.execute_in_process(instance=dagster_home, partition_key=DAYS[0])
    assert result.success
    # same kit version as stored: nothing to pay
    assert state_of(embedded_app(SandboxConfig(seed=SEED + 1, per_day=3))).runs_started == started
    wrong = job.execute_in_process(
        instance=dagster_home,
        partition_key=DAYS[0],
        run_config=run_config("qa_compliance", "TCPA-v0"),
        raise_on_error=False,
    )
    assert not wrong.success


def test_semarize_rescore_is_gone_with_a_pointer_to_the_command() -> None:
    from callminer_assets.defs.resources import build_resources
    from callminer_assets.lib.errors import ConfigError

    with pytest.raises(ConfigError, match="python -m callminer_assets rescore"):
        build_resources({"SEMARIZE_RESCORE": "true"})
