"""Operations commands: status, connect and disconnect, plus the list of every ops command.

Plain click objects, mounted into ``flexsync`` by cli/main.py through ``COMMANDS``, which also
carries the dead-letter commands of workers/deadletters/commands.py. The work is done in ``ops/``; this module
only reads options, asks for confirmation and prints.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import click

from broker.topology import DEAD_LETTER_QUEUE_NAME
from cli.context import parts_of, settings_of
from cli.opsoptions import ops_errors
from processes.status import connection_status, dead_counts, queue_status
from reliability.errors import OpsError
from store.breakers import BreakerState, BreakerStore
from workers.connections.messages import CONNECT_ROUTING_KEY, DISCONNECT_ROUTING_KEY
from workers.connections.requests import connect_message, disconnect_message, publish_message
from workers.deadletters.commands import dead, dead_letter_store, purge, replay

# -- connection messages -------------------------------------------------------------------


@click.command()
@click.option("--account-id", required=True, help="FlexPoint account id")
@click.option("--company-id", required=True, help="Sage Intacct company id")
@click.option("--user-id", required=True, help="the Web Services user id")
@click.option("--entity-id", default=None, help="an entity of the company (default: top level)")
@click.option("--connection-id", default=None, help="default: a new UUID")
@click.option("--password-prompt", is_flag=True, help="ask for the user's password (hidden) and send it")
@click.pass_context
@ops_errors
def connect(
    ctx: click.Context,
    account_id: str,
    company_id: str,
    user_id: str,
    entity_id: str | None,
    connection_id: str | None,
    password_prompt: bool,
) -> None:
    """Publish a connect message to flexpoint.connections, as FlexPoint does (confirmed)."""
    settings = settings_of(ctx)
    password = click.prompt("userPassword", hide_input=True) if password_prompt else None
    message = connect_message(
        account_id=account_id,
        company_id=company_id,
        user_id=user_id,
        entity_id=entity_id,
        connection_id=connection_id,
        user_password=password,
    )
    publish_message(settings.amqp_url, CONNECT_ROUTING_KEY, message)
    click.echo(
        f"published {CONNECT_ROUTING_KEY}: connection {message['connectionId']} "
        f"(messageId {message['messageId']})"
    )


@click.command()
@click.argument("connection_id")
@click.option("--account-id", default=None, help="default: the account stored for the connection")
@click.option("--reason", default="requested by operations", show_default=True)
@click.option("--yes", is_flag=True, help="do not ask for confirmation")
@click.pass_context
@ops_errors
def disconnect(
    ctx: click.Context, connection_id: str, account_id: str | None, reason: str, yes: bool
) -> None:
    """Publish a disconnect message: the connection stops syncing and its secrets are deleted."""
    settings = settings_of(ctx)
    what = f"connection {connection_id}"
    if account_id is None:
        record = parts_of(ctx).connections.get(connection_id)
        if record is None:
            raise OpsError(
                f"no connection {connection_id} in the store (DATABASE_URL); check the id with "
                "`flexsync connections list`, or give --account-id"
            )
        account_id = record.account_id
        what += f" (account {record.account_id}, company {record.company_id}, {record.state})"
    if not yes:
        click.confirm(f"Disconnect {what}? It stops syncing and deletes its secrets", abort=True)
    message = disconnect_message(account_id=account_id, connection_id=connection_id, reason=reason)
    publish_message(settings.amqp_url, DISCONNECT_ROUTING_KEY, message)
    click.echo(
        f"published {DISCONNECT_ROUTING_KEY}: connection {connection_id} (messageId {message['messageId']})"
    )


# -- status --------------------------------------------------------------------------------


def _age(delta: timedelta | None) -> str:
    if delta is None:
        return "-"
    seconds = int(delta.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f}{unit}"
    return f"{seconds}s"


@click.command()
@click.option(
    "--interval",
    type=click.FloatRange(min=0),
    default=2.0,
    show_default=True,
    help="seconds between the two depth samples the rate is computed from (0: no rate)",
)
@click.option(
    "--dead/--no-dead",
    "with_dead",
    default=True,
    show_default=True,
    help="count dead letters: stored ones by reason and resource, and those not yet stored",
)
@click.pass_context
@ops_errors
def status(ctx: click.Context, interval: float, with_dead: bool) -> None:
    """Queues (depth, consumers, rate), dead letters by reason and resource, connections.

    \b
    rate       net change of a queue's depth per second over --interval (positive: it grows);
               the management plugin is not needed.
    last event the newest webhook delivery accepted for the connection.
    backfill   the historical import's state (pending, running, completed, failed, cancelled)
               and how many records it has read so far.
    dead       letters stored in the database, by reason and resource, plus those still in the
               dead-letter queue (the broker's count; the storing consumer of the
               provisioning process takes them into the database).
    lag        how far FlexPoint may be behind Intacct: now minus the connection's oldest
               reconciliation watermark (every change before it is synced, dead letters
               aside); "-" until the first reconciliation sweep.
    queue      Intacct's event queue door: "on", "off" (INTACCT_EVENT_QUEUE=off), or
               "unavailable" when the company's queue service answered 404 (not asked again
               until the connection's next connect).
    """
    settings = settings_of(ctx)
    parts = parts_of(ctx)
    queues = queue_status(settings.amqp_url, parts.topology, interval=interval)
    click.echo(f"queues{f' (rate over {interval:g} s)' if interval else ''}:")
    for queue in queues:
        rate = "-" if queue.rate is None else f"{queue.rate:+.1f}/s"
        depth = "-" if queue.kind == "stream" else str(queue.depth)
        click.echo(
            f"  {queue.name:<28} {queue.kind:<7} depth {depth:>7}  consumers {queue.consumers:>3}  {rate}"
        )
    if with_dead:
        [queue] = [q for q in queues if q.name == DEAD_LETTER_QUEUE_NAME]
        # The table, and the broker's count of what waits in dead-letter: nothing is consumed.
        counts = dead_counts(dead_letter_store(ctx), queue.depth)
        waiting = f" ({counts.not_stored} not yet stored" if counts.not_stored else ""
        if waiting:
            waiting += (
                ", being stored)"
                if queue.consumers
                else "; nothing stores them now: is the provisioning process running?)"
            )
        click.echo(f"dead letters: {counts.total}{waiting}")
        for title, counter in (("by reason", counts.by_reason), ("by resource", counts.by_resource)):
            if counter:
                click.echo(f"  {title}: " + ", ".join(f"{name} {n}" for name, n in counter.most_common()))
    connections = connection_status(parts.engine)
    breakers = BreakerStore(parts.engine).all()
    now = datetime.now(UTC)
    _echo_breakers(breakers, now.timestamp())
    click.echo(f"connections: {len(connections)}")
    for row in connections:
        last = row.last_event.strftime("%Y-%m-%dT%H:%M:%SZ") if row.last_event else "never"
        click.echo(
            f"  {row.connection_id}  {row.state:<12} account={row.account_id} company={row.company_id}  "
            f"last event {last}  lag {_age(row.lag(now))}  backfill {row.backfill}  "
            f"queue {row.event_queue if settings.event_queue_on else 'off'}"
        )


def _echo_breakers(breakers: list[BreakerState], now: float) -> None:
    """Each peer that ever failed: open (not called until its next probe) or closed again."""
    open_ones = [b for b in breakers if b.open]
    click.echo(f"breakers: {len(open_ones)} open" + (f" of {len(breakers)} known" if breakers else ""))
    for b in breakers:
        if b.open:
            probe = max(0.0, (b.probe_at or now) - now)
            since = _age(timedelta(seconds=max(0.0, now - (b.opened_at or now))))
            click.echo(
                f"  {b.peer:<40} open for {since}, next probe in {probe:.0f} s, "
                f"{b.probes} probes, last {b.last_reason or '-'}"
            )
        elif b.failures:
            click.echo(f"  {b.peer:<40} closed, {b.failures} failures in a row, last {b.last_reason or '-'}")


COMMANDS = (status, dead, replay, purge, connect, disconnect)
