"""The FlexPoint simulator: the Sync API of flexpoint-sync-api.yaml on localhost.

Part of the product (issue 3): the sync and provisioning workers call it as their real HTTP
peer in development, tests and benchmarks, and it refuses every request that does not match
the contract, so the project's own contract bugs surface here. ``create_app`` builds the
Flask app, ``serve`` runs it until SIGTERM/SIGINT, ``cli.flexpoint`` is the command group.
"""

from __future__ import annotations

import importlib
from typing import Any

# Resolved on first use, so mounting the CLI group does not import Flask and jsonschema.
_EXPORTS = {
    "FlexPointConfig": "sandbox.flexpoint.config",
    "FlexPointServer": "sandbox.flexpoint.server",
    "close_app": "sandbox.flexpoint.app",
    "create_app": "sandbox.flexpoint.app",
    "serve": "sandbox.flexpoint.server",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
