"""``flexsync sandbox intacct payments ...``: the payment write-back's side of the simulator.

``payments list --company ACME [--reference FP-pay-1]`` shows the stored payments (straight from
the simulator's store, so it counts what Intacct holds); ``payments rules --company ACME
[--no-add] [--books-closed-through 2026-10-31 | none]`` sets whether the role may add received
payments and which periods are closed. Commit-then-fail faults are under ``faults``.
"""

from __future__ import annotations

import json
from datetime import date

import click


def _echo(payload: object) -> None:
    click.echo(json.dumps(payload, indent=2))


@click.group()
def payments() -> None:
    """AR payments written through the API (the write-back)."""


@payments.command("list")
@click.option("--company", required=True)
@click.option("--reference", default=None, help="only payments with this referenceNumber")
@click.pass_context
def payments_list(ctx: click.Context, company: str, reference: str | None) -> None:
    """COMPANY's stored payments with their details, all or one reference's."""
    # ctx.obj is the intacct group's admin client.
    _echo(ctx.obj.call("GET", f"/companies/{company}/payments", referenceNumber=reference))


@payments.command("rules")
@click.option("--company", required=True)
@click.option(
    "--add/--no-add",
    "may_add",
    default=None,
    help="whether the role has Accounts Receivable's Add on received payments",
)
@click.option("--books-closed-through", default=None, help="YYYY-MM-DD, or 'none' to open every period")
@click.pass_context
def payments_rules(
    ctx: click.Context, company: str, may_add: bool | None, books_closed_through: str | None
) -> None:
    """Show or change COMPANY's payment rules."""
    settings: dict[str, object] = {}
    if may_add is not None:
        settings["receivedPaymentsAdd"] = may_add
    if books_closed_through is not None:
        if books_closed_through.lower() == "none":
            settings["booksClosedThrough"] = None
        else:
            try:
                settings["booksClosedThrough"] = date.fromisoformat(books_closed_through).isoformat()
            except ValueError:
                raise click.BadParameter(
                    "a date YYYY-MM-DD, or none", param_hint="--books-closed-through"
                ) from None
    answer = (
        ctx.obj.call("PATCH", f"/companies/{company}", settings)
        if settings
        else ctx.obj.call("GET", f"/companies/{company}")
    )
    _echo({k: answer[k] for k in ("companyId", "receivedPaymentsAdd", "booksClosedThrough", "writeFaults")})
