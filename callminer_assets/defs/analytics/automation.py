"""Automation of the analytics roll-ups that must not wait for a complete upstream history.

``EAGER_AFTER_CHECKS`` (defs/automation.py) is ``eager()``, which never fires while any
upstream partition is missing. That is right for a daily partition and its own day, and wrong
for the assets that read many upstream partitions: the monthly features read three months of
days (the trend), the attrition model reads every month. A single missing day or month (a
window that was never backfilled, a month before the data starts) would stop them for good.
These conditions fire when any upstream partition was updated since the target was last
requested or materialised, and not while anything upstream or the target itself is running.
"""

from datetime import timedelta

import dagster as dg

from callminer_assets.defs.automation import FOLLOW_DAYS

_AC = dg.AutomationCondition

# Unpartitioned (model, risk): any features month or the roster updated -> run once.
ANY_DEP_UPDATED = (
    _AC.any_deps_updated().since_last_handled() & ~_AC.any_deps_in_progress() & ~_AC.in_progress()
).with_label("any upstream partition updated since last handled, nothing in progress")

# Monthly partitions of the last FOLLOW_DAYS: a new month, or any of its days (or the two
# months before it, for the trend) updated; missing days do not block.
MONTHLY_ON_UPDATES = (
    _AC.in_latest_time_window(timedelta(days=FOLLOW_DAYS))
    & (_AC.newly_missing() | _AC.any_deps_updated()).since_last_handled()
    & ~_AC.any_deps_in_progress()
    & ~_AC.in_progress()
).with_label(f"new month or upstream day updated (last {FOLLOW_DAYS} days), missing days allowed")
