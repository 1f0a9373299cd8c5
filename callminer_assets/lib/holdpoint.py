"""A test hook: stop the process at a named moment so a test can kill it there.

With ``CALLMINER_HOLD_AT=<name>`` and ``CALLMINER_HOLD_FILE=<path>`` set, :func:`hold` writes
the pid to the file when the process reaches ``name`` and sleeps (at most
``HOLD_SECONDS``), so the crash test (``tests/defs/test_crash.py``) can SIGKILL it at exactly
that point. Unset (always, outside that test) it is one dictionary lookup.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

HOLD_SECONDS = 120


def hold(name: str) -> None:
    if os.environ.get("CALLMINER_HOLD_AT") != name:
        return
    marker = Path(os.environ["CALLMINER_HOLD_FILE"])
    marker.write_text(str(os.getpid()))
    time.sleep(HOLD_SECONDS)
