"""Where interactions come from, as a protocol: the assets depend on this, not on REST.

``rest_source`` is the paged REST implementation; ``defs.bulk_source.BulkSource`` the
Bulk Export one. ``prepare``, ``native_tables`` and ``release`` exist for backends that
deliver a whole range at once (one export job per run): REST answers them trivially.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import date
from typing import Any, Protocol, runtime_checkable

import httpx
import polars as pl

from callminer_assets.lib.callminer import CallMinerClient
from callminer_assets.lib.http import LoggerLike
from callminer_assets.lib.models import TranscriptFetch, Window
from callminer_assets.lib.settings import CallMinerSettings


@runtime_checkable
class InteractionSource(Protocol):
    """Lists a window's raw interaction records and fetches their transcripts."""

    @property
    def origin(self) -> str:
        """Where the records come from, stored on every interaction: ``sandbox`` for the
        built-in sandbox, else the backend and its host (``rest:<host>``, ``bulk:<host>``)."""
        ...

    async def prepare(self, days: Sequence[date], *, fresh: bool) -> None:
        """The run will read these days: fetch them in one go if the backend works that way
        (``fresh``: from the source, not from what an earlier step of the run staged)."""
        ...

    async def list_interactions(self, window: Window) -> list[Any]:
        """Raw records in ``[window.start, window.end)``, one per id (others kept as received)."""
        ...

    async def fetch_transcripts(self, ids: Iterable[str]) -> list[TranscriptFetch]:
        """One fetch result per distinct id: ``available`` with the payload, or ``pending``."""
        ...

    def native_tables(self, days: Sequence[date]) -> tuple[pl.DataFrame, pl.DataFrame] | None:
        """CallMiner's own ``(native_scores, native_categories)`` rows of ``days``, or None
        when the backend has none (REST)."""
        ...

    async def release(self, days: Sequence[date]) -> None:
        """The run's data for ``days`` is committed: drop whatever the source kept for it."""
        ...

    async def aclose(self) -> None: ...


def rest_source(
    settings: CallMinerSettings,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    logger: LoggerLike | None = None,
    origin: str | None = None,
) -> InteractionSource:
    """The REST-backed source (pass an ASGI ``transport`` to run on the in-process sandbox,
    with ``origin=SANDBOX_ORIGIN``; the default is ``rest:<host of the API URL>``)."""
    return CallMinerClient(settings, transport=transport, logger=logger, origin=origin)
