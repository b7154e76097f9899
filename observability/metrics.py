"""Prometheus metrics of the receiver, the sync workers and the write-back.

Metrics live in a registry owned by the app (no import-time globals). Under gunicorn, where
several processes serve one port, prometheus_client's multiprocess mode aggregates them:
``flexsync web`` points ``PROMETHEUS_MULTIPROC_DIR`` at a fresh folder before workers fork.
"""

from __future__ import annotations

import bisect
import hashlib
import hmac
import os
import socketserver
import threading
from collections.abc import Callable, Iterable, Sequence
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest, make_wsgi_app
from prometheus_client.multiprocess import MultiProcessCollector

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class ReceiverMetrics:
    """Requests by status, publish latency, confirms by outcome, rejects by reason."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.requests = Counter(
            "flexsync_webhook_requests",
            "Webhook requests answered, by HTTP status",
            ["status"],
            registry=self.registry,
        )
        self.rejects = Counter(
            "flexsync_webhook_rejects",
            "Webhook requests refused, by reason",
            ["reason"],
            registry=self.registry,
        )
        self.publish_latency = Histogram(
            "flexsync_publish_confirm_seconds",
            "Time from publish to broker confirm",
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.confirms = Counter(
            "flexsync_publish_confirms",
            "Publisher confirms by outcome (ack, nack, timeout, ...)",
            ["outcome"],
            registry=self.registry,
        )
        # Both counted once per webhook: labels() takes a lock and builds a key each time, so
        # the child of each status and each outcome is looked up once.
        self._requests_by_status: dict[int, Any] = {}
        self._confirms_by_outcome: dict[str, Any] = {}

    def answered(self, status: int) -> None:
        """Count one webhook request by the HTTP status it was answered with."""
        _child(self.requests, self._requests_by_status, status).inc()

    def record_publish(self, outcome: str, waits: Sequence[float]) -> None:
        """Count the messages one confirm settled, by outcome, and how long the acked ones
        waited (called on the publisher's I/O thread, once per confirm frame for acks)."""
        _child(self.confirms, self._confirms_by_outcome, outcome).inc(len(waits))
        if outcome == "ack":
            observe_all(self.publish_latency, waits)

    def render(self) -> bytes:
        """The text exposition format, aggregated across processes in multiprocess mode."""
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            registry = CollectorRegistry()
            MultiProcessCollector(registry)
            return generate_latest(registry)
        return generate_latest(self.registry)


def observe_all(histogram: Histogram, amounts: Sequence[float]) -> None:
    """``histogram.observe(amount)`` for each amount, touching each bucket once.

    In multiprocess mode every bucket and the sum is a value in a shared file, written under a
    lock; observing one by one wrote two of them per message on the publisher's I/O thread.
    Falls back to ``observe`` where the histogram is not laid out as prometheus_client 0.26's.
    """
    bounds = getattr(histogram, "_upper_bounds", None)
    buckets = getattr(histogram, "_buckets", None)
    total = getattr(histogram, "_sum", None)
    if bounds is None or buckets is None or total is None or len(amounts) < 2:
        for amount in amounts:
            histogram.observe(amount)
        return
    counts = [0] * len(bounds)
    for amount in amounts:
        # The first bucket whose upper bound holds the amount, as observe() picks it.
        counts[bisect.bisect_left(bounds, amount)] += 1
    total.inc(sum(amounts))
    for bucket, count in zip(buckets, counts, strict=True):
        if count:
            bucket.inc(count)


def _child(metric: Any, children: dict[Any, Any], label: Any) -> Any:
    """``metric.labels(str(label))``, remembered in ``children``."""
    child = children.get(label)
    if child is None:
        child = children.setdefault(label, metric.labels(str(label)))
    return child


class SyncMetrics:
    """The sync workers': events by resource and outcome, calls out, batch sizes, queue lag."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.events = Counter(
            "flexsync_sync_events",
            "Events settled, by resource and outcome (done, retried, dead, dropped)",
            ["resource", "outcome"],
            registry=self.registry,
        )
        self.failures = Counter(
            "flexsync_sync_failures",
            "Events that failed, by resource and reason",
            ["resource", "reason"],
            registry=self.registry,
        )
        self.group_size = Histogram(
            "flexsync_sync_group_events",
            "Events coalesced into one group",
            buckets=(1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500),
            registry=self.registry,
        )
        self.lag = Histogram(
            "flexsync_sync_lag_seconds",
            "From webhook accepted to the record upserted in FlexPoint",
            buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300),
            registry=self.registry,
        )
        self.calls = Counter(
            "flexsync_outbound_calls",
            "Calls to Intacct and FlexPoint, by peer and status",
            ["peer", "status"],
            registry=self.registry,
        )
        self.call_latency = Histogram(
            "flexsync_outbound_call_seconds",
            "Latency of calls to Intacct and FlexPoint",
            ["peer"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )

    def record_call(self, peer: str, status: int | str, seconds: float) -> None:
        self.calls.labels(peer, str(status)).inc()
        self.call_latency.labels(peer).observe(seconds)


def company_tagger(keys: Sequence[str]) -> Callable[[str], str]:
    """A stable, keyed stand-in for a customer's company id in metric labels.

    Whoever scrapes metrics may read them, which is no permission to learn who the customers
    are; a plain hash of a short company id is guessed from a list of names, so the tag is an
    HMAC keyed from FLEXSYNC_SECRET_KEY (every process of the install agrees on it). Without a
    key (development), a random key of this process.
    """
    secret = keys[0].encode() if keys else os.urandom(32)
    key = hmac.new(secret, b"flexsync-metrics-company-label", hashlib.sha256).digest()

    def tag(company_id: str) -> str:
        return "c-" + hmac.new(key, company_id.encode(), hashlib.sha256).hexdigest()[:16]

    return tag


class _ThreadingServer(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Scrapes are not logged (the stdlib would write each to stderr)."""


def serve_metrics(
    registry: CollectorRegistry, port: int, *, bind: str = "127.0.0.1", token: str | None = None
) -> WSGIServer:
    """Serve ``registry`` at ``bind:port`` on a daemon thread (QUALITY S4): on loopback unless told,
    and with ``token`` only to ``Authorization: Bearer <token>`` (compared in constant time)."""
    exposition = make_wsgi_app(registry)
    expected = token.encode() if token else None

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if expected is not None:
            scheme, _, given = environ.get("HTTP_AUTHORIZATION", "").partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), expected):
                start_response(
                    "401 Unauthorized", [("Content-Type", "text/plain"), ("WWW-Authenticate", "Bearer")]
                )
                return [b"the metrics token is required\n"]
        return exposition(environ, start_response)

    server = make_server(bind, port, app, server_class=_ThreadingServer, handler_class=_QuietHandler)
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
    return server


class ReconcileMetrics:
    """The reconcile process's: Intacct calls by company and purpose, sweeps by reason and kind.

    ``flexsync_reconcile_intacct_calls_total`` is what the sweep costs each customer; a day's
    count is ``increase(...[1d])`` (the budget is QUALITY P7: at most 250 per idle company).
    The ``company`` label is ``company_label(company_id)`` (:func:`company_tagger`), never the id.
    """

    def __init__(
        self, registry: CollectorRegistry | None = None, *, company_label: Callable[[str], str] | None = None
    ) -> None:
        self.registry = registry or CollectorRegistry()
        self.company_label = company_label or company_tagger(())
        self.intacct_calls = Counter(
            "flexsync_reconcile_intacct_calls",
            "Intacct calls made by reconciliation, by company (a keyed tag, not the id) and purpose "
            "(sweep, keyset, token)",
            ["company", "purpose"],
            registry=self.registry,
        )
        self.sweeps = Counter(
            "flexsync_reconcile_sweeps",
            "Resource sweeps run, by why they were due (gap, quiet, keyset, fixed, forced) and outcome kind",
            ["reason", "kind"],
            registry=self.registry,
        )
        self.gaps = Counter(
            "flexsync_reconcile_gaps_seen",
            "Gap signals the scheduler acted on, by kind",
            ["kind"],
            registry=self.registry,
        )


class WritebackMetrics:
    """The write-back's: postings by outcome, and the time from FlexPoint's request to the payment posted."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.postings = Counter(
            "flexsync_writeback_postings",
            "Payment messages settled, by outcome (posted, failed:<reason>, cancelled, reversed, "
            "replayed:<state>, retried:<reason>, dead:<reason>)",
            ["outcome"],
            registry=self.registry,
        )
        self.to_posted = Histogram(
            "flexsync_writeback_posted_seconds",
            "From the message's requestedAt to the payment posted in Intacct",
            buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300, 900),
            registry=self.registry,
        )

    def record_outcome(self, outcome: str) -> None:
        self.postings.labels(outcome).inc()

    def record_posted(self, seconds: float) -> None:
        self.postings.labels("posted").inc()
        self.to_posted.observe(seconds)
