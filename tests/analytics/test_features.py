"""Feature definitions on a hand-built dataset; every expected number is worked out by hand."""

from __future__ import annotations

from datetime import date
from typing import Any

import polars as pl
import pytest

from callminer_assets.lib.tables import AGENT_MONTHLY_FEATURES, CHANNEL_CONSISTENCY
from callminer_assets.transform.features import (
    agent_monthly_features,
    channel_consistency,
    consistency_markdown,
)
from callminer_assets.transform.scores import SCORES_SCHEMA

MARCH = date(2025, 3, 1)


def row(
    iid: str,
    day: date,
    agent: str | None,
    channel: str,
    *,
    comp: float = 1.0,
    emp: float = 0.5,
    res: bool = True,
    eff: float = 0.5,
    brand: float = 0.5,
    frus: int | None = 0,
    coach: float | None = 0.5,
    esc: bool | None = False,
    q: float | None = None,
) -> dict[str, Any]:
    r: dict[str, Any] = dict.fromkeys(SCORES_SCHEMA)
    r.update(
        interaction_id=iid,
        interaction_date=day,
        agent_id=agent,
        channel=channel,
        compliance_score=comp,
        empathy_score=emp,
        resolution_achieved=res,
        customer_effort=eff,
        brand_alignment=brand,
        frustration_markers=frus,
        coaching_receptivity=coach,
        customer_escalation_requested=esc,
        quality_score=q,
    )
    return r


@pytest.fixture
def scores() -> pl.DataFrame:
    rows = [
        # agent A, March: 4 interactions
        row(
            "a1",
            date(2025, 3, 3),
            "A",
            "voice",
            comp=0.9,
            emp=0.6,
            res=True,
            eff=0.2,
            brand=0.8,
            frus=0,
            coach=0.8,
            esc=False,
            q=0.8,
        ),
        row(
            "a2",
            date(2025, 3, 4),
            "A",
            "voice",
            comp=0.5,
            emp=0.4,
            res=False,
            eff=0.6,
            brand=0.6,
            frus=2,
            coach=0.6,
            esc=True,
            q=0.4,
        ),
        # the wellbeing kit failed here: frustration/coaching/escalation NULL, not zero
        row(
            "a3",
            date(2025, 3, 12),
            "A",
            "chat",
            comp=0.7,
            emp=0.8,
            res=True,
            eff=0.4,
            brand=0.7,
            frus=None,
            coach=None,
            esc=None,
            q=0.7,
        ),
        row(
            "a4",
            date(2025, 3, 20),
            "A",
            "email",
            comp=1.0,
            emp=0.6,
            res=False,
            eff=0.2,
            brand=0.5,
            frus=0,
            coach=0.4,
            esc=False,
            q=0.5,
        ),
        # agent B: one March interaction (low volume) and history for the trend
        row("b0", date(2024, 12, 20), "B", "voice", q=0.0),  # before the 3-month window
        row("b1", date(2025, 1, 1), "B", "voice", q=0.5),
        row("b2", date(2025, 1, 2), "B", "voice", q=0.7),
        row("b3", date(2025, 1, 15), "B", "voice", q=0.7),
        row("b4", date(2025, 3, 5), "B", "voice", emp=0.8, res=True, eff=0.2, brand=0.9, q=0.9),
        row("b5", date(2025, 4, 2), "B", "voice", q=0.0),  # after the month
        # agent C: February only -> no March row
        row("c1", date(2025, 2, 10), "C", "chat", q=0.3),
        # no agent id: counts for channels, not for any agent
        row("n1", date(2025, 3, 8), None, "video", emp=0.4, res=False, eff=0.8, brand=0.4, q=0.2),
    ]
    return pl.DataFrame(rows, schema=SCORES_SCHEMA, orient="row")


def test_agent_monthly_features_known_answers(scores: pl.DataFrame) -> None:
    f = agent_monthly_features(scores, MARCH, min_interactions=3)
    assert f.columns == AGENT_MONTHLY_FEATURES.column_names
    assert f["agent_id"].to_list() == ["A", "B"]  # C had no March interaction; NULL agent dropped
    a = f.row(0, named=True)
    assert a["month"] == MARCH
    assert a["interactions"] == 4
    assert a["low_volume"] is False
    # frustration among the 3 answered: [0, 2, 0] -> 1 of 3
    assert a["frustration_frequency"] == pytest.approx(1 / 3)
    assert a["coaching_receptivity"] == pytest.approx((0.8 + 0.6 + 0.4) / 3)
    assert a["customer_escalation_rate"] == pytest.approx(1 / 3)
    assert a["mean_compliance"] == pytest.approx((0.9 + 0.5 + 0.7 + 1.0) / 4)
    assert a["mean_empathy"] == pytest.approx((0.6 + 0.4 + 0.8 + 0.6) / 4)
    assert a["mean_resolution"] == pytest.approx(2 / 4)
    assert a["mean_effort"] == pytest.approx((0.2 + 0.6 + 0.4 + 0.2) / 4)
    assert (a["share_voice"], a["share_chat"], a["share_email"], a["share_video"]) == (
        pytest.approx(0.5),
        pytest.approx(0.25),
        pytest.approx(0.25),
        pytest.approx(0.0),
    )
    # A's weeks (Mondays from 2024-12-30, the week of Jan 1): Mar 3/4 -> week 9 mean 0.6,
    # Mar 12 -> week 10: 0.7, Mar 20 -> week 11: 0.5. Slope: x-mean 10, Sxx = 2,
    # Sxy = (-1)(0) + 0 + (1)(-0.1) -> -0.05 per week.
    assert a["performance_trend_slope"] == pytest.approx(-0.05)

    b = f.row(1, named=True)
    assert b["interactions"] == 1 and b["low_volume"] is True  # kept, flagged
    # B's weeks in Jan..Mar: week 0 (Jan 1, 2) mean 0.6, week 2 (Jan 15) 0.7, week 9 (Mar 5) 0.9;
    # Dec and Apr are outside. Sxx = 85 - 121/3 = 134/3; Sxy = 9.5 - 3 * (11/3) * (2.2/3) = 4.3/3.
    assert b["performance_trend_slope"] == pytest.approx(4.3 / 134)


def test_low_volume_default_threshold(scores: pl.DataFrame) -> None:
    f = agent_monthly_features(scores, MARCH)
    assert f["low_volume"].to_list() == [True, True]  # 4 and 1 < 10


def test_trend_needs_two_weeks(scores: pl.DataFrame) -> None:
    feb = agent_monthly_features(scores, date(2025, 2, 1), min_interactions=1)
    c = feb.filter(pl.col("agent_id") == "C").row(0, named=True)
    assert c["performance_trend_slope"] is None  # one week only


def test_channel_consistency_known_answers(scores: pl.DataFrame) -> None:
    r = channel_consistency(scores, MARCH)
    assert r.columns == CHANNEL_CONSISTENCY.column_names
    by = {x["channel"]: x for x in r.iter_rows(named=True)}
    assert sorted(by) == ["chat", "email", "video", "voice"]
    v, c, e, vid = by["voice"], by["chat"], by["email"], by["video"]
    # voice = a1, a2, b4
    assert v["interactions"] == 3
    assert v["mean_empathy"] == pytest.approx((0.6 + 0.4 + 0.8) / 3)
    assert v["mean_resolution"] == pytest.approx(2 / 3)
    assert v["mean_effort"] == pytest.approx((0.2 + 0.6 + 0.2) / 3)
    assert v["mean_brand_alignment"] == pytest.approx((0.8 + 0.6 + 0.9) / 3)
    # best empathy 0.8 (chat): voice (0.8 - 0.6) / 0.8 = 25 %, video (0.8 - 0.4) / 0.8 = 50 %
    assert c["empathy_gap_pct"] == pytest.approx(0.0)
    assert v["empathy_gap_pct"] == pytest.approx(25.0)
    assert vid["empathy_gap_pct"] == pytest.approx(50.0)
    # best resolution 1.0 (chat): voice 33.3 %, email 100 %
    assert v["resolution_gap_pct"] == pytest.approx(100 / 3)
    assert e["resolution_gap_pct"] == pytest.approx(100.0)
    # lowest effort 0.2 (email): voice (1/3 - 0.2) / 0.2 = 66.7 %, chat 100 %, video 300 %
    assert e["effort_gap_pct"] == pytest.approx(0.0)
    assert v["effort_gap_pct"] == pytest.approx(200 / 3)
    assert c["effort_gap_pct"] == pytest.approx(100.0)
    assert vid["effort_gap_pct"] == pytest.approx(300.0)
    # best brand alignment = voice 2.3/3: chat (2.3/3 - 0.7) / (2.3/3) = 0.2/2.3
    assert v["brand_alignment_gap_pct"] == pytest.approx(0.0)
    assert c["brand_alignment_gap_pct"] == pytest.approx(0.2 / 2.3 * 100)
    md = consistency_markdown(r)
    assert md.count("\n") == 5 and "| voice | 3 |" in md
