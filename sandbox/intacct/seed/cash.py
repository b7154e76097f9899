"""Cash management: deposits of payments (with detail lines) and other receipts."""

from __future__ import annotations

from . import vocabulary
from .context import AUDIT, SeedContext, money


def deposits(ctx: SeedContext, payments: list[tuple]) -> None:
    """Deposit most complete payments, 5-15 per deposit, per bank account, oldest first."""
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
    detail_keys = iter(ctx.keys("cash-management/deposit-detail", sum(len(g) for _, g in groups)))
    rows, details = [], []
    for account, group in groups:
        key = next(keys)
        day = max(min(p[3] for p in group) - rng.randint(0, 2), 0)
        created, modified = ctx.stamp(day, 1)
        total = sum(p[4] for p in group)
        rows.append(
            (
                ctx.company_id,
                key,
                f"DEP-{key:06d}",
                account,
                ctx.date(day),
                ctx.date(day),
                money(total),
                f"Deposit {ctx.date(day)}",
                group[0][2],
                "deposited",
                created,
                modified,
                "Admin",
                "Admin",
            )
        )
        for payment in group:
            detail_key = next(detail_keys)
            details.append(
                (
                    ctx.company_id,
                    detail_key,
                    str(detail_key),
                    key,
                    payment[0],
                    money(payment[4]),
                    created,
                    modified,
                    "Admin",
                    "Admin",
                )
            )
    names = (
        "id",
        "bankAccount.id",
        "depositDate",
        "txnDate",
        "totalTxnAmount",
        "description",
        "currency.txnCurrency",
        "state",
        *AUDIT,
    )
    ctx.insert("cash-management/deposit", names, rows)
    ctx.insert(
        "cash-management/deposit-detail",
        ("id", "deposit.key", "payment.key", "txnAmount", *AUDIT),
        details,
    )


def other_receipts(ctx: SeedContext, accounts: list[tuple]) -> None:
    """Receipts that are not customer payments (interest, refunds, claims)."""
    rng, options = ctx.rng, ctx.options
    count = options.other_receipts if options.other_receipts is not None else max(2, options.invoices // 50)
    rows = []
    for key in ctx.keys("cash-management/other-receipt", count):
        account, currency = rng.choice(accounts) if accounts else (None, "USD")
        day = rng.randrange(options.days)
        created, modified = ctx.stamp(day, 1)
        payer = rng.choice(vocabulary.PAYERS)
        rows.append(
            (
                ctx.company_id,
                key,
                str(key),
                ctx.date(day),
                payer.split(" - ")[1],
                money(rng.randrange(2_000, 2_000_000)),
                payer,
                account,
                rng.choice(vocabulary.METHODS),
                currency,
                "complete",
                created,
                modified,
                "Admin",
                rng.choice(vocabulary.USERS),
            )
        )
    names = (
        "id",
        "receiptDate",
        "payer",
        "totalTxnAmount",
        "description",
        "bankAccount.id",
        "paymentMethod",
        "currency.txnCurrency",
        "state",
        *AUDIT,
    )
    ctx.insert("cash-management/other-receipt", names, rows)
