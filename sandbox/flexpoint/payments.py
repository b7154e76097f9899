"""Payments FlexPoint collected, and the posting reports the service sends back about each.

A payment is recorded through the admin API (``POST /sandbox/accounts/<id>/payments``, what
``flexsync sandbox flexpoint pay`` does before publishing ``payment.post``); only a known payment
takes ``PUT /v1/accounts/<id>/payment-postings/<paymentId>``. Every report is kept in arrival
order; the last one is the posting's state (last report wins). A report repeating an earlier
one's Idempotency-Key and body is kept too, marked ``replayed``, so a test can count them.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sandbox.flexpoint.store import Store

METHODS = ("ach", "card", "check", "wire", "cash")
_PATH_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_MONEY = re.compile(r"^[0-9]{1,13}(\.[0-9]{1,2})?$")
_DATE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")


class PaymentInvalid(ValueError):
    """A collected payment the admin API cannot record; the message names the field."""


@dataclass(frozen=True)
class Report:
    """What storing one posting report did."""

    found: bool  # the payment is known
    replayed: bool  # same Idempotency-Key and body as an earlier report
    connection_id: str | None = None  # set when refused: the payment's connection, not the report's


def _text(
    body: dict[str, Any], name: str, *, pattern: re.Pattern[str] | None = None, optional: bool = False
) -> Any:
    value = body.get(name)
    if value is None and optional:
        return None
    if not isinstance(value, str) or not value or (pattern is not None and not pattern.match(value)):
        raise PaymentInvalid(
            f"{name}: required, a string" + (f" matching {pattern.pattern}" if pattern else "")
        )
    return value


def _money(value: Any, name: str) -> Decimal:
    if not isinstance(value, str) or not _MONEY.match(value) or Decimal(value) <= 0:
        raise PaymentInvalid(f'{name}: a positive amount as a string with at most 2 decimals, like "100.00"')
    return Decimal(value)


def validate_payment(body: Any) -> dict[str, Any]:
    """A collected payment in the message's field names, checked; PaymentInvalid says what is wrong."""
    if not isinstance(body, dict):
        raise PaymentInvalid("body: must be a JSON object")
    known = {
        "paymentId",
        "connectionId",
        "customerId",
        "receivedOn",
        "amount",
        "currency",
        "method",
        "depositBankAccountId",
        "undepositedGLAccountId",
        "allocations",
        "memo",
    }
    unknown = sorted(set(body) - known)
    if unknown:
        raise PaymentInvalid(f"{unknown[0]}: unknown field (known: {', '.join(sorted(known))})")
    _text(body, "paymentId", pattern=_PATH_ID)
    _text(body, "connectionId")
    _text(body, "customerId")
    _text(body, "receivedOn", pattern=_DATE)
    amount = _money(body.get("amount"), "amount")
    _text(body, "currency", pattern=re.compile(r"^[A-Z]{3}$"))
    if body.get("method") not in METHODS:
        raise PaymentInvalid(f"method: one of {', '.join(METHODS)}")
    bank = _text(body, "depositBankAccountId", optional=True)
    undeposited = _text(body, "undepositedGLAccountId", optional=True)
    if (bank is None) == (undeposited is None):
        raise PaymentInvalid("depositBankAccountId: give exactly one of it and undepositedGLAccountId")
    allocations = body.get("allocations")
    if not isinstance(allocations, list):
        raise PaymentInvalid("allocations: a list of {invoiceExternalId, amount}")
    total = Decimal(0)
    for number, allocation in enumerate(allocations):
        if not isinstance(allocation, dict) or not isinstance(allocation.get("invoiceExternalId"), str):
            raise PaymentInvalid(f"allocations[{number}]: needs invoiceExternalId and amount")
        total += _money(allocation.get("amount"), f"allocations[{number}].amount")
    if total > amount:
        raise PaymentInvalid(f"allocations: they add up to {total}, more than the amount {amount}")
    _text(body, "memo", optional=True)
    return {"memo": None, **body}


class PaymentLedger:
    """The collected payments and their posting reports, in the simulator's SQLite file."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def record(self, account_id: str, payment: dict[str, Any]) -> bool | None:
        """Record a collected payment: True if new, False if the same was recorded, None if it differs."""
        text = json.dumps(payment, sort_keys=True)
        with self._store.transaction() as conn:
            self._store.ensure_account(conn, account_id, create=True)
            row = conn.execute(
                "SELECT body FROM payments WHERE account_id = ? AND payment_id = ?",
                (account_id, payment["paymentId"]),
            ).fetchone()
            if row is not None:
                return False if row[0] == text else None
            conn.execute(
                "INSERT INTO payments (account_id, payment_id, body, created_at) VALUES (?, ?, ?, ?)",
                (account_id, payment["paymentId"], text, self._store.now()),
            )
            return True

    def request_reverse(self, account_id: str, payment_id: str, reversal: dict[str, Any]) -> bool:
        """Note that FlexPoint asked to reverse a payment; False if the payment is unknown."""
        with self._store.transaction() as conn:
            return (
                conn.execute(
                    "UPDATE payments SET reverse = ? WHERE account_id = ? AND payment_id = ?",
                    (json.dumps(reversal, sort_keys=True), account_id, payment_id),
                ).rowcount
                > 0
            )

    def report(self, account_id: str, payment_id: str, posting: str, idempotency_key: str) -> Report:
        """Store one posting report (``posting``: canonical JSON) as the payment's current state."""
        with self._store.transaction() as conn:
            known = conn.execute(
                "SELECT json_extract(body, '$.connectionId') FROM payments WHERE account_id = ? AND payment_id = ?",
                (account_id, payment_id),
            ).fetchone()
            if known is None:
                return Report(found=False, replayed=False)
            if known[0] != json.loads(posting)["connectionId"]:
                return Report(found=True, replayed=False, connection_id=known[0])
            last_seq, seen = conn.execute(
                "SELECT COALESCE(MAX(seq), 0), COALESCE(MAX(idempotency_key = ? AND body = ?), 0) "
                "FROM payment_postings WHERE account_id = ? AND payment_id = ?",
                (idempotency_key, posting, account_id, payment_id),
            ).fetchone()
            conn.execute(
                "INSERT INTO payment_postings (account_id, payment_id, seq, idempotency_key, body, replayed,"
                " received_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    account_id,
                    payment_id,
                    last_seq + 1,
                    idempotency_key,
                    posting,
                    int(bool(seen)),
                    self._store.now(),
                ),
            )
            return Report(found=True, replayed=bool(seen))

    def current(self, account_id: str, payment_id: str) -> str | None:
        """The last reported PaymentPosting (JSON text), or None."""
        with self._store.connection() as conn:
            row = conn.execute(
                "SELECT body FROM payment_postings WHERE account_id = ? AND payment_id = ? ORDER BY seq DESC LIMIT 1",
                (account_id, payment_id),
            ).fetchone()
        return row[0] if row else None

    def payments(self, account_id: str, payment_id: str | None = None) -> list[dict[str, Any]]:
        """Collected payments with their reversal request, last posting state and report history."""
        sql = "SELECT payment_id, body, reverse, created_at FROM payments WHERE account_id = ?"
        params: tuple[Any, ...] = (account_id,)
        if payment_id is not None:
            sql, params = sql + " AND payment_id = ?", (*params, payment_id)
        with self._store.connection() as conn:
            rows = conn.execute(sql + " ORDER BY created_at, payment_id", params).fetchall()
            result = []
            for pid, body, reverse, created in rows:
                history = [
                    {
                        "idempotencyKey": key,
                        "replayed": bool(replayed),
                        "receivedAt": at,
                        **json.loads(posting),
                    }
                    for key, posting, replayed, at in conn.execute(
                        "SELECT idempotency_key, body, replayed, received_at FROM payment_postings "
                        "WHERE account_id = ? AND payment_id = ? ORDER BY seq",
                        (account_id, pid),
                    )
                ]
                result.append(
                    {
                        "payment": json.loads(body),
                        "reverseRequested": json.loads(reverse) if reverse else None,
                        "createdAt": created,
                        "state": history[-1]["state"] if history else None,
                        "lastPosting": history[-1] if history else None,
                        "reports": history,
                    }
                )
        return result
