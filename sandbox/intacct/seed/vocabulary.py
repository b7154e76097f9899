"""The seeder's vocabulary: names, places, chart of accounts, banks, texts and distributions."""

ENTITIES = [
    ("US", "FlexCo United States", "USD"),
    ("CA", "FlexCo Canada", "CAD"),
    ("UK", "FlexCo United Kingdom", "GBP"),
    ("DE", "FlexCo Deutschland", "EUR"),
    ("AU", "FlexCo Australia", "AUD"),
]
GL_ACCOUNTS = [
    ("1000", "Cash - Operating", "balanceSheet", "debit", "Cash and Cash Equivalents"),
    ("1010", "Cash - Payroll", "balanceSheet", "debit", "Cash and Cash Equivalents"),
    ("1020", "Cash - Reserve", "balanceSheet", "debit", "Cash and Cash Equivalents"),
    ("1030", "Cash - Lockbox", "balanceSheet", "debit", "Cash and Cash Equivalents"),
    ("1040", "Cash - Canada", "balanceSheet", "debit", "Cash and Cash Equivalents"),
    ("1100", "Accounts Receivable", "balanceSheet", "debit", "Accounts Receivable"),
    ("1150", "Allowance for Doubtful Accounts", "balanceSheet", "credit", "Accounts Receivable"),
    ("1200", "Undeposited Funds", "balanceSheet", "debit", "Other Current Assets"),
    ("1300", "Inventory", "balanceSheet", "debit", "Inventory"),
    ("1400", "Prepaid Expenses", "balanceSheet", "debit", "Other Current Assets"),
    ("1500", "Equipment", "balanceSheet", "debit", "Fixed Assets"),
    ("1550", "Accumulated Depreciation", "balanceSheet", "credit", "Fixed Assets"),
    ("2000", "Accounts Payable", "balanceSheet", "credit", "Accounts Payable"),
    ("2100", "Accrued Liabilities", "balanceSheet", "credit", "Other Current Liabilities"),
    ("2200", "Sales Tax Payable", "balanceSheet", "credit", "Other Current Liabilities"),
    ("2300", "Deferred Revenue", "balanceSheet", "credit", "Other Current Liabilities"),
    ("2500", "Line of Credit", "balanceSheet", "credit", "Long Term Debt"),
    ("3000", "Common Stock", "balanceSheet", "credit", "Equity"),
    ("3100", "Retained Earnings", "balanceSheet", "credit", "Equity"),
    ("4000", "Revenue - Services", "incomeStatement", "credit", "Revenue"),
    ("4100", "Revenue - Products", "incomeStatement", "credit", "Revenue"),
    ("4200", "Revenue - Subscriptions", "incomeStatement", "credit", "Revenue"),
    ("4900", "Sales Discounts", "incomeStatement", "debit", "Revenue"),
    ("5000", "Cost of Goods Sold", "incomeStatement", "debit", "Cost of Sales"),
    ("6000", "Salaries and Wages", "incomeStatement", "debit", "Operating Expenses"),
    ("6100", "Rent", "incomeStatement", "debit", "Operating Expenses"),
    ("6200", "Utilities", "incomeStatement", "debit", "Operating Expenses"),
    ("6300", "Software Subscriptions", "incomeStatement", "debit", "Operating Expenses"),
    ("6400", "Travel", "incomeStatement", "debit", "Operating Expenses"),
    ("6900", "Bad Debt Expense", "incomeStatement", "debit", "Operating Expenses"),
    ("7000", "Interest Income", "incomeStatement", "credit", "Other Income"),
    ("8000", "Interest Expense", "incomeStatement", "debit", "Other Expense"),
]
BANKS = [
    ("OPERATING", "Operating Account", "First National Bank", "1000"),
    ("PAYROLL", "Payroll Account", "Wells Fargo", "1010"),
    ("RESERVE", "Reserve Account", "JPMorgan Chase", "1020"),
    ("LOCKBOX", "Lockbox Account", "Bank of America", "1030"),
    ("CAD-OPS", "Canadian Operating", "Royal Bank of Canada", "1040"),
]
COMPANY_WORDS = [
    "Acme",
    "Globex",
    "Initech",
    "Umbrella",
    "Stark",
    "Wayne",
    "Wonka",
    "Hooli",
    "Vandelay",
    "Soylent",
    "Cyberdyne",
    "Tyrell",
    "Oscorp",
    "Aperture",
    "Monarch",
    "Sterling",
    "Bluth",
    "Prestige",
    "Massive",
    "Nakatomi",
    "Gekko",
    "Duff",
    "Krusty",
    "Kramerica",
    "Pendant",
    "Northwind",
    "Contoso",
    "Fabrikam",
    "Tailspin",
    "Litware",
]
TRADES = [
    "Industrial",
    "Logistics",
    "Foods",
    "Health",
    "Software",
    "Construction",
    "Energy",
    "Retail",
    "Pharma",
    "Media",
    "Marine",
    "Textiles",
    "Robotics",
    "Analytics",
    "Freight",
    "Dental",
    "Farms",
    "Aerospace",
    "Labs",
    "Outfitters",
]
SUFFIXES = ["Inc.", "LLC", "Corp.", "Ltd.", "Group", "Co.", "Holdings", "Partners"]
STREETS = [
    "Main St",
    "Oak Ave",
    "Market St",
    "Pine Rd",
    "Elm St",
    "Harbor Blvd",
    "Industrial Pkwy",
    "Lake Dr",
]
CITIES = [
    ("San Jose", "CA", "95113"),
    ("Austin", "TX", "78701"),
    ("Denver", "CO", "80202"),
    ("Chicago", "IL", "60601"),
    ("Atlanta", "GA", "30303"),
    ("Seattle", "WA", "98101"),
    ("Boston", "MA", "02108"),
    ("Phoenix", "AZ", "85004"),
]
TERMS = [("N30", 30), ("N15", 15), ("N45", 45), ("N60", 60), ("Due on receipt", 0)]
INVOICE_TEXT = [
    "Monthly subscription",
    "Consulting services",
    "Hardware supply",
    "Maintenance contract",
    "Freight and handling",
    "Installation services",
    "Training workshop",
    "Support retainer",
]
LINE_TEXT = [
    "Consulting hours",
    "Software licence",
    "Hardware",
    "Shipping",
    "Installation",
    "Support plan",
    "Materials",
    "Travel reimbursement",
    "Setup fee",
    "Subscription",
]
REVENUE_ACCOUNTS = ["4000", "4100", "4200"]
METHODS = ["cash", "creditCard", "eft", "onlineAchDebit", "onlineChargeCard", "printedCheck"]
# Other receipts take fewer methods (the other-receipt enum).
RECEIPT_METHODS = ["cash", "creditCard", "eft", "printedCheck"]
ADJUSTMENT_TEXT = [
    ("Early payment discount", -1),
    ("Damaged goods credit", -1),
    ("Pricing correction", -1),
    ("Late payment fee", 1),
    ("Returned goods credit", -1),
    ("Finance charge", 1),
]
PAYERS = [
    "Interest - First National Bank",
    "Vendor refund - Staples",
    "Insurance claim - Hartford",
    "Sublease income - Suite 200",
    "Tax refund - IRS",
    "Asset sale - Used forklift",
]
JOURNALS = [
    ("GJ", "General journal entry"),
    ("ADJ", "Month-end adjustment"),
    ("PAYROLL", "Payroll accrual"),
    ("ACCR", "Expense accrual"),
    ("DEPR", "Depreciation"),
]
# Every published invoice state but ``reversal``, which is the mirror record a reversal adds.
INVOICE_STATES = ("draft", "posted", "partiallyPaid", "paid", "reversed", "selected", "noValue")
STATE_WEIGHTS = (5, 33, 15, 38, 5, 3, 1)
# Journal entries: every published state (the approval ones included).
JOURNAL_STATES = (
    "posted",
    "draft",
    "submitted",
    "partiallyApproved",
    "approved",
    "declined",
    "reversalPending",
    "reversed",
)
JOURNAL_STATE_WEIGHTS = (80, 5, 3, 2, 3, 1, 1, 5)
USERS = ("Admin", "jsmith", "mgarcia", "akim")
