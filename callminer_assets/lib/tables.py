"""Every warehouse table, column by column: the public interface analysts query.

One place declares names, DuckDB types and a one-line doc per column; the DDL,
the column comments, the frame checks and the README table docs all come from
here, so they cannot drift apart. Table ``schema.name`` == asset key path.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl


@dataclass(frozen=True, slots=True)
class Column:
    name: str
    type: str
    doc: str


@dataclass(frozen=True, slots=True)
class Table:
    schema: str
    name: str
    grain: str
    columns: tuple[Column, ...]
    partition_column: str | None = None

    @property
    def qualified(self) -> str:
        return f"{self.schema}.{self.name}"

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]


def _t(
    schema: str, name: str, grain: str, partition_column: str | None, *cols: tuple[str, str, str]
) -> Table:
    return Table(schema, name, grain, tuple(Column(*c) for c in cols), partition_column)


_DATE = (
    "interaction_date",
    "DATE",
    "UTC date of the interaction's startTime (the daily partition)",
)
_ID = ("interaction_id", "VARCHAR", "CallMiner interaction id, e.g. INT-20250115-00482")

INTERACTIONS = _t(
    "callminer",
    "interactions",
    "one row per valid interaction",
    "interaction_date",
    _ID,
    _DATE,
    ("start_time", "TIMESTAMPTZ", "interaction start, normalised to UTC"),
    ("channel", "VARCHAR", "voice / chat / email / video (lower case)"),
    ("agent_id", "VARCHAR", "agent id; NULL on some email/chat records"),
    ("agent_name", "VARCHAR", "agent display name"),
    ("direction", "VARCHAR", "inbound / outbound"),
    ("customer_id", "VARCHAR", "customer id"),
    ("duration_s", "DOUBLE", "duration in seconds; NULL for email"),
    ("disposition", "VARCHAR", "call disposition"),
    ("wrap_up_codes", "JSON", "wrap-up codes as a JSON array"),
    ("campaign", "VARCHAR", "campaign (collections requires the mini-Miranda)"),
    ("queue", "VARCHAR", "routing queue"),
    ("mailbox", "VARCHAR", "email only: the contact centre address the thread went through"),
    ("contact", "JSON", "free-form contact metadata as received"),
    ("extra", "JSON", "every field of the record not mapped to a column"),
    (
        "origin",
        "VARCHAR",
        "where the record came from: sandbox (built-in), rest:<host> or bulk:<host>",
    ),
    ("extracted_at", "TIMESTAMPTZ", "when the pipeline listed this record"),
)

QUARANTINE = _t(
    "callminer",
    "quarantine",
    "one row per record refused",
    "interaction_date",
    ("interaction_date", "DATE", "the partition the record was refused in"),
    (
        "source",
        "VARCHAR",
        "interaction / transcript / utterance / evaluation (a Semarize value its column "
        "cannot hold; record_id = run id)",
    ),
    ("record_id", "VARCHAR", "the record's id when it had one"),
    ("reason", "VARCHAR", "why it was refused, e.g. missing id, unknown channel 'fax'"),
    ("payload", "VARCHAR", "JSON text of the record exactly as received"),
    ("quarantined_at", "TIMESTAMPTZ", "when it was refused"),
)

TRANSCRIPTS = _t(
    "callminer",
    "transcripts",
    "one row per valid interaction",
    "interaction_date",
    _ID,
    _DATE,
    ("channel", "VARCHAR", "the interaction's channel"),
    (
        "status",
        "VARCHAR",
        "available / pending (not ready yet, fetched again later) / missing (gave up)",
    ),
    ("format", "VARCHAR", "ovts / plain as CallMiner sent it; NULL unless available"),
    ("utterance_count", "INTEGER", "utterances stored in callminer.utterances"),
    (
        "transcript_text",
        "VARCHAR",
        "speaker-prefixed plain text, one 'role: text' line per utterance",
    ),
    (
        "transcript_hash",
        "VARCHAR",
        "sha256 of transcript_text: a changed transcript is re-evaluated",
    ),
    (
        "first_seen_pending_at",
        "TIMESTAMPTZ",
        "first time the transcript was found pending; NULL if never",
    ),
    ("fetched_at", "TIMESTAMPTZ", "when the transcript was last fetched"),
)

UTTERANCES = _t(
    "callminer",
    "utterances",
    "one row per utterance",
    "interaction_date",
    _ID,
    _DATE,
    ("seq", "INTEGER", "0-based position in the transcript (== Semarize utterance_index)"),
    ("speaker_role", "VARCHAR", "agent / customer / unknown (email roles inferred from from/to)"),
    ("start_s", "DOUBLE", "seconds from the interaction start; NULL where unknown"),
    ("end_s", "DOUBLE", "seconds from the interaction start; NULL where unknown"),
    ("text", "VARCHAR", "what was said or written, verbatim"),
)

_LAST_MODIFIED = (
    "last_modified",
    "TIMESTAMPTZ",
    "Contacts.LastModified of the contact version these rows came with (newest wins)",
)
_EXPORTED_AT = ("exported_at", "TIMESTAMPTZ", "when the pipeline downloaded the export")

NATIVE_SCORES = _t(
    "callminer",
    "native_scores",
    "one row per interaction x CallMiner score (Bulk Export backend only)",
    "interaction_date",
    _ID,
    _DATE,
    ("score_id", "VARCHAR", "CallMiner's score id (Scores.ScoreID)"),
    ("score_name", "VARCHAR", "CallMiner's score name, as configured in the tenant"),
    ("score", "DOUBLE", "the score CallMiner computed; NULL when it exported null"),
    _LAST_MODIFIED,
    _EXPORTED_AT,
)

NATIVE_CATEGORIES = _t(
    "callminer",
    "native_categories",
    "one row per interaction x CallMiner category hit (Bulk Export backend only)",
    "interaction_date",
    _ID,
    _DATE,
    ("category_id", "VARCHAR", "CallMiner's category id (Categories.CategoryID)"),
    ("category_name", "VARCHAR", "CallMiner's category name, as configured in the tenant"),
    _LAST_MODIFIED,
    _EXPORTED_AT,
)

EVALUATIONS = _t(
    "semarize",
    "evaluations",
    "one row per interaction x kit x brick (one row with brick NULL for a failed run)",
    "interaction_date",
    _ID,
    _DATE,
    ("transcript_hash", "VARCHAR", "hash of the transcript text that was evaluated"),
    ("kit_code", "VARCHAR", "qa_compliance / experience_quality / agent_wellbeing"),
    ("kit_version", "VARCHAR", "kit version the run used; older versions stay beside newer ones"),
    (
        "evaluator",
        "VARCHAR",
        "semarize (a paid Semarize run) / local-kits (the project's kit files, never counted as "
        "paid at Semarize)",
    ),
    ("brick", "VARCHAR", "question name, e.g. compliance_score; NULL for a failed run"),
    ("value", "JSON", "the brick's value (number, boolean, string or null)"),
    ("confidence", "DOUBLE", "model confidence 0..1"),
    ("evidence", "JSON", "list of {quote, utterance_index}"),
    ("run_id", "VARCHAR", "Semarize run id"),
    ("status", "VARCHAR", "succeeded / failed"),
    ("error", "VARCHAR", "error code and message of a failed run"),
    ("input_tokens", "BIGINT", "billed input tokens of the run"),
    ("evaluated_at", "TIMESTAMPTZ", "when the run finished"),
)

INTERACTION_SCORES = _t(
    "analytics",
    "interaction_scores",
    "one typed row per evaluated interaction",
    "interaction_date",
    _ID,
    _DATE,
    ("agent_id", "VARCHAR", "agent id (NULL when CallMiner had none)"),
    ("channel", "VARCHAR", "voice / chat / email / video"),
    ("compliance_score", "DOUBLE", "qa_compliance.compliance_score, 0..1"),
    ("recording_disclosure", "BOOLEAN", "qa_compliance: recording disclosure given"),
    ("consent_obtained", "BOOLEAN", "qa_compliance: consent obtained"),
    ("prohibited_phrases", "INTEGER", "qa_compliance: prohibited phrases used"),
    ("mini_miranda_given", "BOOLEAN", "qa_compliance: NULL where the campaign does not require it"),
    ("empathy_score", "DOUBLE", "experience_quality.empathy_score, 0..1"),
    ("resolution_achieved", "BOOLEAN", "experience_quality.resolution_achieved"),
    (
        "customer_effort",
        "DOUBLE",
        "experience_quality.customer_effort, 0..1 (higher = harder for the customer)",
    ),
    ("brand_alignment", "DOUBLE", "experience_quality.brand_alignment, 0..1"),
    ("escalation_risk", "DOUBLE", "experience_quality.escalation_risk, 0..1"),
    ("topic_primary", "VARCHAR", "experience_quality.topic_primary"),
    ("frustration_markers", "INTEGER", "agent_wellbeing.frustration_markers"),
    ("coaching_receptivity", "DOUBLE", "agent_wellbeing.coaching_receptivity, 0..1"),
    ("customer_escalation_requested", "BOOLEAN", "agent_wellbeing.customer_escalation_requested"),
    (
        "quality_score",
        "DOUBLE",
        "mean of compliance, empathy, resolution (0/1) and 1 - effort; NULL if any is missing",
    ),
    (
        "kit_versions",
        "JSON",
        'the kit version each kit\'s latest run used, e.g. {"qa_compliance": "TCPA-v2026.2"}',
    ),
)

COMPLIANCE_FINDINGS = _t(
    "analytics",
    "compliance_findings",
    "one row per interaction x compliance rule x evidence item (quote NULL when none)",
    "interaction_date",
    _ID,
    _DATE,
    ("agent_id", "VARCHAR", "agent id"),
    ("rule", "VARCHAR", "qa_compliance brick, e.g. recording_disclosure, prohibited_phrases"),
    (
        "passed",
        "BOOLEAN",
        "rule satisfied (count rules: zero); NULL when it does not apply (mini-Miranda)",
    ),
    ("quote", "VARCHAR", "evidence quote (NULL when there is none)"),
    ("utterance_index", "INTEGER", "callminer.utterances.seq of the evidence"),
)

COMPLIANCE_ALERTS = _t(
    "analytics",
    "compliance_alerts",
    "one row per interaction below the compliance threshold (alerted once)",
    "interaction_date",
    _ID,
    _DATE,
    ("agent_id", "VARCHAR", "agent id"),
    ("channel", "VARCHAR", "channel"),
    ("compliance_score", "DOUBLE", "the score that triggered the alert"),
    ("failed_rules", "JSON", "list of failed rule names"),
    ("evidence", "JSON", "list of {rule, quote, utterance_index}"),
    ("alerted_at", "TIMESTAMPTZ", "when the alert was first raised"),
    ("delivered", "BOOLEAN", "sent to Slack (false when no SLACK_WEBHOOK_URL is set)"),
)

KIT_VERSION_DIFF = _t(
    "analytics",
    "kit_version_diff",
    "one row per interaction x kit x evaluator x rule whose verdict differs between the kit's "
    "two latest versions",
    "interaction_date",
    _ID,
    _DATE,
    ("agent_id", "VARCHAR", "agent id"),
    ("kit_code", "VARCHAR", "the kit, e.g. qa_compliance"),
    ("evaluator", "VARCHAR", "semarize / local-kits (versions are compared within one evaluator)"),
    ("rule", "VARCHAR", "the brick whose verdict changed, e.g. prohibited_phrases"),
    (
        "from_version",
        "VARCHAR",
        "the older of the two latest versions the interaction was run with",
    ),
    ("to_version", "VARCHAR", "the newer one"),
    ("from_value", "JSON", "the verdict under from_version (NULL: the brick did not exist)"),
    ("to_value", "JSON", "the verdict under to_version (NULL: the brick no longer exists)"),
)

FRAMEWORK_COVERAGE = _t(
    "analytics",
    "framework_coverage",
    "one row per day x rule of the team's compliance kit, over interactions that have both the "
    "kit's verdicts and CallMiner's native scores or categories (Bulk Export backend)",
    "interaction_date",
    _DATE,
    ("kit_code", "VARCHAR", "the team's kit, qa_compliance"),
    ("kit_versions", "JSON", "the kit versions of the day's verdicts, a JSON list"),
    ("rule", "VARCHAR", "a rule of the kit, or '(any rule)' for interactions failing any of them"),
    ("interactions", "INTEGER", "interactions with verdicts and native data that day"),
    ("kit_flags", "INTEGER", "of them, failing the rule under the team's kit"),
    (
        "callminer_flags",
        "INTEGER",
        "of them, flagged by CallMiner's own scoring (the kit file's callminer_flags)",
    ),
    ("flagged_by_both", "INTEGER", "failing the rule and flagged by CallMiner"),
    (
        "coverage",
        "DOUBLE",
        "flagged_by_both / kit_flags: share of the rule's failures CallMiner also flags",
    ),
)

AGENT_ROSTER = _t(
    "callminer",
    "agent_roster",
    "one row per agent (HR roster CSV)",
    None,
    ("agent_id", "VARCHAR", "agent id"),
    ("agent_name", "VARCHAR", "agent name"),
    ("team", "VARCHAR", "team"),
    ("hire_date", "DATE", "first day employed"),
    ("leave_date", "DATE", "last day employed; NULL while employed"),
)

AGENT_MONTHLY_FEATURES = _t(
    "analytics",
    "agent_monthly_features",
    "one row per agent x month",
    "month",
    ("agent_id", "VARCHAR", "agent id"),
    ("month", "DATE", "first day of the month"),
    ("interactions", "INTEGER", "evaluated interactions of the agent in the month"),
    (
        "low_volume",
        "BOOLEAN",
        "fewer interactions than the minimum for stable features (kept, flagged)",
    ),
    (
        "frustration_frequency",
        "DOUBLE",
        "share of the agent's interactions with >= 1 frustration marker (where the kit answered)",
    ),
    ("coaching_receptivity", "DOUBLE", "mean agent_wellbeing.coaching_receptivity"),
    (
        "performance_trend_slope",
        "DOUBLE",
        "OLS slope of weekly mean quality_score over the trailing 3 months, per week",
    ),
    (
        "customer_escalation_rate",
        "DOUBLE",
        "share of interactions where the customer asked to escalate",
    ),
    ("mean_compliance", "DOUBLE", "mean compliance_score"),
    ("mean_empathy", "DOUBLE", "mean empathy_score"),
    ("mean_resolution", "DOUBLE", "share of interactions with resolution_achieved"),
    ("mean_effort", "DOUBLE", "mean customer_effort"),
    ("share_voice", "DOUBLE", "share of interactions on voice"),
    ("share_chat", "DOUBLE", "share of interactions on chat"),
    ("share_email", "DOUBLE", "share of interactions on email"),
    ("share_video", "DOUBLE", "share of interactions on video"),
)

CHANNEL_CONSISTENCY = _t(
    "analytics",
    "channel_consistency",
    "one row per month x channel",
    "month",
    ("month", "DATE", "first day of the month"),
    ("channel", "VARCHAR", "voice / chat / email / video"),
    ("interactions", "INTEGER", "evaluated interactions"),
    ("mean_empathy", "DOUBLE", "mean empathy_score"),
    ("mean_resolution", "DOUBLE", "share resolved"),
    ("mean_effort", "DOUBLE", "mean customer_effort (lower is better)"),
    ("mean_brand_alignment", "DOUBLE", "mean brand_alignment"),
    ("empathy_gap_pct", "DOUBLE", "% below the best channel's mean empathy"),
    ("resolution_gap_pct", "DOUBLE", "% below the best channel's resolution rate"),
    ("effort_gap_pct", "DOUBLE", "% above the best (lowest) channel's mean effort"),
    ("brand_alignment_gap_pct", "DOUBLE", "% below the best channel's brand alignment"),
)

ATTRITION_MODEL_METRICS = _t(
    "analytics",
    "attrition_model_metrics",
    "one row per trained model version",
    None,
    (
        "model_version",
        "VARCHAR",
        "version tag; the model file is data/models/attrition-<version>.joblib",
    ),
    ("trained_at", "TIMESTAMPTZ", "when it was trained"),
    ("train_months", "VARCHAR", "first..last month used for training"),
    ("test_months", "VARCHAR", "first..last month held out (strictly later than training)"),
    (
        "purged",
        "BOOLEAN",
        "training months whose 90-day label window reaches the test period were dropped",
    ),
    ("n_train", "INTEGER", "training rows"),
    ("n_test", "INTEGER", "test rows"),
    ("base_rate", "DOUBLE", "share of positive labels in the test set"),
    ("roc_auc", "DOUBLE", "ROC AUC on the test set"),
    ("average_precision", "DOUBLE", "average precision on the test set"),
    ("n_test_positives", "INTEGER", "positive labels (leavers) in the test set"),
    ("roc_auc_ci_low", "DOUBLE", "2.5th percentile of the ROC AUC over 1,000 test-set bootstraps"),
    ("roc_auc_ci_high", "DOUBLE", "97.5th percentile of the same"),
    ("permutations", "INTEGER", "label shuffles (refits) behind the permutation test"),
    ("permutation_auc_mean", "DOUBLE", "mean test ROC AUC with shuffled training labels"),
    ("permutation_auc_sd", "DOUBLE", "its standard deviation"),
    (
        "permutation_p_value",
        "DOUBLE",
        "(1 + shuffles with AUC >= roc_auc) / (1 + permutations): chance of this AUC by luck",
    ),
    (
        "conclusion",
        "VARCHAR",
        "plain words: 'too small to conclude: ...' (and why) or 'better than chance: ...'",
    ),
)

ATTRITION_RISK = _t(
    "analytics",
    "attrition_risk",
    "one row per active agent for the latest month",
    None,
    ("agent_id", "VARCHAR", "agent id"),
    ("month", "DATE", "the month the features come from"),
    ("risk", "DOUBLE", "predicted probability of leaving within 90 days after the month"),
    ("top_features", "JSON", "the features that contributed most, with their contributions"),
    ("model_version", "VARCHAR", "model that scored it"),
)

TABLES: dict[str, Table] = {
    t.qualified: t
    for t in (
        INTERACTIONS,
        QUARANTINE,
        TRANSCRIPTS,
        UTTERANCES,
        NATIVE_SCORES,
        NATIVE_CATEGORIES,
        EVALUATIONS,
        INTERACTION_SCORES,
        COMPLIANCE_FINDINGS,
        COMPLIANCE_ALERTS,
        KIT_VERSION_DIFF,
        FRAMEWORK_COVERAGE,
        AGENT_ROSTER,
        AGENT_MONTHLY_FEATURES,
        CHANNEL_CONSISTENCY,
        ATTRITION_MODEL_METRICS,
        ATTRITION_RISK,
    )
}


POLARS_TYPES: dict[str, pl.DataType] = {
    "VARCHAR": pl.String(),
    "JSON": pl.String(),  # JSON text; DuckDB parses it on insert
    "DATE": pl.Date(),
    "TIMESTAMPTZ": pl.Datetime("us", "UTC"),
    "DOUBLE": pl.Float64(),
    "INTEGER": pl.Int32(),
    "BIGINT": pl.Int64(),
    "BOOLEAN": pl.Boolean(),
}


def polars_schema(table: Table) -> pl.Schema:
    """The Polars schema of ``table``: its columns, in order, with mapped dtypes."""
    return pl.Schema({c.name: POLARS_TYPES[c.type] for c in table.columns})
