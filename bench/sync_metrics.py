"""What bench/sync.py reads of the processes it runs: CPU time from /proc, and the sync workers'
own Prometheus metrics (settled events, groups, calls per peer, the lag histogram)."""

from __future__ import annotations

import math
import os
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

from bench.common import http_get, process_stat, progress


def cpu_seconds(groups: dict[str, list[int]]) -> dict[str, float]:
    """CPU seconds so far of each named set of process groups, of RabbitMQ and of this script."""
    tick = os.sysconf("SC_CLK_TCK")
    by_group = {pgid: name for name, pgids in groups.items() for pgid in pgids}
    totals = {name: 0.0 for name in groups} | {"rabbitmq": 0.0}
    for entry in Path("/proc").iterdir():
        found = process_stat(entry.name) if entry.name.isdigit() else None
        if found is None:
            continue  # not a process, or it ended meanwhile
        name, fields = found
        seconds = (int(fields[11]) + int(fields[12])) / tick
        group = by_group.get(int(fields[2]))
        if group is not None:
            totals[group] += seconds
        elif name == "beam.smp":
            totals["rabbitmq"] += seconds
    own = os.times()
    totals["bench"] = own.user + own.system
    return totals


def cpu_text(before: dict[str, float], after: dict[str, float], seconds: float) -> str:
    return ", ".join(
        f"{name} {after[name] - before.get(name, 0.0):.1f} s ({(after[name] - before.get(name, 0.0)) / seconds:.0%})"
        for name in after
        if seconds > 0
    )


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """A worker's /metrics as {(sample name, labels): value}."""
    from prometheus_client.parser import text_string_to_metric_families

    status, body = http_get(port, "/metrics")
    if status != 200:
        raise OSError(f"/metrics answered {status}")
    samples = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def total_of(samples: dict, name: str, **labels: str) -> float:
    wanted = set(labels.items())
    return sum(
        value
        for (sample, sample_labels), value in samples.items()
        if sample == name and wanted <= set(sample_labels)
    )


def merged(snapshots: Iterable[dict]) -> dict:
    out: Counter = Counter()
    for snapshot in snapshots:
        out.update(snapshot)
    return dict(out)


def lag_histogram(before: dict, after: dict) -> str:
    """The workers' own lag histogram over the run: which bucket holds the p50 and the p99."""
    buckets = []
    for (name, labels), value in after.items():
        if name == "flexsync_sync_lag_seconds_bucket":
            bound = float(dict(labels)["le"])
            buckets.append((bound, value - before.get((name, labels), 0.0)))
    buckets.sort()
    total = buckets[-1][1] if buckets else 0
    if not total:
        return "no observations"

    def bucket(share: float) -> str:
        previous = 0.0
        for bound, count in buckets:
            if count >= share * total:
                return f"({previous:g}, {bound:g}] s" if not math.isinf(bound) else f"> {previous:g} s"
            previous = bound
        return "?"

    return f"{total:,.0f} observed, p50 in {bucket(0.5)}, p99 in {bucket(0.99)} (settle time at the consumer)"


def describe_worker_metrics(samples: dict) -> None:
    """A progress line of what the workers' metrics say about a drain."""
    groups = total_of(samples, "flexsync_sync_group_events_count")
    events = total_of(samples, "flexsync_sync_group_events_sum")
    calls = {
        dict(labels).get("peer", "?") + " " + dict(labels).get("status", "?"): value
        for (name, labels), value in samples.items()
        if name == "flexsync_outbound_calls_total"
    }
    latency = {}
    for peer in ("intacct", "flexpoint"):
        count = total_of(samples, "flexsync_outbound_call_seconds_count", peer=peer)
        total = total_of(samples, "flexsync_outbound_call_seconds_sum", peer=peer)
        if count:
            latency[peer] = f"{count:.0f} calls, mean {total / count * 1000:.1f} ms"
    failures = {
        f"{dict(labels).get('resource')}/{dict(labels).get('reason')}": value
        for (name, labels), value in samples.items()
        if name == "flexsync_sync_failures_total" and value
    }
    progress(
        f"project metrics: {groups:.0f} groups, {events / groups if groups else 0:.1f} events per group; "
        f"calls by peer/status {calls}; {latency}; failures {failures or 'none'}"
    )
