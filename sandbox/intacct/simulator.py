"""The simulator's parts wired together, and the admission path every API call goes through.

Admission order for an API call: authenticate (401) -> count the call -> take a concurrency
slot (429) -> injected latency, timeout (504) or error (5xx) -> role area (403). The slot is
held through the latency, so a slow call occupies the company's capacity as a slow Intacct does.
The latency stands for Intacct's time to answer, counted from admission: a call that succeeds is
answered once its own work is done and the latency has passed since it was admitted (the API's
after-request hook holds it), so the simulator's processing is inside the latency, not added to it.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from sandbox.logs import get_logger

from . import companies
from .config import SimulatorConfig
from .errors import IntacctError
from .event_queue import EventQueues
from .faults import FaultInjector, FaultSettings
from .keys import SigningKey
from .limits import ConcurrencyLimiter
from .objects import OBJECT_TYPES, ObjectType
from .payments import PaymentService
from .records import Change, RecordService
from .stats import CallStats
from .store import Store
from .tokens import Principal, TokenService
from .webhooks import EVENT_NAMES, WebhookDispatcher, WebhookEvent, event_body

log = get_logger(__name__)

_FAULT_STATUS_CODES = {
    500: "internalError",
    502: "badGateway",
    503: "serviceUnavailable",
    504: "gatewayTimeout",
}


def fault_settings(config: SimulatorConfig) -> FaultSettings:
    """The fault settings a config starts with (and a reset returns to)."""
    return FaultSettings(
        latency_ms=config.latency_ms,
        error_rate=config.error_rate,
        error_status=config.error_status,
        timeout_rate=config.timeout_rate,
        timeout_hold_seconds=config.timeout_hold_seconds,
        commit_error_rate=config.commit_error_rate,
        commit_timeout_rate=config.commit_timeout_rate,
        seed=config.fault_seed,
    )


class Simulator:
    """Owns the store, keys, tokens, limiter, faults, stats, records and webhook dispatcher."""

    def __init__(self, config: SimulatorConfig, *, clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.clock = clock
        self.store = Store(config.database_path)
        self.key = SigningKey.load_or_create(config.key_path)
        self.tokens = TokenService(
            store=self.store,
            key=self.key,
            client_id=config.client_id,
            client_secret=config.client_secret,
            issuer=config.issuer,
            ttl_seconds=config.token_ttl_seconds,
            clock=clock,
        )
        self.limiter = ConcurrencyLimiter(config.concurrency_cap)
        self.retry_after_seconds = config.retry_after_seconds
        self.faults = FaultInjector(fault_settings(config))
        self.stats = CallStats()
        self.event_queues = EventQueues(clock=clock, time_scale=config.time_scale)
        self.webhooks = WebhookDispatcher(
            key=self.key,
            issuer=config.issuer,
            client_id=config.client_id,
            time_scale=config.time_scale,
            workers=config.webhook_workers,
            timeout_seconds=config.webhook_timeout_seconds,
            jwt_ttl_seconds=config.webhook_jwt_ttl_seconds,
            scheme=config.webhook_scheme,
            client_secret=config.client_secret,
            sage_form=config.sage_signature_form,
            clock=clock,
            on_dropped=self._queue_dropped,
        )
        self.records = RecordService(self.store, clock=clock, notify=self.fire)
        self.payments = PaymentService(self.store, self.records, clock=clock, time_scale=config.time_scale)

    def close(self) -> None:
        """Stop webhook delivery, release held requests, close the store."""
        self.webhooks.close()
        self.faults.configure(self.faults.settings)  # release held requests
        self.store.close()

    # -- admission --------------------------------------------------------------------------

    def admit(self, principal: Principal, object_path: str, obj: ObjectType | None) -> float:
        """Let one API call in, or raise. A slot was taken, to be released with :meth:`release`;
        the answer waits the seconds returned (the injected latency) from now, its work included."""
        company = principal.company
        self.stats.call(company.company_id, object_path)
        if not self.limiter.try_acquire(company.company_id, company.concurrency_cap):
            raise IntacctError(
                429,
                "tooManyRequests",
                "Too many concurrent requests for this company; retry later",
                headers={"Retry-After": str(self.retry_after_seconds)},
            )
        try:
            if company.outage:
                raise IntacctError(
                    503, "serviceUnavailable", "This company's Intacct is down (sandbox outage)"
                )
            latency = self.inject_faults()
            if obj is not None and obj.permission_area not in principal.user.areas:
                self.faults.hold(latency)  # refused after the latency, as any answer
                raise IntacctError(
                    403,
                    "permissionDenied",
                    f"The user's role has no permission for the {obj.permission_area} area",
                    details=[{"area": obj.permission_area, "object": obj.path}],
                )
        except BaseException:
            self.limiter.release(company.company_id)
            raise
        return latency

    def inject_faults(self, *, latency: bool = True) -> float:
        """Maybe answer a timeout (504) or a 5xx, after the injected latency; else the latency,
        which the caller holds the answer for (counted from now, its own work inside it).

        The token endpoint skips the latency: latency stands for the API's processing time that
        occupies a company's capacity, and holding token calls would only slow every test.
        """
        decision = self.faults.decide()
        wait = decision.latency_seconds if latency else 0.0
        if decision.outcome is None:
            return wait
        self.faults.hold(wait)
        if decision.outcome == "timeout":
            self.faults.hold(decision.hold_seconds)
            raise IntacctError(504, "gatewayTimeout", "The request timed out")
        if decision.outcome == "error":
            status = decision.error_status
            raise IntacctError(
                status, _FAULT_STATUS_CODES.get(status, "internalError"), "Injected server error"
            )

    def fail_after_commit(self, company: companies.Company) -> None:
        """After a committed write, maybe lose the answer: a 500, or a hold past the client's timeout."""
        rates = dict(company.write_faults) if company.write_faults is not None else None
        outcome = self.faults.decide_after_commit(rates)
        if outcome == "timeout":
            self.faults.hold(self.faults.settings.timeout_hold_seconds)
            raise IntacctError(504, "gatewayTimeout", "The request timed out")
        if outcome == "error":
            raise IntacctError(500, "internalError", "Injected server error after the write")

    def release(self, company_id: str) -> None:
        """Give back the concurrency slot an admitted call took."""
        self.limiter.release(company_id)

    # -- webhooks ---------------------------------------------------------------------------

    def _queue_dropped(self, event: WebhookEvent, context: dict[str, object]) -> None:
        """A delivery that failed all its attempts waits in the company's event queue."""
        self.event_queues.put(
            event.company_id,
            event.event_id,
            event.body,
            dict(context),
            EVENT_NAMES.get(event.action, event.action),
        )

    def fire(self, change: Change) -> None:
        """Fire the company's trigger for a change, if it has one and webhooks are on."""
        company = companies.load_text(self.store.company_text(change.company_id))
        url = company.webhooks.target(change.company_id, change.intacct_object) if company else None
        if url is None:
            return
        body = event_body(
            intacct_object=change.intacct_object,
            action=change.action,
            key=change.key,
            record_id=change.record_id,
            company_id=change.company_id,
            occurred_at=change.occurred_at,
        )
        rest_object = next(
            (path for path, kind in OBJECT_TYPES.items() if kind.intacct_object == change.intacct_object),
            None,
        )
        self.webhooks.submit(
            WebhookEvent(
                change.company_id,
                url,
                body,
                change.intacct_object,
                change.action,
                change.key,
                record_id=change.record_id,
                rest_object=rest_object,
            )
        )
