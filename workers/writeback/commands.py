"""``flexsync writeback`` (the Procfile's ``writeback`` process) and ``flexsync payments list|show``."""

from __future__ import annotations

import click

from cli.context import parts_of
from store.models import POSTING_STATES


@click.group()
def payments() -> None:
    """The payments FlexPoint asked to post into Sage Intacct, and how each one went."""


def _postings(ctx: click.Context):
    from workers.writeback.store import PostingStore

    return PostingStore(parts_of(ctx).engine)


@payments.command("list")
@click.option("--connection", "connection_id", default=None, help="only this connection's payments")
@click.option("--state", type=click.Choice(POSTING_STATES), default=None, help="only payments in this state")
@click.option("--limit", type=click.IntRange(1, 10000), default=50, show_default=True)
@click.option("--quiet", "-q", is_flag=True, help="payment ids only, one a line")
@click.pass_context
def payments_list(
    ctx: click.Context, connection_id: str | None, state: str | None, limit: int, quiet: bool
) -> None:
    """The most recently changed postings first."""
    rows = _postings(ctx).list(connection_id=connection_id, state=state, limit=limit)
    if quiet:
        for row in rows:
            click.echo(row.payment_id)
        return
    if not rows:
        click.echo("no payments")
        return
    click.echo(f"{'PAYMENT':<24} {'ACCOUNT':<16} {'STATE':<10} {'REASON':<22} {'TRIES':>5} INTACCT KEY")
    for row in rows:
        click.echo(
            f"{row.payment_id:<24} {row.account_id:<16} {row.state:<10} {row.reason or '-':<22} "
            f"{row.attempts:>5} {row.intacct_key or '-'}"
        )


@payments.command("show")
@click.argument("payment_id")
@click.option("--account", "account_id", default=None, help="the FlexPoint account (when ids repeat)")
@click.pass_context
def payments_show(ctx: click.Context, payment_id: str, account_id: str | None) -> None:
    """Everything known about one payment's posting."""
    store = _postings(ctx)
    rows = [r for r in store.list(limit=10000) if r.payment_id == payment_id]
    rows = [r for r in rows if account_id is None or r.account_id == account_id]
    if not rows:
        raise click.ClickException(f"no posting for payment {payment_id}")
    for row in rows:
        for label, value in (
            ("payment", row.payment_id),
            ("account", row.account_id),
            ("connection", row.connection_id),
            ("state", row.state),
            ("reference", row.reference),
            ("company", row.company_id),
            ("intacct key", row.intacct_key),
            ("attempts", row.attempts),
            ("reason", row.reason),
            ("message", row.message),
            ("last error", row.last_error),
            ("requested at", row.requested_at),
            ("posted at", row.posted_at),
            ("reversed on", row.reversed_on),
            ("reversed at", row.reversed_at),
            ("updated at", row.updated_at),
        ):
            click.echo(f"{label:>13}: {'-' if value is None else value}")
        click.echo("")


COMMANDS = (payments,)
