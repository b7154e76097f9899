"""Issue 30 #17: customers' company ids never appear as metric labels (metrics can be scraped by
whoever holds the metrics token, which is not a customer-data permission)."""

from __future__ import annotations

import dataclasses

from prometheus_client import generate_latest

from observability.metrics import ReconcileMetrics, company_tagger
from reliability.breaker import BreakerCollector, closed_state, intacct_peer
from workers.reconcile.meter import CallMeter

COMPANY = "ACME-HOLDINGS-US"
KEY = ("x7rJ0mQyB0V9pC4Q2m0l3n8f1kq6YxT5k3sR4bF1dWg=",)


def test_reconcile_calls_are_counted_per_company_without_naming_it():
    tag = company_tagger(KEY)
    metrics = ReconcileMetrics(company_label=tag)
    meter = CallMeter(metrics)
    meter.on_call(COMPANY, "/objects/accounts-receivable/invoice", 200, 0.1)
    meter.on_call(COMPANY, "/objects/accounts-receivable/invoice", 200, 0.1)
    meter.on_call("OTHER-CO", "/objects/accounts-receivable/invoice", 200, 0.1)
    text = generate_latest(metrics.registry).decode()
    assert COMPANY not in text and "OTHER-CO" not in text
    assert f'company="{tag(COMPANY)}",purpose="sweep"}} 2.0' in text
    assert tag(COMPANY) != tag("OTHER-CO") and tag(COMPANY) == company_tagger(KEY)(COMPANY)
    # Keyed: someone who guesses a company id cannot confirm the guess from the label alone.
    assert tag(COMPANY) != company_tagger(("another-key-entirely-0123456789abcdef",))(COMPANY)
    assert meter.company_total(COMPANY) == 2  # the in-memory count still knows the company


class _Breakers:
    def all(self):
        opened = dataclasses.replace(closed_state(intacct_peer(COMPANY), 1.0), state="open", failures=3)
        return [opened, closed_state("flexpoint", 1.0)]


def test_breaker_metrics_name_the_peer_without_the_company():
    tag = company_tagger(KEY)
    from prometheus_client import CollectorRegistry

    registry = CollectorRegistry()
    registry.register(BreakerCollector(_Breakers(), company_label=tag))
    text = generate_latest(registry).decode()
    assert COMPANY not in text
    assert f'flexsync_breaker_open{{peer="intacct:{tag(COMPANY)}"}} 1.0' in text
    assert 'flexsync_breaker_open{peer="flexpoint"} 0.0' in text


def test_the_metrics_settings_are_read_and_checked():
    import pytest

    from config import SettingsError, load_settings

    base = {"FLEXSYNC_ENV": "development"}
    settings = load_settings(base)
    assert (settings.flexsync_metrics_bind, settings.flexsync_metrics_token) == ("127.0.0.1", None)
    with pytest.raises(SettingsError, match=r"^FLEXSYNC_METRICS_BIND is malformed: .*FLEXSYNC_METRICS_TOKEN"):
        load_settings({**base, "FLEXSYNC_METRICS_BIND": "10.0.0.5"})
    with pytest.raises(SettingsError, match=r"^FLEXSYNC_METRICS_BIND is malformed: expected an IP address"):
        load_settings({**base, "FLEXSYNC_METRICS_BIND": "everywhere"})
    with pytest.raises(SettingsError, match=r"^FLEXSYNC_METRICS_TOKEN is malformed: expected at least 16"):
        load_settings({**base, "FLEXSYNC_METRICS_TOKEN": "short"})
    token = "m" * 24
    opened = load_settings({**base, "FLEXSYNC_METRICS_BIND": "10.0.0.5", "FLEXSYNC_METRICS_TOKEN": token})
    assert opened.flexsync_metrics_bind == "10.0.0.5" and token not in repr(opened)
