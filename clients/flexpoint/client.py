"""FlexPoint's Sync API over HTTP: batch upserts, connection status, payment postings, inspection reads.

One client per process, shared by the worker threads: one ``requests.Session`` whose pool
holds a connection per thread. The account is an argument of every call, never client state,
so a worker writes to exactly the account of the event's connection (QUALITY S2).
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Literal, overload
from urllib.parse import quote

import requests

from clients.flexpoint.batches import batch_body, canonical_json, chunks, idempotency_key, new_write_id
from clients.flexpoint.contract import check_account_id, check_resource, check_status
from clients.flexpoint.errors import (
    FlexPointBreakerOpen,
    FlexPointCallFailed,
    FlexPointError,
    FlexPointUnavailable,
)
from clients.flexpoint.postings import check_payment_id, check_posting, posting_key
from clients.flexpoint.responses import error_from_response, scrub
from clients.flexpoint.retry import FlexPointRetries
from clients.sessions import pooled_session
from observability.logging import get_logger, register_secret
from reliability.breaker import FLEXPOINT, PeerGuard, through_breaker

# on_call(resource, status, seconds): status is the HTTP status, or "timeout" / "connection_error"
# when no answer came; resource is the YAML's resource, or "integration-status".
OnCall = Callable[[str, int | str, float], None]
STATUS_LABEL = "integration-status"
_PAGE_SIZE = 1000  # the YAML's maximum: fewest round trips for reconciliation


def _segment(value: str) -> str:
    """One URL path segment, quoted: an id never adds a segment, a query or a fragment to the
    path, even if its check ever let such an id through."""
    return quote(value, safe="")


log = get_logger(__name__)


class FlexPointClient:
    """A client of flexpoint-sync-api.yaml at ``base_url`` (the part before ``/v1/...``).

    Transient failures (5xx, timeouts, 429) are retried a few times with jittered backoff, then
    raised as :class:`FlexPointUnavailable` / :class:`FlexPointRateLimited`; refusals raise at
    once as :class:`FlexPointRejected` / :class:`FlexPointUnauthorized`. ``sleep`` and ``rng``
    are injectable so tests record the waits; ``retry``, when given, replaces ``max_attempts``.
    """

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        session: requests.Session | None = None,
        timeout: float | tuple[float, float] = (5, 30),
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
        max_attempts: int = 4,
        on_call: OnCall | None = None,
        pool_size: int = 16,
        retry: FlexPointRetries | None = None,
        guard: PeerGuard | None = None,
    ) -> None:
        if not token:
            raise ValueError("FlexPoint needs a bearer token: set FLEXPOINT_API_TOKEN")
        register_secret(token)
        self.base_url = base_url.rstrip("/")
        self._token = token
        self._timeout = timeout
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._retry = retry or FlexPointRetries(max_attempts=max_attempts)
        self._on_call = on_call
        self._guard = guard
        self._owns_session = session is None
        if session is None:
            # One pooled connection per worker thread, so threads never queue for a socket.
            session = pooled_session(pool_size, pool_connections=1)
        self._session = session

    @classmethod
    def from_settings(cls, settings: Any, *, process: str, **options: Any) -> FlexPointClient:
        """A client for FLEXPOINT_API_URL and FLEXPOINT_API_TOKEN; SettingsError names a missing one."""
        settings.require("FLEXPOINT_API_URL", "FLEXPOINT_API_TOKEN", process=process)
        return cls(settings.flexpoint_api_url, settings.flexpoint_api_token, **options)

    def close(self) -> None:
        """Close the pooled connections (only those of a session this client created)."""
        if self._owns_session:
            self._session.close()

    def __enter__(self) -> FlexPointClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"FlexPointClient({self.base_url!r})"

    # -- writes ---------------------------------------------------------------------------

    def upsert(
        self, account_id: str, resource: str, connection_id: str, items: Sequence[Mapping[str, Any]]
    ) -> list[dict[str, Any]]:
        """Upsert or delete ``items`` in batches of up to 500; FlexPoint's results, in item order.

        Each batch carries an Idempotency-Key derived from its content and this call (see
        :mod:`clients.flexpoint.batches`): this call's retries of it (after a timeout, a 5xx) are
        replayed by FlexPoint, never applied twice, while another call sending the same items is
        applied, so a record that changed and changed back within one second is not answered
        with the first write's stored response. If a batch fails, the ones before it stay applied
        and the error is raised.
        """
        check_account_id(account_id)
        check_resource(resource)
        if not isinstance(connection_id, str) or not connection_id:
            raise ValueError("connection_id must be a non-empty string")
        path = f"/v1/accounts/{_segment(account_id)}/accounting/{_segment(resource)}/batch"
        results: list[dict[str, Any]] = []
        write_id = new_write_id()
        for batch in chunks(list(items)):
            body = batch_body(connection_id, batch)
            response = self._call(
                "POST",
                path,
                label=resource,
                action=f"POST {resource} batch for account {account_id}",
                body=body,
                key=idempotency_key(account_id, resource, body, write_id),
                items=batch,
            )
            results.extend(self._batch_results(response, batch, resource, account_id))
        return results

    def report_status(self, account_id: str, status: Mapping[str, Any]) -> None:
        """Tell FlexPoint the state of the account's Sage Intacct connection (the last report wins).

        ``reportedAt`` is filled with the current time when absent.
        """
        check_account_id(account_id)
        check_status(status)
        body = dict(status)
        body.setdefault("reportedAt", datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"))
        self._call(
            "PUT",
            f"/v1/accounts/{_segment(account_id)}/integrations/sage-intacct",
            label=STATUS_LABEL,
            action=f"PUT connection status for account {account_id}",
            body=body,
            # A fresh key per report: FlexPoint never answers 409 here, and the retries of this
            # one report still share it.
            key=str(uuid.uuid4()),
        )

    def report_posting(self, account_id: str, payment_id: str, posting: Mapping[str, Any]) -> None:
        """Tell FlexPoint the state of one payment's posting into Intacct (the last report wins).

        The Idempotency-Key comes from the body, so re-reporting an unchanged state is a replay.
        """
        check_account_id(account_id)
        check_payment_id(payment_id)
        check_posting(posting)
        self._call(
            "PUT",
            f"/v1/accounts/{_segment(account_id)}/payment-postings/{_segment(payment_id)}",
            label="payment-postings",
            action=f"PUT payment posting {payment_id} for account {account_id}",
            body=dict(posting),
            key=posting_key(account_id, payment_id, posting),
        )

    def get_posting(self, account_id: str, payment_id: str) -> dict[str, Any] | None:
        """The last posting state reported for the payment, or None when none was."""
        check_account_id(account_id)
        check_payment_id(payment_id)
        response = self._call(
            "GET",
            f"/v1/accounts/{_segment(account_id)}/payment-postings/{_segment(payment_id)}",
            label="payment-postings",
            action=f"GET payment posting {payment_id} of account {account_id}",
            missing_ok=True,
        )
        return None if response is None else self._json(response, "GET posting")

    # -- reads (tests, reconciliation, the sandbox summary) --------------------------------

    def get_record(self, account_id: str, resource: str, external_id: str) -> dict[str, Any] | None:
        """The stored record (a tombstone has ``deleted: true``), or None when FlexPoint has none."""
        check_account_id(account_id)
        check_resource(resource)
        response = self._call(
            "GET",
            f"/v1/accounts/{_segment(account_id)}/accounting/{_segment(resource)}/{_segment(external_id)}",
            label=resource,
            action=f"GET {resource} {external_id!r} of account {account_id}",
            missing_ok=True,
        )
        return None if response is None else self._json(response, "GET record")

    def iter_records(
        self, account_id: str, resource: str, include_deleted: bool = False, *, page_size: int = _PAGE_SIZE
    ) -> Iterator[dict[str, Any]]:
        """Every stored record of a resource in externalId order, page by page (tombstones if asked).

        An account FlexPoint does not know yet has no records. Arguments are checked at the
        call, not at the first ``next()``.
        """
        check_account_id(account_id)
        check_resource(resource)
        params: dict[str, Any] = {
            "limit": page_size,
            "includeDeleted": "true" if include_deleted else "false",
        }
        return self._pages(account_id, resource, params)

    def _pages(self, account_id: str, resource: str, params: dict[str, Any]) -> Iterator[dict[str, Any]]:
        seen: set[str] = set()
        while True:
            response = self._call(
                "GET",
                f"/v1/accounts/{_segment(account_id)}/accounting/{_segment(resource)}",
                label=resource,
                action=f"GET {resource} of account {account_id}",
                params=params,
                missing_ok=True,
            )
            if response is None:
                return
            page = self._json(response, "GET records")
            yield from page["items"]
            cursor = page.get("nextCursor")
            if not cursor:
                return
            if cursor in seen:
                raise FlexPointCallFailed(
                    f"FlexPoint returned the cursor {cursor!r} twice while listing {resource}"
                )
            seen.add(cursor)
            params = {**params, "cursor": cursor}

    def get_status(self, account_id: str) -> dict[str, Any] | None:
        """The last connection status reported for the account, or None when none was."""
        check_account_id(account_id)
        response = self._call(
            "GET",
            f"/v1/accounts/{_segment(account_id)}/integrations/sage-intacct",
            label=STATUS_LABEL,
            action=f"GET connection status of account {account_id}",
            missing_ok=True,
        )
        return None if response is None else self._json(response, "GET status")

    # -- one call, with bounded retries -----------------------------------------------------

    # Only a call with missing_ok=True can answer None: the overloads let mypy know it.
    @overload
    def _call(
        self,
        method: str,
        path: str,
        *,
        label: str,
        action: str,
        body: Any = ...,
        params: Mapping[str, Any] | None = ...,
        key: str | None = ...,
        items: Sequence[Mapping[str, Any]] | None = ...,
        missing_ok: Literal[False] = ...,
    ) -> requests.Response: ...

    @overload
    def _call(
        self,
        method: str,
        path: str,
        *,
        label: str,
        action: str,
        body: Any = ...,
        params: Mapping[str, Any] | None = ...,
        key: str | None = ...,
        items: Sequence[Mapping[str, Any]] | None = ...,
        missing_ok: bool,
    ) -> requests.Response | None: ...

    def _call(self, method: str, path: str, *, action: str, **options: Any) -> requests.Response | None:
        """``_send`` behind FlexPoint's circuit breaker (when there is a ``guard``): while FlexPoint
        keeps failing it is not called at all until its next probe."""
        return through_breaker(
            self._guard,
            FLEXPOINT,
            lambda: self._send(method, path, action=action, **options),
            outage=FlexPointUnavailable,
            answered=FlexPointError,
            held_back=lambda wait: FlexPointBreakerOpen(
                f"{action} not sent: FlexPoint failed repeatedly and is probed again in {wait:.0f} s",
                retry_after=wait,
            ),
        )

    def _send(
        self,
        method: str,
        path: str,
        *,
        label: str,
        action: str,
        body: Any = None,
        params: Mapping[str, Any] | None = None,
        key: str | None = None,
        items: Sequence[Mapping[str, Any]] | None = None,
        missing_ok: bool = False,
    ) -> requests.Response | None:
        """Send one request, retrying transient failures; None for a 404 when ``missing_ok``."""
        headers = {"Authorization": f"Bearer {self._token}", "Accept": "application/json"}
        data = None
        if body is not None:
            # Serialised once: every attempt sends the very bytes the idempotency key stands for.
            data = canonical_json(body).encode()
            headers["Content-Type"] = "application/json"
        if key is not None:
            headers["Idempotency-Key"] = key
        url = self.base_url + path
        attempt = 0
        while True:
            attempt += 1
            started = time.perf_counter()
            try:
                response = self._session.request(
                    method, url, data=data, params=params, headers=headers, timeout=self._timeout
                )
            except (requests.Timeout, requests.ConnectionError) as exc:
                outcome = "timeout" if isinstance(exc, requests.Timeout) else "connection_error"
                self._observe(label, outcome, time.perf_counter() - started)
                error: FlexPointError = FlexPointUnavailable(
                    f"FlexPoint did not answer {action} ({outcome}: {type(exc).__name__})"
                )
            except requests.RequestException as exc:
                # Anything else (a malformed URL, too many redirects) will not heal by waiting.
                raise FlexPointCallFailed(
                    f"could not call FlexPoint for {action}: {scrub(str(exc), self._token)}"
                ) from None
            else:
                self._observe(label, response.status_code, time.perf_counter() - started)
                if response.status_code < 300:
                    return response
                if response.status_code == 404 and missing_ok:
                    return None
                error = error_from_response(response, action=action, token=self._token, items=items)
            delay = self._retry.delay(error, attempt, self._rng)
            if delay is None:
                error.attempts = attempt
                raise error
            log.info(
                "flexpoint_retry",
                action=action,
                status=error.status,
                code=error.code,
                attempt=attempt,
                delay=round(delay, 3),
            )
            self._sleep(delay)

    def _observe(self, label: str, status: int | str, seconds: float) -> None:
        if self._on_call is None:
            return
        try:
            self._on_call(label, status, seconds)
        except Exception:
            # A broken metrics hook must not fail (and so re-send) a write FlexPoint confirmed.
            log.warning("flexpoint_on_call_failed", resource=label, exc_info=True)

    def _json(self, response: requests.Response, what: str) -> Any:
        try:
            return response.json()
        except ValueError:
            raise FlexPointCallFailed(
                f"FlexPoint answered {what} with {response.status_code} but no JSON body"
            ) from None

    def _batch_results(
        self, response: requests.Response, batch: Sequence[Mapping[str, Any]], resource: str, account_id: str
    ) -> list[dict[str, Any]]:
        payload = self._json(response, f"POST {resource} batch")
        results = payload.get("results") if isinstance(payload, dict) else None
        if not isinstance(results, list) or len(results) != len(batch):
            # Results pair with items by position; a short list cannot be matched safely.
            got = len(results) if isinstance(results, list) else "no"
            raise FlexPointCallFailed(
                f"FlexPoint answered a {resource} batch of {len(batch)} items for account {account_id}"
                f" with {got} results"
            )
        return results
