"""``flexsync backfill <connection-id>``: run (or re-run) a connection's historical import in the foreground.

Resumes an unfinished import from its checkpoints; a finished one is imported again from
scratch, as is any with ``--restart``. Ctrl-C stops at the next page with the checkpoint saved.
"""

from __future__ import annotations

import signal
import threading
import time
from typing import Any

import click

from cli.context import parts_of, settings_of


class ProgressBars:
    """One click progress bar per resource, opened when the resource starts, closed when it ends."""

    def __init__(self) -> None:
        self._bars: dict[str, Any] = {}
        self._shown: dict[str, int] = {}

    def __call__(self, resource: str, point: Any) -> None:
        bar = self._bars.get(resource)
        if bar is None:
            bar = click.progressbar(length=max(point.total or 0, 1), label=f"{resource:<16}", show_pos=True)
            bar.__enter__()
            self._bars[resource] = bar
            self._shown[resource] = 0
        if point.total and bar.length != point.total:
            bar.length = point.total
        bar.update(point.imported - self._shown[resource])
        self._shown[resource] = point.imported
        if point.done:
            self.close(resource)

    def close(self, resource: str | None = None) -> None:
        for name in [resource] if resource else list(self._bars):
            bar = self._bars.pop(name, None)
            if bar is not None:
                bar.__exit__(None, None, None)


@click.command("backfill")
@click.argument("connection_id")
@click.option("--restart", is_flag=True, help="start over from no checkpoint")
@click.option("--page-size", type=click.IntRange(1, 4000), default=2000, show_default=True)
@click.pass_context
def backfill(ctx: click.Context, connection_id: str, restart: bool, page_size: int) -> None:
    """Import CONNECTION_ID's history from Sage Intacct into FlexPoint, with a progress bar per resource."""
    settings = settings_of(ctx)
    settings.require("INTACCT_CLIENT_SECRET", "FLEXPOINT_API_URL", "FLEXPOINT_API_TOKEN", process="backfill")
    from workers.backfill.lease import holder_is_dead, new_holder
    from workers.backfill.runner import BackfillRunner, RunOptions
    from workers.backfill.store import BackfillStore, RunBusy

    parts = parts_of(ctx)
    connections = parts.connections
    connection = connections.get(connection_id)
    if connection is None:
        raise click.ClickException(f"no connection {connection_id}; `flexsync connections list` shows them")
    if not connection.is_active:
        raise click.ClickException(
            f"connection {connection_id} is disconnected; it must be connected again in FlexPoint first"
        )
    store = BackfillStore(parts.engine)
    options = RunOptions(page_size=page_size)
    previous = store.get(connection_id)
    if restart or previous is None or previous.state in ("completed", "cancelled", "failed"):
        store.request(connection_id, restart=restart)
    holder = new_holder()
    try:
        store.claim(connection_id, holder, options.lease_seconds)
    except RunBusy as exc:
        busy = store.get(connection_id)
        if not holder_is_dead(busy.holder if busy else None):
            raise click.ClickException(f"{exc}; wait for it, or use --restart to take it over") from None
        # Its holder was killed on this host: no need to wait for the lease to run out.
        store.claim(connection_id, holder, options.lease_seconds, replacing=busy.holder if busy else None)
    runner = BackfillRunner(
        settings,
        store,
        intacct=parts.intacct(),
        flexpoint=parts.flexpoint(),
        connections=connections,
        options=options,
    )
    _run(store, runner, connection_id, holder)


def _run(store: Any, runner: Any, connection_id: str, holder: str) -> None:
    stop = threading.Event()

    def _interrupt(_signum: int, _frame: Any) -> None:
        click.echo("\nstopping at the next page (Ctrl-C again to abort at once)", err=True)
        stop.set()
        signal.signal(signal.SIGINT, signal.default_int_handler)

    bars = ProgressBars()
    in_main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGINT, _interrupt) if in_main else None
    try:
        outcome = runner.run(connection_id, holder, stop, on_progress=bars)
    finally:
        bars.close()
        if in_main:
            signal.signal(signal.SIGINT, previous)
    points = store.checkpoints(connection_id)
    read = sum(p.imported for p in points.values())
    skipped = sum(p.skipped for p in points.values())
    unmappable = sum(p.unmappable for p in points.values())
    summary = f"{read} records read, {skipped} skipped (drafts), {unmappable} unmappable (see the log)"
    if outcome == "completed":
        click.echo(f"backfill of {connection_id} completed: {summary}")
    elif outcome == "stopped":
        click.echo(f"backfill of {connection_id} stopped: {summary}; run the command again to resume")
    elif outcome == "failed":
        run = store.get(connection_id)
        then = "run the command again to resume from the checkpoint"
        if run.resume_at is not None:
            minutes = max(1, round((run.resume_at - time.time()) / 60))
            then = f"the provisioning worker resumes it in about {minutes} min, or {then}"
        raise click.ClickException(f"backfill of {connection_id} failed: {run.error}; {then}")
    else:
        raise click.ClickException(
            f"backfill of {connection_id} was cancelled (the connection was disconnected or the run cancelled)"
        )
