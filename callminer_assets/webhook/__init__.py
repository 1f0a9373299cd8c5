"""Real-time CallMiner events: a signed-webhook listener and its durable SQLite inbox.

Run it with ``python -m callminer_assets.webhook --port P`` (see ``--help``); the
Dagster sensor ``callminer_webhook_inbox_sensor`` turns stored events into runs.
"""

from callminer_assets.webhook.app import create_app, sign, validate_event
from callminer_assets.webhook.inbox import Inbox, InboxEvent, default_inbox_path

__all__ = ["Inbox", "InboxEvent", "create_app", "default_inbox_path", "sign", "validate_event"]
