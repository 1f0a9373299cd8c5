"""The headless runner's planning: range runs per month, monthly features for whole months only."""

from __future__ import annotations

import calendar
from datetime import UTC, date, datetime

from callminer_assets.cli import _month_chunks, _whole_months, main


def test_days_run_as_one_range_per_calendar_month() -> None:
    assert _month_chunks(date(2025, 1, 10), date(2025, 3, 15)) == [
        (date(2025, 1, 10), date(2025, 1, 31)),
        (date(2025, 2, 1), date(2025, 2, 28)),
        (date(2025, 3, 1), date(2025, 3, 15)),
    ]


def test_only_whole_finished_months_get_monthly_features() -> None:
    assert _whole_months(_month_chunks(date(2025, 1, 10), date(2025, 3, 15))) == ["2025-02-01"]
    assert _whole_months(_month_chunks(date(2025, 1, 1), date(2025, 2, 28))) == [
        "2025-01-01",
        "2025-02-01",
    ]
    # The current month is not over: no partition exists for it yet.
    today = datetime.now(UTC).date()
    last_day = today.replace(day=calendar.monthrange(today.year, today.month)[1])
    assert _whole_months([(today.replace(day=1), last_day)]) == []


def test_summary_without_a_warehouse_is_a_clear_message(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    code = None
    try:
        main(["summary", "--duckdb", str(tmp_path / "missing.duckdb")])
    except SystemExit as exc:
        code = exc.code
    assert code == 1
    assert "no warehouse at" in capsys.readouterr().err
