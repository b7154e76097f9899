"""Receivables: customers, invoices with lines in every state, payments applied to them, adjustments."""

from __future__ import annotations

from . import vocabulary
from .context import AUDIT, Invoice, SeedContext, money


def customers(ctx: SeedContext, currencies: set[str]) -> list[tuple]:
    """Create customers; returns (id, currency, term id, term days) for every customer of the company."""
    rng, path, rows = ctx.rng, "accounts-receivable/customer", []
    foreign = sorted(currencies - {"USD"})
    for key in ctx.keys(path, ctx.options.customers):
        word, trade = rng.choice(vocabulary.COMPANY_WORDS), rng.choice(vocabulary.TRADES)
        city, state, post = rng.choice(vocabulary.CITIES)
        draw = rng.random()
        status = "active" if draw < 0.85 else "activeNonPosting" if draw < 0.9 else "inactive"
        currency = rng.choice(foreign) if foreign and rng.random() < 0.1 else "USD"
        created, modified = ctx.stamp(rng.randrange(ctx.options.days, ctx.options.days + 100), 200)
        rows.append(
            (
                ctx.company_id,
                key,
                f"C-{key:06d}",
                f"{word} {trade} {rng.choice(vocabulary.SUFFIXES)}",
                status,
                money(rng.randrange(5, 200) * 1_000_00),
                f"ap@{word.lower()}{trade.lower()}.example.com",
                f"+1-555-{rng.randrange(100, 999)}-{rng.randrange(1000, 9999)}",
                f"{rng.randrange(1, 9999)} {rng.choice(vocabulary.STREETS)}",
                city,
                state,
                post,
                "US",
                currency,
                rng.choice(vocabulary.TERMS)[0],
                created,
                modified,
                "Admin",
                rng.choice(vocabulary.USERS),
            )
        )
    names = (
        "id",
        "name",
        "status",
        "creditLimit",
        "contacts.default.email1",
        "contacts.default.phone1",
        "contacts.default.mailingAddress.addressLine1",
        "contacts.default.mailingAddress.city",
        "contacts.default.mailingAddress.state",
        "contacts.default.mailingAddress.postCode",
        "contacts.default.mailingAddress.country",
        "currency",
        "term.id",
        *AUDIT,
    )
    ctx.insert(path, names, rows)
    terms = dict(vocabulary.TERMS)
    return [
        (cid, currency, term, terms.get(term, 30))
        for cid, currency, term in ctx.existing(path, "id", "currency", "term.id")
    ]


def invoices(ctx: SeedContext, customers: list[tuple], locations: list[str]) -> list[Invoice]:
    """Create invoice lines and return the invoices (written later: payments modify them)."""
    rng, options, company = ctx.rng, ctx.options, ctx.company_id
    count = options.invoices
    if count and not customers:
        raise ValueError("invoices need customers: seed some customers too")
    keys = ctx.keys("accounts-receivable/invoice", count)
    states = list(
        vocabulary.INVOICE_STATES[: min(count, len(vocabulary.INVOICE_STATES))]
    )  # every state at least once
    states += rng.choices(vocabulary.INVOICE_STATES, vocabulary.STATE_WEIGHTS, k=count - len(states))
    per_invoice = options.lines_per_invoice
    line_counts = [per_invoice or rng.randint(1, 5) for _ in range(count)]
    line_keys = iter(ctx.keys("accounts-receivable/invoice-line", sum(line_counts)))
    randrange, choice, where = rng.randrange, rng.choice, locations or [None]
    invoices, line_rows = [], []
    for key, state, lines in zip(keys, states, line_counts, strict=True):
        customer_id, currency, term, term_days = choice(customers)
        day = randrange(options.days)
        created, modified = ctx.stamp(day, 3)
        location = choice(where)
        total = 0
        for number in range(1, lines + 1):
            cents = randrange(5_000, 500_000)
            total += cents
            line_key = next(line_keys)
            line_rows.append(
                (
                    company,
                    line_key,
                    str(line_key),
                    key,
                    number,
                    money(cents),
                    choice(vocabulary.REVENUE_ACCOUNTS),
                    choice(vocabulary.LINE_TEXT),
                    location,
                    created,
                    modified,
                    "Admin",
                    "Admin",
                )
            )
        paid = (
            total if state == "paid" else total * randrange(20, 80) // 100 if state == "partiallyPaid" else 0
        )
        invoices.append(
            Invoice(
                key=key,
                customer_id=customer_id,
                currency=currency,
                day=day,
                state=state,
                total=total,
                paid=paid,
                created=created,
                modified=modified,
                term=term,
                term_days=term_days,
                location=location,
            )
        )
    ctx.insert(
        "accounts-receivable/invoice-line",
        (
            "id",
            "invoice.key",
            "lineNumber",
            "txnAmount",
            "glAccount.id",
            "memo",
            "dimensions.location.id",
            *AUDIT,
        ),
        line_rows,
    )
    return invoices


def write_invoices(ctx: SeedContext, invoices: list[Invoice]) -> None:
    """Insert the invoices, now that payments have set their amounts and modification times."""
    rng, rows = ctx.rng, []
    for inv in invoices:
        due = 0 if inv.state == "reversed" else inv.total - inv.paid
        rows.append(
            (
                ctx.company_id,
                inv.key,
                f"INV-{inv.key:06d}",
                f"INV-{inv.key:06d}",
                inv.customer_id,
                ctx.date(inv.day),
                ctx.date(inv.day - inv.term_days),
                inv.state,
                inv.currency,
                money(inv.total),
                money(due),
                money(inv.paid),
                f"PO-{rng.randrange(10000, 99999)}",
                rng.choice(vocabulary.INVOICE_TEXT),
                inv.term,
                inv.created,
                inv.modified,
                "Admin",
                rng.choice(vocabulary.USERS),
            )
        )
    names = (
        "id",
        "invoiceNumber",
        "customer.id",
        "invoiceDate",
        "dueDate",
        "state",
        "currency.txnCurrency",
        "totalTxnAmount",
        "totalTxnAmountDue",
        "totalTxnAmountPaid",
        "referenceNumber",
        "description",
        "term.id",
        *AUDIT,
    )
    ctx.insert("accounts-receivable/invoice", names, rows)


def payments(ctx: SeedContext, invoices: list[Invoice], accounts: list[tuple]) -> list[tuple]:
    """Payments paying exactly the paid and partially paid invoices (1-3 invoices each), plus a
    few voided and draft ones; returns (key, account, currency, day, cents) of complete payments."""
    rng = ctx.rng
    by_customer: dict[str, list[Invoice]] = {}
    for inv in invoices:
        if inv.paid:
            by_customer.setdefault(inv.customer_id, []).append(inv)
    groups: list[tuple[str, list[Invoice]]] = []
    for customer_id, owed in by_customer.items():
        index = 0
        while index < len(owed):
            size = rng.randint(1, 3)
            groups.append((customer_id, owed[index : index + size]))
            index += size
    open_invoices = [inv for inv in invoices if inv.state == "posted"]
    extra = [("voided", inv) for inv in open_invoices[: max(1, len(groups) // 50)]]
    extra += [("draft", inv) for inv in open_invoices[len(extra) : len(extra) + max(1, len(groups) // 100)]]
    keys = iter(ctx.keys("accounts-receivable/payment", len(groups) + len(extra)))
    detail_count = sum(len(g) for _, g in groups) + len(extra)
    detail_keys = iter(ctx.keys("accounts-receivable/payment-detail", detail_count))
    account_ids = list(accounts) or [(None, "USD")]
    rows, details, complete = [], [], []

    def add(customer_id: str, applied: list[tuple[Invoice, int]], state: str) -> None:
        key = next(keys)
        earliest = min(inv.day for inv, _ in applied)  # days back: the smallest is the latest invoice
        day = earliest - rng.randint(0, min(40, earliest))
        created, modified = ctx.stamp(day, 2)
        method = rng.choice(vocabulary.METHODS)
        currency = applied[0][0].currency
        account = next((a for a, c in account_ids if c == currency), account_ids[0][0])
        cents = sum(amount for _, amount in applied)
        document = f"CHK-{rng.randrange(1000, 99999)}" if method == "printedCheck" else f"REF-{key:07d}"
        rows.append(
            (
                ctx.company_id,
                key,
                str(key),
                customer_id,
                method,
                ctx.date(day),
                money(cents),
                state,
                account,
                document,
                currency,
                f"Payment from {customer_id}",
                created,
                modified,
                "Admin",
                rng.choice(vocabulary.USERS),
            )
        )
        for inv, amount in applied:
            detail_key = next(detail_keys)
            details.append(
                (
                    ctx.company_id,
                    detail_key,
                    str(detail_key),
                    key,
                    inv.key,
                    money(amount),
                    created,
                    modified,
                    "Admin",
                    "Admin",
                )
            )
            if state == "complete":
                # Applying the payment modified the invoice.
                inv.modified = max(inv.modified, modified)
        if state == "complete":
            complete.append((key, account, currency, day, cents))

    for customer_id, group in groups:
        add(customer_id, [(inv, inv.paid) for inv in group], "complete")
    for state, inv in extra:
        add(inv.customer_id, [(inv, inv.total)], state)
    names = (
        "id",
        "customer.id",
        "paymentMethod",
        "receiptDate",
        "totalTxnAmount",
        "state",
        "financialEntity.entityId",
        "documentNumber",
        "currency.txnCurrency",
        "description",
        *AUDIT,
    )
    ctx.insert("accounts-receivable/payment", names, rows)
    ctx.insert(
        "accounts-receivable/payment-detail",
        ("id", "payment.key", "invoice.key", "txnAmount", *AUDIT),
        details,
    )
    return complete


def adjustments(ctx: SeedContext, customers: list[tuple]) -> None:
    """Credit and debit adjustments (discounts, fees, corrections) on random customers."""
    rng, options = ctx.rng, ctx.options
    count = options.adjustments if options.adjustments is not None else options.invoices // 20
    if not customers:
        count = 0
    rows = []
    for key in ctx.keys("accounts-receivable/adjustment", count):
        customer_id, currency, _, _ = rng.choice(customers)
        text, sign = rng.choice(vocabulary.ADJUSTMENT_TEXT)
        day = rng.randrange(options.days)
        created, modified = ctx.stamp(day, 2)
        rows.append(
            (
                ctx.company_id,
                key,
                f"ADJ-{key:06d}",
                customer_id,
                ctx.date(day),
                money(sign * rng.randrange(1_000, 50_000)),
                text,
                currency,
                "posted",
                created,
                modified,
                "Admin",
                rng.choice(vocabulary.USERS),
            )
        )
    names = (
        "id",
        "customer.id",
        "adjustmentDate",
        "totalTxnAmount",
        "description",
        "currency.txnCurrency",
        "state",
        *AUDIT,
    )
    ctx.insert("accounts-receivable/adjustment", names, rows)
