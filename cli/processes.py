"""The Procfile's processes as ``flexsync`` commands: each checks its settings, prepares the database
and the topology, then hands over to its factory in ``processes/``."""

from __future__ import annotations

import sys
from datetime import timedelta

import click

from cli.context import declare_topology_or_fail, prepare_database, settings_of


@click.command()
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=None,
    show_default="WEB_CONCURRENCY or 2",
    help="gunicorn worker processes",
)
@click.option("--threads", type=int, default=8, show_default=True, help="request threads per worker")
@click.pass_context
def web(ctx: click.Context, workers: int | None, threads: int) -> None:
    """Run the webhook receiver on $PORT (the Procfile's `web`)."""
    settings = settings_of(ctx)
    if settings.is_production:
        settings.require_webhook_scheme(process="web")
    prepare_database(settings)
    declare_topology_or_fail(settings, required=False)
    from processes.web import run

    run(settings, workers=workers or settings.web_concurrency, threads=threads)


@click.command()
@click.pass_context
def sync(ctx: click.Context) -> None:
    """Run the sync workers: work queues -> Intacct -> FlexPoint (the Procfile's `sync`)."""
    settings = settings_of(ctx)
    prepare_database(settings, waiting_as="sync")
    declare_topology_or_fail(settings, required=True)
    from processes.sync import run

    run(settings)


@click.command()
@click.pass_context
def provisioning(ctx: click.Context) -> None:
    """Run the provisioning worker: connect/disconnect messages and the historical import."""
    from processes.provisioning import require_settings, run

    settings = settings_of(ctx)
    require_settings(settings)  # before the database and broker are touched
    prepare_database(settings, waiting_as="provisioning")
    declare_topology_or_fail(settings, required=True)
    run(settings)


@click.command()
@click.option(
    "--once",
    is_flag=True,
    help="Drain Intacct's event queues (not with --resource), run one sweep, print a summary and exit "
    "(1 if any part failed).",
)
@click.option("--keyset", is_flag=True, help="Force the key-set pass (finds deletions) on every resource.")
@click.option("--connection", "connection_id", metavar="ID", help="Only this (connected) connection.")
@click.option(
    "--resource",
    "resources",
    multiple=True,
    metavar="NAME",
    help="Only this resource (e.g. invoices); repeat for several.",
)
@click.option(
    "--overlap",
    type=click.IntRange(min=0),
    default=300,
    show_default=True,
    help="Seconds before the watermark each query starts again.",
)
@click.option(
    "--keyset-every",
    type=click.FloatRange(min=0, min_open=True),
    default=24.0,
    show_default=True,
    help="Hours between key-set passes of a resource.",
)
@click.pass_context
def reconcile(
    ctx: click.Context,
    once: bool,
    keyset: bool,
    connection_id: str | None,
    resources: tuple[str, ...],
    overlap: int,
    keyset_every: float,
) -> None:
    """Sync what webhooks missed: every RECONCILE_INTERVAL_SECONDS until SIGTERM, or --once."""
    from processes.reconcile import DRAIN_FAILED, drain_event_queues, open_sources, run
    from workers.reconcile import ReconcileError, SweepOptions

    settings = settings_of(ctx)
    options = SweepOptions(overlap=timedelta(seconds=overlap), keyset_interval=timedelta(hours=keyset_every))
    declare_topology_or_fail(settings, required=True)
    if not once:
        if connection_id or resources:
            raise click.UsageError("--connection and --resource only go with --once")
        run(settings, options=options, keyset=keyset)
        return
    with open_sources(settings, options=options) as (reconciler, queue):
        # Intacct's event queue first, as the process does (not with --resource: it is not per
        # resource); then the sweep.
        drains = drain_event_queues(reconciler, queue, connection_id) if queue and not resources else []
        try:
            results = reconciler.sweep(keyset=keyset, connection_id=connection_id, resources=resources)
        except ReconcileError as exc:
            raise click.ClickException(str(exc)) from None
    for drain in drains:
        line = (
            f"{drain.connection_id} event queue: {drain.outcome}, {drain.count} event(s), "
            f"published {drain.published}, {drain.duplicates} already delivered"
        )
        click.echo(line + (f", error: {drain.error}" if drain.error else ""))
    for result in results:
        watermark = result.watermark.isoformat().replace("+00:00", "Z") if result.watermark else "-"
        line = (
            f"{result.connection_id} {result.resource}: {result.kind}, checked {result.checked}, "
            f"published {result.updates} updates + {result.deletes} deletes, watermark {watermark}"
        )
        click.echo(line + (f", error: {result.error}" if result.error else ""))
    failed = sum(1 for r in results if r.kind == "failed") + sum(
        1 for d in drains if d.outcome in DRAIN_FAILED
    )
    click.echo(
        f"reconciled {len({r.connection_id for r in results})} connection(s), {len(results)} resource sweep(s): "
        f"published {sum(r.published for r in results)}, failed {failed}"
    )
    if failed:
        sys.exit(1)


@click.command()
@click.option("--metrics-port", type=int, default=None, help="serve /metrics here (default $PORT; 0: none)")
@click.option("--request-timeout", type=float, default=30.0, show_default=True, hidden=True)
@click.option("--slot-timeout", type=float, default=30.0, show_default=True, hidden=True)
@click.option(
    "--threads", type=click.IntRange(1, 64), default=4, show_default=True, help="messages handled at once"
)
@click.pass_context
def writeback(
    ctx: click.Context, metrics_port: int | None, request_timeout: float, slot_timeout: float, threads: int
) -> None:
    """Run the write-back worker: FlexPoint's payments posted into Sage Intacct exactly once."""
    from processes.writeback import Timing, require_settings, run

    settings = settings_of(ctx)
    require_settings(settings)  # before the database and broker are touched
    prepare_database(settings, waiting_as="writeback")
    declare_topology_or_fail(settings, required=True)
    run(settings, timing=Timing(request_timeout, slot_timeout), metrics_port=metrics_port, workers=threads)


@click.command()
@click.option("--threads", type=click.IntRange(1, 64), default=8, show_default=True)
@click.pass_context
def console(ctx: click.Context, threads: int) -> None:
    """Serve the operations console on $PORT: sign in with FLEXSYNC_CONSOLE_TOKEN."""
    settings = settings_of(ctx)
    # A SettingsError here becomes flexsync's one line naming the variable (cli/main.py).
    settings.require("FLEXSYNC_CONSOLE_TOKEN", process="console")
    prepare_database(settings)
    declare_topology_or_fail(settings, required=False)
    from processes.console import run

    run(settings, threads=threads)


PROCESSES = (web, sync, provisioning, reconcile, writeback, console)
