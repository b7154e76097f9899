"""Where each Intacct field lives, as Sage publishes it: one field map per object, the only place.

Every path below is in Sage's published OpenAPI (digested in ``shared/spec/intacct-openapi/``,
section named beside each map), and ``tests/test_intacct_contract.py`` holds them to it. The
mappings (``schemas/mappings``), the client's queries and the payment write-back
(``clients/intacct/payments.py``) all name fields through these maps, so correcting a field is one
line here. Paths are dotted: a GET nests them, a query row keys its values by them.
"""

from __future__ import annotations

from typing import ClassVar


class FieldMap:
    """An Intacct object's REST path (``object_path``) and its fields: every other upper-case
    class attribute is a dotted field path."""

    object_path: ClassVar[str]

    @classmethod
    def paths(cls) -> dict[str, str]:
        """{name: dotted path} of every field of the map."""
        return {
            name: value
            for klass in reversed(cls.__mro__)
            for name, value in vars(klass).items()
            if name.isupper() and isinstance(value, str)
        }


class Record(FieldMap):
    """What every object has (digests: ``key``, ``id``, ``audit.s1``)."""

    KEY = "key"
    ID = "id"
    MODIFIED = "audit.modifiedDateTime"


# -- Accounts Receivable (accounts-receivable.md §5) ------------------------------------------


class Customer(Record):
    """§5.1."""

    object_path = "accounts-receivable/customer"
    NAME = "name"
    STATUS = "status"
    CREDIT_LIMIT = "creditLimit"  # a JSON number, unlike every amount
    CURRENCY = "currency"
    TERM = "term.id"
    EMAIL = "contacts.default.email1"
    PHONE = "contacts.default.phone1"
    ADDRESS_LINE1 = "contacts.default.mailingAddress.addressLine1"
    ADDRESS_LINE2 = "contacts.default.mailingAddress.addressLine2"
    CITY = "contacts.default.mailingAddress.city"
    REGION = "contacts.default.mailingAddress.state"
    POST_CODE = "contacts.default.mailingAddress.postCode"
    COUNTRY = "contacts.default.mailingAddress.country"


class Invoice(Record):
    """§5.2: currency under ``currency``, flat RO totals, paid amounts under ``paymentInformation``."""

    object_path = "accounts-receivable/invoice"
    NUMBER = "invoiceNumber"
    CUSTOMER = "customer.id"
    INVOICE_DATE = "invoiceDate"
    DUE_DATE = "dueDate"
    CURRENCY = "currency.txnCurrency"
    TOTAL = "totalTxnAmount"
    DUE = "totalTxnAmountDue"
    PAID = "paymentInformation.totalTxnAmountPaid"
    STATE = "state"
    DESCRIPTION = "description"
    REFERENCE = "referenceNumber"
    ENTITY = "entity.id"


class InvoiceLine(Record):
    """§5.3: parent ``invoice.key``."""

    object_path = "accounts-receivable/invoice-line"
    PARENT = "invoice.key"
    LINE_NUMBER = "lineNumber"
    MEMO = "memo"
    GL_ACCOUNT = "glAccount.id"
    AMOUNT = "txnAmount"


class Payment(Record):
    """§5.4: no PATCH; receipt date under ``paymentSummary``, total and currency under ``txnCurrency``."""

    object_path = "accounts-receivable/payment"
    CUSTOMER = "customer.id"
    RECEIPT_DATE = "paymentSummary.receiptDate"
    TOTAL = "txnCurrency.totalAmount"
    CURRENCY = "txnCurrency.currency"
    AMOUNT_TO_PAY = "txnCurrency.amountToPay"
    METHOD = "paymentMethod"
    REFERENCE = "referenceNumber"  # maxLength 21
    DOCUMENT_NUMBER = "documentNumber"
    DESCRIPTION = "description"  # maxLength 1000
    STATE = "state"
    BANK_ACCOUNT = "financialEntity.entityId"
    UNDEPOSITED_ACCOUNT = "undepositedGLAccount.id"
    DETAILS = "paymentDetails"


class PaymentDetail(Record):
    """§5.5: GET only (written inside a payment's ``paymentDetails``); parent ``arPayment.key``."""

    object_path = "accounts-receivable/payment-detail"
    PARENT = "arPayment.key"
    INVOICE = "arInvoice.key"
    AMOUNT = "txnCurrency.paymentAmount"


class Adjustment(Record):
    """§5.7: date ``createdDate`` (else ``glPostingDate``), amounts under ``txnCurrency``."""

    object_path = "accounts-receivable/adjustment"
    CUSTOMER = "customer.id"
    CREATED_DATE = "createdDate"
    POSTING_DATE = "glPostingDate"
    TOTAL = "txnCurrency.totalEntered"
    CURRENCY = "txnCurrency.currency"
    DESCRIPTION = "description"
    DOCUMENT_NUMBER = "documentNumber"
    STATE = "state"


class AdjustmentLine(Record):
    """§5.8: parent ``arAdjustment.key``."""

    object_path = "accounts-receivable/adjustment-line"
    PARENT = "arAdjustment.key"
    GL_ACCOUNT = "glAccount.id"
    AMOUNT = "txnCurrency.amount"


# -- General Ledger, Cash Management, Company (general-ledger-cash-management-company.md) -----


class GlAccount(Record):
    """§2."""

    object_path = "general-ledger/account"
    NAME = "name"
    ACCOUNT_TYPE = "accountType"
    NORMAL_BALANCE = "normalBalance"
    CATEGORY = "category"
    STATUS = "status"


class JournalEntry(Record):
    """§3: the journal is ``glJournal``; approval states in ``state``."""

    object_path = "general-ledger/journal-entry"
    JOURNAL = "glJournal.id"
    POSTING_DATE = "postingDate"
    DESCRIPTION = "description"
    STATE = "state"


class JournalEntryLine(Record):
    """§4: parent ``journalEntry.key``; an absolute ``txnAmount`` and its side ``txnType``."""

    object_path = "general-ledger/journal-entry-line"
    PARENT = "journalEntry.key"
    LINE_NUMBER = "lineNumber"
    GL_ACCOUNT = "glAccount.id"
    AMOUNT = "txnAmount"
    SIDE = "txnType"
    DESCRIPTION = "description"
    LOCATION = "dimensions.location.id"
    DEPARTMENT = "dimensions.department.id"


class CheckingAccount(Record):
    """§5: no ``name``, currency under ``bankAccountDetails``."""

    object_path = "cash-management/checking-account"
    BANK_NAME = "bankAccountDetails.bankName"
    ACCOUNT_NUMBER = "bankAccountDetails.accountNumber"
    CURRENCY = "bankAccountDetails.currency"
    GL_ACCOUNT = "accounting.glAccount.id"
    STATUS = "status"


class Deposit(Record):
    """§6: ``txnDate``, ``txnTotalEntered``; ``txnCurrency`` is a string here."""

    object_path = "cash-management/deposit"
    BANK_ACCOUNT = "bankAccount.id"
    DATE = "txnDate"
    TOTAL = "txnTotalEntered"
    CURRENCY = "txnCurrency"
    DESCRIPTION = "description"
    STATE = "state"


class DepositDetail(Record):
    """§6: parent ``deposit.key``; its ``key`` names the deposited payment (intacct-rest.md's convention)."""

    object_path = "cash-management/deposit-detail"
    PARENT = "deposit.key"


class OtherReceipt(Record):
    """§7: ``txnCurrency`` a string (``currency`` is deprecated)."""

    object_path = "cash-management/other-receipt"
    DATE = "txnDate"
    TOTAL = "txnTotalEntered"
    CURRENCY = "txnCurrency"
    PAYER = "payer"
    DESCRIPTION = "description"
    BANK_ACCOUNT = "bankAccount.id"
    STATE = "state"


class OtherReceiptLine(Record):
    """§7: parent ``otherReceipts`` (plural)."""

    object_path = "cash-management/other-receipt-line"
    PARENT = "otherReceipts.key"
    AMOUNT = "txnAmount"
    GL_ACCOUNT = "glAccount.id"


class Entity(Record):
    """§8: currency ``baseCurrency.id``."""

    object_path = "company-config/entity"
    NAME = "name"
    CURRENCY = "baseCurrency.id"
    STATUS = "status"


FIELD_MAPS: tuple[type[FieldMap], ...] = (
    Customer,
    Invoice,
    InvoiceLine,
    Payment,
    PaymentDetail,
    Adjustment,
    AdjustmentLine,
    GlAccount,
    JournalEntry,
    JournalEntryLine,
    CheckingAccount,
    Deposit,
    DepositDetail,
    OtherReceipt,
    OtherReceiptLine,
    Entity,
)
BY_OBJECT_PATH: dict[str, type[FieldMap]] = {m.object_path: m for m in FIELD_MAPS}

# Workflow request bodies (accounts-receivable.md §3.2): not objects, so listed here by hand.
PAYMENT_REVERSE_PATH = "workflows/accounts-receivable/payment/reverse"
PAYMENT_REVERSE_FIELDS = ("key", "reversedDate", "memo")
