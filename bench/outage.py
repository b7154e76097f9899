"""Issue 12: the drain of a backlog built up while FlexPoint was down (QUALITY R6, as figures).

Several companies seeded in the Intacct simulator, ``--workers`` real ``flexsync sync`` processes
on a compressed retry schedule and breaker (as ``tests/workers/test_r6_outages.py`` runs them),
FlexPoint answering 500/503 to everything while ``--events`` events are published and for
``--outage-seconds`` in all, then FlexPoint back. One ``OUTAGE ...`` line per figure: the calls
FlexPoint got while down against the events, the time from recovery until every queue is empty
and FlexPoint equals Intacct (and the drain rate over it), and FlexPoint's peak requests per
second during the drain. Exit 1 when FlexPoint differs from Intacct or a queue is not empty.

The set-up, the events, the workers and the checks are ``bench/sync.py``'s (its ``Benchmark``);
only the schedule, the outage and the sampling of FlexPoint's request counter are added here.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import os
import random
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.common import DEFAULT_AMQP_URL, RunFailed, figure, met, progress, run_guarded  # noqa: E402
from bench.sync import Benchmark  # noqa: E402
from bench.sync_events import plan_events  # noqa: E402
from bench.sync_metrics import describe_worker_metrics  # noqa: E402

# The compressed schedule of the R6 test: the outage outlasts the whole ladder many times over.
DELAYS = (1, 2, 3)
THRESHOLD = 3
PROBES = (1, 2)
FLEXPOINT_ATTEMPTS = 4  # FlexPointClient's own quick retries of one call (its default)


class CounterSampler:
    """FlexPoint's Sync API request counter (``/sandbox/faults``), read once a second in a thread."""

    def __init__(self, url: str, token: str) -> None:
        import requests

        self._url = f"{url}/sandbox/faults"
        self._http = requests.Session()
        self._http.headers["Authorization"] = f"Bearer {token}"
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="flexpoint-sampler", daemon=True)

    def read(self) -> int:
        return int(self._http.get(self._url, timeout=10).json()["requests"])

    def start(self) -> None:
        self._thread.start()

    def _loop(self) -> None:
        next_at = time.monotonic()
        while not self._stop.is_set():
            with contextlib.suppress(Exception):
                self.samples.append((time.monotonic(), self.read()))
            next_at += 1.0
            self._stop.wait(max(0.0, next_at - time.monotonic()))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._http.close()

    def rates(self, since: float, until: float) -> list[float]:
        """Requests per second between consecutive samples taken within [since, until]."""
        window = [(t, n) for t, n in self.samples if since <= t <= until]
        return [(n1 - n0) / (t1 - t0) for (t0, n0), (t1, n1) in itertools.pairwise(window) if t1 > t0]


class OutageBenchmark(Benchmark):
    """``bench/sync.py``'s run, with the R6 schedule in the workers' and the topology's settings."""

    def make_topology(self) -> Any:
        """The deployed topology with the R6 test's delay queues."""
        from broker.topology import build_topology

        return build_topology("1h", DELAYS)

    def _base_env(self) -> dict[str, str]:
        # The simulators ignore these; the sync workers read them at start-up.
        return super()._base_env() | {
            "FLEXSYNC_RETRY_DELAYS": ",".join(map(str, DELAYS)),
            "FLEXSYNC_BREAKER_THRESHOLD": str(THRESHOLD),
            "FLEXSYNC_BREAKER_PROBE_SECONDS": ",".join(map(str, PROBES)),
        }

    def _check_workers(self) -> None:
        for process, _ in self.workers:
            if not process.alive():
                raise RunFailed(f"{process.name} died:\n{process.tail()}")

    def run(self) -> int:
        from kombu import Connection

        args = self.args
        targets, _ = plan_events(self.pools, args.events, args.repeat_share, random.Random(args.seed))
        touched = len({(t.company, t.resource, t.key) for t in targets})
        messages = [self.envelope(target, time.time()) for target in targets]
        figure(
            f"OUTAGE setup: {len(self.companies)} companies, {len(messages):,} events on {touched:,} records, "
            f"{args.workers} `flexsync sync` processes, retry delays {DELAYS} s, breaker after {THRESHOLD} "
            f"failures, probes {PROBES} s apart, latency {args.latency_ms:g} ms per call, FlexPoint down "
            f"{args.outage_seconds:g} s; RabbitMQ {self.rabbitmq_version}; {os.cpu_count()} CPUs"
        )
        self.reset_simulators()
        self.start_workers()
        sampler = CounterSampler(self.flexpoint_url, self.flexpoint_token)
        self.stack.callback(sampler.stop)
        sampler.start()

        self.flexpoint_sandbox("PUT", "/faults", json={"serverErrorRate": 1.0})
        down_at = time.monotonic()
        before = sampler.read()
        self.publish_all(messages, "OUTAGE backlog")
        while time.monotonic() - down_at < args.outage_seconds:
            self._check_workers()
            time.sleep(0.5)  # the outage's length, not a wait for anything
        during = sampler.read() - before
        self.flexpoint_sandbox("PUT", "/faults", json={"serverErrorRate": 0.0})
        recovered = time.monotonic()
        down_for = recovered - down_at
        progress(f"FlexPoint back after {down_for:.1f} s down; {during} calls while down")

        finished = None
        deadline = recovered + args.drain_timeout
        last_report = recovered
        with Connection(self.amqp_url, connect_timeout=5) as connection:
            channel = connection.channel()
            while time.monotonic() < deadline:
                self._check_workers()
                done, _ = self.settled(self.worker_metrics())
                now = time.monotonic()
                if now - last_report >= 5:
                    last_report = now
                    progress(
                        f"drain: {done:,} of {len(messages):,} settled {now - recovered:.0f} s after recovery"
                    )
                if (
                    done >= len(messages)
                    and self.drained(channel)
                    and self.flexpoint_stored_count() >= touched
                ):
                    finished = time.monotonic()
                    break
                time.sleep(0.1)
        sampler.stop()
        samples = self.worker_metrics()
        self.stop_workers()
        describe_worker_metrics(samples)
        verdict = self.verify("OUTAGE", targets)

        bound = (THRESHOLD + 1 + down_for / PROBES[0]) * FLEXPOINT_ATTEMPTS
        figure(
            f"OUTAGE calls while down: {during} FlexPoint calls in {down_for:.0f} s for {len(messages):,} events "
            f"= {during / len(messages):.4f} per event; probe bound {bound:.0f} "
            f"(target: probes, not one per event: {met(during <= bound and during < len(messages))})"
        )
        if finished is None:
            figure(f"OUTAGE drain after recovery: NOT DRAINED within {args.drain_timeout:.0f} s")
            rates = sampler.rates(recovered, time.monotonic())
        else:
            span = finished - recovered
            figure(
                f"OUTAGE drain after recovery: every queue empty and FlexPoint complete {span:.1f} s after "
                f"recovery = {len(messages) / span:,.0f} events/s"
            )
            rates = sampler.rates(recovered, finished + 1.0)
        if rates:
            mean = sum(rates) / len(rates)
            figure(
                f"OUTAGE FlexPoint requests/s during the drain: peak {max(rates):,.0f}, mean {mean:,.0f}, "
                f"peak/mean {max(rates) / mean if mean else 0:.2f} ({len(rates)} one-second samples)"
            )
        else:
            figure("OUTAGE FlexPoint requests/s during the drain: no samples (drain shorter than 1 s)")
        figure(f"OUTAGE correctness: {verdict.text}: {'OK' if verdict.ok else 'FAILED'}")
        return 0 if verdict.ok and finished is not None else 1


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=5000, help="events published while FlexPoint is down")
    parser.add_argument("--companies", type=int, default=5, help="companies seeded in the Intacct simulator")
    parser.add_argument("--workers", type=int, default=2, help="`flexsync sync` processes")
    parser.add_argument("--outage-seconds", type=float, default=30, help="how long FlexPoint answers 5xx")
    parser.add_argument(
        "--repeat-share", type=float, default=0.3, help="share of events repeating hot records"
    )
    parser.add_argument("--latency-ms", type=float, default=20, help="latency injected per simulator call")
    parser.add_argument("--drain-timeout", type=float, default=180, help="seconds the drain may take at most")
    parser.add_argument("--seed", type=int, default=1, help="seed of the event plan")
    parser.add_argument(
        "--amqp-url",
        default=os.environ.get("AMQP_URL") or DEFAULT_AMQP_URL,
        help="RabbitMQ on this host (AMQP_URL); a vhost is created for the run",
    )
    args = parser.parse_args(argv)
    if args.events < 1 or args.companies < 1 or args.workers < 1 or args.outage_seconds <= 0:
        parser.error("--events, --companies, --workers must be at least 1, --outage-seconds above 0")
    if not 0 <= args.repeat_share < 1:
        parser.error("--repeat-share must lie in [0, 1)")
    # What bench/sync.py's set-up reads besides: no freshness run here.
    args.freshness_rate = args.freshness_seconds = 0
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)

    def body(stack: contextlib.ExitStack) -> int:
        bench = OutageBenchmark(args, stack)
        bench.prepare()
        return bench.run()

    return run_guarded("bench/outage.py", body, cleaned="processes stopped, vhost deleted, temp dir removed")


if __name__ == "__main__":
    sys.exit(main())
