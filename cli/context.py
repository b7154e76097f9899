"""What every ``flexsync`` command needs: the settings, the store, the database and the topology.

Command modules (``cli/main.py`` and the ones it mounts) share these instead of each reading the
environment or opening connections its own way.
"""

from __future__ import annotations

import click

from config import Settings, load_settings


def settings_of(ctx: click.Context) -> Settings:
    """The validated settings, read once per invocation; logging is configured with them."""
    settings = ctx.obj.get("settings") if ctx.obj else None
    if settings is None:
        settings = load_settings()
        from observability.logging import configure_logging

        configure_logging(settings)
        ctx.ensure_object(dict)["settings"] = settings
    return settings


def open_store(settings: Settings):
    """The connection store, its schema brought up to date first."""
    from store.connections import ConnectionStore
    from store.crypto import SecretBox
    from store.db import create_engine_for, upgrade

    engine = create_engine_for(settings.database_url)
    upgrade(engine)
    return ConnectionStore(engine, SecretBox.for_settings(settings))


def prepare_database(settings: Settings) -> None:
    """Apply the migrations (safe from several processes at once)."""
    from store.db import create_engine_for, upgrade

    engine = create_engine_for(settings.database_url)
    try:
        upgrade(engine)
    finally:
        engine.dispose()


def declare_topology_or_fail(settings: Settings, *, required: bool) -> list[str]:
    """Declare the topology; when required a failure stops the command, else it is a warning."""
    from kombu import Connection

    from broker.topology import build_topology, declare_topology

    topology = build_topology(settings.archive_max_age)
    try:
        with Connection(settings.amqp_url, connect_timeout=5) as connection:
            connection.ensure_connection(max_retries=2)
            declare_topology(connection, topology)
    except Exception as exc:
        if required:
            raise click.ClickException(f"could not declare the topology: {exc}") from None
        click.echo(
            f"flexsync: warning: topology not declared now ({exc}); the receiver answers 503 "
            "until RabbitMQ is reachable",
            err=True,
        )
        return []
    return list(topology.describe())
