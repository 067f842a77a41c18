"""Prometheus view of entities, per entity type and shard (partition).

``troupe_entities_active{kind,shard}`` (gauge), ``troupe_entity_activations_total``,
``troupe_entity_passivations_total``, ``troupe_entity_skipped_total`` (redeliveries not
applied again), ``troupe_entity_saves_total`` and ``troupe_entity_save_seconds_total``
(summed save latency: divide by saves for the mean). Read from plain counters at scrape
time; needs the ``metrics`` extra (prometheus-client).

>>> from prometheus_client import CollectorRegistry, generate_latest
>>> registry = CollectorRegistry()
>>> registry.register(EntityCollector({"cart": {0: EntityStats(active=3)}}))
>>> b'troupe_entities_active{kind="cart",shard="0"} 3.0' in generate_latest(registry)
True
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from .stats import EntityStats

_COUNTERS = (
    ("troupe_entity_activations", "Entities loaded into memory.", "activations"),
    ("troupe_entity_passivations", "Entities that left memory (state saved).", "passivations"),
    ("troupe_entity_skipped", "Redelivered messages at or before the saved position.", "skipped"),
    ("troupe_entity_saves", "State saves (one per shard per batch).", "saves"),
    ("troupe_entity_save_seconds", "Time spent saving entity state.", "save_seconds"),
)


class EntityCollector(Collector):
    """Reads :class:`EntityStats` by entity type, then shard, when Prometheus scrapes."""

    def __init__(self, stats: Mapping[str, Mapping[int, EntityStats]]) -> None:
        self.stats = stats

    def collect(self) -> Iterator[Metric]:
        labels = ["kind", "shard"]
        active = GaugeMetricFamily("troupe_entities_active", "Entities in memory.", labels=labels)
        counters = [
            (CounterMetricFamily(name, text, labels=labels), field)
            for name, text, field in _COUNTERS
        ]
        for kind, shards in self.stats.items():
            for shard, stats in sorted(shards.items()):
                values = [kind, str(shard)]
                active.add_metric(values, stats.active)
                for family, field in counters:
                    family.add_metric(values, getattr(stats, field))
        yield active
        for family, _ in counters:
            yield family


def register_entity_metrics(system: Any, entities: Any) -> str | None:
    """Add the metrics of ``entities`` (an :class:`~troupe.actors.entities.Entities`) to
    ``system``'s ``/metrics`` endpoint; returns its URL (None when the system serves none:
    start it with ``ActorSystem(metrics_port=...)``)."""
    endpoint = getattr(system, "metrics_endpoint", None)
    if endpoint is None:
        return None
    endpoint.server.registry.register(EntityCollector({entities.kind: entities.stats}))
    return str(endpoint.url)


__all__ = ["EntityCollector", "register_entity_metrics"]
