"""Bulk Export benchmark: memory of download + parse against export size, rows/s, a 31-day run.

Starts the sandbox on loopback (compressed clock) and, in fresh child processes so each
peak RSS is its own: (1) downloads and parses a 31-day export as it is, (2) the same
export with every contact written ``--repeat`` times (>= 200 MB zip, generated at bench
time into the sandbox's temp dir with uncompressed gzip members, deleted after), (3) runs the 31-day export end to end
through ``BulkSource`` (job, polls, download, parse, every day's listing and every
transcript). Nothing is written to the repository.

The last line printed is machine-readable:
``bulk: export_mb=N rss_small_mb=N rss_large_mb=N rows_per_s=N e2e_31_days_s=N``
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import resource
import sys
import tempfile
import time
from datetime import date, timedelta
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import polars as pl

from callminer_assets.defs.bulk_source import BulkSource
from callminer_assets.lib.bulk import BulkExportClient, day_range
from callminer_assets.lib.models import Window
from callminer_assets.lib.settings import BulkSettings
from callminer_assets.sandbox.app import SandboxConfig
from callminer_assets.sandbox.bulk import BULK_PREFIX
from callminer_assets.sandbox.server import serve
from callminer_assets.transform.bulk import stage_export

FIRST_DAY = date(2025, 3, 1)
DAYS = [FIRST_DAY + timedelta(days=i) for i in range(31)]
ZONE = "America/New_York"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--per-day", type=int, default=200, help="interactions per day")
    p.add_argument("--repeat", type=int, default=8, help="copies of each contact, large run")
    return p.parse_args(argv)


def _settings(url: str) -> BulkSettings:
    return BulkSettings(
        auth_url=url,
        api_url=f"{url}{BULK_PREFIX}",
        client_id="sandbox",
        client_secret="sandbox",
        tenant_timezone=ZONE,
        poll_interval_s=0.05,
        poll_budget_s=1800.0,
        timeout_s=600.0,
    )


async def _download_and_parse(url: str, work: Path) -> dict[str, Any]:
    """Job, polls, streamed download, then the parse alone, timed apart."""
    client = BulkExportClient(_settings(url))
    try:
        execution = await client.wait(await client.create_job(*day_range(DAYS)))
        t0 = time.perf_counter()
        path = await client.download(execution, work / "export.zip")
        downloaded = time.perf_counter() - t0
    finally:
        await client.aclose()
    t0 = time.perf_counter()
    staged = stage_export(path, work / "staged", ZONE)
    parsed = time.perf_counter() - t0
    rows = sum(
        pl.scan_parquet(p).select(pl.len()).collect().item()
        for p in staged.files.values()
        if p is not None
    )
    return {"rows": rows, "download_s": downloaded, "parse_s": parsed}


async def _end_to_end(url: str, staging: Path) -> dict[str, Any]:
    """What a 31-day backfill run asks of the source: one export, every day, every transcript."""
    source = BulkSource(_settings(url), staging)
    try:
        t0 = time.perf_counter()
        await source.prepare(DAYS, fresh=True)
        contacts = utterances = 0
        for day in DAYS:
            records = await source.list_interactions(Window.for_day(day))
            fetches = await source.fetch_transcripts([r["id"] for r in records])
            contacts += len(records)
            utterances += sum(len((f.payload or {}).get("utterances", [])) for f in fetches)
        await source.release(DAYS)
        return {"contacts": contacts, "utterances": utterances, "e2e_s": time.perf_counter() - t0}
    finally:
        await source.aclose()


def _child(url: str, end_to_end: bool, conn: Connection) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-bulk-") as tmp:
        work = Path(tmp)
        run = _end_to_end(url, work) if end_to_end else _download_and_parse(url, work)
        result = asyncio.run(run)
    result["rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    conn.send(result)
    conn.close()


def run_child(url: str, end_to_end: bool = False) -> dict[str, Any]:
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=_child, args=(url, end_to_end, child))
    proc.start()
    result: dict[str, Any] = parent.recv()
    proc.join()
    return result


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    config = SandboxConfig(
        seed=42, per_day=args.per_day, bulk_job_seconds=60.0, bulk_clock_speed=1e6
    )
    with serve(config) as server:
        bulk = server.state.bulk
        # Uncompressed gzip members: the zip is as large as its CSVs, so a >= 200 MB download
        # is built in well under a minute (level 1 would need ~12x the rows).
        bulk.switches.gzip_level = 0
        results: dict[str, dict[str, Any]] = {}
        for name, repeat, e2e in (
            ("small", 1, False),
            ("large", args.repeat, False),
            ("e2e", 1, True),
        ):
            bulk.switches.repeat = repeat
            results[name] = r = run_child(server.url, end_to_end=e2e)
            if e2e:
                continue
            # The zip the sandbox built (the client never deletes it: the bench does).
            (ex,) = [e for e in bulk.executions.values() if e["_path"] is not None]
            r["zip_mb"] = ex["_path"].stat().st_size / 2**20
            ex["_path"].unlink()
            del bulk.executions[ex["Id"]]
            print(
                f"{name}: zip {r['zip_mb']:.0f} MB downloaded in {r['download_s']:.1f} s, "
                f"{r['rows']} rows parsed in {r['parse_s']:.1f} s, "
                f"peak RSS {r['rss_mb']:.0f} MB",
                flush=True,
            )
    e2e = results["e2e"]
    print(
        f"end to end: 31 days, {e2e['contacts']} contacts, {e2e['utterances']} utterances "
        f"in {e2e['e2e_s']:.1f} s"
    )
    large = results["large"]
    if large["zip_mb"] < 200:
        print(f"warning: the large export is only {large['zip_mb']:.0f} MB (< 200 MB)")
    print(
        f"bulk: export_mb={large['zip_mb']:.0f} rss_small_mb={results['small']['rss_mb']:.0f} "
        f"rss_large_mb={large['rss_mb']:.0f} rows_per_s={large['rows'] / large['parse_s']:.0f} "
        f"e2e_31_days_s={e2e['e2e_s']:.1f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
