"""CallMiner Bulk Export client: one export job, polled to its end, downloaded as one zip.

What the public Singer tap gets wrong, and this client does not: it notices an execution
that ended ``Failed`` on the first poll that says so (with CallMiner's message) instead of
waiting out its budget; every call (job, history, download, delete) goes through
``HttpBase`` with retries, backoff, ``Retry-After`` and a token refresh on 401; the zip is
streamed to a file, never held in memory; and nothing is deleted on CallMiner's side
until the caller says the data is stored (``delete``), so a failed load leaves the export
there to investigate or download again.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from callminer_assets.lib.callminer import TokenProvider, authed_request, http_base
from callminer_assets.lib.errors import APIError, DataError, ExportFailed, PollTimeoutError
from callminer_assets.lib.http import AsyncClosing, HttpBase, LoggerLike
from callminer_assets.lib.settings import BulkSettings

DATA_TYPES: tuple[str, ...] = ("Contacts", "Transcripts_by_speaker", "Scores", "Categories")
SEARCH_MODES: tuple[str, ...] = ("ClientCaptureDate", "CreateDate", "Updated", "NewAndUpdated")
_CHUNK = 1 << 20


@dataclass(frozen=True, slots=True)
class Execution:
    """One finished (``Completed``) execution of an export job."""

    job_id: str
    execution_id: str
    download_url: str
    file_size: int | None


def day_range(days: list[date]) -> tuple[datetime, datetime]:
    """``[first day 00:00Z, day after the last 00:00Z)``: the whole UTC days a job covers."""
    first, last = min(days), max(days)
    start = datetime(first.year, first.month, first.day, tzinfo=UTC)
    end = datetime(last.year, last.month, last.day, tzinfo=UTC) + timedelta(days=1)
    return start, end


def _z(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class BulkExportClient(AsyncClosing):
    """Async Bulk Export client over ``HttpBase`` (one event loop; ``aclose`` when done)."""

    def __init__(
        self,
        settings: BulkSettings,
        transport: httpx.AsyncBaseTransport | None = None,
        logger: LoggerLike | None = None,
    ) -> None:
        self.settings = settings
        api = settings.api_url.rstrip("/") + "/"
        self.http = http_base(settings, api, settings.concurrency, transport, logger)
        self.auth_http = http_base(settings, settings.auth_url, 1, transport, logger)
        self.tokens = TokenProvider(
            self.auth_http, self.http, settings, path="/connect/token", scope=settings.scope
        )
        self.log = self.http.log

    async def aclose(self) -> None:
        await self.http.aclose()
        await self.auth_http.aclose()

    async def _call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return await authed_request(self.http, self.tokens, method, path, **kwargs)

    def _json_ok(self, response: httpx.Response, method: str, path: str, what: str) -> Any:
        name = self.http.describe(method, path)
        if not response.is_success:
            message = what + _message(response, self.http)
            raise self.http.error_for(response, name, message)
        return self.http.json(response, name)

    async def create_job(
        self,
        start: datetime,
        end: datetime,
        *,
        mode: str = "ClientCaptureDate",
        data_types: tuple[str, ...] = DATA_TYPES,
    ) -> str:
        """A one-off ``Custom`` job for ``[start, end)`` (whole UTC days); returns its id."""
        if mode not in SEARCH_MODES:
            raise DataError(f"unknown SearchMode {mode!r}")
        body = {
            "Name": f"callminer-assets {mode} {start.date()}..{(end - timedelta(days=1)).date()}",
            "Duration": {
                "Custom": {"StartDate": _z(start), "EndDate": _z(end)},
                "SearchMode": mode,
            },
            "DataTypes": list(data_types),
        }
        path = "api/export/job"
        job = self._json_ok(await self._call("POST", path, json=body), "POST", path, "job")
        job_id = job.get("Id") if isinstance(job, dict) else None
        if not isinstance(job_id, str | int) or job_id == "":
            raise DataError(f"export job answer has no Id ({self.http.describe('POST', path)})")
        self.log.info("created Bulk Export job %s (%s, %s..%s)", job_id, mode, _z(start), _z(end))
        return str(job_id)

    async def status(self, job_id: str) -> Execution | None:
        """One poll of the job's history: the completed execution, or None while there is
        none yet or it is ``InProgress``; ``Failed`` raises ``ExportFailed`` with CallMiner's
        message (the job is left on CallMiner to investigate)."""
        path = "api/export/history"
        name = self.http.describe("GET", path)
        response = await self._call("GET", path, params={"id": job_id})
        executions = self._json_ok(response, "GET", path, f"history of job {job_id}")
        if not isinstance(executions, list):
            raise DataError(f"export history is not an array ({name})")
        latest = _latest([e for e in executions if isinstance(e, dict)])
        status = str(latest.get("Status", "")).lower() if latest else ""
        if latest is not None and status == "failed":
            raise ExportFailed(
                f"export job {job_id} execution {latest.get('Id')} ended Failed: "
                f"{_execution_message(latest)}",
                request=name,
            )
        if latest is None or status != "completed":
            return None
        url = latest.get("DownloadEndpoint")
        if not isinstance(url, str) or not url:
            raise DataError(f"completed execution has no DownloadEndpoint ({name})")
        size = latest.get("FileSize")
        return Execution(
            job_id,
            str(latest.get("Id")),
            url,
            int(size) if isinstance(size, int | float) and size > 0 else None,
        )

    async def wait(self, job_id: str) -> Execution:
        """``status`` every ``poll_interval_s`` until the execution completes.

        ``Failed`` raises on the first poll that shows it; an execution still
        ``InProgress`` (or none at all) after ``poll_budget_s`` raises ``PollTimeoutError``
        naming the job, which is left on CallMiner's side to look at.
        """
        deadline = time.monotonic() + self.settings.poll_budget_s
        polls = 0
        while True:
            polls += 1
            execution = await self.status(job_id)
            if execution is not None:
                self.log.info("export job %s completed after %d poll(s)", job_id, polls)
                return execution
            if time.monotonic() + self.settings.poll_interval_s > deadline:
                raise PollTimeoutError(
                    f"export job {job_id} still InProgress after "
                    f"{self.settings.poll_budget_s:.0f} s ({polls} polls); the job is kept",
                    request=self.http.describe("GET", "api/export/history"),
                )
            await asyncio.sleep(self.settings.poll_interval_s)

    async def download(self, execution: Execution, dest: Path) -> Path:
        """Stream the zip to ``dest`` (chunks, never the whole file in memory) and check it
        has ``FileSize`` bytes: a short file is a ``DataError``, not a half-parsed export."""
        written = 0

        async def sink(response: httpx.Response) -> None:
            nonlocal written
            written = 0
            with dest.open("wb") as out:
                async for chunk in response.aiter_bytes(_CHUNK):
                    out.write(chunk)
                    written += len(chunk)

        url = execution.download_url
        response = await self._call("GET", url, sink=sink, headers={"Accept": "application/zip"})
        name = self.http.describe("GET", url)
        if not response.is_success:
            raise self.http.error_for(response, name, f"download of {execution.execution_id}")
        if execution.file_size is not None and written != execution.file_size:
            raise DataError(
                f"export {execution.execution_id} download has {written} bytes, "
                f"FileSize says {execution.file_size}: truncated; the export is kept ({name})"
            )
        self.log.info("downloaded export %s: %d bytes", execution.execution_id, written)
        return dest

    async def delete(self, execution: Execution) -> bool:
        """Delete the execution, then the job; a failure is logged (the data is already
        stored), never raised. Returns whether both went."""
        ok = True
        for path in (
            f"api/export/history/{quote(execution.execution_id, safe='')}",
            f"api/export/job/{quote(execution.job_id, safe='')}",
        ):
            try:
                response = await self._call("DELETE", path)
            except APIError as exc:
                self.log.warning("could not delete the export (left on CallMiner): %s", exc)
                ok = False
                continue
            if not response.is_success:
                self.log.warning(
                    "could not delete the export (left on CallMiner): HTTP %d (%s)",
                    response.status_code,
                    self.http.describe("DELETE", path),
                )
                ok = False
        return ok

    async def tenant_columns(self) -> list[dict[str, Any]]:
        """The tenant's own Contacts columns (``callmetadataconfig``)."""
        path = "api/info/callmetadataconfig"
        body = self._json_ok(await self._call("GET", path), "GET", path, "callmetadataconfig")
        return [c for c in body if isinstance(c, dict)] if isinstance(body, list) else []


def _latest(executions: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The most recent execution (by CreateDate, then position)."""
    if not executions:
        return None
    return max(enumerate(executions), key=lambda p: (str(p[1].get("CreateDate") or ""), p[0]))[1]


def _execution_message(execution: dict[str, Any]) -> str:
    for key in ("Message", "ErrorMessage", "StatusMessage", "ResultMessage"):
        value = execution.get(key)
        if isinstance(value, str) and value.strip():
            return value.strip()[:300]
    return "no message"


def _message(response: httpx.Response, http: HttpBase) -> str:
    """`` (CallMiner's Message)`` of a 400 answer, redacted, or nothing."""
    try:
        body = response.json()
    except ValueError:
        return ""
    if isinstance(body, dict) and isinstance(body.get("Message"), str):
        return f" ({http.redact(body['Message'])[:200]})"
    return ""
