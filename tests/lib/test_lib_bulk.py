"""The Bulk Export client against the sandbox over real loopback HTTP, one fault at a time."""

from __future__ import annotations

import asyncio
import logging
import zipfile
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from conftest import FAST_RETRY

from callminer_assets.lib.bulk import BulkExportClient, Execution, day_range
from callminer_assets.lib.errors import DataError, ExportFailed, PollTimeoutError, RequestRejected
from callminer_assets.lib.settings import BulkSettings
from callminer_assets.sandbox.app import SandboxConfig
from callminer_assets.sandbox.bulk import BULK_PREFIX
from callminer_assets.sandbox.server import SandboxServer, serve

DAY = date(2025, 1, 15)
HISTORY = f"{BULK_PREFIX}/api/export/history"
DOWNLOAD = f"{BULK_PREFIX}/api/export/download"


@pytest.fixture
def sandbox() -> Iterator[SandboxServer]:
    config = SandboxConfig(
        seed=3, per_day=5, bulk_job_seconds=120, bulk_clock_speed=60_000, retry_after_s=1
    )
    with serve(config) as server:
        yield server


def settings(url: str, **kw: Any) -> BulkSettings:
    base: dict[str, Any] = {
        "poll_interval_s": 0.005,
        "poll_budget_s": 10.0,
        "requests_per_second": 500.0,
        "retry": FAST_RETRY,
    }
    return BulkSettings(
        auth_url=url,
        api_url=f"{url}{BULK_PREFIX}",
        client_id="sandbox",
        client_secret="sandbox",
        **{**base, **kw},
    )


async def _export(
    url: str, dest: Path, before_wait: Any = None, **kw: Any
) -> tuple[BulkExportClient, Execution, Path]:
    client = BulkExportClient(settings(url, **kw))
    try:
        job = await client.create_job(*day_range([DAY]))
        if before_wait is not None:
            before_wait(job)
        execution = await client.wait(job)
        return client, execution, await client.download(execution, dest / "export.zip")
    finally:
        await client.aclose()


def export(sandbox: SandboxServer, tmp_path: Path, **kw: Any) -> tuple[Any, Execution, Path]:
    return asyncio.run(_export(sandbox.url, tmp_path, **kw))


def test_an_export_is_one_job_polled_downloaded_whole_and_nothing_deleted(
    sandbox: SandboxServer, tmp_path: Path
) -> None:
    client, execution, path = export(sandbox, tmp_path)
    bulk = sandbox.state.bulk
    assert list(bulk.jobs) == [execution.job_id]
    assert path.stat().st_size == execution.file_size
    assert any(n.endswith("_Contacts.csv.gz") for n in zipfile.ZipFile(path).namelist())
    assert bulk.deleted == []  # only the caller, after its commit, deletes
    job = bulk.jobs[execution.job_id]
    assert job["Duration"]["Custom"] == {
        "StartDate": "2025-01-15T00:00:00Z",
        "EndDate": "2025-01-16T00:00:00Z",
    }


def test_failed_is_noticed_on_the_first_poll_that_says_so(
    sandbox: SandboxServer, tmp_path: Path
) -> None:
    sandbox.state.bulk.switches.failed = True
    with pytest.raises(ExportFailed) as err:
        export(sandbox, tmp_path, poll_budget_s=3600.0)
    (job_id,) = sandbox.state.bulk.jobs
    # poll 1: no execution yet; poll 2: Failed -> stop (not an hour of polling).
    assert sandbox.state.bulk.history_polls[job_id] == 2
    assert job_id in str(err.value) and "exceeded the tenant's time limit" in str(err.value)
    assert sandbox.state.bulk.deleted == []


def test_stuck_in_progress_past_the_budget_names_the_job_and_keeps_it(
    sandbox: SandboxServer, tmp_path: Path
) -> None:
    sandbox.state.bulk.switches.stuck = True
    with pytest.raises(PollTimeoutError, match="still InProgress after 0 s") as err:
        export(sandbox, tmp_path, poll_budget_s=0.1)
    (job_id,) = sandbox.state.bulk.jobs
    assert job_id in str(err.value) and "kept" in str(err.value)
    assert sandbox.state.bulk.history_polls[job_id] > 2


def test_401_on_a_poll_after_the_token_expired_is_refreshed(
    sandbox: SandboxServer, tmp_path: Path
) -> None:
    state = sandbox.state
    _, execution, _ = export(sandbox, tmp_path, before_wait=lambda job: state.revoke_tokens())
    assert execution.job_id in state.bulk.jobs
    assert 401 in state.statuses(HISTORY)
    assert state.tokens_issued == 2


@pytest.mark.parametrize("kind", ["429", "429-bare"])
def test_429_with_and_without_retry_after_is_waited_out(
    sandbox: SandboxServer, tmp_path: Path, kind: str
) -> None:
    sandbox.state.inject(kind, times=2, path=HISTORY)
    client, execution, path = export(sandbox, tmp_path)
    assert sandbox.state.statuses(HISTORY).count(429) == 2
    assert client.http.stats.throttled == 2
    assert path.stat().st_size == execution.file_size


@pytest.mark.parametrize(
    ("kind", "path"),
    [("500", HISTORY), ("504", HISTORY), ("500", DOWNLOAD), ("504", DOWNLOAD), ("drop", DOWNLOAD)],
)
def test_5xx_and_drops_on_poll_and_download_are_retried(
    sandbox: SandboxServer, tmp_path: Path, kind: str, path: str
) -> None:
    sandbox.state.inject(kind, times=2, path=path)
    client, execution, zip_path = export(sandbox, tmp_path)
    assert client.http.stats.retries >= 2
    assert zip_path.stat().st_size == execution.file_size
    zipfile.ZipFile(zip_path).testzip()


def test_a_truncated_download_is_a_clear_error(sandbox: SandboxServer, tmp_path: Path) -> None:
    sandbox.state.bulk.switches.truncated_zip = True
    with pytest.raises(DataError, match="truncated; the export is kept"):
        export(sandbox, tmp_path)
    assert sandbox.state.bulk.deleted == []


def test_a_failing_delete_is_logged_not_raised(
    sandbox: SandboxServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _, execution, _ = export(sandbox, tmp_path)
    sandbox.state.bulk.switches.delete_status = 500

    async def delete() -> bool:
        client = BulkExportClient(settings(sandbox.url))
        try:
            return await client.delete(execution)
        finally:
            await client.aclose()

    with caplog.at_level(logging.WARNING, logger="callminer_assets.lib"):
        assert asyncio.run(delete()) is False
    assert "could not delete the export (left on CallMiner)" in caplog.text
    assert execution.job_id in sandbox.state.bulk.jobs


def test_an_invalid_job_body_is_rejected_with_callminers_message(sandbox: SandboxServer) -> None:
    async def bad() -> None:
        client = BulkExportClient(settings(sandbox.url))
        try:
            noon = datetime(2025, 1, 15, 12, tzinfo=UTC)
            await client.create_job(noon, noon.replace(day=16))
        finally:
            await client.aclose()

    with pytest.raises(RequestRejected, match="whole UTC days"):
        asyncio.run(bad())
