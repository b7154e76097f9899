"""Queue depths sampled every few seconds and kept for an hour, for the overview's charts and rates."""

from __future__ import annotations

import collections
import threading
import time
from dataclasses import dataclass
from typing import Any

import structlog

from broker.topology import Topology, queue_kind
from processes.status import queue_status

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Sample:
    at: float
    queues: dict[str, tuple[int, int]]  # name -> (depth, consumers)


class QueueSampler:
    """Samples every queue (passive declares: no management plugin needed) in a thread of its own."""

    def __init__(
        self, amqp_url: str, topology: Topology, *, every: float = 10.0, keep: float = 3600.0
    ) -> None:
        self._url = amqp_url
        self._topology = topology
        self._every = every
        self._samples: collections.deque[Sample] = collections.deque(maxlen=max(2, int(keep / every) + 1))
        self._kinds = {q.name: queue_kind(q) for q in topology.queues}
        self.error: str | None = None

    def sample(self) -> None:
        try:
            statuses = queue_status(self._url, self._topology, interval=0)
        except Exception as exc:  # shown on the overview; the next sample tries again
            self.error = str(exc)
            return
        self.error = None
        self._samples.append(Sample(time.time(), {s.name: (s.depth, s.consumers) for s in statuses}))

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            self.sample()
            stop.wait(self._every)

    def latest(self) -> list[dict[str, Any]]:
        """Each queue's depth and consumers now, and its net rate over the last interval."""
        samples = list(self._samples)
        if not samples:
            return []
        last = samples[-1]
        before = samples[-2] if len(samples) > 1 else None
        rows = []
        for name, (depth, consumers) in last.queues.items():
            rate = None
            if before is not None and name in before.queues and last.at > before.at:
                rate = (depth - before.queues[name][0]) / (last.at - before.at)
            rows.append(
                {
                    "name": name,
                    "kind": self._kinds.get(name, "classic"),
                    "depth": depth,
                    "consumers": consumers,
                    "rate": rate,
                }
            )
        return rows

    def series(self) -> dict[str, Any]:
        """The last hour as columns: times (unix seconds) and each queue's depths."""
        samples = list(self._samples)
        names = [name for name, kind in self._kinds.items() if kind != "stream"]
        return {
            "t": [s.at for s in samples],
            "queues": {name: [s.queues.get(name, (None, 0))[0] for s in samples] for name in names},
        }
