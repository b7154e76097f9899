"""The project's side of bench/sync.py: ``--workers`` `flexsync sync` processes, started and
watched through their /metrics; the P2 drain of a published backlog and the P3 freshness run."""

from __future__ import annotations

import contextlib
import math
import signal
import time
from collections.abc import Sequence
from concurrent.futures import Future
from datetime import datetime
from typing import Any

from bench.common import BenchError, Process, RunFailed, free_port, http_get, loud, progress
from bench.sync_events import Target
from bench.sync_metrics import cpu_text, describe_worker_metrics, lag_histogram, merged, scrape, total_of
from bench.sync_report import Drain
from bench.sync_stage import CAP_PER_COMPANY, SyncStage


def percentile(values: Sequence[float], share: float) -> float:
    """Nearest-rank percentile of sorted ``values`` (``inf`` stands for "never")."""
    if not values:
        return math.nan
    rank = max(1, math.ceil(share * len(values)))
    return values[rank - 1]


class ProjectWorkers(SyncStage):
    """Runs of the project's own sync workers on the stage."""

    def start_workers(self) -> float:
        """Start ``--workers`` `flexsync sync` processes; returns when the first one is up."""
        base = self._base_env() | {
            "FLEXSYNC_ENV": "development",
            "AMQP_URL": self.amqp_url,
            "DATABASE_URL": self.database_url,
            "FLEXSYNC_SECRET_KEY": self.fernet_key,
            "INTACCT_API_URL": f"{self.intacct_url}/ia/api/v1",
            "INTACCT_CLIENT_SECRET": self.client_secret,
            "FLEXPOINT_API_URL": self.flexpoint_url,
            "FLEXPOINT_API_TOKEN": self.flexpoint_token,
            "INTACCT_MAX_CONCURRENCY_PER_COMPANY": str(CAP_PER_COMPANY),
            "ARCHIVE_MAX_AGE": "1h",
            "LOG_LEVEL": "WARNING",
            "LOG_FORMAT": "console",
        }
        self.workers = []
        generation = len(self.processes)
        for number in range(self.args.workers):
            port = free_port()
            name = f"sync-{generation}-{number + 1}"
            process = Process(
                name, [*self._flexsync(), "sync"], base | {"PORT": str(port)}, self.workdir / f"{name}.log"
            )
            self.processes[name] = process
            self.workers.append((process, port))
        # One clean-up for all: every worker gets SIGTERM at once, then each is waited for.
        self.stack.callback(self._stop_all, [process for process, _ in self.workers])
        spawned = time.monotonic()
        progress(
            f"started {len(self.workers)} `flexsync sync` processes: pids {', '.join(str(p.pid) for p, _ in self.workers)}"
        )
        # The metrics endpoint opens right before the consumer starts (processes.sync.run).
        first: float | None = None
        up: set[int] = set()
        deadline = spawned + 60
        while len(up) < len(self.workers):
            for process, port in self.workers:
                if not process.alive():
                    raise BenchError(
                        f"{process.name} exited with status {process.popen.returncode}:\n{process.tail()}"
                    )
                if port in up:
                    continue
                with contextlib.suppress(OSError):
                    if http_get(port, "/metrics", timeout=1)[0] == 200:
                        up.add(port)
                        first = first or time.monotonic()
            if time.monotonic() > deadline:
                raise BenchError("the sync workers did not start within 60 s:\n" + self.workers[0][0].tail())
            time.sleep(0.01)
        assert first is not None
        self.worker_startup = first - spawned
        progress(
            f"first worker up {first - spawned:.2f} s after spawning, all up after {time.monotonic() - spawned:.2f} s"
        )
        return first

    def stop_workers(self) -> None:
        started = time.monotonic()
        self._stop_all([process for process, _ in self.workers], quiet=True)
        progress(f"sync workers stopped (SIGTERM; {time.monotonic() - started:.1f} s)")

    def _stop_all(self, processes: list[Process], quiet: bool = False) -> None:
        alive = [process for process in processes if process.alive()]
        if alive and not quiet:
            progress(f"stopping {', '.join(p.name for p in alive)} (SIGTERM)")
        for process in alive:
            with contextlib.suppress(ProcessLookupError):
                process.popen.send_signal(signal.SIGTERM)
        for process in alive:
            process.stop()

    def worker_metrics(self) -> dict:
        snapshots = []
        for process, port in self.workers:
            try:
                snapshots.append(scrape(port))
            except OSError as exc:
                raise BenchError(
                    f"{process.name}'s /metrics did not answer ({exc}):\n{process.tail()}"
                ) from None
        return merged(snapshots)

    def settled(self, samples: dict) -> tuple[int, int]:
        """(events done or dropped, events failed) so far, over all workers."""
        done = total_of(samples, "flexsync_sync_events_total", outcome="done")
        dropped = total_of(samples, "flexsync_sync_events_total", outcome="dropped")
        failed = total_of(samples, "flexsync_sync_events_total", outcome="failed")
        return int(done + dropped), int(failed)

    # P2: the project's drain ---------------------------------------------------------------

    def project_drain(self, messages: list, targets: list[Target]) -> Drain:
        from kombu import Connection

        self.reset_simulators()
        self.publish_all(messages, "P2 project")
        self.wait_for_depth("sync.ar", len(messages))
        touched = len({(t.company, t.resource, t.key) for t in targets})
        started = self.start_workers()
        cpu_before = self.cpu_now()
        deadline = started + self.args.drain_timeout
        last_report = started
        finished: float | None = None
        with Connection(self.amqp_url, connect_timeout=5) as connection:
            channel = connection.channel()
            while time.monotonic() < deadline:
                for process, _ in self.workers:
                    if not process.alive():
                        raise RunFailed(f"{process.name} died during the drain:\n{process.tail()}")
                samples = self.worker_metrics()
                done, failed = self.settled(samples)
                now = time.monotonic()
                if now - last_report >= 5:
                    last_report = now
                    progress(
                        f"project: {done:,} of {len(messages):,} settled ({failed} failed) after {now - started:.1f} s"
                    )
                if (
                    done >= len(messages)
                    and self.drained(channel)
                    and self.flexpoint_stored_count() >= touched
                ):
                    finished = time.monotonic()
                    break
                time.sleep(0.1)
        if finished is None:
            samples = self.worker_metrics()
            raise_note = (
                f"NOT DRAINED within {self.args.drain_timeout:.0f} s: {self.settled(samples)[0]:,} settled"
            )
            loud(raise_note + "\n" + "\n".join(p.tail() for p, _ in self.workers))
            finished = time.monotonic()
            note = raise_note
        else:
            note = ""
        cpu_after = self.cpu_now()
        samples = self.worker_metrics()
        drain = Drain(
            "project",
            len(messages),
            finished - started,
            startup=self.worker_startup,
            intacct=self.intacct_sandbox("GET", "/stats"),
            flexpoint=self.flexpoint_sandbox("GET", "/summary")["requests"],
            cpu=cpu_text(cpu_before, cpu_after, finished - started),
            errors=self.settled(samples)[1],
            note=note,
            extra=self.settled(samples)[0] - len(messages),
        )
        self.project_samples = samples
        self.stop_workers()
        progress(f"project drain: {drain.events:,} events in {drain.seconds:.2f} s = {drain.rate:,.0f} ev/s")
        progress(f"project CPU during the drain: {drain.cpu}")
        describe_worker_metrics(samples)
        return drain

    # P3: freshness -------------------------------------------------------------------------

    def freshness(self, targets: list[Target]) -> dict[str, Any]:
        from kombu import Connection

        self.reset_simulators()
        self.start_workers()
        time.sleep(1.0)  # the consumers connect and subscribe
        before = self.worker_metrics()
        settled_before = self.settled(before)[0]
        rate = self.args.freshness_rate
        published: list[float] = []
        futures: list[Future[None]] = []
        progress(f"P3: publishing {len(targets):,} events at {rate:g}/s")
        start = time.monotonic() + 0.05
        for index, target in enumerate(targets):
            delay = start + index / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            moment = time.time()
            routing_key, body, event_id = self.envelope(target, moment)
            futures.append(self.publisher.publish(routing_key, body, message_id=event_id))
            published.append(moment)
        for future in futures:
            future.result(timeout=30)
        achieved = (len(published) - 1) / (published[-1] - published[0]) if len(published) > 1 else 0.0
        progress(f"P3: published and confirmed, achieved {achieved:,.1f} events/s")
        deadline = time.monotonic() + 60
        with Connection(self.amqp_url, connect_timeout=5) as connection:
            channel = connection.channel()
            while time.monotonic() < deadline:
                after = self.worker_metrics()
                if self.settled(after)[0] - settled_before >= len(targets) and self.drained(channel):
                    break
                time.sleep(0.1)
        after = self.worker_metrics()
        settled = self.settled(after)[0] - settled_before
        self.stop_workers()

        updated: dict[tuple[int, str, str], float] = {}
        for (company, resource, key), record in self.flexpoint_records().items():
            updated[(company, resource, key)] = datetime.fromisoformat(record["updatedAt"]).timestamp()
        # A record's updatedAt moves only when its stored state changes, and FlexPoint was reset
        # before the run: it is the moment the record's first write landed. An event whose
        # record was already written when it was published (an invoice a payment event brought
        # along, a repeat) found it fresh: 0, and counted apart.
        latencies = []
        written_after: list[float] = []
        for target, moment in zip(targets, published, strict=True):
            at = updated.get((target.company, target.resource, target.key))
            latency = math.inf if at is None else max(0.0, at - moment)
            latencies.append(latency)
            if at is None or at > moment:
                written_after.append(latency)
        latencies.sort()
        written_after.sort()
        return {
            "events": len(targets),
            "records": len({(t.company, t.resource, t.key) for t in targets}),
            "achieved": achieved,
            "settled": settled,
            "p50": percentile(latencies, 0.50),
            "p99": percentile(latencies, 0.99),
            "max": latencies[-1] if latencies else math.nan,
            "missing": sum(1 for v in latencies if math.isinf(v)),
            "already": len(latencies) - len(written_after),
            "strict_p99": percentile(written_after, 0.99),
            "histogram": lag_histogram(before, after),
        }
