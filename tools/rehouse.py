"""Rewrites module paths after the capability move (issue 27): `python tools/rehouse.py FILE...`.

Kept in the repository while branches written against the old layout are merged; it only rewrites
dotted module names (imports, string targets of monkeypatch) and slash paths of moved files.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

MOVES = {
    "store.deliveries": "ingest.ledger",
    "store.sqlite_held": "ingest.sqlite_held",
    "store.gaps": "ingest.gaps",
    "schemas.webhook": "ingest.messages",
    "workers.provisioning.service": "processes.provisioning",
    "workers.provisioning": "workers.connections",
    "store.connections": "workers.connections.store",
    "schemas.connection_messages": "workers.connections.messages",
    "broker.connection_changes": "workers.connections.changes",
    "ops.connections": "workers.connections.requests",
    "workers.lines": "clients.intacct.lines",
    "workers.sync.lines": "clients.intacct.lines",
    "workers.sync.service": "processes.sync",
    "store.backfill": "workers.backfill.store",
    "cli.backfill": "workers.backfill.commands",
    "store.watermarks": "workers.reconcile.store",
    "cli.reconcile": "workers.reconcile.commands",
    "workers.reconcile.service": "processes.reconcile",
    "store.postings": "workers.writeback.store",
    "schemas.payment_messages": "workers.writeback.messages",
    "cli.writeback": "workers.writeback.commands",
    "workers.writeback.service": "processes.writeback",
    "store.deadletters": "workers.deadletters.store",
    "ops.storing": "workers.deadletters.storer",
    "ops.sweep": "workers.deadletters.drain",
    "ops.archive": "workers.deadletters.archive",
    "ops.letters": "workers.deadletters.letters",
    "ops.selection": "workers.deadletters.selection",
    "ops.dead": "workers.deadletters.operations",
    "cli.deadletters": "workers.deadletters.commands",
    "workers.failures": "workers.runtime.failures",
    "ops.broker": "broker.admin",
    "ops.errors": "reliability.errors",
    "ops.status": "processes.status",
    "store.slots": "clients.intacct.slots",
    "cli.provisioning": "cli.processes",
    "cli.console": "cli.processes",
    "workers.reconcile.commands": "cli.processes",
}

_ORDER = sorted(MOVES, key=len, reverse=True)
_DOTTED = re.compile(r"(?<![\w.])(" + "|".join(re.escape(m) for m in _ORDER) + r")(?![\w])")
_SLASHED = re.compile(
    r"(?<![\w/])(" + "|".join(re.escape(m.replace(".", "/")) for m in _ORDER) + r")(?=\.py\b|/)"
)


def rewrite(text: str) -> str:
    text = _DOTTED.sub(lambda m: MOVES[m.group(1)], text)
    text = _SLASHED.sub(lambda m: MOVES[m.group(1).replace("/", ".")].replace(".", "/"), text)
    # Package-relative spellings of a moved module.
    text = text.replace(
        "from ops import dead as dead_ops", "from workers.deadletters import operations as dead_ops"
    )
    text = text.replace("from store import sqlite_held", "from ingest import sqlite_held")
    return text


def main(paths: list[str]) -> int:
    changed = 0
    for name in paths:
        path = Path(name)
        old = path.read_text()
        new = rewrite(old)
        if new != old:
            path.write_text(new)
            changed += 1
    print(f"rewrote {changed} of {len(paths)} files")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
