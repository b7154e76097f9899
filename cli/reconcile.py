"""``flexsync reconcile``: the Procfile's ``reconcile`` process, or one sweep with ``--once``."""

from __future__ import annotations

import sys
from datetime import timedelta

import click

from cli.context import declare_topology_or_fail, settings_of


@click.command()
@click.option("--once", is_flag=True, help="Run one sweep, print a summary and exit (1 if any part failed).")
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
    from workers.reconcile import ReconcileError, SweepOptions, open_reconciler, run

    settings = settings_of(ctx)
    options = SweepOptions(overlap=timedelta(seconds=overlap), keyset_interval=timedelta(hours=keyset_every))
    declare_topology_or_fail(settings, required=True)
    if not once:
        if connection_id or resources:
            raise click.UsageError("--connection and --resource only go with --once")
        run(settings, options=options, keyset=keyset)
        return
    with open_reconciler(settings, options=options) as reconciler:
        try:
            results = reconciler.sweep(keyset=keyset, connection_id=connection_id, resources=resources)
        except ReconcileError as exc:
            raise click.ClickException(str(exc)) from None
    for result in results:
        watermark = result.watermark.isoformat().replace("+00:00", "Z") if result.watermark else "-"
        line = (
            f"{result.connection_id} {result.resource}: {result.kind}, checked {result.checked}, "
            f"published {result.updates} updates + {result.deletes} deletes, watermark {watermark}"
        )
        click.echo(line + (f", error: {result.error}" if result.error else ""))
    failed = sum(1 for r in results if r.kind == "failed")
    click.echo(
        f"reconciled {len({r.connection_id for r in results})} connection(s), {len(results)} resource sweep(s): "
        f"published {sum(r.published for r in results)}, failed {failed}"
    )
    if failed:
        sys.exit(1)
