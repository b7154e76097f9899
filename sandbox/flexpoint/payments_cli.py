"""``flexsync sandbox flexpoint pay`` and ``postings``: play FlexPoint collecting payments.

``pay --account A --connection C --customer C-1 --amount 100.00 --invoice 17:60.00 --invoice 18
--bank OPERATING`` records the payment in the running FlexPoint simulator, then publishes
``payment.post`` to ``flexpoint.payments`` on ``AMQP_URL`` and waits for the confirm.
``pay --account A --reverse PAYMENT_ID`` publishes ``payment.reverse`` for a recorded payment.
``postings --account A`` shows each payment's last reported posting state.
"""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

import click

from sandbox.flexpoint.admin_client import call_admin, client_options, echo_json
from sandbox.flexpoint.payment_messages import (
    POST_ROUTING_KEY,
    REVERSE_ROUTING_KEY,
    PaymentPublishError,
    post_message,
    publish,
    reverse_message,
)
from sandbox.flexpoint.payments import METHODS

_AMQP = click.option(
    "--amqp-url",
    envvar="AMQP_URL",
    default="amqp://guest:guest@localhost:5672/%2F",
    show_default=True,
    help="the broker the service consumes from (AMQP_URL)",
)


def _amount(text: str, what: str) -> Decimal:
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise click.BadParameter(f"{what}: {text!r} is not an amount") from None
    if value <= 0 or value.as_tuple().exponent < -2:  # type: ignore[operator]
        raise click.BadParameter(f"{what}: {text!r} must be positive with at most 2 decimals")
    return value.quantize(Decimal("0.01"))


def allocations(invoices: tuple[str, ...], amount: str | None) -> tuple[str, list[dict[str, str]]]:
    """``KEY[:AMOUNT]`` options -> (the payment's amount, allocations); one bare KEY takes it all."""
    parsed = [
        (key, _amount(value, f"--invoice {key}") if value else None)
        for key, _, value in (i.partition(":") for i in invoices)
    ]
    total = _amount(amount, "--amount") if amount else None
    bare = [key for key, value in parsed if value is None]
    if bare and (len(parsed) != 1 or total is None):
        raise click.UsageError(
            "give each --invoice an amount (KEY:AMOUNT), unless one invoice takes all of --amount"
        )
    if total is None:
        if not parsed:
            raise click.UsageError("give --amount, or --invoice KEY:AMOUNT to sum")
        total = sum((value for _, value in parsed if value is not None), Decimal(0))
    rows = [
        {"invoiceExternalId": key, "amount": str(value if value is not None else total)}
        for key, value in parsed
    ]
    return str(total), rows


@click.command("pay")
@click.option("--account", required=True, help="FlexPoint account id")
@click.option("--connection", default=None, help="the connection id (required to post)")
@click.option("--customer", default=None, help="the Intacct customer id (required to post)")
@click.option("--amount", default=None, help="the amount collected, e.g. 100.00 (default: the invoices' sum)")
@click.option("--invoice", "invoices", multiple=True, help="KEY[:AMOUNT], an Intacct invoice key; repeatable")
@click.option("--bank", default=None, help="deposit into this checking account id")
@click.option("--undeposited", default=None, help="or hold in this undeposited-funds GL account id")
@click.option("--method", type=click.Choice(METHODS), default="ach", show_default=True)
@click.option("--currency", default="USD", show_default=True)
@click.option("--received-on", default=None, help="YYYY-MM-DD (default today)")
@click.option("--memo", default=None)
@click.option("--payment-id", default=None, help="FlexPoint's payment id (default: a new one)")
@click.option(
    "--reverse", "reverse_id", default=None, help="publish payment.reverse for this payment id instead"
)
@click.option("--reversed-on", default=None, help="YYYY-MM-DD for --reverse (default today)")
@_AMQP
@client_options
def pay_command(
    account: str,
    connection: str | None,
    customer: str | None,
    amount: str | None,
    invoices: tuple[str, ...],
    bank: str | None,
    undeposited: str | None,
    method: str,
    currency: str,
    received_on: str | None,
    memo: str | None,
    payment_id: str | None,
    reverse_id: str | None,
    reversed_on: str | None,
    amqp_url: str,
    url: str,
    token: str,
) -> None:
    """Collect a payment in FlexPoint and ask the service to post it (or reverse one)."""
    if reverse_id:
        stored = call_admin("GET", url, token, f"/sandbox/accounts/{account}/payments/{reverse_id}")
        day = reversed_on or date.today().isoformat()
        call_admin(
            "POST",
            url,
            token,
            f"/sandbox/accounts/{account}/payments/{reverse_id}/reverse",
            json={"reversedOn": day, "memo": memo},
        )
        message = reverse_message(account, stored["payment"]["connectionId"], reverse_id, day, memo)
        _publish(amqp_url, REVERSE_ROUTING_KEY, message)
        return
    if not connection or not customer:
        raise click.UsageError("posting a payment needs --connection and --customer")
    if (bank is None) == (undeposited is None):
        raise click.UsageError("give exactly one of --bank and --undeposited")
    total, rows = allocations(invoices, amount)
    payment: dict[str, Any] = {
        "paymentId": payment_id or f"fp-{uuid.uuid4().hex[:12]}",
        "connectionId": connection,
        "customerId": customer,
        "receivedOn": received_on or datetime.now(UTC).date().isoformat(),
        "amount": total,
        "currency": currency,
        "method": method,
        "allocations": rows,
        "memo": memo,
        **({"depositBankAccountId": bank} if bank else {"undepositedGLAccountId": undeposited}),
    }
    recorded = call_admin("POST", url, token, f"/sandbox/accounts/{account}/payments", json=payment)
    _publish(amqp_url, POST_ROUTING_KEY, post_message(account, recorded["payment"]))


def _publish(amqp_url: str, routing_key: str, message: dict[str, Any]) -> None:
    try:
        publish(amqp_url, routing_key, message)
    except PaymentPublishError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"published {routing_key} for payment {message['paymentId']} (message {message['messageId']})")
    echo_json(message)


@click.command("postings")
@click.option("--account", required=True)
@click.option("--payment", "payment_id", default=None, help="one payment, with every report")
@click.option("--json", "as_json", is_flag=True, help="the admin API's answer as is")
@client_options
def postings_command(account: str, payment_id: str | None, as_json: bool, url: str, token: str) -> None:
    """The payments FlexPoint collected and the last posting state the service reported for each."""
    path = f"/sandbox/accounts/{account}/payments" + (f"/{payment_id}" if payment_id else "")
    answer = call_admin("GET", url, token, path)
    entries = [answer] if payment_id else answer["payments"]
    if as_json:
        echo_json(answer)
        return
    if not entries:
        click.echo(f"no payments collected in account {account}")
    for entry in entries:
        payment, last = entry["payment"], entry["lastPosting"] or {}
        reversal = " reverse requested" if entry["reverseRequested"] else ""
        click.echo(
            f"{payment['paymentId']}: {payment['amount']} {payment['currency']} from {payment['customerId']}"
            f" -> {entry['state'] or 'not reported'}"
            + (f" key {last['intacctKey']}" if last.get("intacctKey") else "")
            + (f" ({last['reason']}: {last['message']})" if last.get("reason") else "")
            + f", {len(entry['reports'])} report(s){reversal}"
        )
