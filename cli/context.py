"""What every ``flexsync`` command needs: the settings, the store, the database and the topology.

Command modules (``cli/main.py`` and the ones it mounts) share these instead of each reading the
environment or opening connections its own way.
"""

from __future__ import annotations

import click

from config import Settings, load_settings

# The Procfile's processes (and those to come) log as LOG_LEVEL and LOG_FORMAT say. Every other
# command speaks to a person: its prompts and reports must not drown in JSON log lines.
PROCESS_COMMANDS = frozenset({"web", "sync", "provisioning", "reconcile", "writeback", "console"})
_LEVEL_BY_VERBOSITY = ("WARNING", "INFO", "DEBUG")


def logging_settings(settings: Settings, command: str | None, verbosity: int) -> Settings:
    """The settings logging is configured with: a process's own, or a tool's quieter console ones."""
    if command in PROCESS_COMMANDS:
        return settings
    level = _LEVEL_BY_VERBOSITY[min(max(verbosity, 0), len(_LEVEL_BY_VERBOSITY) - 1)]
    return settings.with_overrides(log_level=level, log_format="console")


def command_name(ctx: click.Context) -> str | None:
    """The top-level command being run (``connections`` for ``flexsync connections list``).

    A command invoked on its own (``provisioning(obj={})``, as tests do) is its own top level.
    """
    while ctx.parent is not None and ctx.parent.parent is not None:
        ctx = ctx.parent
    return ctx.command.name


def settings_of(ctx: click.Context) -> Settings:
    """The validated settings, read once per invocation; logging is configured with them."""
    settings = ctx.obj.get("settings") if ctx.obj else None
    if settings is None:
        settings = load_settings()
        from observability.logging import configure_logging

        verbosity = ctx.find_root().params.get("verbose") or 0
        configure_logging(logging_settings(settings, command_name(ctx), verbosity))
        ctx.ensure_object(dict)["settings"] = settings
    return settings


def open_store(settings: Settings):
    """The connection store, its schema brought up to date first."""
    from store.crypto import SecretBox
    from store.db import create_engine_for, upgrade
    from workers.connections.store import ConnectionStore

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
    from broker.urls import kombu_url

    topology = build_topology(settings.archive_max_age, settings.flexsync_retry_delays)
    try:
        with Connection(kombu_url(settings.amqp_url), connect_timeout=5) as connection:
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
