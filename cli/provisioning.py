"""``flexsync provisioning``: the Procfile's ``provisioning`` process."""

from __future__ import annotations

import click

from cli.context import declare_topology_or_fail, prepare_database, settings_of


@click.command()
@click.pass_context
def provisioning(ctx: click.Context) -> None:
    """Run the provisioning worker: connect/disconnect messages and the historical import."""
    from workers.provisioning.service import require_settings, run

    settings = settings_of(ctx)
    require_settings(settings)  # before the database and broker are touched
    prepare_database(settings)
    declare_topology_or_fail(settings, required=True)
    run(settings)
