"""Automation of the analytics roll-ups that must not wait for a complete upstream history.

``EAGER_AFTER_CHECKS`` (defs/automation.py) is ``eager()``, which never fires while any
upstream partition is missing. That is right for a daily partition and its own day, and wrong
for the assets that read many upstream partitions: the monthly features read three months of
days (the trend), the attrition model reads every month. A single missing day or month (a
window that was never backfilled, a month before the data starts) would stop them for good.
These conditions fire when any upstream partition was updated since the target was last
requested or materialised, and not while anything upstream or the target itself is running.
"""

import dagster as dg

_AC = dg.AutomationCondition

# Unpartitioned (model, risk): any features month or the roster updated -> run once.
ANY_DEP_UPDATED = (
    _AC.any_deps_updated().since_last_handled() & ~_AC.any_deps_in_progress() & ~_AC.in_progress()
).with_label("any upstream partition updated since last handled, nothing in progress")

# The latest finished month: when it appears, or when any of its days (or the two months
# before it, for the trend) is updated; missing days do not block. A day refreshed within
# FOLLOW_DAYS belongs to that month or to the running one, which is no partition yet. (A
# lookback of FOLLOW_DAYS would select no month at all: dagster keeps only the partitions
# whose whole window lies within the lookback.)
MONTHLY_ON_UPDATES = (
    _AC.in_latest_time_window()
    & (_AC.newly_missing() | _AC.any_deps_updated()).since_last_handled()
    & ~_AC.any_deps_in_progress()
    & ~_AC.in_progress()
).with_label("latest month: new, or an upstream day updated; missing days allowed")
