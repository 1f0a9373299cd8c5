"""Where interactions come from, as a protocol: the assets depend on this, not on REST.

A second backend (CallMiner Bulk Export, files on S3) only has to implement these three
methods; ``rest_source`` is the REST implementation used today.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol, runtime_checkable

import httpx

from callminer_assets.lib.callminer import CallMinerClient
from callminer_assets.lib.http import LoggerLike
from callminer_assets.lib.models import TranscriptFetch, Window
from callminer_assets.lib.settings import CallMinerSettings


@runtime_checkable
class InteractionSource(Protocol):
    """Lists a window's raw interaction records and fetches their transcripts."""

    async def list_interactions(self, window: Window) -> list[Any]:
        """Raw records in ``[window.start, window.end)``, one per id (others kept as received)."""
        ...

    async def fetch_transcripts(self, ids: Iterable[str]) -> list[TranscriptFetch]:
        """One fetch result per distinct id: ``available`` with the payload, or ``pending``."""
        ...

    async def aclose(self) -> None: ...


def rest_source(
    settings: CallMinerSettings,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    logger: LoggerLike | None = None,
) -> InteractionSource:
    """The REST-backed source (pass an ASGI ``transport`` to run on the in-process sandbox)."""
    return CallMinerClient(settings, transport=transport, logger=logger)
