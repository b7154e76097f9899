"""Sage's published schema for the objects the simulator serves, written down as data.

Transcribed by hand from the OpenAPI digests (``shared/spec/intacct-openapi/accounts-receivable.md``
and ``general-ledger-cash-management-company.md``, which copy Sage's ``spec/*.json``), never from
the product. Each object lists a subset of its published fields: the ones an integration reads or
writes, the references, the totals, the states and the audit block; no field appears here that the
digest does not list for that object. One line per field::

    <dotted path>  <type>  [RO] [WO] [max=<maxLength>] [enum=<a,b,...>]

Types: ``string``, ``dp2`` (a decimal-precision-2 amount, a JSON string), ``date``, ``datetime``,
``integer``, ``number``, ``boolean``. ``enum`` lists the published values in the file's order;
``null`` among them means the field may be null. ``RO`` is readOnly, ``WO`` writeOnly.

``required`` is the object's ``*RequiredProperties`` as the digest gives it: ``always`` must be
present; ``if_parent`` is required when its parent object is sent (strict JSON Schema reading of a
nested ``required``); ``one_of`` groups need exactly one member; ``items`` holds the same for each
item of an embedded array (``lines``, ``paymentDetails``, ``details``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

TYPES = frozenset({"string", "dp2", "date", "datetime", "integer", "number", "boolean"})


@dataclass(frozen=True)
class FieldSpec:
    """One published field: dotted path, type, enum, maxLength, readOnly / writeOnly."""

    path: str
    type: str
    read_only: bool = False
    write_only: bool = False
    max_length: int | None = None
    enum: tuple[str | None, ...] | None = None


@dataclass(frozen=True)
class Required:
    """What a create must carry (``*RequiredProperties``)."""

    always: tuple[str, ...] = ()
    if_parent: tuple[str, ...] = ()
    one_of: tuple[tuple[str, ...], ...] = ()
    items: dict[str, Required] = field(default_factory=dict)


@dataclass(frozen=True)
class ObjectSchema:
    """One object's published fields, embedded arrays and create requirements."""

    path: str
    fields: tuple[FieldSpec, ...]
    arrays: dict[str, str]  # embedded array name -> the object its items are
    required: Required

    @cached_property
    def by_path(self) -> dict[str, FieldSpec]:
        return {f.path: f for f in self.fields}

    @cached_property
    def prefixes(self) -> frozenset[str]:
        """Every dotted path some field lies below (``customer`` for ``customer.id``)."""
        return frozenset(
            f.path.rsplit(".", depth)[0] for f in self.fields for depth in range(1, f.path.count(".") + 1)
        )


_AUDIT = """
audit.createdDateTime        datetime RO
audit.modifiedDateTime       datetime RO
audit.createdBy              string   RO
audit.modifiedBy             string   RO
"""
_ENTITY = """
entity.key                   string   RO
entity.id                    string   RO
entity.name                  string   RO
entity.href                  string   RO
"""

_TABLES: dict[str, str] = {
    # ---- accounts-receivable.md §5.1
    "accounts-receivable/customer": """
key                          string   RO
id                           string
name                         string
href                         string   RO
status                       string   enum=null,active,activeNonPosting,inactive
customerType.key             string
customerType.id              string
customerType.href            string   RO
parent.key                   string
parent.id                    string
parent.name                  string   RO
parent.href                  string   RO
taxId                        string
creditLimit                  number
isOnHold                     boolean
contacts.default.key         string
contacts.default.id          string
contacts.default.href        string   RO
contacts.default.printAs     string
contacts.default.companyName string
contacts.default.firstName   string
contacts.default.lastName    string
contacts.default.email1      string
contacts.default.email2      string
contacts.default.phone1      string
contacts.default.phone2      string
contacts.default.mobile      string
contacts.default.fax         string
contacts.default.URL1        string
contacts.default.mailingAddress.addressLine1   string
contacts.default.mailingAddress.addressLine2   string
contacts.default.mailingAddress.addressLine3   string
contacts.default.mailingAddress.city           string
contacts.default.mailingAddress.state          string
contacts.default.mailingAddress.postCode       string
contacts.default.mailingAddress.country        string
contacts.default.mailingAddress.isoCountryCode string
contacts.primary.key         string
contacts.primary.id          string
contacts.primary.href        string   RO
contacts.billTo.key          string
contacts.billTo.id           string
contacts.billTo.href         string   RO
contacts.shipTo.key          string
contacts.shipTo.id           string
contacts.shipTo.href         string   RO
discountPercent              string
term.key                     string
term.id                      string
term.href                    string   RO
totalDue                     dp2      RO
lastInvoiceCreatedDate       date     RO
deliveryOptions              string   enum=print,email,both
currency                     string
emailOptIn                   boolean
isOneTimeUse                 boolean
notes                        string
customerRestriction          string   enum=unrestricted,rootOnly,restricted
webURL                       string   RO
"""
    + _ENTITY
    + _AUDIT,
    # ---- accounts-receivable.md §5.2 (the schema has no top-level href; every example has one)
    "accounts-receivable/invoice": """
key                          string   RO
id                           string   RO
href                         string   RO
recordType                   string   RO
invoiceNumber                string
state                        string   enum=reversed,reversal,draft,noValue,posted,paid,partiallyPaid,selected
dueInDays                    integer  RO
referenceNumber              string
description                  string
invoiceDate                  date
dueDate                      date
currency.baseCurrency        string
currency.txnCurrency         string
currency.exchangeRate.date   date
currency.exchangeRate.rate   number
currency.exchangeRate.typeId string
totalBaseAmount              dp2      RO
totalBaseAmountDue           dp2      RO
totalTxnAmount               dp2      RO
totalTxnAmountDue            dp2      RO
paymentInformation.fullyPaidDate                     date RO
paymentInformation.totalBaseAmountPaid               dp2  RO
paymentInformation.totalTxnAmountPaid                dp2  RO
paymentInformation.totalBaseAmountSelectedForPayment dp2  RO
paymentInformation.totalTxnAmountSelectedForPayment  dp2  RO
customer.key                 string
customer.id                  string
customer.name                string   RO
customer.href                string   RO
term.key                     string
term.id                      string
term.href                    string   RO
attachment.key               string
attachment.id                string
attachment.href              string   RO
webURL                       string   RO
"""
    + _ENTITY
    + _AUDIT,
    # ---- accounts-receivable.md §5.3 (no top-level href in the schema; examples carry one)
    "accounts-receivable/invoice-line": """
key                          string   RO
id                           string   RO
href                         string   RO
glAccount.key                string
glAccount.id                 string
glAccount.name               string   RO
glAccount.href               string   RO
baseAmount                   dp2      RO
txnAmount                    dp2
memo                         string
currency.baseCurrency        string   RO
currency.txnCurrency         string   RO
paymentInformation.totalBaseAmountPaid               dp2 RO
paymentInformation.totalTxnAmountPaid                dp2 RO
paymentInformation.totalBaseAmountSelectedForPayment dp2 RO
paymentInformation.totalTxnAmountSelectedForPayment  dp2 RO
lineNumber                   number   RO
isSubtotal                   string   RO enum=null,subtotal,tax
createdDate                  date     RO
dimensions.location.key      string
dimensions.location.id       string
dimensions.location.name     string   RO
dimensions.location.href     string   RO
dimensions.department.key    string
dimensions.department.id     string
dimensions.department.name   string   RO
dimensions.department.href   string   RO
invoice.id                   string   RO
invoice.key                  string
invoice.href                 string   RO
"""
    + _AUDIT,
    # ---- accounts-receivable.md §5.4
    "accounts-receivable/payment": """
key                          string   RO
id                           string   RO
href                         string   RO
recordType                   string   RO
payerName                    string
financialEntity.entityId     string
financialEntity.entityType   string   RO
financialEntity.name         string   RO
financialEntity.currency     string   RO
financialEntity.txnAmount    dp2      RO
state                        string   enum=complete,reconciled,draft,reversed,reversal
paymentMethod                string   enum=null,printedCheck,creditCard,eft,cash,onlineChargeCard,onlineAchDebit,paymentAcceptanceService
documentNumber               string
description                  string   max=1000
baseCurrency.currency        string
baseCurrency.amountToPay     dp2
baseCurrency.totalAmount     dp2      RO
baseCurrency.totalPaid       dp2      RO
baseCurrency.totalDue        dp2      RO
txnCurrency.currency         string
txnCurrency.amountToPay      dp2
txnCurrency.totalAmount      dp2      max=14
txnCurrency.totalPaid        dp2      RO
txnCurrency.totalDue         dp2      RO max=14
bankReconciliationStatus     string   RO enum=cleared,uncleared,matched
bankReconciliationDate       date     RO
referenceNumber              string   max=21
paymentSummary.key           string   max=8
paymentSummary.id            string
paymentSummary.receiptDate   date
paymentSummary.title         string
paymentSummary.name          string   max=100
paymentSummary.href          string   RO
undepositedGLAccount.href    string   RO
undepositedGLAccount.id      string
undepositedGLAccount.key     string
customer.key                 string
customer.id                  string   max=21
customer.name                string
customer.href                string   RO
attachment.key               string
attachment.id                string
attachment.href              string   RO
paidDate                     date
overPaymentAmount            dp2      WO
webURL                       string   RO
"""
    + _AUDIT
    + _ENTITY,
    # ---- accounts-receivable.md §5.5 (GET only; written through the payment's paymentDetails)
    "accounts-receivable/payment-detail": """
key                          string   RO
id                           string   RO
href                         string   RO
paymentDate                  date     RO
discountDate                 date
baseCurrency.paymentAmount   dp2
txnCurrency.currency         string   RO
txnCurrency.paymentAmount    dp2
txnCurrency.inlineAmount     dp2
txnCurrency.adjustmentAmount dp2
arAdjustment.key             string
arAdjustment.id              string
arAdjustment.href            string   RO
arInvoice.key                string
arInvoice.id                 string
arInvoice.href               string   RO
arInvoiceLine.key            string
arInvoiceLine.id             string
arInvoiceLine.href           string   RO
arPayment.key                string   RO
arPayment.id                 string   RO
arPayment.href               string   RO
arPaymentLine.key            string   RO
arPaymentLine.id             string   RO
arPaymentLine.href           string   RO
"""
    + _AUDIT,
    # ---- accounts-receivable.md §5.7
    "accounts-receivable/adjustment": """
key                          string   RO
id                           string   RO
txnType                      string   RO
adjustmentNumber             string
href                         string   RO
state                        string   enum=reversed,reversal,draft,noValue,posted,paid,partiallyPaid,selected
description                  string
documentNumber               string
baseCurrency.currency        string
baseCurrency.totalPaid       dp2      RO
baseCurrency.totalDue        dp2
baseCurrency.totalAmountEntered dp2   RO
baseCurrency.paidDate        date
txnCurrency.currency         string
txnCurrency.totalEntered     dp2      RO
txnCurrency.totalSelected    dp2      RO
txnCurrency.totalPaid        dp2      RO
txnCurrency.totalDue         dp2      RO
exchangeRate.date            date
exchangeRate.rate            string
exchangeRate.typeId          string
moduleKey                    string   RO
customer.key                 string
customer.id                  string
customer.name                string
customer.totalDue            dp2      RO
customer.href                string   RO
createdDate                  date
glPostingDate                date
adjustmentSummary.href       string   RO
adjustmentSummary.key        integer
adjustmentSummary.id         string
"""
    + _AUDIT
    + _ENTITY,
    # ---- accounts-receivable.md §5.8 (no top-level href in the schema; examples carry one)
    "accounts-receivable/adjustment-line": """
id                           string   RO
key                          string   RO
href                         string   RO
memo                         string
lineNumber                   string   RO
baseCurrency.currency        string   RO
baseCurrency.amount          dp2      RO
txnCurrency.currency         string
txnCurrency.amount           dp2
adjustmentType               string   RO
isTax                        boolean  RO
arAdjustment.key             string
arAdjustment.id              string
arAdjustment.href            string   RO
dimensions.location.key      string
dimensions.location.id       string
dimensions.location.name     string   RO
dimensions.location.href     string   RO
dimensions.department.key    string
dimensions.department.id     string
dimensions.department.name   string   RO
dimensions.department.href   string   RO
glAccount.key                string
glAccount.id                 string
glAccount.name               string   RO
glAccount.href               string   RO
"""
    + _AUDIT,
    # ---- general-ledger-cash-management-company.md §2
    "general-ledger/account": """
key                          string   RO
id                           string
name                         string
accountType                  string   enum=balanceSheet,incomeStatement
normalBalance                string   enum=debit,credit
closingType                  string   enum=nonClosingAccount,closingAccount,closedToAccount
closeToGLAccount.key         string
closeToGLAccount.id          string
closeToGLAccount.href        string   RO
alternativeGLAccount         string   enum=none,payablesAccount,receivablesAccount
disallowDirectPosting        boolean
enableGLMatching             boolean
status                       string   enum=active,inactive
category                     string
isTaxable                    boolean
href                         string   RO
"""
    + _ENTITY
    + _AUDIT,
    # ---- §3
    "general-ledger/journal-entry": """
key                          string   RO
id                           string   RO
txnNumber                    integer  RO
glJournal.key                string
glJournal.id                 string
glJournal.isAdjustment       boolean  RO
glJournal.name               string   RO
glJournal.href               string   RO
description                  string
postingDate                  date
automaticReversalDate        date
reversedFromDate             date     RO
reversedBy.key               string   RO
reversedBy.id                string   RO
reversedBy.href              string   RO
moduleName                   string
referenceNumber              string
webURL                       string   RO
baseLocation.key             string
baseLocation.id              string
baseLocation.href            string   RO
state                        string   enum=draft,submitted,partiallyApproved,approved,posted,declined,reversalPending,reversed
sequenceNumber               string   RO
txnSource                    string   RO enum=null,bank
balance                      dp2
href                         string   RO
"""
    + _ENTITY
    + _AUDIT,
    # ---- §4 (GET only; written through the journal entry's lines)
    "general-ledger/journal-entry-line": """
key                          string   RO
id                           string   RO
lineNumber                   integer  RO
txnType                      string   enum=debit,credit
txnAmount                    dp2
entryDate                    date     RO
documentId                   string
description                  string
accountingPeriod             integer  RO
isBillable                   boolean
isBilled                     boolean  RO
baseAmount                   dp2      RO
state                        string   enum=draft,submitted,partiallyApproved,partiallyPaid,approved,paid,posted,declined,reversalPending,reversed,reversal
currency.baseCurrency        string   RO
currency.txnCurrency         string   RO
currency.exchangeRateDate    date     RO
currency.exchangeRateTypeId  string   RO
currency.exchangeRate        number   RO
glAccount.key                string
glAccount.id                 string
glAccount.name               string   RO
glAccount.href               string   RO
dimensions.location.key      string
dimensions.location.id       string
dimensions.location.name     string   RO
dimensions.location.href     string   RO
dimensions.department.key    string
dimensions.department.id     string
dimensions.department.name   string   RO
dimensions.department.href   string   RO
dimensions.customer.key      string
dimensions.customer.id       string
dimensions.customer.name     string   RO
dimensions.customer.href     string   RO
href                         string   RO
journalEntry.id              string
journalEntry.key             string
journalEntry.href            string   RO
"""
    + _AUDIT,
    # ---- §5
    "cash-management/checking-account": """
key                          string   RO
id                           string
href                         string   RO
bankAccountDetails.accountNumber     string
bankAccountDetails.bankName          string
bankAccountDetails.accountHolderName string max=100
bankAccountDetails.routingNumber     string
bankAccountDetails.branchId          string
bankAccountDetails.phoneNumber       string
bankAccountDetails.currency          string
bankAccountDetails.bankAddress.city     string
bankAccountDetails.bankAddress.state    string
bankAccountDetails.bankAddress.postCode string
bankAccountDetails.bankAddress.country  string
accounting.glAccount.key     string
accounting.glAccount.id      string
accounting.glAccount.name    string   RO
accounting.glAccount.href    string   RO
accounting.arJournal.key     string
accounting.arJournal.id      string
accounting.arJournal.href    string   RO
department.key               string
department.id                string
department.href              string   RO
location.key                 string
location.id                  string
location.href                string   RO
status                       string   enum=active,inactive
"""
    + _ENTITY
    + _AUDIT,
    # ---- §6
    "cash-management/deposit": """
key                          string   RO
id                           string   RO
href                         string   RO
depositId                    string
txnDate                      date
description                  string
baseCurrency                 string   RO
txnCurrency                  string   RO
totalEntered                 dp2      RO
txnTotalEntered              dp2      RO
state                        string   RO enum=null,void,approve
reconciliationState          string   RO enum=cleared,uncleared,matched
bankAccount.key              string
bankAccount.id               string
bankAccount.name             string   RO
bankAccount.href             string   RO
reversalDate                 date     RO
reversedDate                 date     RO
reversedVoidPaymentKey       string   RO
voidPaymentKey               string   RO
postingDate                  date
"""
    + _AUDIT
    + _ENTITY,
    # ---- §6 deposit-detail (GET only). key/id are not readOnly: a create names the payment by id.
    "cash-management/deposit-detail": """
key                          string
id                           string
href                         string   RO
summary                      string   RO
customer.key                 string   RO
customer.id                  string   RO max=21
customer.name                string   RO
customer.href                string   RO
payee                        string   RO
totalEntered                 dp2      RO
txnTotalEntered              dp2      RO
currency                     string   RO
paymentMethod                string   RO enum=check,chargeCard,onlineChargeCard,recordTransfer,cash
documentNumber               string   RO
state                        string   RO enum=undeposited,deposited
deposit.key                  string   RO
deposit.id                   string   RO
deposit.href                 string   RO
status                       string   RO enum=active,inactive
"""
    + _AUDIT,
    # ---- §7
    "cash-management/other-receipt": """
key                          string   RO
id                           string   RO
recordType                   string   RO
payer                        string
txnDate                      date
txnPaidDate                  date
txnNumber                    string
description                  string
baseCurrency                 string
currency                     string
txnCurrency                  string
totalEntered                 dp2      RO
txnTotalEntered              dp2      RO
reconciliationState          string   enum=cleared,uncleared,matched
clearingDate                 date     RO
state                        string   enum=approved,reversed,reversal,reconciled,deposited
parentDeposit.href           string   RO
parentDeposit.key            string
parentDeposit.id             string
bankAccount.key              string
bankAccount.id               string
bankAccount.name             string   RO
bankAccount.currency         string   RO
bankAccount.href             string   RO
undepositedGLAccount.key     string
undepositedGLAccount.id      string
undepositedGLAccount.href    string   RO
depositDate                  date
paymentMethod                string   enum=printedCheck,creditCard,eft,cash
reversalDate                 date     RO
reversedDate                 date     RO
reversedVoidPaymentKey       string   RO
voidPaymentKey               string   RO
sourceModule                 string   enum=cashManagement,loanManagement
href                         string   RO
webURL                       string   RO
"""
    + _AUDIT
    + _ENTITY,
    # ---- §7 other-receipt-line (GET only)
    "cash-management/other-receipt-line": """
key                          string   RO
id                           string   RO
href                         string   RO
amount                       dp2
totalTxnAmount               dp2
txnAmount                    dp2
description                  string
lineNumber                   integer
baseCurrency                 string   RO
currency                     string   RO
isTax                        boolean
glAccount.key                string
glAccount.id                 string
glAccount.href               string   RO
dimensions.location.key      string
dimensions.location.id       string
dimensions.location.name     string
dimensions.location.href     string   RO
dimensions.department.key    string
dimensions.department.id     string
dimensions.department.name   string
dimensions.department.href   string   RO
otherReceipts.key            string   RO
otherReceipts.id             string   RO
otherReceipts.href           string   RO
status                       string   enum=active,inactive
"""
    + _AUDIT,
    # ---- §8
    "company-config/entity": """
key                          string   RO
id                           string
href                         string   RO
name                         string
startDate                    date
endDate                      date
federalId                    string
baseCurrency.href            string   RO
baseCurrency.key             string
baseCurrency.id              string
texts.message                string
texts.reportPrintAs          string
isRoot                       boolean  RO
taxId                        string
openBooksStartDate           date
accountingType               string   enum=null,entity,fund
status                       string   enum=active,inactive
"""
    + _AUDIT,
}

_ARRAYS: dict[str, dict[str, str]] = {
    "accounts-receivable/invoice": {"lines": "accounts-receivable/invoice-line"},
    "accounts-receivable/payment": {"paymentDetails": "accounts-receivable/payment-detail"},
    "accounts-receivable/adjustment": {"lines": "accounts-receivable/adjustment-line"},
    "general-ledger/journal-entry": {"lines": "general-ledger/journal-entry-line"},
    "cash-management/deposit": {"details": "cash-management/deposit-detail"},
    "cash-management/other-receipt": {"lines": "cash-management/other-receipt-line"},
}

_REQUIRED: dict[str, Required] = {
    "accounts-receivable/customer": Required(always=("name",)),
    "accounts-receivable/invoice": Required(
        always=("invoiceDate", "dueDate"),
        if_parent=("customer.id",),
        items={
            "lines": Required(always=("txnAmount",), if_parent=("glAccount.id", "dimensions.location.id"))
        },
    ),
    "accounts-receivable/invoice-line": Required(always=("invoice", "txnAmount", "glAccount")),
    # Strictly, paymentSummary.receiptDate, txnCurrency.currency and each detail's
    # txnCurrency.paymentAmount are required only when their parent is sent; intacct-rest.md
    # ("Writing payments") requires all three, and so does the simulator.
    "accounts-receivable/payment": Required(
        always=("paymentSummary.receiptDate", "txnCurrency.currency"),
        one_of=(("undepositedGLAccount", "financialEntity"), ("customer", "payerName")),
        items={"paymentDetails": Required(always=("arInvoice", "txnCurrency.paymentAmount"))},
    ),
    "accounts-receivable/adjustment": Required(
        always=("createdDate",),
        if_parent=("customer.id", "txnCurrency.currency", "adjustmentSummary.id"),
        items={"lines": Required(if_parent=("glAccount.id", "txnCurrency.amount", "dimensions.location.id"))},
    ),
    "accounts-receivable/adjustment-line": Required(
        always=("arAdjustment", "glAccount"), if_parent=("txnCurrency.amount",)
    ),
    "general-ledger/account": Required(always=("id", "name")),
    "general-ledger/journal-entry": Required(
        always=("glJournal", "postingDate", "description", "lines"),
        items={"lines": Required(always=("txnAmount", "txnType", "glAccount"))},
    ),
    "cash-management/checking-account": Required(
        always=("id", "location", "accounting.glAccount"),
        if_parent=("bankAccountDetails.bankName", "bankAccountDetails.currency"),
    ),
    "cash-management/deposit": Required(
        always=("txnDate", "bankAccount"), items={"details": Required(always=("id",))}
    ),
    "cash-management/other-receipt": Required(
        always=("payer", "txnDate", "depositDate", "txnPaidDate", "paymentMethod", "bankAccount"),
        items={"lines": Required(always=("txnAmount", "glAccount"))},
    ),
    "company-config/entity": Required(always=("id", "name", "federalId")),
}

# Workflow request bodies (accounts-receivable.md §3; general-ledger-…-company.md §6, §7).
WORKFLOWS: dict[str, ObjectSchema] = {}


def _parse_line(line: str) -> FieldSpec:
    path, kind, *flags = line.split()
    if kind not in TYPES:
        raise ValueError(f"unknown type {kind!r} for {path}")
    options: dict[str, object] = {}
    for flag in flags:
        if flag == "RO":
            options["read_only"] = True
        elif flag == "WO":
            options["write_only"] = True
        elif flag.startswith("max="):
            options["max_length"] = int(flag[4:])
        elif flag.startswith("enum="):
            options["enum"] = tuple(None if v == "null" else v for v in flag[5:].split(","))
        else:
            raise ValueError(f"unknown flag {flag!r} for {path}")
    return FieldSpec(path, kind, **options)  # type: ignore[arg-type]


def _parse(text: str) -> tuple[FieldSpec, ...]:
    specs = tuple(_parse_line(line) for line in text.strip().splitlines() if line.strip())
    paths = [s.path for s in specs]
    if len(paths) != len(set(paths)):
        raise ValueError(f"a field is listed twice: {sorted(p for p in paths if paths.count(p) > 1)}")
    return specs


SCHEMAS: dict[str, ObjectSchema] = {
    path: ObjectSchema(path, _parse(text), _ARRAYS.get(path, {}), _REQUIRED.get(path, Required()))
    for path, text in _TABLES.items()
}

WORKFLOWS.update(
    {
        # accounts-receivable-payment-actions-reverse-request: required [key, reversedDate]
        "accounts-receivable/payment/reverse": ObjectSchema(
            "accounts-receivable/payment/reverse",
            _parse("key string\nreversedDate date\nmemo string"),
            {},
            Required(always=("key", "reversedDate")),
        ),
    }
)
