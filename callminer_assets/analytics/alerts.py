"""Compliance alerts: low-scoring interactions with their failed rules and evidence, sent once.

"Once" is enforced by the caller handing in every interaction id already present in
``analytics.compliance_alerts``: those are never selected again, however often a partition
is re-run. Delivery goes to a Slack incoming webhook when a URL is configured; the table row
is written either way, with ``delivered`` saying whether Slack accepted it. The webhook
URL is a secret (it embeds a token) and never appears in a log line or exception message.

Order (``store_then_deliver``): the rows are stored with ``delivered`` false *before* anything
is posted, then delivered, then stored again with ``delivered`` true. A failed first write
posts nothing; every alert Slack sees is already in the table, so it is never selected as new
again. The one remaining window is a failure of the final write after a successful POST:
that batch stays ``delivered`` false and is re-sent by the next run (at-least-once to Slack,
exactly once in the table).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

import httpx
import polars as pl

from callminer_assets.lib.tables import COMPLIANCE_ALERTS, polars_schema

log = logging.getLogger(__name__)

DEFAULT_THRESHOLD = 0.7
ALERTS_PER_MESSAGE = 20

ALERTS_SCHEMA: dict[str, pl.DataType] = dict(polars_schema(COMPLIANCE_ALERTS))


def select_alerts(
    scores: pl.DataFrame,
    findings: pl.DataFrame,
    already_alerted: Iterable[str],
    threshold: float = DEFAULT_THRESHOLD,
    now: datetime | None = None,
) -> pl.DataFrame:
    """New COMPLIANCE_ALERTS rows (``delivered`` false) for scores below ``threshold``.

    ``already_alerted`` is every interaction id in ``analytics.compliance_alerts``; those are
    skipped. ``failed_rules`` is a JSON list of rule names; ``evidence`` a JSON list of
    ``{rule, quote, utterance_index}`` for the failed rules (quote NULL when the rule failed
    by absence, e.g. no disclosure at all).
    """
    seen = set(already_alerted)
    at = (now or datetime.now(UTC)).astimezone(UTC)
    low = scores.filter(
        pl.col("compliance_score").is_not_null()
        & (pl.col("compliance_score") < threshold)
        & ~pl.col("interaction_id").is_in(list(seen))
    ).sort("interaction_id")
    failed = findings.filter(pl.col("passed").eq(False)) if findings.height else findings
    by_id: dict[str, list[dict[str, Any]]] = {}
    for row in failed.iter_rows(named=True):
        by_id.setdefault(row["interaction_id"], []).append(row)
    out: list[dict[str, Any]] = []
    for row in low.iter_rows(named=True):
        items = by_id.get(row["interaction_id"], [])
        rules = sorted({i["rule"] for i in items})
        evidence = [
            {"rule": i["rule"], "quote": i["quote"], "utterance_index": i["utterance_index"]}
            for i in items
        ]
        out.append(
            {
                "interaction_id": row["interaction_id"],
                "interaction_date": row["interaction_date"],
                "agent_id": row["agent_id"],
                "channel": row["channel"],
                "compliance_score": row["compliance_score"],
                "failed_rules": json.dumps(rules),
                "evidence": json.dumps(evidence),
                "alerted_at": at,
                "delivered": False,
            }
        )
    return pl.DataFrame(out, schema=ALERTS_SCHEMA, orient="row")


def _line(row: dict[str, Any]) -> str:
    rules = json.loads(row["failed_rules"]) or ["(no failed rule recorded)"]
    quotes = [e for e in json.loads(row["evidence"]) if e.get("quote")]
    text = (
        f"*{row['interaction_id']}* ({row['channel']}, agent {row['agent_id'] or 'unknown'}, "
        f"{row['interaction_date']}): compliance {row['compliance_score']:.2f}; "
        f"failed: {', '.join(rules)}"
    )
    for e in quotes[:3]:
        text += f'\n    > {e["rule"]} @ utterance {e["utterance_index"]}: "{e["quote"]}"'
    return text


def slack_message(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Slack incoming-webhook payload (plain ``text``, mrkdwn) for a batch of alerts."""
    head = f":rotating_light: {len(rows)} interaction(s) below the compliance threshold"
    return {"text": "\n".join([head, *(_line(r) for r in rows)])}


def deliver(
    alerts: pl.DataFrame,
    webhook_url: str | None,
    *,
    client: httpx.Client | None = None,
    batch_size: int = ALERTS_PER_MESSAGE,
    timeout_s: float = 10.0,
) -> pl.DataFrame:
    """POST undelivered alerts to Slack in batches; return ``alerts`` with ``delivered`` updated.

    Without a URL nothing is sent. A failed POST leaves its batch undelivered (logged without
    the URL) instead of failing the run: the table row is the record, Slack is the courtesy.
    """
    if not webhook_url or alerts.is_empty():
        return alerts
    pending = [r for r in alerts.iter_rows(named=True) if not r["delivered"]]
    sent: set[str] = set()
    own = client is None
    http = client or httpx.Client(timeout=timeout_s)
    try:
        for start in range(0, len(pending), batch_size):
            batch = pending[start : start + batch_size]
            try:
                resp = http.post(webhook_url, json=slack_message(batch))
            except httpx.HTTPError as exc:
                log.warning("slack webhook: %s for %d alert(s)", type(exc).__name__, len(batch))
                continue
            if resp.is_success:
                sent.update(r["interaction_id"] for r in batch)
            else:
                log.warning("slack webhook: HTTP %d for %d alert(s)", resp.status_code, len(batch))
    finally:
        if own:
            http.close()
    return alerts.with_columns(
        delivered=pl.col("delivered") | pl.col("interaction_id").is_in(list(sent))
    )


def pending_alerts(
    existing_partition: pl.DataFrame,
    all_alerted_ids: Iterable[str],
    scores: pl.DataFrame,
    findings: pl.DataFrame,
    threshold: float = DEFAULT_THRESHOLD,
    now: datetime | None = None,
) -> tuple[pl.DataFrame, int]:
    """(rows the partition holds before delivery, new alert count): the partition's earlier
    alerts (a partition replace must not forget them) plus new ones with ``delivered`` false."""
    new = select_alerts(scores, findings, all_alerted_ids, threshold, now)
    combined = pl.concat(
        [existing_partition.select(list(ALERTS_SCHEMA)).cast(ALERTS_SCHEMA), new],  # type: ignore[arg-type]
        how="vertical",
    )
    combined = combined.with_columns(pl.col("delivered").fill_null(False))
    return combined.sort("interaction_id"), new.height


def store_then_deliver(
    rows: pl.DataFrame,
    write: Callable[[pl.DataFrame], object],
    webhook_url: str | None,
    client: httpx.Client | None = None,
) -> tuple[pl.DataFrame, int]:
    """Write ``rows``, POST the undelivered ones, write again with ``delivered`` updated.

    Returns (rows as finally written, delivered-this-run count). If the first ``write``
    raises, nothing has been posted.
    """
    write(rows)
    after = deliver(rows, webhook_url, client=client)
    sent = int(after["delivered"].sum()) - int(rows["delivered"].sum())
    if sent:
        write(after)
    return after, sent


def partition_alerts(
    existing_partition: pl.DataFrame,
    all_alerted_ids: Iterable[str],
    scores: pl.DataFrame,
    findings: pl.DataFrame,
    webhook_url: str | None,
    threshold: float = DEFAULT_THRESHOLD,
    now: datetime | None = None,
    client: httpx.Client | None = None,
    write: Callable[[pl.DataFrame], object] | None = None,
) -> tuple[pl.DataFrame, int, int]:
    """The rows one daily partition of ``compliance_alerts`` holds after this run.

    ``pending_alerts`` then ``store_then_deliver`` with ``write`` (the partition replace;
    nothing is stored when it is None). Returns (rows, new alert count, delivered-this-run).
    """
    rows, new = pending_alerts(
        existing_partition, all_alerted_ids, scores, findings, threshold, now
    )
    after, sent = store_then_deliver(rows, write or (lambda _: None), webhook_url, client)
    return after, new, sent
