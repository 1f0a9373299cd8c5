"""``python -m callminer_assets.webhook``: run the CallMiner webhook listener."""

from __future__ import annotations

import argparse
import logging
import socket
import sys
from pathlib import Path

import uvicorn

from callminer_assets.lib.errors import ConfigError
from callminer_assets.webhook.app import (
    EVENTS_PATH,
    MAX_BODY_BYTES,
    MAX_SKEW_SECONDS,
    SECRET_ENV,
    create_app,
    secret_from_env,
)
from callminer_assets.webhook.inbox import DEFAULT_INBOX_PATH, INBOX_ENV, Inbox, default_inbox_path

DESCRIPTION = f"""\
Receive CallMiner real-time events and store them durably in a SQLite inbox.

Endpoints:
  POST {EVENTS_PATH}   a signed event; 200 {{"stored": true|false}} once committed
  GET  /healthz             liveness

Each POST must carry X-CallMiner-Timestamp (unix seconds) and
X-CallMiner-Signature: sha256=<hex HMAC-SHA256 of "<timestamp>.<raw body>">.
Answers: 401 unsigned / wrongly signed / timestamp more than {MAX_SKEW_SECONDS // 60} min off,
413 body over {MAX_BODY_BYTES} bytes, 400 not an event, 200 stored (a repeated
eventId is stored once and answered {{"stored": false}}).
The Dagster sensor `callminer_webhook_inbox_sensor` turns stored events into runs.
"""

EPILOG = f"""\
environment:
  {SECRET_ENV}   shared HMAC secret (required; never logged)
  {INBOX_ENV}    inbox path (default {DEFAULT_INBOX_PATH}); --inbox overrides it
"""


class _Server(uvicorn.Server):
    """uvicorn server that prints one ready line once it accepts connections."""

    ready_line: str = ""

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if self.started and self.ready_line:
            print(self.ready_line, flush=True)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m callminer_assets.webhook",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--port", type=int, required=True, help="TCP port to listen on (0 = any free port)"
    )
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1)")
    parser.add_argument(
        "--inbox",
        type=Path,
        default=None,
        help=f"SQLite inbox file (default ${INBOX_ENV} or {DEFAULT_INBOX_PATH})",
    )
    parser.add_argument(
        "--log-level", default="info", choices=["debug", "info", "warning", "error"]
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    try:
        secret = secret_from_env()
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    inbox = Inbox(args.inbox if args.inbox is not None else default_inbox_path())
    app = create_app(secret=secret, inbox=inbox)

    family = socket.AF_INET6 if ":" in args.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((args.host, args.port))
    port = sock.getsockname()[1]
    host = f"[{args.host}]" if family == socket.AF_INET6 else args.host

    config = uvicorn.Config(app, log_level=args.log_level, access_log=True)
    server = _Server(config)
    server.ready_line = (
        f"callminer webhook listening on http://{host}:{port}{EVENTS_PATH} (inbox {inbox.path})"
    )
    server.run(sockets=[sock])
    return 0


if __name__ == "__main__":
    sys.exit(main())
