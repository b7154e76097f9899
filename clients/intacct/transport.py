"""One HTTP call to Intacct for a connection: token, concurrency slot, request, retries, typed errors.

Every request runs inside one of the company's slots (a ``reliability.limiter.CompanyLimiter``;
``clients.intacct.slots`` keeps them in the database), held for the request
alone and never through a backoff sleep, so the per-company cap holds across every worker
process. A caller making calls back to back (the write-back's read of the invoices, then its
create) may keep the one slot for all of them (:meth:`Transport.holding`): taking a slot costs
queries, and under load polls. Retries are our own loop rather than urllib3's ``Retry``: the sleeps must happen
outside the slot, and a 401 needs a fresh token before the retry.
"""

from __future__ import annotations

import contextlib
import random
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import requests

from clients.sessions import pooled_session
from config.settings import Settings
from observability.logging import get_logger, redactor
from reliability.backoff import Backoff
from reliability.breaker import PeerGuard, intacct_peer, through_breaker
from reliability.limiter import CompanyLimiter, Slot, SlotTimeout
from reliability.retry_after import hint

from . import errors
from .tokens import IntacctConnection, OnCall, TokenProvider

log = get_logger(__name__)

ENTITY_HEADER = "X-IA-API-Param-Entity"
RATE_LIMITED_BACKOFF = Backoff(0.5, 8.0)
UNAVAILABLE_BACKOFF = Backoff(0.2, 2.0)


@dataclass(frozen=True)
class IntacctRetries:
    """How hard a call is tried before the failure goes to the workers' delay queues."""

    # 429: honour Retry-After, else back off; a Retry-After longer than ``max_retry_after`` is not
    # slept through: RateLimited goes to the caller at once.
    rate_limited_attempts: int = 5
    rate_limited: Backoff = RATE_LIMITED_BACKOFF
    max_retry_after: float = 30.0
    # 5xx, timeouts, connection errors: a few quick tries only.
    unavailable_attempts: int = 3
    unavailable: Backoff = UNAVAILABLE_BACKOFF


def build_session(pool_size: int = 16) -> requests.Session:
    """A session whose connection pool has room for ``pool_size`` threads calling at once."""
    # No urllib3 retries: the transport's own loop retries, outside the concurrency slot.
    session = pooled_session(pool_size, pool_connections=4, max_retries=0)
    session.headers.update({"Accept": "application/json", "User-Agent": "flexsync"})
    return session


def _no_op(company_id: str, object_path: str, status: int, seconds: float) -> None:
    return None


# Seconds of a held slot's lease left unused before another request: clocks of hosts differ a little.
_LEASE_MARGIN = 1.0


class _Held:
    """A slot a :meth:`Transport.holding` block keeps: its ``with`` manager, the slot, and whether
    a request left it taken until its lease runs out."""

    def __init__(self, manager: contextlib.AbstractContextManager[Slot], lease: Slot) -> None:
        self.manager = manager
        self.lease = lease
        self.kept = False

    def keep_until_expiry(self) -> None:
        self.kept = True
        self.lease.keep_until_expiry()

    def seconds_left(self) -> float:
        return self.lease.seconds_left()


class Transport:
    """Makes one logical call (with its retries) and turns every failure into an :class:`IntacctError`.

    ``on_call(company_id, object_path, status, seconds)`` runs after every HTTP request
    (status 0 when no answer came).
    """

    def __init__(
        self,
        settings: Settings,
        *,
        tokens: TokenProvider,
        slots: CompanyLimiter,
        session: requests.Session,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
        on_call: OnCall | None = None,
        timeouts: tuple[float, float] = (5.0, 30.0),
        slot_timeout: float = 30.0,
        retry: IntacctRetries | None = None,
        guard: PeerGuard | None = None,
    ) -> None:
        if slots.lease_seconds <= sum(timeouts):
            raise ValueError(
                f"the slots' lease ({slots.lease_seconds:g} s) must outlast a request "
                f"(connect + read timeout = {sum(timeouts):g} s)"
            )
        self._base = settings.intacct_api_url
        self._tokens = tokens
        self._slots = slots
        self._session = session
        self._clock = clock
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._on_call = on_call or _no_op
        self._timeouts = timeouts
        self._slot_timeout = slot_timeout
        self._retry = retry or IntacctRetries()
        self._guard = guard
        self._held = threading.local()  # .slots: {company: _Held | None} of this thread's holding blocks

    @contextlib.contextmanager
    def holding(self, connection: IntacctConnection) -> Iterator[None]:
        """Keep one of the company's slots for every call this thread makes in the block.

        The slot is taken by the first call and given back when the block ends. It is given up
        earlier, and the next call takes one again, before a retry's backoff sleep (never slept
        through), after a request left unanswered (its slot stays taken until its lease runs
        out), and when too little of its lease is left to cover another request.
        """
        company = connection.company_id
        held = self._held_slots()
        if company in held:
            yield  # an outer block holds it already
            return
        held[company] = None
        try:
            yield
        finally:
            self._let_go(held.pop(company, None))

    def call(
        self,
        connection: IntacctConnection,
        method: str,
        path: str,
        object_path: str,
        *,
        body: dict[str, Any] | None = None,
        missing_ok: bool = False,
        once: bool = False,
        headers: dict[str, str] | None = None,
    ) -> Any:
        """``method`` ``path`` (under INTACCT_API_URL) for ``connection``: the JSON answer, or None
        for a 404 when ``missing_ok``. ``object_path`` names the object for errors and metrics.

        ``once``: a single attempt, every failure raised at once; for writes that must never be
        sent twice before the caller knows whether the first one happened. ``headers`` are sent
        with the request (a write's ``Idempotency-Key``).

        With a ``guard`` (the peers' circuit breakers), a company whose Intacct keeps failing is
        not called at all until its next probe: :class:`errors.IntacctBreakerOpen` at once.
        """
        company = connection.company_id
        return through_breaker(
            self._guard,
            intacct_peer(company),
            lambda: self._call(connection, method, path, object_path, body, missing_ok, once, headers),
            outage=errors.IntacctUnavailable,
            answered=errors.IntacctError,
            held_back=lambda wait: errors.IntacctBreakerOpen(
                f"{method} {object_path} for company {company} not sent: its Intacct failed "
                f"repeatedly and is probed again in {wait:.0f} s",
                retry_after=wait,
            ),
            not_counted=(errors.CompanyBusy,),  # our own cap, not Intacct's health
        )

    def _call(
        self,
        connection: IntacctConnection,
        method: str,
        path: str,
        object_path: str,
        body: dict[str, Any] | None,
        missing_ok: bool,
        once: bool,
        extra: dict[str, str] | None = None,
    ) -> Any:
        if once:
            return self._attempt(connection, method, path, object_path, body, missing_ok, extra)
        renewed = False
        rate_limited = unavailable = 0
        policy = self._retry
        while True:
            try:
                return self._attempt(connection, method, path, object_path, body, missing_ok, extra)
            except errors.TokenInvalid:
                # The token expired or was revoked early: renew once (the attempt dropped it).
                if renewed:
                    raise
                renewed = True
            except errors.CompanyBusy:
                raise
            except errors.RateLimited as exc:
                rate_limited += 1
                delay = exc.retry_after
                if delay is None:
                    delay = policy.rate_limited.delay(rate_limited, self._rng)
                else:
                    # A little jitter, so the waiters Intacct turned away do not return in a herd.
                    delay += self._rng.uniform(0.0, min(1.0, delay * 0.1))
                if rate_limited >= policy.rate_limited_attempts or delay > policy.max_retry_after:
                    raise self._give_up(connection, object_path, exc, rate_limited) from exc
                self._pause(connection, object_path, exc, rate_limited, delay)
            except errors.IntacctUnavailable as exc:
                unavailable += 1
                if unavailable >= policy.unavailable_attempts:
                    raise self._give_up(connection, object_path, exc, unavailable) from exc
                delay = policy.unavailable.delay(unavailable, self._rng)
                self._pause(connection, object_path, exc, unavailable, delay)

    def _attempt(
        self,
        connection: IntacctConnection,
        method: str,
        path: str,
        object_path: str,
        body: dict[str, Any] | None,
        missing_ok: bool,
        extra: dict[str, str] | None = None,
    ) -> Any:
        # The token comes first, outside the slot: the token endpoint is not under the cap.
        token = self._tokens.token(connection)
        headers = {**(extra or {}), "Authorization": f"Bearer {token}"}
        if connection.entity_id:
            headers[ENTITY_HEADER] = connection.entity_id
        response: requests.Response | None = None
        failure: requests.RequestException | None = None
        try:
            with self._slot(connection.company_id) as lease:
                started = self._clock()
                try:
                    response = self._session.request(
                        method, f"{self._base}/{path}", headers=headers, json=body, timeout=self._timeouts
                    )
                except requests.ReadTimeout as exc:
                    # Sent but unanswered: Intacct may still be running it and counting it
                    # against the cap, so the slot stays taken until its lease runs out.
                    lease.keep_until_expiry()
                    failure = exc
                except requests.RequestException as exc:
                    failure = exc
                elapsed = self._clock() - started
        except SlotTimeout as exc:
            raise errors.CompanyBusy(str(exc)) from exc
        self._report(
            connection.company_id, object_path, 0 if response is None else response.status_code, elapsed
        )
        where = f"{method} {object_path} for company {connection.company_id}"
        if response is None:
            raise errors.IntacctUnavailable(f"{where} failed: {type(failure).__name__}") from failure
        return self._interpret(connection, token, where, object_path, response, missing_ok)

    def _interpret(
        self,
        connection: IntacctConnection,
        token: str,
        where: str,
        object_path: str,
        response: requests.Response,
        missing_ok: bool,
    ) -> Any:
        status = response.status_code
        try:
            body = response.json()
        except ValueError:
            body = None
        if 200 <= status < 300:
            if not isinstance(body, dict):
                raise errors.IntacctUnavailable(
                    f"{where}: answered {status} without a JSON object", status=status
                )
            return body
        ia_error = errors.parse_ia_error(body)
        code = ia_error.get("code") if isinstance(ia_error.get("code"), str) else None
        error_id = ia_error.get("errorId") if isinstance(ia_error.get("errorId"), str) else None
        said = ia_error.get("message")
        message = f"{where}: HTTP {status}" + (f" {code}" if code else "")
        if isinstance(said, str) and said:
            # Server text is passed through the log redaction before it goes into a message.
            message += f": {redactor().redact_text(said)[:300]}"
        facts: dict[str, Any] = {"status": status, "code": code, "error_id": error_id}
        if status == 401:
            self._tokens.invalidate(connection, token)
            raise errors.TokenInvalid(message, **facts)
        if status == 429:
            raise errors.RateLimited(message, retry_after=hint(response.headers), **facts)
        if status >= 500 or status == 408:
            raise errors.IntacctUnavailable(message, **facts)
        if status == 403:
            raise errors.PermissionDenied(message, area=errors.area_of(object_path), **facts)
        details = ia_error.get("details")
        if status == 404:
            if missing_ok:
                return None
            raise errors.RecordNotFound(
                message, details=details if isinstance(details, list) else [], **facts
            )
        raise errors.IntacctRejected(message, details=details if isinstance(details, list) else [], **facts)

    # -- the slot ---------------------------------------------------------------------------

    def _held_slots(self) -> dict[str, _Held | None]:
        slots: dict[str, _Held | None] | None = getattr(self._held, "slots", None)
        if slots is None:
            slots = self._held.slots = {}
        return slots

    @contextlib.contextmanager
    def _slot(self, company: str) -> Iterator[Slot]:
        """A slot of the company for one request: this thread's held one when it may serve, else
        one taken now (kept for the rest of a :meth:`holding` block, else given back after)."""
        held = self._held_slots()
        if company not in held:
            with self._slots.acquire(company, self._slot_timeout) as lease:
                yield lease
            return
        current = held[company]
        # Another request must end before the lease does, by the slots' own clock: a slot handed
        # over from another thread may be older than this block.
        if current is not None and current.lease.seconds_left() - sum(self._timeouts) < _LEASE_MARGIN:
            self._let_go(current)
            held[company] = current = None
        if current is None:
            manager = self._slots.acquire(company, self._slot_timeout)
            current = held[company] = _Held(manager, manager.__enter__())
        yield current
        if current.kept:
            # Left taken by an unanswered request: the next request needs a slot of its own.
            self._let_go(current)
            held[company] = None

    def _let_go(self, held: _Held | None) -> None:
        if held is not None:
            held.manager.__exit__(None, None, None)

    def _let_go_of(self, company: str) -> None:
        """Before a backoff sleep: give back the slot a holding block keeps, if any."""
        held = self._held_slots()
        if held.get(company) is not None:
            self._let_go(held[company])
            held[company] = None

    # -- reporting --------------------------------------------------------------------------

    def _report(self, company_id: str, object_path: str, status: int, seconds: float) -> None:
        try:
            self._on_call(company_id, object_path, status, seconds)
        except Exception:
            # Metrics must never fail a sync; the hook's bug shows in the log instead.
            log.exception("intacct_on_call_hook_failed", company_id=company_id)

    def _pause(
        self,
        connection: IntacctConnection,
        object_path: str,
        exc: errors.IntacctError,
        attempt: int,
        delay: float,
    ) -> None:
        facts = _facts(connection, object_path, exc)
        log.info("intacct_retry", **facts, attempt=attempt, delay=round(delay, 3))
        self._let_go_of(connection.company_id)  # never slept through
        self._sleep(delay)

    def _give_up(
        self, connection: IntacctConnection, object_path: str, exc: errors.IntacctError, attempts: int
    ) -> errors.IntacctError:
        """Log the end of the retries; the error to raise, saying how hard the call was tried."""
        facts = _facts(connection, object_path, exc)
        log.warning("intacct_gave_up", **facts, attempts=attempts, error=type(exc).__name__)
        said = f"{exc.message}; gave up after {attempts} attempt(s)"
        answer: dict[str, Any] = {"status": exc.status, "code": exc.code, "error_id": exc.error_id}
        if isinstance(exc, errors.RateLimited):
            return errors.RateLimited(said, retry_after=exc.retry_after, **answer)
        return type(exc)(said, **answer)


def _facts(connection: IntacctConnection, object_path: str, exc: errors.IntacctError) -> dict[str, Any]:
    return {
        "company_id": connection.company_id,
        "object": object_path,
        "status": exc.status,
        "code": exc.code,
    }
