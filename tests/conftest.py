"""Shared fixtures: a real RabbitMQ (own vhost per run), databases, keys, a JWKS server.

Broker tests use ``AMQP_URL`` when set, else a testcontainers RabbitMQ when Docker runs;
otherwise they fail under CI and are skipped locally, with the reason.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import shutil
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from kombu import Connection, Producer
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from broker.topology import build_topology, declare_topology
from config import Settings
from ingest.app import create_app
from ingest.auth import sign_hmac
from processes.web import build as build_parts
from sandbox.flexpoint.config import FlexPointConfig
from sandbox.flexpoint.server import FlexPointServer
from sandbox.intacct.config import SimulatorConfig
from sandbox.intacct.server import SimulatorServer
from store.db import upgrade

# SQLite + PostgreSQL fixtures (database_url, engine) for the store's tests.
pytest_plugins = ["tests.databases"]

ISSUER = "https://intacct.test/webhooks"
CLIENT_ID = "4d02d25de337869dfecd.app.sage.com"
# The application's client secret Sage signs X-IA-Sage-Signature with (HS256).
APP_SECRET = "test-app-client-secret-0123456789abcdef"
TENANT = "tenant-acme-0001"


def pytest_collection_modifyitems(config, items):
    """Tests that stop the broker run last, so nothing else runs while a node restarts."""
    items.sort(key=lambda item: item.get_closest_marker("disruptive") is not None)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until(
    predicate: Callable[[], Any], timeout: float = 10.0, interval: float = 0.02, message: str = "condition"
) -> Any:
    """Poll ``predicate`` until it returns something truthy, or fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {message}")
        threading.Event().wait(interval)


# -- RabbitMQ -----------------------------------------------------------------------------


def _reachable(url: str) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "localhost", parts.port or 5672), timeout=2):
            return True
    except OSError:
        return False


def _no_broker(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"CI must have RabbitMQ: {reason}")
    pytest.skip(f"no RabbitMQ: {reason} (set AMQP_URL, e.g. amqp://guest:guest@127.0.0.1:5672/%2F)")


def _rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", "-q", *args], check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="session")
def broker_base_url() -> Iterator[str]:
    url = os.environ.get("AMQP_URL")
    if url:
        if not _reachable(url):
            _no_broker(
                f"AMQP_URL is set but {urlsplit(url).hostname}:{urlsplit(url).port or 5672} does not answer"
            )
        yield url
        return
    try:
        from testcontainers.rabbitmq import RabbitMqContainer

        container = RabbitMqContainer("rabbitmq:3.13")
        container.start()
    except Exception as exc:
        _no_broker(f"AMQP_URL is unset and testcontainers could not start RabbitMQ ({type(exc).__name__})")
        return
    try:
        params = container.get_connection_params()
        yield f"amqp://guest:guest@{params.host}:{params.port}/%2F"
    finally:
        container.stop()


def _local_node(url: str) -> bool:
    return (
        urlsplit(url).hostname in ("localhost", "127.0.0.1", "::1")
        and shutil.which("rabbitmqctl") is not None
    )


@contextlib.contextmanager
def own_vhost(broker_base_url: str, prefix: str = "flexsync-test") -> Iterator[str]:
    """The broker URL with a new vhost of its own, deleted afterwards (the base URL on a remote broker)."""
    if not _local_node(broker_base_url):
        yield broker_base_url
        return
    vhost = f"{prefix}-{uuid.uuid4().hex[:8]}"
    user = urlsplit(broker_base_url).username or "guest"
    _rabbitmqctl("add_vhost", vhost)
    _rabbitmqctl("set_permissions", "-p", vhost, user, ".*", ".*", ".*")
    parts = urlsplit(broker_base_url)
    try:
        yield urlunsplit((parts.scheme, parts.netloc, "/" + quote(vhost, safe=""), "", ""))
    finally:
        with contextlib.suppress(Exception):
            _rabbitmqctl("delete_vhost", vhost)


@pytest.fixture(scope="session")
def amqp_url(broker_base_url: str) -> Iterator[str]:
    """A vhost of our own on the broker, so tests never meet a running service's messages."""
    with own_vhost(broker_base_url) as url:
        yield url


@pytest.fixture(scope="session")
def declared_topology(amqp_url: str):
    topology = build_topology("7D")
    with Connection(amqp_url) as connection:
        declare_topology(connection, topology)
    return topology


@pytest.fixture
def broker(amqp_url: str, declared_topology) -> Iterator[BrokerProbe]:
    probe = BrokerProbe(amqp_url)
    probe.purge_all(declared_topology)
    yield probe
    probe.close()


class BrokerProbe:
    """Reads what is in the queues, the way a test needs: counts and messages, with deadlines."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.connection = Connection(url)
        self.channel = self.connection.channel()

    def publish(self, exchange: str, routing_key: str, body: bytes, **properties: Any) -> None:
        """Publish persistently with a confirm, as a producer of the service would."""
        Producer(self.channel).publish(
            body,
            exchange=exchange,
            routing_key=routing_key,
            delivery_mode=2,
            content_type="application/json",
            **properties,
        )

    def depth(self, queue: str) -> int:
        _, count, _ = self.channel.queue_declare(queue=queue, passive=True)
        return count

    def get(self, queue: str) -> Any:
        """One message taken from the queue (acked), or None."""
        message = self.channel.basic_get(queue=queue, no_ack=True)
        return message

    def take_all(self, queue: str) -> list[Any]:
        messages = []
        while (message := self.get(queue)) is not None:
            messages.append(message)
        return messages

    def purge_all(self, topology) -> None:
        for queue in topology.queues:
            if (queue.queue_arguments or {}).get("x-queue-type") != "stream":
                self.channel.queue_purge(queue=queue.name)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.connection.release()


# -- settings and database ----------------------------------------------------------------


@pytest.fixture
def settings(tmp_path, amqp_url: str) -> Settings:
    return Settings(
        flexsync_env="test",
        amqp_url=amqp_url,
        database_url=f"sqlite:///{tmp_path}/flexsync.db",
        flexsync_secret_key=("x7rJ0mQyB0V9pC4Q2m0l3n8f1kq6YxT5k3sR4bF1dWg=",),
        intacct_webhook_issuer=ISSUER,
        log_format="console",
    )


# -- signing keys and a JWKS endpoint -----------------------------------------------------


class SigningKeys:
    """An RSA key pair Intacct would sign with, its JWKS, and a token minter."""

    def __init__(self, kid: str) -> None:
        self.kid = kid
        self.private_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    def jwk(self) -> dict[str, Any]:
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.private_key.public_key()))
        return {**jwk, "kid": self.kid, "use": "sig", "alg": "RS256"}

    def token(self, *, issuer: str = ISSUER, expires_in: int = 300, **claims: Any) -> str:
        now = int(time.time())
        payload = {"iss": issuer, "iat": now, "exp": now + expires_in, **claims}
        return jwt.encode(payload, self.private_key, algorithm="RS256", headers={"kid": self.kid})


@pytest.fixture(scope="session")
def signing_keys() -> SigningKeys:
    return SigningKeys("intacct-test-1")


@pytest.fixture(scope="session")
def jwks_url(signing_keys: SigningKeys) -> Iterator[str]:
    def app(environ, start_response):
        request = Request(environ)
        if request.path != "/.well-known/jwks.json":
            return Response("not found", status=404)(environ, start_response)
        body = json.dumps({"keys": [signing_keys.jwk()]})
        return Response(body, content_type="application/json")(environ, start_response)

    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/.well-known/jwks.json"
    server.shutdown()


def sage_signature(
    body: bytes,
    *,
    secret: str = APP_SECRET,
    tenant_id: str = TENANT,
    now: float | None = None,
    exp_unit: str = "ms",
    envelope: bool = False,
    algorithm: str = "HS256",
    **changes: Any,
) -> str:
    """An ``X-IA-Sage-Signature`` value as Sage's guide describes it, built from the contract:
    HS256 over the client secret, ``iat`` in milliseconds, ``exp`` an hour on (in ``exp_unit``),
    ``payload_signature`` the hex SHA-256 of ``body``. ``changes`` override claims (None drops one)."""
    issued = time.time() if now is None else now
    claims: dict[str, Any] = {
        "iss": "Sage Intacct",
        "iat": int(issued * 1000),
        "exp": int((issued + 3600) * 1000) if exp_unit == "ms" else int(issued + 3600),
        "payload_signature": hashlib.sha256(body).hexdigest(),
        "payload_signature_alg": "SHA-256",
        "tenant_id": tenant_id,
        "app_id": CLIENT_ID,
    }
    claims.update(changes)
    claims = {name: value for name, value in claims.items() if value is not None}
    token = jwt.encode(claims, secret, algorithm=algorithm)
    if not envelope:
        return token
    return base64.b64encode(json.dumps({"clientId": CLIENT_ID, "jwtData": token}).encode()).decode()


def client_context(company_id: str = "ACME-CO") -> str:
    """Sage's unsigned ``x-clientcontext``: base64 JSON describing the trigger."""
    context = {"COMPANY": company_id, "OBJECTNAME": "ARINVOICE", "EVENT": "set", "EVENTNAME": "After Set"}
    return base64.b64encode(json.dumps(context).encode()).decode()


def trusted_context(company_id: str, client_id: str = CLIENT_ID) -> str:
    return base64.b64encode(json.dumps({"clientId": client_id, "companyId": company_id}).encode()).decode()


# -- the receiver, wired to the real broker and a fresh database ---------------------------

COMPANY = "ACME-CO"


@contextlib.contextmanager
def running_receiver(settings: Settings) -> Iterator[Receiver]:
    """A receiver on a migrated database with its own publisher, closed afterwards."""
    parts = build_parts(settings)
    upgrade(parts.engine)
    try:
        yield Receiver(create_app(settings, parts=parts), parts)
    finally:
        parts.close()


@pytest.fixture
def receiver(settings, jwks_url, broker):
    """A receiver verifying bearer JWTs from the test JWKS (and HMAC), as before issue 29."""
    with running_receiver(
        settings.with_overrides(intacct_webhook_jwks_url=jwks_url, intacct_webhook_scheme="bearer-jwks")
    ) as running:
        yield running


@pytest.fixture
def sage_receiver(settings, broker):
    """A receiver in the default scheme, sage-signature, with the test application secret."""
    with running_receiver(settings.with_overrides(intacct_client_secret=APP_SECRET)) as running:
        yield running


class Receiver:
    def __init__(self, app, parts) -> None:
        self.app = app
        self.parts = parts
        self.client = app.test_client()
        self.connection = parts.store.save(
            connection_id=str(uuid.uuid4()),
            account_id=f"acct-{uuid.uuid4().hex[:12]}",
            company_id=COMPANY,
            entity_id=None,
            user_id="ws_flexpoint",
            state="connected",
        )
        self.secret = parts.store.webhook_secret(self.connection.connection_id)

    def url(self, connection_id: str | None = None) -> str:
        return f"/webhooks/intacct/{connection_id or self.connection.connection_id}"

    def post_hmac(
        self,
        body: dict | bytes,
        *,
        key: str | None = None,
        connection_id: str | None = None,
        content_type: str = "application/json",
        secret: str | None = None,
        client=None,
        **headers,
    ):
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        headers = {
            "X-FlexPoint-Signature": sign_hmac(secret or self.secret, raw, int(time.time())),
            **headers,
        }
        if key:
            headers["Idempotency-Key"] = key
        return (client or self.client).post(
            self.url(connection_id), data=raw, content_type=content_type, headers=headers
        )

    def post_sage(self, body: dict | bytes, signature: str | None = None, **headers):
        """Post as Sage does: X-IA-Sage-Signature over these very bytes, x-clientcontext, and
        both idempotency headers when ``key`` is given."""
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        key = headers.pop("key", None)
        sent = {"X-IA-Sage-Signature": signature or sage_signature(raw), "x-clientcontext": client_context()}
        if key:
            sent.update({"Idempotency-Key": key, "X-IdempotencyKey": key})
        sent.update(headers)
        return self.client.post(self.url(), data=raw, content_type="application/json", headers=sent)

    def post_jwt(self, body: dict, token: str, context: str | None, **headers):
        headers = {"Authorization": f"Bearer {token}", **headers}
        if context is not None:
            headers["X-Trusted-Context"] = context
        return self.client.post(
            self.url(), data=json.dumps(body), content_type="application/json", headers=headers
        )


def invoice_event(key: str = "1042", action: str = "set", **extra) -> dict:
    return {
        "object": "ARINVOICE",
        "action": action,
        "key": key,
        "id": "INV-1042",
        "companyId": COMPANY,
        "occurredAt": "2026-11-24T10:00:00Z",
        **extra,
    }


# -- the sandbox's simulators, and a receiver on a real port trusting the Intacct one -------


@pytest.fixture
def intacct(tmp_path):
    with SimulatorServer(SimulatorConfig(port=0, data_dir=tmp_path / "intacct", time_scale=0.01)) as server:
        yield server


@pytest.fixture
def live_receiver(settings, intacct, broker):
    """The receiver on a real port, trusting the simulator's client secret, JWKS and issuer."""
    settings = settings.with_overrides(
        intacct_webhook_jwks_url=intacct.jwks_url,
        intacct_webhook_issuer=intacct.config.issuer,
        intacct_client_secret=intacct.config.client_secret,
    )
    with running_receiver(settings) as receiver:
        server = make_server("127.0.0.1", 0, receiver.app, threaded=True)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        receiver.base_url = f"http://127.0.0.1:{server.server_port}"
        yield receiver
        server.shutdown()


@pytest.fixture
def flexpoint(tmp_path):
    with FlexPointServer(FlexPointConfig(port=0, data_dir=tmp_path / "flexpoint")) as server:
        yield server
