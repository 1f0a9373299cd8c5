"""The headless runner: one-line configuration errors, quiet progress, per-partition figures."""

from __future__ import annotations

import calendar
import io
import subprocess
import sys
from datetime import UTC, date, datetime
from pathlib import Path

import dagster as dg
import pytest

from callminer_assets.cli import DAYS_PER_LINE, Progress, main, whole_months
from callminer_assets.defs.partitions import RANGE_END_TAG, RANGE_START_TAG
from callminer_assets.sandbox.app import SandboxConfig
from callminer_assets.sandbox.server import serve
from tests.defs.helpers import env_without_credentials, rows
from tests.lake import lake_env, lake_settings


def cli(
    args: list[str], env: dict[str, str], cwd: Path, module: str = "callminer_assets"
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_only_whole_finished_months_get_monthly_features() -> None:
    assert whole_months(date(2025, 1, 10), date(2025, 3, 15)) == ["2025-02-01"]
    assert whole_months(date(2025, 1, 1), date(2025, 2, 28)) == ["2025-01-01", "2025-02-01"]
    # The current month is not over: no partition exists for it yet.
    today = datetime.now(UTC).date()
    last_day = today.replace(day=calendar.monthrange(today.year, today.month)[1])
    assert whole_months(today.replace(day=1), last_day) == []


def test_summary_without_a_warehouse_is_a_clear_message(tmp_path, capsys, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("WAREHOUSE_CATALOG", f"sqlite:{tmp_path / 'missing.sqlite'}")
    assert main(["summary"]) == 1
    assert "no warehouse catalog at" in capsys.readouterr().err


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_is_one_line_per_chunk_of_days_without_a_terminal() -> None:
    out = io.StringIO()
    progress = Progress(10, out, tty=False)
    for _ in range(10):
        progress.day_done(
            {
                "callminer/interactions": {"dagster/row_count": 5},
                "callminer/transcripts": {"pending": 1},
                "semarize/evaluations": {"runs_started": 2, "per_status": {"succeeded": 3}},
            }
        )
    lines = out.getvalue().splitlines()
    assert len(lines) == 2 and lines[0].startswith(f"days  {DAYS_PER_LINE}/10")
    assert "interactions 50  transcripts pending 10" in lines[1]
    assert "semarize runs 20 started / 10 already paid" in lines[1]
    assert "ETA" in lines[0] and "ETA" not in lines[1]


def test_progress_redraws_one_bar_on_a_terminal() -> None:
    out = _Terminal()
    progress = Progress(3, out, tty=True)
    for _ in range(3):
        progress.day_done({})
    text = out.getvalue()
    assert text.count("\r") == 3 and text.count("\n") == 1 and "[" + "#" * 24 + "]" in text


def _one_day(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    base = env_without_credentials(**lake_env(lake_settings(tmp_path / "w")))
    base.pop("DAGSTER_HOME", None)
    return cli(["run", "--start", "2025-01-01", "--end", "2025-01-01"], {**base, **env}, tmp_path)


CONFIG_ERRORS = {
    "client id without the rest": ({"CALLMINER_CLIENT_ID": "me"}, "CALLMINER_CLIENT_SECRET"),
    "rate not a number": ({"CALLMINER_REQUESTS_PER_SECOND": "abc"}, "REQUESTS_PER_SECOND"),
    "rate of zero": ({"SEMARIZE_REQUESTS_PER_SECOND": "0"}, "SEMARIZE_REQUESTS_PER_SECOND"),
    "negative concurrency": ({"CALLMINER_CONCURRENCY": "-4"}, "CALLMINER_CONCURRENCY"),
    "semarize key without url": ({"SEMARIZE_API_KEY": "k"}, "SEMARIZE_API_URL"),
    "dagster home missing": ({"DAGSTER_HOME": "/nonexistent/home"}, "DAGSTER_HOME"),
    "the retired DUCKDB_PATH": ({"DUCKDB_PATH": "data/callminer.duckdb"}, "WAREHOUSE_CATALOG"),
    "live callminer, no semarize key": (
        {f"CALLMINER_{v}": "x" for v in ("AUTH_URL", "API_URL", "CLIENT_ID", "CLIENT_SECRET")},
        "SEMARIZE_API_KEY",
    ),
}


@pytest.mark.parametrize("env, variable", CONFIG_ERRORS.values(), ids=CONFIG_ERRORS.keys())
def test_a_configuration_error_is_one_line_and_exit_2(
    tmp_path: Path, env: dict[str, str], variable: str
) -> None:
    done = _one_day(tmp_path, **env)
    output = (done.stdout + done.stderr).splitlines()
    assert done.returncode == 2, done.stdout + done.stderr
    assert len(output) == 1 and variable in output[0] and output[0].startswith("error: ")
    assert not (tmp_path / "w").exists() or not any((tmp_path / "w").iterdir())


def test_an_unwritable_warehouse_is_refused_before_any_request(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("")
    done = _one_day(tmp_path, WAREHOUSE_CATALOG=f"sqlite:{tmp_path / 'a-file' / 'w.sqlite'}")
    output = (done.stdout + done.stderr).splitlines()
    assert done.returncode == 2 and len(output) == 1 and "WAREHOUSE_CATALOG=" in output[0]
    assert not (tmp_path / ".dagster_home" / "storage").exists()  # no run was started


def test_a_refused_secret_is_one_line_and_the_log_path(tmp_path: Path) -> None:
    with serve(SandboxConfig(per_day=5), port=0) as url:
        done = _one_day(
            tmp_path,
            CALLMINER_AUTH_URL=url,
            CALLMINER_API_URL=url,
            CALLMINER_CLIENT_ID=SandboxConfig().client_id,
            CALLMINER_CLIENT_SECRET="not-the-secret",
            SEMARIZE_EVALUATOR="local-kits",
        )
    assert done.returncode == 1 and done.stderr == ""
    failed = [line for line in done.stdout.splitlines() if line.startswith("FAILED")]
    assert len(failed) == 1 and "client credentials refused" in failed[0]
    log = Path(done.stdout.splitlines()[0].split(": ", 1)[1])
    assert log.is_file() and "STEP_FAILURE" in log.read_text()
    assert "no warehouse" not in done.stdout


# A week per run: days 1-7 share a run (its range in the tags), days 8-9 the next.
RUN_OF_DAY = {
    "2025-01-01": ("2025-01-01", "2025-01-07"),
    "2025-01-05": ("2025-01-01", "2025-01-07"),
    "2025-01-09": ("2025-01-08", "2025-01-09"),
}


@pytest.mark.timeout(900)  # slow on a busy 2-core machine
def test_a_range_run_is_quiet_and_each_day_keeps_its_own_figures(tmp_path: Path) -> None:
    warehouse = lake_settings(tmp_path / "w")
    env = env_without_credentials(**lake_env(warehouse), SANDBOX_PER_DAY="15")
    env.pop("DAGSTER_HOME", None)
    done = cli(["run", "--start", "2025-01-01", "--end", "2025-01-09"], env, tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert done.stderr == "" and len(lines) < 45
    assert lines[1].startswith("9 days") and any(line.startswith("days 9/9") for line in lines)
    log = Path(lines[0].split(": ", 1)[1])
    assert "ASSET_MATERIALIZATION" in log.read_text()
    assert (tmp_path / ".dagster_home" / "dagster.yaml").exists()  # defaulted, not required

    per_day = rows(
        warehouse, "SELECT interaction_date, count(*) FROM callminer.utterances GROUP BY 1"
    )
    assert len({n for _, n in per_day}) > 1  # days differ, so a shared total would be caught
    with dg.DagsterInstance.from_config(str(tmp_path / ".dagster_home")) as instance:
        for day in RUN_OF_DAY:
            for key, table in (("interactions", "interactions"), ("utterances", "utterances")):
                records = instance.fetch_materializations(
                    dg.AssetRecordsFilter(
                        asset_key=dg.AssetKey(["callminer", key]), asset_partitions=[day]
                    ),
                    limit=5,
                ).records
                assert len(records) == 1
                meta = records[0].asset_materialization.metadata  # type: ignore[union-attr]
                expected = rows(
                    warehouse,
                    f"SELECT count(*) FROM callminer.{table} WHERE interaction_date = ?",  # noqa: S608
                    [date.fromisoformat(day)],
                )[0][0]
                assert meta["dagster/row_count"].value == expected
            run = instance.get_run_by_id(records[0].run_id)
            assert run is not None and run.job_name == "daily_pipeline"
            assert run.tags["callminer/trigger"] == "cli"
            assert run.tags["callminer/window"] == "2025-01-01..2025-01-09"
            first, last = RUN_OF_DAY[day]
            assert run.tags[RANGE_START_TAG] == first and run.tags[RANGE_END_TAG] == last


def test_the_ui_shows_a_configuration_error_as_the_code_location_load_error(tmp_path: Path) -> None:
    """What `dagster dev` loads: the location fails to load, naming the variable and the fix."""
    env = env_without_credentials(CALLMINER_CONCURRENCY="-1", DAGSTER_HOME=str(tmp_path))
    args = ["definitions", "validate", "-m", "callminer_assets.definitions"]
    done = cli(args, env, tmp_path, module="dagster")
    output = done.stdout + done.stderr
    assert done.returncode != 0 and "Validation failed for code location" in output
    assert "ConfigError: CALLMINER_CONCURRENCY='-1' must be a positive whole number" in output


def test_days_per_run_must_be_at_least_one(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["run", "--start", "2025-01-01", "--end", "2025-01-02", "--days-per-run", "0"])
    assert exited.value.code == 2
    assert "--days-per-run: '0' is not a whole number of at least 1" in capsys.readouterr().err
