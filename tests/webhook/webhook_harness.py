"""Helpers: run the real listener (``python -m callminer_assets.webhook``) as a subprocess on loopback."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

SECRET = "test-webhook-secret-3f9a"  # a test value, not a credential
_READY = re.compile(r"listening on (http://\S+?)/callminer/events")


@dataclass
class Listener:
    """A running listener subprocess."""

    proc: subprocess.Popen[str]
    base_url: str
    inbox: Path
    log: Path


def start_listener(inbox: Path, log: Path, *, env_secret: str | None = SECRET) -> Listener:
    """Start the listener on a free port; return once it printed its ready line."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALLMINER_WEBHOOK")}
    if env_secret is not None:
        env["CALLMINER_WEBHOOK_SECRET"] = env_secret
    log_file = log.open("a")
    proc = subprocess.Popen(
        [sys.executable, "-m", "callminer_assets.webhook", "--port", "0", "--inbox", str(inbox)],
        stdout=subprocess.PIPE,
        stderr=log_file,
        text=True,
        env=env,
    )
    log_file.close()
    line: list[str] = []
    reader = threading.Thread(target=lambda: line.append(proc.stdout.readline()), daemon=True)  # type: ignore[union-attr]
    reader.start()
    reader.join(timeout=15)
    match = _READY.search(line[0]) if line else None
    if match is None:
        proc.kill()
        proc.wait()
        raise RuntimeError(f"listener did not start: {line!r} {log.read_text()}")
    return Listener(proc, match.group(1), inbox, log)


def stop_listener(listener: Listener) -> None:
    if listener.proc.poll() is None:
        listener.proc.terminate()
        try:
            listener.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            listener.proc.kill()
            listener.proc.wait()
    if listener.proc.stdout is not None:
        listener.proc.stdout.close()


def now_ts() -> int:
    return int(time.time())
