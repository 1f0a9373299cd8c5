"""Synthetic data: roster, shapes, determinism and, above all, real signal."""

from __future__ import annotations

import csv
import re
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import polars as pl

from callminer_assets.kits import evaluate
from callminer_assets.sandbox.generator import Generator, transcript_text, write_roster_csv


def test_roster_turnover_and_csv(tmp_path: Path) -> None:
    g = Generator(7)
    assert all(re.fullmatch(r"AG-\d{4}", a.agent_id) for a in g.roster)
    assert all(a.leave_date > a.hire_date for a in g.roster if a.leave_date)
    # ~120 seats, refilled after each leave: the headcount stays ~120 ...
    for y in range(2019, 2028):
        for m in (1, 4, 7, 10):
            assert 108 <= sum(a.employed_on(date(y, m, 15)) for a in g.roster) <= 120
    # ... while 30-45 % of it turns over each year, with leavers and hires in every month
    for seed in (7, 42, 1):
        roster = Generator(seed).roster
        for y in (2024, 2025, 2026):
            leavers = [a for a in roster if a.leave_date and a.leave_date.year == y]
            assert 0.28 <= len(leavers) / 120 <= 0.5, (seed, y, len(leavers))
        for m in range(1, 13):
            in_month = [
                a
                for a in roster
                if a.leave_date and (a.leave_date.year, a.leave_date.month) == (2025, m)
            ]
            assert len(in_month) >= 1, (seed, m)
    leavers_2025 = Counter(
        a.leave_date.month for a in g.roster if a.leave_date and a.leave_date.year == 2025
    )
    hires_2025 = Counter(a.hire_date.month for a in g.roster if a.hire_date.year == 2025)
    assert sum(leavers_2025.values()) >= 36 and sum(hires_2025.values()) >= 36
    assert sum(1 for k in range(1, 13) if leavers_2025[k] >= 2) >= 10

    # the HR export knows the past only: hired by its as-of date, leaves up to that date
    as_of = date(2025, 9, 30)
    path = write_roster_csv(tmp_path / "data" / "agent_roster.csv", seed=7, as_of=as_of)
    rows = list(csv.DictReader(path.open()))
    assert list(rows[0]) == ["agent_id", "agent_name", "team", "hire_date", "leave_date"]
    assert len({r["team"] for r in rows}) == 6
    assert all(date.fromisoformat(r["hire_date"]) <= as_of for r in rows)
    assert all(date.fromisoformat(r["leave_date"]) <= as_of for r in rows if r["leave_date"])
    employed = {a.agent_id for a in g.roster if a.employed_on(as_of)}
    assert {r["agent_id"] for r in rows if not r["leave_date"]} == employed
    future = {a.agent_id for a in g.roster if a.leave_date and a.leave_date > as_of}
    assert future & employed  # the generator knows leaves the file must not show yet
    today = write_roster_csv(tmp_path / "today.csv", seed=7)  # default: as of today (UTC)
    assert all(
        date.fromisoformat(r["leave_date"]) <= datetime.now(UTC).date()
        for r in csv.DictReader(today.open())
        if r["leave_date"]
    )
    traits = g.latent_traits()
    assert set(traits["AG-0001"]) == {"compliance", "empathy", "stress_base", "receptivity"}


def test_day_shapes_mix_and_employment() -> None:
    g = Generator(7, per_day=500)
    recs, specs = [], {}
    for d in (date(2026, 2, 2), date(2026, 2, 3), date(2026, 2, 4), date(2026, 2, 5)):
        recs += g.interactions(d)
        specs.update(g.day(d)[1])
        assert all(s.agent.employed_on(d) for s in g.day(d)[1].values())
    ids = [r["id"] for r in recs]
    assert len(ids) == len(set(ids)) == 2000
    assert all(re.fullmatch(r"INT-\d{8}-\d{5}", i) for i in ids)
    mix = Counter(s.channel for s in specs.values())
    assert abs(mix["voice"] / 2000 - 0.60) < 0.05 and abs(mix["chat"] / 2000 - 0.20) < 0.04
    assert abs(mix["email"] / 2000 - 0.15) < 0.04 and abs(mix["video"] / 2000 - 0.05) < 0.03
    assert any(r["channel"] in ("Voice", "VOICE", "Chat", "CHAT") for r in recs)
    assert any("agentId" not in r for r in recs if r["channel"].lower() == "email")
    assert any(k.startswith("x_") or k == "recordingRegion" for r in recs for k in r)
    assert {"collections", "inbound_care", "retention", "winback_sales"} <= {
        r["campaign"] for r in recs
    }


def test_determinism_without_network() -> None:
    a, b = Generator(5, per_day=50), Generator(5, per_day=50)
    d = date(2026, 1, 20)
    assert a.interactions(d) == b.interactions(d)
    iid = a.interactions(d)[3]["id"]
    assert a.transcript(iid) == b.transcript(iid)
    assert a.interactions(d) != a.interactions(d + timedelta(days=1))
    # hostile mode changes only the hostile bits, not the underlying ids
    assert [r["id"] for r in a.interactions(d)] == [
        r["id"]
        for r in a.interactions(d, hostile=True)
        if isinstance(r, dict) and "id" in r and not r["id"].split("-")[-1].startswith("9")
    ]


def test_compliance_signal_is_recoverable() -> None:
    g = Generator(11, per_day=200)
    rows = []
    start = date(2026, 5, 4)
    for k in range(14):
        for spec in g.day(start + timedelta(days=k))[1].values():
            text = transcript_text(g._transcript(spec, False), spec.mailbox)
            score = evaluate("qa_compliance", text, {"campaign": spec.campaign})["compliance_score"]
            rows.append(
                {
                    "agent_id": spec.agent.agent_id,
                    "score": score.value,
                    "latent": spec.agent.compliance,
                }
            )
    per_agent = (
        pl.DataFrame(rows)
        .group_by("agent_id")
        .agg(pl.col("score").mean(), pl.col("latent").first(), pl.len().alias("n"))
        .filter(pl.col("n") >= 5)
    )
    rho = per_agent.select(pl.corr("latent", "score", method="spearman")).item()
    assert len(per_agent) >= 60
    assert rho >= 0.6, rho


def test_leavers_frustration_rises_before_leaving() -> None:
    g = Generator(11, per_day=40)
    leavers = {
        a.agent_id: a
        for a in g.roster
        if a.leave_date and date(2025, 4, 1) <= a.leave_date <= date(2026, 10, 1)
    }
    assert len(leavers) >= 10
    rows = []
    d = date(2024, 10, 1)
    while d < date(2026, 10, 1):
        for spec in g.day(d)[1].values():
            a = leavers.get(spec.agent.agent_id)
            if a is None or a.leave_date is None:
                continue
            days_left = (a.leave_date - d).days
            if days_left > 180:
                continue
            text = transcript_text(g._transcript(spec, False), spec.mailbox)
            b = evaluate("agent_wellbeing", text, {"campaign": spec.campaign})
            n_agent = sum(1 for ln in text.split("\n") if ln.startswith("agent:"))
            rows.append(
                {"late": days_left <= 90, "rate": b["frustration_markers"].value / max(1, n_agent)}
            )
        d += timedelta(days=2)
    df = pl.DataFrame(rows).group_by("late").agg(pl.col("rate").mean(), pl.len())
    early = df.filter(~pl.col("late"))["rate"].item()
    late = df.filter(pl.col("late"))["rate"].item()
    assert late > 1.5 * early, (early, late)
