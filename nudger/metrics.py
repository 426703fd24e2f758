"""Prometheus metrics for the daemon's `/metrics` (prometheus-client).

Counts and durations only: rule ids, channel names, states and provider error codes as labels,
never a tenant, a number or an address. The nudges by state are read from the ledger when
Prometheus scrapes, so every daemon on one store reports the same truth.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class LedgerCollector(Collector):
    def __init__(self, counts: Callable[[], list[tuple[str, str, str, int]]]):
        self.counts = counts

    def collect(self) -> Iterator[GaugeMetricFamily]:
        up = GaugeMetricFamily("nudger_store_up", "1 when the store answered this scrape")
        nudges = GaugeMetricFamily(
            "nudger_nudges", "Nudges in the ledger by state, channel and rule", labels=["state", "channel", "rule"]
        )
        try:
            rows = self.counts()
        except Exception:  # noqa: BLE001 - a scrape must answer even when the store does not
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        for state, channel, rule, n in rows:
            nudges.add_metric([state, channel, rule], n)
        yield up
        yield nudges


class Metrics:
    """One per engine: a registry of its own, so tests and several engines never share counters."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.send_seconds = Histogram(
            "nudger_send_seconds",
            "Time to hand one message to its channel (the provider's answer included)",
            ["channel"],
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=r,
        )
        self.outcomes = Counter(
            "nudger_dispatch_outcomes", "What dispatch did with each claimed nudge", ["outcome"], registry=r
        )
        self.provider_errors = Counter(
            "nudger_provider_errors", "Errors channels reported, by provider code", ["channel", "code"], registry=r
        )
        self.import_rows = Counter(
            "nudger_import_rows", "Rows of imported data accepted or refused", ["outcome"], registry=r
        )
        self.imports = Counter("nudger_imports", "Imports by result", ["status"], registry=r)
        self.plan_seconds = Histogram(
            "nudger_plan_seconds",
            "Duration of a planning run",
            buckets=(0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
            registry=r,
        )
        self.last_import = Gauge(
            "nudger_last_import_timestamp_seconds", "When this daemon last imported data (Unix time)", registry=r
        )
        self.last_dispatch = Gauge(
            "nudger_last_dispatch_timestamp_seconds", "When this daemon last ran dispatch (Unix time)", registry=r
        )

    def watch_ledger(self, counts: Callable[[], list[tuple[str, str, str, int]]]) -> None:
        self.registry.register(LedgerCollector(counts))

    def render(self) -> bytes:
        return generate_latest(self.registry)


def provider_code(exc: Any) -> str:
    return str(getattr(exc, "code", "") or "none")[:20]
