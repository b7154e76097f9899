"""The worker runtime on kombu's in-memory transport: middleware order, settling, routing, reconnects, drain."""

from __future__ import annotations

import os
import signal
import socket
import threading
import uuid
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import amqp.exceptions
import pytest
import requests
import structlog
import structlog.testing
from kombu import Connection, Exchange, Producer, Queue
from prometheus_client import CollectorRegistry, Counter

from broker.topology import DEAD_LETTER_QUEUE_NAME, RETRY_DELAYS_SECONDS, delay_queue_name
from config import Settings
from config.settings import SettingsError
from tests.conftest import wait_until
from workers.runtime.failures import ATTEMPTS, ORIGINAL_ROUTING_KEY, REASON, RECHECK, Failure
from workers.runtime.messages import Delivery, MessageConsumer
from workers.runtime.middleware import LogContext, Middleware, MiddlewareChain, Rejected
from workers.runtime.process import require_settings, run_worker
from workers.sync.consumer import SyncConsumer
from workers.sync.groups import Group
from workers.sync.handler import GroupOutcome

PAYMENTS = Exchange("flexpoint.payments", "topic")


@pytest.fixture
def queue_name() -> str:
    """A queue of this test's own: the memory transport's state is shared by the whole process."""
    return f"writeback-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def broker(queue_name) -> Iterator[Connection]:
    with Connection("memory://") as connection:
        channel = connection.channel()
        for name in (
            DEAD_LETTER_QUEUE_NAME,
            *(delay_queue_name(queue_name, d) for d in RETRY_DELAYS_SECONDS),
        ):
            Queue(name, channel=channel).declare()
        Queue(DEAD_LETTER_QUEUE_NAME, channel=channel).purge()
        Queue(queue_name, PAYMENTS, routing_key="payment.#", channel=channel).declare()
        yield connection


def publish(broker: Connection, body: Any, routing_key: str = "payment.posted", **properties: Any) -> None:
    Producer(broker.default_channel).publish(body, exchange=PAYMENTS, routing_key=routing_key, **properties)


def messages_in(broker: Connection, name: str) -> list[Any]:
    """Takes every message of queue ``name`` (acked: they are read once)."""
    queue = Queue(name, channel=broker.default_channel)
    taken = []
    while (message := queue.get(no_ack=True)) is not None:
        taken.append(message)
    return taken


def depth(broker: Connection, name: str) -> int:
    return Queue(name, channel=broker.default_channel).queue_declare(passive=True).message_count


class Running:
    """A consumer on a thread of its own, as a worker process runs it; ``ident`` is that thread."""

    def __init__(self, consumer: Any) -> None:
        self.consumer = consumer
        self.ident: int | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        self.ident = threading.get_ident()
        self.consumer.run(safety_interval=0.01)

    def stop(self) -> None:
        self.consumer.stop()
        self.thread.join(10)
        self.consumer.close()
        assert not self.thread.is_alive(), "the consumer did not stop"


@contextmanager
def running(consumer: Any) -> Iterator[Running]:
    worker = Running(consumer)
    try:
        yield worker
    finally:
        if worker.thread.is_alive():
            worker.stop()


class Recorder(Middleware):
    """Notes each hook as ``<name>.<hook>`` with the thread it ran on."""

    def __init__(self, name: str, calls: list[tuple[str, int]]) -> None:
        self.name = name
        self.calls = calls

    def _note(self, hook: str) -> None:
        self.calls.append((f"{self.name}.{hook}", threading.get_ident()))

    def before_receive(self, message, body):
        self._note("before_receive")
        return body

    def before_process(self, unit):
        self._note("before_process")

    def after_process(self, unit, outcome):
        self._note("after_process")

    def before_settle(self, unit, outcome, producer):
        self._note("before_settle")

    def after_settle(self, unit, outcome):
        self._note("after_settle")

    def before_route(self, message, target, body):
        self._note("before_route")
        return body


def consumer_for(broker, queue_name, handle, **options) -> MessageConsumer:
    queue = Queue(queue_name, PAYMENTS, routing_key="payment.#")
    options.setdefault("name", "writeback")
    return MessageConsumer(broker.clone(), [queue], handle, **options)


class SettledUnits(Middleware):
    """Keeps each unit as it is settled, in order."""

    def __init__(self) -> None:
        self.units: list[Any] = []

    def after_settle(self, unit: Any, outcome: Any) -> None:
        self.units.append(unit)

    @property
    def bodies(self) -> list[Any]:
        return [unit.body for unit in self.units]


def by_company(broker, queue_name, handle, **options) -> MessageConsumer:
    """A consumer of four threads and eight messages in hand, keyed by the body's company."""
    return consumer_for(
        broker, queue_name, handle, workers=4, prefetch=8, key=lambda body: body.get("company"), **options
    )


def test_hooks_run_in_onion_order_processing_on_a_worker_thread_settling_on_the_consumer_thread(
    broker, queue_name
):
    calls: list[tuple[str, int]] = []
    handled: list[int] = []

    def handle(delivery: Delivery) -> None:
        handled.append(threading.get_ident())
        calls.append(("handle", threading.get_ident()))

    consumer = consumer_for(
        broker, queue_name, handle, middleware=[Recorder("outer", calls), Recorder("inner", calls)]
    )
    with running(consumer) as worker:
        publish(broker, {"paymentId": "p-1"})
        wait_until(lambda: any(name == "outer.after_settle" for name, _ in calls), timeout=10)
        worker.stop()
    assert [name for name, _ in calls] == [
        "outer.before_receive",
        "inner.before_receive",
        "outer.before_process",
        "inner.before_process",
        "handle",
        "inner.after_process",
        "outer.after_process",
        "outer.before_settle",
        "inner.before_settle",
        "inner.after_settle",
        "outer.after_settle",
    ]
    threads = dict(calls)
    assert handled[0] != worker.ident
    assert threads["outer.before_process"] == threads["inner.after_process"] == handled[0]
    for hook in ("outer.before_receive", "outer.before_settle", "inner.after_settle"):
        assert threads[hook] == worker.ident, f"{hook} ran off the consumer thread"
    # Acked: after the channel closed nothing came back to the queue.
    assert depth(broker, queue_name) == 0


def test_before_route_hooks_transform_the_body_first_to_last():
    class Suffix(Middleware):
        def __init__(self, text: str) -> None:
            self.text = text

        def before_route(self, message, target, body):
            return body + self.text

    assert MiddlewareChain([Suffix("a"), Suffix("b")]).route(None, None, "x") == "xab"


def test_a_transient_failure_goes_to_the_first_delay_queue_and_a_permanent_one_to_the_dead_letters(
    broker, queue_name
):
    calls: list[tuple[str, int]] = []

    def handle(delivery: Delivery) -> Failure | None:
        if delivery.body["kind"] == "transient":
            return Failure("flexpoint_unavailable", RuntimeError("503"), transient=True)
        return Failure("payment_unknown", ValueError("no such payment"), transient=False)

    consumer = consumer_for(broker, queue_name, handle, middleware=[Recorder("r", calls)])
    with running(consumer) as worker:
        publish(broker, {"kind": "transient"}, routing_key="payment.posted")
        publish(broker, {"kind": "permanent"}, routing_key="payment.voided")
        wait_until(lambda: sum(name == "r.after_settle" for name, _ in calls) == 2, timeout=10)
        worker.stop()
    retried = messages_in(broker, delay_queue_name(queue_name, RETRY_DELAYS_SECONDS[0]))
    assert [m.payload for m in retried] == [{"kind": "transient"}]
    assert retried[0].headers[ATTEMPTS] == 1
    assert retried[0].headers[ORIGINAL_ROUTING_KEY] == "payment.posted"
    dead = messages_in(broker, DEAD_LETTER_QUEUE_NAME)
    assert [m.payload for m in dead] == [{"kind": "permanent"}]
    assert dead[0].headers[REASON] == "payment_unknown"
    assert [name for name, _ in calls].count("r.before_route") == 2
    assert depth(broker, queue_name) == 0


def test_undecodable_rejected_and_crashing_messages_are_routed_not_lost(broker, queue_name):
    class RefuseUnsigned(Middleware):
        def before_receive(self, message, body):
            if not body.get("signed"):
                raise Rejected(Failure("unsigned", ValueError("no signature"), transient=False))
            return body

    def handle(delivery: Delivery) -> None:
        raise KeyError("a handler bug")

    consumer = consumer_for(broker, queue_name, handle, middleware=[RefuseUnsigned()])
    with running(consumer) as worker:
        publish(broker, b"{not json", content_type="application/json", content_encoding="utf-8")
        publish(broker, {"signed": False})
        publish(broker, {"signed": True})
        first_delay = delay_queue_name(queue_name, RETRY_DELAYS_SECONDS[0])
        wait_until(lambda: depth(broker, DEAD_LETTER_QUEUE_NAME) == 2 and depth(broker, first_delay) == 1)
        worker.stop()
    reasons = sorted(m.headers[REASON] for m in messages_in(broker, DEAD_LETTER_QUEUE_NAME))
    assert reasons == ["malformed_message", "unsigned"]
    assert [m.payload for m in messages_in(broker, first_delay)] == [{"signed": True}]
    assert depth(broker, queue_name) == 0


def test_the_log_context_is_bound_for_the_handler_and_cleared_after(broker, queue_name):
    seen: list[dict[str, Any]] = []

    def handle(delivery: Delivery) -> None:
        seen.append(dict(structlog.contextvars.get_contextvars()))

    consumer = consumer_for(
        broker, queue_name, handle, workers=1, middleware=[LogContext(), Recorder("r", [])]
    )
    with running(consumer) as worker:
        publish(broker, {"n": 1}, routing_key="payment.posted", message_id="m-1")
        wait_until(lambda: len(seen) == 1, timeout=10)
        # The same (only) worker thread, after the unit: nothing left bound.
        leftover = consumer._pool.submit(structlog.contextvars.get_contextvars).result(5)
        worker.stop()
    assert seen == [{"routing_key": "payment.posted", "message_id": "m-1"}]
    assert leftover == {}


def test_outcomes_of_units_received_before_a_reconnect_are_not_acted_upon(broker, queue_name):
    """The memory transport does not give unacked messages back on a reconnect (RabbitMQ does:
    ``tests/workers/test_chaos.py``); what it shows is that the late outcome is dropped."""
    release = threading.Event()
    handled: list[Any] = []
    settled: list[tuple[Any, int]] = []

    class BreakTheConnectionOnce(Middleware):
        broken = False

        def before_receive(self, message, body):
            if body.get("break") and not self.broken:
                self.broken = True
                raise amqp.exceptions.ConnectionError("the connection dropped")
            return body

        def after_settle(self, unit, outcome):
            settled.append((unit.body, consumer.generation))

    def handle(delivery: Delivery) -> Failure | None:
        handled.append(delivery.body)
        if delivery.body.get("slow"):
            release.wait(10)  # in flight across the reconnect
            return Failure("payment_unknown", ValueError("too late to matter"), transient=False)
        return None

    consumer = consumer_for(broker, queue_name, handle, workers=2, middleware=[BreakTheConnectionOnce()])
    with running(consumer) as worker:
        publish(broker, {"slow": True})
        wait_until(lambda: handled == [{"slow": True}], timeout=10)
        publish(broker, {"break": True})
        wait_until(lambda: consumer.generation == 2, timeout=10, message="the consumer reconnected")
        release.set()
        publish(broker, {"after": True})
        wait_until(lambda: settled, timeout=10, message="a message of the new channel settled")
        worker.stop()
    # The first unit finished after the reconnect: its outcome (a dead letter) was not acted upon.
    assert settled == [({"after": True}, 2)]
    assert depth(broker, DEAD_LETTER_QUEUE_NAME) == 0


def test_stop_lets_the_unit_in_flight_finish_and_settles_it_before_run_returns(broker, queue_name):
    started = threading.Event()
    release = threading.Event()
    settled = SettledUnits()

    def handle(delivery: Delivery) -> None:
        started.set()
        release.wait(10)

    consumer = consumer_for(broker, queue_name, handle, workers=1, middleware=[settled])
    worker = Running(consumer)
    try:
        publish(broker, {"n": 1})
        publish(broker, {"n": 2})  # beyond the prefetch of one: never taken
        assert started.wait(10)
        consumer.stop()
        assert worker.thread.is_alive(), "run() returned with a unit still in flight"
        release.set()
        worker.thread.join(10)
        assert not worker.thread.is_alive()
    finally:
        release.set()
        worker.stop()
    assert settled.bodies == [{"n": 1}]
    # The finished one acked, the one never started still in the queue for another consumer.
    assert [m.payload for m in messages_in(broker, queue_name)] == [{"n": 2}]


def test_stop_settles_a_finished_unit_even_before_its_thread_reports_it_done(broker, queue_name):
    # A future wakes its waiters before it runs its done-callbacks: stop's wait can return while
    # the finished unit is not yet in the queue the consumer settles from.
    reported = threading.Event()
    settled = SettledUnits()

    class LateReports(deque):
        def append(self, future: Any) -> None:
            reported.wait(10)  # the worker thread's report of the finished unit, held back
            super().append(future)

    go = threading.Event()

    def handle(delivery: Delivery) -> None:
        go.wait(10)

    consumer = consumer_for(broker, queue_name, handle, workers=1, middleware=[settled])
    consumer._finished = LateReports()
    worker = Running(consumer)
    try:
        publish(broker, {"n": 1})
        wait_until(lambda: consumer._running, timeout=10, message="the unit submitted")
        go.set()  # it finishes on its worker thread, whose report is then held back
        wait_until(lambda: all(f.done() for f in consumer._running), timeout=10, message="the unit done")
        consumer.stop()
        # Settled (acked) while its thread's report is still held back.
        wait_until(lambda: settled.units, timeout=10, message="the finished unit settled on stop")
        reported.set()
        worker.thread.join(10)
        assert not worker.thread.is_alive()
    finally:
        reported.set()
        worker.stop()
    assert settled.bodies == [{"n": 1}]
    assert messages_in(broker, queue_name) == []


def test_a_key_runs_at_most_per_key_messages_while_threads_take_the_messages_behind_them(broker, queue_name):
    release = threading.Event()
    started: list[Any] = []
    lock = threading.Lock()

    def handle(delivery: Delivery) -> None:
        with lock:
            started.append(delivery.body["n"])
        if delivery.body["company"] == "busy":
            release.wait(10)

    consumer = by_company(broker, queue_name, handle, per_key=2)
    with running(consumer):
        for n in range(4):
            publish(broker, {"n": n, "company": "busy"})
        publish(broker, {"n": 4, "company": "idle"})
        publish(broker, {"n": 5, "company": "idle"})
        # Two of the busy company's run and hold their threads; the other two wait without one,
        # and the idle company's messages, behind them, are handled by the free threads.
        wait_until(lambda: sorted(started) == [0, 1, 4, 5], timeout=10)
        wait_until(lambda: consumer.in_hand() == 4, timeout=10)  # two busy ones running, two waiting
        release.set()
        wait_until(lambda: len(started) == 6 and consumer.in_hand() == 0, timeout=10)
    assert started[-2:] == [2, 3]  # in their order, once the first two were done
    assert depth(broker, queue_name) == 0


def test_a_key_runs_beyond_its_limit_what_it_was_lent_once_the_consumer_is_poked(broker, queue_name):
    release = threading.Event()
    started: list[Any] = []
    lock = threading.Lock()
    lent = {"busy": 0}

    def handle(delivery: Delivery) -> None:
        with lock:
            started.append(delivery.body["n"])
        release.wait(10)

    consumer = by_company(broker, queue_name, handle, per_key=1, borrowed=lambda key: lent.get(key, 0))
    with running(consumer):
        for n in range(4):
            publish(broker, {"n": n, "company": "busy"})
        wait_until(lambda: started == [0] and consumer.in_hand() == 4, timeout=10)
        # Lent one more of what the key's limit guards (a slot another process left free): told so,
        # the consumer starts the next message of the key, in order, and no more.
        lent["busy"] = 1
        consumer.poke()
        wait_until(lambda: started == [0, 1], timeout=10)
        release.set()
        wait_until(lambda: len(started) == 4 and consumer.in_hand() == 0, timeout=10)
    assert started == [0, 1, 2, 3]


class RecheckingHandler:
    """Says every event is done, the first look at each one also wanting a second look."""

    def process(self, group: Group) -> GroupOutcome:
        return GroupOutcome(done=list(group.events), recheck=[e for e in group.events if not e.recheck])


def test_sync_groups_send_a_recheck_copy_before_the_ack_and_dead_letter_bad_envelopes(broker):
    queue_name = "sync.ar"
    channel = broker.default_channel
    exchange = Exchange("intacct.events", "topic")
    Queue(queue_name, exchange, routing_key="ar.#", channel=channel).declare()
    Queue(queue_name, channel=channel).purge()
    first_delay = delay_queue_name(queue_name, RETRY_DELAYS_SECONDS[0])
    Queue(first_delay, channel=channel).declare()
    Queue(first_delay, channel=channel).purge()
    settled = SettledUnits()
    consumer = SyncConsumer(
        broker.clone(),
        [Queue(queue_name, exchange, routing_key="ar.#")],
        RecheckingHandler(),
        window=0.01,
        workers=2,
        middleware=[settled],
    )
    producer = Producer(channel)
    envelope = {"connectionId": "c-1", "resource": "customers", "key": "7", "action": "update"}
    with running(consumer) as worker:
        producer.publish(envelope, exchange=exchange, routing_key="ar.customers.update")
        producer.publish({"connectionId": "c-1"}, exchange=exchange, routing_key="ar.customers.update")
        wait_until(lambda: len(settled.units) == 1 and depth(broker, DEAD_LETTER_QUEUE_NAME) == 1, timeout=10)
        worker.stop()
    assert settled.units[0].keys == ["7"]
    copies = messages_in(broker, first_delay)
    assert [(m.payload, m.headers[RECHECK]) for m in copies] == [(envelope, 1)]
    [dead] = messages_in(broker, DEAD_LETTER_QUEUE_NAME)
    assert dead.headers[REASON] == "malformed_message"
    assert depth(broker, queue_name) == 0


class Sleeper:
    """A worker that runs until stopped and notes what the process helper asked of it."""

    def __init__(self) -> None:
        self.stopped = threading.Event()
        self.running = threading.Event()
        self.steps: list[str] = []

    def run(self) -> None:
        self.running.set()
        self.steps.append("run")
        assert self.stopped.wait(10), "no stop() came"

    def stop(self) -> None:
        self.steps.append("stop")
        self.stopped.set()

    def close(self) -> None:
        self.steps.append("close")


def test_run_worker_serves_metrics_stops_on_sigterm_closes_and_gives_the_signal_handlers_back():
    registry = CollectorRegistry()
    Counter("flexsync_test_ticks", "A counter of this test", registry=registry).inc(3)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    worker = Sleeper()
    before = signal.getsignal(signal.SIGTERM)
    scraped: list[str] = []

    def scrape_then_terminate() -> None:
        worker.running.wait(10)
        scraped.append(requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=scrape_then_terminate, daemon=True).start()
    with structlog.testing.capture_logs() as logs:
        run_worker("writeback", worker, registry=registry, port=port, queue="writeback")
    assert worker.steps == ["run", "stop", "close"]
    assert "flexsync_test_ticks_total 3.0" in scraped[0]
    assert [(entry["event"], entry.get("metrics_port")) for entry in logs] == [
        ("writeback_started", port),
        ("writeback_stopping", None),
        ("writeback_stopped", None),
    ]
    assert logs[0]["queue"] == "writeback" and logs[1]["signal"] == "SIGTERM"
    assert signal.getsignal(signal.SIGTERM) is before
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5)  # the port is free again


def test_worker_metrics_listen_on_loopback_only_and_need_the_metrics_token():
    registry = CollectorRegistry()
    Counter("flexsync_test_ticks", "A counter of this test", registry=registry).inc(2)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    worker = Sleeper()
    token = "metrics-token-0123456789abcdef"
    seen: dict[str, object] = {}

    def scrape_then_terminate() -> None:
        try:
            worker.running.wait(10)
            url = f"http://127.0.0.1:{port}/metrics"
            seen["anonymous"] = requests.get(url, timeout=5).status_code
            seen["wrong"] = requests.get(url, headers={"Authorization": "Bearer nope"}, timeout=5).status_code
            scraped = requests.get(url, headers={"Authorization": f"Bearer {token}"}, timeout=5)
            seen["scraped"] = (scraped.status_code, scraped.text)
            # Not on every interface: another address of this host finds nothing listening.
            outside = socket.gethostbyname(socket.gethostname())
            if not outside.startswith("127."):
                with socket.socket() as other:
                    other.settimeout(5)
                    seen["outside"] = other.connect_ex((outside, port))
        finally:
            os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=scrape_then_terminate, daemon=True).start()
    with structlog.testing.capture_logs() as logs:
        run_worker("writeback", worker, registry=registry, port=port, token=token)
    assert seen["anonymous"] == 401 and seen["wrong"] == 401
    assert seen["scraped"][0] == 200 and "flexsync_test_ticks_total 2.0" in seen["scraped"][1]
    assert seen.get("outside", 1) != 0
    assert logs[0]["metrics_bind"] == "127.0.0.1"
    assert token not in repr(logs)


def test_a_worker_process_without_its_settings_stops_naming_the_missing_one(tmp_path):
    settings = Settings(
        flexsync_env="test",
        database_url=f"sqlite:///{tmp_path}/flexsync.db",
        intacct_client_secret="s",
        flexpoint_api_url="http://127.0.0.1:1",
    )
    with pytest.raises(SettingsError, match="FLEXPOINT_API_TOKEN is required by the writeback process"):
        require_settings(settings, "writeback")


def held(consumer: SyncConsumer) -> int:
    """Events waiting in the coalescer (read from another thread: a count taken mid-change is retried)."""
    try:
        return consumer.draining_state()["events_not_started"]
    except RuntimeError:
        return -1


def test_sync_hands_groups_to_idle_threads_only_so_a_busy_pool_lets_the_next_group_grow(broker):
    queue_name = "sync.gl"
    exchange = Exchange("intacct.events", "topic")
    channel = broker.default_channel
    Queue(queue_name, exchange, routing_key="gl.#", channel=channel).declare()
    Queue(queue_name, channel=channel).purge()
    release = threading.Event()
    processed: list[list[str]] = []

    class SlowFirstGroup:
        def process(self, group: Group) -> GroupOutcome:
            processed.append(group.keys)
            if len(processed) == 1:
                release.wait(10)
            return GroupOutcome(done=list(group.events))

    consumer = SyncConsumer(
        broker.clone(),
        [Queue(queue_name, exchange, routing_key="gl.#")],
        SlowFirstGroup(),
        window=0.01,
        workers=1,
    )
    producer = Producer(channel)

    def send(key: str) -> None:
        envelope = {"connectionId": "c-2", "resource": "gl-accounts", "key": key, "action": "update"}
        producer.publish(envelope, exchange=exchange, routing_key="gl.gl-accounts.update")

    with running(consumer) as worker:
        send("1")
        wait_until(lambda: processed == [["1"]], timeout=10)
        for key in ("2", "3", "4"):
            send(key)
        # Well past the window, yet the only thread is busy: the events wait together.
        wait_until(lambda: held(consumer) == 3, timeout=10, message="three events held back")
        release.set()
        wait_until(lambda: len(processed) == 2 and depth(broker, queue_name) == 0, timeout=10)
        worker.stop()
    assert processed == [["1"], ["2", "3", "4"]]


class _Watched(MessageConsumer):
    """Notes each on_consuming call."""

    consuming: list[bool]

    def on_consuming(self, consuming: bool) -> None:
        self.consuming.append(consuming)


def test_until_idle_handles_what_waits_then_returns_by_itself_telling_when_it_consumed(broker, queue_name):
    for n in range(3):
        publish(broker, {"n": n})
    handled: list[int] = []
    queue = Queue(queue_name, PAYMENTS, routing_key="payment.#")
    consumer = _Watched(
        broker.clone(), [queue], lambda d: handled.append(d.body["n"]), name="once", until_idle=0.2
    )
    consumer.consuming = []
    worker = Running(consumer)
    worker.thread.join(10)
    assert not worker.thread.is_alive(), "run() did not return once the queue was idle"
    consumer.close()
    assert sorted(handled) == [0, 1, 2]
    assert depth(broker, queue_name) == 0  # each settled (acked) before run() returned
    assert consumer.consuming == [True, False]
