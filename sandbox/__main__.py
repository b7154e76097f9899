"""``python -m sandbox``: the same command as ``flexsync sandbox``, without the service installed."""

from sandbox.cli import main

main()
