"""Fixtures for Dagster-level tests: a private DAGSTER_HOME per test (the lake: ``lake``)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest
import yaml

from tests.defs.helpers import REPO


@pytest.fixture
def dagster_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dg.DagsterInstance]:
    """A real instance on disk, configured by the repo's dagster.yaml."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    overrides = yaml.safe_load((REPO / "dagster.yaml").read_text())
    with dg.instance_for_test(overrides=overrides, temp_dir=str(home)) as instance:
        yield instance
