"""bench/receiver.py's summary lines, one per figure of QUALITY P1, on stdout; and its verdict on
the receiver's correctness (only 2xx, every 2xx a message in its queue)."""

from __future__ import annotations

import os
import statistics
from typing import TYPE_CHECKING

from bench.common import figure, loud, met
from bench.receiver_wrk import BODY_BYTES, KINDS, WrkResult

if TYPE_CHECKING:
    from bench.receiver import Benchmark

RATIO_TARGET = 0.8
CPU_RATIO_TARGET = 1.3
P99_TARGET_MS = 50.0


def report(
    bench: Benchmark,
    peaks: dict[str, list[WrkResult]],
    best: dict[str, WrkResult],
    half: float,
    paced: WrkResult | None,
    pairs: list[tuple[WrkResult, WrkResult]],
    in_queue: dict[str, int],
) -> int:
    """Print the P1 lines; 1 when the receiver answered anything but 2xx or a 2xx has no message
    in its queue, else 0 (targets missed are reported, not failed)."""
    args = bench.args
    receiver, floor, bare = best["receiver"], best["floor"], best["bare"]
    figure(
        f"P1 setup: gunicorn ReadingThreadWorker (gthread reading each request whole first), {args.workers} workers x {args.threads} threads, keepalive 5 "
        f"(ReceiverServer options for all three); wrk {min(args.wrk_threads, args.connections)} threads x "
        f"{args.connections} connections, {BODY_BYTES}-byte JSON body, RS256 JWT + X-Trusted-Context, "
        f"unique Idempotency-Key; wrk started again until no worker holds more than "
        f"{args.balance_slack} connections above another; {args.rounds} rounds (floor and receiver swap places each round) x {args.duration:g} s; "
        f"RabbitMQ {bench.rabbitmq_version} (vhost {bench.vhost}); {os.cpu_count()} CPUs"
    )

    best_ratio = receiver.ok_rate / floor.ok_rate if floor.ok_rate else 0.0
    # Judged on each round's own pair of adjacent runs, the median of them: a best run of
    # each, taken from different rounds, compares two moments of a noisy machine.
    paired = [
        (
            r.ok_rate / f.ok_rate if f.ok_rate else 0.0,
            r.cpu_per_answer_us("receiver") / f.cpu_per_answer_us("floor")
            if f.cpu_per_answer_us("floor")
            else float("inf"),
        )
        for f, r in zip(peaks["floor"], peaks["receiver"], strict=True)
    ]
    ratio = statistics.median(rate for rate, _cpu in paired)
    to_bare = receiver.ok_rate / bare.ok_rate if bare.ok_rate else 0.0
    rounds = "; ".join(
        f"{kind} " + ", ".join(f"{r.ok_rate:,.0f}" for r in results) for kind, results in peaks.items()
    )
    figure(
        f"P1 peak throughput: receiver {receiver.ok_rate:,.0f} req/s, floor {floor.ok_rate:,.0f} req/s, "
        f"bare {bare.ok_rate:,.0f} req/s (best of rounds); receiver/floor, median of "
        f"{len(paired)} rounds' adjacent runs, {ratio:.2f} "
        f"(target >= {RATIO_TARGET}: {met(ratio >= RATIO_TARGET)}), "
        f"per round {', '.join(f'{rate:.2f}' for rate, _cpu in paired)}, of the best runs {best_ratio:.2f}; "
        f"receiver/bare {to_bare:.2f} (not judged) [2xx/s, each round: {rounds}]"
    )

    cpu = {kind: best[kind].cpu_per_answer_us(kind) for kind in KINDS}
    best_cpu_ratio = cpu["receiver"] / cpu["floor"] if cpu["floor"] else float("inf")
    cpu_ratio = statistics.median(c for _rate, c in paired)
    broker = ", ".join(f"{kind} {best[kind].cpu_per_answer_us('rabbitmq'):,.0f} us" for kind in KINDS)
    per_answer = {kind: best[kind].switches_per_answer() for kind in KINDS}
    switched = (
        " [thread switches per answer: "
        + ", ".join(f"{kind} {value:.1f}" for kind, value in per_answer.items() if value is not None)
        + "]"
        if any(value is not None for value in per_answer.values())
        else ""
    )
    figure(
        f"P1 CPU per answer (gunicorn workers, best peak run): receiver {cpu['receiver']:,.0f} us, "
        f"floor {cpu['floor']:,.0f} us, bare {cpu['bare']:,.0f} us; receiver/floor, median of the rounds' "
        f"adjacent runs, {cpu_ratio:.2f} "
        f"(target <= {CPU_RATIO_TARGET}: {met(cpu_ratio <= CPU_RATIO_TARGET)}), "
        f"per round {', '.join(f'{c:.2f}' for _rate, c in paired)}, of the best runs {best_cpu_ratio:.2f} "
        f"[RabbitMQ's per answer: {broker}]{switched}"
    )

    if pairs:
        ratios = sorted(r.cpu_per_answer_us("receiver") / f.cpu_per_answer_us("floor") for f, r in pairs)
        median = statistics.median(ratios)
        listed = "; ".join(
            f"floor {f.cpu_per_answer_us('floor'):,.0f} us / receiver {r.cpu_per_answer_us('receiver'):,.0f} us"
            for f, r in pairs
        )
        figure(
            f"P1 CPU per answer at a common paced rate ({half:,.0f} req/s offered to each, "
            f"{len(pairs)} adjacent pairs): receiver/floor median {median:.2f} "
            f"(target <= {CPU_RATIO_TARGET}: {met(median <= CPU_RATIO_TARGET)}), "
            f"range {ratios[0]:.2f}-{ratios[-1]:.2f} [{listed}]"
        )

    if paced is not None:
        p99 = paced.ms("p99")
        figure(
            f"P1 receiver latency at half peak: offered {half:,.0f} req/s, achieved {paced.ok_rate:,.0f} req/s: "
            f"p50 {paced.ms('p50'):.1f} ms, p99 {p99:.1f} ms "
            f"(target p99 <= {P99_TARGET_MS:g} ms: {met(p99 <= P99_TARGET_MS)})"
        )
    else:
        figure("P1 receiver latency at half peak: NOT MEASURED (the receiver gave no 2xx at peak)")

    figure(
        "P1 latency at peak: "
        + "; ".join(
            f"{kind} p50 {best[kind].ms('p50'):.1f} ms, p99 {best[kind].ms('p99'):.1f} ms" for kind in KINDS
        )
    )

    stolen = [r.steal for results in peaks.values() for r in results if r.steal is not None]
    if stolen:
        figure(
            f"P1 machine: the hypervisor took {min(stolen):.1%}-{max(stolen):.1%} of this machine's CPU "
            f"time for other guests during the peak runs (each run's share is in its progress line)"
        )

    problems = 0
    ok = {kind: sum(r.ok for r in bench.results[kind]) for kind in KINDS}
    bad = {kind: sum(r.not_ok for r in bench.results[kind]) for kind in KINDS}
    receiver_socket = sum(r.socket_errors for r in bench.results["receiver"])
    receiver_codes: dict[int, int] = {}
    for result in bench.results["receiver"]:
        for code, count in result.statuses.items():
            receiver_codes[code] = receiver_codes.get(code, 0) + count
    duplicates = receiver_codes.get(200, 0)
    others = ", ".join(
        f"{kind} {bad[kind] + sum(r.socket_errors for r in bench.results[kind]):,} of {ok[kind] + bad[kind]:,}"
        for kind in ("floor", "bare")
    )
    verdict = "OK" if bad["receiver"] == 0 and receiver_socket == 0 and duplicates == 0 else "FAILED"
    figure(
        f"P1 non-2xx answers: receiver {bad['receiver']:,} of {ok['receiver'] + bad['receiver']:,} "
        f"(statuses {dict(sorted(receiver_codes.items()))}, socket errors {receiver_socket}, "
        f"200-duplicates {duplicates}), {others}, all runs: {verdict}"
    )
    if verdict != "OK":
        problems += 1
        loud(
            "THE RECEIVER ANSWERED NON-2xx (or duplicates / socket errors) under load; see above. "
            "Its log tail:\n" + bench.servers["receiver"].tail(30)
        )

    checks = []
    for kind, queue in (("receiver", "sync.ar"), ("floor", "sync.gl")):
        enough = in_queue[queue] >= ok[kind]
        checks.append(
            f"{queue} holds {in_queue[queue]:,} messages, {kind} answered {ok[kind]:,} 2xx: "
            + ("OK" if enough else "FAILED, a 2xx without its message")
        )
        if not enough:
            problems += 1
            loud(f"{queue} holds {in_queue[queue]} messages but the {kind} answered {ok[kind]} 2xx")
    figure("P1 broker check (all runs incl. warm-up): " + "; ".join(checks))
    return 1 if problems else 0
