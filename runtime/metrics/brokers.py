"""Broker bridge counters as ``troupe_broker_*`` metrics.

The bridges in :mod:`troupe.brokers` keep plain counters on their broker
(``broker.stats``: per consumer and per producer). :func:`watch_broker`
copies them into the system's metric slots whenever gauges are sampled (at
scrape time, or every second in a process-tree child), summed per
``bridge`` label: ``<stream>/<group>`` for consumers, the producer's name for
producers. Consumer lag is the largest any consumer of the group reported.

>>> from troupe.brokers import MemoryBroker
>>> broker_kind(MemoryBroker())
'memory'
"""

from __future__ import annotations

import logging
import weakref
from typing import TYPE_CHECKING, Any

from .registry import SystemMetrics
from .stats import (
    ACKED,
    BRIDGE_DEAD_LETTERED,
    CONFIRMED,
    CONSUMED,
    IN_FLIGHT,
    LAG,
    PUBLISH_FAILED,
    PUBLISHED,
    REDELIVERED,
)
from .store import SlotStore

if TYPE_CHECKING:
    from ..system import ActorSystem

logger = logging.getLogger(__name__)

_copiers: weakref.WeakKeyDictionary[SystemMetrics, BrokerCopier] = weakref.WeakKeyDictionary()

_COLUMNS = (
    CONSUMED,
    ACKED,
    REDELIVERED,
    BRIDGE_DEAD_LETTERED,
    PUBLISHED,
    CONFIRMED,
    PUBLISH_FAILED,
    LAG,
    IN_FLIGHT,
)


def broker_kind(broker: Any) -> str:
    """``"redis"`` for a RedisBroker, ``"memory"`` for a MemoryBroker, ..."""
    name = type(broker).__name__.lower()
    return name.removesuffix("broker") or name


class BrokerCopier:
    """Copies the ``stats`` of watched brokers into bridge slots (see the module docstring)."""

    def __init__(self) -> None:
        self._brokers: list[tuple[Any, str]] = []

    def watch(self, broker: Any, kind: str) -> None:
        """Include ``broker`` (once)."""
        if all(b is not broker for b, _ in self._brokers):
            self._brokers.append((broker, kind))

    def rows(self) -> dict[tuple[str, str], dict[int, int]]:
        """``{(bridge, broker kind): {column: value}}`` summed over the watched brokers."""
        rows: dict[tuple[str, str], dict[int, int]] = {}
        for broker, kind in self._brokers:
            stats = broker.stats
            for (stream, group, _consumer), c in list(stats.consumers.items()):
                row = rows.setdefault((f"{stream}/{group}", kind), dict.fromkeys(_COLUMNS, 0))
                row[CONSUMED] += c.delivered
                row[ACKED] += c.acked
                row[REDELIVERED] += c.redelivered
                row[BRIDGE_DEAD_LETTERED] += c.dead_lettered
                row[IN_FLIGHT] += c.in_flight
                row[LAG] = max(row[LAG], c.lag or 0)
            for name, p in list(stats.producers.items()):
                row = rows.setdefault((name, kind), dict.fromkeys(_COLUMNS, 0))
                row[PUBLISHED] += p.published + p.failed
                row[CONFIRMED] += p.published
                row[PUBLISH_FAILED] += p.failed
        return rows

    def __call__(self, store: SlotStore) -> None:
        for (bridge, kind), row in self.rows().items():
            slot = store.slot(("bridge", bridge, kind))
            if slot is None:
                continue
            for column, value in row.items():
                slot.values[column] = value


def watch_broker(system: ActorSystem, broker: Any) -> None:
    """Export ``broker.stats`` (its bridges' counters) with ``system``'s metrics.

    Call it once per broker, e.g. where the bridges are spawned; a no-op when
    the system's metrics are off. The bridge rows it fills are its own: do not
    also count them through ``bridge_stats`` under the same name.
    """
    metrics = system.metrics
    if metrics is None:
        return
    copier = _copiers.get(metrics)
    if copier is None:
        copier = _copiers[metrics] = BrokerCopier()
        metrics.add_copier(copier)
    copier.watch(broker, broker_kind(broker))
