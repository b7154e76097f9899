"""The ``flexsync`` command: runs the processes and gives operations their tools."""

from __future__ import annotations

import importlib
import sys
import uuid
from typing import Any

import click

from cli.context import declare_topology_or_fail, parts_of, prepare_database, settings_of
from config import SettingsError

# Commands loaded only when invoked: name -> (module, attribute, the line `flexsync --help` shows).
# The sandbox is a distribution of its own (flexsync-sandbox, in sandbox/); only this command may
# import it, and only when invoked. It imports nothing from the service.
LAZY_COMMANDS = {
    "sandbox": (
        "sandbox.cli",
        "sandbox",
        "Run the Sage Intacct and FlexPoint simulators (needs flexsync-sandbox installed).",
    ),
}
SANDBOX_INSTALL_HINT = "pip install -e sandbox/"


class FlexsyncGroup(click.Group):
    """Turns a configuration problem into the one line that names it, not a traceback.

    It also mounts the commands of :data:`LAZY_COMMANDS` on first use.
    """

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except SettingsError as exc:
            click.echo(f"flexsync: {exc}", err=True)
            sys.exit(2)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *LAZY_COMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = super().get_command(ctx, cmd_name)
        if command is None and cmd_name in LAZY_COMMANDS:
            command = _load_lazy(cmd_name)
            self.add_command(command)
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # Written from LAZY_COMMANDS for the lazy ones, so `--help` does not import them.
        names = self.list_commands(ctx)
        limit = formatter.width - 6 - max(map(len, names), default=0)
        rows = []
        for name in names:
            if name in LAZY_COMMANDS and name not in self.commands:
                rows.append((name, LAZY_COMMANDS[name][2]))
                continue
            command = self.get_command(ctx, name)
            if command is not None and not command.hidden:
                rows.append((name, command.get_short_help_str(limit)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


def _load_lazy(name: str) -> click.Command:
    module_name, attribute, _help = LAZY_COMMANDS[name]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        package = module_name.split(".")[0]
        if exc.name and exc.name != package and exc.name.split(".")[0] == package:
            raise  # a module inside the installed sandbox is missing: a packaging bug
        raise click.ClickException(
            f"`flexsync {name}` needs the flexsync-sandbox distribution (module {exc.name!r} is not "
            f"installed); from the repository root, install it with: {SANDBOX_INSTALL_HINT}"
        ) from None
    return getattr(module, attribute)


@click.group(cls=FlexsyncGroup)
@click.option(
    "-v",
    "--verbose",
    count=True,
    help="Tools log at INFO (-v) or DEBUG (-vv), not WARNING; the processes follow LOG_LEVEL.",
)
@click.pass_context
def main(ctx: click.Context, verbose: int) -> None:
    """flexsync: keeps FlexPoint in sync with Sage Intacct."""
    ctx.ensure_object(dict)


@main.command()
@click.pass_context
def topology(ctx: click.Context) -> None:
    """Declare the exchanges, queues and bindings (idempotent)."""
    settings = settings_of(ctx)
    for line in declare_topology_or_fail(settings, required=True):
        click.echo(line)


@main.group()
def db() -> None:
    """The connection store's schema."""


@db.command("upgrade")
@click.pass_context
def db_upgrade(ctx: click.Context) -> None:
    """Apply schema migrations up to the latest (safe to run from several processes)."""
    prepare_database(settings_of(ctx))
    click.echo("database schema is up to date")


@main.command()
def keygen() -> None:
    """Print a new key for FLEXSYNC_SECRET_KEY (prepend it to rotate: new,old)."""
    from store.crypto import generate_key

    click.echo(generate_key())


@main.group()
def connections() -> None:
    """Inspect and manage stored connections."""


@connections.command("list")
@click.pass_context
def connections_list(ctx: click.Context) -> None:
    """List connections with their state and pinned Sage tenant (never their secrets)."""
    store = parts_of(ctx).connections
    rows = store.list()
    if not rows:
        click.echo("no connections")
    for record in rows:
        click.echo(
            f"{record.connection_id}  {record.state:<12}  account={record.account_id}  "
            f"company={record.company_id}  entity={record.entity_id or '-'}  "
            f"tenant={record.tenant_id or '-'}"
        )


@connections.command("secret")
@click.argument("connection_id")
@click.pass_context
def connections_secret(ctx: click.Context, connection_id: str) -> None:
    """Print a connection's webhook signing secret (for an HMAC relay). Never logged."""
    store = parts_of(ctx).connections
    secret = store.webhook_secret(connection_id)
    if secret is None:
        raise click.ClickException(f"no active connection {connection_id} (or it has no secret)")
    click.echo(secret)


@connections.command("create")
@click.option("--connection-id", default=lambda: str(uuid.uuid4()), show_default="a new UUID")
@click.option("--account-id", required=True, help="FlexPoint account id")
@click.option("--company-id", required=True, help="Sage Intacct company id")
@click.option("--user-id", required=True, help="Web Services user id")
@click.option("--entity-id", default=None)
@click.pass_context
def connections_create(
    ctx: click.Context,
    connection_id: str,
    account_id: str,
    company_id: str,
    user_id: str,
    entity_id: str | None,
) -> None:
    """Register a connection by hand (normally FlexPoint's connect message does this)."""
    store = parts_of(ctx).connections
    record = store.save(
        connection_id=connection_id,
        account_id=account_id,
        company_id=company_id,
        entity_id=entity_id,
        user_id=user_id,
        state="connected",
    )
    click.echo(record.connection_id)


@connections.command("rotate-keys")
@click.option("--yes", is_flag=True, help="do not ask for confirmation")
@click.pass_context
def connections_rotate_keys(ctx: click.Context, yes: bool) -> None:
    """Re-encrypt every stored secret under the first FLEXSYNC_SECRET_KEY."""
    store = parts_of(ctx).connections
    if not yes:
        click.confirm("Re-encrypt all stored secrets under the first key?", abort=True)
    click.echo(f"re-encrypted {store.rotate_encryption()} values")


@main.command("send-webhook")
@click.argument("connection_id")
@click.option("--object", "object_name", default="ARINVOICE", show_default=True)
@click.option("--key", "record_key", default="1", show_default=True)
@click.option("--action", default="set", show_default=True, type=click.Choice(["add", "set", "delete"]))
@click.option("--url", default=None, help="receiver base URL [default: http://127.0.0.1:$PORT]")
@click.pass_context
def send_webhook(
    ctx: click.Context, connection_id: str, object_name: str, record_key: str, action: str, url: str | None
) -> None:
    """Send one HMAC-signed webhook to a receiver, as a relay would (for trying things out)."""
    from cli.relay import send_signed_webhook

    settings = settings_of(ctx)
    store = parts_of(ctx).connections
    record = store.get(connection_id)
    secret = store.webhook_secret(connection_id)
    if record is None or secret is None:
        raise click.ClickException(f"no active connection {connection_id}")
    event = {"object": object_name, "action": action, "key": record_key, "companyId": record.company_id}
    response = send_signed_webhook(url or f"http://127.0.0.1:{settings.port}", connection_id, secret, event)
    click.echo(f"{response.status_code} {response.text.strip()}")
    if response.status_code >= 300:
        sys.exit(1)


def _mount_commands() -> None:
    """The Procfile's processes, then the tools each capability provides."""
    from cli.ops import COMMANDS as OPS_COMMANDS
    from cli.processes import PROCESSES
    from workers.backfill.commands import backfill
    from workers.writeback.commands import COMMANDS as WRITEBACK_COMMANDS

    for command in (*PROCESSES, backfill, *OPS_COMMANDS, *WRITEBACK_COMMANDS):
        main.add_command(command)


_mount_commands()

if __name__ == "__main__":
    main()
