"""Extraction benchmark: rate-limit utilisation, speed-up over a naive client, bulk write speed.

Starts the sandbox on loopback with a server-side rate limit and added latency, lists a
few thousand interactions and fetches every transcript with ``CallMinerClient`` at the
same configured rate, then does a subset with a plain sequential httpx client. Rates are
measured from the sandbox's own request log (what the server saw, not what we think we
sent). Utterances are normalised and replaced into a temp lake (the product's write path).

The last line printed is machine-readable:
``bench: rate_utilisation=X.XX peak_rps_over_limit=N speedup_vs_sequential=X.X
utterance_rows_per_s=N peak_rss_mb=N``

Note: a sequential client cannot exceed ``1 / latency`` requests per second, so the
speed-up is bounded by ``rate_limit * latency`` (50 req/s x 40 ms = 2x). Use a larger
``--latency-ms`` (real SaaS APIs answer in 100-300 ms) to see the concurrent client's
advantage when the rate limit, not the latency, is the bottleneck.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing
import resource
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from multiprocessing.connection import Connection
from typing import Any

import httpx
import polars as pl

from callminer_assets.lib.callminer import CallMinerClient, iso_utc
from callminer_assets.lib.models import TranscriptFetch, Window
from callminer_assets.lib.settings import CallMinerSettings, WarehouseSettings
from callminer_assets.lib.tables import UTTERANCES
from callminer_assets.sandbox.app import SandboxConfig, busiest_second
from callminer_assets.sandbox.server import serve
from callminer_assets.warehouse.store import Warehouse

FIRST_DAY = date(2025, 3, 3)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rate-limit", type=float, default=50.0, help="server limit = client rate")
    p.add_argument("--latency-ms", type=int, default=40, help="latency added by the sandbox")
    p.add_argument("--per-day", type=int, default=1000, help="interactions per day")
    p.add_argument("--days", type=int, default=2, help="days listed (one window each)")
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--sequential-requests", type=int, default=120)
    return p.parse_args(argv)


class RemoteSandbox:
    """The sandbox in its own process (own GIL, like a real server); its log read over a pipe."""

    def __init__(self, url: str, conn: Connection) -> None:
        self.url = url
        self._conn = conn

    def request_log(self) -> list[dict[str, Any]]:
        self._conn.send("log")
        log: list[dict[str, Any]] = self._conn.recv()
        return log


def _sandbox_process(config: SandboxConfig, conn: Connection) -> None:
    with serve(config) as server:
        conn.send(server.url)
        while (msg := conn.recv()) != "stop":
            if msg == "log":
                conn.send(list(server.state.request_log))


@contextlib.contextmanager
def sandbox_process(config: SandboxConfig) -> Iterator[RemoteSandbox]:
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=_sandbox_process, args=(config, child), daemon=True)
    proc.start()
    try:
        if not parent.poll(60):
            raise RuntimeError("sandbox process did not start")
        yield RemoteSandbox(parent.recv(), parent)
    finally:
        with contextlib.suppress(OSError):
            parent.send("stop")
        proc.join(10)
        if proc.is_alive():
            proc.terminate()


async def extract(
    server: RemoteSandbox, args: argparse.Namespace
) -> tuple[dict[Window, list[Any]], list[TranscriptFetch]]:
    settings = CallMinerSettings(
        auth_url=server.url,
        api_url=server.url,
        client_id="sandbox",
        client_secret="sandbox",
        requests_per_second=args.rate_limit,
        concurrency=args.concurrency,
        page_size=100,
    )
    async with CallMinerClient(settings) as client:
        windows = [Window.for_day(FIRST_DAY + timedelta(days=i)) for i in range(args.days)]
        listings = await asyncio.gather(*(client.list_interactions(w) for w in windows))
        records = [r for listing in listings for r in listing]
        ids = [r["id"] for r in records if isinstance(r, dict) and isinstance(r.get("id"), str)]
        fetched = await client.fetch_transcripts(ids)
    return dict(zip(windows, listings, strict=True)), fetched


def sequential(server: RemoteSandbox, ids: list[str]) -> None:
    """A plain client: one request at a time, no concurrency, same server."""
    with httpx.Client(base_url=server.url, timeout=30) as http:
        token = http.post(
            "/oauth/token",
            data={
                "grant_type": "client_credentials",
                "client_id": "sandbox",
                "client_secret": "sandbox",
            },
        ).json()["access_token"]
        headers = {"Authorization": f"Bearer {token}"}
        window = Window.for_day(FIRST_DAY)
        params: dict[str, str | int] = {
            "startDate": iso_utc(window.start),
            "endDate": iso_utc(window.end),
            "limit": 100,
        }
        http.get("/v1/interactions", params=params, headers=headers).raise_for_status()
        for interaction_id in ids:
            http.get(f"/v1/interactions/{interaction_id}/transcript", headers=headers)


def utterance_frame(
    listings: dict[Window, list[Any]], fetched: list[TranscriptFetch]
) -> pl.DataFrame:
    """Utterance rows via the project's transforms when present, else a plain frame."""
    try:
        from callminer_assets.transform.normalise import normalise_transcripts
        from callminer_assets.transform.validate import validate_interactions
    except ImportError:
        rows = [
            {
                "interaction_id": f.interaction_id,
                "seq": i,
                "speaker_role": u.get("speakerRole") or "unknown",
                "text": str(u.get("text", "")),
            }
            for f in fetched
            if f.payload
            for i, u in enumerate(f.payload.get("utterances") or [])
        ]
        return pl.DataFrame(rows)
    now = datetime.now(UTC)
    frames = []
    for window, records in listings.items():
        valid = validate_interactions(records, window, now, origin="bench").interactions
        frames.append(normalise_transcripts(valid, fetched, now=now).utterances)
    return pl.concat(frames)


def bulk_write(frame: pl.DataFrame) -> float:
    """Seconds to replace ``frame`` into a fresh lake through the product's write path."""
    with tempfile.TemporaryDirectory() as tmp:
        lake = WarehouseSettings(catalog=f"sqlite:{tmp}/bench.sqlite", data_path=f"{tmp}/lake/")
        wh = Warehouse(lake)
        with wh.connect():
            pass  # open + create the tables first: measure the write, not the setup
        days = frame["interaction_date"].unique().to_list()
        t0 = time.perf_counter()
        wh.replace(UTTERANCES, frame, {"interaction_date": days})
        elapsed = time.perf_counter() - t0
        stored = wh.query("SELECT count(*) AS n FROM callminer.utterances")["n"][0]
        assert stored == frame.height
    return elapsed


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    config = SandboxConfig(
        per_day=args.per_day,
        rate_limit=args.rate_limit,
        latency_ms=args.latency_ms,
        max_page_size=100,
        pending_fraction=0.0,
    )
    with sandbox_process(config) as server:
        print(
            f"sandbox {server.url}: rate limit {args.rate_limit:g}/s, latency {args.latency_ms} ms,"
            f" {args.per_day}/day x {args.days} days",
            flush=True,
        )
        t0 = time.monotonic()
        listings, fetched = asyncio.run(extract(server, args))
        records = [r for listing in listings.values() for r in listing]
        wall = time.monotonic() - t0
        log = server.request_log()
        phase = [e for e in log if e["service"] == "callminer"]
        times = [e["time"] for e in phase]
        span = max(times) - min(times)
        rate = (len(phase) - 1) / span if span > 0 else 0.0
        peak = busiest_second(times)
        throttled = sum(1 for e in phase if e["status"] == 429)
        available = sum(1 for f in fetched if f.status == "available")
        print(
            f"concurrent: {len(phase)} requests in {span:.1f} s ({wall:.1f} s wall) ="
            f" {rate:.1f} req/s; worst 1-s window {peak}; 429s {throttled};"
            f" {len(records)} interactions, {available} transcripts",
            flush=True,
        )

        time.sleep(1.1)  # let the server's sliding window empty
        start = len(log)
        ids = [f.interaction_id for f in fetched[: args.sequential_requests]]
        sequential(server, ids)
        seq = server.request_log()[start:]
        seq_times = [e["time"] for e in seq]
        seq_span = max(seq_times) - min(seq_times)
        seq_rate = (len(seq) - 1) / seq_span if seq_span > 0 else float("inf")
        print(f"sequential: {len(seq)} requests in {seq_span:.1f} s = {seq_rate:.1f} req/s")

    frame = utterance_frame(listings, fetched)
    write_s = bulk_write(frame)
    rows_per_s = frame.height / write_s if write_s > 0 else 0.0
    print(f"bulk write: {frame.height} utterance rows in {write_s:.3f} s")
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"bench: rate_utilisation={rate / args.rate_limit:.2f}"
        f" peak_rps_over_limit={max(0, int(peak - args.rate_limit))}"
        f" speedup_vs_sequential={rate / seq_rate:.1f}"
        f" utterance_rows_per_s={rows_per_s:.0f} peak_rss_mb={rss_mb:.0f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
