"""The Bulk Export ``InteractionSource``: one export per run, staged between its steps.

Dagster-free glue between the client (``lib.bulk``) and the parser (``transform.bulk``),
kept beside the resources that choose it. A run's interactions step exports its whole
range of UTC days as one ``Custom`` job, downloads the zip, parses every data type into
Parquet under ``staging/<first>_<last>/`` and lists each day from there; the run's
transcripts step reads the same staged export (a new export only when none is staged,
e.g. a pending-transcripts retry). Once the transcripts are committed the step calls
``release``: the execution and the job are deleted on CallMiner, then the staged files.
Any failure before that leaves both in place, so the load can be retried or examined.
See ``docs/decisions/0013-bulk-export-backend.md``.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import asdict
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import httpx
import polars as pl

from callminer_assets.lib.bulk import BulkExportClient, Execution, day_range
from callminer_assets.lib.http import LoggerLike
from callminer_assets.lib.models import TranscriptFetch, Window
from callminer_assets.lib.settings import BulkSettings
from callminer_assets.transform.bulk import (
    DATA_TYPES,
    StagedExport,
    contact_days,
    contact_records,
    native_frames,
    stage_export,
    transcript_fetches,
)

_MANIFEST = "manifest.json"


class BulkSource:
    """``InteractionSource`` over CallMiner's Bulk Export API (``CALLMINER_BACKEND=bulk``)."""

    def __init__(
        self,
        settings: BulkSettings,
        staging: str | os.PathLike[str],
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        logger: LoggerLike | None = None,
        origin: str | None = None,
    ) -> None:
        self.settings = settings
        self.staging = Path(staging)
        self.client = BulkExportClient(settings, transport=transport, logger=logger)
        self.log = self.client.log
        self.origin = origin or f"bulk:{httpx.URL(settings.api_url).host}"
        self._days: list[date] = []
        self._staged: StagedExport | None = None

    def _dir(self, days: Sequence[date]) -> Path:
        return self.staging / f"{min(days).isoformat()}_{max(days).isoformat()}"

    async def prepare(self, days: Sequence[date], *, fresh: bool) -> None:
        """Make one export of ``days`` available: a new one when ``fresh`` or none is staged."""
        days = sorted(set(days))
        target = self._dir(days)
        if not fresh and (target / _MANIFEST).exists():
            self._days, self._staged = days, _load(target)
            self.log.info("using the staged export %s", target.name)
            return
        start, end = day_range(days)
        job_id = await self.client.create_job(start, end, data_types=DATA_TYPES)
        execution = await self.client.wait(job_id)
        partial = target.with_name(f"{target.name}.partial-{os.getpid()}")
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        try:
            zip_path = await self.client.download(execution, partial / "export.zip")
            staged = stage_export(zip_path, partial, self.settings.tenant_timezone)
            zip_path.unlink()
            manifest = {
                "execution": asdict(execution),
                "days": [d.isoformat() for d in days],
                "exported_at": datetime.now(UTC).isoformat(),
                "files": {k: v.name if v else None for k, v in staged.files.items()},
            }
            (partial / _MANIFEST).write_text(json.dumps(manifest))
        except BaseException:
            shutil.rmtree(partial, ignore_errors=True)
            self.log.warning(
                "export job %s kept on CallMiner for a retry (nothing was stored)", job_id
            )
            raise
        if target.exists():
            shutil.rmtree(target)
        partial.rename(target)
        self._days, self._staged = days, _load(target)

    async def _ready(self, days: Sequence[date]) -> StagedExport:
        if self._staged is None or not set(days) <= set(self._days):
            await self.prepare(days, fresh=True)
        assert self._staged is not None
        return self._staged

    async def list_interactions(self, window: Window) -> list[Any]:
        """The window's contacts as REST-shaped records; contacts whose capture date did
        not parse come with the first day of the export (and are quarantined there)."""
        day = window.start.astimezone(UTC).date()
        staged = await self._ready([day])
        return contact_records(staged, window, include_undated=day == self._days[0])

    async def fetch_transcripts(self, ids: Iterable[str]) -> list[TranscriptFetch]:
        if self._staged is None:
            raise RuntimeError("BulkSource.fetch_transcripts needs prepare(days) first")
        return transcript_fetches(self._staged, list(ids))

    def native_tables(self, days: Sequence[date]) -> tuple[pl.DataFrame, pl.DataFrame] | None:
        """CallMiner's own scores and categories of ``days`` from the prepared export."""
        if self._staged is None:
            return None
        exported_at = datetime.fromisoformat(_manifest(self._staged.directory)["exported_at"])
        return native_frames(self._staged, days, exported_at)

    async def release(self, days: Sequence[date]) -> None:
        """After the warehouse commit: delete the export on CallMiner, then the staged copy.

        A failed DELETE is logged and the run goes on (the data is stored); the staged
        copy goes either way, so the next run exports afresh.
        """
        target = self._dir(days)
        if not (target / _MANIFEST).exists():
            return
        execution = Execution(**_manifest(target)["execution"])
        await self.client.delete(execution)
        shutil.rmtree(target, ignore_errors=True)
        if self._staged is not None and self._staged.directory == target:
            self._staged = None

    async def start_changes(self, since: datetime, until: datetime) -> str:
        """A ``NewAndUpdated`` Contacts export of the whole UTC days over ``[since, until]``
        (the polling sensor's change feed); returns its job id."""
        start, end = day_range([since.astimezone(UTC).date(), until.astimezone(UTC).date()])
        return await self.client.create_job(
            start, end, mode="NewAndUpdated", data_types=("Contacts",)
        )

    async def changed_days(self, job_id: str, since: datetime) -> list[date] | None:
        """UTC days with a contact modified since ``since``, once the change export is done
        (None while it runs; ``ExportFailed`` if it failed). The change export is deleted
        afterwards: nothing of it is stored, the runs it triggers export their days whole."""
        execution = await self.client.status(job_id)
        if execution is None:
            return None
        with tempfile.TemporaryDirectory(prefix="callminer-changes-") as tmp:
            path = await self.client.download(execution, Path(tmp) / "changes.zip")
            staged = stage_export(
                path, Path(tmp) / "staged", self.settings.tenant_timezone, ("Contacts",)
            )
            days = contact_days(staged, since)
        await self.client.delete(execution)
        return days

    async def aclose(self) -> None:
        await self.client.aclose()


def _manifest(directory: Path) -> dict[str, Any]:
    value: dict[str, Any] = json.loads((directory / _MANIFEST).read_text())
    return value


def _load(directory: Path) -> StagedExport:
    files = _manifest(directory)["files"]
    return StagedExport(directory, {k: (directory / v if v else None) for k, v in files.items()})
