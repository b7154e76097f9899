"""What every ``flexsync`` command needs: the settings, and the shared parts of the invocation.

Command modules (``cli/main.py`` and the commands each capability mounts) take the engine, the
stores and the clients from :func:`parts_of` (``processes.parts``) instead of each reading the
environment or opening connections its own way.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from config import Settings, load_settings

if TYPE_CHECKING:
    from processes.parts import ProcessParts

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


def parts_of(ctx: click.Context) -> ProcessParts:
    """The shared parts of this invocation (``processes.parts``): each opened when a command
    first asks for it, all closed when the command ends."""
    cache = ctx.ensure_object(dict)
    parts = cache.get("parts")
    if parts is None:
        from processes.parts import ProcessParts

        parts = cache["parts"] = ProcessParts(settings_of(ctx), process=command_name(ctx) or "flexsync")
        ctx.find_root().call_on_close(parts.close)
    return parts


def prepare_database(settings: Settings, *, waiting_as: str | None = None) -> None:
    """Apply the migrations (safe from several processes at once).

    ``waiting_as``: a worker process's name; while the database is unreachable it waits for it
    (saying so) instead of failing, and a SIGTERM/SIGINT meanwhile ends the command cleanly.
    """
    from processes.parts import ProcessParts, wait_for_database

    if waiting_as is not None:
        if not wait_for_database(settings, waiting_as):
            raise SystemExit(0)
        return
    with ProcessParts(settings, process="flexsync") as parts:
        parts.engine  # noqa: B018 - made on first use: migrated, then disposed on leaving


def declare_topology_or_fail(settings: Settings, *, required: bool) -> list[str]:
    """Declare the topology; when required a failure stops the command, else it is a warning."""
    from broker.topology import declare_topology
    from processes.parts import ProcessParts

    parts = ProcessParts(settings, process="flexsync")
    topology = parts.topology
    try:
        with parts:
            connection = parts.amqp_connection(consuming=False, connect_timeout=5)
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
