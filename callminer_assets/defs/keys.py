"""Every asset key, once: assets, checks, sensors and the CLI refer to these."""

import dagster as dg

INTERACTIONS_KEY = dg.AssetKey(["callminer", "interactions"])
QUARANTINE_KEY = dg.AssetKey(["callminer", "quarantine"])
# The other writers' rows of callminer.quarantine: Dagster draws one producer per asset key.
TRANSCRIPT_QUARANTINE_KEY = dg.AssetKey(["callminer", "transcript_quarantine"])
EVALUATION_QUARANTINE_KEY = dg.AssetKey(["semarize", "evaluation_quarantine"])
TRANSCRIPTS_KEY = dg.AssetKey(["callminer", "transcripts"])
UTTERANCES_KEY = dg.AssetKey(["callminer", "utterances"])
NATIVE_SCORES_KEY = dg.AssetKey(["callminer", "native_scores"])
NATIVE_CATEGORIES_KEY = dg.AssetKey(["callminer", "native_categories"])
ROSTER_KEY = dg.AssetKey(["callminer", "agent_roster"])
EVALUATIONS_KEY = dg.AssetKey(["semarize", "evaluations"])
SCORES_KEY = dg.AssetKey(["analytics", "interaction_scores"])
FINDINGS_KEY = dg.AssetKey(["analytics", "compliance_findings"])
ALERTS_KEY = dg.AssetKey(["analytics", "compliance_alerts"])
FEATURES_KEY = dg.AssetKey(["analytics", "agent_monthly_features"])
CONSISTENCY_KEY = dg.AssetKey(["analytics", "channel_consistency"])
MODEL_KEY = dg.AssetKey(["analytics", "attrition_model"])
RISK_KEY = dg.AssetKey(["analytics", "attrition_risk"])
REPORT_KEY = dg.AssetKey(["analytics", "monthly_report"])
KIT_DIFF_KEY = dg.AssetKey(["analytics", "kit_version_diff"])
COVERAGE_KEY = dg.AssetKey(["analytics", "framework_coverage"])
MAINTENANCE_KEY = dg.AssetKey(["warehouse", "maintenance"])
