"""Webhook delivery, as Sage's Platform Triggers do it: signed POSTs retried on a fixed schedule.

Each event gets its event id as ``Idempotency-Key`` and ``X-IdempotencyKey``, repeated on every
attempt, and is signed afresh on each attempt in the configured scheme, built from Sage's guide:

- ``sage-signature`` (Sage's current "Outbound webhooks" guide): ``X-IA-Sage-Signature`` with an
  HS256 JWT over the application's client secret (``iss`` ``Sage Intacct``, ``iat`` in epoch
  milliseconds, ``exp`` an hour later, ``payload_signature`` the hex SHA-256 of the body,
  ``payload_signature_alg``, the company's ``tenant_id``, ``app_id``), the header being the JWT
  itself or base64 JSON with it in ``jwtData`` (alternately, unless one form is configured); the
  same JWT as ``Authorization: Bearer``; and the unsigned base64 JSON ``x-clientcontext``.
- ``bearer-jwks`` (the 2025 early-adopter notes): an RS256 JWT from the simulator's JWKS in
  ``Authorization: Bearer``, and ``X-Trusted-Context``.

Retries follow 408/429/500/502/503/504 and
connection failures after 10 s, 30 s and 90 s (times the configured time scale), 4 attempts in
all, then the event is dropped from delivery and handed to ``on_dropped`` (the simulator puts it
into the company's event queue, :mod:`.event_queue`). Attempts run on a bounded thread pool; a scheduler thread
holds the waiting retries. Every attempt is recorded in a bounded, inspectable log.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import heapq
import itertools
import json
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import jwt
import requests

from sandbox.logs import get_logger

from .keys import SigningKey

RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
RETRY_DELAYS_SECONDS = (10.0, 30.0, 90.0)
MAX_ATTEMPTS = len(RETRY_DELAYS_SECONDS) + 1
_LOG_CAPACITY = 10_000
SCHEMES = ("sage-signature", "bearer-jwks")
SAGE_FORMS = ("alternate", "bare", "envelope")
SAGE_ISSUER = "Sage Intacct"
SAGE_TOKEN_TTL_MS = 3_600_000
# Tenant ids are derived from the company id in this namespace: stable, distinct per company.
_TENANT_NAMESPACE = uuid.UUID("0c6d3f0e-8a51-4c1e-b7e4-2f3f6a1d9b42")
EVENT_NAMES = {"add": "After Add", "set": "After Set", "delete": "After Delete"}

log = get_logger(__name__)


def tenant_id(company_id: str) -> str:
    """The Sage tenant id the simulator gives a company (the ``tenant_id`` claim)."""
    return str(uuid.uuid5(_TENANT_NAMESPACE, company_id))


def rfc3339(moment: float) -> str:
    """Unix seconds as an RFC 3339 UTC timestamp with one-second resolution."""
    return _rfc3339_second(int(moment))


@functools.lru_cache(maxsize=64)
def _rfc3339_second(second: int) -> str:
    # Every request's log entry is stamped: within a second they share one text.
    return datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class WebhookEvent:
    """One trigger firing: the body is fixed once, the event id is the idempotency key."""

    company_id: str
    url: str
    body: bytes
    intacct_object: str
    action: str
    key: str
    event_id: str = ""
    attempts: int = 0
    record_id: str | None = None
    rest_object: str | None = None  # the REST object path, for x-clientcontext

    def __post_init__(self) -> None:
        self.event_id = self.event_id or str(uuid.uuid4())


def event_body(
    *, intacct_object: str, action: str, key: str, record_id: str | None, company_id: str, occurred_at: float
) -> bytes:
    """The brief's trigger template, filled in."""
    return json.dumps(
        {
            "object": intacct_object,
            "action": action,
            "key": key,
            "id": record_id,
            "companyId": company_id,
            "occurredAt": rfc3339(occurred_at),
        }
    ).encode()


def _client_context(event: WebhookEvent) -> dict[str, Any]:
    """Sage's ``x-clientcontext``: what fired the trigger (unsigned, so proof of nothing)."""
    return {
        "COMPANY": event.company_id,
        "ENTITY": "",
        "USER": "",
        "OBJECTNAME": event.intacct_object,
        "RESTOBJECTNAME": event.rest_object or "",
        "DOCTYPE": "",
        "ID": event.record_id or "",
        "VID": event.key,
        "EVENT": event.action,
        "EVENTNAME": EVENT_NAMES.get(event.action, event.action),
    }


class WebhookDispatcher:
    """Delivers :class:`WebhookEvent` s in the background; :meth:`submit` never blocks on HTTP."""

    def __init__(
        self,
        *,
        key: SigningKey,
        issuer: str,
        client_id: str,
        time_scale: float,
        workers: int,
        timeout_seconds: float,
        jwt_ttl_seconds: int,
        scheme: str = "sage-signature",
        client_secret: str = "",
        sage_form: str = "alternate",
        clock: Callable[[], float] = time.time,
        on_dropped: Callable[[WebhookEvent, dict[str, Any]], None] | None = None,
    ) -> None:
        if scheme not in SCHEMES:
            raise ValueError(f"webhook scheme must be one of {', '.join(SCHEMES)}")
        if sage_form not in SAGE_FORMS:
            raise ValueError(f"sage signature form must be one of {', '.join(SAGE_FORMS)}")
        if scheme == "sage-signature" and not client_secret:
            raise ValueError("the sage-signature scheme needs the application's client secret")
        self._scheme = scheme
        self._client_secret = client_secret
        self._sage_form = sage_form
        self._forms = itertools.count()
        self._key = key
        self._issuer = issuer
        self._client_id = client_id
        self._time_scale = time_scale
        self._timeout = timeout_seconds
        self._jwt_ttl = jwt_ttl_seconds
        self._clock = clock
        self._on_dropped = on_dropped
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="intacct-webhook")
        self._sessions = threading.local()
        self._state = threading.Condition()
        self._retries: list[tuple[float, int, WebhookEvent]] = []
        self._sequence = itertools.count()
        self._pending = 0
        self._closed = False
        self._scheduler: threading.Thread | None = None
        self._log: deque[dict[str, Any]] = deque(maxlen=_LOG_CAPACITY)

    # -- public -----------------------------------------------------------------------------

    def submit(self, event: WebhookEvent) -> None:
        """Queue an event's first attempt; returns at once."""
        with self._state:
            if self._closed:
                return
            self._pending += 1
        self._pool.submit(self._attempt, event)

    def deliveries(self, company_id: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        """Recorded attempts, oldest first (the newest ``limit``)."""
        with self._state:
            entries = [e for e in self._log if company_id in (None, e["companyId"])]
        return entries[-limit:] if limit > 0 else []

    def clear_log(self) -> None:
        """Empty the delivery log."""
        with self._state:
            self._log.clear()

    def pending(self) -> int:
        """Events not yet delivered, refused or dropped."""
        with self._state:
            return self._pending

    def wait_idle(self, timeout: float) -> bool:
        """Block until every submitted event was delivered, refused or dropped."""
        deadline = time.monotonic() + timeout
        with self._state:
            while self._pending:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._state.wait(remaining)
            return True

    def close(self) -> None:
        """Stop: waiting retries are abandoned (as if the simulator were switched off)."""
        with self._state:
            self._closed = True
            self._retries.clear()
            self._state.notify_all()
        # Attempts already on the wire finish (bounded by the HTTP timeout); queued ones are cancelled.
        self._pool.shutdown(wait=True, cancel_futures=True)

    # -- delivery ---------------------------------------------------------------------------

    def _headers(self, event: WebhookEvent) -> dict[str, str]:
        headers = (
            self._sage_headers(event) if self._scheme == "sage-signature" else self._bearer_headers(event)
        )
        return {
            **headers,
            "Idempotency-Key": event.event_id,
            "X-IdempotencyKey": event.event_id,
            "Content-Type": "application/json",
            "User-Agent": "flexsync-intacct-simulator",
        }

    def _sage_headers(self, event: WebhookEvent) -> dict[str, str]:
        issued_ms = int(self._clock() * 1000)
        claims = {
            "iss": SAGE_ISSUER,
            "iat": issued_ms,
            "exp": issued_ms + SAGE_TOKEN_TTL_MS,
            "payload_signature": hashlib.sha256(event.body).hexdigest(),
            "payload_signature_alg": "SHA-256",
            "tenant_id": tenant_id(event.company_id),
            "app_id": self._client_id,
        }
        token = jwt.encode(claims, self._client_secret, algorithm="HS256")
        form = self._sage_form
        if form == "alternate":
            form = ("bare", "envelope")[next(self._forms) % 2]
        signature = token
        if form == "envelope":
            envelope = {"clientId": self._client_id, "jwtData": token}
            signature = base64.b64encode(json.dumps(envelope).encode()).decode()
        return {
            "Authorization": f"Bearer {token}",
            "X-IA-Sage-Signature": signature,
            "x-clientcontext": base64.b64encode(json.dumps(_client_context(event)).encode()).decode(),
        }

    def _bearer_headers(self, event: WebhookEvent) -> dict[str, str]:
        now = int(self._clock())
        token = self._key.sign(
            {
                "iss": self._issuer,
                "sub": event.company_id,
                "iat": now,
                "exp": now + self._jwt_ttl,
                "jti": uuid.uuid4().hex,
                "companyId": event.company_id,
                "clientId": self._client_id,
            }
        )
        context = json.dumps({"clientId": self._client_id, "companyId": event.company_id})
        return {
            "Authorization": f"Bearer {token}",
            "X-Trusted-Context": base64.b64encode(context.encode()).decode(),
        }

    def _session(self) -> requests.Session:
        session = getattr(self._sessions, "session", None)
        if session is None:
            session = self._sessions.session = requests.Session()
        return session

    def _attempt(self, event: WebhookEvent) -> None:
        event.attempts += 1
        status: int | None = None
        error: str | None = None
        try:
            response = self._session().post(
                event.url,
                data=event.body,
                headers=self._headers(event),
                timeout=self._timeout,
                allow_redirects=False,
            )
            status = response.status_code
            response.close()
        except requests.RequestException as exc:
            error = type(exc).__name__
        except Exception as exc:  # a broken URL must not kill the worker thread
            error = type(exc).__name__
        retryable = status is None or status in RETRY_STATUSES
        delay = None
        if status is not None and 200 <= status < 300:
            outcome = "delivered"
        elif retryable and event.attempts < MAX_ATTEMPTS:
            outcome = "retrying"
            delay = RETRY_DELAYS_SECONDS[event.attempts - 1] * self._time_scale
        elif retryable:
            outcome = "dropped"
        else:
            outcome = "refused"  # Intacct does not retry other 4xx (or 3xx)
        entry = {
            "eventId": event.event_id,
            "scheme": self._scheme,
            "tenantId": tenant_id(event.company_id),
            "companyId": event.company_id,
            "object": event.intacct_object,
            "action": event.action,
            "key": event.key,
            "url": event.url,
            "attempt": event.attempts,
            "status": status,
            "error": error,
            "outcome": outcome,
            "at": rfc3339(self._clock()),
            "retryInSeconds": delay,
        }
        log.info("intacct_webhook_attempt", **{k: v for k, v in entry.items() if k != "url"})
        if outcome == "dropped" and self._on_dropped is not None:
            # Before the event stops being pending: whoever waits for idle finds it queued.
            try:
                self._on_dropped(event, _client_context(event))
            except Exception:
                log.exception("intacct_webhook_queue_failed", eventId=event.event_id)
        with self._state:
            self._log.append(entry)
            if delay is not None and not self._closed:
                heapq.heappush(self._retries, (time.monotonic() + delay, next(self._sequence), event))
                self._ensure_scheduler()
            else:
                self._pending -= 1
            self._state.notify_all()

    def _ensure_scheduler(self) -> None:
        # Called with self._state held.
        if self._scheduler is None:
            self._scheduler = threading.Thread(
                target=self._schedule, name="intacct-webhook-retries", daemon=True
            )
            self._scheduler.start()

    def _schedule(self) -> None:
        while True:
            with self._state:
                while not self._closed and (not self._retries or self._retries[0][0] > time.monotonic()):
                    timeout = self._retries[0][0] - time.monotonic() if self._retries else None
                    self._state.wait(timeout)
                if self._closed:
                    return
                _, _, event = heapq.heappop(self._retries)
            try:
                self._pool.submit(self._attempt, event)
            except RuntimeError:  # pool shut down between the check and the submit
                return
