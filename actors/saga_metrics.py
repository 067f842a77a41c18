"""Prometheus view of saga orchestrators: outcomes, retries and parked sagas.

``troupe_sagas_total{saga,outcome}`` counts started, completed, compensated
and duplicate sagas; ``troupe_saga_retries_total{saga,kind}`` action and
compensation retries; ``troupe_saga_step_timeouts_total{saga,kind}`` action
and compensation asks that timed out; ``troupe_sagas_needs_attention{saga}`` is
the gauge an alert watches. Needs the ``metrics`` extra (prometheus-client).

>>> from prometheus_client import CollectorRegistry, generate_latest
>>> from troupe.actors.saga import SagaStats
>>> registry = CollectorRegistry()
>>> registry.register(SagaCollector({"order": SagaStats(needs_attention=1)}))
>>> b'troupe_sagas_needs_attention{saga="order"} 1.0' in generate_latest(registry)
True
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from .saga import SagaStats

logger = logging.getLogger(__name__)


class SagaCollector(Collector):
    """Reads :class:`SagaStats` (by saga name) when Prometheus scrapes."""

    def __init__(self, stats: Mapping[str, SagaStats]) -> None:
        self.stats = stats

    def collect(self) -> Iterator[Metric]:
        sagas = CounterMetricFamily("troupe_sagas", "Sagas by outcome.", labels=["saga", "outcome"])
        retries = CounterMetricFamily(
            "troupe_saga_retries",
            "Retried saga actions and compensations.",
            labels=["saga", "kind"],
        )
        timeouts = CounterMetricFamily(
            "troupe_saga_step_timeouts",
            "Saga actions and compensations that timed out.",
            labels=["saga", "kind"],
        )
        parked = GaugeMetricFamily(
            "troupe_sagas_needs_attention",
            "Sagas parked because a compensation kept failing.",
            labels=["saga"],
        )
        for name, stats in self.stats.items():
            for outcome in ("started", "completed", "compensated", "duplicates", "resumed"):
                sagas.add_metric([name, outcome], getattr(stats, outcome))
            retries.add_metric([name, "action"], stats.action_retries)
            retries.add_metric([name, "compensation"], stats.compensation_retries)
            timeouts.add_metric([name, "action"], stats.step_timeouts)
            timeouts.add_metric([name, "compensation"], stats.compensation_timeouts)
            parked.add_metric([name], stats.needs_attention)
        yield from (sagas, retries, timeouts, parked)


def register_saga_metrics(system: Any, stats: Mapping[str, SagaStats]) -> str | None:
    """Add saga metrics to ``system``'s ``/metrics`` endpoint; returns its URL (None when
    the system serves none: start it with ``ActorSystem(metrics_port=...)``)."""
    endpoint = getattr(system, "metrics_endpoint", None)
    if endpoint is None:
        return None
    endpoint.server.registry.register(SagaCollector(stats))
    return str(endpoint.url)
