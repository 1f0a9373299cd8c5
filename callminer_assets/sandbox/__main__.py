"""``python -m callminer_assets.sandbox``: the CallMiner + Semarize sandbox as a real server.

Prints ``sandbox: listening on http://127.0.0.1:P`` first, once it accepts connections
(scripts and tests wait for that line), then the credentials it accepts and the ``export``
lines that point the pipeline at it, then runs until stopped.
"""

from __future__ import annotations

import argparse
import shlex
import signal
import sys
import threading
from collections.abc import Sequence
from types import FrameType

from callminer_assets.sandbox.app import INJECTABLE_FAULTS, SandboxConfig
from callminer_assets.sandbox.bulk import BULK_FAULTS, BULK_PREFIX
from callminer_assets.sandbox.server import serve


def build_parser() -> argparse.ArgumentParser:
    d = SandboxConfig()
    p = argparse.ArgumentParser(
        prog="python -m callminer_assets.sandbox",
        description="CallMiner- and Semarize-compatible sandbox API with synthetic data and faults.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--port", type=int, default=0, help="TCP port on 127.0.0.1 (0 = any free port)")
    p.add_argument("--seed", type=int, default=d.seed, help="seed of all synthetic data")
    p.add_argument("--per-day", type=int, default=d.per_day, help="interactions per UTC day")
    p.add_argument(
        "--pagination",
        choices=("token", "offset", "bare"),
        default=d.pagination,
        help="listing pagination: nextPage token, offset/total, or bare JSON array (offset)",
    )
    p.add_argument(
        "--array-key",
        choices=("interactions", "items", "data"),
        default=d.array_key,
        help="key of the interactions array in listing bodies",
    )
    p.add_argument("--max-page-size", type=int, default=d.max_page_size, help="server cap on limit")
    p.add_argument(
        "--faults",
        choices=("none", "transport", "hostile"),
        default=d.faults,
        help="transport: 429/5xx/drops/slow/invalid_token/page drift; hostile: also bad records",
    )
    p.add_argument(
        "--fault-rate", type=float, default=d.fault_rate, help="share of faulted requests"
    )
    p.add_argument("--token-ttl", type=float, default=d.token_ttl, help="access token lifetime, s")
    p.add_argument(
        "--rate-limit",
        type=float,
        default=None,
        help="max requests/s per API, 429 above (None: no limit)",
    )
    p.add_argument(
        "--retry-after", type=int, default=d.retry_after_s, help="Retry-After of 429s, s"
    )
    p.add_argument(
        "--fault-kinds",
        default=",".join(d.fault_kinds),
        help="comma-separated faults to draw from (e.g. 429 for rate limiting only; "
        "429-bare is a 429 without Retry-After, as CallMiner documents it)",
    )
    p.add_argument(
        "--latency-ms", type=int, default=d.latency_ms, help="latency added to every request"
    )
    p.add_argument(
        "--pending-fraction",
        type=float,
        default=d.pending_fraction,
        help="share of transcripts pending for their first fetch(es)",
    )
    p.add_argument(
        "--pending-lag-s",
        type=float,
        default=d.pending_lag_s,
        help="transcripts of interactions that ended less than this ago are pending",
    )
    p.add_argument("--client-id", default=d.client_id, help="accepted OAuth client id")
    p.add_argument("--client-secret", default=d.client_secret, help="accepted OAuth client secret")
    p.add_argument("--semarize-key", default=d.semarize_key, help="accepted Semarize API key")
    bulk = p.add_argument_group(
        "Bulk Export API",
        f"served under {BULK_PREFIX} (token: POST /connect/token with the bulk-export scope); "
        f"point CALLMINER_API_URL at <url>{BULK_PREFIX} and CALLMINER_AUTH_URL at <url>",
    )
    bulk.add_argument(
        "--bulk-job-seconds",
        type=float,
        default=d.bulk_job_seconds,
        help="sandbox seconds an export execution stays InProgress",
    )
    bulk.add_argument(
        "--bulk-clock-speed",
        type=float,
        default=d.bulk_clock_speed,
        help="sandbox seconds per real second (compressible clock: 60000 makes '60 s' 1 ms)",
    )
    bulk.add_argument(
        "--bulk-fault",
        action="append",
        choices=BULK_FAULTS,
        default=[],
        help="switch a Bulk Export fault on (repeatable); transport faults (429 with/without "
        "Retry-After, 500/504, 401) come from --faults/--fault-kinds like the REST ones",
    )
    bulk.add_argument(
        "--bulk-repeat",
        type=int,
        default=d.bulk_repeat,
        help="large download: export every contact this many times (new ids)",
    )
    bulk.add_argument(
        "--tenant-timezone",
        default=d.tenant_timezone,
        help="time zone of the export's ClientCaptureDate",
    )
    p.add_argument("--log-level", default="warning", help="uvicorn log level")
    return p


def config_from_args(ns: argparse.Namespace) -> SandboxConfig:
    kinds = tuple(k for k in ns.fault_kinds.split(",") if k)
    unknown = sorted(set(kinds) - set(INJECTABLE_FAULTS))
    if unknown:
        build_parser().error(f"unknown --fault-kinds {', '.join(unknown)}")
    return SandboxConfig(
        seed=ns.seed,
        per_day=ns.per_day,
        pagination=ns.pagination,
        array_key=ns.array_key,
        max_page_size=ns.max_page_size,
        faults=ns.faults,
        fault_rate=ns.fault_rate,
        token_ttl=ns.token_ttl,
        rate_limit=ns.rate_limit,
        retry_after_s=ns.retry_after,
        fault_kinds=kinds,
        latency_ms=ns.latency_ms,
        pending_fraction=ns.pending_fraction,
        pending_lag_s=ns.pending_lag_s,
        client_id=ns.client_id,
        client_secret=ns.client_secret,
        semarize_key=ns.semarize_key,
        bulk_job_seconds=ns.bulk_job_seconds,
        bulk_clock_speed=ns.bulk_clock_speed,
        bulk_faults=tuple(ns.bulk_fault),
        bulk_repeat=ns.bulk_repeat,
        tenant_timezone=ns.tenant_timezone,
    )


def banner(url: str, config: SandboxConfig) -> str:
    """What it accepts and how to point the pipeline at it, ready to paste into a shell."""
    exports = {
        "CALLMINER_AUTH_URL": url,
        "CALLMINER_API_URL": url,
        "CALLMINER_CLIENT_ID": config.client_id,
        "CALLMINER_CLIENT_SECRET": config.client_secret,
        "SEMARIZE_API_URL": url,
        "SEMARIZE_API_KEY": config.semarize_key,
    }
    return "\n".join(
        [
            f"sandbox: listening on {url}",
            f"accepts CallMiner client id {config.client_id!r} with secret "
            f"{config.client_secret!r}, Semarize key {config.semarize_key!r}",
            "point the pipeline at it (then `make run` or `make dev`):",
            *(f"  export {name}={shlex.quote(value)}" for name, value in exports.items()),
        ]
    )


def main(argv: Sequence[str] | None = None) -> int:
    ns = build_parser().parse_args(argv)
    stop = threading.Event()

    def _stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    config = config_from_args(ns)
    with serve(config, port=ns.port, log_level=ns.log_level) as url:
        print(banner(url, config), flush=True)
        while not stop.wait(0.5):
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
