"""The Semarize kits as data: one YAML file per kit, read by the sandbox's Semarize and tests.

``current_kits()`` gives the kits in force (packaged ``kits/defaults/*.yaml``, overridden by
the files in ``$KITS_DIR``); ``evaluate`` runs one kit's engine (``rules.py``) over the
transcript text and returns ``Brick`` values with quoted evidence.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from callminer_assets.kits import rules
from callminer_assets.kits.loader import Kit, KitError, current_kits, load_kits, packaged_kits
from callminer_assets.lib.models import Brick


def evaluate(
    kit_code: str,
    transcript_text: str,
    metadata: Mapping[str, Any] | None = None,
    kits: Mapping[str, Kit] | None = None,
) -> dict[str, Brick]:
    """Evaluate one transcript with one kit (of ``kits``, else the kits in force).

    Raises KeyError for an unknown kit.
    """
    kit = (current_kits() if kits is None else kits)[kit_code]
    engine = rules.ENGINES[kit.engine]
    bricks = engine.run(kit, rules.parse_transcript(transcript_text), metadata or {})
    return {name: bricks[name] for name in kit.bricks}


__all__ = ["Kit", "KitError", "current_kits", "evaluate", "load_kits", "packaged_kits"]
