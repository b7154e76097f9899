"""Cash management: deposits of payments (with their details) and other receipts (with lines)."""

# The row builders below are closures called at once inside their loop iteration, so binding
# the loop variables late is what they want.
# ruff: noqa: B023

from __future__ import annotations

from . import vocabulary
from .context import AUDIT, SeedContext, money

# An AR payment's method as a deposit detail names it (the deposit-detail enum is its own).
_DEPOSIT_METHODS = {
    "printedCheck": "check",
    "creditCard": "chargeCard",
    "onlineChargeCard": "onlineChargeCard",
    "cash": "cash",
    "eft": "recordTransfer",
    "onlineAchDebit": "recordTransfer",
}


def deposits(ctx: SeedContext, payments: list[tuple]) -> None:
    """Deposit most counted payments, 5-15 per deposit, per bank account, oldest first; a few
    deposits are ``void`` and one awaits approval (``approve``): the published states.

    A deposit detail's key is the deposited payment's key (intacct-rest.md's convention)."""
    rng = ctx.rng
    by_account: dict[str, list[tuple]] = {}
    for payment in sorted(payments, key=lambda p: (-p[3], p[0])):
        if payment[1] is not None:
            by_account.setdefault(payment[1], []).append(payment)
    groups = []
    for account, queue in by_account.items():
        keep = len(queue) - len(queue) // 20  # the newest 5% wait in undeposited funds
        index = 0
        while index < keep:
            size = rng.randint(5, 15)
            groups.append((account, queue[index : min(index + size, keep)]))
            index += size
    keys = iter(ctx.keys("cash-management/deposit", len(groups)))
    ctx.counts["cash-management/deposit-detail"] = sum(len(g) for _, g in groups)
    rows, details = [], []
    for number, (account, group) in enumerate(groups):
        key = next(keys)
        day = max(min(p[3] for p in group) - rng.randint(0, 2), 0)
        created, modified = ctx.stamp(day, 1)
        total = sum(p[4] for p in group)
        state = "void" if number % 25 == 1 else "approve" if number == 2 else None
        rows.append(
            (
                ctx.company_id,
                key,
                f"DEP-{key:06d}",
                f"SLIP-{key:06d}",
                account,
                ctx.date(day),
                ctx.date(day),
                money(total),
                f"Deposit {ctx.date(day)}",
                group[0][2],
                state,
                "uncleared",
                created,
                modified,
                "Admin",
                "Admin",
            )
        )
        for payment in group:
            details.append(
                (
                    ctx.company_id,
                    payment[0],
                    str(payment[0]),
                    key,
                    payment[5],
                    money(payment[4]),
                    payment[2],
                    _DEPOSIT_METHODS.get(payment[6]),
                    payment[7],
                    "undeposited" if state == "void" else "deposited",
                    "active",
                    created,
                    modified,
                    "Admin",
                    "Admin",
                )
            )
    names = (
        "id",
        "depositId",
        "bankAccount.id",
        "txnDate",
        "postingDate",
        "txnTotalEntered",
        "description",
        "txnCurrency",
        "state",
        "reconciliationState",
        *AUDIT,
    )
    ctx.insert("cash-management/deposit", names, rows)
    ctx.insert(
        "cash-management/deposit-detail",
        (
            "id",
            "deposit.key",
            "customer.id",
            "txnTotalEntered",
            "currency",
            "paymentMethod",
            "documentNumber",
            "state",
            "status",
            *AUDIT,
        ),
        details,
    )


def other_receipts(ctx: SeedContext, accounts: list[tuple]) -> None:
    """Receipts that are not customer payments (interest, refunds, claims), one line each; every
    published state: approved, deposited, reconciled, reversed (each with its ``reversal`` record)."""
    rng, options = ctx.rng, ctx.options
    count = options.other_receipts if options.other_receipts is not None else max(2, options.invoices // 50)
    states = ["approved", "reversed", "deposited", "reconciled"][:count]
    states += rng.choices(
        ("approved", "deposited", "reconciled", "reversed"), (60, 20, 15, 5), k=count - len(states)
    )
    total_rows = count + states.count("reversed")
    keys = iter(ctx.keys("cash-management/other-receipt", total_rows))
    line_keys = iter(ctx.keys("cash-management/other-receipt-line", total_rows))
    rows, lines = [], []
    for state in states:
        account, currency = rng.choice(accounts) if accounts else (None, "USD")
        day = rng.randrange(options.days)
        created, modified = ctx.stamp(day, 1)
        payer = rng.choice(vocabulary.PAYERS)
        cents = rng.randrange(2_000, 2_000_000)
        method = rng.choice(vocabulary.RECEIPT_METHODS)
        gl = rng.choice(vocabulary.REVENUE_ACCOUNTS)

        def add(row_state: str, amount: int, on_day: int) -> int:
            key = next(keys)
            rows.append(
                (
                    ctx.company_id,
                    key,
                    str(key),
                    ctx.date(on_day),
                    ctx.date(on_day),
                    ctx.date(on_day),
                    payer.split(" - ")[1],
                    money(amount),
                    payer,
                    account,
                    method,
                    currency,
                    row_state,
                    "cleared" if row_state == "reconciled" else "uncleared",
                    created,
                    modified,
                    "Admin",
                    rng.choice(vocabulary.USERS),
                )
            )
            line_key = next(line_keys)
            lines.append(
                (
                    ctx.company_id,
                    line_key,
                    str(line_key),
                    key,
                    1,
                    money(amount),
                    gl,
                    payer,
                    "active",
                    created,
                    modified,
                    "Admin",
                    "Admin",
                )
            )
            return key

        original = add(state, cents, day)
        if state == "reversed":
            reversal_day = max(day - rng.randint(1, 5), 0)
            mirror = add("reversal", -cents, reversal_day)
            ctx.links.append(("cash-management/other-receipt", original, mirror, ctx.date(reversal_day)))
    names = (
        "id",
        "txnDate",
        "txnPaidDate",
        "depositDate",
        "payer",
        "txnTotalEntered",
        "description",
        "bankAccount.id",
        "paymentMethod",
        "txnCurrency",
        "state",
        "reconciliationState",
        *AUDIT,
    )
    ctx.insert("cash-management/other-receipt", names, rows)
    ctx.insert(
        "cash-management/other-receipt-line",
        (
            "id",
            "otherReceipts.key",
            "lineNumber",
            "txnAmount",
            "glAccount.id",
            "description",
            "status",
            *AUDIT,
        ),
        lines,
    )
    for path, original, mirror, day in ctx.links:
        if path == "cash-management/other-receipt":
            ctx.conn.execute(
                "UPDATE o_cash_management__other_receipt SET voidPaymentKey = ?, reversedDate = ? "
                "WHERE company_id = ? AND key = ?",
                (str(mirror), day, ctx.company_id, original),
            )
            ctx.conn.execute(
                "UPDATE o_cash_management__other_receipt SET reversedVoidPaymentKey = ?, reversalDate = ? "
                "WHERE company_id = ? AND key = ?",
                (str(original), day, ctx.company_id, mirror),
            )
