"""``flexsync console``: the operations console on ``$PORT`` (never the receiver's app or port)."""

from __future__ import annotations

import click

from cli.context import declare_topology_or_fail, prepare_database, settings_of


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
    from console.server import serve

    serve(settings, threads=threads)
