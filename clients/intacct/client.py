"""The Sage Intacct REST client: reads (single and batch GET, the query service) for one connection.

Each read is one or more calls through :class:`transport.Transport`, which holds the company's
concurrency slot, renews tokens and retries; this module knows Intacct's read endpoints.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import requests

from config.settings import Settings
from reliability.limiter import CompanyLimiter

from .errors import AREAS
from .tokens import IntacctConnection, TokenProvider
from .transport import Transport, build_session

MAX_BATCH_KEYS = 500  # intacct-rest.md: a batch GET takes at most 500 keys
QUERY_PATH = "services/core/query"
# intacct-rest.md "Writing payments": sent on every create and reverse (Sage lists 409 for a repeat).
IDEMPOTENCY_HEADER = "Idempotency-Key"
# One cheap read per permission area; provisioning probes each to name every missing area.
AREA_PROBES = {
    "company": "company-config/entity",
    "general-ledger": "general-ledger/account",
    "accounts-receivable": "accounts-receivable/customer",
    "cash-management": "cash-management/checking-account",
}


@dataclass(frozen=True)
class Page:
    """One page of query rows; ``next_start`` is the 1-based start of the next page, or None."""

    rows: list[dict[str, Any]]
    total_count: int
    next_start: int | None


class IntacctClient:
    """Reads Intacct records for a connection, under the company's cap, with retries and typed errors.

    Failures are :class:`errors.IntacctError`, each Transient (retry later) or Permanent.
    ``on_call(company_id, object_path, status, seconds)`` is called after every HTTP request
    (status 0 when no answer came) so workers can count calls and latencies. ``clock``,
    ``sleep`` and ``rng`` drive the backoff (tests inject them); ``timeouts`` are (connect,
    read) seconds and must stay below the slots' lease. These go to :class:`Transport`.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        tokens: TokenProvider,
        slots: CompanyLimiter,
        session: requests.Session | None = None,
        batch_size: int = MAX_BATCH_KEYS,
        **transport: Any,
    ) -> None:
        if not 1 <= batch_size <= MAX_BATCH_KEYS:
            raise ValueError(f"batch_size must lie between 1 and {MAX_BATCH_KEYS}")
        self._session = session if session is not None else build_session()
        # clock, sleep, rng, on_call, timeouts, slot_timeout, retry: the transport's own options.
        self._transport = Transport(settings, tokens=tokens, slots=slots, session=self._session, **transport)
        self._call = self._transport.call
        self._batch_size = batch_size
        self._tokens = tokens

    def close(self) -> None:
        """Close the HTTP session (at shutdown: the token provider may share it)."""
        self._session.close()

    def holding(self, connection: IntacctConnection) -> AbstractContextManager[None]:
        """Keep one of the company's slots for every call this thread makes in the ``with`` block
        (:meth:`transport.Transport.holding`): calls back to back claim one slot, not one each."""
        return self._transport.holding(connection)

    def forget(self, connection_id: str) -> None:
        """Drop the connection's cached tokens (on disconnect, and before re-validating a connect)."""
        self._tokens.forget(connection_id)

    def write_once(
        self,
        connection: IntacctConnection,
        method: str,
        path: str,
        object_path: str,
        body: dict[str, Any],
        *,
        idempotency_key: str | None = None,
    ) -> dict[str, Any]:
        """One attempt of a write (no retry of any kind), with its ``Idempotency-Key`` when given."""
        headers = {IDEMPOTENCY_HEADER: idempotency_key} if idempotency_key else None
        return self._transport.call(
            connection, method, path, object_path, body=body, once=True, headers=headers
        )

    def service(
        self,
        connection: IntacctConnection,
        method: str,
        path: str,
        object_path: str,
        *,
        body: dict[str, Any] | None = None,
        missing_ok: bool = False,
    ) -> dict[str, Any] | None:
        """A call of an Intacct service other than objects and the query (e.g. the event queue),
        with the same token, cap, retries and breaker; None for a 404 when ``missing_ok``."""
        return self._call(connection, method, path, object_path, body=body, missing_ok=missing_ok)

    # -- reads ------------------------------------------------------------------------------

    def get(self, connection: IntacctConnection, rest_path: str, key: str) -> dict[str, Any] | None:
        """The record ``rest_path``/``key`` (e.g. ``accounts-receivable/invoice``, ``"42"``), or None on 404."""
        key = _checked_key(key)
        body = self._call(
            connection, "GET", f"objects/{rest_path}/{quote(key, safe='')}", rest_path, missing_ok=True
        )
        if body is None:
            return None
        result = body.get("ia::result")
        if isinstance(result, list):
            return result[0] if result else None
        return result if isinstance(result, dict) else None

    def get_many(
        self, connection: IntacctConnection, rest_path: str, keys: Iterable[str]
    ) -> tuple[list[dict[str, Any]], list[str]]:
        """Records for many keys by batch GET (≤ 500 keys per request): (records found, keys missing).

        Records come in the order Intacct answers; duplicate keys are asked for once.
        """
        wanted = list(dict.fromkeys(_checked_key(key) for key in keys))
        records: list[dict[str, Any]] = []
        missing: list[str] = []
        for offset in range(0, len(wanted), self._batch_size):
            chunk = wanted[offset : offset + self._batch_size]
            if len(chunk) == 1:
                # One key without a comma is a single GET, which answers 404 rather than a list.
                record = self.get(connection, rest_path, chunk[0])
                found = [record] if record is not None else []
            else:
                path = f"objects/{rest_path}/{','.join(quote(k, safe='') for k in chunk)}"
                body = self._call(connection, "GET", path, rest_path, missing_ok=True)
                found = _records(body)
            records.extend(found)
            present = {str(record.get("key")) for record in found}
            missing.extend(key for key in chunk if key not in present)
        return records, missing

    def query(
        self,
        connection: IntacctConnection,
        object_path: str,
        *,
        fields: list[str],
        filters: list[dict[str, Any]] | None = None,
        filter_expression: str | None = None,
        order_by: list[dict[str, str]] | None = None,
        start: int = 1,
        size: int = 1000,
    ) -> Page:
        """One page of the query service (``POST /services/core/query``); ``start`` is 1-based."""
        body: dict[str, Any] = {"object": object_path, "fields": list(fields), "start": start, "size": size}
        if filters:
            body["filters"] = filters
        if filter_expression:
            body["filterExpression"] = filter_expression
        if order_by:
            body["orderBy"] = order_by
        answer = self._call(connection, "POST", QUERY_PATH, object_path, body=body)
        rows = answer.get("ia::result")
        rows = rows if isinstance(rows, list) else []
        meta = answer.get("ia::meta") if isinstance(answer.get("ia::meta"), dict) else {}
        total = meta.get("totalCount")
        following = meta.get("next")
        return Page(
            rows=rows,
            total_count=total if isinstance(total, int) else len(rows),
            next_start=following if isinstance(following, int) else None,
        )

    def query_all(
        self,
        connection: IntacctConnection,
        object_path: str,
        *,
        fields: list[str],
        filters: list[dict[str, Any]] | None = None,
        filter_expression: str | None = None,
        order_by: list[dict[str, str]] | None = None,
        size: int = 1000,
    ) -> Iterator[dict[str, Any]]:
        """Every matching row, fetched page by page as the caller iterates (memory stays flat).

        Without ``order_by`` rows come by key, paged by "key greater than the last one seen"
        (``key`` is added to the fields if missing): unlike offset paging, a record deleted or
        added meanwhile cannot make a later page skip or repeat rows. With ``order_by``, pages
        follow ``ia::meta.next``.
        """
        if order_by is not None:
            start: int | None = 1
            while start is not None:
                page = self.query(
                    connection,
                    object_path,
                    fields=fields,
                    filters=filters,
                    filter_expression=filter_expression,
                    order_by=order_by,
                    start=start,
                    size=size,
                )
                yield from page.rows
                start = page.next_start if page.rows else None
            return
        fields = fields if "key" in fields else ["key", *fields]
        after: str | None = None
        while True:
            page_filters, expression = _after_key(filters, filter_expression, after)
            page = self.query(
                connection,
                object_path,
                fields=fields,
                filters=page_filters,
                filter_expression=expression,
                order_by=[{"key": "asc"}],
                size=size,
            )
            yield from page.rows
            if page.next_start is None or not page.rows:
                return
            after = str(page.rows[-1]["key"])

    def read_permissions_probe(self, connection: IntacctConnection, area: str) -> None:
        """One cheap read in ``area``; raises :class:`PermissionDenied` when the role lacks it."""
        if area not in AREA_PROBES:
            raise ValueError(f"unknown permission area {area!r}; expected one of {', '.join(AREAS)}")
        self.query(connection, AREA_PROBES[area], fields=["key"], size=1)


def create_client(
    settings: Settings, slots: CompanyLimiter, *, pool_size: int = 16, **options: Any
) -> IntacctClient:
    """A client wired the usual way: one pooled session, a token provider, and the company cap
    ``slots`` (``clients.intacct.slots.company_slots(settings, engine)``); ``options`` go to :class:`IntacctClient`.
    """
    session = build_session(pool_size)
    tokens = TokenProvider(
        settings, session, timeout=options.get("timeouts", (5.0, 30.0)), on_call=options.get("on_call")
    )
    return IntacctClient(settings, tokens=tokens, slots=slots, session=session, **options)


def record_key_problem(key: Any) -> str | None:
    """Why ``key`` cannot name one record in a REST path, or None when it can.

    A batch GET joins keys with commas and a key is a path segment: a comma or a slash would
    ask for other records, and a blank key for none.
    """
    text = str(key).strip()
    if not text:
        return "Must not be blank."
    if "," in text or "/" in text:
        return "Must not contain ',' or '/' (it names one record, its RECORDNO)."
    return None


def _checked_key(key: Any) -> str:
    if record_key_problem(key) is not None:
        raise ValueError(f"not a record key: {key!r}")
    return str(key).strip()


def _records(body: Any) -> list[dict[str, Any]]:
    """The records of a batch GET answer (a 404 or error entries count as not found)."""
    result = body.get("ia::result") if isinstance(body, dict) else None
    if isinstance(result, dict):
        result = [result]
    if not isinstance(result, list):
        return []
    return [r for r in result if isinstance(r, dict) and "ia::error" not in r and r.get("key") is not None]


def _after_key(
    filters: list[dict[str, Any]] | None, expression: str | None, after: str | None
) -> tuple[list[dict[str, Any]] | None, str | None]:
    """The filters (and expression) of a keyset page: the caller's, and "key greater than ``after``"."""
    if after is None:
        return filters, expression
    combined = [*(filters or []), {"$gt": {"key": after}}]
    position = len(combined)
    # Spelled out even without an expression of the caller's: the AND of all filters is then explicit.
    base = f"({expression})" if expression else " and ".join(str(n) for n in range(1, position))
    return combined, f"{base} and {position}" if base else str(position)
