"""Built-in CallMiner + Semarize sandbox: synthetic data with real signal, every contract variant,
switchable faults. See ``app.SandboxConfig`` for the switches and ``server.serve`` to run it.
"""

from __future__ import annotations

from callminer_assets.sandbox.app import SandboxConfig, SandboxState, create_app
from callminer_assets.sandbox.generator import Generator, write_roster_csv
from callminer_assets.sandbox.server import SandboxServer, embedded_transport, serve

__all__ = [
    "Generator",
    "SandboxConfig",
    "SandboxServer",
    "SandboxState",
    "create_app",
    "embedded_transport",
    "serve",
    "write_roster_csv",
]
