"""Declarative downstream: what follows raw data without anyone clicking."""

from datetime import timedelta

import dagster as dg

# How far back a refreshed day is followed: the poll sensor's reach (CALLMINER_POLL_MAX_DAYS)
# and beyond the 72 h transcript give-up window. Plain eager() follows only the latest day.
FOLLOW_DAYS = 7

# Eager, but only once every upstream blocking check passed (a duplicated id or a
# transcript-less interaction must not reach Semarize or the features).
EAGER_AFTER_CHECKS = (
    dg.AutomationCondition.eager().replace(
        dg.AutomationCondition.in_latest_time_window(),
        dg.AutomationCondition.in_latest_time_window(timedelta(days=FOLLOW_DAYS)),
    )
    & dg.AutomationCondition.all_deps_blocking_checks_passed()
).with_label(f"eager over the last {FOLLOW_DAYS} days, after upstream blocking checks")

# Evaluates those conditions; on by default so sensor-driven raw refreshes flow through.
automation_sensor = dg.AutomationConditionSensorDefinition(
    "callminer_automation",
    target=dg.AssetSelection.all(),
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=60,
    run_tags={"callminer/trigger": "automation"},
    description=(
        "Materialises semarize/evaluations and the analytics assets when their upstream "
        "partitions change and upstream blocking checks passed."
    ),
)
