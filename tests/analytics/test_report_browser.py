"""The report as a reader sees it: rendered by headless Chromium over the DevTools protocol."""

from __future__ import annotations

from pathlib import Path

from callminer_assets.analytics.browser import inspect_page
from callminer_assets.analytics.report import build_report
from tests.analytics.report_sample import sample

REPO = Path(__file__).parents[2]
SCREENSHOT = REPO / "docs" / "report.png"
MAX_PNG = 300 * 1024
VIEWS = (
    "The month's volumes",
    "Compliance by rule and channel",
    "Agent Attrition Risk — 90 day window",
    "Omnichannel consistency",
)


def test_a_report_renders_without_errors_requests_or_empty_charts(
    chromium: str, tmp_path: Path
) -> None:
    html = tmp_path / "2025-03.html"
    html.write_text(build_report(sample()).html, encoding="utf-8")
    page = inspect_page(html, width=1100, scale=0.7, max_height=6000)
    assert page.errors == []
    assert page.requests == []
    assert [c["name"] for c in page.charts] == ["volumes", "compliance", "risk", "consistency"]
    assert page.empty_charts() == []
    assert all(c["marks"] >= 4 and c["width"] > 200 for c in page.charts)
    for view in VIEWS:
        assert view in page.headings
    assert page.screenshot is not None and page.screenshot.startswith(b"\x89PNG")
    assert len(page.screenshot) < MAX_PNG


def test_the_checker_sees_errors_outside_requests_and_empty_charts(
    chromium: str, tmp_path: Path
) -> None:
    """What the test above would catch if the report broke (so its asserts can fail)."""
    html = tmp_path / "broken.html"
    html.write_text(
        "<!DOCTYPE html><html><body><h2>broken</h2>"
        '<figure data-chart="drawn"><svg width="40" height="20"><g class="mark-rect role-mark">'
        '<path d="M0,0h10v10h-10Z"/></g></svg></figure>'
        '<figure data-chart="empty"><svg width="100" height="50"></svg></figure>'
        '<img src="http://127.0.0.1:9/logo.png">'
        '<script>console.error("console says no"); throw new Error("boom");</script>'
        "</body></html>",
        encoding="utf-8",
    )
    page = inspect_page(html, max_height=400)
    assert any("boom" in e for e in page.errors)
    assert any("console says no" in e for e in page.errors)
    assert page.requests == ["http://127.0.0.1:9/logo.png"]
    assert page.empty_charts() == ["empty"]


def test_the_docs_screenshot_is_small_and_shown_in_the_readme() -> None:
    data = SCREENSHOT.read_bytes()
    assert data.startswith(b"\x89PNG") and len(data) < MAX_PNG
    assert "docs/report.png" in (REPO / "README.md").read_text()
