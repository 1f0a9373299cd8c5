"""The HR roster CSV is validated like any input."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from callminer_assets.analytics.roster import load_roster
from callminer_assets.lib.errors import DataError
from callminer_assets.lib.tables import AGENT_ROSTER


def test_roster_valid_and_refused_rows(tmp_path: Path) -> None:
    p = tmp_path / "agent_roster.csv"
    p.write_text(
        "agent_id,agent_name,team,hire_date,leave_date\n"
        "AG001,Ann,North,2022-03-01,\n"
        "AG002,Bob,South,2021-01-10,2025-02-28\n"
        "AG002,Bob again,South,2021-01-10,\n"
        ",Nobody,South,2021-01-10,\n"
        "AG003,Cat,North,2023-05-01,2022-01-01\n"
        "AG004,Dan,North,not-a-date,\n"
    )
    valid, rejects = load_roster(p)
    assert valid.columns == AGENT_ROSTER.column_names
    assert valid.rows() == [
        ("AG001", "Ann", "North", date(2022, 3, 1), None),
        ("AG002", "Bob", "South", date(2021, 1, 10), date(2025, 2, 28)),
    ]
    assert rejects["reason"].to_list() == [
        "duplicate agent_id",
        "missing agent_id",
        "leave_date 2022-01-01 before hire_date 2023-05-01",
        "unparseable hire_date/leave_date",
    ]
    (tmp_path / "bad.csv").write_text("id,team\n1,x\n")
    with pytest.raises(DataError):
        load_roster(tmp_path / "bad.csv")
