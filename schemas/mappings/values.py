"""Intacct's values in FlexPoint's formats: money, calendar dates, timestamps, last 4 digits.

Each converter takes what Intacct (or a JSON decoder) may hand over and returns FlexPoint's
text, or raises ValueError with a message fit for an operator. Messages quote the bad value
shortened, except for account numbers, which are never quoted anywhere.

Rounding: amounts with more than 2 decimals (a 3-decimal currency, a computed amount) are
quantized to cents with ROUND_HALF_EVEN, the IEEE 754 and ``decimal`` default, which the
sandbox's simulators also use. Half-even carries no upward bias, so the totals of many
rounded lines drift less than with half-up. Amounts are never floats here.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import ROUND_HALF_EVEN, Context, Decimal, InvalidOperation
from typing import Any

CENT = Decimal("0.01")
# Enough digits for any amount a ledger holds; beyond it quantize signals InvalidOperation.
_MONEY_CONTEXT = Context(prec=34, rounding=ROUND_HALF_EVEN)
# ASCII digits only: Python's \d and str.isdigit() also accept other scripts' digits.
_AMOUNT = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)")
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
# RFC 3339 date-time; a space for the T and a missing offset are tolerated (see utc_timestamp).
_TIMESTAMP = re.compile(
    r"(?P<date>[0-9]{4}-[0-9]{2}-[0-9]{2})[Tt ](?P<h>[0-9]{2}):(?P<m>[0-9]{2}):(?P<s>[0-9]{2})"
    r"(?:\.(?P<frac>[0-9]+))?(?P<tz>[Zz]|[+-][0-9]{2}:[0-9]{2})?"
)
_SHOWN = 40


def shown(value: Any) -> str:
    """A bad value as an error message quotes it: repr, cut short."""
    text = repr(value)
    return text if len(text) <= _SHOWN else text[: _SHOWN - 3] + "..."


def money(value: Any) -> str:
    """An Intacct amount (a decimal string, or a JSON number) as a 2-decimal string."""
    if isinstance(value, bool):
        raise ValueError(f"not an amount: {shown(value)}")
    if isinstance(value, float):
        # repr() is the shortest text that round-trips: the number as the JSON spelled it.
        number = Decimal(repr(value))
    elif isinstance(value, int | Decimal):
        number = Decimal(value)
    elif isinstance(value, str) and _AMOUNT.fullmatch(value.strip()):
        number = Decimal(value.strip())
    else:
        raise ValueError(f"not a decimal amount: {shown(value)}")
    if not number.is_finite():
        raise ValueError(f"not a finite amount: {shown(value)}")
    try:
        cents = number.quantize(CENT, context=_MONEY_CONTEXT)
    except InvalidOperation:
        raise ValueError(f"amount out of range: {shown(value)}") from None
    # -0.004 rounds to -0.00; FlexPoint should see one zero, not two.
    return f"{cents:f}" if cents else "0.00"


def calendar_date(value: Any) -> str:
    """An Intacct date (``YYYY-MM-DD``, or a date-time) as ``YYYY-MM-DD``.

    A date-time keeps the calendar day it was written with: accounting dates are days, and
    converting to UTC could move an invoice to the day before.
    """
    if isinstance(value, datetime):
        return value.date().isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, str):
        text = value.strip()
        try:
            if _DATE.fullmatch(text):
                return date.fromisoformat(text).isoformat()
            if _TIMESTAMP.fullmatch(text):
                return _parse_timestamp(text).date().isoformat()
        except ValueError:
            pass
    raise ValueError(f"not a date (YYYY-MM-DD): {shown(value)}")


def utc_timestamp(value: Any) -> str:
    """A moment (RFC 3339 text, datetime or Unix seconds) as RFC 3339 UTC with ``Z``.

    A time without an offset is taken as UTC: Intacct's REST timestamps carry ``Z``, and
    reading offset-less ones the same way every time keeps a record's versions in order.
    """
    try:
        if isinstance(value, datetime):
            moment = value if value.tzinfo else value.replace(tzinfo=UTC)
        elif isinstance(value, int | float) and not isinstance(value, bool):
            moment = datetime.fromtimestamp(value, UTC)
        elif isinstance(value, str) and _TIMESTAMP.fullmatch(value.strip()):
            moment = _parse_timestamp(value.strip())
        else:
            raise ValueError
        moment = moment.astimezone(UTC)
    except (ValueError, OverflowError, OSError):
        raise ValueError(f"not an RFC 3339 date-time: {shown(value)}") from None
    fraction = f"{moment.microsecond:06d}".rstrip("0")
    return f"{moment:%Y-%m-%dT%H:%M:%S}{'.' + fraction if fraction else ''}Z"


# The date formats a Sage Intacct user may choose (month or day first, or year first; "/", "-" or
# "." between), with an optional time, 24-hour or with AM/PM: how merge fields such as
# {!ARINVOICE.WHENMODIFIED!} render a moment, in the user's time zone, which they do not say.
_INTACCT_DATE_TIME = re.compile(
    r"(?P<a>[0-9]{1,4})(?P<sep>[/.-])(?P<b>[0-9]{1,2})(?P=sep)(?P<c>[0-9]{1,4})"
    r"(?:[ T]+(?P<h>[0-9]{1,2}):(?P<m>[0-9]{2})(?::(?P<s>[0-9]{2}))?\s*(?P<half>[AaPp][Mm])?)?"
)


def intacct_date_time(text: Any) -> datetime | None:
    """A moment in one of Intacct's own date formats, read as UTC; None when it is not one.

    None as well when day and month cannot be told apart (both at most 12 and different):
    the user's format preference is not in the text.
    """
    if not isinstance(text, str):
        return None
    match = _INTACCT_DATE_TIME.fullmatch(text.strip())
    if match is None:
        return None
    a, b, c = match["a"], int(match["b"]), match["c"]
    if len(a) == 4 and len(c) <= 2:
        year, month, day = int(a), b, int(c)
    elif len(c) == 4 and len(a) <= 2:
        first, year = int(a), int(c)
        if first > 12 >= b:
            day, month = first, b
        elif b > 12 >= first or first == b:
            month, day = first, b
        else:
            return None
    else:
        return None
    hour, minute, second = int(match["h"] or 0), int(match["m"] or 0), int(match["s"] or 0)
    if match["half"]:
        if not 1 <= hour <= 12:
            return None
        hour = hour % 12 + (12 if match["half"].lower() == "pm" else 0)
    try:
        return datetime(year, month, day, hour, minute, second, tzinfo=UTC)
    except ValueError:
        return None


def last4(account_number: Any) -> str | None:
    """The last 4 digits of an account number, or None when it has fewer than 4.

    Spaces, dashes and letters are dropped first. Errors never quote the number.
    """
    if isinstance(account_number, int) and not isinstance(account_number, bool):
        account_number = str(account_number)
    if not isinstance(account_number, str):
        raise ValueError("not an account number (expected text)")
    digits = "".join(c for c in account_number if "0" <= c <= "9")
    return digits[-4:] if len(digits) >= 4 else None


def _parse_timestamp(text: str) -> datetime:
    match = _TIMESTAMP.fullmatch(text)
    if match is None:
        raise ValueError(text)
    tz = (match["tz"] or "Z").upper()
    offset = timedelta(0)
    if tz != "Z":
        hours, minutes = int(tz[1:3]), int(tz[4:6])
        if hours > 23 or minutes > 59:
            raise ValueError(text)
        offset = timedelta(hours=hours, minutes=minutes) * (1 if tz[0] == "+" else -1)
    day = date.fromisoformat(match["date"])
    # Digits past microseconds cannot matter: Intacct's clock has one-second resolution.
    micros = int((match["frac"] or "").ljust(6, "0")[:6])
    return datetime(
        day.year,
        day.month,
        day.day,
        int(match["h"]),
        int(match["m"]),
        int(match["s"]),
        micros,
        tzinfo=timezone(offset),
    )
