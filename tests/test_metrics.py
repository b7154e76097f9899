"""The receiver's metrics: confirms counted per message, however many one frame settles."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Histogram, generate_latest

from observability.metrics import _LATENCY_BUCKETS, ReceiverMetrics, observe_all

# Waits around and on every bucket bound, past the last one, and the odd negative one.
_WAITS = st.lists(
    st.one_of(
        st.sampled_from(_LATENCY_BUCKETS),
        st.floats(min_value=-1.0, max_value=10.0, allow_nan=False),
    ),
    max_size=40,
)


def _samples(registry: CollectorRegistry) -> list[str]:
    # The creation timestamps differ between two histograms; nothing else may.
    return [line for line in generate_latest(registry).decode().splitlines() if "_created" not in line]


@given(_WAITS)
@settings(max_examples=200, deadline=None)
def test_observing_all_at_once_equals_observing_one_by_one(waits: list[float]) -> None:
    one_by_one, all_at_once = CollectorRegistry(), CollectorRegistry()
    expected = Histogram("waits", "w", buckets=_LATENCY_BUCKETS, registry=one_by_one)
    for wait in waits:
        expected.observe(wait)
    observe_all(Histogram("waits", "w", buckets=_LATENCY_BUCKETS, registry=all_at_once), waits)

    got, want = _samples(all_at_once), _samples(one_by_one)
    # Sums may differ in the last bit (summed in another order); counts must match exactly.
    assert [line for line in got if "_sum" not in line] == [line for line in want if "_sum" not in line]
    (got_sum,) = (float(line.split()[-1]) for line in got if "_sum" in line)
    (want_sum,) = (float(line.split()[-1]) for line in want if "_sum" in line)
    assert math.isclose(got_sum, want_sum, rel_tol=1e-9, abs_tol=1e-9)


def test_a_confirm_frame_counts_each_message_it_settles() -> None:
    metrics = ReceiverMetrics()
    metrics.record_publish("ack", [0.002, 0.003, 0.2])
    metrics.record_publish("nack", [0.01])
    registry = metrics.registry

    assert registry.get_sample_value("flexsync_publish_confirms_total", {"outcome": "ack"}) == 3
    assert registry.get_sample_value("flexsync_publish_confirms_total", {"outcome": "nack"}) == 1
    # Only acks are latencies of a confirmed publish.
    assert registry.get_sample_value("flexsync_publish_confirm_seconds_count") == 3
    assert registry.get_sample_value("flexsync_publish_confirm_seconds_bucket", {"le": "0.0025"}) == 1
    assert registry.get_sample_value("flexsync_publish_confirm_seconds_bucket", {"le": "0.005"}) == 2
    assert registry.get_sample_value("flexsync_publish_confirm_seconds_bucket", {"le": "0.25"}) == 3
