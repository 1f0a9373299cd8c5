"""The monthly report as a pure function: figures, tiers, escaping, an empty month."""

from __future__ import annotations

import dataclasses
import re

import polars as pl
import pytest

from callminer_assets.analytics.report import (
    INTERVENE_RISK,
    WATCH_RISK,
    build_report,
    compliance_by_rule_channel,
    risk_panel,
    tier,
    volumes,
    worst_interactions,
)
from callminer_assets.lib.tables import FRAMEWORK_COVERAGE, KIT_VERSION_DIFF
from tests.analytics.report_sample import HOSTILE_QUOTE, MONTH, frame, sample


def test_compliance_by_rule_and_channel_counts_each_interaction_once() -> None:
    data = sample()
    by_rule = compliance_by_rule_channel(data)
    outcomes = data.findings.unique(["interaction_id", "rule"]).join(
        data.scores.select("interaction_id", "channel"), on="interaction_id"
    )
    for r in by_rule.iter_rows(named=True):
        mine = outcomes.filter((pl.col("rule") == r["rule"]) & (pl.col("channel") == r["channel"]))
        assert r["applicable"] == mine.height
        assert r["failed"] == int((~mine["passed"]).sum())
        assert r["pass_rate"] == pytest.approx(1 - r["failed"] / r["applicable"])
    assert set(by_rule["channel"]) == {"voice", "chat", "email", "video"}


def test_worst_interactions_come_with_failed_rules_and_quotes() -> None:
    worst = worst_interactions(sample(), n=3)
    assert worst[0]["interaction_id"].endswith("-00000")
    assert worst[0]["failed_rules"] == [
        "consent_obtained",
        "prohibited_phrases",
        "recording_disclosure",
    ]
    assert [q["quote"] for q in worst[0]["quotes"]] == [HOSTILE_QUOTE]
    assert [w["compliance_score"] for w in worst] == sorted(w["compliance_score"] for w in worst)


def test_volumes_add_up_per_channel_and_in_total() -> None:
    vol = volumes(sample()).to_dicts()
    total = vol[-1]
    assert total["channel"] == "all" and total["interactions"] == 60 and total["evaluated"] == 60
    assert total["pending"] == 1 and total["available"] == 29
    assert sum(v["interactions"] for v in vol[:-1]) == 60


def test_tiers_follow_the_thresholds_and_the_panel_ranks_by_risk() -> None:
    assert tier(INTERVENE_RISK) == "intervene"
    assert tier(WATCH_RISK) == "watch"
    assert tier(WATCH_RISK - 0.01) == "healthy"
    panel = risk_panel(sample())
    assert panel["rank"].to_list() == list(range(1, 13))
    assert panel["risk"].is_sorted(descending=True)
    assert set(panel["tier"]) == {"intervene", "watch", "healthy"}
    assert panel["coaching_receptivity"].to_list() == [0.4] * 12


def test_the_page_escapes_quotes_and_loads_nothing_from_outside() -> None:
    report = build_report(sample())
    html = report.html
    assert HOSTILE_QUOTE not in html
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in html
    assert "<script" not in html.lower()
    # no external resource of any kind: no src/href to a URL, no @import, no url(http...)
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//)""", html, re.I)
    assert "@import" not in html and not re.search(r"url\(\s*['\"]?https?:", html)
    for heading in (
        "The month's volumes",
        "Compliance by rule and channel",
        "Agent Attrition Risk — 90 day window",
        "Omnichannel consistency",
    ):
        assert heading in html
    assert html.count("<svg") == 4


def test_metadata_counts_hold_no_customer_text() -> None:
    data = sample()
    report = build_report(data)
    text = report.summary_markdown() + repr(report.counts)
    assert "last chance" not in text and "alert(" not in text
    assert "Agent " not in text  # no names either
    assert report.counts["interactions"] == 60
    assert report.counts["intervene"] + report.counts["watch"] + report.counts["healthy"] == 12
    assert report.counts["risk_month"] == "2025-03"


def test_an_empty_month_renders_notes_instead_of_empty_charts() -> None:
    full = sample()
    empty = dataclasses.replace(
        full,
        interactions=full.interactions.clear(),
        transcripts=full.transcripts.clear(),
        quarantined=0,
        scores=full.scores.clear(),
        findings=full.findings.clear(),
        consistency=full.consistency.clear(),
        features=full.features.clear(),
        risk=full.risk.clear(),
    )
    report = build_report(empty)
    assert "<svg" not in report.html
    assert "No compliance findings for this month." in report.html
    assert "No attrition risk scored yet" in report.html
    assert report.counts["interactions"] == 0


def test_risk_of_another_month_is_not_shown_as_this_months() -> None:
    data = sample()
    older = dataclasses.replace(data, month=MONTH.replace(month=2), features=data.features.clear())
    report = build_report(older)
    assert "stored for the newest scored month only (2025-03)" in report.html
    assert "scored for 2025-03 only" in report.summary_markdown()


def test_frameworks_are_compared_only_when_their_tables_have_rows() -> None:
    data = sample()
    assert "Compliance frameworks compared" not in build_report(data).html
    diff = frame(
        KIT_VERSION_DIFF,
        [
            {
                "interaction_id": f"INT-202503-{i}",
                "kit_code": "qa_compliance",
                "evaluator": "local-kits",
                "rule": "prohibited_phrases",
                "from_version": "1.0.0",
                "to_version": "1.1.0",
                "from_value": "0",
                "to_value": "1",
            }
            for i in range(3)
        ],
    )
    coverage = frame(
        FRAMEWORK_COVERAGE,
        [
            {
                "rule": rule,
                "interactions": 10,
                "kit_flags": k,
                "callminer_flags": 2,
                "flagged_by_both": b,
            }
            for rule, k, b in (
                ("(any rule)", 4, 2),
                ("consent_obtained", 4, 1),
                ("(any rule)", 4, 3),
            )
        ],
    )
    report = build_report(dataclasses.replace(data, kit_diff=diff, coverage=coverage))
    html = report.html
    assert "Compliance frameworks compared" in html
    assert report.counts["kit_changed_interactions"] == 3
    # two days of "(any rule)" summed: 5 of 8 failures flagged by CallMiner too
    assert re.search(r"\(any rule\)</td><td class=\"n\">20</td><td class=\"n\">8</td>", html)
    assert "62 %" in html and "25 %" in html
