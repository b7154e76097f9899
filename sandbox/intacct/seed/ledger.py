"""Reference data and the general ledger: entities, chart of accounts, checking accounts, journal entries."""

from __future__ import annotations

from . import vocabulary
from .context import AUDIT, SeedContext, money


def entities(ctx: SeedContext) -> list[tuple]:
    """The company's entities (kept if it has some); returns (id, currency) of each."""
    path = "company-config/entity"
    existing = ctx.existing(path, "id", "baseCurrency.id")
    if existing or not ctx.options.entities:
        return existing
    chosen = vocabulary.ENTITIES[: ctx.options.entities]
    rows = []
    for key, (entity_id, name, currency) in zip(ctx.keys(path, len(chosen)), chosen, strict=True):
        created, modified = ctx.stamp(ctx.options.days + 100)
        rows.append(
            (
                ctx.company_id,
                key,
                entity_id,
                name,
                currency,
                "active",
                created,
                modified,
                "Admin",
                "Admin",
            )
        )
    ctx.insert(path, ("id", "name", "baseCurrency.id", "status", *AUDIT), rows)
    return [(e[0], e[2]) for e in chosen]


def gl_accounts(ctx: SeedContext) -> None:
    """A realistic chart of accounts, unless the company has one."""
    path = "general-ledger/account"
    if ctx.existing(path, "id"):
        return
    rows = []
    for key, account in zip(ctx.keys(path, len(vocabulary.GL_ACCOUNTS)), vocabulary.GL_ACCOUNTS, strict=True):
        created, modified = ctx.stamp(ctx.options.days + 100, later_days=60)
        status = "inactive" if account[0] == "1030" else "active"
        rows.append((ctx.company_id, key, *account, status, created, modified, "Admin", "Admin"))
    ctx.insert(path, ("id", "name", "accountType", "normalBalance", "category", "status", *AUDIT), rows)


def checking_accounts(ctx: SeedContext, currencies: set[str]) -> list[tuple]:
    """Checking accounts with full account numbers; returns (id, currency) of each."""
    path = "cash-management/checking-account"
    existing = ctx.existing(path, "id", "bankAccountDetails.currency")
    if existing or not ctx.options.checking_accounts:
        return existing
    chosen = vocabulary.BANKS[: ctx.options.checking_accounts]
    rows, accounts = [], []
    for key, (bank_id, name, bank, gl) in zip(ctx.keys(path, len(chosen)), chosen, strict=True):
        currency = "CAD" if bank_id == "CAD-OPS" and "CAD" in currencies else "USD"
        created, modified = ctx.stamp(ctx.options.days + 100, later_days=30)
        rows.append(
            (
                ctx.company_id,
                key,
                bank_id,
                name,
                "HQ",
                str(ctx.rng.randrange(10**9, 10**12)),
                bank,
                str(ctx.rng.randrange(10**8, 10**9)),
                currency,
                gl,
                "active",
                created,
                modified,
                "Admin",
                "Admin",
            )
        )
        accounts.append((bank_id, currency))
    names = (
        "id",
        "bankAccountDetails.accountHolderName",
        "location.id",
        "bankAccountDetails.accountNumber",
        "bankAccountDetails.bankName",
        "bankAccountDetails.routingNumber",
        "bankAccountDetails.currency",
        "accounting.glAccount.id",
        "status",
        *AUDIT,
    )
    ctx.insert(path, names, rows)
    return accounts


def journal_entries(ctx: SeedContext, locations: list[str]) -> None:
    """Balanced entries of 2-4 lines: some amounts on one side, their sum on the other."""
    rng, options = ctx.rng, ctx.options
    count = options.journal_entries if options.journal_entries is not None else max(5, options.invoices // 10)
    shapes = [rng.randint(2, 4) for _ in range(count)]
    keys = ctx.keys("general-ledger/journal-entry", count)
    line_keys = iter(ctx.keys("general-ledger/journal-entry-line", sum(shapes)))
    accounts = [a[0] for a in vocabulary.GL_ACCOUNTS]
    departments = ["SALES", "OPS", "FIN", "ENG", None]
    rows, lines = [], []
    for index, (key, size) in enumerate(zip(keys, shapes, strict=True)):
        journal, text = rng.choice(vocabulary.JOURNALS)
        # Every published state at least once (approval states included), then mostly posted.
        state = (
            vocabulary.JOURNAL_STATES[index]
            if index < len(vocabulary.JOURNAL_STATES)
            else rng.choices(vocabulary.JOURNAL_STATES, vocabulary.JOURNAL_STATE_WEIGHTS)[0]
        )
        day = rng.randrange(options.days)
        created, modified = ctx.stamp(day, 2)
        rows.append(
            (
                ctx.company_id,
                key,
                str(key),
                journal,
                ctx.date(day),
                text,
                state,
                f"JE-{key:06d}",
                created,
                modified,
                "Admin",
                rng.choice(vocabulary.USERS),
            )
        )
        amounts = [rng.randrange(1_000, 1_000_000) for _ in range(size - 1)]
        side, other = ("debit", "credit") if rng.random() < 0.5 else ("credit", "debit")
        entries = [(cents, side) for cents in amounts] + [(sum(amounts), other)]
        location = rng.choice(locations) if locations else None
        for number, (cents, kind) in enumerate(entries, start=1):
            line_key = next(line_keys)
            lines.append(
                (
                    ctx.company_id,
                    line_key,
                    str(line_key),
                    key,
                    number,
                    rng.choice(accounts),
                    money(cents),
                    kind,
                    f"{text} line {number}",
                    "reversed" if state == "reversed" else "posted" if state == "posted" else state,
                    location,
                    rng.choice(departments),
                    created,
                    modified,
                    "Admin",
                    "Admin",
                )
            )
    ctx.insert(
        "general-ledger/journal-entry",
        ("id", "glJournal.id", "postingDate", "description", "state", "referenceNumber", *AUDIT),
        rows,
    )
    ctx.insert(
        "general-ledger/journal-entry-line",
        (
            "id",
            "journalEntry.key",
            "lineNumber",
            "glAccount.id",
            "txnAmount",
            "txnType",
            "description",
            "state",
            "dimensions.location.id",
            "dimensions.department.id",
            *AUDIT,
        ),
        lines,
    )
