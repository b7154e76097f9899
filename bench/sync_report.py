"""bench/sync.py's results and its summary lines: one per figure of QUALITY P2 and P3, on stdout."""

from __future__ import annotations

import argparse
import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from bench.common import figure, met
from bench.sync_metrics import total_of

RATIO_TARGET = 5.0
CALLS_PER_EVENT_TARGET = 0.05
P99_TARGET_SECONDS = 2.0


@dataclass
class Drain:
    """One drain's figures: the project's, or one of the reference's."""

    label: str
    events: int
    seconds: float  # from the first consumer up to the last event settled
    startup: float = 0.0  # process start-up before that (the project's workers)
    intacct: dict[str, Any] = field(default_factory=dict)  # the simulator's /sandbox/stats
    flexpoint: dict[str, Any] = field(default_factory=dict)  # the simulator's request counters
    cpu: str = ""
    errors: int = 0
    note: str = ""
    extra: int = 0  # events settled more than once (the workers' second looks)

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0


@dataclass
class Verdict:
    """One correctness check's outcome and what it found."""

    label: str
    ok: bool
    text: str


def seconds_text(value: float) -> str:
    return "never" if math.isinf(value) else f"{value:.3f} s"


def report_p2(
    args: argparse.Namespace,
    project_samples: dict,
    project: Drain,
    reference: Drain,
    in_memory: Drain,
    project_ok: Verdict,
    references_ok: list[Verdict],
) -> None:
    """The P2 lines: each drain, their ratio, Intacct's and FlexPoint's calls, correctness."""
    subset = (
        f"the first {reference.events:,} of the {project.events:,} events"
        if reference.events < project.events
        else f"the same {reference.events:,} events"
    )
    groups = total_of(project_samples, "flexsync_sync_group_events_count")
    grouped = total_of(project_samples, "flexsync_sync_group_events_sum")
    figure(
        f"P2 project drain: {project.events:,} events in {project.seconds:.2f} s = {project.rate:,.0f} events/s "
        f"(from the first worker up to every event settled, i.e. acked, and every queue empty; start-up "
        f"{project.startup:.2f} s more{', ' + project.note if project.note else ''}) [the workers' "
        f"flexsync_sync_group_events: {groups:,.0f} groups, {grouped / groups if groups else 0:.1f} events per group; "
        f"{project.extra:,} events settled more than once]"
    )
    figure(
        f"P2 reference drain: {reference.events:,} events in {reference.seconds:.2f} s = "
        f"{reference.rate:,.0f} events/s ({subset}, rates compared per event; one GET + its lines + one "
        f"single-item upsert per event, {args.reference_handlers} handlers, the project's Intacct "
        f"client from create_client, cap held in the database{', ' + reference.note if reference.note else ''}) "
        f"[the same with the cap held in this process's memory: {in_memory.events:,} events in "
        f"{in_memory.seconds:.2f} s = {in_memory.rate:,.0f} events/s{', ' + in_memory.note if in_memory.note else ''}]"
    )
    ratio = project.rate / reference.rate if reference.rate else 0.0
    ratio_memory = project.rate / in_memory.rate if in_memory.rate else 0.0
    figure(
        f"P2 throughput ratio: project/reference = {ratio:.1f}x (target >= {RATIO_TARGET:g}x: "
        f"{met(ratio >= RATIO_TARGET)}) [events per second of each, measured in this run; against the "
        f"reference with the cap in memory: {ratio_memory:.1f}x ({met(ratio_memory >= RATIO_TARGET)})]"
    )
    calls = project.intacct.get("totalCalls", 0)
    by_object: Counter = Counter()
    for per_company in project.intacct.get("calls", {}).values():
        by_object.update(per_company)
    per_event = calls / project.events if project.events else math.inf
    ref_calls = reference.intacct.get("totalCalls", 0)
    figure(
        f"P2 Intacct calls per event (project): {calls:,} calls / {project.events:,} events = {per_event:.4f} "
        f"(target <= {CALLS_PER_EVENT_TARGET:g}: {met(per_event <= CALLS_PER_EVENT_TARGET)}) "
        f"[{', '.join(f'{path} {n:,}' for path, n in by_object.most_common())}; reference "
        f"{ref_calls / reference.events if reference.events else 0:.2f}]"
    )
    too_many = project.intacct.get("tooManyRequests", 0)
    figure(
        f"P2 Intacct 429s during the project's run: {too_many} (target 0: {met(too_many == 0)}) "
        f"[peak in flight per company {max(project.intacct.get('peakInFlight', {}).values() or [0])}; "
        f"references: {reference.intacct.get('tooManyRequests', 0)} and "
        f"{in_memory.intacct.get('tooManyRequests', 0)}]"
    )
    flex_calls = project.flexpoint.get("total", 0)
    ref_flex = reference.flexpoint.get("total", 0)
    figure(
        f"P2 FlexPoint calls per event: project {flex_calls:,} / {project.events:,} = "
        f"{flex_calls / project.events if project.events else 0:.4f} (statuses {project.flexpoint.get('byStatus')}); "
        f"reference {ref_flex:,} / {reference.events:,} = {ref_flex / reference.events if reference.events else 0:.2f}"
    )
    failures = f"; {project.errors} events failed at least once (retried)" if project.errors else ""
    references = "; ".join(
        f"{v.label.removeprefix('P2 ')}: {'OK' if v.ok else 'FAILED (' + v.text + ')'}" for v in references_ok
    )
    figure(
        f"P2 correctness: project: {project_ok.text}{failures}: {'OK' if project_ok.ok else 'FAILED'}; "
        f"{references}"
    )


def report_p3(args: argparse.Namespace, result: dict[str, Any], verdict: Verdict) -> None:
    """The P3 lines: freshness (from ProjectWorkers.freshness) and its correctness."""
    p99 = result["p99"]
    histogram = result["histogram"]
    figure(
        f"P3 freshness at {args.freshness_rate:g} events/s for {args.freshness_seconds:g} s "
        f"({result['events']:,} events on {result['records']:,} records, achieved {result['achieved']:,.1f}/s): "
        f"p50 {seconds_text(result['p50'])}, p99 {seconds_text(p99)}, max {seconds_text(result['max'])} "
        f"(target p99 <= {P99_TARGET_SECONDS:g} s: {met(p99 <= P99_TARGET_SECONDS)}) [from the publish "
        f"(receivedAt, stamped before the broker's confirm) to FlexPoint's own updatedAt of the record; "
        f"{result['already']} events found their record already written (0 s), p99 without them "
        f"{seconds_text(result['strict_p99'])}; {result['missing']} never visible; the workers' own "
        f"flexsync_sync_lag_seconds: {histogram}]"
    )
    settled = f"{result['settled']:,} of {result['events']:,} events settled"
    figure(f"P3 correctness: {settled}; {verdict.text}: {'OK' if verdict.ok else 'FAILED'}")
