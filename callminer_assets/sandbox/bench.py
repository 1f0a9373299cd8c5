"""``python -m callminer_assets.sandbox.bench [N]``: time generating N interactions with transcripts.

The issue asks for well under a second per 1,000 on one core; measured here, not in a test.
"""

from __future__ import annotations

import sys
import time
from datetime import date

from callminer_assets.sandbox.generator import Generator


def bench(n: int = 1000, seed: int = 42) -> float:
    """Seconds to build one day of ``n`` interactions and all their transcripts."""
    gen = Generator(seed, per_day=n)
    t0 = time.perf_counter()
    _, specs = gen.day(date(2026, 1, 15))
    for spec in specs.values():
        gen._transcript(spec, False)
    return time.perf_counter() - t0


if __name__ == "__main__":
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    print(f"{n} interactions with transcripts in {bench(n):.3f} s")
