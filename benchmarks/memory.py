"""Peak memory of a headless range run does not grow with the range (issue 11, decision 0015).

Runs ``python -m callminer_assets run`` on the embedded sandbox for a 7-day and a 31-day
window, each in a fresh process, folder, warehouse and DAGSTER_HOME, and reads each
process's peak RSS from ``wait4``. Ends with one line::

    bench memory: per_day=1000 rss_mb_7d=… rss_mb_31d=… ratio=… s_7d=… s_31d=…
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

WINDOWS = {"7d": ("2025-03-01", "2025-03-07"), "31d": ("2025-01-01", "2025-01-31")}


def peak_rss_mb(start: str, end: str, per_day: int) -> tuple[float, float]:
    """(peak RSS in MB, seconds) of one headless run in a folder of its own."""
    with tempfile.TemporaryDirectory(prefix="bench-memory-") as folder:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("CALLMINER_", "SEMARIZE_"))}
        for name in ("DAGSTER_HOME", "WAREHOUSE_CATALOG", "WAREHOUSE_DATA_PATH"):
            env.pop(name, None)  # every default lands in this run's own folder
        env["SANDBOX_PER_DAY"] = str(per_day)
        t0 = time.monotonic()
        proc = subprocess.Popen(
            [sys.executable, "-m", "callminer_assets", "run", "--start", start, "--end", end],
            cwd=folder,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            err = proc.stderr.read().decode() if proc.stderr else ""
            raise SystemExit(f"run {start}..{end} failed ({proc.returncode}): {err[-500:]}")
        # ru_maxrss is in KiB on Linux
        return usage.ru_maxrss / 1024, time.monotonic() - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--per-day", type=int, default=1000, help="sandbox interactions per day")
    args = p.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    rss, secs = {}, {}
    for name, (start, end) in WINDOWS.items():
        rss[name], secs[name] = peak_rss_mb(start, end, args.per_day)
        print(
            f"  {name} {start}..{end}: peak RSS {rss[name]:.0f} MB in {secs[name]:.0f} s",
            flush=True,
        )
    print(
        f"bench memory: per_day={args.per_day} rss_mb_7d={rss['7d']:.0f} "
        f"rss_mb_31d={rss['31d']:.0f} ratio={rss['31d'] / rss['7d']:.2f} "
        f"s_7d={secs['7d']:.0f} s_31d={secs['31d']:.0f}"
    )


if __name__ == "__main__":
    main()
