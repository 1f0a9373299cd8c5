"""``python -m callminer_assets.sandbox`` prints one ready line, serves, and stops on SIGTERM."""

from __future__ import annotations

import subprocess
import sys

import httpx


def test_cli_serves_and_stops() -> None:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "callminer_assets.sandbox",
            "--port",
            "0",
            "--per-day",
            "10",
            "--pagination",
            "offset",
            "--array-key",
            "data",
            "--client-secret",
            "cli-secret",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        assert line.startswith("sandbox: listening on http://127.0.0.1:")
        url = line.rsplit(" ", 1)[1]
        banner = [proc.stdout.readline().strip() for _ in range(8)]
        assert "'cli-secret'" in banner[0] and "Semarize key" in banner[0]
        exports = dict(b.removeprefix("export ").split("=", 1) for b in banner[2:])
        assert exports["CALLMINER_API_URL"] == url == exports["SEMARIZE_API_URL"]
        assert exports["CALLMINER_CLIENT_SECRET"] == "cli-secret"
        form = {"grant_type": "client_credentials", "client_id": "sandbox"}
        r = httpx.post(f"{url}/oauth/token", data={**form, "client_secret": "cli-secret"})
        assert r.status_code == 200
        tok = r.json()["access_token"]
        page = httpx.get(
            f"{url}/v1/interactions",
            params={"startDate": "2026-01-05", "endDate": "2026-01-06"},
            headers={"Authorization": f"Bearer {tok}"},
        ).json()
        assert page["total"] == 10 and len(page["data"]) == 10
    finally:
        proc.terminate()
        assert proc.wait(timeout=10) == 0


def test_cli_help_documents_every_flag() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "callminer_assets.sandbox", "--help"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert out.count("(default: ") >= 15  # every option shows its default
    for flag in (
        "--port",
        "--seed",
        "--per-day",
        "--pagination",
        "--array-key",
        "--faults",
        "--token-ttl",
        "--rate-limit",
        "--retry-after",
        "--fault-kinds",
        "--latency-ms",
        "--client-id",
        "--semarize-key",
        "--bulk-job-seconds",
        "--bulk-clock-speed",
        "--bulk-fault",
        "--bulk-repeat",
        "--tenant-timezone",
    ):
        assert flag in out
