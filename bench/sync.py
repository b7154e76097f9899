"""Sync worker benchmark, QUALITY P2 and P3: the project's workers against a plain consumer, in one run.

    .venv/bin/python bench/sync.py [--events 20000] [--companies 20] [--repeat-share 0.3] [--latency-ms 20]
                                   [--workers 2] [--freshness-rate 200] [--freshness-seconds 20]

Everything runs on this host: the Sage Intacct simulator and the FlexPoint simulator, each in its
own process (so neither competes for this script's GIL) with ``--latency-ms`` injected into every
API call through their admin APIs, and Intacct's cap of 2 concurrent requests per company; a
RabbitMQ vhost made for the run (deleted afterwards) with the project's topology; a fresh SQLite
store with one connection per simulated company.

P2, drain: the events are published (persistent, publisher confirms) before any consumer starts.
Then ``--workers`` processes of the project's ``flexsync sync`` drain them, timed from the moment
the first of them is up until every event is settled and the queues are empty. FlexPoint is
reset, the first ``--reference-events`` of the same events are published again and the
reference consumer written below (one GET + lines + one single-item upsert per event, 16
handlers, through the project's own Intacct client so the cap holds) drains them in this
process. Both rates are events per second, so the ratio compares like with like.

P3, freshness: with the project's workers running, events are published at a steady rate and
each one's freshness is FlexPoint's own ``updatedAt`` of the record (stamped by the FlexPoint
simulator when the write is applied) minus the event's publish time (its ``receivedAt``).

Progress goes to stderr; the summary, one line per figure, to stdout. Exit status 0 when the run
completed and every correctness check held (performance targets missed are reported, never an
error), 1 when a correctness check failed, 2 when the run could not be set up, 130 on Ctrl-C.

The parts: bench/sync_stage.py (the set-up), bench/sync_events.py (the event plan),
bench/sync_project.py (the project's workers), bench/sync_reference.py and bench/sync_slots.py
(the reference consumer), bench/sync_check.py (correctness), bench/sync_metrics.py and
bench/sync_report.py (what is measured and the summary lines).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.common import DEFAULT_AMQP_URL, figure, run_guarded  # noqa: E402
from bench.sync_check import Correctness  # noqa: E402
from bench.sync_events import plan_events  # noqa: E402
from bench.sync_project import ProjectWorkers  # noqa: E402
from bench.sync_reference import reference_drain  # noqa: E402
from bench.sync_report import report_p2, report_p3  # noqa: E402


class Benchmark(ProjectWorkers, Correctness):
    """The whole run: the stage, the project's drain, the reference's two drains, freshness."""

    # the whole run ---------------------------------------------------------------------------

    def run(self) -> int:
        args = self.args
        rng = random.Random(args.seed)
        targets, hot = plan_events(self.pools, args.events, args.repeat_share, rng)
        now = time.time()
        messages = [self.envelope(target, now) for target in targets]
        mix = Counter(t.resource for t in targets)
        distinct = len({(t.company, t.resource, t.key) for t in targets})
        reference_count = min(args.reference_events or len(targets), len(targets))
        figure(
            f"P2 setup: {len(self.companies)} companies (each seeded with ~{self.seeded.get('customer', 0)} customers, "
            f"~{self.seeded.get('invoice', 0)} invoices, ~{self.seeded.get('payment', 0)} payments); "
            f"{len(targets):,} events ({', '.join(f'{n:,} {r}' for r, n in mix.most_common())}) on {distinct:,} records, "
            f"{args.repeat_share:.0%} of them repeats on {hot} hot records; latency {self.latency_seen[0]:g} ms per "
            f"Intacct call and {self.latency_seen[1]} ms per FlexPoint call, Intacct cap {self.latency_seen[2]} per "
            f"company; project: {args.workers} `flexsync sync` processes; reference: {args.reference_handlers} "
            f"handlers on the first {reference_count:,} of the same events; RabbitMQ {self.rabbitmq_version} "
            f"(vhost {self.vhost}); {os.cpu_count()} CPUs"
        )

        project = self.project_drain(messages, targets)
        project_verdict = self.verify("P2 project", targets)

        reference_targets = targets[:reference_count]
        reference = reference_drain(self, messages[:reference_count])
        reference_verdict = self.verify("P2 reference", reference_targets)
        in_memory = reference_drain(self, messages[:reference_count], cap_in_memory=True)
        in_memory_verdict = self.verify("P2 reference (cap in memory)", reference_targets)

        report_p2(
            args,
            self.project_samples,
            project,
            reference,
            in_memory,
            project_verdict,
            [reference_verdict, in_memory_verdict],
        )

        if args.freshness_seconds > 0 and args.freshness_rate > 0:
            count = max(1, round(args.freshness_rate * args.freshness_seconds))
            fresh_targets, _ = plan_events(
                self.pools, count, args.freshness_repeat_share, random.Random(args.seed + 1)
            )
            result = self.freshness(fresh_targets)
            fresh_verdict = self.verify("P3", fresh_targets)
            report_p3(args, result, fresh_verdict)
        return 0 if all(v.ok for v in self.verdicts) else 1


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("--events", type=int, default=20_000, help="events in the P2 drain")
    parser.add_argument("--companies", type=int, default=20, help="simulated companies, one connection each")
    parser.add_argument(
        "--repeat-share", type=float, default=0.3, help="share of events repeating a hot record"
    )
    parser.add_argument(
        "--latency-ms", type=float, default=20, help="latency injected per Intacct and FlexPoint call"
    )
    parser.add_argument("--workers", type=int, default=2, help="`flexsync sync` processes")
    parser.add_argument(
        "--reference-events",
        type=int,
        default=3000,
        help="events the reference consumer drains (the first of the same sequence); 0 for all",
    )
    parser.add_argument(
        "--reference-handlers", type=int, default=16, help="the reference consumer's concurrent handlers"
    )
    parser.add_argument("--freshness-rate", type=float, default=200, help="P3 events per second")
    parser.add_argument("--freshness-seconds", type=float, default=20, help="P3 duration; 0 skips P3")
    parser.add_argument(
        "--freshness-repeat-share",
        type=float,
        default=0.0,
        help="share of P3 events repeating a record (0: each event names a record of its own, so each is timed exactly)",
    )
    parser.add_argument("--drain-timeout", type=float, default=300, help="seconds a drain may take at most")
    parser.add_argument("--seed", type=int, default=1, help="seed of the event plan")
    parser.add_argument(
        "--amqp-url",
        default=os.environ.get("AMQP_URL") or DEFAULT_AMQP_URL,
        help="RabbitMQ on this host (AMQP_URL); a vhost is created for the run",
    )
    args = parser.parse_args(argv)
    if args.events < 1 or args.companies < 1 or args.workers < 1 or args.reference_handlers < 1:
        parser.error("--events, --companies, --workers and --reference-handlers must be at least 1")
    if not 0 <= args.repeat_share < 1 or not 0 <= args.freshness_repeat_share < 1:
        parser.error("--repeat-share and --freshness-repeat-share must lie in [0, 1)")
    if args.latency_ms < 0 or args.reference_events < 0:
        parser.error("--latency-ms and --reference-events cannot be negative")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)

    def body(stack: contextlib.ExitStack) -> int:
        bench = Benchmark(args, stack)
        bench.prepare()
        return bench.run()

    return run_guarded("bench/sync.py", body, cleaned="processes stopped, vhost deleted, temp dir removed")


if __name__ == "__main__":
    sys.exit(main())
