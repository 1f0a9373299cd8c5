"""Metadata previews and figures show rounded floats, not 0.4554740061162079."""

from __future__ import annotations

import polars as pl

from callminer_assets.defs.metadata import markdown_preview, table_metadata
from callminer_assets.lib.tables import INTERACTION_SCORES


def test_floats_are_rounded_in_previews_and_figures() -> None:
    frame = pl.DataFrame({"compliance_score": [0.4554740061162079], "interactions": [3]})
    preview = markdown_preview(frame)
    assert "| 0.4555 | 3 |" in preview and "0.45547" not in preview
    meta = table_metadata(INTERACTION_SCORES, frame, mean_compliance=0.4554740061162079)
    assert meta["mean_compliance"] == 0.4555
