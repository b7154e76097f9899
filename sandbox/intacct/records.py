"""Record mutations through the admin API and CLI: create, update, delete, and what follows.

A mutation stamps the audit fields (``audit.modifiedDateTime`` at one-second resolution, never
going back), keeps derived amounts consistent (invoice totals from lines, amounts paid from
complete payments' details) and reports the change so the company's trigger can fire. A change
to a line counts as a change ("set") of its parent, as in Intacct, whose triggers are per object.
"""

# Table and column names in SQL text come from objects.py, never from a request; values are bound.
# ruff: noqa: S608

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from .errors import AdminError
from .objects import (
    LINES_OF,
    OBJECT_TYPES,
    REF_TARGETS,
    SYSTEM_FIELDS,
    TODAY_DATES,
    Field,
    Kind,
    ObjectType,
)
from .render import nested_record_sql
from .store import MAX_KEY, Store, indexed

CENT = Decimal("0.01")
_INVOICE = OBJECT_TYPES["accounts-receivable/invoice"]
_PAYMENT = OBJECT_TYPES["accounts-receivable/payment"]
_DETAIL = OBJECT_TYPES["accounts-receivable/payment-detail"]
_DEPOSIT_DETAIL = OBJECT_TYPES["cash-management/deposit-detail"]
# Invoice states that follow the payments applied (draft, reversed, reversal, noValue do not).
_FOLLOWING_STATES = ("posted", "partiallyPaid", "paid", "selected")
# Payment states whose details count as paid.
PAID_STATES = ("complete", "reconciled")
# Parent -> (its total, the line amount summed into it) when the caller does not set the total.
_TOTALS = {
    "accounts-receivable/invoice": ("totalTxnAmount", "txnAmount"),
    "accounts-receivable/payment": ("txnCurrency.totalAmount", "txnCurrency.paymentAmount"),
    "accounts-receivable/adjustment": ("txnCurrency.totalEntered", "txnCurrency.amount"),
    "cash-management/deposit": ("txnTotalEntered", "txnTotalEntered"),
    "cash-management/other-receipt": ("txnTotalEntered", "txnAmount"),
}
# An AR payment's method as a deposit detail names it (the deposit-detail enum is its own).
DEPOSIT_METHODS = {
    "printedCheck": "check",
    "creditCard": "chargeCard",
    "onlineChargeCard": "onlineChargeCard",
    "cash": "cash",
    "eft": "recordTransfer",
    "onlineAchDebit": "recordTransfer",
    "paymentAcceptanceService": "recordTransfer",
}


@dataclass(frozen=True)
class Change:
    """What a trigger reports: the top-level object, action (add/set/delete), key and id."""

    company_id: str
    intacct_object: str
    action: str
    key: str
    record_id: str | None
    occurred_at: float


Notify = Callable[[Change], None]


def money(value: Any) -> str:
    """A decimal amount as Intacct's two-decimal string."""
    return str(Decimal(value).quantize(CENT))


def _invalid(message: str) -> AdminError:
    return AdminError(400, "invalid_record", message)


def _stored_value(field: Field, value: Any) -> Any:
    if value is None:
        return None
    try:
        if field.kind is Kind.BOOL:
            if not isinstance(value, bool):
                raise ValueError
            return int(value)
        if field.kind is Kind.NUMBER:
            if isinstance(value, bool):
                raise ValueError
            number = Decimal(str(value))
            return int(number) if number == number.to_integral_value() else float(number)
        if field.kind in (Kind.REF, Kind.INT):
            if isinstance(value, bool) or not str(value).strip().lstrip("-").isdigit():
                raise ValueError
            if abs(int(value)) > MAX_KEY:
                raise ValueError
            return int(value)
        if field.kind is Kind.DECIMAL:
            if isinstance(value, bool):
                raise ValueError
            return money(str(value))
        if field.kind is Kind.DATE:
            return date.fromisoformat(str(value)).isoformat()
    except (ValueError, InvalidOperation):
        raise _invalid(f"'{field.name}' has an invalid value {value!r}") from None
    if isinstance(value, dict | list):
        raise _invalid(f"'{field.name}' takes a single value")
    text = str(value)
    spec = field.spec
    if spec is not None and spec.enum is not None and text not in spec.enum:
        raise _invalid(f"'{field.name}' must be one of {', '.join(v for v in spec.enum if v)}, not {text!r}")
    if spec is not None and spec.max_length is not None and len(text) > spec.max_length:
        raise _invalid(f"'{field.name}' holds at most {spec.max_length} characters")
    return text


def flatten(obj: ObjectType, payload: dict[str, Any]) -> dict[str, Any]:
    """Nested or dotted input -> {dotted name: stored value}, refusing unknown and system fields."""
    flat: dict[str, Any] = {}

    def walk(prefix: str, node: dict[str, Any]) -> None:
        for name, value in node.items():
            dotted = f"{prefix}{name}"
            if isinstance(value, dict) and dotted not in obj.by_name:
                walk(dotted + ".", value)
            else:
                flat[dotted] = value

    walk("", {k: v for k, v in payload.items() if k != obj.children_payload})
    values = {}
    for name, value in flat.items():
        field = obj.by_name.get(name)
        if field is None or not field.stored:
            raise _invalid(f"'{name}' is not a field of {obj.path}")
        if name in SYSTEM_FIELDS:
            raise _invalid(f"'{name}' is set by the simulator")
        values[name] = _stored_value(field, value)
    return values


# Per object type (by identity; the type is kept so its id is never reused): its defaults as
# stored values and the dates a new record gets today's date for. Built once, not per insert.
_PLANS: dict[int, tuple[ObjectType, dict[str, Any], tuple[str, ...]]] = {}


def _insert_plan(obj: ObjectType) -> tuple[dict[str, Any], tuple[str, ...]]:
    plan = _PLANS.get(id(obj))
    if plan is None:
        defaults = {name: _stored_value(obj.by_name[name], v) for name, v in obj.defaults.items()}
        today = tuple(f.name for f in obj.fields if f.kind is Kind.DATE and f.name in TODAY_DATES)
        plan = _PLANS[id(obj)] = (obj, defaults, today)
    return plan[1], plan[2]


class RecordService:
    """Creates, updates and deletes records in one transaction each, then notifies."""

    def __init__(
        self, store: Store, *, clock: Callable[[], float], notify: Notify, actor: str = "Admin"
    ) -> None:
        self._store = store
        self._clock = clock
        self._notify = notify
        self._actor = actor

    # -- public -----------------------------------------------------------------------------

    def get(self, company_id: str, obj: ObjectType, key: int) -> dict[str, Any]:
        """One record with its lines, as the admin API shows it."""
        with self._store.read() as conn:
            return self._render(conn, company_id, obj, key)

    def create(self, company_id: str, obj: ObjectType, payload: dict[str, Any]) -> dict[str, Any]:
        """Create a record (with its lines) and fire the trigger it concerns."""
        changes: list[Change] = []
        with self._store.write() as conn:
            self._require_company(conn, company_id)
            key = self._insert(conn, company_id, obj, payload, changes)
            record = self._render(conn, company_id, obj, key)
        self._publish(changes)
        return record

    def update(self, company_id: str, obj: ObjectType, key: int, payload: dict[str, Any]) -> dict[str, Any]:
        """Change some fields (and, if given, replace the lines); fires the trigger (``set``)."""
        changes: list[Change] = []
        with self._store.write() as conn:
            self._require_company(conn, company_id)
            current = self._existing(conn, company_id, obj, key)
            values = flatten(obj, payload)
            if (
                obj.parent_field
                and obj.parent_field in values
                and values[obj.parent_field] != current[obj.parent_field]
            ):
                raise _invalid(f"a line cannot move to another parent ({obj.parent_field})")
            self._check_refs(conn, company_id, obj, values)
            self._check_unique_id(conn, company_id, obj, values.get("id"), key)
            lines = payload.get(obj.children_payload) if obj.children_payload else None
            invoices = self._affected_invoices(conn, company_id, obj, key)
            if lines is not None:
                self._replace_children(conn, company_id, obj, key, lines, changes)
            values.update(self._derived(conn, company_id, obj, key, {**current, **values}, values, lines))
            values.update(self._stamp(current["audit.modifiedDateTime"]))
            self._store.update(conn, obj, company_id, key, values)
            invoices |= self._affected_invoices(conn, company_id, obj, key)
            self._refresh_invoices(conn, company_id, invoices)
            self._changed(conn, company_id, obj, key, "set", changes)
            record = self._render(conn, company_id, obj, key)
        self._publish(changes)
        return record

    def delete(self, company_id: str, obj: ObjectType, key: int) -> None:
        """Delete a record and its lines; fires ``delete`` (a line: ``set`` of its parent)."""
        changes: list[Change] = []
        with self._store.write() as conn:
            self._require_company(conn, company_id)
            current = self._existing(conn, company_id, obj, key)
            invoices = self._affected_invoices(conn, company_id, obj, key)
            line_type = LINES_OF.get(obj.path)
            if line_type is not None:
                children = self._store.keys_where(conn, line_type, company_id, line_type.parent_field, key)
                if children:
                    self._store.delete(conn, line_type, company_id, children)
            self._store.delete(conn, obj, company_id, [key])
            self._refresh_invoices(conn, company_id, invoices)
            if obj.parent_path:  # a line went: its parent changed
                self._line_changed(conn, company_id, obj, current[obj.parent_field], changes)
            else:
                changes.append(self._change(company_id, obj, key, current["id"], "delete"))
        self._publish(changes)

    def insert_in(
        self, conn: sqlite3.Connection, company_id: str, obj: ObjectType, payload: dict[str, Any]
    ) -> tuple[int, list[Change]]:
        """Create a record inside the caller's write transaction; :meth:`publish` the changes after it."""
        changes: list[Change] = []
        key = self._insert(conn, company_id, obj, payload, changes)
        return key, changes

    def set_in(
        self, conn: sqlite3.Connection, company_id: str, obj: ObjectType, key: int, values: dict[str, Any]
    ) -> list[Change]:
        """Set stored fields (dotted names) inside the caller's transaction; invoices follow."""
        current = self._existing(conn, company_id, obj, key)
        invoices = self._affected_invoices(conn, company_id, obj, key)
        self._store.update(
            conn, obj, company_id, key, {**values, **self._stamp(current["audit.modifiedDateTime"])}
        )
        self._refresh_invoices(conn, company_id, invoices)
        changes: list[Change] = []
        self._changed(conn, company_id, obj, key, "set", changes)
        return changes

    def publish(self, changes: list[Change]) -> None:
        """Fire the triggers of changes made by :meth:`insert_in` or :meth:`set_in`, once committed."""
        self._publish(changes)

    # -- steps ------------------------------------------------------------------------------

    def _insert(
        self,
        conn: sqlite3.Connection,
        company_id: str,
        obj: ObjectType,
        payload: Any,
        changes: list[Change],
        *,
        position: int | None = None,
    ) -> int:
        """Insert one record (and its lines); ``position`` is set for a line created with its parent."""
        if not isinstance(payload, dict):
            raise _invalid(f"a {obj.path} must be a JSON object")
        defaults, today_dates = _insert_plan(obj)
        values = dict(defaults)
        given = flatten(obj, payload)
        values.update(given)
        today = datetime.fromtimestamp(self._clock(), UTC).date().isoformat()
        for name in today_dates:
            values.setdefault(name, today)
        if obj.parent_field and "lineNumber" in obj.by_name and values.get("lineNumber") is None:
            values["lineNumber"] = position or self._next_line_number(conn, company_id, obj, values)
        if obj.parent_field and values.get(obj.parent_field) is None:
            raise _invalid(f"a {obj.path} needs its parent's key ({obj.parent_field})")
        self._check_refs(conn, company_id, obj, values)
        if obj is _DEPOSIT_DETAIL:
            key = self._deposit_detail(conn, company_id, values)
        else:
            key = self._store.reserve_keys(conn, company_id, obj, 1)
        if not values.get("id"):
            mirrored = values.get(obj.id_field) if obj.id_field else None
            values["id"] = mirrored or (f"{obj.id_prefix}-{key:06d}" if obj.id_prefix else str(key))
        if obj.id_field and not values.get(obj.id_field):
            values[obj.id_field] = values["id"]
        self._check_unique_id(conn, company_id, obj, values["id"], None)
        now = int(self._clock())
        values.update({"audit.createdDateTime": now, "audit.createdBy": self._actor})
        values.update(self._stamp(None))
        columns = ["key", *values]
        self._store.insert_many(
            conn, obj, [obj.by_name[n].column for n in columns], [(company_id, key, *values.values())]
        )
        lines = payload.get(obj.children_payload) if obj.children_payload else None
        if lines is not None:
            self._replace_children(conn, company_id, obj, key, lines, changes)
        derived = self._derived(conn, company_id, obj, key, values, given, lines)
        if derived:
            self._store.update(conn, obj, company_id, key, derived)
        self._refresh_invoices(conn, company_id, self._affected_invoices(conn, company_id, obj, key))
        if obj.parent_path:
            if position is None:  # a line created on its own: its parent changed
                self._line_changed(conn, company_id, obj, values[obj.parent_field], changes)
        else:
            changes.append(self._change(company_id, obj, key, values["id"], "add"))
        return key

    def _next_line_number(
        self, conn: sqlite3.Connection, company_id: str, obj: ObjectType, values: dict[str, Any]
    ) -> int | None:
        parent_key = values.get(obj.parent_field)
        if parent_key is None:
            return None
        last = conn.execute(
            f"SELECT COALESCE(MAX(CAST(lineNumber AS INTEGER)), 0) FROM {indexed(obj, obj.parent_field)} "
            f"WHERE company_id = ? AND {obj.by_name[obj.parent_field].column} = ?",
            (company_id, parent_key),
        ).fetchone()[0]
        return last + 1

    def _replace_children(
        self,
        conn: sqlite3.Connection,
        company_id: str,
        obj: ObjectType,
        key: int,
        lines: Any,
        changes: list[Change],
    ) -> None:
        """Replace a parent's lines with ``lines`` (created with it: no trigger of their own)."""
        line_type = LINES_OF[obj.path]
        if not isinstance(lines, list):
            raise _invalid(f"'{obj.children_payload}' must be a list")
        existing = self._store.keys_where(conn, line_type, company_id, line_type.parent_field, key)
        if existing:
            self._store.delete(conn, line_type, company_id, existing)
        for number, line in enumerate(lines, start=1):
            if not isinstance(line, dict):
                raise _invalid(f"each of '{obj.children_payload}' must be an object")
            parent_name = line_type.parent_field.split(".")[0]
            self._insert(
                conn, company_id, line_type, {**line, parent_name: {"key": key}}, changes, position=number
            )

    def _derived(
        self,
        conn: sqlite3.Connection,
        company_id: str,
        obj: ObjectType,
        key: int,
        record: dict[str, Any],
        given: dict[str, Any],
        lines: Any,
    ) -> dict[str, Any]:
        """Totals that follow from lines, unless the caller set them explicitly."""
        if obj.path not in _TOTALS:
            return {}
        total_field, line_field = _TOTALS[obj.path]
        derived: dict[str, Any] = {}
        if lines is not None and total_field not in given:
            line_type = LINES_OF[obj.path]
            amounts = conn.execute(
                f"SELECT {line_type.by_name[line_field].column} FROM {indexed(line_type, line_type.parent_field)} "
                f"WHERE company_id = ? AND {line_type.by_name[line_type.parent_field].column} = ?",
                (company_id, key),
            ).fetchall()
            derived[total_field] = money(sum((Decimal(a or 0) for (a,) in amounts), Decimal(0)))
        elif record.get(total_field) is None:
            derived[total_field] = "0.00"
        if obj is _INVOICE:
            total = Decimal(derived.get("totalTxnAmount") or record.get("totalTxnAmount") or 0)
            paid = Decimal(record.get("paymentInformation.totalTxnAmountPaid") or 0)
            derived.setdefault("paymentInformation.totalTxnAmountPaid", money(paid))
            if "totalTxnAmountDue" not in given:
                derived["totalTxnAmountDue"] = money(total - paid)
        return derived

    def _deposit_detail(self, conn: sqlite3.Connection, company_id: str, values: dict[str, Any]) -> int:
        """A deposit detail's key is the deposited AR payment's key (intacct-rest.md's convention);
        what it shows of the payment is copied from it."""
        record_id = values.get("id")
        if not isinstance(record_id, str) or not record_id.isdigit() or int(record_id) > MAX_KEY:
            raise _invalid("a deposit detail's id must be the key of the AR payment deposited")
        payment = self._store.fetch(conn, _PAYMENT, company_id, int(record_id))
        if payment is None:
            raise AdminError(422, "unknown_reference", f"no AR payment {record_id} in {company_id}")
        if self._store.fetch(conn, _DEPOSIT_DETAIL, company_id, int(record_id)) is not None:
            raise AdminError(409, "duplicate_id", f"payment {record_id} is already in a deposit")
        copied = {
            "customer.id": payment["customer.id"],
            "txnTotalEntered": payment["txnCurrency.totalAmount"],
            "currency": payment["txnCurrency.currency"],
            "documentNumber": payment["documentNumber"],
            "paymentMethod": DEPOSIT_METHODS.get(payment["paymentMethod"] or ""),
        }
        for name, value in copied.items():
            values.setdefault(name, value)
        return int(record_id)

    def _affected_invoices(
        self, conn: sqlite3.Connection, company_id: str, obj: ObjectType, key: int
    ) -> set[int]:
        """Invoices whose amount paid depends on this record (a payment or payment detail)."""
        if obj is _DETAIL:
            row = conn.execute(
                f"SELECT arInvoice__key FROM {_DETAIL.table} WHERE company_id = ? AND key = ?",
                (company_id, key),
            ).fetchone()
            return {row[0]} if row and row[0] is not None else set()
        if obj is _PAYMENT:
            rows = conn.execute(
                f"SELECT arInvoice__key FROM {indexed(_DETAIL, 'arPayment.key')} "
                "WHERE company_id = ? AND arPayment__key = ?",
                (company_id, key),
            ).fetchall()
            return {r[0] for r in rows if r[0] is not None}
        return set()

    def refresh_invoices(self, conn: sqlite3.Connection, company_id: str, keys: set[int]) -> None:
        """Recompute invoices' amounts paid and due inside the caller's transaction."""
        self._refresh_invoices(conn, company_id, keys)

    def _refresh_invoices(self, conn: sqlite3.Connection, company_id: str, keys: set[int]) -> None:
        """Recompute amounts paid/due and the state of invoices from complete (or reconciled) payments.

        Like Intacct, applying a payment changes the invoice without firing the invoice's
        trigger: the payment's event is what tells a listener to refresh those invoices.
        """
        for key in sorted(keys):
            invoice = self._store.fetch(conn, _INVOICE, company_id, key)
            if invoice is None:
                continue
            rows = conn.execute(
                f"SELECT d.txnCurrency__paymentAmount FROM {indexed(_DETAIL, 'arInvoice.key', 'd')} "
                f"JOIN {_PAYMENT.table} p "
                "ON p.company_id = d.company_id AND p.key = d.arPayment__key "
                f"WHERE d.company_id = ? AND d.arInvoice__key = ? AND p.state IN {PAID_STATES!r}",
                (company_id, key),
            ).fetchall()
            paid = sum((Decimal(a or 0) for (a,) in rows), Decimal(0))
            total = Decimal(invoice["totalTxnAmount"] or 0)
            values: dict[str, Any] = {
                "paymentInformation.totalTxnAmountPaid": money(paid),
                "totalTxnAmountDue": money(total - paid),
            }
            state = invoice["state"]
            if state in _FOLLOWING_STATES:
                unpaid = "selected" if state == "selected" else "posted"
                values["state"] = (
                    "paid" if total > 0 and paid >= total else "partiallyPaid" if paid > 0 else unpaid
                )
            if any(invoice[name] != value for name, value in values.items()):
                values.update(self._stamp(invoice["audit.modifiedDateTime"]))
                self._store.update(conn, _INVOICE, company_id, key, values)

    # -- helpers ----------------------------------------------------------------------------

    def _stamp(self, previous: int | None) -> dict[str, Any]:
        # One-second resolution, and never earlier than the last modification.
        now = int(self._clock())
        return {"audit.modifiedDateTime": max(now, previous or 0), "audit.modifiedBy": self._actor}

    def _changed(
        self,
        conn: sqlite3.Connection,
        company_id: str,
        obj: ObjectType,
        key: int,
        action: str,
        changes: list[Change],
    ) -> None:
        if obj.parent_path:
            parent_key = self._store.fetch(conn, obj, company_id, key)[obj.parent_field]
            self._line_changed(conn, company_id, obj, parent_key, changes)
            return
        record = self._store.fetch(conn, obj, company_id, key)
        changes.append(self._change(company_id, obj, key, record["id"] if record else None, action))

    def _line_changed(
        self,
        conn: sqlite3.Connection,
        company_id: str,
        line_type: ObjectType,
        parent_key: int,
        changes: list[Change],
    ) -> None:
        """A line changed on its own: its parent's totals follow, it is modified, its trigger fires."""
        parent = OBJECT_TYPES[line_type.parent_path]
        current = self._store.fetch(conn, parent, company_id, parent_key)
        if current is None:
            return
        values = self._derived(conn, company_id, parent, parent_key, current, {}, lines=True)
        values.update(self._stamp(current["audit.modifiedDateTime"]))
        self._store.update(conn, parent, company_id, parent_key, values)
        changes.append(self._change(company_id, parent, parent_key, current["id"], "set"))

    def _change(
        self, company_id: str, obj: ObjectType, key: int, record_id: str | None, action: str
    ) -> Change:
        return Change(company_id, obj.intacct_object or "", action, str(key), record_id, self._clock())

    def _publish(self, changes: list[Change]) -> None:
        seen = set()
        for change in changes:
            # One event per record and action, even when several lines of it changed.
            identity = (change.intacct_object, change.action, change.key)
            if identity not in seen:
                seen.add(identity)
                self._notify(change)

    def _require_company(self, conn: sqlite3.Connection, company_id: str) -> None:
        if conn.execute("SELECT 1 FROM companies WHERE company_id = ?", (company_id,)).fetchone() is None:
            raise AdminError(404, "unknown_company", f"no company {company_id!r}")

    def _existing(
        self, conn: sqlite3.Connection, company_id: str, obj: ObjectType, key: int
    ) -> dict[str, Any]:
        current = self._store.fetch(conn, obj, company_id, key)
        if current is None:
            raise AdminError(404, "unknown_record", f"no {obj.path} with key {key} in {company_id}")
        return current

    def _check_refs(
        self, conn: sqlite3.Connection, company_id: str, obj: ObjectType, values: dict[str, Any]
    ) -> None:
        for field in obj.ref_fields:
            key = values.get(field.name)
            if (
                key is not None
                and self._store.fetch(
                    conn, OBJECT_TYPES[REF_TARGETS[(obj.path, field.name)]], company_id, key
                )
                is None
            ):
                raise AdminError(
                    422, "unknown_reference", f"{field.name} {key} does not exist in {company_id}"
                )

    def _check_unique_id(
        self, conn: sqlite3.Connection, company_id: str, obj: ObjectType, record_id: Any, key: int | None
    ) -> None:
        if not obj.unique_id or record_id is None:
            return
        row = conn.execute(
            f"SELECT key FROM {obj.table} WHERE company_id = ? AND id = ? AND key IS NOT ?",
            (company_id, record_id, key),
        ).fetchone()
        if row is not None:
            raise AdminError(409, "duplicate_id", f"{obj.path} {record_id!r} already exists (key {row[0]})")

    def _render(self, conn: sqlite3.Connection, company_id: str, obj: ObjectType, key: int) -> dict[str, Any]:
        row = conn.execute(
            f"SELECT {nested_record_sql(obj)} FROM {obj.table} WHERE company_id = ? AND key = ?",
            (company_id, key),
        ).fetchone()
        if row is None:
            raise AdminError(404, "unknown_record", f"no {obj.path} with key {key} in {company_id}")
        record = json.loads(row[0])
        line_type = LINES_OF.get(obj.path)
        if line_type is not None:
            lines = conn.execute(
                f"SELECT {nested_record_sql(line_type)} FROM {indexed(line_type, line_type.parent_field)} "
                f"WHERE company_id = ? AND {line_type.parent_field.replace('.', '__')} = ? ORDER BY key",
                (company_id, key),
            ).fetchall()
            record[obj.children_payload] = [json.loads(line) for (line,) in lines]
        return record
