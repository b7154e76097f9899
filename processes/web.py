"""The ``web`` process: the webhook receiver under gunicorn, its parts built in each worker after fork."""

from __future__ import annotations

import os
import socket
import uuid
from typing import Any

from flask import Flask

from broker.topology import EVENTS_EXCHANGE
from config import Settings
from ingest.app import CHANGES_FALLBACK_TTL_SECONDS, ReceiverParts, create_app
from ingest.auth import HmacVerifier, JwksKeySource, JwtVerifier, TrustedContextVerifier
from ingest.connection_changes import ConnectionChangeListener
from ingest.gaps import GapReporter, GapStore
from ingest.intake import WebhookIntake
from ingest.ledger import BatchRecorder, DeliveryLedger
from ingest.sage_signature import SageSignatureVerifier
from ingest.verification import WebhookVerifier
from observability.metrics import ReceiverMetrics
from processes.parts import ProcessParts
from workers.connections.cache import CachedConnectionLookup


def build(
    settings: Settings, *, publisher: Any = None, engine: Any = None, listen_for_changes: bool | None = None
) -> ReceiverParts:
    """What one receiver process holds. ``publisher`` and ``engine`` (a test's, a benchmark's)
    replace the real ones; ``listen_for_changes`` (default: when the publisher is the real one)
    starts the process's listener on ``flexsync.connections.changed``."""
    if listen_for_changes is None:
        listen_for_changes = publisher is None
    parts = ProcessParts(settings, process="web", engine=engine)
    try:
        metrics = parts.metrics(ReceiverMetrics)
        ledger = DeliveryLedger(parts.engine)
        recorder = parts.adopt("delivery recorder", BatchRecorder(ledger))
        gaps = GapReporter(
            GapStore(parts.engine), f"web:{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        )
        if publisher is None:
            publisher = parts.publisher(
                EVENTS_EXCHANGE.name,
                wait=2.0,
                on_outcome=metrics.record_publish,
                on_connection_lost=gaps.broker_lost,
            )
        else:
            parts.adopt("publisher", publisher)
        jwt_verifier = None
        if settings.intacct_webhook_jwks_url and settings.intacct_webhook_issuer:
            jwt_verifier = JwtVerifier(
                JwksKeySource(
                    settings.intacct_webhook_jwks_url, min_refetch_seconds=settings.jwks_min_refetch_seconds
                ),
                issuer=settings.intacct_webhook_issuer,
                leeway_seconds=settings.jwt_leeway_seconds,
            )
        connections = CachedConnectionLookup(
            parts.connections,
            ttl=settings.connection_cache_ttl,
            fallback_ttl=CHANGES_FALLBACK_TTL_SECONDS if listen_for_changes else None,
        )
        listener = None
        if listen_for_changes:
            listener = parts.adopt(
                "change listener", ConnectionChangeListener(settings.amqp_url, connections)
            )
            listener.start(wait=2.0)
        sage_verifier = None
        if settings.intacct_client_secrets:
            sage_verifier = SageSignatureVerifier(
                settings.intacct_client_secrets, leeway_seconds=settings.jwt_leeway_seconds
            )
        verifier = WebhookVerifier(
            settings.intacct_webhook_scheme,
            sage=sage_verifier,
            jwt=jwt_verifier,
            trusted_context=TrustedContextVerifier(settings.intacct_client_id),
            hmac=HmacVerifier(tolerance_seconds=settings.hmac_tolerance_seconds),
        )
        intake = WebhookIntake(
            connections=connections,
            ledger=ledger,
            recorder=recorder,
            publisher=publisher,
            verifier=verifier,
            tenant_pins=parts.connections,
            confirm_timeout=settings.publish_confirm_timeout,
            retry_after=settings.retry_after_seconds,
        )
    except BaseException:
        parts.close()
        raise
    return ReceiverParts(
        settings,
        parts.engine,
        parts.connections,
        ledger,
        recorder,
        publisher,
        metrics,
        intake,
        listener,
        gaps=gaps,
        closer=parts.close,
    )


def receiver_app(settings: Settings) -> Flask:
    """The receiver as a gunicorn worker serves it: its own parts, and the ledger's housekeeping."""
    return create_app(settings, parts=build(settings), housekeeping=True)


def run(settings: Settings, *, workers: int, threads: int) -> None:
    """Serve webhooks on $PORT until SIGTERM/SIGINT; each worker builds its parts after fork."""
    from ingest.server import serve

    serve(settings, workers=workers, threads=threads, app=receiver_app)
