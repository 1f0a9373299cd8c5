"""Declarative downstream: what follows raw data without anyone clicking."""

import dagster as dg

# Eager, but only once every upstream blocking check passed (a duplicated id or a
# transcript-less interaction must not reach Semarize or the features).
EAGER_AFTER_CHECKS = (
    dg.AutomationCondition.eager() & dg.AutomationCondition.all_deps_blocking_checks_passed()
).with_label("eager, after upstream blocking checks")

# Evaluates those conditions; on by default so sensor-driven raw refreshes flow through.
automation_sensor = dg.AutomationConditionSensorDefinition(
    "callminer_automation",
    target=dg.AssetSelection.all(),
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=60,
    description=(
        "Materialises semarize/evaluations and the analytics assets when their upstream "
        "partitions change and upstream blocking checks passed."
    ),
)
