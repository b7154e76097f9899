"""Receivables: customers, invoices with lines in every state, payments applied to them, adjustments."""

# The row builders below are closures called at once inside their loop iteration, so binding
# the loop variables late is what they want.
# ruff: noqa: B023

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
            cents = 0 if state == "noValue" else randrange(5_000, 500_000)
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
    reversed_ = [inv for inv in invoices if inv.state == "reversed"]
    mirrors = iter(ctx.keys("accounts-receivable/invoice", len(reversed_)))

    def row(key: int, inv: Invoice, state: str, total: int, due: int, reference: str) -> tuple:
        selected = money(due) if state == "selected" else "0.00"
        return (
            ctx.company_id,
            key,
            f"INV-{key:06d}",
            f"INV-{key:06d}",
            inv.customer_id,
            ctx.date(inv.day),
            ctx.date(inv.day - inv.term_days),
            state,
            inv.currency,
            money(total),
            money(due),
            money(inv.paid if state != "reversal" else 0),
            selected,
            reference,
            rng.choice(vocabulary.INVOICE_TEXT),
            inv.term,
            inv.location,
            inv.created,
            inv.modified,
            "Admin",
            rng.choice(vocabulary.USERS),
        )

    for inv in invoices:
        due = 0 if inv.state == "reversed" else inv.total - inv.paid
        reference = f"PO-{rng.randrange(10000, 99999)}"
        rows.append(row(inv.key, inv, inv.state, inv.total, due, reference))
        if inv.state == "reversed":  # the mirror record the reversal created
            rows.append(row(next(mirrors), inv, "reversal", -inv.total, 0, reference))
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
        "paymentInformation.totalTxnAmountPaid",
        "paymentInformation.totalTxnAmountSelectedForPayment",
        "referenceNumber",
        "description",
        "term.id",
        "entity.id",
        *AUDIT,
    )
    ctx.insert("accounts-receivable/invoice", names, rows)


def payments(ctx: SeedContext, invoices: list[Invoice], accounts: list[tuple]) -> list[tuple]:
    """Payments paying exactly the paid and partially paid invoices (1-3 invoices each; older ones
    reconciled with the bank), plus a few reversed (each with its ``reversal`` record) and draft
    ones; returns (key, account, currency, day, cents, customer, method, document) of the payments
    that count (complete and reconciled)."""
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
    extra = [("reversed", inv) for inv in open_invoices[: max(1, len(groups) // 50)]]
    extra += [("draft", inv) for inv in open_invoices[len(extra) : len(extra) + max(1, len(groups) // 100)]]
    reversals = sum(1 for state, _ in extra if state == "reversed")
    keys = iter(ctx.keys("accounts-receivable/payment", len(groups) + len(extra) + reversals))
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
        if state == "complete" and day > 30 and rng.random() < 0.4:
            state = "reconciled"  # cleared in a bank reconciliation
        reconciled = ctx.date(max(day - 20, 0)) if state == "reconciled" else None

        def payment_row(row_key: int, row_state: str, amount: int, on_day: int) -> tuple:
            return (
                ctx.company_id,
                row_key,
                str(row_key),
                customer_id,
                method,
                ctx.date(on_day),
                money(amount),
                money(amount) if row_state != "draft" else "0.00",
                row_state,
                "cleared" if row_state == "reconciled" else "uncleared",
                reconciled if row_state == "reconciled" else None,
                account,
                "ba" if account else None,
                document,
                f"RCPT-{key:07d}",
                currency,
                f"Payment from {customer_id}",
                created,
                modified,
                "Admin",
                rng.choice(vocabulary.USERS),
            )

        rows.append(payment_row(key, state, cents, day))
        if state == "reversed":  # the reversal record, a few days later, reference copied
            rows.append(payment_row(next(keys), "reversal", -cents, max(day - rng.randint(1, 5), 0)))
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
                    currency,
                    ctx.date(day),
                    created,
                    modified,
                    "Admin",
                    "Admin",
                )
            )
            if state in ("complete", "reconciled"):
                # Applying the payment modified the invoice.
                inv.modified = max(inv.modified, modified)
        if state in ("complete", "reconciled"):
            complete.append((key, account, currency, day, cents, customer_id, method, document))

    for customer_id, group in groups:
        add(customer_id, [(inv, inv.paid) for inv in group], "complete")
    for state, inv in extra:
        add(inv.customer_id, [(inv, inv.total)], state)
    names = (
        "id",
        "customer.id",
        "paymentMethod",
        "paymentSummary.receiptDate",
        "txnCurrency.totalAmount",
        "txnCurrency.totalPaid",
        "state",
        "bankReconciliationStatus",
        "bankReconciliationDate",
        "financialEntity.entityId",
        "financialEntity.entityType",
        "documentNumber",
        "referenceNumber",
        "txnCurrency.currency",
        "description",
        *AUDIT,
    )
    ctx.insert("accounts-receivable/payment", names, rows)
    ctx.insert(
        "accounts-receivable/payment-detail",
        (
            "id",
            "arPayment.key",
            "arInvoice.key",
            "txnCurrency.paymentAmount",
            "txnCurrency.currency",
            "paymentDate",
            *AUDIT,
        ),
        details,
    )
    return complete


def adjustments(ctx: SeedContext, customers: list[tuple]) -> None:
    """Credit and debit adjustments (discounts, fees, corrections) on random customers, one line
    each; mostly posted, a few drafts and reversed ones (each with its ``reversal`` record)."""
    rng, options = ctx.rng, ctx.options
    count = options.adjustments if options.adjustments is not None else options.invoices // 20
    if not customers:
        count = 0
    states = ["posted", "draft", "reversed"][:count]
    states += rng.choices(("posted", "draft", "reversed"), (90, 4, 6), k=count - len(states))
    reversals = states.count("reversed")
    keys = iter(ctx.keys("accounts-receivable/adjustment", count + reversals))
    line_keys = iter(ctx.keys("accounts-receivable/adjustment-line", count + reversals))
    rows, lines = [], []
    for state in states:
        customer_id, currency, _, _ = rng.choice(customers)
        text, sign = rng.choice(vocabulary.ADJUSTMENT_TEXT)
        day = rng.randrange(options.days)
        created, modified = ctx.stamp(day, 2)
        cents = sign * rng.randrange(1_000, 50_000)
        account = rng.choice(vocabulary.REVENUE_ACCOUNTS)

        def add(row_state: str, amount: int, on_day: int) -> None:
            key = next(keys)
            rows.append(
                (
                    ctx.company_id,
                    key,
                    f"ADJ-{key:06d}",
                    f"ADJ-{key:06d}",
                    customer_id,
                    ctx.date(on_day),
                    ctx.date(on_day),
                    money(amount),
                    text,
                    currency,
                    row_state,
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
                    "1",
                    money(amount),
                    currency,
                    account,
                    text,
                    created,
                    modified,
                    "Admin",
                    "Admin",
                )
            )

        add(state, cents, day)
        if state == "reversed":
            add("reversal", -cents, max(day - rng.randint(1, 5), 0))
    names = (
        "id",
        "adjustmentNumber",
        "customer.id",
        "createdDate",
        "glPostingDate",
        "txnCurrency.totalEntered",
        "description",
        "txnCurrency.currency",
        "state",
        *AUDIT,
    )
    ctx.insert("accounts-receivable/adjustment", names, rows)
    ctx.insert(
        "accounts-receivable/adjustment-line",
        (
            "id",
            "arAdjustment.key",
            "lineNumber",
            "txnCurrency.amount",
            "txnCurrency.currency",
            "glAccount.id",
            "memo",
            *AUDIT,
        ),
        lines,
    )
