"""Machinery of the chaos test (QUALITY R1), so the test itself reads as the scenario.

- :class:`ChaosPlan`: how big and how long (short by default; ``FLEXSYNC_CHAOS_*`` for more);
- :class:`Sandbox`: both simulators in a process of their own, and their admin APIs;
- :class:`Workers`: ``flexsync sync`` processes, SIGKILLed and restarted;
- :class:`EventPublisher`: confirmed publishes that ride out a broker restart, as the receiver's
  callers (Intacct retrying a 503) would;
- :class:`IntacctChanges`: record changes through the Intacct simulator's admin API, each
  followed by its event, while the chaos runs;
- :func:`compare`: FlexPoint's state against what the contract makes of Intacct's current records
  (:mod:`tests.workers.expected_flexpoint`, not the service's mappings).

Every wait has a deadline; every process started here is killed by its own handle.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import IO, Any
from urllib.parse import unquote, urlsplit

import requests
from kombu import Connection, Producer

from broker.topology import EVENTS_EXCHANGE
from config.settings import ENVIRONMENT_VARIABLES
from ingest.messages import envelope_body
from schemas.catalog import BY_RESOURCE, SyncedObject
from tests.conftest import free_port, wait_until
from tests.workers import expected_flexpoint

REPO = Path(__file__).resolve().parents[2]
INTACCT_SECRET = "sandbox-client-secret"  # the sandbox's public defaults (sandbox.env)
FLEXPOINT_TOKEN = "sandbox-token"
RESOURCES = tuple(BY_RESOURCE)


def _pause(seconds: float) -> None:
    """A timed wait (pacing, an outage's length): an Event nobody sets, never ``time.sleep``."""
    if seconds > 0:
        threading.Event().wait(seconds)


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


# -- the plan --------------------------------------------------------------------------------


@dataclass(frozen=True)
class ChaosPlan:
    """The short CI run by default; ``FLEXSYNC_CHAOS_EVENTS=10000`` gives QUALITY R1's full size."""

    events: int
    seconds: float
    companies: int
    invoices: int
    customers: int
    kill_every: float
    seed: int

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] = os.environ) -> ChaosPlan:
        events = int(environ.get("FLEXSYNC_CHAOS_EVENTS", "1500"))
        full = events >= 5000
        return cls(
            events=events,
            seconds=float(environ.get("FLEXSYNC_CHAOS_SECONDS", "120" if full else "15")),
            companies=int(environ.get("FLEXSYNC_CHAOS_COMPANIES", "10" if full else "3")),
            invoices=int(environ.get("FLEXSYNC_CHAOS_INVOICES", "150" if full else "80")),
            customers=int(environ.get("FLEXSYNC_CHAOS_CUSTOMERS", "40" if full else "20")),
            kill_every=float(environ.get("FLEXSYNC_CHAOS_KILL_EVERY", "3")),
            seed=int(environ.get("FLEXSYNC_CHAOS_SEED", "4")),
        )

    @property
    def drain_seconds(self) -> float:
        """A SIGKILLed worker's Intacct slots stay leased 45 s; then groups retry (2 s, 10 s)."""
        return 75.0 if self.events < 5000 else 240.0

    @property
    def timeout(self) -> float:
        """The whole test's bound (pytest-timeout): setup, chaos, drain, comparison."""
        return 150.0 if self.events < 5000 else 3 * self.seconds + self.drain_seconds + 300


# -- the simulators --------------------------------------------------------------------------


class Sandbox:
    """``flexsync sandbox``: both simulators in one child process on free ports."""

    def __init__(self, data_dir: Path, log_path: Path) -> None:
        self.intacct_port = free_port()
        self.flexpoint_port = free_port()
        self.data_dir = data_dir
        self.log_path = log_path
        self.process: subprocess.Popen | None = None
        self._log: IO[bytes] | None = None
        self.http = requests.Session()

    @property
    def intacct_url(self) -> str:
        return f"http://127.0.0.1:{self.intacct_port}"

    @property
    def intacct_api_url(self) -> str:
        return f"{self.intacct_url}/ia/api/v1"

    @property
    def flexpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.flexpoint_port}"

    def start(self) -> Sandbox:
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "cli.main",
                "sandbox",
                "--intacct-port",
                str(self.intacct_port),
                "--flexpoint-port",
                str(self.flexpoint_port),
                "--data-dir",
                str(self.data_dir),
            ],
            cwd=REPO,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        wait_until(self._healthy, timeout=30, interval=0.1, message="the sandbox's two simulators")
        return self

    def _healthy(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"the sandbox exited ({self.process.returncode}); see {self.log_path}")
        try:
            return all(
                requests.get(f"{url}/sandbox/health", timeout=1).status_code == 200
                for url in (self.intacct_url, self.flexpoint_url)
            )
        except requests.ConnectionError:
            return False

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        if self._log is not None:
            self._log.close()
        self.http.close()

    # -- admin APIs ------------------------------------------------------------------------

    def intacct(self, method: str, path: str, body: Any = None) -> Any:
        response = self.http.request(method, f"{self.intacct_url}/sandbox/{path}", json=body, timeout=30)
        if response.status_code >= 400:
            raise AssertionError(
                f"Intacct admin {method} {path}: {response.status_code} {response.text[:300]}"
            )
        return response.json() if response.content else None

    def flexpoint(self, method: str, path: str, body: Any = None, **params: Any) -> Any:
        response = self.http.request(
            method,
            f"{self.flexpoint_url}/{path}",
            json=body,
            params=params or None,
            headers={"Authorization": f"Bearer {FLEXPOINT_TOKEN}"},
            timeout=30,
        )
        if response.status_code >= 400:
            raise AssertionError(f"FlexPoint {method} {path}: {response.status_code} {response.text[:300]}")
        return response.json() if response.content else None

    def faults_on(self, seed: int) -> None:
        """QUALITY R1: FlexPoint 5xx on 10 % and 429 on 5 % of calls; Intacct 503 on 5 % (seeded)."""
        self.flexpoint(
            "PUT", "sandbox/faults", {"serverErrorRate": 0.10, "rateLimitRate": 0.05, "seed": seed}
        )
        self.intacct("PUT", "faults", {"errorRate": 0.05, "errorStatus": 503, "seed": seed})

    def faults_off(self) -> None:
        self.flexpoint("PUT", "sandbox/faults", {"serverErrorRate": 0.0, "rateLimitRate": 0.0})
        self.intacct("PUT", "faults", {})

    def intacct_records(self, company_id: str, path: str) -> Iterator[dict[str, Any]]:
        """Every record of one object (``accounts-receivable/invoice``) as the simulator stores it,
        nested, read through its admin API (not the REST API a worker uses)."""
        start = 1
        while True:
            page = self.intacct("GET", f"companies/{company_id}/objects/{path}?start={start}&size=1000")
            yield from page["records"]
            start += len(page["records"])
            if not page["records"] or start > page["totalCount"]:
                return

    def stored(self, account_id: str, resource: str) -> dict[str, dict[str, Any]]:
        """Every record FlexPoint holds for the account and resource, tombstones included."""
        records: dict[str, dict[str, Any]] = {}
        params: dict[str, Any] = {"includeDeleted": "true", "limit": 1000}
        while True:
            page = self.flexpoint("GET", f"v1/accounts/{account_id}/accounting/{resource}", **params)
            records.update((item["externalId"], item) for item in page["items"])
            if not page.get("nextCursor"):
                return records
            params["cursor"] = page["nextCursor"]


def worker_environment(
    sandbox: Sandbox,
    *,
    amqp_url: str,
    database_url: str,
    secret_key: str,
    log_level: str = "WARNING",
    **extra: str,
) -> dict[str, str]:
    """What a real worker process of these tests runs with: this process's environment without
    flexsync's own variables, pointed at ``sandbox``'s simulators; ``extra`` adds settings."""
    inherited = {k: v for k, v in os.environ.items() if k not in ENVIRONMENT_VARIABLES}
    return {
        **inherited,
        "AMQP_URL": amqp_url,
        "DATABASE_URL": database_url,
        "FLEXSYNC_ENV": "test",
        "FLEXSYNC_SECRET_KEY": secret_key,
        "INTACCT_API_URL": sandbox.intacct_api_url,
        "INTACCT_CLIENT_SECRET": INTACCT_SECRET,
        "FLEXPOINT_API_URL": sandbox.flexpoint_url,
        "FLEXPOINT_API_TOKEN": FLEXPOINT_TOKEN,
        "LOG_LEVEL": log_level,
        "LOG_FORMAT": "json",
        "PYTHONUNBUFFERED": "1",
        **extra,
    }


# -- the workers -----------------------------------------------------------------------------


@dataclass
class Worker:
    number: int
    process: subprocess.Popen
    log: IO[bytes]
    log_path: Path
    started: float


@dataclass
class Exit:
    number: int
    returncode: int
    at: float


class Workers:
    """``flexsync sync`` processes (the Procfile's ``sync``), each its own log file."""

    def __init__(self, env: dict[str, str], log_dir: Path) -> None:
        self._env = env
        self._log_dir = log_dir
        self.live: list[Worker] = []
        self.everyone: list[Worker] = []
        self.killed = 0
        self.exits: list[Exit] = []  # processes that ended by themselves

    def start_one(self) -> Worker:
        number = len(self.everyone) + 1
        log_path = self._log_dir / f"sync-{number}.log"
        log = log_path.open("wb")
        process = subprocess.Popen(
            [sys.executable, "-m", "cli.main", "sync"],
            cwd=REPO,
            env={**self._env, "PORT": str(free_port())},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        worker = Worker(number, process, log, log_path, time.monotonic())
        self.live.append(worker)
        self.everyone.append(worker)
        return worker

    def keep(self, count: int) -> None:
        """Note the workers that ended by themselves, and start new ones up to ``count``."""
        for worker in list(self.live):
            if worker.process.poll() is not None:
                self.exits.append(Exit(worker.number, worker.process.returncode, time.monotonic()))
                self.live.remove(worker)
        while len(self.live) < count:
            self.start_one()

    def kill_one(self, rng: random.Random) -> None:
        """SIGKILL one running worker (preferably one that had time to start consuming)."""
        running = [w for w in self.live if w.process.poll() is None]
        if not running:
            return
        settled = [w for w in running if time.monotonic() - w.started > 1.5] or running
        victim = rng.choice(settled)
        victim.process.send_signal(signal.SIGKILL)
        victim.process.wait(10)
        self.live.remove(victim)
        self.killed += 1

    def stop_all(self) -> None:
        for worker in self.everyone:
            if worker.process.poll() is None:
                worker.process.send_signal(signal.SIGKILL)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    worker.process.wait(10)
            worker.log.close()
        self.live.clear()

    def log_events(self) -> Iterator[dict[str, Any]]:
        """Every JSON log line of every worker that ever ran."""
        for worker in self.everyone:
            with (
                contextlib.suppress(OSError),
                worker.log_path.open(encoding="utf-8", errors="replace") as lines,
            ):
                for line in lines:
                    if line.startswith("{"):
                        with contextlib.suppress(ValueError):
                            yield json.loads(line)

    def log_tails(self, lines: int = 15) -> str:
        parts = []
        for worker in self.everyone[-4:]:
            with contextlib.suppress(OSError):
                text = worker.log_path.read_text(errors="replace").splitlines()[-lines:]
                parts.append(f"--- {worker.log_path.name}\n" + "\n".join(text))
        return "\n".join(parts)


# -- the broker ------------------------------------------------------------------------------


def rabbitmqctl(*args: str, timeout: float = 120) -> str:
    result = subprocess.run(
        ["rabbitmqctl", "-q", *args], check=True, capture_output=True, text=True, timeout=timeout
    )
    return result.stdout


def vhost_of(amqp_url: str) -> str:
    return unquote(urlsplit(amqp_url).path[1:]) or "/"


def queue_totals(amqp_url: str) -> dict[str, dict[str, int]]:
    """Per queue of the vhost: messages (ready + unacknowledged), unacknowledged, consumers."""
    out = rabbitmqctl(
        "list_queues",
        "-p",
        vhost_of(amqp_url),
        "name",
        "messages",
        "messages_unacknowledged",
        "consumers",
        "--formatter",
        "json",
        timeout=60,
    )
    return {row["name"]: row for row in json.loads(out or "[]")}


class EventPublisher:
    """Persistent publishes to ``intacct.events``, each confirmed; reconnects until a deadline."""

    def __init__(self, url: str) -> None:
        self._url = url
        self._connection: Connection | None = None
        self._producer: Producer | None = None
        self.published = 0
        self.reconnects = 0

    def publish(self, routing_key: str, body: bytes, *, message_id: str) -> None:
        deadline = time.monotonic() + 90
        while True:
            try:
                if self._producer is None:
                    self._connection = Connection(
                        self._url, transport_options={"confirm_publish": True}, connect_timeout=3
                    )
                    self._connection.connect()
                    self._producer = Producer(self._connection.channel())
                self._producer.publish(
                    body,
                    exchange=EVENTS_EXCHANGE.name,
                    routing_key=routing_key,
                    delivery_mode=2,
                    content_type="application/json",
                    message_id=message_id,
                    retry=False,
                )
                self.published += 1
                return
            except Exception:
                # Broker gone (restart) or the confirm did not come: like Intacct after a 503, again.
                self.close()
                self.reconnects += 1
                if time.monotonic() > deadline:
                    raise
                _pause(0.25)

    def close(self) -> None:
        if self._connection is not None:
            with contextlib.suppress(Exception):
                self._connection.release()
        self._connection = self._producer = None


def envelope(
    *, connection_id: str, company_id: str, synced: SyncedObject, action: str, key: str, record_id: Any
) -> tuple[str, bytes, str, dict[str, str]]:
    """What the receiver publishes for a webhook (ingest/intake.py): routing key, body and message
    id; like the receiver, no AMQP headers (the envelope says what the message is)."""
    event_id = str(uuid.uuid4())
    occurred = utc_now()
    trigger = {"create": "add", "update": "set", "delete": "delete"}[action]
    document = {
        "object": synced.intacct_object,
        "action": trigger,
        "key": key,
        "id": record_id,
        "companyId": company_id,
        "occurredAt": occurred,
    }
    body = envelope_body(
        synced,
        connection_id=connection_id,
        company_id=company_id,
        event_id=event_id,
        action=action,
        key=key,
        record_id=record_id,
        occurred_at=occurred,
        received_at=utc_now(),
        idempotency_key=f"chaos-{event_id}",
        auth_scheme="hmac",
        payload=document,
    )
    return synced.routing_key(action), body, event_id


# -- record changes in Intacct ---------------------------------------------------------------

Change = tuple[str, str, str, Any]  # (resource, key, action, record id)

# What an update changes, per resource: a field every mapping carries to FlexPoint.
_UPDATED_FIELD = {
    "customers": "name",
    "invoices": "description",
    "payments": "description",
    "adjustments": "description",
    "gl-accounts": "name",
    "journal-entries": "description",
    "bank-accounts": "bankAccountDetails.bankName",  # the published object has no name
    "deposits": "description",
    "other-receipts": "description",
    "entities": "name",
}


@dataclass
class CompanyRecords:
    """What the test knows of one company's records, to pick changes that keep versions apart."""

    company_id: str
    connection_id: str
    account_id: str
    live: dict[str, dict[str, Any]] = field(default_factory=dict)  # resource -> key -> record id
    invoice_state: dict[str, str] = field(default_factory=dict)
    unpaid_invoices: set[str] = field(default_factory=set)
    payment_state: dict[str, str] = field(default_factory=dict)
    created: set[tuple[str, str]] = field(default_factory=set)
    deleted: set[tuple[str, str]] = field(default_factory=set)
    customer_ids: list[str] = field(default_factory=list)
    gl_account_ids: list[str] = field(default_factory=list)
    bank_account_ids: list[str] = field(default_factory=list)


class IntacctChanges:
    """Changes records through the simulator's admin API and says which events they call for.

    ``audit.modifiedDateTime`` (the ``sourceVersion``) has one-second resolution, so two
    changes of one record within the same second would carry equal versions and FlexPoint's
    last-writer-wins could not order them. Real edits that close together are out of scope
    here (see the report); a record is changed again only in a later second.
    """

    def __init__(self, sandbox: Sandbox, rng: random.Random) -> None:
        self._sandbox = sandbox
        self._rng = rng
        self._touched: dict[tuple[str, str, str], float] = {}
        self.companies: list[CompanyRecords] = []
        self.counts: Counter[str] = Counter()
        self._serial = 0

    # -- the initial state -----------------------------------------------------------------

    def load(self, company: CompanyRecords) -> None:
        for resource in RESOURCES:
            path = BY_RESOURCE[resource].rest_path
            company.live[resource] = {}
            for record in self._sandbox.intacct_records(company.company_id, path):
                key = str(record["key"])
                company.live[resource][key] = record.get("id")
                if resource == "invoices":
                    company.invoice_state[key] = record["state"]
                    paid = (record.get("paymentInformation") or {}).get("totalTxnAmountPaid")
                    if Decimal(paid or 0) == 0:
                        company.unpaid_invoices.add(key)
                elif resource == "payments":
                    company.payment_state[key] = record["state"]
                elif resource == "customers":
                    company.customer_ids.append(record["id"])
                elif resource == "gl-accounts":
                    company.gl_account_ids.append(record["id"])
                elif resource == "bank-accounts":
                    company.bank_account_ids.append(record["id"])
        self.companies.append(company)

    def every_record(self) -> Iterator[tuple[CompanyRecords, Change]]:
        for company in self.companies:
            for resource, keys in company.live.items():
                for key, record_id in keys.items():
                    yield company, (resource, key, "create", record_id)

    # -- one step of the chaos -------------------------------------------------------------

    def step(self) -> tuple[CompanyRecords, list[Change]]:
        """One change (or a repeated event for a hot record) and the events it calls for."""
        company = self._rng.choice(self.companies)
        kind = self._rng.choices(
            ["repeat", "update", "lines", "draft", "void", "create", "delete"],
            weights=[40, 30, 6, 5, 4, 8, 7],
        )[0]
        changes = getattr(self, f"_{kind}")(company) if kind != "repeat" else None
        if changes is None:  # nothing eligible right now: a duplicate event instead
            kind, changes = "repeat", self._repeat(company)
        self.counts[kind] += 1
        return company, changes

    def _eligible(self, company: CompanyRecords, resource: str, key: str) -> bool:
        last = self._touched.get((company.company_id, resource, key))
        return last is None or int(time.time()) > int(last)

    def _touch(self, company: CompanyRecords, resource: str, *keys: str) -> None:
        now = time.time()
        for key in keys:
            self._touched[(company.company_id, resource, key)] = now

    def _pick(self, company: CompanyRecords, resource: str, keys: Any = None) -> str | None:
        pool = list(company.live[resource] if keys is None else keys)
        self._rng.shuffle(pool)
        return next((key for key in pool[:20] if self._eligible(company, resource, key)), None)

    def _path(self, company: CompanyRecords, resource: str, key: str | None = None) -> str:
        path = f"companies/{company.company_id}/objects/{BY_RESOURCE[resource].rest_path}"
        return f"{path}/{key}" if key is not None else path

    def _repeat(self, company: CompanyRecords) -> list[Change]:
        resource = self._rng.choice([r for r in RESOURCES if company.live[r]])
        key = self._rng.choice(list(company.live[resource]))
        return [(resource, key, "update", company.live[resource][key])]

    def _update(self, company: CompanyRecords) -> list[Change] | None:
        resource = self._rng.choice([r for r in RESOURCES if company.live[r]])
        key = self._pick(company, resource)
        if key is None:
            return None
        self._serial += 1
        # A dotted path is sent nested, as the published objects take it.
        *parents, name = _UPDATED_FIELD[resource].split(".")
        body: dict[str, Any] = {name: f"chaos change {self._serial}"}
        for parent in reversed(parents):
            body = {parent: body}
        self._sandbox.intacct("PATCH", self._path(company, resource, key), body)
        self._touch(company, resource, key)
        return [(resource, key, "update", company.live[resource][key])]

    def _lines(self, company: CompanyRecords) -> list[Change] | None:
        """New lines for an unpaid invoice: its total and amount due follow."""
        key = self._pick(company, "invoices", company.unpaid_invoices & set(company.live["invoices"]))
        if key is None or not company.gl_account_ids:
            return None
        lines = [
            {
                "txnAmount": f"{self._rng.randint(100, 900_000) / 100:.2f}",
                "glAccount": {"id": self._rng.choice(company.gl_account_ids)},
                "memo": f"chaos line {n}",
            }
            for n in range(1, self._rng.randint(1, 4) + 1)
        ]
        self._sandbox.intacct("PATCH", self._path(company, "invoices", key), {"lines": lines})
        self._touch(company, "invoices", key)
        return [("invoices", key, "update", company.live["invoices"][key])]

    def _draft(self, company: CompanyRecords) -> list[Change] | None:
        """An unpaid invoice goes back to draft (FlexPoint: a tombstone), or a draft is posted."""
        candidates = {
            k
            for k in company.unpaid_invoices & set(company.live["invoices"])
            if company.invoice_state.get(k) in ("posted", "draft")
        }
        key = self._pick(company, "invoices", candidates)
        if key is None:
            return None
        state = "posted" if company.invoice_state[key] == "draft" else "draft"
        self._sandbox.intacct("PATCH", self._path(company, "invoices", key), {"state": state})
        company.invoice_state[key] = state
        self._touch(company, "invoices", key)
        return [("invoices", key, "update", company.live["invoices"][key])]

    def _void(self, company: CompanyRecords) -> list[Change] | None:
        """Void (or restore) a payment: its invoices' amounts change with no event of their own."""
        key = self._pick(company, "payments")
        if key is None or company.payment_state[key] == "reversal":
            return None  # a reversal record is a mirror, never voided or restored itself
        payment = self._sandbox.intacct("GET", self._path(company, "payments", key))
        invoices = {
            str(d["arInvoice"]["key"]) for d in payment.get("paymentDetails") or [] if d.get("arInvoice")
        }
        if not all(self._eligible(company, "invoices", k) for k in invoices):
            return None
        # Sage's published word for a voided payment is ``reversed`` (FlexPoint shows ``voided``).
        state = "complete" if company.payment_state[key] == "reversed" else "reversed"
        self._sandbox.intacct("PATCH", self._path(company, "payments", key), {"state": state})
        company.payment_state[key] = state
        self._touch(company, "payments", key)
        self._touch(company, "invoices", *invoices)
        return [("payments", key, "update", company.live["payments"][key])]

    def _create(self, company: CompanyRecords) -> list[Change] | None:
        self._serial += 1
        n = self._serial
        resource = self._rng.choice(["customers", "invoices", "adjustments", "other-receipts"])
        amount = f"{self._rng.randint(100, 900_000) / 100:.2f}"
        if resource == "customers":
            body: dict[str, Any] = {"id": f"CX-{n:06d}", "name": f"Chaos Customer {n}", "status": "active"}
        elif resource == "invoices":
            if not company.gl_account_ids:
                return None
            body = {
                "customer": {"id": self._rng.choice(company.customer_ids)},
                "description": f"chaos invoice {n}",
                "lines": [
                    {"txnAmount": amount, "glAccount": {"id": self._rng.choice(company.gl_account_ids)}}
                ],
            }
        elif resource == "adjustments":
            body = {
                "customer": {"id": self._rng.choice(company.customer_ids)},
                "createdDate": "2026-11-15",
                "txnCurrency": {"currency": "USD", "totalEntered": amount},
                "description": f"chaos adjustment {n}",
            }
        else:
            body = {
                "payer": f"Chaos payer {n}",
                "txnDate": "2026-11-15",
                "txnTotalEntered": amount,
                "description": f"chaos receipt {n}",
                "bankAccount": {"id": self._rng.choice(company.bank_account_ids)},
            }
        record = self._sandbox.intacct("POST", self._path(company, resource), body)
        key = str(record["key"])
        company.live[resource][key] = record.get("id")
        company.created.add((resource, key))
        if resource == "invoices":
            company.invoice_state[key] = record["state"]
            company.unpaid_invoices.add(key)
        self._touch(company, resource, key)
        return [(resource, key, "create", record.get("id"))]

    def _delete(self, company: CompanyRecords) -> list[Change] | None:
        """A record created here, or a seeded one nothing else depends on."""
        choices = [c for c in company.created if c[1] in company.live[c[0]]]
        for resource in ("adjustments", "other-receipts", "journal-entries"):
            choices.extend((resource, key) for key in company.live[resource])
        choices.extend(("invoices", k) for k in company.unpaid_invoices if k in company.live["invoices"])
        self._rng.shuffle(choices)
        for resource, key in choices[:20]:
            if self._eligible(company, resource, key):
                self._sandbox.intacct("DELETE", self._path(company, resource, key))
                record_id = company.live[resource].pop(key)
                company.deleted.add((resource, key))
                self._touch(company, resource, key)
                return [(resource, key, "delete", record_id)]
        return None


# -- the comparison --------------------------------------------------------------------------


def compare(sandbox: Sandbox, company: CompanyRecords) -> tuple[list[str], Counter[str]]:
    """Differences between FlexPoint's records and what the contract makes of Intacct's current ones.

    Both sides are read from the simulators' own admin and list APIs, never through the
    service's clients, and the expected items come from :mod:`tests.workers.expected_flexpoint`,
    never from its mappings. Returns the problems found and what was compared (live records and
    tombstones per kind).
    """
    unknown = set(RESOURCES) - set(expected_flexpoint.OBJECTS)
    assert not unknown, f"the oracle has no expectation for {sorted(unknown)}"
    problems: list[str] = []
    seen: Counter[str] = Counter()
    where = company.company_id
    for resource, path in expected_flexpoint.OBJECTS.items():
        source = expected_flexpoint.LINES.get(resource)
        lines = expected_flexpoint.lines_by_parent(
            resource, sandbox.intacct_records(where, source.object) if source is not None else ()
        )
        expected: dict[str, expected_flexpoint.Expected] = {}
        for record in sandbox.intacct_records(where, path):
            key = str(record["key"])
            try:
                expected[key] = expected_flexpoint.expect(resource, record, lines.get(key, ()))
            except expected_flexpoint.NoExpectation as exc:
                problems.append(f"{where} {resource} {key}: the contract says nothing for it: {exc}")
        stored = sandbox.stored(company.account_id, resource)
        for key, item in expected.items():
            held = stored.get(key)
            label = f"{where} {resource} {key}"
            if held is None:
                problems.append(f"{label}: in Intacct, not in FlexPoint")
                continue
            if item.deleted:
                seen["drafts tombstoned"] += 1
                if not held["deleted"]:
                    problems.append(f"{label}: a draft in Intacct, live in FlexPoint")
            elif held["deleted"]:
                problems.append(f"{label}: live in Intacct, a tombstone in FlexPoint")
            else:
                seen["live records equal"] += 1
                got = expected_flexpoint.held(resource, held["data"] or {})
                fields = sorted(name for name in item.data if item.data[name] != got.get(name))
                if fields:
                    problems.append(
                        f"{label}: data differs in {fields}: FlexPoint "
                        f"{ {f: got.get(f) for f in fields} } vs Intacct { {f: item.data[f] for f in fields} }"
                    )
            if expected_flexpoint.version(held["sourceVersion"]) != item.version:
                problems.append(
                    f"{label}: sourceVersion {held['sourceVersion']} in FlexPoint, "
                    f"{item.version.isoformat()} in Intacct"
                )
        for key, held in stored.items():
            if key not in expected:
                if held["deleted"]:
                    seen["deleted records tombstoned"] += 1
                else:
                    problems.append(f"{where} {resource} {key}: gone from Intacct, live in FlexPoint")
        for deleted_resource, key in company.deleted:
            if deleted_resource == resource and not (stored.get(key) or {}).get("deleted"):
                problems.append(f"{where} {resource} {key}: deleted in Intacct, no tombstone in FlexPoint")
    return problems, seen
